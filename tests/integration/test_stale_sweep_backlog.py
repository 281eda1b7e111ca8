"""The stale-job sweep against a real broker: a job still waiting its turn is not sent again.

Each test runs a Redis of its own (the queues must hold only what the test put there) and a
database of its own.  Messages are published by the producers' :class:`CeleryEnqueuer` with a
clock the test sets, so each message says when it was published; the jobs' rows carry the
matching times.  Nothing consumes the queues: a backlog is simply messages still in them.
"""

from __future__ import annotations

import io
import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import redis
from celery import Celery

from schema.models.jobs import Job
from shared.broker import PUBLISHED_AT, QueueHead, queue_keys
from shared.cache import MemoryMessageCache
from shared.db.engine import make_engine, make_sessionmaker
from shared.jobs import FETCH, SUMMARIZE, CeleryEnqueuer, publisher_app
from shared.pipeline.recovery import HANDOVER_SKEW, requeue_stale_jobs
from shared.pipeline.services import Services
from shared.settings import load_settings
from shared.summarize.extractive.summarizer import ExtractiveSummarizer
from tests.perf.chaos import RedisServer
from tests.support.databases import fresh_database

pytestmark = pytest.mark.integration

T0 = datetime(2026, 12, 1, 12, tzinfo=UTC)
#: Long after every job below was handed over: all of them are stale (timeout 900 s).
SWEEP_AT = T0 + timedelta(hours=2)


@dataclass
class Broker:
    """A private Redis, a publisher app on it, and an enqueuer whose clock the test sets."""

    server: RedisServer
    app: Celery
    client: redis.Redis[Any]
    now: list[float] = field(default_factory=lambda: [T0.timestamp()])

    def __post_init__(self) -> None:
        self.enqueuer = CeleryEnqueuer(self.app, clock=lambda: self.now[0])

    def publish(self, task: str, job_id: uuid.UUID, at: datetime) -> None:
        """Publish ``task(job_id)`` as if at ``at``."""
        self.now[0] = at.timestamp()
        self.enqueuer.enqueue(task, str(job_id))

    def waiting(self, queue: str) -> list[str]:
        """The job ids of the messages waiting in ``queue``, oldest first."""
        raws = [raw for key in queue_keys(queue) for raw in self.client.lrange(key, 0, -1)]
        return [_job_of(raw) for raw in reversed(raws)]


def _job_of(raw: bytes) -> str:
    headers = json.loads(raw)["headers"]
    return str(headers["argsrepr"]).strip("[]'")


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Broker]:
    server = RedisServer(tmp_path)
    server.start()
    app = publisher_app(server.url, visibility_timeout=3600)
    client: redis.Redis[Any] = redis.Redis.from_url(server.url)
    try:
        yield Broker(server, app, client)
    finally:
        client.close()
        app.close()
        server.kill()


@pytest.fixture
def services(postgres_url: str, broker: Broker, tmp_path: Path) -> Iterator[Services]:
    with fresh_database(postgres_url, prefix="sb_sweep") as url:
        engine = make_engine(url)
        settings = load_settings(
            database_url=url,
            redis_url=broker.server.url,
            data_dir=tmp_path / "data",
            stage_timeout_seconds=900,
        )
        yield Services(
            settings=settings,
            session_factory=make_sessionmaker(engine),
            cache=MemoryMessageCache(ttl=60),
            enqueuer=broker.enqueuer,
            summarizer=ExtractiveSummarizer(),
            console=io.StringIO(),
            clock=lambda: SWEEP_AT,
        )
        engine.dispose()


def _job(services: Services, status: str, handed_over: datetime) -> uuid.UUID:
    """A job row handed over at ``handed_over`` (created then; a later stage beat then)."""
    job = Job(
        id=uuid.uuid4(),
        origin="api",
        status=status,
        params={},
        progress={},
        created_at=handed_over if status == "queued" else T0 - timedelta(hours=1),
        heartbeat_at=None if status == "queued" else handed_over,
    )
    with services.session_factory() as session, session.begin():
        session.add(job)
    return job.id


def _sweep(broker: Broker, services: Services) -> int:
    """Run the sweep at ``SWEEP_AT`` (what it sends again is published then)."""
    broker.now[0] = SWEEP_AT.timestamp()
    return requeue_stale_jobs(services)


def _heartbeat(services: Services, job_id: uuid.UUID) -> datetime | None:
    with services.session_factory() as session:
        job = session.get(Job, job_id)
        assert job is not None
        return job.heartbeat_at


def test_jobs_behind_a_backlog_wait_and_a_lost_one_is_sent_again(
    broker: Broker, services: Services
) -> None:
    lost = _job(services, "queued", T0)  # its message never reached the broker
    first = _job(services, "queued", T0 + timedelta(minutes=10))
    second = _job(services, "queued", T0 + timedelta(minutes=20))
    broker.publish(FETCH, first, T0 + timedelta(minutes=10))
    broker.publish(FETCH, second, T0 + timedelta(minutes=20))

    assert _sweep(broker, services) == 1
    # The lost job is sent again behind the backlog; the two waiting ones are not copied.
    assert broker.waiting("fetch") == [str(first), str(second), str(lost)]
    assert _heartbeat(services, lost) == SWEEP_AT
    assert _heartbeat(services, first) is None and _heartbeat(services, second) is None

    # The next sweeps leave them alone as long as they wait.
    assert _sweep(broker, services) == 0
    assert broker.waiting("fetch") == [str(first), str(second), str(lost)]

    # The queue's messages are lost (a Redis that came back empty): nothing waits any more, so
    # both are sent again (the lost one beat at the first sweep, so it is not stale yet).
    broker.client.delete(*queue_keys("fetch"))
    assert _sweep(broker, services) == 2
    assert broker.waiting("fetch") == [str(first), str(second)]


def test_a_job_handed_over_before_the_oldest_waiting_message_lost_its_own(
    broker: Broker, services: Services
) -> None:
    # The workers got past this job's turn: its message, had it been published, would have
    # been taken before the one now at the head.  Within the allowed skew it still waits.
    head_at = T0 + timedelta(minutes=30)
    behind = _job(services, "queued", head_at - HANDOVER_SKEW / 2)
    passed = _job(services, "queued", head_at - HANDOVER_SKEW * 2)
    broker.publish(FETCH, uuid.uuid4(), head_at)

    assert _sweep(broker, services) == 1
    assert str(passed) in broker.waiting("fetch")
    assert str(behind) not in broker.waiting("fetch")


def test_summarizing_jobs_wait_for_the_summarize_queue_and_started_fetches_do_not(
    broker: Broker, services: Services
) -> None:
    # A fetch that started (the job is fetching) and stopped beating died with its worker:
    # a fetch backlog says nothing about it.  A job handed to summarize waits for that queue.
    started = _job(services, "fetching", T0 + timedelta(minutes=40))
    handed = _job(services, "summarizing", T0 + timedelta(minutes=40))
    broker.publish(FETCH, uuid.uuid4(), T0)
    broker.publish(SUMMARIZE, uuid.uuid4(), T0 + timedelta(minutes=30))

    assert _sweep(broker, services) == 1
    assert str(started) in broker.waiting("fetch")
    assert str(handed) not in broker.waiting("summarize")


def test_a_head_that_does_not_say_when_it_was_published_holds_nothing(
    broker: Broker, services: Services
) -> None:
    # Published by Celery's own send_task (another publisher, or an older release): the sweep
    # cannot tell how far behind the queue is, so it sends every stale job as it always did.
    waiting = _job(services, "queued", T0 + timedelta(minutes=10))
    broker.app.send_task(FETCH, args=[str(uuid.uuid4())], ignore_result=True)
    broker.publish(FETCH, waiting, T0 + timedelta(minutes=10))

    assert broker.enqueuer.queue_head(FETCH) == QueueHead(empty=False, published_at=None)
    assert _sweep(broker, services) == 1
    assert broker.waiting("fetch").count(str(waiting)) == 2


def test_the_head_is_the_oldest_message_of_every_priority_list(broker: Broker) -> None:
    assert broker.enqueuer.queue_head(FETCH) == QueueHead(empty=True)
    broker.publish(FETCH, uuid.uuid4(), T0 + timedelta(minutes=5))
    broker.app.send_task(
        FETCH,
        args=[str(uuid.uuid4())],
        ignore_result=True,
        priority=9,
        headers={PUBLISHED_AT: T0.timestamp()},
    )
    assert broker.client.llen(queue_keys("fetch")[9]) == 1
    assert broker.enqueuer.queue_head(FETCH) == QueueHead(empty=False, published_at=T0.timestamp())
    assert broker.enqueuer.queue_head(SUMMARIZE) == QueueHead(empty=True)


def test_the_in_process_broker_cannot_say() -> None:
    app = publisher_app("memory://localhost/", visibility_timeout=3600)
    try:
        assert CeleryEnqueuer(app).queue_head(FETCH) is None
    finally:
        app.close()
