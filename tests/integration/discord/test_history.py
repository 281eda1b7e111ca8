"""History iteration against the fake: windows, cursors, limits, threads, pages."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from shared.discord import DiscordClient, Message, MessageReference
from shared.domain.messages import snowflake_time
from shared.errors import InvalidInputError
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
    with pytest.raises(InvalidInputError, match="neither"):
        list(client.iter_history(str(world.general.id), after="yesterday"))
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
