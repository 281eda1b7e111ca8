"""The ``redrive_deliveries`` sweep: re-enqueue outbox items that are due, or whose worker died.

Run by beat every few seconds.  Each pass, in short transactions with ``FOR UPDATE SKIP LOCKED``
(so two sweeps never pick the same row):

1. items leased by a worker whose lease has run out (it was killed mid-send) go back to
   ``pending``, due now;
2. ``pending`` items whose ``next_attempt_at`` has come (or, never scheduled, that are older
   than the grace period) are enqueued, and marked
   ``redriven_at`` so the next pass does not enqueue them again while they wait in the queue
   (after ``DELIVERY_REDRIVE_GRACE_SECONDS`` they are enqueued again, in case that message was
   lost with Redis);
3. recently failed jobs with webhook destinations get their ``job.failed`` notifications;
4. jobs whose deliveries have all ended but whose end state does not say so yet (the worker
   that recorded the last one died before it could settle the job) are settled.

The pass returns the deliver steps to publish; publishing an item twice is harmless: the claim
lets one copy through.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import structlog
from sqlalchemy import exists, func, or_, select
from sqlalchemy.orm import Session, sessionmaker

from schema.models.delivery_log import DeliverySchedule, JobNotification
from schema.models.jobs import Delivery, DeliveryStatus, Job, JobStatus, Summary
from shared.db.engine import reading_session
from shared.delivery.config import DeliverySettings
from shared.delivery.notifications import failed_jobs_to_notify
from shared.delivery.settle import settle_job
from shared.jobs import DELIVER, Step

__all__ = ["RedriveReport", "redrive_deliveries"]

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class RedriveReport:
    """What one pass did."""

    expired_leases: int
    steps: list[Step]
    job_failed_created: int
    jobs_finished: int = 0

    @property
    def enqueued(self) -> int:
        """How many items this pass hands to the deliver queue."""
        return len(self.steps)


def _in_doubt(
    progress: dict[str, Any] | None, lease_until: datetime | None, lease: timedelta
) -> dict[str, Any]:
    """``progress`` with the part a dead worker was sending marked in doubt (a target without
    a nonce checks for it before sending it again); the lease was last extended when the
    part before it was recorded, so it was sent after that."""
    done = dict(progress or {})
    since = (lease_until - lease) if lease_until is not None else None
    if since is not None:
        done["in_doubt"] = {"part": len(done.get("sent") or []), "since": since.isoformat()}
    return done


def _expired_deliveries(
    session: Session, now: datetime, batch: int, lease: timedelta
) -> list[tuple[uuid.UUID, uuid.UUID]]:
    rows = session.execute(
        select(Delivery, Summary.job_id)
        .join(Summary, Summary.id == Delivery.summary_id)
        .where(Delivery.status == DeliveryStatus.SENDING.value, Delivery.lease_until < now)
        .limit(batch)
        .with_for_update(skip_locked=True, of=Delivery)
    ).all()
    found = []
    for delivery, job_id in rows:
        schedule = session.get(DeliverySchedule, delivery.id)
        if schedule is None:
            schedule = DeliverySchedule(delivery_id=delivery.id, failures=0)
            session.add(schedule)
        schedule.progress = _in_doubt(schedule.progress, delivery.lease_until, lease)
        delivery.status = DeliveryStatus.PENDING.value
        delivery.lease_until = None
        delivery.last_error = "the worker sending it stopped (lease expired)"
        schedule.next_attempt_at = now
        schedule.redriven_at = now
        found.append((job_id, delivery.id))
    return found


def _due_deliveries(
    session: Session, now: datetime, grace: timedelta, batch: int
) -> list[tuple[uuid.UUID, uuid.UUID]]:
    # A delivery has no schedule row until it needs one, so a fresh delivery whose first task
    # message was lost (a worker killed holding it, Redis wiped) is found by its age instead.
    unscheduled = DeliverySchedule.delivery_id.is_(None) & (Delivery.created_at < now - grace)
    scheduled = (DeliverySchedule.next_attempt_at <= now) & or_(
        DeliverySchedule.redriven_at.is_(None),
        DeliverySchedule.redriven_at < now - grace,
    )
    rows = session.execute(
        select(Delivery.id, DeliverySchedule, Summary.job_id)
        .join(Summary, Summary.id == Delivery.summary_id)
        .outerjoin(DeliverySchedule, DeliverySchedule.delivery_id == Delivery.id)
        .where(Delivery.status == DeliveryStatus.PENDING.value, or_(unscheduled, scheduled))
        .order_by(func.coalesce(DeliverySchedule.next_attempt_at, Delivery.created_at))
        .limit(batch)
        .with_for_update(skip_locked=True, of=Delivery)
    ).all()
    for delivery_id, schedule, _ in rows:
        if schedule is None:
            session.add(
                DeliverySchedule(
                    delivery_id=delivery_id, failures=0, next_attempt_at=now, redriven_at=now
                )
            )
        else:
            schedule.redriven_at = now
    return [(job_id, delivery_id) for delivery_id, _, job_id in rows]


def _notifications(
    session: Session, now: datetime, grace: timedelta, batch: int, lease: timedelta
) -> tuple[list[tuple[uuid.UUID, uuid.UUID]], int]:
    expired = session.scalars(
        select(JobNotification)
        .where(
            JobNotification.status == DeliveryStatus.SENDING.value,
            JobNotification.lease_until < now,
        )
        .limit(batch)
        .with_for_update(skip_locked=True)
    ).all()
    for row in expired:
        row.progress = _in_doubt(row.progress, row.lease_until, lease)
        row.status = DeliveryStatus.PENDING.value
        row.lease_until = None
        row.next_attempt_at = now
        row.redriven_at = None
    due = session.scalars(
        select(JobNotification)
        .where(
            JobNotification.status == DeliveryStatus.PENDING.value,
            JobNotification.next_attempt_at <= now,
            or_(
                JobNotification.redriven_at.is_(None),
                JobNotification.redriven_at < now - grace,
            ),
        )
        .order_by(JobNotification.next_attempt_at)
        .limit(batch)
        .with_for_update(skip_locked=True)
    ).all()
    for row in due:
        row.redriven_at = now
    return [(row.job_id, row.id) for row in due], len(expired)


def _unsettled_jobs(session: Session, batch: int) -> list[tuple[uuid.UUID, uuid.UUID]]:
    active = exists().where(
        Delivery.summary_id == Summary.id,
        Delivery.status.in_([DeliveryStatus.PENDING.value, DeliveryStatus.SENDING.value]),
    )
    failed = exists().where(
        Delivery.summary_id == Summary.id, Delivery.status == DeliveryStatus.FAILED.value
    )
    waiting = Job.status == JobStatus.DELIVERING.value
    misleading = (Job.status == JobStatus.COMPLETED.value) & failed
    rows = session.execute(
        select(Job.id, Summary.id)
        .join(Summary, Summary.job_id == Job.id)
        .where(waiting | misleading, ~active)
        .limit(batch)
    ).all()
    return [(job_id, summary_id) for job_id, summary_id in rows]


def redrive_deliveries(
    session_factory: sessionmaker[Session],
    settings: DeliverySettings,
    *,
    now: datetime,
    batch: int = 500,
) -> RedriveReport:
    """One pass of the sweep (see module docstring); returns what to publish."""
    grace = timedelta(seconds=settings.delivery_redrive_grace_seconds)
    lease = timedelta(seconds=settings.delivery_lease_seconds)
    with session_factory() as session, session.begin():
        expired = _expired_deliveries(session, now, batch, lease)
    with session_factory() as session, session.begin():
        due = _due_deliveries(session, now, grace, batch)
    with session_factory() as session, session.begin():
        notes, expired_notes = _notifications(session, now, grace, batch, lease)
    created = failed_jobs_to_notify(
        session_factory,
        now=now,
        lookback=timedelta(hours=settings.job_failed_lookback_hours),
    )
    with reading_session(session_factory) as session:
        unsettled = _unsettled_jobs(session, batch)
    steps: list[Step] = []
    for job_id, summary_id in unsettled:
        steps += settle_job(session_factory, job_id, summary_id, now=now)
    items = list(dict.fromkeys([*expired, *due, *notes, *created]))
    steps += [Step(DELIVER, (str(job_id), str(item_id))) for job_id, item_id in items]
    report = RedriveReport(
        expired_leases=len(expired) + expired_notes,
        steps=steps,
        job_failed_created=len(created),
        jobs_finished=len(unsettled),
    )
    if report.enqueued or report.jobs_finished:
        log.info(
            "delivery.redrive",
            expired_leases=report.expired_leases,
            enqueued=report.enqueued,
            job_failed=report.job_failed_created,
            jobs_finished=report.jobs_finished,
        )
    return report
