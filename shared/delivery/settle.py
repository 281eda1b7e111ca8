"""How a job's outcome follows its deliveries once every one of them has ended.

A job is ``completed`` as soon as its summary is stored; each delivery then carries its own
status.  When the last delivery of the summary ends, the job's end state says how they went:
all reached their target (or its fallback) — it stays ``completed``; some did not —
``completed_with_errors``; none did — ``failed``, with each failure's reason, and its webhooks
get ``job.failed`` events.  Jobs stored by an older version wait in ``delivering`` and end the
same way.
"""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import bindparam, select
from sqlalchemy.orm import Session, sessionmaker

from schema.base import table_of
from schema.models.jobs import Delivery, DeliveryStatus, Job, Summary
from shared import lifecycle
from shared.delivery.notifications import create_job_failed_notifications
from shared.jobs import DELIVER, Step

__all__ = ["DONE", "after_settle", "pending_deliver_steps", "settle_in", "settle_job"]

#: Delivery states that end a delivery.
DONE = (DeliveryStatus.SENT.value, DeliveryStatus.FAILED.value)


def pending_deliver_steps(session: Session, job_id: uuid.UUID) -> list[Step]:
    """One deliver step per pending delivery of the job's summary (read in ``session``)."""
    rows = session.scalars(
        select(Delivery.id)
        .join(Summary, Summary.id == Delivery.summary_id)
        .where(Summary.job_id == job_id, Delivery.status == DeliveryStatus.PENDING.value)
    )
    return [Step(DELIVER, (str(job_id), str(delivery_id))) for delivery_id in rows]


def settle_job(
    session_factory: sessionmaker[Session],
    job_id: uuid.UUID,
    summary_id: uuid.UUID,
    *,
    now: datetime,
) -> list[Step]:
    """Give the job its end state once every delivery ended; the notifications to send."""
    with session_factory() as session, session.begin():
        which = settle_in(session, job_id, summary_id, now=now)
    return after_settle(session_factory, job_id, which, now=now)


def after_settle(
    session_factory: sessionmaker[Session],
    job_id: uuid.UUID,
    which: lifecycle.Move | None,
    *,
    now: datetime,
) -> list[Step]:
    """The deliver steps of the ``job.failed`` notifications a settlement ``which`` calls for
    (created here, after the settlement committed)."""
    if which is not lifecycle.Move.DELIVERY_FAILED:
        return []
    notes = create_job_failed_notifications(session_factory, job_id, now=now)
    return [Step(DELIVER, (str(job_id), str(note))) for note in notes]


_JOBS = table_of(Job)
_DELIVERIES = table_of(Delivery)
# Core on the tables, built once: a settlement is read after every delivery attempt.
_LOCK_JOB = select(_JOBS.c.id).where(_JOBS.c.id == bindparam("job_id")).with_for_update()
_DELIVERIES_OF = select(
    _DELIVERIES.c.id, _DELIVERIES.c.status, _DELIVERIES.c.last_error, _DELIVERIES.c.fallback_of
).where(_DELIVERIES.c.summary_id == bindparam("summary_id"))


def settle_in(
    session: Session, job_id: uuid.UUID, summary_id: uuid.UUID, *, now: datetime
) -> lifecycle.Move | None:
    """Read the deliveries and move the job in the caller's transaction; the move made, if
    any (hand it to :func:`after_settle` once committed).

    The job row is locked before the deliveries are read: two deliveries of one summary that
    end at once are recorded in two transactions, and without the lock each could read the
    other still ``sending`` (not yet committed) and neither would settle the job.  With it the
    second waits for the first to commit and then reads both ended.
    """
    session.execute(_LOCK_JOB, {"job_id": job_id})
    rows = session.execute(_DELIVERIES_OF, {"summary_id": summary_id}).all()
    if any(status not in DONE for _, status, _, _ in rows):
        return None
    # A delivery that failed but whose fallback (or its fallback's) was sent reached someone.
    fallbacks_of: dict[uuid.UUID, list[uuid.UUID]] = {}
    status_of = {ident: status for ident, status, _, _ in rows}
    for ident, _, _, of in rows:
        if of is not None:
            fallbacks_of.setdefault(of, []).append(ident)

    def reached(ident: uuid.UUID, depth: int = 0) -> bool:
        if status_of.get(ident) == DeliveryStatus.SENT.value:
            return True
        return depth < 8 and any(reached(f, depth + 1) for f in fallbacks_of.get(ident, []))

    originals = [(ident, error) for ident, _, error, of in rows if of is None]
    failed = [error or "unknown error" for ident, error in originals if not reached(ident)]
    progress: dict[str, object] = {}
    failures = sum(1 for _, status, _, _ in rows if status == DeliveryStatus.FAILED.value)
    if failures:
        progress["deliveries_failed"] = failures
    fallbacks = sum(1 for _, _, _, of in rows if of is not None)
    if fallbacks:
        progress["fallbacks"] = fallbacks
    which = lifecycle.Move.DELIVERED
    values: dict[str, object] = {}
    if failed and len(failed) < len(originals):
        which = lifecycle.Move.DELIVERED_WITH_ERRORS
        values["error"] = "some deliveries failed: " + "; ".join(failed)
    elif failed:
        which = lifecycle.Move.DELIVERY_FAILED
        values["error"] = "delivery failed: " + "; ".join(failed)
    moved = lifecycle.move_in(session, job_id, which, now=now, progress=progress or None, **values)
    return which if moved is not None else None
