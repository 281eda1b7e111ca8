"""``job_queue_size`` read from the real Redis, priority sub-queues included."""

from __future__ import annotations

import uuid

import pytest
import redis
from prometheus_client import CollectorRegistry, generate_latest
from redis.backoff import NoBackoff
from redis.retry import Retry

from shared.metrics import QueueSizeCollector

pytestmark = pytest.mark.integration


def test_queue_lengths_sum_priority_lists(redis_url: str) -> None:
    client = redis.Redis.from_url(redis_url)
    prefix = f"test-ops-{uuid.uuid4().hex[:8]}"
    fetch, deliver = f"{prefix}-fetch", f"{prefix}-deliver"
    try:
        client.rpush(fetch, b"a", b"b", b"c")
        client.rpush(f"{fetch}\x06\x163", b"d")  # kombu's list for priority step 3
        client.rpush(deliver, b"e")
        registry = CollectorRegistry()
        registry.register(QueueSizeCollector(client, queues=(fetch, deliver, f"{prefix}-none")))
        assert registry.get_sample_value("job_queue_size", {"queue": fetch}) == 4
        assert registry.get_sample_value("job_queue_size", {"queue": deliver}) == 1
        assert registry.get_sample_value("job_queue_size", {"queue": f"{prefix}-none"}) == 0
        assert registry.get_sample_value("job_unacked_tasks") is not None
    finally:
        client.delete(fetch, f"{fetch}\x06\x163", deliver)
        client.close()


def test_a_scrape_survives_redis_being_down() -> None:
    dead = redis.Redis(
        host="127.0.0.1", port=1, socket_connect_timeout=0.2, retry=Retry(NoBackoff(), 0)
    )
    registry = CollectorRegistry()
    registry.register(QueueSizeCollector(dead))
    text = generate_latest(registry).decode()
    assert "# TYPE job_queue_size gauge" in text and 'job_queue_size{queue="fetch"}' not in text
