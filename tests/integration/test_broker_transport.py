"""The broker transport (shared.broker) on the real Redis: one client per channel, same wire."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest
import redis
from celery import Celery
from kombu import Connection

import celeryconfig
from shared.broker import TRANSPORT, Channel, broker_settings
from shared.jobs import CeleryEnqueuer, publisher_app


def test_redis_urls_get_the_transport_and_others_keep_kombus() -> None:
    assert broker_settings("redis://127.0.0.1:6379/0") == {
        "broker_url": "redis://127.0.0.1:6379/0",
        "broker_transport": TRANSPORT,
    }
    # TLS defaults come from the rediss scheme in kombu; the embedded broker is in memory.
    assert broker_settings("rediss://cache.example:6380/0") == {
        "broker_url": "rediss://cache.example:6380/0"
    }
    assert broker_settings("memory://localhost/") == {"broker_url": "memory://localhost/"}


def test_publishes_reuse_one_client_and_land_as_celery_messages(
    redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    app = publisher_app(redis_url, visibility_timeout=3600)
    with app.connection_for_write() as connection:
        assert connection.as_uri().startswith(f"{TRANSPORT}://")
        used = type(connection.default_channel)
    assert (used.__module__, used.__name__) == ("shared.broker", "Channel")
    made: list[int] = []
    original = used._create_client

    def counting(self: Channel, asynchronous: bool = False) -> Any:
        if not asynchronous:
            made.append(id(self))
        return original(self, asynchronous)

    monkeypatch.setattr(used, "_create_client", counting)
    queue = "fetch"
    client: redis.Redis[Any] = redis.Redis.from_url(redis_url)
    job_ids = [str(uuid.uuid4()) for _ in range(5)]
    enqueuer = CeleryEnqueuer(app)
    try:
        for job_id in job_ids:
            enqueuer.enqueue("summarybot.fetch", job_id)
        ours = [
            body
            for body in (json.loads(raw) for raw in client.lrange(queue, 0, -1))
            if body["headers"]["argsrepr"] in {repr([job_id]) for job_id in job_ids}
        ]
        assert len(ours) == 5
        assert {body["headers"]["task"] for body in ours} == {"summarybot.fetch"}
        # Five publishes through one pooled producer channel: at most one client made (none
        # when kombu's process-wide producer pool already holds a channel for this broker from
        # an earlier test); stock kombu makes one per publish.
        assert len(made) <= 1
    finally:
        for raw in client.lrange(queue, 0, -1):
            if any(job_id in raw.decode() for job_id in job_ids):
                client.lrem(queue, 1, raw)
        client.close()


def test_the_channel_follows_kombu_to_a_new_pool(redis_url: str) -> None:
    with Connection(redis_url, transport=TRANSPORT) as connection:
        channel = connection.default_channel
        with channel.conn_or_acquire() as first, channel.conn_or_acquire() as again:
            assert first is again
            first.ping()
        # What kombu does after a fork or a failed ping: drop the pools.
        channel._disconnect_pools()
        with channel.conn_or_acquire() as after:
            assert after is not first
            assert after.connection_pool is channel.pool
            assert after.ping()
        given = object()
        with channel.conn_or_acquire(given) as passed:
            assert passed is given


def test_a_worker_app_uses_it_too(redis_url: str) -> None:
    app = Celery("t", set_as_current=False)
    app.config_from_object(celeryconfig)
    app.conf.update(**broker_settings(redis_url))
    with app.connection_for_read() as connection:
        used = type(connection.default_channel)
    assert (used.__module__, used.__name__) == ("shared.broker", "Channel")
