"""Discord's permission algorithm: one test per overwrite case, plus a cross-check against
discord.py's own resolver on real objects built from GUILD_CREATE payloads."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from producers.bot.snapshots import channel_view, guild_view, member_view
from shared.discord.permissions import (
    ALL_PERMISSIONS,
    READ_ACCESS,
    ChannelKind,
    ChannelView,
    GuildView,
    MemberView,
    Overwrite,
    OverwriteKind,
    Permission,
    base_permissions,
    channel_permissions,
    everyone_can_view,
    explain_missing,
    is_guild_admin,
    missing_permissions,
    permission_names,
)
from tests.unit.bot.gateway import (
    channel_json,
    guild_create,
    member_json,
    overwrite,
    parse_guild,
    role_json,
    snowflake,
    thread_json,
    user_json,
)

P = Permission
GUILD = 1_100_000_000_000_000_000
OWNER = 1_100_000_000_000_000_001
ALICE = 1_100_000_000_000_000_002
MODS = 1_100_000_000_000_000_010
MUTED = 1_100_000_000_000_000_011
ADMINS = 1_100_000_000_000_000_012
CHANNEL = 1_100_000_000_000_000_100
THREAD = 1_100_000_000_000_000_101

TEXT_MEMBER = P.VIEW_CHANNEL | P.SEND_MESSAGES | P.READ_MESSAGE_HISTORY | P.EMBED_LINKS


def guild(everyone: int = TEXT_MEMBER, **roles: int) -> GuildView:
    ids = {"mods": MODS, "muted": MUTED, "admins": ADMINS}
    table = {GUILD: everyone} | {ids[name]: bits for name, bits in roles.items()}
    names = {ids[name]: name for name in roles}
    return GuildView(id=GUILD, owner_id=OWNER, roles=table, role_names=names)


def text(*overwrites: Overwrite, kind: ChannelKind = ChannelKind.TEXT) -> ChannelView:
    return ChannelView(id=CHANNEL, kind=kind, name="general", overwrites=overwrites)


def role_ow(role: int, *, allow: int = 0, deny: int = 0) -> Overwrite:
    return Overwrite(role, OverwriteKind.ROLE, allow, deny)


def member_ow(user: int, *, allow: int = 0, deny: int = 0) -> Overwrite:
    return Overwrite(user, OverwriteKind.MEMBER, allow, deny)


def alice(*roles: int, timed_out: bool = False, joined: bool | None = None) -> MemberView:
    return MemberView(ALICE, frozenset(roles), timed_out=timed_out, thread_member=joined)


def can_read(g: GuildView, m: MemberView, c: ChannelView) -> bool:
    return channel_permissions(g, m, c) & READ_ACCESS == READ_ACCESS


# --- the overwrite cases ------------------------------------------------------------------


def test_everyone_role_grants_reading_without_overwrites() -> None:
    assert can_read(guild(), alice(), text())


def test_role_deny_overwrite_refuses_read_history() -> None:
    channel = text(role_ow(MODS, deny=P.READ_MESSAGE_HISTORY))
    g = guild(mods=0)
    assert not can_read(g, alice(MODS), channel)
    assert can_read(g, alice(), channel)  # the overwrite only hits members of the role
    assert missing_permissions(channel_permissions(g, alice(MODS), channel), READ_ACCESS) == [
        P.READ_MESSAGE_HISTORY
    ]
    why = explain_missing(g, alice(MODS), channel, P.READ_MESSAGE_HISTORY)
    assert why == f"the overwrite for @mods in <#{CHANNEL}> denies it"


def test_member_deny_overwrite_refuses_read_history() -> None:
    channel = text(member_ow(ALICE, deny=P.READ_MESSAGE_HISTORY))
    assert not can_read(guild(), alice(), channel)
    assert "member-specific overwrite" in explain_missing(
        guild(), alice(), channel, P.READ_MESSAGE_HISTORY
    )


def test_member_allow_beats_role_deny() -> None:
    channel = text(
        role_ow(MODS, deny=P.READ_MESSAGE_HISTORY), member_ow(ALICE, allow=P.READ_MESSAGE_HISTORY)
    )
    assert can_read(guild(mods=0), alice(MODS), channel)


def test_member_deny_beats_role_allow() -> None:
    channel = text(
        role_ow(MODS, allow=P.READ_MESSAGE_HISTORY), member_ow(ALICE, deny=P.READ_MESSAGE_HISTORY)
    )
    assert not can_read(guild(mods=0), alice(MODS), channel)


def test_everyone_deny_with_role_allow_lets_the_role_read() -> None:
    channel = text(
        role_ow(GUILD, deny=P.VIEW_CHANNEL | P.READ_MESSAGE_HISTORY),
        role_ow(MODS, allow=P.VIEW_CHANNEL | P.READ_MESSAGE_HISTORY),
    )
    g = guild(mods=0)
    assert can_read(g, alice(MODS), channel)
    assert not can_read(g, alice(), channel)
    assert "the @everyone overwrite" in explain_missing(g, alice(), channel, P.VIEW_CHANNEL)


def test_everyone_deny_overrides_a_guild_level_role_grant() -> None:
    channel = text(role_ow(GUILD, deny=P.READ_MESSAGE_HISTORY))
    g = guild(everyone=P.VIEW_CHANNEL, mods=P.READ_MESSAGE_HISTORY)
    assert not can_read(g, alice(MODS), channel)


def test_role_allow_wins_over_another_roles_deny() -> None:
    # Role overwrites are aggregated: all denies, then all allows.
    channel = text(
        role_ow(MODS, allow=P.READ_MESSAGE_HISTORY), role_ow(MUTED, deny=P.READ_MESSAGE_HISTORY)
    )
    assert can_read(guild(mods=0, muted=0), alice(MODS, MUTED), channel)


def test_role_grant_at_guild_level_without_everyone() -> None:
    g = guild(everyone=0, mods=READ_ACCESS)
    assert can_read(g, alice(MODS), text())
    assert not can_read(g, alice(), text())
    assert explain_missing(g, alice(), text(), P.VIEW_CHANNEL) == (
        "none of the member's roles grants it"
    )


def test_administrator_ignores_every_overwrite() -> None:
    channel = text(
        role_ow(GUILD, deny=READ_ACCESS),
        role_ow(ADMINS, deny=READ_ACCESS),
        member_ow(ALICE, deny=READ_ACCESS),
    )
    g = guild(admins=P.ADMINISTRATOR)
    assert channel_permissions(g, alice(ADMINS), channel) == ALL_PERMISSIONS
    assert is_guild_admin(g, alice(ADMINS))
    assert not is_guild_admin(g, alice())


def test_owner_has_everything() -> None:
    owner = MemberView(OWNER)
    channel = text(member_ow(OWNER, deny=READ_ACCESS), role_ow(GUILD, deny=READ_ACCESS))
    assert channel_permissions(guild(everyone=0), owner, channel) == ALL_PERMISSIONS
    assert base_permissions(guild(everyone=0), owner) == ALL_PERMISSIONS


def test_timed_out_member_keeps_only_view_and_read_history() -> None:
    g = guild(everyone=TEXT_MEMBER | P.ADD_REACTIONS)
    perms = channel_permissions(g, alice(timed_out=True), text())
    assert perms == P.VIEW_CHANNEL | P.READ_MESSAGE_HISTORY
    assert explain_missing(g, alice(timed_out=True), text(), P.SEND_MESSAGES) == (
        "the member is timed out"
    )


def test_timed_out_member_is_still_refused_by_a_deny() -> None:
    channel = text(member_ow(ALICE, deny=P.READ_MESSAGE_HISTORY))
    assert not can_read(guild(), alice(timed_out=True), channel)


# --- threads ------------------------------------------------------------------------------


def thread_of(parent: ChannelView, kind: ChannelKind = ChannelKind.PUBLIC_THREAD) -> ChannelView:
    return ChannelView(id=THREAD, kind=kind, name="release-42", parent=parent)


def test_thread_inherits_its_parents_role_deny() -> None:
    parent = text(role_ow(MODS, deny=P.READ_MESSAGE_HISTORY))
    thread = thread_of(parent)
    g = guild(mods=0)
    assert not can_read(g, alice(MODS), thread)
    assert can_read(g, alice(), thread)
    why = explain_missing(g, alice(MODS), thread, P.READ_MESSAGE_HISTORY)
    assert f"inherits <#{CHANNEL}>" in why


def test_thread_inherits_its_parents_member_allow() -> None:
    parent = text(role_ow(GUILD, deny=P.VIEW_CHANNEL), member_ow(ALICE, allow=P.VIEW_CHANNEL))
    assert can_read(guild(), alice(), thread_of(parent))


def test_thread_overwrites_of_its_own_are_ignored() -> None:
    # A thread has no overwrites; anything attached to the snapshot is not consulted.
    parent = text()
    thread = ChannelView(
        id=THREAD,
        kind=ChannelKind.PUBLIC_THREAD,
        overwrites=(member_ow(ALICE, deny=READ_ACCESS),),
        parent=parent,
    )
    assert can_read(guild(), alice(), thread)


def test_thread_without_parent_is_an_error() -> None:
    orphan = ChannelView(id=THREAD, kind=ChannelKind.PUBLIC_THREAD)
    with pytest.raises(ValueError, match="parent"):
        channel_permissions(guild(), alice(), orphan)


def test_private_thread_needs_membership_or_manage_threads() -> None:
    thread = thread_of(text(), ChannelKind.PRIVATE_THREAD)
    g = guild(mods=P.MANAGE_THREADS)
    assert not can_read(g, alice(), thread)
    assert can_read(g, alice(joined=True), thread)
    assert can_read(g, alice(MODS), thread)
    assert "private thread" in explain_missing(g, alice(), thread, P.VIEW_CHANNEL)
    assert not everyone_can_view(g, thread)


def test_thread_sending_uses_send_messages_in_threads() -> None:
    g = guild(everyone=READ_ACCESS | P.SEND_MESSAGES | P.EMBED_LINKS)
    perms = channel_permissions(g, alice(), thread_of(text()))
    assert not perms & P.SEND_MESSAGES_IN_THREADS
    assert not perms & P.EMBED_LINKS  # implicitly lost: cannot send in the thread
    g2 = guild(everyone=READ_ACCESS | P.SEND_MESSAGES_IN_THREADS | P.EMBED_LINKS)
    assert channel_permissions(g2, alice(), thread_of(text())) & P.EMBED_LINKS


# --- implicit rules and helpers -----------------------------------------------------------


def test_no_view_channel_means_nothing_in_the_channel() -> None:
    channel = text(role_ow(GUILD, deny=P.VIEW_CHANNEL))
    assert channel_permissions(guild(), alice(), channel) == 0
    why = explain_missing(guild(), alice(), channel, P.READ_MESSAGE_HISTORY)
    assert why.startswith("without View Channel")


def test_no_send_messages_drops_embed_links() -> None:
    channel = text(role_ow(GUILD, deny=P.SEND_MESSAGES))
    perms = channel_permissions(guild(), alice(), channel)
    assert perms & READ_ACCESS == READ_ACCESS
    assert not perms & P.EMBED_LINKS
    assert explain_missing(guild(), alice(), channel, P.EMBED_LINKS).startswith(
        "it needs Send Messages"
    )


def test_everyone_can_view_tells_private_channels_apart() -> None:
    assert everyone_can_view(guild(), text())
    assert not everyone_can_view(guild(), text(role_ow(GUILD, deny=P.VIEW_CHANNEL)))


@pytest.mark.parametrize("kind", [ChannelKind.VOICE, ChannelKind.STAGE])
def test_a_voice_channels_text_chat_needs_connect(kind: ChannelKind) -> None:
    # Get Channel Messages needs Connect in a voice channel besides View Channel (Discord's
    # docs): whoever may not connect sees the channel but cannot read its text chat.
    voice = text(role_ow(GUILD, deny=P.CONNECT), role_ow(MODS, allow=P.CONNECT), kind=kind)
    g = guild(TEXT_MEMBER | P.CONNECT, mods=0)
    outside = channel_permissions(g, alice(), voice)
    assert outside & P.VIEW_CHANNEL and not outside & P.READ_MESSAGE_HISTORY
    assert explain_missing(g, alice(), voice, P.READ_MESSAGE_HISTORY) == (
        f"<#{CHANNEL}> is a voice channel: its text chat needs Connect"
    )
    assert can_read(g, alice(MODS), voice)
    assert not everyone_can_view(g, voice)  # private: @everyone cannot read its chat
    assert everyone_can_view(g, text(kind=kind))


def test_permission_names_read_like_a_sentence() -> None:
    assert permission_names([P.VIEW_CHANNEL]) == "View Channel"
    assert permission_names([P.VIEW_CHANNEL, P.READ_MESSAGE_HISTORY]) == (
        "View Channel and Read Message History"
    )
    assert permission_names([P.VIEW_CHANNEL, P.SEND_MESSAGES, P.EMBED_LINKS]) == (
        "View Channel, Send Messages and Embed Links"
    )
    assert permission_names([P.CREATE_INSTANT_INVITE]) == "Create Instant Invite"
    assert permission_names([]) == ""


def test_role_name_falls_back_to_the_id() -> None:
    g = guild(mods=0)
    assert g.role_name(GUILD) == "@everyone"
    assert g.role_name(MODS) == "@mods"
    assert g.role_name(42) == "role 42"


# --- the same answers as discord.py on real objects ----------------------------------------

# Bits both implementations define the same way for a text channel.
_CHANNEL_BITS = (
    P.VIEW_CHANNEL
    | P.SEND_MESSAGES
    | P.READ_MESSAGE_HISTORY
    | P.EMBED_LINKS
    | P.ATTACH_FILES
    | P.ADD_REACTIONS
    | P.MANAGE_MESSAGES
    | P.MENTION_EVERYONE
    | P.MANAGE_THREADS
    | P.SEND_MESSAGES_IN_THREADS
)
_BITS = [int(b) for b in P if b & (_CHANNEL_BITS | P.CONNECT)] + [int(P.ADMINISTRATOR)]


def _bits(rng: random.Random, p: float) -> int:
    return sum(b for b in _BITS if b != P.ADMINISTRATOR and rng.random() < p)


def _world(
    rng: random.Random, kind: ChannelKind = ChannelKind.TEXT
) -> tuple[dict[str, Any], list[dict[str, Any]], dict[str, Any]]:
    guild_id, owner = snowflake(), snowflake()
    bot = user_json(snowflake(), "relay", bot=True)
    role_ids = [snowflake() for _ in range(4)]
    roles = [role_json(guild_id, "@everyone", _bits(rng, 0.6), 0)]
    for n, rid in enumerate(role_ids):
        bits = _bits(rng, 0.3)
        if rng.random() < 0.08:
            bits |= P.ADMINISTRATOR
        roles.append(role_json(rid, f"role{n}", bits, n + 1))
    users = [user_json(snowflake(), f"user{n}") for n in range(6)]
    members = []
    for user in users:
        mine = [r for r in role_ids if rng.random() < 0.4]
        timed_out = datetime.now(UTC) + timedelta(hours=1) if rng.random() < 0.1 else None
        members.append(member_json(user, mine, timed_out_until=timed_out))
    overwrites = []
    if rng.random() < 0.7:
        overwrites.append(overwrite(guild_id, 0, allow=_bits(rng, 0.2), deny=_bits(rng, 0.3)))
    for rid in role_ids:
        if rng.random() < 0.5:
            overwrites.append(overwrite(rid, 0, allow=_bits(rng, 0.2), deny=_bits(rng, 0.2)))
    for user in users:
        if rng.random() < 0.3:
            overwrites.append(
                overwrite(int(user["id"]), 1, allow=_bits(rng, 0.2), deny=_bits(rng, 0.2))
            )
    channel_id, thread_id = snowflake(), snowflake()
    payload = guild_create(
        guild_id,
        owner_id=owner if rng.random() < 0.9 else int(users[0]["id"]),
        roles=roles,
        channels=[
            channel_json(channel_id, guild_id, "general", type=kind, overwrites=overwrites)
            # discord.py reads a voice channel's bitrate and user limit
            | (
                {"bitrate": 64000, "user_limit": 0}
                if kind in (ChannelKind.VOICE, ChannelKind.STAGE)
                else {}
            )
        ],
        threads=[thread_json(thread_id, guild_id, channel_id, "t", owner_id=owner)],
        members=[member_json(bot, [])],
    )
    return payload, members, bot


@pytest.mark.parametrize("seed", range(60))
def test_matches_discord_py_on_random_guilds(seed: int) -> None:
    rng = random.Random(seed)
    payload, members, bot = _world(rng)
    parsed = parse_guild(payload, bot)
    g = guild_view(parsed.guild)
    channel = parsed.guild.text_channels[0]
    thread = parsed.guild.threads[0]
    for data in members:
        member = parsed.member(data)
        mine = channel_permissions(g, member_view(member), channel_view(channel))
        theirs = channel.permissions_for(member).value
        assert mine & _CHANNEL_BITS == theirs & _CHANNEL_BITS, (seed, data["user"])
        in_thread = channel_permissions(g, member_view(member), channel_view(thread))
        assert in_thread & READ_ACCESS == thread.permissions_for(member).value & READ_ACCESS


@pytest.mark.parametrize("seed", range(40))
def test_voice_channels_match_discord_py_on_random_guilds(seed: int) -> None:
    rng = random.Random(seed)
    kind = ChannelKind.VOICE if seed % 2 else ChannelKind.STAGE
    payload, members, bot = _world(rng, kind)
    parsed = parse_guild(payload, bot)
    g = guild_view(parsed.guild)
    channel = (parsed.guild.voice_channels or parsed.guild.stage_channels)[0]
    for data in members:
        member = parsed.member(data)
        mine = channel_permissions(g, member_view(member), channel_view(channel))
        theirs = channel.permissions_for(member)
        # discord.py's answer, with Discord's rule it leaves out: no Connect, no history.
        expected = theirs.value & READ_ACCESS
        if not theirs.connect:
            expected &= ~P.READ_MESSAGE_HISTORY
        assert mine & READ_ACCESS == expected, (seed, data["user"])
        assert bool(mine & P.CONNECT) == theirs.connect


def test_snapshot_keeps_role_ids_missing_from_the_cache() -> None:
    # A role the cache does not know can still be the target of a denying overwrite.
    guild_id, unknown = snowflake(), snowflake()
    bot = user_json(snowflake(), "relay", bot=True)
    channel_id = snowflake()
    payload = guild_create(
        guild_id,
        owner_id=snowflake(),
        roles=[role_json(guild_id, "@everyone", int(READ_ACCESS), 0)],
        channels=[
            channel_json(
                channel_id,
                guild_id,
                "general",
                overwrites=[overwrite(unknown, 0, deny=int(P.READ_MESSAGE_HISTORY))],
            )
        ],
        members=[member_json(bot, [])],
    )
    parsed = parse_guild(payload, bot)
    member = parsed.member(member_json(user_json(snowflake(), "ann"), [unknown]))
    view = member_view(member)
    assert unknown in view.role_ids
    channel = channel_view(parsed.guild.text_channels[0])
    assert channel.overwrites[0].kind is OverwriteKind.ROLE
    assert not can_read(guild_view(parsed.guild), view, channel)
