"""Two deliveries of one summary that end at once still settle the job (PostgreSQL)."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from sqlalchemy import Engine, update
from sqlalchemy.orm import Session, sessionmaker

from schema.models.jobs import Delivery, DeliveryStatus, Job, JobStatus
from shared.db.engine import make_engine, make_sessionmaker
from shared.db.migrate import upgrade
from shared.delivery.settle import settle_in
from tests.unit.delivery.helpers import add_summary

pytestmark = [pytest.mark.integration]


@pytest.fixture(scope="module")
def engine(postgres_url: str) -> Iterator[Engine]:
    upgrade(postgres_url)
    built = make_engine(postgres_url)
    yield built
    built.dispose()


def _fail_and_settle(
    factory: sessionmaker[Session],
    delivery_id: uuid.UUID,
    job_id: uuid.UUID,
    summary_id: uuid.UUID,
    both_recorded: threading.Barrier,
) -> None:
    # What the deliver stage does: record the outcome, then settle, in one transaction.
    with factory() as session, session.begin():
        session.execute(
            update(Delivery)
            .where(Delivery.id == delivery_id)
            .values(status=DeliveryStatus.FAILED.value, last_error="gone")
        )
        # Each has recorded its own outcome, uncommitted, before either settles.
        both_recorded.wait(timeout=10)
        settle_in(session, job_id, summary_id, now=datetime.now(UTC))


def test_two_deliveries_failing_at_once_fail_the_job(engine: Engine) -> None:
    factory = make_sessionmaker(engine)
    targets = [{"kind": "channel", "channel_id": str(900000000000000000 + i)} for i in range(2)]
    fan = add_summary(factory, targets)
    barrier = threading.Barrier(2)
    errors: list[BaseException] = []

    def run(delivery_id: uuid.UUID) -> None:
        try:
            _fail_and_settle(factory, delivery_id, fan.job_id, fan.summary_id, barrier)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(d,)) for d in fan.delivery_ids]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert not errors
    with factory() as session:
        job = session.get(Job, fan.job_id)
        assert job is not None
        # Without the job row locked first, each saw the other still pending: no settlement.
        assert job.status == JobStatus.FAILED.value
        assert job.error is not None and job.error.startswith("delivery failed")
