"""State of the fake Discord: users, guilds, roles, channels, threads, messages, webhooks, DMs,
reactions and interactions, with Discord's permission rules and JSON shapes.

Objects render to the JSON shapes of ``tests/fixtures/discord`` (REST messages carry no
``guild_id``/``member``; threads carry ``member`` only for a viewer who joined).  Snowflakes are
generated from timestamps, so ids sort like times, as Discord's do.
"""

from __future__ import annotations

import bisect
import itertools
import secrets
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

__all__ = [
    "ADD_REACTIONS",
    "ADMINISTRATOR",
    "ALL_PERMISSIONS",
    "CREATE_PRIVATE_THREADS",
    "CREATE_PUBLIC_THREADS",
    "DEFAULT_BOT_PERMISSIONS",
    "DISCORD_EPOCH_MS",
    "HAS_THREAD",
    "MANAGE_CHANNELS",
    "MANAGE_MESSAGES",
    "MANAGE_THREADS",
    "READ_MESSAGE_HISTORY",
    "SEND_MESSAGES",
    "SEND_MESSAGES_IN_THREADS",
    "THREAD_TYPES",
    "VIEW_CHANNEL",
    "Channel",
    "Guild",
    "Interaction",
    "Member",
    "Message",
    "Snowflakes",
    "User",
    "Webhook",
    "iso",
    "new_token",
    "permissions",
    "snowflake_ms",
]

DISCORD_EPOCH_MS = 1420070400000

# Permission bits (Discord's values).
ADMINISTRATOR = 1 << 3
MANAGE_CHANNELS = 1 << 4
ADD_REACTIONS = 1 << 6
VIEW_CHANNEL = 1 << 10
SEND_MESSAGES = 1 << 11
MANAGE_MESSAGES = 1 << 13
READ_MESSAGE_HISTORY = 1 << 16
CONNECT = 1 << 20
MANAGE_THREADS = 1 << 34
CREATE_PUBLIC_THREADS = 1 << 35
CREATE_PRIVATE_THREADS = 1 << 36
SEND_MESSAGES_IN_THREADS = 1 << 38
ALL_PERMISSIONS = (1 << 50) - 1
#: What a plain bot role gets in the fake unless told otherwise.
DEFAULT_BOT_PERMISSIONS = (
    VIEW_CHANNEL
    | SEND_MESSAGES
    | READ_MESSAGE_HISTORY
    | ADD_REACTIONS
    | CREATE_PUBLIC_THREADS
    | CREATE_PRIVATE_THREADS
    | SEND_MESSAGES_IN_THREADS
)
THREAD_TYPES = frozenset({10, 11, 12})
HAS_THREAD = 1 << 5


def iso(ms: float) -> str:
    """Discord's timestamp format for epoch milliseconds."""
    return datetime.fromtimestamp(ms / 1000, tz=UTC).isoformat(timespec="microseconds")


def snowflake_ms(snowflake: int | str) -> int:
    """Epoch milliseconds of a snowflake."""
    return (int(snowflake) >> 22) + DISCORD_EPOCH_MS


class Snowflakes:
    """Unique ids that encode their creation time, as Discord's do."""

    def __init__(self) -> None:
        self._seq = itertools.count(1)

    def at(self, ms: int) -> int:
        """An id for an object created at ``ms``; the low 22 bits (an increment) keep it unique."""
        return ((int(ms) - DISCORD_EPOCH_MS) << 22) | (next(self._seq) & 0x3FFFFF)


@dataclass
class User:
    """A user or bot."""

    id: int
    username: str
    global_name: str | None = None
    bot: bool = False
    discriminator: str = "0"
    avatar: str | None = None
    dm_open: bool = True

    def to_json(self) -> dict[str, Any]:
        """The REST user object."""
        out: dict[str, Any] = {
            "id": str(self.id),
            "username": self.username,
            "avatar": self.avatar,
            "discriminator": self.discriminator,
            "public_flags": 0,
            "flags": 0,
            "banner": None,
            "accent_color": None,
            "global_name": self.global_name,
            "avatar_decoration_data": None,
            "collectibles": None,
            "primary_guild": None,
        }
        if self.bot:
            out["bot"] = True
        return out


@dataclass
class Member:
    """A user's membership of a guild; ``timeout_until_ms`` is the end of a timeout, if any."""

    user_id: int
    roles: set[int] = field(default_factory=set)
    nick: str | None = None
    timeout_until_ms: float | None = None


@dataclass
class Guild:
    """A guild with roles (the @everyone role has the guild's id) and members."""

    id: int
    name: str
    owner_id: int
    roles: dict[int, tuple[str, int]] = field(default_factory=dict)
    members: dict[int, Member] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """The REST guild object (the fields the adapter reads)."""
        return {
            "id": str(self.id),
            "name": self.name,
            "icon": None,
            "owner_id": str(self.owner_id),
            "roles": [
                {"id": str(rid), "name": name, "permissions": str(perms)}
                for rid, (name, perms) in self.roles.items()
            ],
            "features": [],
        }


@dataclass
class Channel:
    """A guild channel, thread or DM channel."""

    id: int
    type: int
    guild_id: int | None = None
    name: str | None = None
    topic: str | None = None
    parent_id: int | None = None
    position: int = 0
    overwrites: list[dict[str, Any]] = field(default_factory=list)
    last_message_id: int | None = None
    owner_id: int | None = None
    archived: bool = False
    locked: bool = False
    invitable: bool = True
    auto_archive_duration: int = 1440
    archive_ms: float = 0.0
    members: dict[int, float] = field(default_factory=dict)
    recipients: list[int] = field(default_factory=list)
    message_ids: list[int] = field(default_factory=list)
    total_sent: int = 0

    @property
    def is_thread(self) -> bool:
        """True for threads."""
        return self.type in THREAD_TYPES

    def to_json(
        self, viewer: int | None = None, users: dict[int, User] | None = None
    ) -> dict[str, Any]:
        """The REST channel object as ``viewer`` sees it."""
        last = None if self.last_message_id is None else str(self.last_message_id)
        out: dict[str, Any] = {"id": str(self.id), "type": self.type, "last_message_id": last}
        out["flags"] = 0
        if self.type == 1:
            out["recipients"] = [
                users[u].to_json() for u in self.recipients if users and u in users
            ]
            return out
        out.update(
            guild_id=str(self.guild_id),
            name=self.name,
            parent_id=None if self.parent_id is None else str(self.parent_id),
            rate_limit_per_user=0,
        )
        if self.is_thread:
            created = iso(snowflake_ms(self.id))
            meta: dict[str, Any] = {
                "archived": self.archived,
                "archive_timestamp": iso(self.archive_ms) if self.archive_ms else created,
                "auto_archive_duration": self.auto_archive_duration,
                "locked": self.locked,
                "create_timestamp": created,
            }
            if self.type == 12:
                meta["invitable"] = self.invitable
            out.update(
                owner_id=str(self.owner_id),
                thread_metadata=meta,
                message_count=len(self.message_ids),
                member_count=min(50, len(self.members)),
                total_message_sent=self.total_sent,
            )
            if viewer is not None and viewer in self.members:
                out["member"] = {
                    "id": str(self.id),
                    "user_id": str(viewer),
                    "join_timestamp": iso(self.members[viewer]),
                    "flags": 1,
                }
            return out
        out.update(
            topic=self.topic,
            position=self.position,
            permission_overwrites=self.overwrites,
            nsfw=False,
            default_auto_archive_duration=1440,
        )
        return out

    def add_message_id(self, message_id: int) -> None:
        """Keep ``message_ids`` sorted (seeded history may arrive in any order)."""
        if not self.message_ids or message_id > self.message_ids[-1]:
            self.message_ids.append(message_id)
        else:
            bisect.insort(self.message_ids, message_id)
        if self.last_message_id is None or message_id > self.last_message_id:
            self.last_message_id = message_id


@dataclass
class Message:
    """A message; ``author`` is a user id, or the webhook pseudo-user for webhook messages."""

    id: int
    channel_id: int
    author_id: int
    content: str = ""
    type: int = 0
    embeds: list[dict[str, Any]] = field(default_factory=list)
    components: list[dict[str, Any]] = field(default_factory=list)
    attachments: list[dict[str, Any]] = field(default_factory=list)
    flags: int = 0
    edited_ms: float | None = None
    pinned: bool = False
    tts: bool = False
    mention_ids: list[int] = field(default_factory=list)
    mention_roles: list[str] = field(default_factory=list)
    reference: dict[str, Any] | None = None
    #: A forward's copy of the message it forwards (Discord's ``message_snapshots``).
    snapshot: dict[str, Any] | None = None
    reactions: dict[str, tuple[dict[str, Any], set[int]]] = field(default_factory=dict)
    webhook_id: int | None = None
    webhook_author: dict[str, Any] | None = None
    #: Discord's ``interaction_metadata`` of an interaction's response or followup.
    interaction: dict[str, Any] | None = None
    thread_id: int | None = None
    nonce: str | None = None
    #: What the sender asked for (not part of Discord's answer; tests inspect it).
    allowed_mentions: dict[str, Any] | None = None


@dataclass
class Webhook:
    """A channel webhook (id + secret token)."""

    id: int
    token: str
    channel_id: int
    guild_id: int
    name: str


@dataclass
class Interaction:
    """An interaction the fake pretends to have delivered to the bot."""

    id: int
    token: str
    application_id: int
    channel_id: int
    user_id: int
    created: float
    acked: bool = False
    original_id: int | None = None
    deferred: bool = False


def new_token(prefix: str = "") -> str:
    """A random URL-safe secret."""
    return prefix + secrets.token_urlsafe(32)


def permissions(guild: Guild, channel: Channel, user_id: int) -> int:
    """Discord's permission computation: roles, then everyone/role/member overwrites."""
    if guild.owner_id == user_id:
        return ALL_PERMISSIONS
    member = guild.members.get(user_id)
    if member is None:
        return 0
    base = guild.roles.get(guild.id, ("@everyone", 0))[1]
    for role_id in member.roles:
        base |= guild.roles.get(role_id, ("", 0))[1]
    if base & ADMINISTRATOR:
        return ALL_PERMISSIONS
    perms = base
    overwrites = {int(o["id"]): o for o in channel.overwrites}
    everyone = overwrites.get(guild.id)
    if everyone:
        perms = (perms & ~int(everyone["deny"])) | int(everyone["allow"])
    allow = deny = 0
    for role_id in member.roles:
        ow = overwrites.get(role_id)
        if ow and ow.get("type", 0) == 0:
            allow |= int(ow["allow"])
            deny |= int(ow["deny"])
    perms = (perms & ~deny) | allow
    own = overwrites.get(user_id)
    if own and own.get("type") == 1:
        perms = (perms & ~int(own["deny"])) | int(own["allow"])
    return perms
