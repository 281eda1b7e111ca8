"""Turn Ubuntu IRC logs with gold reply links into chat messages and DCE JSON exports.

The logs come from the IRC disentanglement corpus (Kummerfeld et al., *A Large-Scale Corpus for
Conversation Disentanglement*, ACL 2019; CC BY 4.0).  Each ``DATE_HH.raw.txt`` holds one event
per line:

* ``[HH:MM] <nick> text`` - a message (older logs use a 12-hour clock);
* ``[HH:MM]  * nick text`` or ``=== nick text`` - an action (``/me``);
* ``=== nick [user@host]  has joined #chan`` / ``has left #chan [reason]`` - join / part;
* ``=== old is now known as new`` - a nick change.

``DATE_HH.annotation.txt`` holds gold links ``A B -``: raw line ``B`` replies to line ``A``
(0-based); ``A A -`` marks ``A`` as the start of a conversation.

Every raw line becomes one :class:`ChatMessage` (list index = line number), so the gold links
index the messages directly.  Mapping to Discord's model:

* ids are snowflakes built from the time, so ``snowflake_time(id)`` is the message time; lines
  sharing a minute are spread evenly over it, keeping file order;
* author ids are stable 18-digit numbers hashed from the nick (IRC nicks ignore case);
* joins become ``GuildMemberJoin``, parts ``RecipientRemove``; DCE has no kind for a nick change,
  so it becomes ``RecipientAdd`` (the new name "arrives") with the change spelt out in content;
* ``nick: ...`` / ``nick, ...`` addressing a recent speaker becomes a mention;
* a seeded random share of the messages with a gold parent become Discord replies to their
  nearest gold parent (people mark some replies explicitly, not all).

:func:`write_export` streams any messages as a DiscordChatExporter JSON export.
"""

from __future__ import annotations

import hashlib
import json
import random
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import IO, Any

from shared.domain.messages import DISCORD_EPOCH_MS, ChannelInfo, ChatMessage
from shared.errors import InvalidInputError

__all__ = [
    "DEFAULT_CHANNEL_ID",
    "DEFAULT_GUILD_ID",
    "DEMO_CHANNEL",
    "DEMO_DAY",
    "IrcLog",
    "build_demo_export",
    "nick_user_id",
    "read_irc_log",
    "snowflake_at",
    "write_export",
]

DEFAULT_GUILD_ID = "1085131932217520185"
DEFAULT_CHANNEL_ID = "1194325511418032185"
DEFAULT_GUILD_NAME = "Ubuntu IRC"
DEFAULT_CHANNEL_NAME = "ubuntu"

DEMO_DAY = date(2025, 3, 3)
"""The demo keeps the log's times of day but moves it from 2009-03-03 to this day."""
DEMO_SEED = 0
DEMO_REPLY_FRACTION = 0.5
DEMO_EXPORTED_AT = datetime(2025, 3, 3, 12, 0, tzinfo=UTC)
DEMO_CHANNEL = ChannelInfo(
    channel_id=DEFAULT_CHANNEL_ID,
    channel_name="ubuntu-help",
    guild_id=DEFAULT_GUILD_ID,
    guild_name="Ubuntu Support (demo)",
    kind="GuildTextChat",
    topic=(
        "Ask for help with Ubuntu. Demo data: #ubuntu IRC log 2009-03-03 from "
        "jkkummerfeld/irc-disentanglement (Kummerfeld et al., ACL 2019), CC BY 4.0"
    ),
)

MENTION_WINDOW = 300
"""A nick counts as a recent speaker for this many lines after it was last seen."""

_DISCORD_EPOCH_DAY = date(2015, 1, 1)
_MINUTE_MS = 60_000
_DAY_MINUTES = 24 * 60
_HALF_DAY_MINUTES = 12 * 60
_CLOCK_GLITCH_MINUTES = 60

_DAY_RE = re.compile(r"(\d{4})-(\d{2})-(\d{2})")
_MESSAGE_RE = re.compile(r"^\[(\d\d):(\d\d)\] <([^>]*)> ?(.*)$")
_ACTION_RE = re.compile(r"^\[(\d\d):(\d\d)\]\s+\* (\S+) ?(.*)$")
_JOIN_PART_RE = re.compile(r"^=== (\S+)\s+\[[^\]]*\]\s+has (joined|left) (\S+)(?:\s+\[(.*)\])?\s*$")
_NICK_RE = re.compile(r"^=== (\S+) is now known as (\S+)\s*$")
_SYSTEM_ACTION_RE = re.compile(r"^=== (\S+) ?(.*)$")
_ADDRESS_RE = re.compile(r"^\s*([^\s:,]+)\s*[:,](?:\s|$)")
_BOT_RE = re.compile(r"^(ubot+u|ubot\d+|floodbot\d*|chanserv|nickserv)$", re.IGNORECASE)

_JOIN_CONTENT = "Joined the server."


@dataclass(frozen=True)
class IrcLog:
    """One converted log.

    ``messages[i]`` and ``line_ids[i]`` belong to raw line ``i``; ``gold_links`` are the
    annotation's ``(A, B)`` pairs as written (``B`` replies to ``A``; ``(A, A)`` starts a
    conversation), sorted; ``reply_lines`` are the lines whose message got ``reply_to``.
    """

    messages: list[ChatMessage]
    line_ids: list[str]
    gold_links: list[tuple[int, int]]
    reply_lines: frozenset[int]
    channel: ChannelInfo = field(
        default_factory=lambda: ChannelInfo(DEFAULT_CHANNEL_ID, DEFAULT_CHANNEL_NAME)
    )


@dataclass(frozen=True, slots=True)
class _Line:
    """One parsed raw line, before ids and times are assigned."""

    minute: int | None
    nick: str
    content: str
    kind: str
    conversational: bool
    action: bool = False


def snowflake_at(ms: int, sequence: int = 0) -> str:
    """The Discord snowflake for Unix time ``ms`` (milliseconds) with a 12-bit sequence."""
    if ms < DISCORD_EPOCH_MS:
        raise InvalidInputError(
            f"time {ms} ms precedes the Discord epoch (2015-01-01); snowflakes cannot encode "
            "it, so pass a later day"
        )
    return str(((ms - DISCORD_EPOCH_MS) << 22) | (sequence & 0xFFF))


def nick_user_id(nick: str) -> str:
    """A stable 18-digit user id for an IRC nick (case-insensitive, like IRC itself)."""
    digest = hashlib.sha256(b"irc-nick:" + nick.lower().encode("utf-8")).digest()
    return str(10**17 + int.from_bytes(digest[:8], "big") % (9 * 10**17))


def _parse_line(number: int, text: str, source: Path) -> _Line:
    if match := _MESSAGE_RE.match(text):
        hour, minute, nick, content = match.groups()
        return _Line(int(hour) * 60 + int(minute), nick, content, "Default", True)
    if match := _ACTION_RE.match(text):
        hour, minute, nick, content = match.groups()
        body = f"_{content}_" if content else ""
        return _Line(int(hour) * 60 + int(minute), nick, body, "Default", True, action=True)
    if match := _JOIN_PART_RE.match(text):
        nick, verb, channel, reason = match.groups()
        if verb == "joined":
            return _Line(None, nick, _JOIN_CONTENT, "GuildMemberJoin", False)
        content = f"Left {channel}" + (f" ({reason})" if reason else "") + "."
        return _Line(None, nick, content, "RecipientRemove", False)
    if match := _NICK_RE.match(text):
        old, new = match.groups()
        return _Line(None, new, f"{old} is now known as {new}", "RecipientAdd", False)
    if match := _SYSTEM_ACTION_RE.match(text):
        nick, content = match.groups()
        body = f"_{content}_" if content else ""
        return _Line(None, nick, body, "Default", True, action=True)
    raise InvalidInputError(
        f"{source}: line {number} is not an IRC log line ({text[:60]!r}); expected "
        "'[HH:MM] <nick> text', '[HH:MM]  * nick text' or '=== ...'"
    )


def _day_from_name(raw: Path) -> date:
    match = _DAY_RE.search(raw.name)
    if match is None:
        raise InvalidInputError(
            f"{raw}: no date (YYYY-MM-DD) in the file name; pass day=... to read_irc_log"
        )
    day = date(int(match.group(1)), int(match.group(2)), int(match.group(3)))
    if day >= _DISCORD_EPOCH_DAY:
        return day
    # Snowflakes cannot go before 2015, so older logs keep their month and day in 2015.
    if (day.month, day.day) == (2, 29):
        return date(2016, 2, 29)
    return day.replace(year=2015)


def _absolute_minutes(minutes: list[int | None]) -> list[int]:
    """Minutes since the log's first midnight: fill untimed lines, unwrap clock roll-overs."""
    first_known = next((m for m in minutes if m is not None), 0)
    filled: list[int] = []
    previous_raw = first_known
    for minute in minutes:
        previous_raw = previous_raw if minute is None else minute
        filled.append(previous_raw)
    result: list[int] = []
    offset = 0
    previous = filled[0] if filled else 0
    for minute in filled:
        value = minute + offset
        if value < previous:
            if previous - value < _CLOCK_GLITCH_MINUTES:
                value = previous
            else:
                # 12:59 -> 01:00 on a 12-hour clock, 23:59 -> 00:00 at midnight.  Both raw
                # minutes lie within one day, so one step always catches up.
                step = _HALF_DAY_MINUTES if value + _HALF_DAY_MINUTES >= previous else _DAY_MINUTES
                offset += step
                value += step
        result.append(value)
        previous = value
    return result


def _times_ms(day: date, minutes: list[int]) -> list[int]:
    """One Unix time (ms) per line; lines sharing a minute are spread evenly over it."""
    base = int(datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp() * 1000)
    result: list[int] = []
    start = 0
    while start < len(minutes):
        end = start
        while end < len(minutes) and minutes[end] == minutes[start]:
            end += 1
        size = end - start
        for j in range(size):
            result.append(base + minutes[start] * _MINUTE_MS + j * _MINUTE_MS // size)
        start = end
    for i in range(1, len(result)):
        # More than 60,000 lines in one minute would tie; keep times strictly increasing.
        if result[i] <= result[i - 1]:
            result[i] = result[i - 1] + 1
    return result


def log_lines(text: str) -> list[str]:
    """The lines of a log or annotation file: split at newlines only.

    ``str.splitlines`` also splits at \x1c-\x1e, \x85, U+2028 and U+2029, which real IRC lines
    contain (2008-07-14_18, 2010-08-17_18): every later line would shift against the gold
    links, which count newline-separated lines."""
    return [line.removesuffix("\r") for line in text.removesuffix("\n").split("\n")] if text else []


def _read_links(annotation: Path, n_lines: int) -> list[tuple[int, int]]:
    try:
        text = annotation.read_text(encoding="utf-8")
    except OSError as exc:
        raise InvalidInputError(
            f"{annotation}: cannot read the annotation file ({exc.strerror or exc})"
        ) from exc
    links: set[tuple[int, int]] = set()
    for number, line in enumerate(log_lines(text)):
        parts = line.split()
        if not parts:
            continue
        try:
            parent, child = int(parts[0]), int(parts[1])
        except (IndexError, ValueError):
            raise InvalidInputError(
                f"{annotation}: line {number} is not 'A B -' with two line numbers: {line!r}"
            ) from None
        if not (0 <= parent < n_lines and 0 <= child < n_lines):
            raise InvalidInputError(
                f"{annotation}: line {number} links lines {parent} and {child}, but the raw "
                f"log has only {n_lines} lines; is it the annotation of another log?"
            )
        links.add((parent, child))
    return sorted(links)


def _choose_replies(
    links: list[tuple[int, int]],
    lines: list[_Line],
    fraction: float,
    seed: int,
) -> dict[int, int]:
    """Child line -> parent line for the seeded random share of linked messages."""
    parents: dict[int, int] = {}
    for parent, child in links:
        if parent < child and lines[parent].conversational and lines[child].conversational:
            parents[child] = max(parents.get(child, parent), parent)
    children = sorted(parents)
    # Reproducible sampling for test data, not security: a seeded PRNG is what we want.
    chosen = random.Random(seed).sample(children, round(fraction * len(children)))
    return {child: parents[child] for child in sorted(chosen)}


def read_irc_log(
    raw: Path,
    annotation: Path | None = None,
    *,
    day: date | None = None,
    reply_fraction: float = 0.5,
    seed: int = 0,
    guild_id: str = DEFAULT_GUILD_ID,
    channel_id: str = DEFAULT_CHANNEL_ID,
    guild_name: str = DEFAULT_GUILD_NAME,
    channel_name: str = DEFAULT_CHANNEL_NAME,
) -> IrcLog:
    """Convert one raw IRC log (and optionally its gold links) into chat messages.

    ``day`` is the date of the first line; by default it comes from the file name, moved to
    2015 when older (Discord snowflakes start on 2015-01-01).  ``reply_fraction`` of the
    messages that have a gold parent (chosen with ``seed``) get ``reply_to`` = their nearest
    gold parent and kind ``Reply``.
    """
    if not 0.0 <= reply_fraction <= 1.0:
        raise InvalidInputError(f"reply_fraction must be between 0 and 1, not {reply_fraction}")
    try:
        text = raw.read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        raise InvalidInputError(f"{raw}: cannot read the IRC log ({exc.strerror or exc})") from exc
    if day is None:
        day = _day_from_name(raw)
    elif day < _DISCORD_EPOCH_DAY:
        raise InvalidInputError(
            f"day {day} precedes the Discord epoch (2015-01-01); pass a day from 2015 on"
        )
    lines = [_parse_line(i, line, raw) for i, line in enumerate(log_lines(text))]
    times = _times_ms(day, _absolute_minutes([line.minute for line in lines]))
    line_ids = [snowflake_at(ms, i) for i, ms in enumerate(times)]
    links = _read_links(annotation, len(lines)) if annotation is not None else []
    replies = _choose_replies(links, lines, reply_fraction, seed)
    messages = list(_build_messages(lines, times, line_ids, replies, channel_id))
    channel = ChannelInfo(
        channel_id=channel_id,
        channel_name=channel_name,
        guild_id=guild_id,
        guild_name=guild_name,
    )
    return IrcLog(messages, line_ids, links, frozenset(replies), channel)


def _build_messages(
    lines: list[_Line],
    times: list[int],
    line_ids: list[str],
    replies: dict[int, int],
    channel_id: str,
) -> Iterator[ChatMessage]:
    last_seen: dict[str, tuple[str, int]] = {}
    for i, line in enumerate(lines):
        mentions: tuple[str, ...] = ()
        if line.conversational and not line.action:
            match = _ADDRESS_RE.match(line.content)
            if match:
                seen = last_seen.get(match.group(1).lower())
                if seen is not None and i - seen[1] <= MENTION_WINDOW:
                    mentions = (seen[0],)
        parent = replies.get(i)
        yield ChatMessage(
            id=line_ids[i],
            channel_id=channel_id,
            timestamp=datetime.fromtimestamp(times[i] / 1000, tz=UTC),
            author_id=nick_user_id(line.nick),
            author_name=line.nick,
            content=line.content,
            kind="Reply" if parent is not None else line.kind,
            is_bot=bool(_BOT_RE.match(line.nick)),
            reply_to=line_ids[parent] if parent is not None else None,
            mentions=mentions,
            extra={"line": i},
        )
        last_seen[line.nick.lower()] = (line.nick, i)


# --- DCE JSON writing -------------------------------------------------------------------------


def _iso(when: datetime) -> str:
    if when.microsecond % 1000 == 0:
        return when.isoformat(timespec="milliseconds" if when.microsecond else "seconds")
    return when.isoformat()


def _avatar_url(user_id: str) -> str:
    index = (int(user_id) >> 22) % 6 if user_id.isdigit() else 0
    return f"https://cdn.discordapp.com/embed/avatars/{index}.png"


def _user(user_id: str, name: str, *, is_bot: bool) -> dict[str, Any]:
    return {
        "id": user_id,
        "name": name,
        "discriminator": "0000",
        "nickname": name,
        "color": None,
        "isBot": is_bot,
        "roles": [],
        "avatarUrl": _avatar_url(user_id),
    }


def _child_id(message_id: str, index: int) -> str:
    return str(int(message_id) + index + 1) if message_id.isdigit() else f"{message_id}-{index}"


def _message_json(
    message: ChatMessage, channel: ChannelInfo, known_ids: dict[str, str]
) -> dict[str, Any]:
    stamp = _iso(message.timestamp)
    data: dict[str, Any] = {
        "id": message.id,
        "type": message.kind,
        "timestamp": stamp,
        # The edit time is not kept in ChatMessage; the send time marks the message as edited.
        "timestampEdited": stamp if message.edited else None,
        "callEndedTimestamp": None,
        "isPinned": message.is_pinned,
        "content": message.content,
        "author": _user(message.author_id, message.author_name, is_bot=message.is_bot),
        "attachments": [
            {
                "id": _child_id(message.id, i),
                "url": "https://cdn.discordapp.com/attachments/"
                f"{channel.channel_id}/{_child_id(message.id, i)}/{name}",
                "fileName": name,
                "fileSizeBytes": 0,
            }
            for i, name in enumerate(message.attachments)
        ],
        "embeds": [
            {
                "title": title,
                "url": None,
                "timestamp": None,
                "description": "",
                "images": [],
                "fields": [],
                "inlineEmojis": [],
            }
            for title in message.embeds
        ],
        "stickers": [],
        "reactions": [
            {
                "emoji": {
                    "id": "",
                    "name": "👍",
                    "code": "thumbsup",
                    "isAnimated": False,
                    "imageUrl": "https://cdn.jsdelivr.net/gh/twitter/twemoji@latest/assets/svg/1f44d.svg",
                },
                "count": message.reactions,
                "users": [],
            }
        ]
        if message.reactions
        else [],
        "mentions": [
            _user(known_ids.get(name) or nick_user_id(name), name, is_bot=False)
            for name in message.mentions
        ],
    }
    if message.reply_to:
        data["reference"] = {
            "type": "Default",
            "messageId": message.reply_to,
            "channelId": channel.channel_id,
            "guildId": channel.guild_id,
        }
    data["inlineEmojis"] = []
    return data


def _dump(value: Any, indent: str) -> str:
    return json.dumps(value, indent=2, ensure_ascii=False).replace("\n", "\n" + indent)


def write_export(
    messages: Iterable[ChatMessage],
    channel: ChannelInfo,
    out: IO[str],
    *,
    exported_at: datetime | None = None,
) -> int:
    """Stream ``messages`` to ``out`` as a DCE JSON export; return how many were written.

    The layout is the one DCE writes (two-space indentation, non-ASCII kept literally,
    ``messageCount`` after the array), one message at a time, so memory stays bounded.
    ``exported_at`` defaults to now; pass it for reproducible output.  What ``ChatMessage``
    does not keep is filled plausibly (attachment ids and URLs, one 👍 reaction carrying the
    count, the send time as edit time); ``extra`` is not written.
    """
    is_dm = channel.guild_id is None
    header = {
        "guild": {
            "id": "0" if is_dm else channel.guild_id,
            "name": "Direct Messages" if is_dm else (channel.guild_name or channel.guild_id),
            "iconUrl": None,
        },
        "channel": {
            "id": channel.channel_id,
            "type": channel.kind,
            "categoryId": channel.parent_id,
            "category": None,
            "name": channel.channel_name,
            "topic": channel.topic,
        },
        "dateRange": {"after": None, "before": None},
        "exportedAt": _iso(exported_at or datetime.now(UTC)),
    }
    out.write("{\n")
    for key, value in header.items():
        out.write(f"  {json.dumps(key)}: {_dump(value, '  ')},\n")
    out.write('  "messages": [')
    known_ids: dict[str, str] = {}
    count = 0
    for message in messages:
        known_ids[message.author_name] = message.author_id
        out.write(",\n    " if count else "\n    ")
        out.write(_dump(_message_json(message, channel, known_ids), "    "))
        count += 1
    out.write("\n  ]" if count else "]")
    out.write(f',\n  "messageCount": {count}\n}}\n')
    return count


def build_demo_export(raw: Path, annotation: Path, out_path: Path) -> int:
    """Write the bundled demo export (``shared/data/demo/ubuntu-support.json``) from one log.

    Deterministic: the same inputs give byte-identical output.  Returns the message count.
    """
    log = read_irc_log(
        raw,
        annotation,
        day=DEMO_DAY,
        reply_fraction=DEMO_REPLY_FRACTION,
        seed=DEMO_SEED,
        guild_id=DEMO_CHANNEL.guild_id or DEFAULT_GUILD_ID,
        channel_id=DEMO_CHANNEL.channel_id,
        guild_name=DEMO_CHANNEL.guild_name or DEFAULT_GUILD_NAME,
        channel_name=DEMO_CHANNEL.channel_name,
    )
    with out_path.open("w", encoding="utf-8", newline="\n") as out:
        return write_export(log.messages, DEMO_CHANNEL, out, exported_at=DEMO_EXPORTED_AT)
