"""The chat message model every stage shares: sources produce it, summarizers read it.

A ``ChatMessage`` is deliberately small and flat: the fetch stage caches thousands of them in
Redis as compact JSON, so each field earns its place.  ``to_wire``/``from_wire`` use short keys
for that cache; nothing here is pickled.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

__all__ = ["DISCORD_EPOCH_MS", "ChannelInfo", "ChatMessage", "jump_url", "snowflake_time"]

DISCORD_EPOCH_MS = 1420070400000


def snowflake_time(snowflake: str | int) -> datetime:
    """Return the creation time encoded in a Discord snowflake (UTC)."""
    ms = (int(snowflake) >> 22) + DISCORD_EPOCH_MS
    return datetime.fromtimestamp(ms / 1000, tz=UTC)


def jump_url(guild_id: str | None, channel_id: str, message_id: str) -> str:
    """Discord's jump link for a message (``@me`` stands in for the guild of a DM)."""
    return f"https://discord.com/channels/{guild_id or '@me'}/{channel_id}/{message_id}"


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
        """Compact JSON-safe form for caches and task payloads."""
        return {
            "channel_id": self.channel_id,
            "channel_name": self.channel_name,
            "guild_id": self.guild_id,
            "guild_name": self.guild_name,
            "kind": self.kind,
            "parent_id": self.parent_id,
            "topic": self.topic,
        }

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
        """Inverse of :meth:`to_wire`."""
        return cls(
            id=data["i"],
            channel_id=data["c"],
            timestamp=datetime.fromisoformat(data["t"]),
            author_id=data["a"],
            author_name=data["n"],
            content=data["x"],
            kind=data.get("k", "Default"),
            is_bot=bool(data.get("b")),
            reply_to=data.get("r"),
            reactions=int(data.get("re", 0)),
            attachments=tuple(data.get("at", ())),
            embeds=tuple(data.get("em", ())),
            mentions=tuple(data.get("me", ())),
            is_pinned=bool(data.get("p")),
            edited=bool(data.get("e")),
        )
