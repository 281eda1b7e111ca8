"""Recovery sweep: re-enqueue every unfinished job whose stage stopped beating.

Postgres is the system of record and Redis only the transport, so a Redis wiped clean, a
publish lost after commit, or a worker killed outright all look the same from here: a job row
that says it is unfinished and whose heartbeat is older than the stage timeout.  Re-enqueuing
is safe because every stage is idempotent against the job row.
"""

from __future__ import annotations

from datetime import timedelta

import structlog
from sqlalchemy import func, select

from schema.models.jobs import Job, JobStatus
from shared.jobs import FETCH, SUMMARIZE
from shared.pipeline.services import Services

__all__ = ["STAGE_TASKS", "requeue_stale_jobs"]

log = structlog.get_logger(__name__)

#: The task that resumes a job in each unfinished status (summarize re-drives deliveries).
STAGE_TASKS = {
    JobStatus.QUEUED.value: FETCH,
    JobStatus.FETCHING.value: FETCH,
    JobStatus.SUMMARIZING.value: SUMMARIZE,
    JobStatus.DELIVERING.value: SUMMARIZE,
}


def requeue_stale_jobs(services: Services, *, batch: int = 500) -> int:
    """Re-enqueue stale unfinished jobs; returns how many were re-enqueued.

    Rows are claimed with ``FOR UPDATE SKIP LOCKED`` and their heartbeat is bumped in the same
    transaction, so two sweeps running at once never enqueue the same job twice.
    """
    now = services.clock()
    cutoff = now - timedelta(seconds=services.settings.stage_timeout_seconds)
    last_seen = func.coalesce(Job.heartbeat_at, Job.created_at)
    with services.session_factory() as session, session.begin():
        jobs = session.scalars(
            select(Job)
            .where(Job.status.in_(list(STAGE_TASKS)), last_seen < cutoff)
            .order_by(last_seen)
            .limit(batch)
            .with_for_update(skip_locked=True)
        ).all()
        stale = [(job.id, job.status) for job in jobs]
        for job in jobs:
            job.heartbeat_at = now
    for job_id, status in stale:
        log.warning("recovery.requeue", job_id=str(job_id), status=status)
        services.enqueuer.enqueue(STAGE_TASKS[status], str(job_id))
    return len(stale)
