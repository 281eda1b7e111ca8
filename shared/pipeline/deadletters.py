"""Dead letters: tasks that exhausted their retries, were poison, or hit a bug.

Rows are upserted by task id, so recording the same failure twice only bumps ``last_seen``.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from schema.models.jobs import DeadLetter

__all__ = ["record_dead_letter"]


def record_dead_letter(
    session_factory: sessionmaker[Session],
    *,
    task_id: str,
    task_name: str,
    job_id: uuid.UUID | None,
    args: list[Any],
    error: str,
    traceback: str | None,
    retries: int,
    now: datetime,
) -> None:
    """Insert or refresh the dead letter of ``task_id``."""
    with session_factory() as session, session.begin():
        row = session.scalars(
            select(DeadLetter).where(DeadLetter.task_id == task_id).with_for_update()
        ).one_or_none()
        if row is None:
            session.add(
                DeadLetter(
                    task_id=task_id,
                    task_name=task_name,
                    job_id=job_id,
                    args=args,
                    kwargs={},
                    error=error,
                    traceback=traceback,
                    retries=retries,
                    first_seen=now,
                    last_seen=now,
                )
            )
        else:
            row.error, row.traceback, row.retries, row.last_seen = error, traceback, retries, now
