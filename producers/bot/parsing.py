"""Parse what people type into commands: summary windows, message links, languages, formats,
lists of channels.

Every error is an :class:`~shared.errors.InvalidInputError` whose message says what is wrong and
how to fix it, ready to show in Discord.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Literal

from shared.domain.messages import SNOWFLAKE_DIGITS, snowflake_time
from shared.errors import InvalidInputError
from shared.jobs import DiscordChannelSource
from shared.summarize.content import SummaryFormat

__all__ = [
    "MAX_HOURS",
    "MessageLink",
    "Window",
    "parse_channel_mentions",
    "parse_format",
    "parse_language",
    "parse_message_link",
    "parse_since",
    "parse_window",
]

MAX_HOURS = 168

_ID = SNOWFLAKE_DIGITS
_LINK = re.compile(
    r"^<?https?://(?:(?:ptb|canary)\.)?discord(?:app)?\.com/channels/"
    rf"(?P<guild>@me|{_ID})/(?P<channel>{_ID})/(?P<message>{_ID})/?>?$"
)
_CHANNEL_MENTION = re.compile(rf"^<#(?P<id>{_ID})>$|^(?P<bare>{_ID})$")
_MENTION_SEPARATORS = re.compile(r"[\s,]+")
_AGO = re.compile(r"^(?P<amount>\d{1,4})\s*(?P<unit>m|min|h|d)?$", re.IGNORECASE)
_UNITS = {
    "m": timedelta(minutes=1),
    "min": timedelta(minutes=1),
    "h": timedelta(hours=1),
    "d": timedelta(days=1),
}
_LANGUAGE = re.compile(r"^[A-Za-z]{2,3}(?:-[A-Za-z0-9]{2,8}){0,2}$")


@dataclass(frozen=True)
class MessageLink:
    """A parsed ``https://discord.com/channels/GUILD/CHANNEL/MESSAGE`` link."""

    guild_id: int
    channel_id: int
    message_id: int

    @property
    def created_at(self) -> datetime:
        """When the linked message was written (from its snowflake)."""
        return snowflake_time(str(self.message_id))

    @property
    def url(self) -> str:
        """The canonical link."""
        return f"https://discord.com/channels/{self.guild_id}/{self.channel_id}/{self.message_id}"


def parse_message_link(text: str) -> MessageLink:
    """Parse a message link as Discord's "Copy Message Link" gives it."""
    match = _LINK.match(text.strip())
    if match is None:
        raise InvalidInputError(
            f"{text.strip()[:120]!r} is not a message link; right-click a message, choose "
            "'Copy Message Link' and paste it (https://discord.com/channels/…/…/…)"
        )
    if match["guild"] == "@me":
        raise InvalidInputError(
            "that link points into a direct message; only server channels can be summarized"
        )
    return MessageLink(int(match["guild"]), int(match["channel"]), int(match["message"]))


@dataclass(frozen=True)
class Window:
    """Which messages to summarize: the last hours, the last N messages, or since a message."""

    kind: Literal["hours", "messages", "since"]
    hours: int | None = None
    messages: int | None = None
    since: MessageLink | None = None

    def describe(self) -> str:
        """Plain words for replies: "the last 24 hours"."""
        if self.kind == "hours":
            return "the last hour" if self.hours == 1 else f"the last {self.hours} hours"
        if self.kind == "messages":
            return (
                "the last message" if self.messages == 1 else f"the last {self.messages} messages"
            )
        assert self.since is not None
        return f"messages since {self.since.url}"

    def start(self, now: datetime) -> datetime | None:
        """The earliest time the window reaches, when it is a time (None for a message count)."""
        if self.kind == "hours":
            assert self.hours is not None
            return now - timedelta(hours=self.hours)
        if self.kind == "since":
            assert self.since is not None
            return self.since.created_at
        return None

    def to_source(self, *, guild_id: int, channel_id: int, now: datetime) -> DiscordChannelSource:
        """The job source reading this window of ``channel_id``."""
        if self.kind == "hours":
            return DiscordChannelSource(
                guild_id=str(guild_id), channel_id=str(channel_id), after=self.start(now)
            )
        if self.kind == "messages":
            return DiscordChannelSource(
                guild_id=str(guild_id), channel_id=str(channel_id), limit=self.messages
            )
        assert self.since is not None
        # Discord's ``after`` cursor is exclusive; one below the id includes the message itself.
        return DiscordChannelSource(
            guild_id=str(guild_id),
            channel_id=str(channel_id),
            after_message_id=str(self.since.message_id - 1),
        )


def parse_window(
    *,
    hours: int | None = None,
    messages: int | None = None,
    since: str | MessageLink | None = None,
    default_hours: int = 24,
    max_messages: int = 10_000,
    now: datetime | None = None,
) -> Window:
    """Validate the window options; at most one may be given (none → ``default_hours``)."""
    given = [
        name
        for name, value in (("hours", hours), ("messages", messages), ("since", since))
        if value is not None
    ]
    if len(given) > 1:
        raise InvalidInputError(
            f"give only one of hours, messages or since (you gave {' and '.join(given)})"
        )
    if messages is not None:
        if not 1 <= messages <= max_messages:
            raise InvalidInputError(f"messages must be between 1 and {max_messages}")
        return Window("messages", messages=messages)
    if since is not None:
        link = since if isinstance(since, MessageLink) else parse_message_link(since)
        moment = now or datetime.now(UTC)
        if link.created_at > moment + timedelta(minutes=5):
            raise InvalidInputError("that message link points into the future; check the link")
        return Window("since", since=link)
    value = default_hours if hours is None else hours
    if not 1 <= value <= MAX_HOURS:
        raise InvalidInputError(f"hours must be between 1 and {MAX_HOURS} (one week)")
    return Window("hours", hours=value)


def parse_since(text: str | None, *, guild_id: int, now: datetime) -> datetime | None:
    """When a catch-up starts: ``12h``, ``90m``, ``2d`` or a bare number of hours ago, or a
    message link of this server (from that message on).  None/blank: from the member's last
    message.  How far back a catch-up may reach is the core's rule, checked on submission."""
    if text is None or not text.strip():
        return None
    value = text.strip()
    ago = _AGO.match(value)
    if ago is not None:
        unit = (ago["unit"] or "h").lower()
        step = _UNITS[unit]
        amount = int(ago["amount"])
        if amount < 1:
            raise InvalidInputError("since must be at least 1 (e.g. 12h for twelve hours ago)")
        return now - amount * step
    if value.lower().startswith(("http", "<http")):
        link = parse_message_link(value)
        if link.guild_id != guild_id:
            raise InvalidInputError("that message link points into another server")
        if link.created_at > now + timedelta(minutes=5):
            raise InvalidInputError("that message link points into the future; check the link")
        return link.created_at
    raise InvalidInputError(
        f"{value[:40]!r} is not a time; give hours ago (12h), minutes (90m), days (2d) or a "
        "message link"
    )


def parse_language(text: str | None) -> str | None:
    """A language tag such as ``en``, ``de`` or ``pt-BR`` (None/blank: the server default)."""
    if text is None or not text.strip():
        return None
    value = text.strip()
    if len(value) > 16 or not _LANGUAGE.match(value):
        raise InvalidInputError(
            f"{value[:40]!r} is not a language code; use one such as en, de, fr or pt-BR"
        )
    return value


def parse_format(text: str | None) -> SummaryFormat | None:
    """One of brief, structured, detailed, technical; None when none is given (the server's
    default format applies)."""
    if not text:
        return None
    try:
        return SummaryFormat(text.strip().lower())
    except ValueError:
        names = ", ".join(f.value for f in SummaryFormat)
        raise InvalidInputError(f"unknown format {text!r}; choose one of {names}") from None


def parse_channel_mentions(text: str | None) -> list[str]:
    """The channel ids of channel mentions (``<#id>``, or bare ids) separated by spaces or
    commas, in order; an empty list for no text."""
    ids: list[str] = []
    for token in _MENTION_SEPARATORS.split((text or "").strip()):
        if not token:
            continue
        match = _CHANNEL_MENTION.match(token)
        if match is None:
            raise InvalidInputError(
                f"{token!r} is not a channel: mention the channels, e.g. #general #dev "
                "(type # and pick each one)"
            )
        ids.append(match.group("id") or match.group("bare"))
    return ids
