"""Recovery sweep: re-enqueue every unfinished job whose stage stopped beating.

Postgres is the system of record and Redis only the transport, so a Redis wiped clean, a
publish lost after commit, or a worker killed outright all look the same from here: a job row
that says it is unfinished and whose heartbeat is older than the stage timeout.  Re-enqueuing
is safe because every stage is idempotent against the job row.

A job that is only waiting its turn looks the same too: handed to a queue whose workers are
far behind, it has not started, so it has not beaten.  Sending it again would add a copy to
the very backlog that delays it, every stage timeout, and the copies would run the stage again
once the first one had moved the job on.  So a job whose task may still be waiting (queued for
fetch, or handed to summarize) is left alone while its queue's oldest waiting message was
published no earlier than the job was handed over: queues are first in, first out, so its
message, if it was ever published, is still behind that one.  Once the workers get past the
time it was handed over, or the queue is empty, a job still not started has lost its message
and is sent again.
"""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import TYPE_CHECKING, Protocol, runtime_checkable

import structlog
from sqlalchemy import func, select

from schema.models.jobs import Job, JobStatus
from shared.jobs import FETCH, SUMMARIZE
from shared.pipeline.services import Services

if TYPE_CHECKING:
    from shared.broker import QueueHead

__all__ = ["HANDOVER_SKEW", "STAGE_TASKS", "QueueHeads", "requeue_stale_jobs"]

log = structlog.get_logger(__name__)

#: The task that resumes a job in each unfinished status (summarize re-drives deliveries).
STAGE_TASKS = {
    JobStatus.QUEUED.value: FETCH,
    JobStatus.FETCHING.value: FETCH,
    JobStatus.SUMMARIZING.value: SUMMARIZE,
    JobStatus.DELIVERING.value: SUMMARIZE,
}

#: The statuses in which a job's next task may be waiting in its queue, not started: queued
#: (for fetch), and summarizing (summarize and its map steps).  A job fetching was started by
#: a worker, and a job delivering has its deliveries in the outbox, which has its own sweep.
_MAY_BE_WAITING = frozenset({JobStatus.QUEUED.value, JobStatus.SUMMARIZING.value})

#: How much earlier than the oldest waiting message a job may have been handed over and still
#: be behind it: a row is written before its message is published (the bot publishes after its
#: first reply is shown), and the clocks of the hosts that publish differ a little.
HANDOVER_SKEW = timedelta(seconds=60)


@runtime_checkable
class QueueHeads(Protocol):
    """An enqueuer that can read the oldest message waiting on a task's queue
    (:meth:`shared.jobs.CeleryEnqueuer.queue_head`)."""

    def queue_head(self, task_name: str) -> QueueHead | None:
        """The oldest message waiting on ``task_name``'s queue; None when it cannot say."""


class _Waiting:
    """Which stale jobs may still be waiting in their queue, each queue's head read once."""

    def __init__(self, services: Services) -> None:
        enqueuer = services.enqueuer
        self._heads = enqueuer if isinstance(enqueuer, QueueHeads) else None
        self._read: dict[str, QueueHead | None] = {}
        #: Per task held back: how many jobs, and when its queue's oldest message was published.
        self.held: dict[str, tuple[int, float]] = {}

    def may_hold(self, job: Job) -> bool:
        if self._heads is None or job.status not in _MAY_BE_WAITING:
            return False
        task = STAGE_TASKS[job.status]
        if task not in self._read:
            self._read[task] = self._heads.queue_head(task)
        head = self._read[task]
        handed_over = job.heartbeat_at or job.created_at
        if (
            head is None
            or head.published_at is None
            or not head.may_hold(handed_over.timestamp(), skew=HANDOVER_SKEW.total_seconds())
        ):
            return False
        count, _ = self.held.get(task, (0, head.published_at))
        self.held[task] = (count + 1, head.published_at)
        return True


def requeue_stale_jobs(services: Services, *, batch: int = 500) -> int:
    """Re-enqueue stale unfinished jobs; returns how many were re-enqueued.

    Rows are claimed with ``FOR UPDATE SKIP LOCKED`` and their heartbeat is bumped in the same
    transaction, so two sweeps running at once never enqueue the same job twice.  A job that
    may still be waiting in its queue (see the module's notes) is neither sent nor bumped: the
    next sweep looks at it again.
    """
    now = services.clock()
    cutoff = now - timedelta(seconds=services.settings.stage_timeout_seconds)
    last_seen = func.coalesce(Job.heartbeat_at, Job.created_at)
    waiting = _Waiting(services)
    with services.session_factory() as session, session.begin():
        jobs = session.scalars(
            select(Job)
            .where(Job.status.in_(list(STAGE_TASKS)), last_seen < cutoff)
            .order_by(last_seen)
            .limit(batch)
            .with_for_update(skip_locked=True)
        ).all()
        stale: list[tuple[uuid.UUID, str]] = []
        for job in jobs:
            if not waiting.may_hold(job):
                job.heartbeat_at = now
                stale.append((job.id, job.status))
    for task, (count, oldest) in waiting.held.items():
        log.info(
            "recovery.still_waiting",
            task=task,
            jobs=count,
            oldest_waiting_s=round(now.timestamp() - oldest, 1),
        )
    for job_id, status in stale:
        log.warning("recovery.requeue", job_id=str(job_id), status=status)
        services.enqueuer.enqueue(STAGE_TASKS[status], str(job_id))
    return len(stale)
