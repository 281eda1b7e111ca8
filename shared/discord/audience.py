"""Who can read what in a guild: a REST snapshot of its shape, and audience checks on it.

A digest posted for an audience (the members who can see the channel it goes to, or one
person's /catchup) may only quote channels *every* member of that audience can read, or it
would leak them.  :func:`load_snapshot` reads the guild once (roles, channels with their
overwrites, active threads, the bot's own member and, with the privileged Server Members
intent, every member); :func:`readable_by_all` then keeps the channels the whole audience and
the bot can read, and says for each one it leaves out why, in words for whoever set the digest
up.

Reading means View Channel and Read Message History (:data:`READ`), computed with Discord's
algorithm (:mod:`shared.discord.permissions`): a thread follows its parent's overwrites, and a
private thread is always left out because who joined it is not known.  When the members are not
known (no intent, or too many) the check is conservative: only channels that a member with no
roles can read, and that no overwrite closes to anyone, are kept.

Our own bot is never part of an audience: it writes the digest, it does not read it (whether it
can read a channel is checked separately).  Other bots are ordinary members.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import structlog

from shared.discord.client import DiscordClient
from shared.discord.errors import Forbidden, NotFound, TooManyMembers
from shared.discord.permissions import (
    ChannelKind,
    ChannelView,
    GuildView,
    MemberView,
    Overwrite,
    OverwriteKind,
    Permission,
    channel_permissions,
    explain_missing,
    missing_permissions,
)

__all__ = [
    "MEMBERS_UNKNOWN",
    "READ",
    "GuildSnapshot",
    "LeftOut",
    "audience_of_channel",
    "channel_from_json",
    "guild_from_json",
    "load_snapshot",
    "member_from_json",
    "readable_by_all",
]

log = structlog.get_logger(__name__)

#: What reading a channel takes.
READ = Permission.VIEW_CHANNEL | Permission.READ_MESSAGE_HISTORY
#: The reason given for every channel a members-unknown check leaves out.
MEMBERS_UNKNOWN = (
    "members unknown (enable the Server Members intent): only channels everyone can read "
    "are included"
)
# No snowflake is negative: this member is nobody's owner and no overwrite names it.
_NOBODY = MemberView(id=-1)


@dataclass(frozen=True)
class GuildSnapshot:
    """A guild as the bot saw it at one moment: roles, channels, active threads, members.

    ``channels`` holds every guild channel (with ``category_id``) and every active thread (with
    ``parent``); ``members`` is None when they could not be listed; ``bot`` is the bot's own
    member; ``last_message_ids`` gives each channel's and thread's newest message id (None when
    it has none, or for a category).
    """

    guild: GuildView
    name: str
    channels: Mapping[int, ChannelView]
    members: tuple[MemberView, ...] | None
    bot: MemberView
    last_message_ids: Mapping[int, int | None]
    _by_id: Mapping[int, MemberView] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        by_id = {m.id: m for m in self.members or ()}
        by_id.setdefault(self.bot.id, self.bot)
        object.__setattr__(self, "_by_id", by_id)

    def can_read(self, member: MemberView, channel_id: int) -> bool:
        """True when ``member`` has View Channel and Read Message History in the channel.

        False for a channel the snapshot does not hold (deleted, or an archived thread).
        """
        channel = self.channels.get(channel_id)
        if channel is None:
            return False
        return channel_permissions(self.guild, member, channel) & READ == READ

    def viewers(self, channel_id: int) -> tuple[MemberView, ...] | None:
        """The members who can read the channel (never our bot); None when members are unknown."""
        if self.members is None:
            return None
        return tuple(
            m for m in self.members if m.id != self.bot.id and self.can_read(m, channel_id)
        )

    def member(self, user_id: int) -> MemberView | None:
        """The member with this user id (the bot is always known), or None."""
        return self._by_id.get(user_id)


@dataclass(frozen=True)
class LeftOut:
    """A channel :func:`readable_by_all` did not keep, and why (a sentence for people)."""

    channel_id: int
    name: str
    reason: str


def guild_from_json(data: Mapping[str, Any]) -> GuildView:
    """The roles (with their permissions and names) and owner of Discord's guild JSON."""
    roles = {int(r["id"]): int(r.get("permissions") or 0) for r in data.get("roles") or ()}
    names = {int(r["id"]): str(r.get("name") or "") for r in data.get("roles") or ()}
    return GuildView(
        id=int(data["id"]), owner_id=int(data.get("owner_id") or 0), roles=roles, role_names=names
    )


def member_from_json(data: Mapping[str, Any], *, now: datetime | None = None) -> MemberView:
    """A member from Discord's guild member JSON; a timeout ending after ``now`` counts."""
    until = data.get("communication_disabled_until")
    timed_out = bool(until) and datetime.fromisoformat(str(until)) > (now or datetime.now(UTC))
    return MemberView(
        id=int(data["user"]["id"]),
        role_ids=frozenset(int(r) for r in data.get("roles") or ()),
        timed_out=timed_out,
    )


def _overwrite(data: Mapping[str, Any]) -> Overwrite:
    return Overwrite(
        target_id=int(data["id"]),
        kind=OverwriteKind(int(data.get("type") or 0)),
        allow=int(data.get("allow") or 0),
        deny=int(data.get("deny") or 0),
    )


def _kind(data: Mapping[str, Any]) -> ChannelKind | None:
    try:
        return ChannelKind(int(data.get("type") or 0))
    except ValueError:
        return None


def channel_from_json(data: Mapping[str, Any], *, parent: ChannelView | None = None) -> ChannelView:
    """A channel (with overwrites and category) or, given its ``parent``, a thread.

    Raises ``ValueError`` for a channel type the permission module does not know.
    """
    kind = ChannelKind(int(data.get("type") or 0))
    name = str(data.get("name") or "")
    if kind.is_thread:
        return ChannelView(id=int(data["id"]), kind=kind, name=name, parent=parent)
    category = data.get("parent_id")
    return ChannelView(
        id=int(data["id"]),
        kind=kind,
        name=name,
        overwrites=tuple(_overwrite(o) for o in data.get("permission_overwrites") or ()),
        category_id=int(category) if category else None,
    )


def _last_id(data: Mapping[str, Any]) -> int | None:
    raw = data.get("last_message_id")
    return int(raw) if raw else None


def load_snapshot(
    client: DiscordClient, guild_id: str, *, with_members: bool = True, max_members: int = 10_000
) -> GuildSnapshot:
    """Read the guild's shape: guild, channels, active threads, the bot's member, members.

    Members are listed only ``with_members``; a 403 on the list (the application lacks the
    privileged Server Members intent) or more than ``max_members`` of them leave ``members``
    None, with one warning saying how to fix it.  Other errors propagate.
    """
    guild_json = client.get_guild(guild_id)
    guild = guild_from_json(guild_json)
    channels: dict[int, ChannelView] = {}
    last_ids: dict[int, int | None] = {}
    for data in client.guild_channels(guild_id):
        if _kind(data) is None:
            continue  # a channel type newer than this code: it cannot be reasoned about
        view = channel_from_json(data)
        channels[view.id] = view
        last_ids[view.id] = _last_id(data)
    for thread in client.guild_active_threads(guild_id):
        parent = channels.get(int(thread.parent_id)) if thread.parent_id else None
        if parent is None or _kind(thread.raw) is None:
            continue
        view = channel_from_json(thread.raw, parent=parent)
        channels[view.id] = view
        last_ids[view.id] = _last_id(thread.raw)
    bot_user = client.get_current_user()
    bot_json = client.get_member(guild_id, bot_user.id)
    if bot_json is None:
        raise NotFound(f"the bot is not a member of guild {guild_id}")
    now = datetime.now(UTC)
    return GuildSnapshot(
        guild=guild,
        name=str(guild_json.get("name") or ""),
        channels=channels,
        members=_members(client, guild_id, max_members, now) if with_members else None,
        bot=member_from_json(bot_json, now=now),
        last_message_ids=last_ids,
    )


def _members(
    client: DiscordClient, guild_id: str, max_members: int, now: datetime
) -> tuple[MemberView, ...] | None:
    try:
        return tuple(
            member_from_json(m, now=now)
            for m in client.iter_members(guild_id, max_members=max_members)
        )
    except Forbidden as exc:
        log.warning(
            "discord.members_unavailable",
            guild_id=guild_id,
            code=exc.code,
            fix="enable the Server Members intent (Developer Portal > Bot > Privileged Gateway "
            "Intents); until then only channels everyone can read are used",
        )
    except TooManyMembers:
        log.warning(
            "discord.members_too_many",
            guild_id=guild_id,
            max_members=max_members,
            fix="only channels everyone can read are used; raise max_members to check members",
        )
    return None


def _closed_to_someone(channel: ChannelView) -> bool:
    """True when an overwrite denies reading to a role or member (who may be in the audience)."""
    return any(o.deny & READ for o in channel.permission_source.overwrites)


def _why_bot_cannot_read(snapshot: GuildSnapshot, channel: ChannelView) -> str:
    granted = channel_permissions(snapshot.guild, snapshot.bot, channel)
    lacking = missing_permissions(granted, READ)
    return "the bot cannot read it: " + explain_missing(
        snapshot.guild, snapshot.bot, channel, lacking[0]
    )


def readable_by_all(
    snapshot: GuildSnapshot,
    audience: Sequence[MemberView] | None,
    channel_ids: Iterable[int],
    *,
    audience_label: str = "members of the audience",
) -> tuple[list[int], list[LeftOut]]:
    """The channels of ``channel_ids`` the bot and every member of ``audience`` can read.

    Returns the kept ids (in input order) and a :class:`LeftOut` for each other one.  Left out:
    a channel the snapshot does not hold, a private thread, a channel the bot cannot read, and
    one that some audience member cannot read.  ``audience`` None means the members are unknown:
    then only channels a member with no roles can read, and on which no overwrite denies
    reading to anyone, are kept.  ``audience_label`` names the audience in reasons
    ("members who can see #general").
    """
    kept: list[int] = []
    left: list[LeftOut] = []
    for channel_id in channel_ids:
        channel = snapshot.channels.get(channel_id)
        if channel is None:
            left.append(
                LeftOut(channel_id, "", "not found in the server (deleted, or an archived thread)")
            )
            continue
        reason = _reason_left_out(snapshot, audience, channel, audience_label)
        if reason is None:
            kept.append(channel_id)
        else:
            left.append(LeftOut(channel_id, channel.name, reason))
    return kept, left


def _reason_left_out(
    snapshot: GuildSnapshot,
    audience: Sequence[MemberView] | None,
    channel: ChannelView,
    audience_label: str,
) -> str | None:
    if channel.kind is ChannelKind.PRIVATE_THREAD:
        return "private thread (who is in it is not known)"
    if not snapshot.can_read(snapshot.bot, channel.id):
        return _why_bot_cannot_read(snapshot, channel)
    if audience is None:
        if not snapshot.can_read(_NOBODY, channel.id) or _closed_to_someone(channel):
            return MEMBERS_UNKNOWN
        return None
    shut_out = sum(1 for m in audience if not snapshot.can_read(m, channel.id))
    if not shut_out:
        return None
    if len(audience) == 1:
        return f"the only one of the {audience_label} cannot read it"
    return f"{shut_out} of the {len(audience)} {audience_label} cannot read it"


def audience_of_channel(snapshot: GuildSnapshot, channel_id: int) -> tuple[MemberView, ...] | None:
    """Who reads what is posted in the channel (a thread: by its parent's rules).

    None when the members are unknown, and for a private thread (who joined it is not known).
    """
    channel = snapshot.channels.get(channel_id)
    if channel is not None and channel.kind is ChannelKind.PRIVATE_THREAD:
        return None
    return snapshot.viewers(channel_id)
