"""History iteration against the fake: windows, cursors, limits, threads, pages."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from shared.discord import DiscordClient, Message, MessageReference
from shared.domain.messages import snowflake_time
from shared.errors import ConfigError, InvalidInputError
from tests.fakes.discord_server import FakeDiscordServer, World

pytestmark = pytest.mark.integration

MINUTE = 60_000


@pytest.fixture
def history(server: FakeDiscordServer, world: World) -> list[int]:
    """250 messages one minute apart, ending an hour ago; returns their ids oldest first."""
    fake = server.fake
    start = fake.now_ms() - 60 * MINUTE - 250 * MINUTE
    fake.add_history(world.general, [world.alice, world.bob], 250, start_ms=start, step_ms=MINUTE)
    return list(fake.channels[world.general.id].message_ids)


def test_whole_history_oldest_first_page_by_page(
    client: DiscordClient, world: World, history: list[int]
) -> None:
    pages: list[int] = []
    messages = list(client.iter_history(str(world.general.id), on_page=pages.append))
    assert [int(m.id) for m in messages] == history
    assert pages == [100, 200, 250]
    first = messages[0]
    assert first.author_name == "Marisol"
    assert first.channel_id == str(world.general.id)
    assert first.timestamp == snowflake_time(first.id)


def test_a_forward_reads_as_the_message_it_forwards(
    client: DiscordClient, server: FakeDiscordServer, world: World
) -> None:
    # A forward's own content is empty; the forwarded text, attachments and embeds ride in
    # its message snapshot (Discord's message snapshot object).
    fake = server.fake
    original = fake.add_message(
        world.general,
        world.bob,
        f"the 4.2 freeze moves to Friday, <@{world.alice.id}>",
        attachments=[{"id": "1", "filename": "plan.pdf", "url": "https://cdn.invalid/plan.pdf"}],
        embeds=[{"title": "Release calendar"}],
    )
    fake.add_forward(world.general, world.alice, original)
    forward = list(client.iter_history(str(world.general.id)))[-1]
    assert forward.content == "[forwarded] the 4.2 freeze moves to Friday, @Marisol"
    assert forward.attachments == ("plan.pdf",)
    assert forward.embeds == ("Release calendar",)
    assert forward.extra["forwarded"] is True
    assert forward.extra["forwarded_from"] == str(original.id)


def test_history_without_the_message_content_intent_is_refused_not_summarized_blank(
    client: DiscordClient, server: FakeDiscordServer, world: World, history: list[int]
) -> None:
    # Without the privileged intent Discord empties other users' messages over REST too: a
    # summary of them would be a summary of nothing, with no error anywhere.
    server.fake.config.message_content_intent = False
    with pytest.raises(ConfigError, match="lacks the Message Content intent"):
        list(client.iter_history(str(world.general.id)))
    server.fake.config.message_content_intent = True
    assert all(m.content for m in client.iter_history(str(world.general.id), limit=20))


def test_time_window_is_inclusive_start_exclusive_end(
    client: DiscordClient, world: World, history: list[int]
) -> None:
    low, high = snowflake_time(history[20]), snowflake_time(history[30])
    window = list(client.iter_history(str(world.general.id), after=low, before=high))
    assert [int(m.id) for m in window] == history[20:30]


def test_after_a_message_and_limits(
    client: DiscordClient, world: World, history: list[int]
) -> None:
    channel = str(world.general.id)
    after = list(client.iter_history(channel, after=str(history[199])))
    assert [int(m.id) for m in after] == history[200:]
    oldest = list(client.iter_history(channel, limit=150))
    assert [int(m.id) for m in oldest] == history[:150]
    calls: list[int] = []
    newest = list(client.iter_history(channel, limit=120, newest=True, on_page=calls.append))
    assert [int(m.id) for m in newest] == history[-120:]
    assert calls[-1] == 120
    before = datetime.now(UTC) - timedelta(minutes=60 + 50)
    latest_before = list(client.iter_history(channel, before=before, limit=10, newest=True))
    expected = [m for m in history if snowflake_time(m) < before][-10:]
    assert [int(m.id) for m in latest_before] == expected
    everything = list(client.iter_history(channel, limit=1000, newest=True))
    assert len(everything) == 250


def test_bad_arguments_are_explained(client: DiscordClient, world: World) -> None:
    with pytest.raises(InvalidInputError, match="timezone"):
        list(client.iter_history(str(world.general.id), after=datetime(2026, 1, 1)))
    for not_an_id in ("yesterday", "²", "١٢٣", "-1"):
        with pytest.raises(InvalidInputError, match="neither"):
            list(client.iter_history(str(world.general.id), after=not_an_id))
    with pytest.raises(InvalidInputError, match="at least 1"):
        list(client.iter_history(str(world.general.id), limit=0))


def test_no_read_history_permission_gives_nothing(
    client: DiscordClient, world: World, server: FakeDiscordServer
) -> None:
    from tests.fakes.discord_state import READ_MESSAGE_HISTORY

    server.fake.add_message(world.readonly, world.alice, "hidden history")
    overwrite = world.readonly.overwrites[0]  # the bot role's
    overwrite["deny"] = str(int(overwrite["deny"]) | READ_MESSAGE_HISTORY)
    assert list(client.iter_history(str(world.readonly.id))) == []


def test_thread_history_starts_with_the_starter_message(
    client: DiscordClient, world: World, server: FakeDiscordServer
) -> None:
    channel = str(world.general.id)
    starter = client.send_message(channel, Message(content="Deploy 4.2 is out, review?"))
    thread = client.create_thread(channel, "review", message_id=starter.id)
    first = client.send_message(thread.id, Message(content="on it"))
    client.send_message(thread.id, Message(content="lgtm", reply_to=MessageReference(first.id)))
    messages = list(client.iter_thread_history(thread.id))
    assert [m.content for m in messages] == ["Deploy 4.2 is out, review?", "on it", "lgtm"]
    assert messages[0].channel_id == channel
    assert messages[2].reply_to == first.id
    assert messages[2].kind == "Reply"
    assert [m.content for m in client.iter_thread_history(thread.id, limit=2)] == [
        "Deploy 4.2 is out, review?",
        "on it",
    ]
    assert [m.content for m in client.iter_thread_history(thread.id, limit=1)] == [
        "Deploy 4.2 is out, review?"
    ]
    later = list(client.iter_thread_history(thread.id, after=first.id))
    assert [m.content for m in later] == ["lgtm"]


def test_forum_post_history_and_thread_without_starter(
    client: DiscordClient, world: World, server: FakeDiscordServer
) -> None:
    post = client.create_forum_post(str(world.forum.id), "Dark mode", Message(content="please"))
    client.send_message(post.id, Message(content="+1"))
    assert [m.content for m in client.iter_thread_history(post.id)] == ["please", "+1"]
    plain = client.create_thread(str(world.general.id), "no starter")
    client.send_message(plain.id, Message(content="first"))
    pages: list[int] = []
    assert [m.content for m in client.iter_thread_history(plain.id, on_page=pages.append)] == [
        "first"
    ]
    assert pages == [1]


READ = "GET /channels/{channel_id}/messages"


def history_requests(server: FakeDiscordServer, channel_id: int) -> list[int]:
    """Statuses of the history requests the fake answered for one channel."""
    return [e[2] for e in server.fake.limits.events if e[1] == READ and e[5] == str(channel_id)]


def test_every_window_is_one_pass_with_no_request_to_spare(
    client: DiscordClient, world: World, history: list[int], server: FakeDiscordServer
) -> None:
    channel = str(world.general.id)
    cases: list[tuple[dict[str, Any], list[int], int]] = [
        ({}, history, 3),  # 100 + 100 + a short page of 50
        ({"limit": 150}, history[:150], 2),
        ({"limit": 200}, history[:200], 2),
        ({"limit": 120, "newest": True}, history[-120:], 2),
        ({"limit": 200, "newest": True}, history[-200:], 2),
        ({"limit": 1000, "newest": True}, history, 3),
        ({"limit": 30, "newest": True, "after": str(history[229])}, history[230:], 1),
        ({"limit": 150, "newest": True, "after": str(history[9])}, history[100:], 2),
    ]
    for kwargs, expected, requests in cases:
        server.fake.limits.events.clear()
        got = [int(m.id) for m in client.iter_history(channel, **kwargs)]
        assert got == expected, kwargs
        assert history_requests(server, world.general.id) == [200] * requests, kwargs


def test_a_walk_with_a_limit_asks_only_for_the_messages_it_still_wants(
    client: DiscordClient, world: World, history: list[int], server: FakeDiscordServer
) -> None:
    channel = str(world.general.id)
    cases: list[tuple[dict[str, Any], list[int], list[tuple[int, int]]]] = [
        ({"limit": 20, "newest": True}, history[-20:], [(20, 20)]),
        ({"limit": 120, "newest": True}, history[-120:], [(100, 100), (20, 20)]),
        ({"limit": 150}, history[:150], [(100, 100), (50, 50)]),
        ({"limit": 7}, history[:7], [(7, 7)]),
        # Messages at or before ``after`` are dropped once the page came; a page that reaches
        # below the floor ends the walk.
        ({"limit": 30, "newest": True, "after": str(history[229])}, history[230:], [(30, 30)]),
        ({}, history, [(100, 100), (100, 100), (100, 50)]),
    ]
    for kwargs, expected, pages in cases:
        server.fake.history_pages.clear()
        got = [int(m.id) for m in client.iter_history(channel, **kwargs)]
        assert got == expected, kwargs
        served = [(a, n) for c, a, n in server.fake.history_pages if c == world.general.id]
        assert served == pages, kwargs


def test_latest_window_spills_to_disk_and_reads_back_oldest_first(
    client: DiscordClient,
    world: World,
    history: list[int],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import shared.discord.history as history_module

    monkeypatch.setattr(history_module, "SPILL_MEMORY_BYTES", 2048)
    pages: list[int] = []
    channel = str(world.general.id)
    messages = list(client.iter_history(channel, limit=240, newest=True, on_page=pages.append))
    assert [int(m.id) for m in messages] == history[-240:]
    assert pages == [100, 200, 240]
    # The spilled copies are the same messages the forward walk yields.
    assert messages == list(client.iter_history(channel))[-240:]


def test_stopping_early_stops_the_walk(
    client: DiscordClient, world: World, history: list[int], server: FakeDiscordServer
) -> None:
    walk = client.iter_history(str(world.general.id))
    first = [next(walk) for _ in range(10)]
    walk.close()
    assert [int(m.id) for m in first] == history[:10]
    time.sleep(0.2)  # a prefetched page may still land; nothing after it is asked for
    assert len(history_requests(server, world.general.id)) <= 2


def test_latest_5000_messages_in_at_most_51_history_requests(
    client: DiscordClient, world: World, server: FakeDiscordServer
) -> None:
    fake = server.fake
    channel = fake.add_channel(world.guild, "busy")
    start = fake.now_ms() - 7000 * MINUTE
    fake.add_history(channel, [world.alice, world.bob], 6000, start_ms=start, step_ms=MINUTE)
    ids = channel.message_ids
    messages = list(client.iter_history(str(channel.id), limit=5000, newest=True))
    assert [int(m.id) for m in messages] == ids[-5000:]
    statuses = history_requests(server, channel.id)
    assert statuses == [200] * 50
