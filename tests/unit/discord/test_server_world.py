"""The Acme server fixture read through the real adapter: snapshot, audiences, and its content."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from shared.discord import DiscordClient, DiscordSettings, build_discord_client
from shared.discord.audience import (
    MEMBERS_UNKNOWN,
    GuildSnapshot,
    audience_of_channel,
    load_snapshot,
    readable_by_all,
)
from shared.discord.permissions import ChannelKind
from tests.fakes.discord_server import FakeDiscordServer
from tests.fakes.discord_state import snowflake_ms
from tests.fakes.server_world import MESSAGE_CHANNELS, QUIET_CHANNELS, ServerWorld, seed_server

DAY_MS = 24 * 3600_000


@pytest.fixture
def server() -> Iterator[FakeDiscordServer]:
    with FakeDiscordServer() as srv:
        yield srv


@pytest.fixture
def world(server: FakeDiscordServer) -> ServerWorld:
    return seed_server(server.fake, messages_per_channel=12)


@pytest.fixture
def client(server: FakeDiscordServer, world: ServerWorld) -> Iterator[DiscordClient]:
    settings = DiscordSettings(token=world.token, api_base=server.api_base, max_retries=0)
    with build_discord_client(settings, None, None, None) as built:
        yield built


def every_id(world: ServerWorld) -> list[int]:
    return [*world.channel_ids(), *(t.id for t in world.threads)]


def names(snapshot: GuildSnapshot, ids: list[int]) -> list[str]:
    return [snapshot.channels[i].name for i in ids]


def test_the_snapshot_holds_the_whole_server(client: DiscordClient, world: ServerWorld) -> None:
    snap = load_snapshot(client, str(world.guild.id))
    assert snap.name == "Acme"
    assert snap.guild.owner_id == world.olivia.id
    assert snap.bot.id == world.bot.id
    assert snap.bot.role_ids == {world.bot_role}
    # 2 categories, 12 message channels, the forum and the 3 active threads; not the archived one.
    assert len(snap.channels) == 18
    assert world.archived_thread.id not in snap.channels
    assert snap.channels[world.ideas.id].kind is ChannelKind.FORUM
    assert snap.channels[world.announcements.id].kind is ChannelKind.ANNOUNCEMENT
    assert snap.channels[world.general.id].category_id == world.community.id
    assert snap.channels[world.staff_only.id].category_id == world.staff_area.id
    staff_thread = snap.channels[world.staff_thread.id]
    assert staff_thread.parent == snap.channels[world.staff_only.id]
    assert snap.channels[world.forum_post.id].parent == snap.channels[world.ideas.id]
    assert snap.members is not None
    assert {m.id for m in snap.members} == {world.bot.id, *(p.id for p in world.people.values())}
    sam = snap.member(world.sam.id)
    assert sam is not None and sam.role_ids == {world.staff_role}
    assert snap.last_message_ids[world.general.id] == world.general.last_message_id
    assert snap.last_message_ids[world.community.id] is None
    for channel_id in every_id(world):
        assert snap.can_read(snap.bot, channel_id)


def test_the_audience_of_general_may_not_see_the_staff_channels(
    client: DiscordClient, world: ServerWorld
) -> None:
    snap = load_snapshot(client, str(world.guild.id))
    audience = audience_of_channel(snap, world.general.id)
    assert audience is not None
    # Everyone but our bot; the CI bot is an ordinary member.
    assert {m.id for m in audience} == {p.id for p in world.people.values()}
    kept, left = readable_by_all(
        snap, audience, every_id(world), audience_label="members who can see #general"
    )
    assert names(snap, kept) == [
        *(n for n in MESSAGE_CHANNELS if n not in ("staff-only", "mods-room")),
        "4.2 release checklist",
        "Dark mode for the dashboard",
    ]
    assert [(o.name, o.reason) for o in left] == [
        ("staff-only", "4 of the 6 members who can see #general cannot read it"),
        ("mods-room", "3 of the 6 members who can see #general cannot read it"),
        ("Zanzibar evidence", "4 of the 6 members who can see #general cannot read it"),
    ]


def test_the_staff_audience_reads_everything(client: DiscordClient, world: ServerWorld) -> None:
    snap = load_snapshot(client, str(world.guild.id))
    audience = audience_of_channel(snap, world.staff_only.id)
    assert audience is not None
    assert {m.id for m in audience} == {world.olivia.id, world.sam.id}
    # Its thread follows #staff-only's rules, so it has the same audience.
    assert audience_of_channel(snap, world.staff_thread.id) == audience
    kept, left = readable_by_all(snap, audience, every_id(world))
    assert (kept, left) == (every_id(world), [])


def test_alice_alone_may_not_see_the_staff_channels(
    client: DiscordClient, world: ServerWorld
) -> None:
    snap = load_snapshot(client, str(world.guild.id))
    alice = snap.member(world.alice.id)
    assert alice is not None
    kept, left = readable_by_all(snap, [alice], every_id(world))
    assert world.general.id in kept
    assert [(o.channel_id, o.reason) for o in left] == [
        (world.staff_only.id, "the only one of the members of the audience cannot read it"),
        (world.mods_room.id, "the only one of the members of the audience cannot read it"),
        (world.staff_thread.id, "the only one of the members of the audience cannot read it"),
    ]


def test_without_the_members_intent_only_open_channels_are_kept(
    client: DiscordClient, world: ServerWorld, server: FakeDiscordServer
) -> None:
    server.fake.config.members_intent = False
    snap = load_snapshot(client, str(world.guild.id))
    assert snap.members is None
    assert snap.member(world.bot.id) == snap.bot  # the bot is always known
    assert audience_of_channel(snap, world.general.id) is None
    kept, left = readable_by_all(snap, None, every_id(world))
    assert [snap.channels[i].name for i in kept] == [
        *(n for n in MESSAGE_CHANNELS if n not in ("staff-only", "mods-room")),
        "4.2 release checklist",
        "Dark mode for the dashboard",
    ]
    assert [(o.name, o.reason) for o in left] == [
        ("staff-only", MEMBERS_UNKNOWN),
        ("mods-room", MEMBERS_UNKNOWN),
        ("Zanzibar evidence", MEMBERS_UNKNOWN),
    ]


def test_too_many_members_or_none_asked_for_leave_members_unknown(
    client: DiscordClient, world: ServerWorld, server: FakeDiscordServer
) -> None:
    events = server.fake.limits.events

    def routes_since(start: int) -> list[str]:
        return [e[1] for e in events[start:]]

    capped = load_snapshot(client, str(world.guild.id), max_members=3)
    assert capped.members is None
    assert capped.member(world.alice.id) is None
    # One page of 4 proves there are more than 3: the list stops there.
    assert routes_since(0).count("GET /guilds/{guild_id}/members") == 1
    start = len(events)
    assert load_snapshot(client, str(world.guild.id), with_members=False).members is None
    assert routes_since(start) == [
        "GET /guilds/{guild_id}",
        "GET /guilds/{guild_id}/channels",
        "GET /guilds/{guild_id}/threads/active",
        "GET /users/@me",
        "GET /guilds/{guild_id}/members/{user_id}",
    ]


def test_the_content_is_on_subject_and_the_markers_stay_in_their_channels(
    server: FakeDiscordServer, world: ServerWorld
) -> None:
    fake = server.fake

    def texts(channel_id: int) -> list[str]:
        return [fake.messages[m].content for m in fake.channels[channel_id].message_ids]

    for channel_id in every_id(world):
        assert len(texts(channel_id)) >= 12
        assert len(set(texts(channel_id))) == len(texts(channel_id))  # no repeated message
    marked = {
        word: {c for c in every_id(world) if any(word in t for t in texts(c))}
        for word in ("Zanzibar", "Kilimanjaro")
    }
    assert marked == {
        "Zanzibar": {world.staff_only.id, world.staff_thread.id},
        "Kilimanjaro": {world.mods_room.id},
    }
    assert sum("Zanzibar" in t for t in texts(world.staff_only.id)) >= 3
    assert any("flaky" in t for t in texts(world.dev.id))
    assert any("release build" in t for t in texts(world.dev.id))
    day_ago = world.now_ms - DAY_MS
    for name in MESSAGE_CHANNELS:
        times = [snowflake_ms(m) for m in world.channels[name].message_ids]
        assert all(t < world.now_ms for t in times)
        recent = [t for t in times if t >= day_ago]
        assert (not recent) == (name in QUIET_CHANNELS), name


def test_alice_has_a_last_message_then_mentions_and_a_reply(
    client: DiscordClient, server: FakeDiscordServer, world: ServerWorld
) -> None:
    fake = server.fake
    alice = world.alice
    hers = [m for m in fake.messages.values() if m.author_id == alice.id]
    last = max(hers, key=lambda m: m.id)
    assert last is world.alice_last_message
    assert last.channel_id == world.general.id
    assert snowflake_ms(last.id) == world.now_ms - 6 * 3600_000
    mentioned_in = set()
    for name in ("random", "help", "dev"):
        page = client.get_messages(str(world.channels[name].id), limit=100)
        for message in page:
            if any(u["id"] == str(alice.id) for u in message["mentions"]):
                assert int(message["id"]) > last.id
                mentioned_in.add(name)
    assert mentioned_in == {"random", "help", "dev"}
    reply = client.get_message(str(world.help.id), str(world.help_reply.id)).raw
    assert reply["type"] == 19
    assert reply["referenced_message"]["author"]["id"] == str(alice.id)
    assert reply["message_reference"]["message_id"] == str(world.alice_question.id)
