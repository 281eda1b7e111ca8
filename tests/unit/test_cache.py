from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import fakeredis
import pytest

from shared.cache import CachedFetch, MemoryMessageCache, MessageCache, RedisMessageCache
from shared.domain.messages import ChannelInfo, ChatMessage

CHANNEL = ChannelInfo(channel_id="10", channel_name="general", guild_id="1", guild_name="g")


def _messages(n: int) -> list[ChatMessage]:
    start = datetime(2026, 1, 1, tzinfo=UTC)
    return [
        ChatMessage(
            id=str(1000 + i),
            channel_id="10",
            timestamp=start + timedelta(seconds=i),
            author_id=str(i % 3),
            author_name=f"user{i % 3}",
            content=f"message {i} ünïcode",
            reply_to=str(999 + i) if i else None,
            reactions=i % 2,
            attachments=("a.png",) if i == 5 else (),
        )
        for i in range(n)
    ]


@pytest.fixture(params=["memory", "redis"])
def cache(request: pytest.FixtureRequest) -> Iterator[MessageCache]:
    if request.param == "memory":
        yield MemoryMessageCache(ttl=60)
    else:
        yield RedisMessageCache(fakeredis.FakeRedis(), ttl=60, prefix="t")


def test_round_trip_in_order_across_pages(cache: MessageCache) -> None:
    messages = _messages(2500)
    cache.begin("j")
    for i in range(0, 2500, 700):
        cache.append("j", messages[i : i + 700])
    assert cache.get("j") is None, "incomplete entries are invisible"
    cache.complete("j", CachedFetch(CHANNEL, 2500, 3))
    assert cache.get("j") == CachedFetch(CHANNEL, 2500, 3)
    assert list(cache.iter_messages("j")) == messages


def test_begin_discards_a_previous_attempt(cache: MessageCache) -> None:
    cache.begin("j")
    cache.append("j", _messages(5))
    cache.begin("j")
    cache.append("j", _messages(2))
    cache.complete("j", CachedFetch(CHANNEL, 2, 0))
    assert len(list(cache.iter_messages("j"))) == 2


def test_store_replaces_a_previous_attempt_complete(cache: MessageCache) -> None:
    cache.begin("j")
    cache.append("j", _messages(5))  # a dead attempt left more than this one reads
    cache.store("j", _messages(3), CachedFetch(CHANNEL, 3, 1))
    assert cache.get("j") == CachedFetch(CHANNEL, 3, 1)
    assert list(cache.iter_messages("j")) == _messages(3)
    cache.store("j", [], CachedFetch(CHANNEL, 0, 0))  # an empty window is complete too
    assert cache.get("j") == CachedFetch(CHANNEL, 0, 0)
    assert list(cache.iter_messages("j")) == []


def test_count_mismatch_means_lost(cache: MessageCache) -> None:
    cache.begin("j")
    cache.append("j", _messages(3))
    cache.complete("j", CachedFetch(CHANNEL, 4, 0))
    assert cache.get("j") is None


def test_delete_and_missing(cache: MessageCache) -> None:
    assert cache.get("nope") is None
    assert list(cache.iter_messages("nope")) == []
    cache.begin("j")
    cache.append("j", _messages(1))
    cache.complete("j", CachedFetch(CHANNEL, 1, 0))
    cache.delete("j")
    assert cache.get("j") is None
    assert cache.append("j", []) == 0


def test_memory_cache_expires(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = [100.0]
    monkeypatch.setattr("shared.cache.time.monotonic", lambda: clock[0])
    cache = MemoryMessageCache(ttl=60)
    cache.begin("j")
    cache.append("j", _messages(1))
    cache.complete("j", CachedFetch(CHANNEL, 1, 0))
    clock[0] += 61
    assert cache.get("j") is None


def test_redis_cache_sets_ttl() -> None:
    client = fakeredis.FakeRedis()
    cache = RedisMessageCache(client, ttl=90, prefix="t")
    cache.begin("j")
    cache.append("j", _messages(2))
    cache.complete("j", CachedFetch(CHANNEL, 2, 0))
    assert 0 < client.ttl("t:j:m") <= 90
    assert 0 < client.ttl("t:j:meta") <= 90
