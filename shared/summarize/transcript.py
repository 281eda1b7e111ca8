"""Transcript preparation: chat messages in, a compact, neutralised, citable prompt text out.

:func:`build_transcript` cleans a window of :class:`~shared.domain.messages.ChatMessage` into
a :class:`Transcript`: mentions resolved to names, code blocks kept (huge ones cut with a
marker), attachments, embeds and stickers described, bot/system/noise messages and opted-out
users' messages dropped (personal data and secrets were already redacted when the messages
were fetched: :mod:`shared.summarize.sanitize`), and every kept message given a short alias.
:meth:`Transcript.render` writes one line per message::

    --- 2024-11-15 UTC ---
    [m17 14:03 alice ↩m12] the fix is in `apt-get install linux-headers-$(uname -r)`
    [m18] and reboot afterwards
    [m19 14:04 bob ↩m17] thanks, that worked

An alias (``m17``) stands for a message id and costs about 3 tokens where a snowflake costs 8;
the author is written only when it changes and the time only when the minute changes;
``↩m12`` marks the message replied to.  Continuation lines of a message are indented, so only
header lines start at column 0, and text that imitates a header or the prompt's delimiters is
neutralised (:func:`neutralize`).  Aliases map back to message ids and jump links through
:meth:`Transcript.message_id`, :meth:`Transcript.jump_url` and :meth:`Transcript.citation`.
"""

from __future__ import annotations

import re
import unicodedata
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, tzinfo
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, field_validator

from shared.domain.markup import (
    CHANNEL_MENTION,
    COMMAND,
    EMOJI,
    ROLE_MENTION,
    TIMESTAMP,
    USER_MENTION,
)
from shared.domain.messages import ChannelInfo, ChatMessage, message_link
from shared.summarize.content import Citation, Participant
from shared.summarize.lookalike import LOOKALIKE_CLASSES, imitates, skeleton
from shared.summarize.redact import PLACEHOLDERS
from shared.summarize.sanitize import strip_invisible

__all__ = [
    "DELIMITER_TAGS",
    "DROP_REASONS",
    "MentionDirectory",
    "Transcript",
    "TranscriptLine",
    "TranscriptOptions",
    "TranscriptStats",
    "build_transcript",
    "neutralize",
    "normalize_alias",
]

#: Tags the prompts use to delimit untrusted data; message text can never open or close them.
DELIMITER_TAGS: tuple[str, ...] = ("transcript", "notes", "schema", "instructions")

#: Why a message can be left out of a transcript.
DROP_REASONS: tuple[str, ...] = ("opted_out", "system", "bot", "empty", "noise")

_ALIAS_RE = re.compile(r"^\[?\s*[mM]?0*(\d{1,7})\s*\]?$")
# "[" (or a look-alike), then any letter that reads as "m", then a digit: a header imitation.
_HEADER_LOOKALIKE = re.compile(rf"[\[［【〔⟦](?=\s*[{LOOKALIKE_CLASSES['m']}]\s*\d)")
_TAG_RE = re.compile(r"<(?=\s*/?\s*(?:" + "|".join(DELIMITER_TAGS) + r")\b)", re.IGNORECASE)
_FENCE_RE = re.compile(r"```")
_SHORTCODE = re.compile(r":[\w+-]{1,32}:")
_BLANK_LINES = re.compile(r"\n[ \t]*\n(?:[ \t]*\n)+")
_TRAILING_SPACE = re.compile(r"[ \t]+\n")
_NAME_UNSAFE = re.compile("[\\[\\]［］【】〔〕⟦⟧\n\r\t\x0b\x0c\x1c-\x1e\x85\u2028\u2029↩]+")
# Placeholders the sanitiser left in the text, counted per kind in the statistics.
_PLACEHOLDER = re.compile("|".join(re.escape(p) for p in sorted(set(PLACEHOLDERS.values()))))


_LT, _SLASH = LOOKALIKE_CLASSES["<"], LOOKALIKE_CLASSES["/"]
_MARKS = "\u0300-\u036f\u1ab0-\u1aff\u1dc0-\u1dff\u20d0-\u20ff\ufe20-\ufe2f"
# In non-ASCII text, anything shaped like a tag: a "<" look-alike, maybe a "/" look-alike, then
# a word (whatever its letters; ASCII punctuation and brackets end it).  Whether the word reads
# as a delimiter tag's name is decided on its skeleton (:func:`imitates`), not by this pattern.
_TAG_SHAPE = re.compile(
    rf"[{_LT}][\s{_MARKS}]*(?:[{_SLASH}][\s{_MARKS}]*)?"
    rf"([^\s!-/:-@\[-`{{-~{_LT}{LOOKALIKE_CLASSES['>']}{_SLASH}]+)"
)
# Characters a model may read as a line break: only "\n" may start a transcript line.
_LINE_BREAKS = re.compile("\r\n?|[\x0b\x0c\x1c-\x1e\x85\u2028\u2029]")


def _defuse_tag(match: re.Match[str]) -> str:
    if imitates(match.group(1), DELIMITER_TAGS):
        return "(" + match.group(0)[1:]
    return match.group(0)


def neutralize(text: str) -> str:
    """Defuse text that imitates a transcript header (``[m12``) or a prompt delimiter tag.

    Every way a reader could take text for ``<transcript>``, ``</notes>`` and the other
    delimiter tags is defused: fullwidth and other look-alike brackets and letters, case
    variants, zero-width and other invisible characters between the letters (all removed),
    combining marks.  In non-ASCII text every tag-shaped token is found whatever its letters
    and compared by its visual skeleton (:mod:`shared.summarize.lookalike`), where a letter of
    unknown shape (Lisu, Cherokee) may stand for any letter; a header's ``m`` is any letter
    whose skeleton is ``m``.  Line separators other than ``\\n`` become ``\\n``, so the renderer's
    indentation holds for them too.
    """
    text = _LINE_BREAKS.sub("\n", strip_invisible(text))
    text = _HEADER_LOOKALIKE.sub("(", text)
    if text.isascii():
        return _TAG_RE.sub("(", text)
    return _TAG_SHAPE.sub(_defuse_tag, text)


def normalize_alias(value: object) -> str | None:
    """Canonical alias for what a model wrote (``"m17"``, ``"[M17]"``, ``"17"`` → ``"m17"``)."""
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return f"m{value}"
    if not isinstance(value, str):
        return None
    match = _ALIAS_RE.match(value.strip())
    if match is None or int(match.group(1)) == 0:
        return None
    return f"m{int(match.group(1))}"


@dataclass(frozen=True, slots=True)
class MentionDirectory:
    """Names for the ids that raw Discord mentions carry (``<@id>``, ``<#id>``, ``<@&id>``)."""

    users: Mapping[str, str] = field(default_factory=dict)
    channels: Mapping[str, str] = field(default_factory=dict)
    roles: Mapping[str, str] = field(default_factory=dict)


class TranscriptOptions(BaseModel):
    """What to keep, drop and redact; per guild, so it is plain serialisable data."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    opted_out_user_ids: frozenset[str] = frozenset()
    keep_bots: bool = Field(default=False, description="keep every bot message")
    bot_allowlist: frozenset[str] = Field(
        default=frozenset(), description="bot user ids or names whose messages carry content"
    )
    keep_system: bool = Field(default=False, description="keep joins, pins, thread notices")
    drop_emoji_only: bool = Field(default=True, description="drop messages of only emoji")
    noise_patterns: tuple[str, ...] = Field(
        default=(r"\+1|-1|\^+|lo+l+|lmf?ao+|rofl|xd+|bump",),
        description="case-insensitive regexes; a message whose whole text matches one is noise",
    )
    max_code_lines: int = Field(default=40, ge=4, le=10_000)
    code_head_lines: int = Field(default=12, ge=1, le=5_000)
    code_tail_lines: int = Field(default=6, ge=0, le=5_000)
    max_code_line_chars: int = Field(default=300, ge=20, le=100_000)
    max_message_chars: int = Field(default=3_000, ge=100, le=1_000_000)
    compact_runs: bool = Field(default=True, description="omit repeated author and minute")
    timezone: str = Field(default="UTC", description="IANA zone for the times in the lines")

    @field_validator("noise_patterns")
    @classmethod
    def _compile_noise(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for pattern in value:
            try:
                re.compile(pattern)
            except re.error as exc:
                raise ValueError(f"noise pattern {pattern!r} is not a valid regex: {exc}") from None
        return value

    @field_validator("timezone")
    @classmethod
    def _check_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(
                f"unknown time zone {value!r}; use an IANA name such as UTC or Europe/Berlin"
            ) from None
        return value


@dataclass(frozen=True, slots=True)
class TranscriptLine:
    """One kept message: its alias, who and when, and its cleaned text.

    ``text`` is what the prompt shows (possibly shortened); ``source_text`` is the same
    cleaned, redacted text before shortening, for checking quotes and numbers later.
    """

    alias: str
    message_id: str
    timestamp: datetime
    author_id: str
    author: str
    reply_alias: str | None
    text: str
    source_text: str
    reactions: int = 0
    is_pinned: bool = False
    mentions: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class TranscriptStats:
    """What preparation did: messages seen, kept, dropped per reason, redaction placeholders.

    ``redactions`` counts the placeholders (``email``, ``secret`` …) in the kept text: the
    sanitiser put them there when the messages were fetched.
    """

    messages_total: int
    kept: int
    dropped: dict[str, int]
    redactions: dict[str, int]
    truncated_code_blocks: int = 0
    truncated_messages: int = 0

    @property
    def dropped_total(self) -> int:
        """Messages left out for any reason."""
        return sum(self.dropped.values())


class Transcript:
    """A prepared conversation: aliased lines plus the maps back to Discord."""

    __slots__ = ("_by_alias", "_by_message", "channel", "lines", "stats", "tz")

    def __init__(
        self,
        *,
        channel: ChannelInfo,
        lines: Sequence[TranscriptLine],
        stats: TranscriptStats,
        tz: tzinfo = UTC,
    ) -> None:
        self.channel = channel
        self.lines: tuple[TranscriptLine, ...] = tuple(lines)
        self.stats = stats
        self.tz = tz
        self._by_alias = {line.alias: line for line in self.lines}
        self._by_message = {line.message_id: line.alias for line in self.lines}

    def __len__(self) -> int:
        return len(self.lines)

    def __contains__(self, alias: object) -> bool:
        return alias in self._by_alias

    @property
    def aliases(self) -> list[str]:
        """Every alias, in conversation order."""
        return [line.alias for line in self.lines]

    @property
    def alias_map(self) -> dict[str, str]:
        """Alias → Discord message id."""
        return {line.alias: line.message_id for line in self.lines}

    def line(self, alias: str) -> TranscriptLine:
        """The line behind ``alias``; ``KeyError`` names the alias when it does not exist."""
        try:
            return self._by_alias[alias]
        except KeyError:
            raise KeyError(f"alias {alias!r} is not in this transcript") from None

    def alias_for(self, message_id: str) -> str | None:
        """The alias of a Discord message id, or None when that message was not kept."""
        return self._by_message.get(message_id)

    def message_id(self, alias: str) -> str:
        """Discord message id of ``alias``."""
        return self.line(alias).message_id

    def jump_url(self, alias: str) -> str | None:
        """Discord jump link of ``alias`` (None when the conversation has no Discord ids)."""
        return message_link(self.channel, self.channel.channel_id, self.message_id(alias))

    def citation(self, alias: str) -> Citation:
        """Everything a reader needs to find the message behind ``alias`` again."""
        line = self.line(alias)
        return Citation(
            message_id=line.message_id,
            author=line.author,
            timestamp=line.timestamp,
            jump_url=self.jump_url(alias),
        )

    def participants(self) -> list[Participant]:
        """Authors of kept messages with their message counts, most active first."""
        counts: Counter[str] = Counter(line.author_id for line in self.lines)
        names = {line.author_id: line.author for line in self.lines}
        return [
            Participant(id=author_id, name=names[author_id], messages=count)
            for author_id, count in sorted(counts.items(), key=lambda kv: (-kv[1], names[kv[0]]))
        ]

    def known_names(self) -> set[str]:
        """Author and mention names, case-folded: the people a summary may name."""
        names: set[str] = set()
        for line in self.lines:
            names.add(line.author.casefold())
            names.update(m.casefold() for m in line.mentions)
        return names

    def render(self, aliases: Iterable[str] | None = None) -> str:
        """The prompt text of every line, or of ``aliases`` only (a segment), in order."""
        if aliases is None:
            selected: Iterable[TranscriptLine] = self.lines
        else:
            wanted = set(aliases)
            missing = wanted.difference(self._by_alias)
            if missing:
                raise KeyError(f"aliases not in this transcript: {sorted(missing)[:5]}")
            selected = (line for line in self.lines if line.alias in wanted)
        return "\n".join(_render_lines(selected, self.tz))


def _render_lines(lines: Iterable[TranscriptLine], tz: tzinfo) -> Iterable[str]:
    previous_day = None
    previous_author = None
    previous_minute = None
    for line in lines:
        local = line.timestamp.astimezone(tz)
        day = local.date()
        if day != previous_day:
            yield f"--- {day.isoformat()} {local.tzname() or ''} ---".replace("  ", " ")
            previous_author = previous_minute = None
            previous_day = day
        minute = local.strftime("%H:%M")
        parts = [line.alias]
        if minute != previous_minute:
            parts.append(minute)
        if line.author_id != previous_author:
            parts.append(line.author)
        if line.reply_alias:
            parts.append("↩" + line.reply_alias)
        body = line.text.replace("\n", "\n  ")
        yield f"[{' '.join(parts)}] {body}" if body else f"[{' '.join(parts)}]"
        previous_author = line.author_id
        previous_minute = minute


def _clean_name(name: str) -> str:
    cleaned = " ".join(_NAME_UNSAFE.sub(" ", neutralize(name)).split())
    return cleaned or "unknown"


def _format_timestamp(raw: str, style: str | None, tz: tzinfo) -> str:
    try:
        moment = datetime.fromtimestamp(int(raw), tz=UTC).astimezone(tz)
    except (OverflowError, OSError, ValueError):
        return raw
    if style in ("t", "T"):
        return moment.strftime("%H:%M")
    if style in ("d", "D"):
        return moment.strftime("%Y-%m-%d")
    return moment.strftime("%Y-%m-%d %H:%M %Z").strip()


class _Cleaner:
    """Per-transcript state: the name directory, options and running counters."""

    def __init__(
        self,
        options: TranscriptOptions,
        directory: MentionDirectory,
        authors: Mapping[str, str],
        tz: tzinfo,
    ) -> None:
        self.options = options
        self.tz = tz
        self.users = {**authors, **{k: _clean_name(v) for k, v in directory.users.items()}}
        self.channels = directory.channels
        self.roles = directory.roles
        self.truncated_code_blocks = 0
        self.truncated_messages = 0
        opted = options.opted_out_user_ids
        names = {self.users[i] for i in opted if i in self.users}
        names.update(_clean_name(directory.users[i]) for i in opted if i in directory.users)
        self.opted_out_names = {n.casefold() for n in names}
        self._opted_out_at = (
            re.compile(
                r"@(?:"
                + "|".join(re.escape(n) for n in sorted(names, key=len, reverse=True))
                + r")\b",
                re.IGNORECASE,
            )
            if names
            else None
        )

    def resolve_mentions(self, text: str) -> str:
        opted_out = self.options.opted_out_user_ids

        def user(match: re.Match[str]) -> str:
            user_id = match.group(1)
            if user_id in opted_out:
                return "@someone"
            return "@" + self.users.get(user_id, "unknown-user")

        text = USER_MENTION.sub(user, text)
        if self._opted_out_at is not None:
            text = self._opted_out_at.sub("@someone", text)
        text = ROLE_MENTION.sub(lambda m: "@" + self.roles.get(m.group(1), "unknown-role"), text)
        text = CHANNEL_MENTION.sub(
            lambda m: "#" + self.channels.get(m.group(1), "unknown-channel"), text
        )
        text = EMOJI.sub(lambda m: f":{m.group(1)}:", text)
        text = COMMAND.sub(lambda m: f"/{m.group(1)}", text)
        return TIMESTAMP.sub(lambda m: _format_timestamp(m.group(1), m.group(2), self.tz), text)

    def shorten_code(self, body: str) -> str:
        opts = self.options
        # A fence's first line holds the language (often empty) and its last the closing
        # newline: only the lines between are code.
        parts = body.split("\n")
        if len(parts) < 3:
            return body
        opening, lines, closing = parts[0], parts[1:-1], parts[-1]
        changed = False
        limit = opts.max_code_line_chars
        for index, text in enumerate(lines):
            if len(text) > limit:
                lines[index] = f"{text[:limit]}[… {len(text) - limit} chars …]"
                changed = True
        if len(lines) > opts.max_code_lines:
            head = lines[: opts.code_head_lines]
            tail = lines[len(lines) - opts.code_tail_lines :] if opts.code_tail_lines else []
            hidden = len(lines) - len(head) - len(tail)
            lines = [*head, f"[… {hidden} lines …]", *tail]
            changed = True
        if changed:
            self.truncated_code_blocks += 1
        return "\n".join([opening, *lines, closing])

    def clean_body(self, text: str) -> str:
        """Resolve mentions, tidy prose, shorten code blocks; fences are kept as written."""
        text = self.resolve_mentions(text.replace("\r\n", "\n").replace("\r", "\n"))
        pieces = _FENCE_RE.split(text)
        out: list[str] = []
        for index, piece in enumerate(pieces):
            if index % 2 == 0:
                prose = _TRAILING_SPACE.sub("\n", piece)
                out.append(_BLANK_LINES.sub("\n\n", prose))
            else:
                # An unclosed fence runs to the end of the message, as Discord renders it.
                out.append(self.shorten_code(piece))
        return "```".join(out).strip()

    def shorten_message(self, text: str) -> str:
        limit = self.options.max_message_chars
        if len(text) <= limit:
            return text
        self.truncated_messages += 1
        head = text[: limit * 2 // 3]
        tail = text[len(text) - limit // 4 :]
        return f"{head}[… {len(text) - len(head) - len(tail)} chars …]{tail}"


def _describe_extras(message: ChatMessage) -> list[str]:
    # Attachment names were reduced to decoded file names at the door (sanitize).
    parts = [f"[file: {a}]" for a in message.attachments if a]
    parts.extend(f"[embed: {e.strip()}]" for e in message.embeds if e and e.strip())
    stickers: Any = message.extra.get("stickers") if message.extra else None
    for sticker in stickers or ():
        name = sticker.get("name") if isinstance(sticker, dict) else sticker
        if isinstance(name, str) and name.strip():
            parts.append(f"[sticker: {name.strip()}]")
    return parts


def _only_emoji(text: str) -> bool:
    stripped = _SHORTCODE.sub("", text)
    for char in stripped:
        if char.isspace():
            continue
        category = unicodedata.category(char)
        # So = symbols (emoji), Sk = modifiers, Mn/Me = combining marks and keycaps,
        # Cf = zero-width joiners and variation selectors, P* = punctuation around them.
        if category in ("So", "Sk", "Mn", "Me", "Cf") or category.startswith("P"):
            continue
        return False
    return True


def build_transcript(
    messages: Sequence[ChatMessage],
    channel: ChannelInfo,
    *,
    options: TranscriptOptions | None = None,
    directory: MentionDirectory | None = None,
) -> Transcript:
    """Clean, filter, neutralise and alias ``messages`` (oldest first) into a :class:`Transcript`.

    Nothing of an opted-out user survives: their messages are dropped and mentions of them
    become ``@someone``.  The messages are expected to have passed the fetch stage's
    sanitiser (:mod:`shared.summarize.sanitize`: redacted there, once, for every consumer);
    here everything that reaches the prompt — message text, author and mention names, file
    names, embed and sticker text, resolved channel and role names — is neutralised
    (:func:`neutralize`), so it can imitate neither a line header nor a delimiter tag.
    """
    options = options or TranscriptOptions()
    directory = directory or MentionDirectory()
    tz: tzinfo = ZoneInfo(options.timezone) if options.timezone != "UTC" else UTC
    noise = [re.compile(p, re.IGNORECASE) for p in options.noise_patterns]
    allow_bots = {b.casefold() for b in options.bot_allowlist}

    # One display name per user id, unique within the transcript by how it *looks*: "alice",
    # "Alice", "аlice" (Cyrillic а) and "𝐚𝐥𝐢𝐜𝐞" are four users, not one.
    authors: dict[str, str] = {}
    taken: dict[str, str] = {}
    for message in messages:
        if message.author_id in authors:
            continue
        name = _clean_name(message.author_name)
        candidate, suffix = name, 2
        while taken.get(skeleton(candidate), message.author_id) != message.author_id:
            candidate, suffix = f"{name}~{suffix}", suffix + 1
        authors[message.author_id] = candidate
        taken[skeleton(candidate)] = message.author_id

    cleaner = _Cleaner(options, directory, authors, tz)
    dropped: Counter[str] = Counter()
    redactions: Counter[str] = Counter()
    lines: list[TranscriptLine] = []
    alias_of: dict[str, str] = {}

    for message in messages:
        reason = _drop_reason(message, options, allow_bots)
        if reason:
            dropped[reason] += 1
            continue
        body = cleaner.clean_body(message.content)
        extras = _describe_extras(message)
        if not body and not extras:
            dropped["empty"] += 1
            continue
        if not extras and (
            any(p.fullmatch(body) for p in noise) or (options.drop_emoji_only and _only_emoji(body))
        ):
            dropped["noise"] += 1
            continue
        full = " ".join([body, *extras]) if body else " ".join(extras)
        source = neutralize(full)
        redactions.update(p.group(0)[1:-1] for p in _PLACEHOLDER.finditer(source))
        alias = f"m{len(lines) + 1}"
        reply_alias = alias_of.get(message.reply_to) if message.reply_to else None
        mentions = tuple(
            name
            for name in (_clean_name(m) for m in message.mentions)
            if name.casefold() not in cleaner.opted_out_names
        )
        lines.append(
            TranscriptLine(
                alias=alias,
                message_id=message.id,
                timestamp=message.timestamp,
                author_id=message.author_id,
                author=authors[message.author_id],
                reply_alias=reply_alias,
                text=cleaner.shorten_message(source),
                source_text=source,
                reactions=message.reactions,
                is_pinned=message.is_pinned,
                mentions=mentions,
            )
        )
        alias_of[message.id] = alias

    stats = TranscriptStats(
        messages_total=len(messages),
        kept=len(lines),
        dropped=dict(dropped),
        redactions=dict(redactions),
        truncated_code_blocks=cleaner.truncated_code_blocks,
        truncated_messages=cleaner.truncated_messages,
    )
    return Transcript(channel=channel, lines=lines, stats=stats, tz=tz)


def _drop_reason(
    message: ChatMessage, options: TranscriptOptions, allow_bots: set[str]
) -> str | None:
    if message.author_id in options.opted_out_user_ids:
        return "opted_out"
    if message.is_system and not options.keep_system:
        return "system"
    if (
        message.is_bot
        and not options.keep_bots
        and message.author_id not in options.bot_allowlist
        and message.author_name.casefold() not in allow_bots
    ):
        return "bot"
    return None
