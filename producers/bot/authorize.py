"""Who may summarize what, and where the result may go: the bot's access policy, pure.

:func:`authorize_summary` takes snapshots (guild, invoker, the bot itself, source channel,
destination) and the guild's settings, and returns the first reason to refuse, or None.  In
order:

1. the source (or, for a thread, its parent) is excluded by the admins;
2. the source is private (@everyone cannot view it) and the guild's policy is ``deny``;
3. the invoker is timed out, or the guild restricts summaries to some roles and the invoker
   has none of them (the owner, administrators and members with Manage Server are exempt);
4. the invoker lacks View Channel or Read Message History in the source;
5. the destination: the invoker must be able to post there themselves, and a private source
   under the ``same_channel`` policy may only be summarized into itself (or one of its threads)
   or privately — not into another channel, nor to a webhook (administrators are exempt: they
   set the policy);
6. the bot lacks View Channel or Read Message History in the source, or what it needs to post
   in the destination — the refusal names the permission, the channel and the cause.

Permissions Discord computed itself (``interaction.permissions`` for the channel the command ran
in, the ``permissions`` of a channel picked in an option) are combined with ours by AND, so a
disagreement can only make the bot stricter.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Literal

from producers.bot.store import GuildConfig
from schema.models.tenancy import PrivateChannelPolicy
from shared.discord.permissions import (
    READ_ACCESS,
    ChannelView,
    GuildView,
    MemberView,
    Permission,
    base_permissions,
    channel_permissions,
    everyone_can_view,
    explain_missing,
    is_guild_admin,
    missing_permissions,
    permission_names,
    within,
)

__all__ = [
    "AccessRequest",
    "PermissionHints",
    "Refusal",
    "authorize_member",
    "authorize_summary",
    "can_manage_guild",
    "member_in",
    "passes_role_allowlist",
]

Party = Literal["member", "bot", "policy"]


@dataclass(frozen=True)
class PermissionHints:
    """Permissions Discord computed for a command, when known: the invoker's in the source and
    in the destination, and the bot's in the source (see the module docstring)."""

    source: int | None = None
    destination: int | None = None
    bot_source: int | None = None


@dataclass(frozen=True)
class Refusal:
    """Why a request is refused; ``party`` says whose permission (or which policy) is missing."""

    party: Party
    message: str
    missing: tuple[Permission, ...] = ()


@dataclass(frozen=True)
class AccessRequest:
    """Everything :func:`authorize_summary` decides on.

    ``destination`` is a channel the bot posts the summary in; None means the summary goes back
    through the interaction, visible in ``reply_channel`` (the channel the command ran in), or
    privately by DM when ``private``.  No channel permission is needed for an interaction reply,
    but the private-channel policy applies to where it is seen.  ``hints`` are the permissions
    Discord computed for the invoker (source, destination) or the bot (source), when known.
    ``external`` marks a destination outside Discord (a webhook endpoint).
    """

    guild: GuildView
    member: MemberView
    bot: MemberView
    source: ChannelView
    config: GuildConfig
    destination: ChannelView | None = None
    reply_channel: ChannelView | None = None
    private: bool = False
    external: bool = False
    hints: PermissionHints = PermissionHints()


def can_manage_guild(guild: GuildView, member: MemberView) -> bool:
    """Owner, Administrator or Manage Server: may change settings and digests."""
    return bool(base_permissions(guild, member) & Permission.MANAGE_GUILD)


def passes_role_allowlist(guild: GuildView, member: MemberView, config: GuildConfig) -> bool:
    """True when the guild has no allowlist, the member holds an allowed role, or manages it."""
    if not config.allowed_role_ids:
        return True
    if member.role_ids & config.allowed_role_ids:
        return True
    return can_manage_guild(guild, member)


def member_in(
    guild: GuildView, member: MemberView, channel: ChannelView, hint: int | None = None
) -> int:
    """The member's permissions in ``channel``, ANDed with Discord's own figure when known."""
    computed = channel_permissions(guild, member, channel)
    return computed if hint is None else computed & hint


def _is_excluded(channel: ChannelView, config: GuildConfig) -> bool:
    ids = {channel.id}
    if channel.parent is not None:
        ids.add(channel.parent.id)
    return bool(ids & config.excluded_channel_ids)


def _send_bits(channel: ChannelView) -> int:
    send = Permission.SEND_MESSAGES_IN_THREADS if channel.is_thread else Permission.SEND_MESSAGES
    return Permission.VIEW_CHANNEL | send


def _lacks(
    request: AccessRequest,
    who: MemberView,
    channel: ChannelView,
    granted: int,
    required: int,
    *,
    party: Party,
    purpose: str,
) -> Refusal | None:
    missing = missing_permissions(granted, required)
    if not missing:
        return None
    subject = "You need" if party == "member" else "I need"
    first = missing[0]
    reason = explain_missing(request.guild, who, channel, first)
    if channel_permissions(request.guild, who, channel) & first:
        reason = "Discord reports it as missing"
    message = (
        f"{subject} {permission_names(missing)} in {channel.mention} {purpose} "
        f"({permission_names([first])}: {reason})."
    )
    if party == "bot":
        message += " Ask a server admin to grant it to my role or in the channel's settings."
    return Refusal(party, message, tuple(missing))


def authorize_member(guild: GuildView, member: MemberView, config: GuildConfig) -> Refusal | None:
    """Whether the member may ask for summaries at all (step 3): not timed out, and holding
    an allowed role when the guild restricts summaries to some."""
    if member.timed_out:
        return Refusal(
            "member", "You are timed out in this server; try again when the timeout ends."
        )
    if not passes_role_allowlist(guild, member, config):
        roles = ", ".join(f"<@&{r}>" for r in sorted(config.allowed_role_ids))
        return Refusal("policy", f"Only members with one of these roles may summarize: {roles}.")
    return None


def authorize_summary(request: AccessRequest) -> Refusal | None:
    """The first reason to refuse the request (see the module docstring), or None."""
    guild, member, source, config = request.guild, request.member, request.source, request.config
    if _is_excluded(source, config):
        return Refusal(
            "policy", f"{source.mention} is excluded from summaries by this server's admins."
        )
    private_source = not everyone_can_view(guild, source)
    policy = config.private_channel_policy
    if private_source and policy is PrivateChannelPolicy.DENY:
        return Refusal(
            "policy",
            f"{source.mention} is private, and this server does not allow summaries of "
            "private channels.",
        )
    refusal = authorize_member(guild, member, config)
    if refusal:
        return refusal
    refusal = _lacks(
        request,
        member,
        source,
        member_in(guild, member, source, request.hints.source),
        READ_ACCESS,
        party="member",
        purpose="to summarize it",
    )
    if refusal:
        return refusal
    destination = request.destination
    if destination is not None:
        # Having joined the private thread the command ran in says nothing of another one.
        poster = member if destination.id == source.id else replace(member, thread_member=None)
        refusal = _lacks(
            request,
            poster,
            destination,
            member_in(guild, poster, destination, request.hints.destination),
            _send_bits(destination),
            party="member",
            purpose="to post a summary there",
        )
        if refusal:
            return refusal
    seen_in = destination or (None if request.private else request.reply_channel)
    if (
        private_source
        and policy is PrivateChannelPolicy.SAME_CHANNEL
        and (request.external or (seen_in is not None and not within(source, seen_in)))
        and not is_guild_admin(guild, member)
    ):
        return Refusal(
            "policy",
            f"{source.mention} is private: its summary may only be posted in "
            f"{source.mention} itself or sent to you privately (private: True).",
        )
    bot_source = channel_permissions(guild, request.bot, source)
    if request.hints.bot_source is not None:
        bot_source &= request.hints.bot_source
    refusal = _lacks(
        request,
        request.bot,
        source,
        bot_source,
        READ_ACCESS,
        party="bot",
        purpose="to read its messages",
    )
    if refusal or destination is None:
        return refusal
    return _lacks(
        request,
        request.bot,
        destination,
        channel_permissions(guild, request.bot, destination),
        _send_bits(destination) | Permission.EMBED_LINKS,
        party="bot",
        purpose="to post the summary there",
    )
