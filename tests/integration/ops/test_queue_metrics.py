"""``job_queue_size`` and ``job_queue_oldest_seconds`` read from the real Redis, priority
sub-queues included."""

from __future__ import annotations

import json
import uuid

import pytest
import redis
from prometheus_client import CollectorRegistry, generate_latest
from redis.backoff import NoBackoff
from redis.retry import Retry

from shared.broker import PUBLISHED_AT
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


def test_the_oldest_waiting_message_says_how_far_behind_a_queue_is(redis_url: str) -> None:
    client = redis.Redis.from_url(redis_url)
    prefix = f"test-ops-{uuid.uuid4().hex[:8]}"
    fetch, summarize, other = f"{prefix}-fetch", f"{prefix}-summarize", f"{prefix}-other"

    def message(published_at: float | None) -> bytes:
        headers = {} if published_at is None else {PUBLISHED_AT: published_at}
        return json.dumps({"body": "", "headers": headers}).encode()

    try:
        # kombu pushes on the left and takes from the right: the right end waited longest.
        client.lpush(fetch, message(1000.0), message(1060.0))
        client.lpush(f"{fetch}\x06\x169", message(940.0))  # an older one at priority 9
        client.lpush(summarize, message(None))  # published by something that does not say
        registry = CollectorRegistry()
        registry.register(
            QueueSizeCollector(client, queues=(fetch, summarize, other), clock=lambda: 1100.0)
        )
        assert registry.get_sample_value("job_queue_oldest_seconds", {"queue": fetch}) == 160
        assert registry.get_sample_value("job_queue_oldest_seconds", {"queue": other}) == 0
        assert registry.get_sample_value("job_queue_oldest_seconds", {"queue": summarize}) is None
        assert registry.get_sample_value("job_queue_size", {"queue": fetch}) == 3
    finally:
        client.delete(fetch, f"{fetch}\x06\x169", summarize)
        client.close()


def test_a_scrape_survives_redis_being_down() -> None:
    dead = redis.Redis(
        host="127.0.0.1", port=1, socket_connect_timeout=0.2, retry=Retry(NoBackoff(), 0)
    )
    registry = CollectorRegistry()
    registry.register(QueueSizeCollector(dead))
    text = generate_latest(registry).decode()
    assert "# TYPE job_queue_size gauge" in text and 'job_queue_size{queue="fetch"}' not in text
