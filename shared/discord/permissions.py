"""Discord's permission algorithm as pure functions over plain snapshots of a guild.

Nothing here touches discord.py or the network, so the bot and the workers share it: the bot
builds :class:`GuildView`, :class:`MemberView` and :class:`ChannelView` from its gateway cache
(``producers.bot.snapshots``), the workers from REST JSON (:mod:`shared.discord.audience`).  The
functions below compute what a member may do in a channel exactly as Discord does:

1. the guild owner has every permission;
2. base = the @everyone role's permissions OR the permissions of each of the member's roles;
   ADMINISTRATOR in the base grants every permission and skips all overwrites;
3. channel overwrites, in order: the @everyone overwrite (deny, then allow); the denies of all
   the member's role overwrites, then their allows, aggregated; the member's own overwrite
   (deny, then allow) — so a member allow beats a role deny, and a role allow beats an
   @everyone deny;
4. a thread has no overwrites of its own: it takes its parent channel's; a private thread is
   visible only to its members and to those with MANAGE_THREADS;
5. a timed-out member keeps only VIEW_CHANNEL and READ_MESSAGE_HISTORY;
6. implicit rules: without VIEW_CHANNEL nothing else applies in the channel; without
   SEND_MESSAGES (SEND_MESSAGES_IN_THREADS in a thread) the member cannot mention @everyone,
   send TTS, embed links or attach files there.

:func:`explain_missing` says *why* a permission is missing (which role or overwrite), so a
refusal can tell people what to change.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import IntEnum, IntFlag

__all__ = [
    "ALL_PERMISSIONS",
    "READ_ACCESS",
    "TIMEOUT_ALLOWED",
    "ChannelKind",
    "ChannelView",
    "GuildView",
    "MemberView",
    "Overwrite",
    "OverwriteKind",
    "Permission",
    "base_permissions",
    "channel_permissions",
    "everyone_can_view",
    "explain_missing",
    "is_guild_admin",
    "missing_permissions",
    "overwritten_permissions",
    "permission_names",
    "within",
]


class Permission(IntFlag):
    """The permission bits the bot reasons about (Discord's values)."""

    CREATE_INSTANT_INVITE = 1 << 0
    KICK_MEMBERS = 1 << 1
    BAN_MEMBERS = 1 << 2
    ADMINISTRATOR = 1 << 3
    MANAGE_CHANNELS = 1 << 4
    MANAGE_GUILD = 1 << 5
    ADD_REACTIONS = 1 << 6
    VIEW_CHANNEL = 1 << 10
    SEND_MESSAGES = 1 << 11
    SEND_TTS_MESSAGES = 1 << 12
    MANAGE_MESSAGES = 1 << 13
    EMBED_LINKS = 1 << 14
    ATTACH_FILES = 1 << 15
    READ_MESSAGE_HISTORY = 1 << 16
    MENTION_EVERYONE = 1 << 17
    CONNECT = 1 << 20
    USE_APPLICATION_COMMANDS = 1 << 31
    MANAGE_THREADS = 1 << 34
    CREATE_PUBLIC_THREADS = 1 << 35
    CREATE_PRIVATE_THREADS = 1 << 36
    SEND_MESSAGES_IN_THREADS = 1 << 38
    MODERATE_MEMBERS = 1 << 40


#: Every bit Discord has, or may add later (owner and ADMINISTRATOR get them all).
ALL_PERMISSIONS = (1 << 64) - 1
#: What reading a channel's history takes; required of the invoker and of the bot.
READ_ACCESS = Permission.VIEW_CHANNEL | Permission.READ_MESSAGE_HISTORY
#: What a timed-out member keeps.
TIMEOUT_ALLOWED = Permission.VIEW_CHANNEL | Permission.READ_MESSAGE_HISTORY
#: Lost in a voice or stage channel by a member who may not connect: Discord's Get Channel
#: Messages needs Connect there besides View Channel (discord.py does not model this).  The
#: member still sees the channel in the list.
_NEEDS_CONNECT = Permission.READ_MESSAGE_HISTORY
# Lost implicitly when the member cannot send in the channel.
_NEEDS_SEND = (
    Permission.MENTION_EVERYONE
    | Permission.SEND_TTS_MESSAGES
    | Permission.EMBED_LINKS
    | Permission.ATTACH_FILES
)

_NAMES = {
    Permission.ADMINISTRATOR: "Administrator",
    Permission.MANAGE_CHANNELS: "Manage Channels",
    Permission.MANAGE_GUILD: "Manage Server",
    Permission.ADD_REACTIONS: "Add Reactions",
    Permission.VIEW_CHANNEL: "View Channel",
    Permission.SEND_MESSAGES: "Send Messages",
    Permission.SEND_TTS_MESSAGES: "Send TTS Messages",
    Permission.MANAGE_MESSAGES: "Manage Messages",
    Permission.EMBED_LINKS: "Embed Links",
    Permission.ATTACH_FILES: "Attach Files",
    Permission.READ_MESSAGE_HISTORY: "Read Message History",
    Permission.MENTION_EVERYONE: "Mention Everyone",
    Permission.USE_APPLICATION_COMMANDS: "Use Application Commands",
    Permission.MANAGE_THREADS: "Manage Threads",
    Permission.CREATE_PUBLIC_THREADS: "Create Public Threads",
    Permission.CREATE_PRIVATE_THREADS: "Create Private Threads",
    Permission.SEND_MESSAGES_IN_THREADS: "Send Messages in Threads",
    Permission.MODERATE_MEMBERS: "Timeout Members",
}


class OverwriteKind(IntEnum):
    """Whom a channel overwrite targets (Discord's ``type`` field)."""

    ROLE = 0
    MEMBER = 1


class ChannelKind(IntEnum):
    """Channel types the bot distinguishes (Discord's values)."""

    TEXT = 0
    DM = 1
    VOICE = 2
    GROUP_DM = 3
    CATEGORY = 4
    ANNOUNCEMENT = 5
    ANNOUNCEMENT_THREAD = 10
    PUBLIC_THREAD = 11
    PRIVATE_THREAD = 12
    STAGE = 13
    DIRECTORY = 14
    FORUM = 15
    MEDIA = 16

    @property
    def is_thread(self) -> bool:
        """True for the three thread types."""
        return self in (
            ChannelKind.ANNOUNCEMENT_THREAD,
            ChannelKind.PUBLIC_THREAD,
            ChannelKind.PRIVATE_THREAD,
        )


#: Channels whose text chat is only open to members who may connect to them.
_VOICE_KINDS = frozenset({ChannelKind.VOICE, ChannelKind.STAGE})


@dataclass(frozen=True)
class Overwrite:
    """One channel permission overwrite: ``allow`` and ``deny`` bits for a role or a member."""

    target_id: int
    kind: OverwriteKind
    allow: int = 0
    deny: int = 0


@dataclass(frozen=True)
class GuildView:
    """What the algorithm needs of a guild: its id (= the @everyone role's id), owner, roles.

    ``roles`` maps role id → permission bits and must include the @everyone role; ``role_names``
    is only used to explain refusals.
    """

    id: int
    owner_id: int
    roles: Mapping[int, int]
    role_names: Mapping[int, str] = field(default_factory=dict)

    @property
    def everyone_permissions(self) -> int:
        """The @everyone role's permissions (0 when the role is unknown)."""
        return self.roles.get(self.id, 0)

    def role_name(self, role_id: int) -> str:
        """``@name`` of a role, or its id when the name is unknown."""
        if role_id == self.id:
            return "@everyone"
        name = self.role_names.get(role_id)
        return f"@{name}" if name else f"role {role_id}"


@dataclass(frozen=True)
class MemberView:
    """A member: id, role ids (raw, even of roles the cache does not hold), timeout.

    ``thread_member`` says whether the member has joined the thread being checked; it matters
    only for private threads and is None when unknown (treated as not joined).
    """

    id: int
    role_ids: frozenset[int] = frozenset()
    timed_out: bool = False
    thread_member: bool | None = None


@dataclass(frozen=True)
class ChannelView:
    """A channel or thread; a thread carries its ``parent`` (whose overwrites apply).

    ``category_id`` is the category a non-thread channel sits in (Discord's ``parent_id`` of a
    channel); it is informational: a channel's own overwrites already decide its permissions.
    """

    id: int
    kind: ChannelKind
    name: str = ""
    overwrites: tuple[Overwrite, ...] = ()
    parent: ChannelView | None = None
    category_id: int | None = None

    @property
    def is_thread(self) -> bool:
        """True for threads."""
        return self.kind.is_thread

    @property
    def mention(self) -> str:
        """``<#id>``, which Discord renders as the channel's name."""
        return f"<#{self.id}>"

    @property
    def permission_source(self) -> ChannelView:
        """The channel whose overwrites decide: the parent of a thread, else itself."""
        if self.is_thread:
            if self.parent is None:
                raise ValueError(
                    f"thread {self.id} has no parent channel in the snapshot; its permissions "
                    "come from the parent, so pass it"
                )
            return self.parent
        return self


def is_guild_admin(guild: GuildView, member: MemberView) -> bool:
    """The owner, or a member whose roles grant ADMINISTRATOR."""
    return base_permissions(guild, member) == ALL_PERMISSIONS


def base_permissions(guild: GuildView, member: MemberView) -> int:
    """Guild-level permissions: owner → all; @everyone | roles; ADMINISTRATOR → all."""
    if member.id == guild.owner_id:
        return ALL_PERMISSIONS
    permissions = guild.everyone_permissions
    for role_id in member.role_ids:
        permissions |= guild.roles.get(role_id, 0)
    if permissions & Permission.ADMINISTRATOR:
        return ALL_PERMISSIONS
    return permissions


def overwritten_permissions(
    base: int, *, guild_id: int, member: MemberView, overwrites: Iterable[Overwrite]
) -> int:
    """Apply a channel's overwrites to ``base`` in Discord's order (see the module docstring)."""
    if base == ALL_PERMISSIONS:
        return base
    everyone: Overwrite | None = None
    own: Overwrite | None = None
    role_allow = role_deny = 0
    for overwrite in overwrites:
        if overwrite.kind is OverwriteKind.ROLE:
            if overwrite.target_id == guild_id:
                everyone = overwrite
            elif overwrite.target_id in member.role_ids:
                role_allow |= overwrite.allow
                role_deny |= overwrite.deny
        elif overwrite.target_id == member.id:
            own = overwrite
    permissions = base
    if everyone is not None:
        permissions = (permissions & ~everyone.deny) | everyone.allow
    permissions = (permissions & ~role_deny) | role_allow
    if own is not None:
        permissions = (permissions & ~own.deny) | own.allow
    return permissions


def channel_permissions(guild: GuildView, member: MemberView, channel: ChannelView) -> int:
    """What ``member`` may do in ``channel`` (a thread: in its parent, with thread rules)."""
    base = base_permissions(guild, member)
    if base == ALL_PERMISSIONS:
        return ALL_PERMISSIONS
    source = channel.permission_source
    permissions = overwritten_permissions(
        base, guild_id=guild.id, member=member, overwrites=source.overwrites
    )
    if member.timed_out:
        permissions &= TIMEOUT_ALLOWED
    if (
        channel.kind is ChannelKind.PRIVATE_THREAD
        and not member.thread_member
        and not permissions & Permission.MANAGE_THREADS
    ):
        permissions &= ~Permission.VIEW_CHANNEL
    if not permissions & Permission.VIEW_CHANNEL:
        return 0
    if channel.kind in _VOICE_KINDS and not permissions & Permission.CONNECT:
        permissions &= ~_NEEDS_CONNECT
    send = Permission.SEND_MESSAGES_IN_THREADS if channel.is_thread else Permission.SEND_MESSAGES
    if not permissions & send:
        permissions &= ~_NEEDS_SEND
    return permissions


def within(source: ChannelView, destination: ChannelView) -> bool:
    """True when ``destination`` is ``source`` or one of its threads (a summary posted there is
    seen by the source's own readers)."""
    return destination.id == source.id or (
        destination.parent is not None and destination.parent.id == source.id
    )


def everyone_can_view(guild: GuildView, channel: ChannelView) -> bool:
    """True when a member with no roles could see ``channel`` (the channel is not private);
    for a voice or stage channel, read its text chat (which takes Connect)."""
    nobody = MemberView(id=0)
    if channel.kind is ChannelKind.PRIVATE_THREAD:
        return False
    needed = READ_ACCESS if channel.kind in _VOICE_KINDS else Permission.VIEW_CHANNEL
    return channel_permissions(guild, nobody, channel) & needed == needed


def missing_permissions(granted: int, required: int) -> list[Permission]:
    """The required bits ``granted`` lacks, lowest bit first."""
    lacking = required & ~granted
    return [flag for flag in Permission if flag & lacking]


def permission_names(permissions: Iterable[Permission]) -> str:
    """Human names joined for a sentence: "View Channel and Read Message History"."""
    names = [_NAMES.get(p, (p.name or str(int(p))).replace("_", " ").title()) for p in permissions]
    if len(names) <= 1:
        return "".join(names)
    return ", ".join(names[:-1]) + " and " + names[-1]


def explain_missing(
    guild: GuildView, member: MemberView, channel: ChannelView, permission: Permission
) -> str:
    """Why ``member`` lacks ``permission`` in ``channel``, naming the role or overwrite at fault.

    Only call it for a permission :func:`channel_permissions` did not grant.
    """
    where = channel.mention
    source = channel.permission_source
    inherited = f" (the thread {where} inherits {source.mention})" if channel.is_thread else ""
    base = base_permissions(guild, member)
    permissions = overwritten_permissions(
        base, guild_id=guild.id, member=member, overwrites=source.overwrites
    )
    if member.timed_out and not permission & TIMEOUT_ALLOWED:
        return "the member is timed out"
    if (
        channel.kind is ChannelKind.PRIVATE_THREAD
        and permission is Permission.VIEW_CHANNEL
        and permissions & Permission.VIEW_CHANNEL
        and not member.thread_member
        and not permissions & Permission.MANAGE_THREADS
    ):
        return f"{where} is a private thread the member has not joined"
    if permission is not Permission.VIEW_CHANNEL and not permissions & Permission.VIEW_CHANNEL:
        return "without View Channel no other permission applies in " + where + inherited
    if (
        channel.kind in _VOICE_KINDS
        and permission & _NEEDS_CONNECT
        and not permissions & Permission.CONNECT
    ):
        return f"{where} is a voice channel: its text chat needs Connect"
    if permissions & permission:
        # Granted explicitly but lost to an implicit rule (no Send Messages).
        return f"it needs Send Messages in {where}{inherited}"
    own = next(
        (
            o
            for o in source.overwrites
            if o.kind is OverwriteKind.MEMBER and o.target_id == member.id
        ),
        None,
    )
    if own is not None and own.deny & permission:
        return f"a member-specific overwrite in {source.mention} denies it{inherited}"
    denying = [
        o.target_id
        for o in source.overwrites
        if o.kind is OverwriteKind.ROLE
        and o.target_id in member.role_ids
        and o.target_id != guild.id
        and o.deny & permission
    ]
    if denying:
        roles = ", ".join(guild.role_name(r) for r in sorted(denying))
        return f"the overwrite for {roles} in {source.mention} denies it{inherited}"
    everyone = next(
        (o for o in source.overwrites if o.kind is OverwriteKind.ROLE and o.target_id == guild.id),
        None,
    )
    if everyone is not None and everyone.deny & permission:
        return f"the @everyone overwrite in {source.mention} denies it{inherited}"
    return "none of the member's roles grants it"
