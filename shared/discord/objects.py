"""Typed views of what Discord returns (users, messages, channels) and of webhook URLs.

Each object keeps the full JSON in ``raw`` for anything not modelled; the modelled fields are the
ones the adapter's callers actually read.  :class:`WebhookRef` holds a webhook's token as a
``SecretStr``: it never appears in ``repr`` or logs.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from pydantic import SecretStr

from shared.domain.messages import SNOWFLAKE_DIGITS, snowflake_time
from shared.errors import InvalidInputError

__all__ = ["Channel", "ChannelType", "ReceivedMessage", "User", "WebhookRef"]

_WEBHOOK_URL = re.compile(
    rf"^https?://[^/]+(?:/api(?:/v\d+)?)?/webhooks/(?P<id>{SNOWFLAKE_DIGITS})/"
    r"(?P<token>[A-Za-z0-9_\-.]+)/?"
    r"(?:\?.*)?$"
)


class ChannelType:
    """Discord channel type numbers the adapter cares about."""

    GUILD_TEXT = 0
    DM = 1
    GUILD_VOICE = 2
    GROUP_DM = 3
    GUILD_CATEGORY = 4
    GUILD_ANNOUNCEMENT = 5
    ANNOUNCEMENT_THREAD = 10
    PUBLIC_THREAD = 11
    PRIVATE_THREAD = 12
    GUILD_STAGE_VOICE = 13
    GUILD_FORUM = 15
    GUILD_MEDIA = 16
    THREADS = frozenset({10, 11, 12})


@dataclass(frozen=True, slots=True)
class User:
    """A Discord user (or a webhook's pseudo-user)."""

    id: str
    username: str
    global_name: str | None = None
    bot: bool = False
    nick: str | None = None

    @property
    def display_name(self) -> str:
        """Server nickname, else global display name, else username."""
        return self.nick or self.global_name or self.username

    @classmethod
    def from_json(cls, data: dict[str, Any], member: dict[str, Any] | None = None) -> User:
        """Build from a user object (and the optional guild member object with ``nick``)."""
        member = member if member is not None else data.get("member")
        return cls(
            id=str(data["id"]),
            username=str(data.get("username") or ""),
            global_name=data.get("global_name"),
            bot=bool(data.get("bot")),
            nick=(member or {}).get("nick") if isinstance(member, dict) else None,
        )


def _parse_time(value: str | None) -> datetime | None:
    return None if not value else datetime.fromisoformat(value)


@dataclass(frozen=True, slots=True)
class ReceivedMessage:
    """A message as Discord returned it."""

    id: str
    channel_id: str
    content: str
    author: User
    timestamp: datetime
    type: int = 0
    edited_timestamp: datetime | None = None
    webhook_id: str | None = None
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ReceivedMessage:
        """Build from Discord's message JSON."""
        return cls(
            id=str(data["id"]),
            channel_id=str(data.get("channel_id", "")),
            content=str(data.get("content") or ""),
            author=User.from_json(data.get("author") or {"id": "0"}, data.get("member")),
            timestamp=_parse_time(data.get("timestamp")) or snowflake_time(data["id"]),
            type=int(data.get("type") or 0),
            edited_timestamp=_parse_time(data.get("edited_timestamp")),
            webhook_id=data.get("webhook_id"),
            raw=data,
        )


@dataclass(frozen=True, slots=True)
class Channel:
    """A guild channel, thread or DM channel."""

    id: str
    type: int
    name: str | None = None
    guild_id: str | None = None
    parent_id: str | None = None
    topic: str | None = None
    last_message_id: str | None = None
    archived: bool = False
    locked: bool = False
    archive_timestamp: datetime | None = None
    joined: bool = False
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @property
    def is_thread(self) -> bool:
        """True for announcement, public and private threads."""
        return self.type in ChannelType.THREADS

    @property
    def created_at(self) -> datetime:
        """Creation time from the snowflake."""
        return snowflake_time(self.id)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Channel:
        """Build from Discord's channel JSON."""
        meta = data.get("thread_metadata") or {}
        return cls(
            id=str(data["id"]),
            type=int(data.get("type") or 0),
            name=data.get("name"),
            guild_id=data.get("guild_id"),
            parent_id=data.get("parent_id"),
            topic=data.get("topic"),
            last_message_id=data.get("last_message_id"),
            archived=bool(meta.get("archived")),
            locked=bool(meta.get("locked")),
            archive_timestamp=_parse_time(meta.get("archive_timestamp")),
            joined="member" in data,
            raw=data,
        )


@dataclass(frozen=True, slots=True)
class WebhookRef:
    """A webhook to execute: id and token (secret), e.g. from a webhook URL."""

    id: str
    token: SecretStr

    @classmethod
    def from_url(cls, url: str | SecretStr) -> WebhookRef:
        """Parse ``https://discord.com/api/webhooks/{id}/{token}``."""
        text = url.get_secret_value() if isinstance(url, SecretStr) else url
        match = _WEBHOOK_URL.match(text.strip())
        if match is None:
            raise InvalidInputError(
                "that is not a Discord webhook URL; copy it from Channel settings > "
                "Integrations > Webhooks (https://discord.com/api/webhooks/<id>/<token>)"
            )
        return cls(id=match["id"], token=SecretStr(match["token"]))

    def __repr__(self) -> str:
        return f"WebhookRef(id={self.id!r}, token=**********)"
