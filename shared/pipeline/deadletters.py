"""Dead letters: tasks that exhausted their retries, were poison, or hit a bug.

Rows are upserted by task id, so recording the same failure twice only widens
``first_seen``..``last_seen``.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import func
from sqlalchemy.dialects import postgresql, sqlite
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
    """Insert or refresh the dead letter of ``task_id``, in one statement (two copies of a
    redelivered task may record theirs at once)."""
    row: dict[str, Any] = {
        "task_id": task_id,
        "task_name": task_name,
        "job_id": job_id,
        "args": args,
        "kwargs": {},
        "error": error,
        "traceback": traceback,
        "retries": retries,
        "first_seen": now,
        "last_seen": now,
    }
    refreshed = ("error", "traceback", "retries")
    with session_factory() as session, session.begin():
        postgres = session.get_bind().dialect.name == "postgresql"
        statement = (postgresql.insert if postgres else sqlite.insert)(DeadLetter).values(row)
        # Copies commit in any order, so the window only ever widens: a late commit of an
        # early failure must not move last_seen back.
        latest, earliest = (func.greatest, func.least) if postgres else (func.max, func.min)
        changes: dict[str, Any] = {name: statement.excluded[name] for name in refreshed}
        changes["last_seen"] = latest(DeadLetter.last_seen, statement.excluded.last_seen)
        changes["first_seen"] = earliest(DeadLetter.first_seen, statement.excluded.first_seen)
        session.execute(
            statement.on_conflict_do_update(index_elements=[DeadLetter.task_id], set_=changes)
        )
