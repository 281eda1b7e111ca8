"""Job row transitions: the one place that writes status, heartbeat, progress and failure.

Each writer runs in its own short transaction and uses a conditional UPDATE, so two copies of a
task (at-least-once delivery) cannot move a job backwards or out of an end state.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import update
from sqlalchemy.orm import Session, sessionmaker

from schema.models.jobs import Job, JobStatus
from shared.db.engine import reading_session

__all__ = ["FINISHED", "advance", "fail", "heartbeat", "load"]

FINISHED = (JobStatus.COMPLETED.value, JobStatus.FAILED.value, JobStatus.CANCELLED.value)


def load(session_factory: sessionmaker[Session], job_id: uuid.UUID) -> Job | None:
    """The job row, detached, or None when it does not exist."""
    with reading_session(session_factory) as session:
        return session.get(Job, job_id)


def advance(
    session_factory: sessionmaker[Session],
    job_id: uuid.UUID,
    status: JobStatus,
    *,
    now: datetime,
    progress: dict[str, Any] | None = None,
    **values: Any,
) -> bool:
    """Move an unfinished job to ``status``; False when it already ended (or is gone)."""
    changes: dict[str, Any] = {"status": status.value, "heartbeat_at": now, "updated_at": now}
    changes.update(values)
    if status.finished:
        changes["finished_at"] = now
    else:
        changes["stage_started_at"] = now
    with session_factory() as session, session.begin():
        job = session.get(Job, job_id, with_for_update=True)
        if job is None or job.status in FINISHED:
            return False
        if progress is not None:
            changes["progress"] = {**job.progress, **progress}
        for key, value in changes.items():
            setattr(job, key, value)
    return True


def heartbeat(
    session_factory: sessionmaker[Session],
    job_id: uuid.UUID,
    *,
    now: datetime,
    progress: dict[str, Any],
) -> bool:
    """Record progress and liveness of the running stage; False when the job ended meanwhile."""
    with session_factory() as session, session.begin():
        job = session.get(Job, job_id, with_for_update=True)
        if job is None or job.status in FINISHED:
            return False
        job.progress = {**job.progress, **progress}
        job.heartbeat_at = now
        job.updated_at = now
    return True


def fail(
    session_factory: sessionmaker[Session],
    job_id: uuid.UUID,
    *,
    reason: str,
    detail: str | None = None,
    now: datetime,
) -> bool:
    """End an unfinished job as failed with a reason the user can read."""
    with session_factory() as session, session.begin():
        result = session.execute(
            update(Job)
            .where(Job.id == job_id, Job.status.not_in(FINISHED))
            .values(
                status=JobStatus.FAILED.value,
                error=reason,
                error_detail=detail,
                finished_at=now,
                updated_at=now,
            )
        )
    return bool(getattr(result, "rowcount", 0))
