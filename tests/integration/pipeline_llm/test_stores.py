"""The Redis notes cache and job scratch against the real Redis."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest
from redis import Redis

from shared.summarize.llm.notes_cache import RedisNotesCache, RedisScratchStore
from shared.summarize.transcript import TranscriptLine

pytestmark = pytest.mark.integration


def _line(i: int) -> TranscriptLine:
    return TranscriptLine(
        alias=f"m{i}",
        message_id=str(700 + i),
        timestamp=datetime(2024, 1, 1, 0, i, tzinfo=UTC),
        author_id="u1",
        author="ann",
        reply_alias=None,
        text=f"line {i} ünïcode",
        source_text=f"line {i} ünïcode",
    )


def test_notes_cache_round_trip_ttl_and_corruption(redis_client: Redis) -> None:  # type: ignore[type-arg]
    prefix = f"sbtest:notes:{uuid.uuid4().hex[:8]}"
    cache = RedisNotesCache(redis_client, ttl=120, prefix=prefix)
    try:
        cache.put("a", {"key_points": [{"text": "x", "message_ids": ["701"]}]})
        redis_client.set(f"{prefix}:bad", b"not zlib")
        assert cache.get_many(["a", "missing", "bad"]) == [
            {"key_points": [{"text": "x", "message_ids": ["701"]}]},
            None,
            None,
        ]
        assert 0 < redis_client.ttl(f"{prefix}:a") <= 120
        assert cache.get_many([]) == []
        off = RedisNotesCache(redis_client, ttl=0, prefix=prefix)
        off.put("b", {"n": 1})
        assert off.get_many(["a"]) == [None] and redis_client.get(f"{prefix}:b") is None
    finally:
        for key in redis_client.scan_iter(f"{prefix}:*"):
            redis_client.delete(key)


def test_scratch_round_trip_batches_and_delete(redis_client: Redis) -> None:  # type: ignore[type-arg]
    prefix = f"sbtest:scratch:{uuid.uuid4().hex[:8]}"
    store = RedisScratchStore(redis_client, ttl=60, prefix=prefix)
    store.BATCH = 3
    lines = [_line(i) for i in range(1, 8)]
    store.put_chunk("job", 2, lines)
    store.put_cited("job", lines[:5])
    store.put_cited("job", [])
    assert store.get_chunk("job", 2) == lines and store.get_chunk("job", 3) is None
    found = store.get_cited("job", [line.message_id for line in lines])
    assert sorted(found) == [line.message_id for line in lines[:5]]
    assert found["701"] == lines[0]
    assert 0 < redis_client.ttl(f"{prefix}:job:cited") <= 60
    store.delete("job")
    assert list(redis_client.scan_iter(f"{prefix}:*")) == []
