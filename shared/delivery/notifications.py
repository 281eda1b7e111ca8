"""``job.failed`` notifications: one outbox row per failed job and webhook destination.

Rows are created when the deliver stage itself fails a job, and by the ``redrive_deliveries``
sweep for jobs that failed anywhere else (fetch, summarize, a dead letter).  ``(job_id, event,
target)`` is unique, so creating them twice is harmless.  A destination whose own delivery of the
job's summary already failed is not notified (it is the reason, and it is not answering).
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta

import structlog
from sqlalchemy import String, cast, exists, select
from sqlalchemy.orm import Session, sessionmaker

from schema.models.delivery_log import JobNotification
from schema.models.jobs import Delivery, DeliveryStatus, Job, JobStatus, Summary
from shared.db.rows import add_unless_present
from shared.delivery.events import JOB_FAILED
from shared.delivery.outbox import parse_destination

__all__ = ["NOTIFIED_KINDS", "create_job_failed_notifications", "failed_jobs_to_notify"]

log = structlog.get_logger(__name__)

#: Target kinds that receive ``job.failed`` events.
NOTIFIED_KINDS = ("webhook",)


def _create(session: Session, job: Job, now: datetime) -> list[uuid.UUID]:
    failed_targets = set(
        session.scalars(
            select(Delivery.target)
            .join(Summary, Summary.id == Delivery.summary_id)
            .where(Summary.job_id == job.id, Delivery.status == DeliveryStatus.FAILED.value)
        )
    )
    created: list[uuid.UUID] = []
    for raw in job.params.get("destinations") or []:
        if not isinstance(raw, dict) or raw.get("kind") not in NOTIFIED_KINDS:
            continue
        try:
            target = parse_destination(raw)
        except ValueError:
            continue
        if target.key in failed_targets:
            continue
        row = JobNotification(
            id=uuid.uuid4(),
            job_id=job.id,
            event=JOB_FAILED,
            target=target.key,
            kind=target.kind,
            params=target.model_dump(mode="json"),
            status=DeliveryStatus.PENDING.value,
            attempts=0,
            failures=0,
            next_attempt_at=now,
            redriven_at=now,
            created_at=now,
        )
        if add_unless_present(session, row):
            created.append(row.id)
    return created


def create_job_failed_notifications(
    session_factory: sessionmaker[Session], job_id: uuid.UUID, *, now: datetime
) -> list[uuid.UUID]:
    """Create the ``job.failed`` rows of a failed job; return the ids of new rows."""
    with session_factory() as session, session.begin():
        job = session.get(Job, job_id)
        if job is None or job.status != JobStatus.FAILED.value:
            return []
        created = _create(session, job, now)
    if created:
        log.info("notify.job_failed", job_id=str(job_id), targets=len(created))
    return created


def failed_jobs_to_notify(
    session_factory: sessionmaker[Session],
    *,
    now: datetime,
    lookback: timedelta,
    batch: int = 200,
) -> list[tuple[uuid.UUID, uuid.UUID]]:
    """Create rows for recently failed jobs that have none; return ``(job_id, row_id)`` pairs."""
    has_rows = exists().where(JobNotification.job_id == Job.id)
    with session_factory() as session, session.begin():
        jobs = session.scalars(
            select(Job)
            .where(
                Job.status == JobStatus.FAILED.value,
                Job.finished_at >= now - lookback,
                ~has_rows,
                # A cheap textual pre-filter; the destinations are parsed below.
                cast(Job.params, String).contains("webhook"),
            )
            .order_by(Job.finished_at)
            .limit(batch)
        ).all()
        pairs = [(job.id, row_id) for job in jobs for row_id in _create(session, job, now)]
    return pairs
