"""Snapshots of discord.py's cached objects for the pure permission module.

The bot runs without the members intent, so the only members it knows are the one in an
interaction (or reaction) payload and itself (``guild.me``); both carry their role ids, which
is all the permission algorithm needs besides the guild's roles and the channel's overwrites.
"""

from __future__ import annotations

from typing import Any

import discord

from shared.discord.permissions import (
    ChannelKind,
    ChannelView,
    GuildView,
    MemberView,
    Overwrite,
    OverwriteKind,
)

__all__ = ["channel_view", "guild_view", "member_view"]


def guild_view(guild: discord.Guild) -> GuildView:
    """Roles (with @everyone), owner and id of a cached guild."""
    roles = {role.id: role.permissions.value for role in guild.roles}
    names = {role.id: role.name for role in guild.roles}
    return GuildView(id=guild.id, owner_id=guild.owner_id or 0, roles=roles, role_names=names)


def member_view(member: discord.Member, *, thread_member: bool | None = None) -> MemberView:
    """Id, raw role ids and timeout of a member."""
    # ``_roles`` holds every role id of the payload; ``roles`` drops ids missing from the cache,
    # and dropping one could skip a role overwrite that denies access.
    raw: Any = getattr(member, "_roles", None)
    role_ids = (
        frozenset(int(r) for r in raw) if raw is not None else frozenset(r.id for r in member.roles)
    )
    return MemberView(
        id=member.id,
        role_ids=role_ids - {member.guild.id},
        timed_out=member.is_timed_out(),
        thread_member=thread_member,
    )


def _overwrites(channel: discord.abc.GuildChannel) -> tuple[Overwrite, ...]:
    # The raw overwrites keep Discord's bits exactly (and unknown targets); the public
    # ``overwrites`` mapping goes through PermissionOverwrite, which drops a bit set in both
    # allow and deny, where Discord lets the allow win.  Every guild channel has them.
    raw: Any = getattr(channel, "_overwrites", ())
    return tuple(
        Overwrite(
            target_id=int(o.id),
            kind=OverwriteKind(int(o.type)),
            allow=int(o.allow),
            deny=int(o.deny),
        )
        for o in raw
    )


def channel_view(channel: discord.abc.GuildChannel | discord.Thread) -> ChannelView:
    """A channel with its overwrites, or a thread with its parent's.

    Raises ``ValueError`` for a thread whose parent is not cached.
    """
    if isinstance(channel, discord.Thread):
        parent = channel.parent
        if parent is None:
            raise ValueError(
                f"the parent channel of thread {channel.id} is unknown to the bot; it needs "
                "View Channel on the parent"
            )
        return ChannelView(
            id=channel.id,
            kind=ChannelKind(channel.type.value),
            name=channel.name,
            parent=channel_view(parent),
        )
    return ChannelView(
        id=channel.id,
        kind=ChannelKind(channel.type.value),
        name=channel.name,
        overwrites=_overwrites(channel),
    )
