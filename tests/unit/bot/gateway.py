"""Gateway payloads (GUILD_CREATE, INTERACTION_CREATE, MESSAGE_REACTION_ADD) for bot tests.

The shapes follow Discord's gateway documentation; tests feed them to a real discord.py
``ConnectionState`` so handlers see the same objects they see in production.
"""

from __future__ import annotations

import itertools
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import discord

DISCORD_EPOCH_MS = 1420070400000
_SEQ = itertools.count(1)


def snowflake(at_ms: int | None = None) -> int:
    """A unique snowflake created at ``at_ms`` (default: now)."""
    ms = int(time.time() * 1000) if at_ms is None else at_ms
    return ((ms - DISCORD_EPOCH_MS) << 22) | (next(_SEQ) & 0x3FFFFF)


def user_json(user_id: int, name: str, *, bot: bool = False) -> dict[str, Any]:
    out: dict[str, Any] = {
        "id": str(user_id),
        "username": name,
        "discriminator": "4821" if bot else "0",
        "global_name": None if bot else name.title(),
        "avatar": None,
        "public_flags": 0,
        "flags": 0,
    }
    if bot:
        out["bot"] = True
    return out


def role_json(role_id: int, name: str, permissions: int, position: int = 1) -> dict[str, Any]:
    return {
        "id": str(role_id),
        "name": name,
        "permissions": str(permissions),
        "position": position,
        "color": 0,
        "colors": {"primary_color": 0, "secondary_color": None, "tertiary_color": None},
        "hoist": False,
        "managed": False,
        "mentionable": False,
        "flags": 0,
        "icon": None,
        "unicode_emoji": None,
    }


def overwrite(target_id: int, kind: int, *, allow: int = 0, deny: int = 0) -> dict[str, Any]:
    """``kind`` 0 = role, 1 = member."""
    return {"id": str(target_id), "type": kind, "allow": str(allow), "deny": str(deny)}


def channel_json(
    channel_id: int,
    guild_id: int,
    name: str,
    *,
    type: int = 0,
    overwrites: list[dict[str, Any]] | None = None,
    position: int = 0,
) -> dict[str, Any]:
    return {
        "id": str(channel_id),
        "guild_id": str(guild_id),
        "type": type,
        "name": name,
        "position": position,
        "parent_id": None,
        "topic": None,
        "nsfw": False,
        "last_message_id": None,
        "rate_limit_per_user": 0,
        "permission_overwrites": overwrites or [],
        "flags": 0,
    }


def thread_json(
    thread_id: int,
    guild_id: int,
    parent_id: int,
    name: str,
    *,
    owner_id: int,
    type: int = 11,
    member_id: int | None = None,
) -> dict[str, Any]:
    created = datetime.fromtimestamp(
        ((thread_id >> 22) + DISCORD_EPOCH_MS) / 1000, tz=UTC
    ).isoformat()
    out: dict[str, Any] = {
        "id": str(thread_id),
        "guild_id": str(guild_id),
        "parent_id": str(parent_id),
        "owner_id": str(owner_id),
        "type": type,
        "name": name,
        "last_message_id": None,
        "rate_limit_per_user": 0,
        "message_count": 0,
        "member_count": 1,
        "total_message_sent": 0,
        "flags": 0,
        "thread_metadata": {
            "archived": False,
            "auto_archive_duration": 1440,
            "archive_timestamp": created,
            "locked": False,
            "create_timestamp": created,
        },
    }
    if member_id is not None:
        out["member"] = {
            "id": str(thread_id),
            "user_id": str(member_id),
            "join_timestamp": created,
            "flags": 1,
        }
    return out


def member_json(
    user: dict[str, Any],
    roles: list[int] | tuple[int, ...] = (),
    *,
    timed_out_until: datetime | None = None,
    permissions: int | None = None,
) -> dict[str, Any]:
    out: dict[str, Any] = {
        "user": user,
        "roles": [str(r) for r in roles],
        "nick": None,
        "avatar": None,
        "joined_at": "2024-05-01T10:00:00.000000+00:00",
        "premium_since": None,
        "deaf": False,
        "mute": False,
        "pending": False,
        "flags": 0,
        "communication_disabled_until": None
        if timed_out_until is None
        else timed_out_until.isoformat(),
    }
    if permissions is not None:
        out["permissions"] = str(permissions)
    return out


def guild_create(
    guild_id: int,
    *,
    owner_id: int,
    roles: list[dict[str, Any]],
    channels: list[dict[str, Any]],
    members: list[dict[str, Any]],
    threads: list[dict[str, Any]] | None = None,
    name: str = "Release Eng",
) -> dict[str, Any]:
    """A GUILD_CREATE ``d`` payload (``members`` must include the bot itself)."""
    return {
        "id": str(guild_id),
        "name": name,
        "icon": None,
        "owner_id": str(owner_id),
        "roles": roles,
        "channels": channels,
        "threads": threads or [],
        "members": members,
        "member_count": len(members),
        "emojis": [],
        "stickers": [],
        "features": [],
        "large": False,
        "unavailable": False,
        "joined_at": "2024-05-01T10:00:00.000000+00:00",
        "voice_states": [],
        "presences": [],
        "stage_instances": [],
        "guild_scheduled_events": [],
        "soundboard_sounds": [],
        "premium_tier": 0,
        "preferred_locale": "en-US",
        "verification_level": 0,
        "default_message_notifications": 0,
        "explicit_content_filter": 0,
        "mfa_level": 0,
        "nsfw_level": 0,
        "system_channel_flags": 0,
        "afk_timeout": 300,
    }


@dataclass
class ParsedGuild:
    """A discord.py client whose state holds one guild built from a GUILD_CREATE payload."""

    client: discord.Client
    guild: discord.Guild
    payload: dict[str, Any] = field(default_factory=dict)

    def member(self, payload: dict[str, Any]) -> discord.Member:
        """A Member built from a member payload, as an interaction would carry it."""
        return discord.Member(data=payload, guild=self.guild, state=self.client._connection)  # type: ignore[arg-type]


def parse_guild(payload: dict[str, Any], bot_user: dict[str, Any]) -> ParsedGuild:
    """Feed ``payload`` to a fresh client's ConnectionState (no network involved)."""
    intents = discord.Intents.none()
    intents.guilds = True
    client = discord.Client(intents=intents)
    state = client._connection
    state.user = discord.ClientUser(state=state, data=bot_user)  # type: ignore[arg-type]
    guild = state._add_guild_from_data(payload)  # type: ignore[arg-type]
    return ParsedGuild(client=client, guild=guild, payload=payload)
