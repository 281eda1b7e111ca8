"""The chat message model every stage shares: sources produce it, summarizers read it.

A ``ChatMessage`` is deliberately small and flat: the fetch stage caches thousands of them in
Redis as compact JSON, so each field earns its place.  ``to_wire``/``from_wire`` use short keys
for that cache; nothing here is pickled.

Every timestamp is range-checked where it enters (:func:`check_timestamp`, and again when a
``ChatMessage`` is built): a year-9999 time from a hostile export would otherwise overflow in
date arithmetic far downstream.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from sys import intern
from typing import Annotated, Any

from pydantic import AfterValidator, Field

from shared.errors import InvalidInputError

__all__ = [
    "CONVERSATION_KIND",
    "DISCORD_EPOCH_MS",
    "EARLIEST_TIMESTAMP",
    "LATEST_TIMESTAMP",
    "SNOWFLAKE_DIGITS",
    "SNOWFLAKE_MAX",
    "SNOWFLAKE_PATTERN",
    "ChannelInfo",
    "ChatMessage",
    "SnowflakeText",
    "check_timestamp",
    "is_snowflake",
    "jump_url",
    "message_link",
    "snowflake_time",
    "timestamp_problem",
]

DISCORD_EPOCH_MS = 1420070400000

#: ``ChannelInfo.kind`` of a conversation a client sent as a message array (not from Discord).
CONVERSATION_KIND = "Conversation"
#: The largest Discord id.  Snowflakes are 64-bit and Discord refuses anything larger with a
#: 400 ("snowflake value should be less than or equal to …"), so a larger value is bad input
#: here, not a request to send.
SNOWFLAKE_MAX = 2**63 - 1
#: A Discord id (a snowflake) written as text, as a regex fragment: 15 to 19 ASCII digits (a
#: 20-digit id would be from the 2090s).  Every check of an id that arrives as text (API
#: fields, settings, CLI arguments, bot mentions and links, exports) is built on this one, with
#: :data:`SNOWFLAKE_MAX` as its bound: :func:`is_snowflake`, or :data:`SnowflakeText` in a model.
SNOWFLAKE_DIGITS = "[0-9]{15,19}"
SNOWFLAKE_PATTERN = rf"^{SNOWFLAKE_DIGITS}$"
_SNOWFLAKE = re.compile(SNOWFLAKE_DIGITS)

#: The range a message time must fall in.  Discord began in 2015, but exports converted from
#: older chat logs are welcome; anything outside these bounds is a damaged or hostile input.
EARLIEST_TIMESTAMP = datetime(1970, 1, 1, tzinfo=UTC)
LATEST_TIMESTAMP = datetime(2100, 1, 1, tzinfo=UTC)


def timestamp_problem(value: datetime) -> str | None:
    """Why ``value`` cannot be a message time (outside the supported range), or None.

    A naive value is compared as if it were UTC; refusing naive times is up to the caller.
    """
    aware = value if value.tzinfo is not None else value.replace(tzinfo=UTC)
    if EARLIEST_TIMESTAMP <= aware < LATEST_TIMESTAMP:
        return None
    return (
        f"{value.isoformat()} is outside the supported range "
        f"{EARLIEST_TIMESTAMP:%Y-%m-%d} to {LATEST_TIMESTAMP:%Y-%m-%d}"
    )


def check_timestamp(value: datetime, what: str) -> datetime:
    """Return ``value``, or raise a one-line :class:`InvalidInputError` naming ``what``."""
    problem = timestamp_problem(value)
    if problem is not None:
        raise InvalidInputError(f"{what}: the time {problem}; fix or remove it")
    return value


def snowflake_time(snowflake: str | int) -> datetime:
    """Return the creation time encoded in a Discord snowflake (UTC).

    Raises :class:`InvalidInputError` for a value that is not a snowflake of a supported time.
    """
    try:
        ms = (int(snowflake) >> 22) + DISCORD_EPOCH_MS
        when = datetime.fromtimestamp(ms / 1000, tz=UTC)
    except (OverflowError, OSError, ValueError):
        raise InvalidInputError(
            f"{str(snowflake)[:40]!r} is not a Discord snowflake of a supported time"
        ) from None
    return check_timestamp(when, f"snowflake {snowflake}")


def jump_url(guild_id: str | None, channel_id: str, message_id: str) -> str:
    """Discord's jump link for a message (``@me`` stands in for the guild of a DM)."""
    return f"https://discord.com/channels/{guild_id or '@me'}/{channel_id}/{message_id}"


def is_snowflake(text: str | None) -> bool:
    """True when ``text`` is a Discord id (:data:`SNOWFLAKE_PATTERN`, at most
    :data:`SNOWFLAKE_MAX`), with nothing around it (``re.match`` with ``$`` would also take one
    trailing newline)."""
    return (
        text is not None and _SNOWFLAKE.fullmatch(text) is not None and int(text) <= SNOWFLAKE_MAX
    )


def _within_range(text: str) -> str:
    if int(text) > SNOWFLAKE_MAX:
        raise ValueError(f"{text} is not a Discord id: Discord ids are at most {SNOWFLAKE_MAX}")
    return text


#: A Discord id as a model field: :data:`SNOWFLAKE_PATTERN` (which the JSON schema shows too)
#: and :data:`SNOWFLAKE_MAX`.
SnowflakeText = Annotated[str, Field(pattern=SNOWFLAKE_PATTERN), AfterValidator(_within_range)]


def message_link(channel: ChannelInfo, channel_id: str, message_id: str) -> str | None:
    """The jump link of a message of ``channel``, or None when none can be built.

    Discord sources (channels, exports) always have one.  A conversation sent as a message
    array has one only when its client gave Discord ids for the guild, the channel and the
    message; other ids (a ticket system's, a chat platform's) would make links that lead nowhere.
    """
    if channel.kind == CONVERSATION_KIND and not all(
        is_snowflake(value) for value in (channel.guild_id, channel_id, message_id)
    ):
        return None
    return jump_url(channel.guild_id, channel_id, message_id)


@dataclass(frozen=True, slots=True)
class ChannelInfo:
    """Where a conversation happened: guild and channel (or thread) ids and names."""

    channel_id: str
    channel_name: str
    guild_id: str | None = None
    guild_name: str | None = None
    kind: str = "GuildTextChat"
    parent_id: str | None = None
    topic: str | None = None

    def to_wire(self) -> dict[str, Any]:
        """Compact JSON-safe form for caches and task payloads: every field, by name."""
        return asdict(self)

    @classmethod
    def from_wire(cls, data: dict[str, Any]) -> ChannelInfo:
        """Inverse of :meth:`to_wire`."""
        return cls(**data)


@dataclass(frozen=True, slots=True)
class ChatMessage:
    """One message of a conversation, already reduced to what summarizing needs.

    ``timestamp`` is always timezone-aware.  ``reply_to`` is the id of the message this one
    answers (Discord reply reference), ``reactions`` the total reaction count, ``mentions`` the
    display names of mentioned users.
    """

    id: str
    channel_id: str
    timestamp: datetime
    author_id: str
    author_name: str
    content: str
    kind: str = "Default"
    is_bot: bool = False
    reply_to: str | None = None
    reactions: int = 0
    attachments: tuple[str, ...] = ()
    embeds: tuple[str, ...] = ()
    mentions: tuple[str, ...] = ()
    is_pinned: bool = False
    edited: bool = False
    extra: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)

    def __post_init__(self) -> None:
        check_timestamp(self.timestamp, f"message {self.id}")

    @property
    def is_system(self) -> bool:
        """True for joins, pins, thread notices and other non-conversation events."""
        return self.kind not in ("Default", "Reply")

    def to_wire(self) -> dict[str, Any]:
        """Compact JSON-safe dict with short keys; empty optional fields are left out."""
        data: dict[str, Any] = {
            "i": self.id,
            "c": self.channel_id,
            "t": self.timestamp.isoformat(),
            "a": self.author_id,
            "n": self.author_name,
            "x": self.content,
        }
        if self.kind != "Default":
            data["k"] = self.kind
        if self.is_bot:
            data["b"] = 1
        if self.reply_to:
            data["r"] = self.reply_to
        if self.reactions:
            data["re"] = self.reactions
        if self.attachments:
            data["at"] = list(self.attachments)
        if self.embeds:
            data["em"] = list(self.embeds)
        if self.mentions:
            data["me"] = list(self.mentions)
        if self.is_pinned:
            data["p"] = 1
        if self.edited:
            data["e"] = 1
        return data

    @classmethod
    def from_wire(cls, data: dict[str, Any]) -> ChatMessage:
        """Inverse of :meth:`to_wire`.

        Channel, author and kind strings repeat on every message of a channel: they are
        interned, so 100,000 cached messages of a few hundred people hold each name once.
        """
        return cls(
            id=data["i"],
            channel_id=intern(data["c"]),
            timestamp=datetime.fromisoformat(data["t"]),
            author_id=intern(data["a"]),
            author_name=intern(data["n"]),
            content=data["x"],
            kind=intern(data.get("k", "Default")),
            is_bot=bool(data.get("b")),
            reply_to=data.get("r"),
            reactions=int(data.get("re", 0)),
            attachments=tuple(data.get("at", ())),
            embeds=tuple(data.get("em", ())),
            mentions=tuple(intern(m) for m in data.get("me", ())),
            is_pinned=bool(data.get("p")),
            edited=bool(data.get("e")),
        )
