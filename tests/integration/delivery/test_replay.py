"""``summarybot replay`` on PostgreSQL: reset rows, publish on the real Redis broker."""

from __future__ import annotations

import io
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from producers.cli.delivery_commands import replay
from schema.models.jobs import DeadLetter, Delivery
from shared.crypto import generate_key
from shared.db.engine import make_engine, make_sessionmaker
from shared.jobs import DELIVER
from shared.services.replay import ReplaySelection
from shared.settings import load_settings
from tests.support.databases import fresh_database
from tests.unit.delivery.helpers import add_summary

pytestmark = pytest.mark.integration


@pytest.fixture
def clean_redis(redis_url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url)
    client.flushdb()  # this test database holds nothing but these tests' queues
    yield client
    client.flushdb()
    client.close()


@pytest.fixture
def own_db(postgres_url: str) -> Iterator[str]:
    """``--all`` replays every dead letter in the database: no other test may write there."""
    with fresh_database(postgres_url, prefix="sb_replay") as database_url:
        yield database_url


def test_replay_publishes_reset_deliveries(
    own_db: str, clean_redis: redis.Redis, redis_url: str, tmp_path: Path
) -> None:
    engine = make_engine(own_db)
    factory = make_sessionmaker(engine)
    fan = add_summary(factory, [{"kind": "terminal"}])
    with factory() as session, session.begin():
        row = session.get(Delivery, fan.delivery_ids[0])
        assert row is not None
        row.status, row.last_error = "failed", "HTTP 500"
        row.summary.job.status = "failed"
        session.add(
            DeadLetter(
                task_id=str(uuid.uuid4()),
                task_name=DELIVER,
                job_id=fan.job_id,
                args=[str(fan.job_id), str(fan.delivery_ids[0])],
                error="boom",
            )
        )
    settings = load_settings(
        database_url=own_db,
        redis_url=redis_url,
        secret_keys=generate_key(),
        data_dir=tmp_path,
    )
    out = io.StringIO()
    report = replay(settings, ReplaySelection(all_dead_letters=True), out=out)
    assert report.dead_letters == 1
    assert "replayed 1 dead letters and 0 deliveries of 1 jobs" in out.getvalue()
    assert clean_redis.llen("deliver") == 1
    with factory() as session:
        row = session.get(Delivery, fan.delivery_ids[0])
        assert row is not None and row.status == "pending"
    engine.dispose()
