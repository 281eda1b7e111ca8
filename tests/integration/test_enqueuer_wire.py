"""CeleryEnqueuer's own publish path writes what Celery's ``send_task`` writes."""

from __future__ import annotations

import json
import threading
import time
import uuid
from typing import Any

import pytest
import redis
from celery.signals import before_task_publish

from shared.broker import PUBLISHED_AT, stamp_published_at
from shared.jobs import CeleryEnqueuer, HeldEnqueuer, publisher_app
from tests.fakes.enqueuer import RecordingEnqueuer

_IDS = {("headers", "id"), ("headers", "root_id"), ("properties", "correlation_id")}
_IDS |= {("properties", "delivery_tag")}
#: Not an id, but as different from one publish to the next.
_IDS |= {("headers", PUBLISHED_AT)}


def _ours(client: redis.Redis[Any], queue: str, marker: str) -> list[dict[str, Any]]:
    return [json.loads(raw) for raw in client.lrange(queue, 0, -1) if marker in raw.decode()]


def _without_ids(message: dict[str, Any]) -> dict[str, Any]:
    out = {k: v for k, v in message.items() if not isinstance(v, dict)}
    for part in ("headers", "properties", "delivery_info"):
        out[part] = {k: v for k, v in message.get(part, {}).items() if (part, k) not in _IDS}
    return out


def test_the_enqueuer_publishes_what_send_task_publishes(redis_url: str) -> None:
    app = publisher_app(redis_url, visibility_timeout=3600)
    client: redis.Redis[Any] = redis.Redis.from_url(redis_url)
    marker = str(uuid.uuid4())
    try:
        app.send_task("summarybot.fetch", args=[marker], ignore_result=True)
        CeleryEnqueuer(app, clock=lambda: 1_764_590_400.25).enqueue("summarybot.fetch", marker)
        CeleryEnqueuer(app).enqueue("summarybot.deliver", marker, "other")
        enqueued, sent = _ours(client, "fetch", marker)  # newest first: kombu pushes left
        assert _without_ids(enqueued) == _without_ids(sent)
        # Besides Celery's headers, ours says when it was published.
        assert PUBLISHED_AT not in sent["headers"]
        assert enqueued["headers"][PUBLISHED_AT] == 1_764_590_400.25
        assert enqueued["headers"]["id"] != sent["headers"]["id"]
        assert enqueued["headers"]["root_id"] == enqueued["headers"]["id"]
        assert enqueued["properties"]["correlation_id"] == enqueued["headers"]["id"]
        (deliver,) = _ours(client, "deliver", marker)
        assert deliver["headers"]["task"] == "summarybot.deliver"
        assert deliver["headers"]["argsrepr"] == repr([marker, "other"])
    finally:
        for queue in ("fetch", "deliver"):
            for raw in client.lrange(queue, 0, -1):
                if marker in raw.decode():
                    client.lrem(queue, 1, raw)
        client.close()


def test_a_registered_task_is_sent_by_send_task(
    redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    app = publisher_app(redis_url, visibility_timeout=3600)

    @app.task(name="summarybot.fetch", time_limit=7, shared=False)
    def fetch(job_id: str) -> None:  # pragma: no cover - never run
        del job_id

    calls: list[tuple[str, Any]] = []
    monkeypatch.setattr(app, "send_task", lambda name, **kw: calls.append((name, kw)))
    CeleryEnqueuer(app, clock=lambda: 12.5).enqueue("summarybot.fetch", "job")
    assert calls == [
        (
            "summarybot.fetch",
            {"args": ["job"], "ignore_result": True, "headers": {PUBLISHED_AT: 12.5}},
        )
    ]


def test_more_publishing_threads_than_the_pool_allows_all_get_through(redis_url: str) -> None:
    # Producers are kept between publishes, but never so many that a thread waiting in
    # kombu's pool could wait for one nobody gives back: 16 threads (the API's two pools of
    # 8) against the default limit of 10.
    app = publisher_app(redis_url, visibility_timeout=3600)
    assert app.conf.broker_pool_limit == 10
    enqueuer = CeleryEnqueuer(app)
    client: redis.Redis[Any] = redis.Redis.from_url(redis_url)
    marker = str(uuid.uuid4())

    def publish(thread: int) -> None:
        for n in range(5):
            enqueuer.enqueue("summarybot.fetch", f"{marker}-{thread}-{n}")

    threads = [threading.Thread(target=publish, args=(t,), daemon=True) for t in range(16)]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(20)
        assert not any(thread.is_alive() for thread in threads)
        assert len(_ours(client, "fetch", marker)) == 80
    finally:
        for raw in client.lrange("fetch", 0, -1):
            if marker in raw.decode():
                client.lrem("fetch", 1, raw)
        client.close()
        app.close()


def _drop(client: redis.Redis[Any], queue: str, marker: str) -> None:
    for raw in client.lrange(queue, 0, -1):
        if marker in raw.decode():
            client.lrem(queue, 1, raw)


def test_publish_commands_are_the_push_a_publish_makes(redis_url: str) -> None:
    app = publisher_app(redis_url, visibility_timeout=3600)
    client: redis.Redis[Any] = redis.Redis.from_url(redis_url)
    enqueuer = CeleryEnqueuer(app)
    marker = str(uuid.uuid4())
    try:
        enqueuer.enqueue("summarybot.fetch", marker)
        assert enqueuer.publishes_to(client)
        commands = enqueuer.publish_commands("summarybot.fetch", marker)
        assert commands is not None
        ((verb, queue, payload),) = commands
        assert (verb, queue) == ("LPUSH", "fetch")
        (published,) = _ours(client, "fetch", marker)
        made = json.loads(payload)
        assert _without_ids(made) == _without_ids(published)
        assert made["headers"]["id"] != published["headers"]["id"]
        assert made["properties"]["delivery_tag"] != published["properties"]["delivery_tag"]
    finally:
        _drop(client, "fetch", marker)
        client.close()


def test_commands_are_refused_where_only_a_publish_will_do(redis_url: str) -> None:
    from celery.signals import before_task_publish

    app = publisher_app(redis_url, visibility_timeout=3600)
    enqueuer = CeleryEnqueuer(app)
    same: redis.Redis[Any] = redis.Redis.from_url(redis_url)
    database = int(redis_url.rsplit("/", 1)[1])
    other: redis.Redis[Any] = redis.Redis.from_url(
        redis_url.rsplit("/", 1)[0] + f"/{(database + 1) % 16}"
    )
    try:
        assert enqueuer.publishes_to(same)
        assert not enqueuer.publishes_to(other)  # another database of the same server
        assert not enqueuer.publishes_to(object())

        def stamp(**_: Any) -> None:  # pragma: no cover - never published here
            return None

        before_task_publish.connect(stamp, weak=False)
        try:
            assert enqueuer.publish_commands("summarybot.fetch", "x") is None
        finally:
            before_task_publish.disconnect(stamp)
        assert enqueuer.publish_commands("summarybot.fetch", "x") is not None

        memory = CeleryEnqueuer(publisher_app("memory://localhost/", visibility_timeout=3600))
        assert not memory.publishes_to(same)
        assert memory.publish_commands("summarybot.fetch", "x") is None
    finally:
        same.close()
        other.close()


def test_held_publications_leave_as_commands_once(redis_url: str) -> None:
    app = publisher_app(redis_url, visibility_timeout=3600)
    client: redis.Redis[Any] = redis.Redis.from_url(redis_url)
    held = HeldEnqueuer(CeleryEnqueuer(app))
    held.enqueue("summarybot.fetch", "a")
    held.enqueue("summarybot.deliver", "b", "c")
    try:
        commands = held.release_as_commands(client)
        assert commands is not None
        assert [command[:2] for command in commands] == [("LPUSH", "fetch"), ("LPUSH", "deliver")]
        assert held.held == ()
        assert held.release_as_commands(client) == ()
        held.release()  # nothing left to publish

        recording = HeldEnqueuer(RecordingEnqueuer())
        recording.enqueue("summarybot.fetch", "a")
        assert recording.release_as_commands(client) is None
        assert recording.held == (("summarybot.fetch", ("a",)),)
    finally:
        client.close()


def test_enqueuers_of_several_apps_keep_producers_from_one_share(redis_url: str) -> None:
    """kombu's pools are one per broker URL in a process, shared by every app: if each
    enqueuer kept its own half of the pool, the third would wait for ever."""
    enqueuers = [CeleryEnqueuer(publisher_app(redis_url, visibility_timeout=3600)) for _ in "abcd"]
    limit = int(publisher_app(redis_url, visibility_timeout=3600).conf.broker_pool_limit)

    def busy_moment() -> None:
        for enqueuer in enqueuers:  # each, in turn, with as many publishes at once as it keeps
            producers = [enqueuer._take_producer() for _ in range(limit // 2)]
            for producer in producers:
                enqueuer._keep_producer(producer)

    worker = threading.Thread(target=busy_moment, daemon=True)
    worker.start()
    worker.join(20)
    assert not worker.is_alive(), "an enqueuer waited for producers the others kept"
    marker = str(uuid.uuid4())
    client: redis.Redis[Any] = redis.Redis.from_url(redis_url)
    try:
        for enqueuer in enqueuers:
            enqueuer.enqueue("summarybot.fetch", marker)
        assert len(_ours(client, "fetch", marker)) == len(enqueuers)
    finally:
        _drop(client, "fetch", marker)
        client.close()


def test_a_process_whose_messages_celery_publishes_stamps_them_too(redis_url: str) -> None:
    # Beat publishes its sweeps with Celery's own send_task; the receiver it connects makes
    # them say when they were published, as the enqueuer's messages do.
    app = publisher_app(redis_url, visibility_timeout=3600)
    client: redis.Redis[Any] = redis.Redis.from_url(redis_url)
    marker = str(uuid.uuid4())
    before_task_publish.connect(stamp_published_at, weak=False)
    try:
        started = time.time()
        app.send_task("summarybot.maintenance.purge_expired", args=[marker], ignore_result=True)
        (message,) = _ours(client, "maintenance", marker)
        assert started <= message["headers"][PUBLISHED_AT] <= time.time()
    finally:
        before_task_publish.disconnect(stamp_published_at)
        for raw in client.lrange("maintenance", 0, -1):
            if marker in raw.decode():
                client.lrem("maintenance", 1, raw)
        client.close()
