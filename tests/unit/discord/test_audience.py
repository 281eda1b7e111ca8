"""Audience checks on hand-built snapshots: who can read what, and why a channel is left out."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from shared.discord.audience import (
    MEMBERS_UNKNOWN,
    READ,
    GuildSnapshot,
    LeftOut,
    audience_of_channel,
    channel_from_json,
    guild_from_json,
    member_from_json,
    readable_by_all,
)
from shared.discord.permissions import (
    ChannelKind,
    ChannelView,
    GuildView,
    MemberView,
    Overwrite,
    OverwriteKind,
    Permission,
)

P = Permission
GUILD = 900
OWNER, ALICE, BOB, ADMIN, BOT, OTHER_BOT = 1, 2, 3, 4, 5, 6
STAFF, MUTED, ADMINS, BOT_ROLE = 10, 11, 12, 13
EVERYONE_PERMS = P.VIEW_CHANNEL | P.READ_MESSAGE_HISTORY | P.SEND_MESSAGES

GUILD_VIEW = GuildView(
    id=GUILD,
    owner_id=OWNER,
    roles={
        GUILD: EVERYONE_PERMS,
        STAFF: P.MANAGE_MESSAGES,
        MUTED: 0,
        ADMINS: P.ADMINISTRATOR,
        BOT_ROLE: P.VIEW_CHANNEL | P.READ_MESSAGE_HISTORY | P.SEND_MESSAGES,
    },
    role_names={STAFF: "Staff", MUTED: "Muted", ADMINS: "Admins", BOT_ROLE: "SummaryBot"},
)
owner = MemberView(OWNER)
alice = MemberView(ALICE)
bob = MemberView(BOB, frozenset({MUTED}))
admin = MemberView(ADMIN, frozenset({ADMINS}))
bot = MemberView(BOT, frozenset({BOT_ROLE}))
other_bot = MemberView(OTHER_BOT)


def deny(target: int, bits: int, kind: OverwriteKind = OverwriteKind.ROLE) -> Overwrite:
    return Overwrite(target, kind, deny=bits)


def allow(target: int, bits: int, kind: OverwriteKind = OverwriteKind.ROLE) -> Overwrite:
    return Overwrite(target, kind, allow=bits)


general = ChannelView(100, ChannelKind.TEXT, "general")
# Muted role denied reading, but Bob's own overwrite lets him read: a member allow wins.
muted_but_bob = ChannelView(
    101,
    ChannelKind.TEXT,
    "quiet",
    (deny(MUTED, P.VIEW_CHANNEL), allow(BOB, P.VIEW_CHANNEL, OverwriteKind.MEMBER)),
)
staff = ChannelView(
    102,
    ChannelKind.TEXT,
    "staff",
    (deny(GUILD, P.VIEW_CHANNEL), allow(STAFF, READ), allow(BOT_ROLE, READ)),
)
staff_thread = ChannelView(103, ChannelKind.PUBLIC_THREAD, "case", parent=staff)
general_thread = ChannelView(104, ChannelKind.PUBLIC_THREAD, "chat", parent=general)
private_thread = ChannelView(105, ChannelKind.PRIVATE_THREAD, "secret", parent=general)
bot_blind = ChannelView(106, ChannelKind.TEXT, "no-bots", (deny(BOT_ROLE, P.VIEW_CHANNEL),))
no_history = ChannelView(
    107,
    ChannelKind.TEXT,
    "live",
    (deny(GUILD, P.READ_MESSAGE_HISTORY), allow(BOT_ROLE, P.READ_MESSAGE_HISTORY)),
)
muted_denied = ChannelView(108, ChannelKind.TEXT, "chatty", (deny(MUTED, P.VIEW_CHANNEL),))
CHANNELS = (
    general,
    muted_but_bob,
    staff,
    staff_thread,
    general_thread,
    private_thread,
    bot_blind,
    no_history,
    muted_denied,
)


def snapshot(members: tuple[MemberView, ...] | None = (owner, alice, bob, bot)) -> GuildSnapshot:
    return GuildSnapshot(
        guild=GUILD_VIEW,
        name="Acme",
        channels={c.id: c for c in CHANNELS},
        members=members,
        bot=bot,
        last_message_ids={c.id: None for c in CHANNELS},
    )


def test_read_is_view_channel_and_read_message_history() -> None:
    assert READ == P.VIEW_CHANNEL | P.READ_MESSAGE_HISTORY
    snap = snapshot()
    assert snap.can_read(alice, general.id)
    # Seeing the channel without its history is not reading it.
    assert not snap.can_read(alice, no_history.id)
    assert not snap.can_read(alice, 999)  # unknown channel


def test_member_overwrite_allow_beats_role_deny() -> None:
    snap = snapshot()
    muted_carol = MemberView(7, frozenset({MUTED}))
    assert snap.can_read(bob, muted_but_bob.id)
    assert not snap.can_read(muted_carol, muted_but_bob.id)
    kept, left = readable_by_all(snap, [alice, bob], [muted_but_bob.id])
    assert (kept, left) == ([muted_but_bob.id], [])
    kept, left = readable_by_all(snap, [alice, bob, muted_carol], [muted_but_bob.id])
    assert kept == []
    assert left == [
        LeftOut(muted_but_bob.id, "quiet", "1 of the 3 members of the audience cannot read it")
    ]


def test_a_thread_inherits_its_parents_rules() -> None:
    snap = snapshot()
    staffer = MemberView(8, frozenset({STAFF}))
    kept, left = readable_by_all(snap, [staffer, owner], [staff.id, staff_thread.id])
    assert (kept, left) == ([staff.id, staff_thread.id], [])
    kept, left = readable_by_all(
        snap,
        [staffer, alice],
        [general_thread.id, staff_thread.id],
        audience_label="members who can see #general",
    )
    assert kept == [general_thread.id]
    assert left == [
        LeftOut(staff_thread.id, "case", "1 of the 2 members who can see #general cannot read it")
    ]


def test_a_private_thread_is_always_left_out() -> None:
    snap = snapshot()
    for audience in ([owner], [admin], None):
        kept, left = readable_by_all(snap, audience, [private_thread.id])
        assert kept == []
        assert left == [
            LeftOut(private_thread.id, "secret", "private thread (who is in it is not known)")
        ]
    assert audience_of_channel(snap, private_thread.id) is None


def test_a_channel_the_bot_cannot_read_is_left_out_and_the_cause_named() -> None:
    snap = snapshot()
    kept, left = readable_by_all(snap, [owner, alice], [general.id, bot_blind.id])
    assert kept == [general.id]
    assert [(o.channel_id, o.name) for o in left] == [(bot_blind.id, "no-bots")]
    assert left[0].reason.startswith("the bot cannot read it: ")
    assert "@SummaryBot" in left[0].reason
    # Even an audience of admins (who read everything) cannot get what the bot cannot read.
    assert readable_by_all(snap, [admin], [bot_blind.id])[0] == []


def test_an_admin_in_the_audience_changes_nothing() -> None:
    snap = snapshot()
    ids = [c.id for c in CHANNELS]
    for audience in ([alice], [alice, bob], [owner, alice]):
        kept, left = readable_by_all(snap, audience, ids)
        kept_with_admin, left_with_admin = readable_by_all(snap, [*audience, admin], ids)
        assert kept_with_admin == kept
        assert [o.channel_id for o in left_with_admin] == [o.channel_id for o in left]
    # An admin alone reads all the bot reads, but a private thread stays out.
    kept, _ = readable_by_all(snap, [admin], ids)
    assert kept == [c.id for c in CHANNELS if c.id not in (private_thread.id, bot_blind.id)]


def test_unknown_members_keep_only_channels_open_to_everyone() -> None:
    snap = snapshot(members=None)
    ids = [c.id for c in CHANNELS]
    kept, left = readable_by_all(snap, None, ids)
    assert kept == [general.id, general_thread.id]
    reasons = {o.channel_id: o.reason for o in left}
    # Closed to @everyone, to the Muted role, or without history for @everyone: all out.
    for channel in (staff, staff_thread, muted_but_bob, no_history, muted_denied):
        assert reasons[channel.id] == MEMBERS_UNKNOWN
    assert reasons[private_thread.id].startswith("private thread")
    assert reasons[bot_blind.id].startswith("the bot cannot read it")
    assert snap.viewers(general.id) is None
    assert audience_of_channel(snap, general.id) is None


def test_kept_ids_keep_the_input_order_and_unknown_ids_are_explained() -> None:
    snap = snapshot()
    kept, left = readable_by_all(snap, [alice], [general_thread.id, 404, general.id])
    assert kept == [general_thread.id, general.id]
    assert left == [LeftOut(404, "", "not found in the server (deleted, or an archived thread)")]


def test_viewers_are_members_who_can_read_without_our_bot() -> None:
    snap = snapshot(members=(owner, alice, bob, admin, bot, other_bot))
    assert snap.viewers(staff.id) == (owner, admin)
    assert snap.viewers(general.id) == (owner, alice, bob, admin, other_bot)
    assert audience_of_channel(snap, staff_thread.id) == (owner, admin)
    assert snap.viewers(muted_denied.id) == (owner, alice, admin, other_bot)
    assert snap.member(ALICE) == alice
    assert snap.member(404) is None
    assert snapshot(members=None).member(BOT) == bot


def test_json_is_read_into_views() -> None:
    guild = guild_from_json(
        {
            "id": str(GUILD),
            "owner_id": str(OWNER),
            "roles": [
                {"id": str(GUILD), "name": "@everyone", "permissions": str(int(EVERYONE_PERMS))},
                {"id": str(STAFF), "name": "Staff", "permissions": "8192"},
            ],
        }
    )
    assert guild.roles == {GUILD: EVERYONE_PERMS, STAFF: 8192}
    assert guild.role_name(STAFF) == "@Staff"
    channel = channel_from_json(
        {
            "id": "102",
            "type": 0,
            "name": "staff",
            "parent_id": "50",
            "permission_overwrites": [
                {"id": str(GUILD), "type": 0, "allow": "0", "deny": "1024"},
                {"id": "2", "type": 1, "allow": "1024", "deny": "0"},
            ],
        }
    )
    assert channel.category_id == 50
    assert channel.overwrites == (
        Overwrite(GUILD, OverwriteKind.ROLE, 0, 1024),
        Overwrite(2, OverwriteKind.MEMBER, 1024, 0),
    )
    thread = channel_from_json({"id": "7", "type": 11, "parent_id": "102"}, parent=channel)
    assert (thread.parent, thread.category_id, thread.overwrites) == (channel, None, ())
    now = datetime(2026, 3, 1, tzinfo=UTC)
    later = (now + timedelta(hours=1)).isoformat()
    earlier = (now - timedelta(hours=1)).isoformat()
    base = {"user": {"id": "2"}, "roles": [str(STAFF)]}
    assert member_from_json({**base, "communication_disabled_until": later}, now=now).timed_out
    assert not member_from_json(
        {**base, "communication_disabled_until": earlier}, now=now
    ).timed_out
    assert member_from_json({**base, "communication_disabled_until": None}, now=now) == MemberView(
        2, frozenset({STAFF})
    )
    with pytest.raises(ValueError, match="99"):
        channel_from_json({"id": "8", "type": 99})
