"""Read a DiscordChatExporter (DCE) JSON export as a stream of :class:`ChatMessage`.

DCE (``DiscordChatExporter.Cli export -f Json``) writes one JSON object per channel::

    {"guild": {...}, "channel": {...}, "dateRange": {...}, "exportedAt": "...",
     "messages": [ {...}, ... ], "messageCount": N}

Exports of busy channels reach hundreds of megabytes, so nothing here loads the whole file:
``open_export`` reads only the header (``guild`` and ``channel`` come before ``messages`` in
every file DCE writes) and :meth:`ExportFile.iter_messages` parses one message at a time with
``ijson``.  A file whose ``messages`` array comes *before* ``channel`` (hand-made or rewritten
by another tool) is still accepted: the header is then found by a second streaming pass, which
costs a full read of the file but no memory.

Every problem with the file, including one met halfway through the stream, is raised as a
one-line :class:`~shared.errors.InvalidInputError` saying what is wrong and how to fix it.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

import ijson

from shared.closing import ClosesOnExit
from shared.domain.markup import render_markup
from shared.domain.messages import CONVERSATION_KIND, ChannelInfo, ChatMessage, timestamp_problem
from shared.errors import InvalidInputError
from shared.sources.json_guard import JsonGuard, JsonLimits
from shared.summarize.sanitize import EMBED_SNIPPET, sanitize_text, snippet

__all__ = [
    "THREAD_KINDS",
    "UPLOADED_CHANNEL_ID",
    "ExportFile",
    "count_messages",
    "count_stream",
    "open_export",
    "open_stream",
]

THREAD_KINDS = frozenset({"GuildPublicThread", "GuildPrivateThread", "GuildNewsThread"})
"""DCE channel kinds that are threads: their ``categoryId`` is the parent channel."""

_BUF_SIZE = 64 * 1024
_BOM = b"\xef\xbb\xbf"
_HOW_TO_EXPORT = (
    "export the channel with `DiscordChatExporter.Cli export -c CHANNEL_ID -f Json -o FILE.json`"
)
_REQUIRED = '"id", "timestamp", "content" and "author.id"'
_PLAIN_SHAPE = (
    'every message needs "id", "author" (a name, or {"id", "name"}), "time" (ISO 8601 with a '
    'UTC offset) and "content"; "reply_to", "reactions" (a count) and "attachments" (names) '
    "are optional"
)
_HEADER_KEYS = frozenset({"guild", "channel", "conversation"})

#: The channel id of a message array sent without ``conversation.channel_id``.
UPLOADED_CHANNEL_ID = "upload"
_DM_GUILD_ID = "0"
_MAX_ID = 100
# An id is stored as it comes (only names and text are cleaned), and PostgreSQL refuses a NUL
# in text and JSON: a control character in an id is refused when the document is read.
_ID_CONTROL = re.compile("[\x00-\x1f\x7f]")

#: A custom emoji as DiscordChatExporter writes it (a repeated name gets a ``~n`` suffix).
_EMOJI_RE = re.compile(r"<a?:([A-Za-z0-9_~]+):\d+>")


class _TrackingReader:
    """A binary reader for ijson that remembers the chunk it handed out last.

    yajl reports a parse error with a snippet of the current chunk but no offset; keeping the
    chunk, its start offset and the newlines before it lets us turn that snippet into a byte
    offset, line and column a user can go to.
    """

    def __init__(self, raw: IO[bytes], *, limits: JsonLimits | None = None) -> None:
        self._raw = raw
        name = str(getattr(raw, "name", "the export"))
        self._guard = JsonGuard(name, limits=limits, how_to_fix=_HOW_TO_EXPORT)
        self._started = False
        self.chunk = b""
        self.chunk_start = 0
        self.newlines_before_chunk = 0
        self.total = 0

    def read(self, size: int = -1) -> bytes:
        """Read like a file, skipping a UTF-8 byte order mark at the start.

        Each chunk passes the :class:`JsonGuard` before the parser sees it, so a file nested
        too deep or with a value too large fails here, in bounded memory.
        """
        try:
            data = self._raw.read(size)
        except ValueError:  # the file object was closed under a running iteration
            raise InvalidInputError(
                f"{getattr(self._raw, 'name', 'the export')}: the export was closed while its "
                "messages were being read; finish iterating before closing it"
            ) from None
        if data and not self._started:
            # ijson probes with read(0) first, so the BOM check waits for real data.
            self._started = True
            if data.startswith(_BOM):
                data = data[len(_BOM) :]
                self.total = len(_BOM)
                self._guard.skip(len(_BOM))
        self.newlines_before_chunk += self.chunk.count(b"\n")
        self.chunk_start = self.total
        self.chunk = data
        self.total += len(data)
        self._guard.feed(data)
        return data

    def locate(self, snippet: bytes, caret: int) -> tuple[int, int, int] | None:
        """Byte offset, line and column of a yajl error snippet, or None if not found."""
        text = snippet.lstrip(b" ")
        lead = len(snippet) - len(text)
        if not text.strip() or caret < lead:
            return None
        # yajl prints newlines of the snippet as spaces; do the same before searching.
        haystack = self.chunk.replace(b"\n", b" ").replace(b"\r", b" ")
        index = haystack.find(text)
        if index < 0:
            return None
        # yajl points one byte past the offending character.
        in_chunk = max(0, index + (caret - lead) - 1)
        line = self.newlines_before_chunk + self.chunk.count(b"\n", 0, in_chunk) + 1
        line_start = self.chunk.rfind(b"\n", 0, in_chunk) + 1
        column = len(self.chunk[line_start:in_chunk].decode("utf-8", "replace")) + 1
        return self.chunk_start + in_chunk, line, column


def _json_error(path: Path | str, exc: Exception, reader: _TrackingReader) -> InvalidInputError:
    """Turn an ijson/yajl error into one clear line with the position of the problem."""
    raw = exc.args[0] if exc.args else str(exc)
    data = raw if isinstance(raw, bytes) else str(raw).encode("utf-8", "surrogateescape")
    parts = data.split(b"\n")
    reason = parts[0].decode("utf-8", "replace").strip().rstrip(".") or "invalid JSON"
    if "premature EOF" in reason or "Incomplete JSON" in reason:
        return InvalidInputError(
            f"{path}: the JSON ends early at byte {reader.total}: the file is truncated "
            f"(an interrupted export or copy?); {_HOW_TO_EXPORT} again"
        )
    where = f"in the chunk at bytes {reader.chunk_start}-{reader.total}"
    if len(parts) >= 3 and b"^" in parts[2]:
        found = reader.locate(parts[1], parts[2].index(b"^"))
        if found is not None:
            offset, line, column = found
            where = f"at line {line}, column {column} (byte {offset})"
        context = _quote(parts[1].strip().decode("utf-8", "replace"))
        if context:
            where += f" near {context!r}"
    if "integer overflow" in reason:
        # Valid JSON that the reader cannot hold: saying "malformed" would send the user
        # looking for a syntax error that is not there.
        return InvalidInputError(
            f"{path}: a number {where} is too large (integers here fit in 64 bits, as "
            "Discord's ids and counts do); write an id as a string, or fix the number"
        )
    return InvalidInputError(
        f"{path}: malformed JSON {where}: {reason}; the file is not valid JSON, "
        f"{_HOW_TO_EXPORT} again or fix the file"
    )


def _quote(text: str) -> str:
    """Input quoted in an error (stored with the job, shown, logged): redacted, then cut short."""
    return sanitize_text(text)[:80]


def _not_dce(path: Path | str, why: str) -> InvalidInputError:
    return InvalidInputError(
        f"{path}: {why}, so it does not look like a DiscordChatExporter JSON export; "
        f"{_HOW_TO_EXPORT}"
    )


def _open_binary(path: Path) -> IO[bytes]:
    """Open ``path`` for reading, turning every OS problem into a clear InvalidInputError."""
    try:
        handle = path.open("rb")
    except FileNotFoundError:
        raise InvalidInputError(
            f"{path}: no such file; check the path of the DiscordChatExporter JSON export"
        ) from None
    except IsADirectoryError:
        raise InvalidInputError(
            f"{path}: is a directory, not a file; give the path of the exported .json file"
        ) from None
    except OSError as exc:
        raise InvalidInputError(
            f"{path}: cannot be read ({exc.strerror or exc}); check the path and its permissions"
        ) from None
    if os.fstat(handle.fileno()).st_size == 0:
        handle.close()
        raise InvalidInputError(
            f"{path}: the file is empty (0 bytes); {_HOW_TO_EXPORT} and check it finished"
        )
    return handle


@dataclass(frozen=True)
class _Header:
    """What the header scan found: a DCE export's guild and channel objects, or a message
    array's optional conversation; ``items`` is the ijson prefix of the messages."""

    guild: dict[str, Any] | None
    channel: dict[str, Any] | None
    conversation: dict[str, Any] | None
    items: str

    @property
    def is_export(self) -> bool:
        """True for a DiscordChatExporter export, False for a message array."""
        return self.channel is not None


def _build_value(events: Iterator[tuple[str, str, Any]]) -> Any:
    """Consume the events of one JSON value and return it as Python data."""
    builder = ijson.ObjectBuilder()
    depth = 0
    for _prefix, event, value in events:
        builder.event(event, value)
        if event in ("start_map", "start_array"):
            depth += 1
        elif event in ("end_map", "end_array"):
            depth -= 1
        if depth == 0:
            return builder.value
    return builder.value  # pragma: no cover - ijson raises on truncated input before this


def _trailing(handle: IO[bytes], path: Path | str, keys: frozenset[str]) -> dict[str, Any]:
    """Top-level values of ``keys`` found anywhere in the object, by one streaming pass.

    Only needed when ``messages`` comes before them (never in files DCE writes); the values
    are built, the messages only parsed past.
    """
    handle.seek(0)
    reader = _TrackingReader(handle)
    found: dict[str, Any] = {}
    events = ijson.parse(reader, use_float=True, buf_size=_BUF_SIZE)
    try:
        for prefix, event, value in events:
            if prefix == "" and event == "map_key" and value in keys:
                found[value] = _build_value(events)
    except ijson.JSONError as exc:
        raise _json_error(path, exc, reader) from None
    return found


def _scan_header(handle: IO[bytes], path: Path | str) -> _Header:
    """Read the top level up to the messages; check the document's shape on the way.

    A top-level array is a message array; an object with ``guild`` or ``channel`` is a DCE
    export; any other object with a ``messages`` array is a message array with an optional
    ``conversation``.
    """
    handle.seek(0)
    reader = _TrackingReader(handle)
    events = ijson.parse(reader, use_float=True, buf_size=_BUF_SIZE)
    found: dict[str, Any] = {}
    saw_messages = False
    started = False
    try:
        first = next(events, None)
        started = True
        if first is not None and first[1] == "start_array":
            return _Header(None, None, None, items="item")
        if first is None or first[1] != "start_map":
            raise _not_dce(path, "the top level of the JSON is a single value, not an object")
        for prefix, event, value in events:
            if prefix == "" and event == "end_map":
                break
            if event != "map_key" or prefix != "":  # pragma: no cover - values are consumed
                continue
            if value == "messages":
                _prefix, kind, _value = next(events)
                if kind != "start_array":
                    raise _not_dce(path, '"messages" is not an array')
                saw_messages = True
                break
            built = _build_value(events)
            if value in _HEADER_KEYS:
                found[value] = built
    except ijson.JSONError as exc:
        if not started:
            head = reader.chunk.strip()
            if not head:
                raise InvalidInputError(
                    f"{path}: the file holds only whitespace, no JSON; {_HOW_TO_EXPORT}"
                ) from None
            start = head[:20].decode("utf-8", "replace")
            raise InvalidInputError(
                f"{path}: the file is not JSON (it starts with {start!r}); an HTML, TXT or CSV "
                f"export cannot be read: {_HOW_TO_EXPORT}"
            ) from None
        raise _json_error(path, exc, reader) from None
    if not saw_messages:
        raise _not_dce(path, 'the JSON object has no "messages" array')
    # Only when "messages" came first (never in files DCE writes) is the header after it:
    # another streaming pass finds it there.
    if "conversation" not in found and not {"guild", "channel"} <= found.keys():
        found = {**_trailing(handle, path, _HEADER_KEYS), **found}
    guild, channel = found.get("guild"), found.get("channel")
    if guild is None and channel is None:
        conversation = found.get("conversation")
        if conversation is not None and not isinstance(conversation, dict):
            raise InvalidInputError(
                f'{path}: "conversation" is not an object; give {{"name": ...}} and, for '
                'jump links to Discord, "guild_id" and "channel_id"',
                field="conversation",
            )
        return _Header(None, None, conversation, items="messages.item")
    if not isinstance(channel, dict):
        raise _not_dce(path, 'the JSON object has no "channel" object')
    if channel.get("id") is None:
        raise _not_dce(path, 'the "channel" object has no "id"')
    return _Header(guild if isinstance(guild, dict) else None, channel, None, "messages.item")


def _text(value: Any) -> str | None:
    """A JSON scalar as text (ids may be numbers in hand-made files); None for null/empty."""
    if value is None or isinstance(value, dict | list | bool):
        return None
    text = str(value)
    return text or None


def _channel_info(header: _Header) -> ChannelInfo:
    if header.channel is None:
        about = header.conversation or {}
        return ChannelInfo(
            channel_id=_text(about.get("channel_id")) or UPLOADED_CHANNEL_ID,
            channel_name=_text(about.get("name")) or "uploaded conversation",
            guild_id=_text(about.get("guild_id")),
            kind=CONVERSATION_KIND,
        )
    channel = header.channel
    guild = header.guild or {}
    kind = _text(channel.get("type")) or "GuildTextChat"
    guild_id = _text(guild.get("id"))
    return ChannelInfo(
        channel_id=str(channel["id"]),
        channel_name=_text(channel.get("name")) or str(channel["id"]),
        guild_id=None if guild_id == _DM_GUILD_ID else guild_id,
        guild_name=None if guild_id == _DM_GUILD_ID else _text(guild.get("name")),
        kind=kind,
        parent_id=_text(channel.get("categoryId")) if kind in THREAD_KINDS else None,
        topic=_text(channel.get("topic")),
    )


def _display_name(user: dict[str, Any]) -> str | None:
    return _text(user.get("nickname")) or _text(user.get("name"))


def _list(message: dict[str, Any], key: str) -> list[Any]:
    value = message.get(key)
    return value if isinstance(value, list) else []


def _dicts(message: dict[str, Any], key: str) -> list[dict[str, Any]]:
    return [item for item in _list(message, key) if isinstance(item, dict)]


def _embed_text(embed: dict[str, Any]) -> str | None:
    title = _text(embed.get("title"))
    if title:
        return title
    url = _text(embed.get("url"))
    if url:
        return url
    description = _text(embed.get("description"))
    if description:
        return snippet(description, EMBED_SNIPPET)
    return None


def _attachment_name(attachment: dict[str, Any]) -> str | None:
    name = _text(attachment.get("fileName"))
    if name:
        return name
    url = _text(attachment.get("url"))
    return url.rsplit("/", 1)[-1].split("?", 1)[0] or None if url else None


def _resolve_markup(
    content: str, message: dict[str, Any], author: dict[str, Any], channel: ChannelInfo
) -> str:
    """Rewrite raw Discord markup (``--markdown false`` exports) as DCE would render it."""
    if "<" not in content:
        return content
    users: dict[str, str] = {}
    roles: dict[str, str] = {}
    for person in [author, *_dicts(message, "mentions")]:
        user_id, name = _text(person.get("id")), _display_name(person)
        if user_id and name:
            users[user_id] = name
        for entry in person.get("roles") or []:
            if isinstance(entry, dict) and _text(entry.get("id")) and _text(entry.get("name")):
                roles[str(entry["id"])] = str(entry["name"])
    known_channels = {channel.channel_id: channel.channel_name}
    return render_markup(
        content, users=users, roles=roles, channels=known_channels, emoji=_EMOJI_RE
    )


def _pointer(items: str, index: int) -> str:
    """The JSON pointer of the message at ``index`` (an export's ``messages`` array, or a
    message array at the top)."""
    return f"messages/{index}" if items.startswith("messages") else str(index)


class _MessageMapper:
    """Maps one DCE message object to a ChatMessage; knows the file for error messages."""

    def __init__(self, path: Path | str, channel: ChannelInfo, items: str) -> None:
        self._path = path
        self._channel = channel
        self._items = items

    def _field(self, index: int) -> str:
        return _pointer(self._items, index)

    #: How an error about one message ends: what every message needs, and how to fix it.
    _fix = f"every message needs {_REQUIRED}: {_HOW_TO_EXPORT} again or fix that message"

    def _bad(self, index: int, msg_id: Any, problem: str) -> InvalidInputError:
        ident = f" (id {_quote(str(msg_id))})" if _text(msg_id) else ""
        return InvalidInputError(
            f"{self._path}: message at index {index}{ident} {problem}; {self._fix}",
            field=self._field(index),
        )

    def check_ids(self, index: int, message: ChatMessage) -> None:
        """Refuse the message at ``index`` when one of its ids holds a control character."""
        for what, value in (
            ("id", message.id),
            ("author id", message.author_id),
            ("reply_to", message.reply_to),
        ):
            if value is not None and _ID_CONTROL.search(value):
                raise self._bad(
                    index,
                    None if what == "id" else message.id,
                    f"has a control character in its {what}; ids are plain text",
                )

    def _timestamp(self, index: int, msg_id: str, value: Any, field: str) -> datetime:
        if not isinstance(value, str):
            raise self._bad(index, msg_id, f'has no "{field}"')
        try:
            when = datetime.fromisoformat(value)
        except ValueError:
            raise self._bad(
                index,
                msg_id,
                f'has an invalid "{field}" {_quote(value)!r} (expected ISO 8601 such as '
                "2024-05-01T12:00:00+00:00)",
            ) from None
        # DCE always writes an offset; a bare time from another tool is taken as UTC.
        when = when if when.tzinfo is not None else when.replace(tzinfo=UTC)
        problem = timestamp_problem(when)
        if problem is not None:
            ident = f" (id {_quote(msg_id)})" if msg_id else ""
            raise InvalidInputError(
                f'{self._path}: message at index {index}{ident} has a "{field}" that {problem}; '
                "fix or remove that message",
                field=self._field(index),
            )
        return when

    def _identify(self, index: int, raw: Any) -> tuple[dict[str, Any], str]:
        """The message object and its id, or the error naming the message at ``index``."""
        if not isinstance(raw, dict):
            raise self._bad(index, None, "is not a JSON object")
        msg_id = _text(raw.get("id"))
        if msg_id is None:
            raise self._bad(index, None, 'has no "id"')
        return raw, msg_id

    def map(self, index: int, raw: Any) -> ChatMessage:
        """Build the ChatMessage for the message at ``index`` of the array."""
        raw, msg_id = self._identify(index, raw)
        timestamp = self._timestamp(index, msg_id, raw.get("timestamp"), "timestamp")
        content = raw.get("content")
        if not isinstance(content, str):
            raise self._bad(index, msg_id, 'has no "content" text')
        author = raw.get("author")
        if not isinstance(author, dict) or _text(author.get("id")) is None:
            raise self._bad(index, msg_id, 'has no "author.id"')
        author_id = str(author["id"])
        kind = _text(raw.get("type")) or "Default"
        extra: dict[str, Any] = {}

        content = _resolve_markup(content, raw, author, self._channel)
        attachments = [a for a in map(_attachment_name, _dicts(raw, "attachments")) if a]
        embeds = [e for e in map(_embed_text, _dicts(raw, "embeds")) if e]

        reply_to: str | None = None
        reference = raw.get("reference")
        if isinstance(reference, dict) and _text(reference.get("messageId")):
            ref_id = str(reference["messageId"])
            ref_type = _text(reference.get("type")) or "Default"
            if ref_type == "Forward":
                extra["forwarded_from"] = ref_id
            elif kind in ("Default", "Reply"):
                reply_to = ref_id
            else:
                # A pin notice or thread notice points at its subject; that is no reply.
                extra["reference_id"] = ref_id

        forwarded = raw.get("forwardedMessage")
        if isinstance(forwarded, dict):
            extra["forwarded"] = True
            inner = forwarded.get("content")
            inner_text = _resolve_markup(inner, raw, author, self._channel) if inner else ""
            marked = f"[forwarded] {inner_text}".rstrip()
            content = f"{content}\n{marked}" if content else marked
            attachments += [a for a in map(_attachment_name, _dicts(forwarded, "attachments")) if a]
            embeds += [e for e in map(_embed_text, _dicts(forwarded, "embeds")) if e]

        stickers = [_text(s.get("name")) or "sticker" for s in _dicts(raw, "stickers")]
        if stickers:
            tags = " ".join(f"[sticker: {name}]" for name in stickers)
            content = f"{content} {tags}" if content else tags

        reactions = 0
        for reaction in _dicts(raw, "reactions"):
            count = reaction.get("count")
            reactions += int(count) if isinstance(count, int | float) else 1

        mentions: list[str] = []
        for user in _dicts(raw, "mentions"):
            name = _display_name(user)
            if name and name not in mentions:
                mentions.append(name)

        interaction = raw.get("interaction")
        if isinstance(interaction, dict) and _text(interaction.get("name")):
            extra["interaction"] = str(interaction["name"])

        edited = raw.get("timestampEdited") is not None
        return ChatMessage(
            id=msg_id,
            channel_id=self._channel.channel_id,
            timestamp=timestamp,
            author_id=author_id,
            author_name=_display_name(author) or author_id,
            content=content,
            kind=kind,
            is_bot=author.get("isBot") is True,
            reply_to=reply_to,
            reactions=reactions,
            attachments=tuple(attachments),
            embeds=tuple(embeds),
            mentions=tuple(mentions),
            is_pinned=raw.get("isPinned") is True,
            edited=edited,
            extra=extra,
        )


class _PlainMapper(_MessageMapper):
    """Maps one message of a message array (the API's own message model) to a ChatMessage."""

    _fix = _PLAIN_SHAPE

    def map(self, index: int, raw: Any) -> ChatMessage:
        """Build the ChatMessage for the message at ``index`` of the array."""
        raw, msg_id = self._identify(index, raw)
        if len(msg_id) > _MAX_ID:
            raise self._bad(index, None, f'has an "id" longer than {_MAX_ID} characters')
        if "time" not in raw and "timestamp" in raw:
            raise self._bad(
                index,
                msg_id,
                'has "timestamp" but no "time" (a DiscordChatExporter message? a DCE export '
                'also needs its "guild" and "channel" objects)',
            )
        timestamp = self._timestamp(index, msg_id, raw.get("time"), "time")
        content = raw.get("content")
        if not isinstance(content, str):
            raise self._bad(index, msg_id, 'has no "content" text')
        author = raw.get("author")
        if isinstance(author, dict):
            author_id = _text(author.get("id")) or _text(author.get("name"))
            author_name = _text(author.get("name")) or author_id
            is_bot = author.get("bot") is True
        else:
            author_id = author_name = _text(author)
            is_bot = False
        if author_id is None or author_name is None:
            raise self._bad(index, msg_id, 'has no "author"')
        reactions = raw.get("reactions", 0)
        if isinstance(reactions, bool) or not isinstance(reactions, int) or reactions < 0:
            raise self._bad(index, msg_id, 'has "reactions" that is not a count (0 or more)')
        attachments = raw.get("attachments", [])
        if not isinstance(attachments, list) or not all(isinstance(a, str) for a in attachments):
            raise self._bad(index, msg_id, 'has "attachments" that is not a list of names')
        return ChatMessage(
            id=msg_id,
            channel_id=self._channel.channel_id,
            timestamp=timestamp,
            author_id=author_id,
            author_name=author_name,
            content=content,
            is_bot=is_bot,
            reply_to=_text(raw.get("reply_to")),
            reactions=reactions,
            attachments=tuple(attachments),
        )


#: Opens a fresh binary stream of the same document (a file, a stored upload).
Opener = Callable[[], IO[bytes]]


class ExportFile(ClosesOnExit):
    """An opened DCE JSON export or message array: its channel, and its messages as a lazy
    stream.

    Use as a context manager (or call :meth:`close`) to close the stream.  Each call of
    :meth:`iter_messages` starts a fresh pass from the beginning.  ``path`` is how errors name
    the document (a file path, or "upload" for a stored upload).
    """

    def __init__(
        self, path: Path | str, handle: IO[bytes], header: _Header, opener: Opener
    ) -> None:
        self.path = path
        self.channel = _channel_info(header)
        for what, value in (
            ("channel id", self.channel.channel_id),
            ("guild id", self.channel.guild_id),
            ("parent id", self.channel.parent_id),
        ):
            if value is not None and _ID_CONTROL.search(value):
                handle.close()
                raise InvalidInputError(
                    f"{path}: the conversation's {what} has a control character; ids are plain text"
                )
        self.is_export = header.is_export
        self._items = header.items
        self._opener = opener
        self._handle: IO[bytes] | None = handle
        self._handle_busy = False
        self._extra_handles: list[IO[bytes]] = []

    def close(self) -> None:
        """Close the file (and any handle a still-running iteration holds)."""
        if self._handle is not None:
            self._handle.close()
            self._handle = None
        for handle in self._extra_handles:
            handle.close()
        self._extra_handles.clear()

    def _acquire(self) -> tuple[IO[bytes], bool]:
        if self._handle is None:
            raise InvalidInputError(f"{self.path}: the export was closed; open it again")
        if not self._handle_busy:
            self._handle_busy = True
            self._handle.seek(0)
            return self._handle, True
        # A second iteration while the first is still running gets its own handle.
        extra = self._opener()
        self._extra_handles.append(extra)
        return extra, False

    def _release(self, handle: IO[bytes], is_main: bool) -> None:
        if is_main:
            self._handle_busy = False
        elif handle in self._extra_handles:
            self._extra_handles.remove(handle)
            handle.close()

    def check(self) -> int:
        """Read every message once, as the fetch stage will; the number of messages.

        A producer calls this before it writes a job, so a document the pipeline would refuse
        is refused at the door: :class:`InvalidInputError` for anything :meth:`iter_messages`
        refuses, and for a message id that occurs twice (a summary cites messages by id, and
        the segmenter refuses a repeated one; an export lists each message once).  Only the
        ids are kept, as integers where they are Discord's: a few dozen bytes a message.
        """
        seen: set[int | str] = set()
        index = -1
        for index, message in enumerate(self.iter_messages()):
            ident = message.id
            key: int | str = int(ident) if ident.isascii() and ident.isdigit() else ident
            if key in seen:
                raise InvalidInputError(
                    f"{self.path}: message at index {index} (id {_quote(ident)}) repeats the id "
                    f"of an earlier message; an export lists each message once: {_HOW_TO_EXPORT}"
                    " again or remove the copy",
                    field=_pointer(self._items, index),
                )
            seen.add(key)
        return index + 1

    def iter_messages(self) -> Iterator[ChatMessage]:
        """Yield the messages in file order, parsing one at a time (memory stays bounded).

        Nothing is read until the first message is requested; a problem later in the file
        raises :class:`InvalidInputError` only when the stream reaches it.
        """
        handle, is_main = self._acquire()
        try:
            reader = _TrackingReader(handle)
            kind = _MessageMapper if self.is_export else _PlainMapper
            mapper = kind(self.path, self.channel, self._items)
            items = ijson.items(reader, self._items, use_float=True, buf_size=_BUF_SIZE)
            index = 0
            while True:
                try:
                    raw = next(items)
                except StopIteration:
                    return
                except ijson.JSONError as exc:
                    raise _json_error(self.path, exc, reader) from None
                except OSError as exc:
                    raise InvalidInputError(
                        f"{self.path}: reading failed at byte {reader.total} ({exc}); "
                        "check the file and the disk"
                    ) from None
                message = mapper.map(index, raw)
                mapper.check_ids(index, message)
                yield message
                index += 1
        finally:
            self._release(handle, is_main)


def open_stream(name: str, opener: Opener) -> ExportFile:
    """Open a document that ``opener`` streams (a stored upload) and read its header.

    Raises :class:`InvalidInputError` (errors start with ``name``) for malformed JSON or JSON
    that is neither a DCE export nor a message array.
    """
    handle = opener()
    try:
        header = _scan_header(handle, name)
    except BaseException:
        handle.close()
        raise
    return ExportFile(name, handle, header, opener)


def open_export(path: str | os.PathLike[str]) -> ExportFile:
    """Open a DCE JSON export (or message array) file and read its header.

    Raises :class:`InvalidInputError` for a missing, unreadable or empty file, malformed JSON,
    or JSON that is neither a DCE export nor a message array.
    """
    source = Path(path)
    handle = _open_binary(source)
    try:
        header = _scan_header(handle, source)
    except BaseException:
        handle.close()
        raise
    return ExportFile(source, handle, header, lambda: _open_binary(source))


def _count(handle: IO[bytes], name: Path | str) -> int:
    header = _scan_header(handle, name)
    handle.seek(0)
    reader = _TrackingReader(handle)
    try:
        return sum(1 for _ in ijson.items(reader, header.items + ".id", buf_size=_BUF_SIZE))
    except ijson.JSONError as exc:
        raise _json_error(name, exc, reader) from None


def count_messages(path: str | os.PathLike[str]) -> int:
    """Count the messages of an export by streaming it, without building any ChatMessage.

    The whole file is parsed (malformed JSON anywhere raises :class:`InvalidInputError`), but
    only each message's ``id`` is materialised, which is what makes it fast.  A message without
    an ``id`` is not counted; :meth:`ExportFile.iter_messages` rejects such a message anyway.
    """
    source = Path(path)
    with _open_binary(source) as handle:
        return _count(handle, source)


def count_stream(name: str, opener: Opener) -> int:
    """:func:`count_messages` for a document that ``opener`` streams."""
    with opener() as handle:
        return _count(handle, name)
