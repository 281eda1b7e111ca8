"""The bot's access policy on snapshots: who may summarize what, and where it may go."""

from __future__ import annotations

from dataclasses import replace

from producers.bot.authorize import (
    AccessRequest,
    PermissionHints,
    authorize_summary,
    can_manage_guild,
    passes_role_allowlist,
)
from producers.bot.store import GuildConfig
from schema.models.tenancy import PrivateChannelPolicy
from shared.discord.permissions import (
    READ_ACCESS,
    ChannelKind,
    ChannelView,
    GuildView,
    MemberView,
    Overwrite,
    OverwriteKind,
    Permission,
)

P = Permission
GUILD = 2_000_000_000_000_000_000
OWNER = 2_000_000_000_000_000_001
ALICE = 2_000_000_000_000_000_002
BOT = 2_000_000_000_000_000_003
READERS = 2_000_000_000_000_000_010
BOT_ROLE = 2_000_000_000_000_000_011
MANAGERS = 2_000_000_000_000_000_012
SOURCE = 2_000_000_000_000_000_100
OTHER = 2_000_000_000_000_000_101
THREAD = 2_000_000_000_000_000_102

MEMBER_BITS = READ_ACCESS | P.SEND_MESSAGES | P.SEND_MESSAGES_IN_THREADS | P.EMBED_LINKS

GUILD_VIEW = GuildView(
    id=GUILD,
    owner_id=OWNER,
    roles={GUILD: MEMBER_BITS, READERS: 0, BOT_ROLE: MEMBER_BITS, MANAGERS: P.MANAGE_GUILD},
    role_names={READERS: "readers", BOT_ROLE: "RelayBot", MANAGERS: "managers"},
)
ME = MemberView(ALICE)
BOT_MEMBER = MemberView(BOT, frozenset({BOT_ROLE}))


def channel(channel_id: int = SOURCE, *overwrites: Overwrite) -> ChannelView:
    return ChannelView(id=channel_id, kind=ChannelKind.TEXT, name="c", overwrites=overwrites)


def ow(target: int, *, allow: int = 0, deny: int = 0, member: bool = False) -> Overwrite:
    kind = OverwriteKind.MEMBER if member else OverwriteKind.ROLE
    return Overwrite(target, kind, allow, deny)


PRIVATE = channel(
    SOURCE,
    ow(GUILD, deny=P.VIEW_CHANNEL),
    ow(ALICE, allow=P.VIEW_CHANNEL, member=True),
    ow(BOT_ROLE, allow=P.VIEW_CHANNEL),
)


def request(**changes: object) -> AccessRequest:
    base = AccessRequest(
        guild=GUILD_VIEW,
        member=ME,
        bot=BOT_MEMBER,
        source=channel(),
        config=GuildConfig(guild_id=GUILD),
        reply_channel=channel(),
    )
    return replace(base, **changes)  # type: ignore[arg-type]


def test_a_member_who_can_read_is_allowed() -> None:
    assert authorize_summary(request()) is None


def test_excluded_channel_and_its_threads_are_refused() -> None:
    config = GuildConfig(guild_id=GUILD, excluded_channel_ids=frozenset({SOURCE}))
    refusal = authorize_summary(request(config=config))
    assert refusal is not None and refusal.party == "policy"
    assert "excluded" in refusal.message
    thread = ChannelView(id=THREAD, kind=ChannelKind.PUBLIC_THREAD, parent=channel())
    assert authorize_summary(request(config=config, source=thread)) is not None


def test_private_channels_can_be_denied_by_policy() -> None:
    config = GuildConfig(guild_id=GUILD, private_channel_policy=PrivateChannelPolicy.DENY)
    refusal = authorize_summary(request(source=PRIVATE, reply_channel=PRIVATE, config=config))
    assert refusal is not None and "private" in refusal.message
    assert authorize_summary(request(config=config)) is None  # public channels still work


def test_role_allowlist() -> None:
    config = GuildConfig(guild_id=GUILD, allowed_role_ids=frozenset({READERS}))
    refusal = authorize_summary(request(config=config))
    assert refusal is not None and f"<@&{READERS}>" in refusal.message
    reader = MemberView(ALICE, frozenset({READERS}))
    assert authorize_summary(request(config=config, member=reader)) is None
    manager = MemberView(ALICE, frozenset({MANAGERS}))
    assert passes_role_allowlist(GUILD_VIEW, manager, config)
    assert authorize_summary(request(config=config, member=MemberView(OWNER))) is None


def test_member_without_read_history_is_refused_with_the_cause() -> None:
    source = channel(SOURCE, ow(READERS, deny=P.READ_MESSAGE_HISTORY))
    refusal = authorize_summary(
        request(source=source, member=MemberView(ALICE, frozenset({READERS})))
    )
    assert refusal is not None and refusal.party == "member"
    assert refusal.missing == (P.READ_MESSAGE_HISTORY,)
    assert refusal.message.startswith(f"You need Read Message History in <#{SOURCE}>")
    assert "@readers" in refusal.message


def test_discords_own_figure_can_only_restrict() -> None:
    refusal = authorize_summary(request(hints=PermissionHints(source=int(P.VIEW_CHANNEL))))
    assert refusal is not None and "Discord reports it as missing" in refusal.message
    assert authorize_summary(request(hints=PermissionHints(source=int(READ_ACCESS)))) is None


def test_member_must_be_able_to_post_in_the_destination() -> None:
    destination = channel(OTHER, ow(GUILD, deny=P.SEND_MESSAGES))
    refusal = authorize_summary(request(destination=destination))
    assert refusal is not None and refusal.party == "member"
    assert "Send Messages" in refusal.message and "post a summary there" in refusal.message
    thread = ChannelView(id=THREAD, kind=ChannelKind.PUBLIC_THREAD, parent=channel(OTHER))
    assert authorize_summary(request(destination=thread)) is None


def test_joining_the_source_thread_does_not_open_another_private_thread() -> None:
    # The command ran inside private thread T1 (so Alice is in it); posting into private
    # thread T2 needs her to be in T2, which nothing says.
    source = ChannelView(id=THREAD, kind=ChannelKind.PRIVATE_THREAD, parent=channel())
    other = ChannelView(id=THREAD + 1, kind=ChannelKind.PRIVATE_THREAD, parent=channel(OTHER))
    inside = replace(ME, thread_member=True)
    bot = replace(BOT_MEMBER, thread_member=True)
    config = GuildConfig(guild_id=GUILD, private_channel_policy=PrivateChannelPolicy.ALLOW)
    here = request(member=inside, bot=bot, source=source, config=config, reply_channel=source)
    assert authorize_summary(here) is None
    assert authorize_summary(replace(here, destination=source)) is None
    refusal = authorize_summary(replace(here, destination=other))
    assert refusal is not None and refusal.party == "member"
    assert "private thread" in refusal.message


def test_same_channel_policy_keeps_private_summaries_in_place() -> None:
    other = channel(OTHER)
    refusal = authorize_summary(request(source=PRIVATE, reply_channel=other))
    assert refusal is not None and refusal.party == "policy"
    assert "private" in refusal.message
    assert authorize_summary(request(source=PRIVATE, reply_channel=other, private=True)) is None
    assert authorize_summary(request(source=PRIVATE, reply_channel=PRIVATE)) is None
    in_thread = ChannelView(id=THREAD, kind=ChannelKind.PUBLIC_THREAD, parent=PRIVATE)
    assert authorize_summary(request(source=PRIVATE, destination=in_thread)) is None
    assert authorize_summary(request(source=PRIVATE, destination=other)) is not None
    assert authorize_summary(request(source=PRIVATE, external=True, reply_channel=None)) is not None
    assert (
        authorize_summary(request(source=PRIVATE, reply_channel=other, member=MemberView(OWNER)))
        is None
    )


def test_allow_policy_lets_private_summaries_travel() -> None:
    config = GuildConfig(guild_id=GUILD, private_channel_policy=PrivateChannelPolicy.ALLOW)
    assert (
        authorize_summary(request(source=PRIVATE, reply_channel=channel(OTHER), config=config))
        is None
    )


def test_bot_without_read_history_says_which_and_where() -> None:
    source = channel(SOURCE, ow(BOT_ROLE, deny=P.READ_MESSAGE_HISTORY))
    refusal = authorize_summary(request(source=source))
    assert refusal is not None and refusal.party == "bot"
    assert refusal.message.startswith(f"I need Read Message History in <#{SOURCE}>")
    assert "@RelayBot" in refusal.message and "Ask a server admin" in refusal.message
    hinted = authorize_summary(request(hints=PermissionHints(bot_source=int(P.VIEW_CHANNEL))))
    assert hinted is not None and hinted.party == "bot"


def test_bot_needs_embed_links_in_the_destination() -> None:
    destination = channel(OTHER, ow(BOT_ROLE, deny=P.EMBED_LINKS))
    refusal = authorize_summary(request(destination=destination))
    assert refusal is not None and refusal.party == "bot"
    assert "Embed Links" in refusal.message and f"<#{OTHER}>" in refusal.message


def test_manage_server_check() -> None:
    assert can_manage_guild(GUILD_VIEW, MemberView(OWNER))
    assert can_manage_guild(GUILD_VIEW, MemberView(ALICE, frozenset({MANAGERS})))
    assert not can_manage_guild(GUILD_VIEW, ME)


def test_timed_out_members_are_refused() -> None:
    refusal = authorize_summary(request(member=MemberView(ALICE, timed_out=True)))
    assert refusal is not None and "timed out" in refusal.message
