"""One writer at a time for an interaction's first reply.

Two processes write into the reply of a ``/summarize``: the bot edits it with the job's
progress until the job reaches the summarize stage, and the deliver stage then writes the
summary into it.  The bot decides to edit from a job row it read a moment earlier; a job that
moves from there to delivered inside that moment (the offline summarizer, a short window) would
otherwise have its summary overwritten by the older progress embed.

The fence is a PostgreSQL transaction-level advisory lock keyed by the job:

- the deliver stage holds it while it edits the reply (:meth:`ReplyFence.held`, waiting at
  most ``lock_timeout``; a timeout is a transient error, and the delivery is retried);
- the bot takes it only if it is free (:meth:`ReplyFence.try_hold`), reads the job's status
  again under it, and edits only if the summary stage has not begun, releasing it after the
  edit.

The lock ends with its transaction, so a crash never leaves it held.  Other databases (SQLite,
one process in the embedded mode) get no lock; the status is still read again.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine, func, select, text
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Session, sessionmaker

from schema.models.jobs import Job

__all__ = ["HeldReply", "ReplyFence"]


def _key(job_id: uuid.UUID) -> int:
    return int.from_bytes(job_id.bytes[:8], "big", signed=True)


@dataclass
class HeldReply:
    """The bot's hold on a reply: the job's status read under the fence; release it after."""

    status: str | None
    _connection: Connection | None

    def release(self) -> None:
        """End the hold (commits the transaction, which releases the lock)."""
        connection, self._connection = self._connection, None
        if connection is not None:
            try:
                connection.commit()
            finally:
                connection.close()


class ReplyFence:
    """The fence of ``session_factory``'s database (see the module docstring)."""

    def __init__(self, session_factory: sessionmaker[Session], *, lock_timeout_s: float = 10.0):
        bind: Any = session_factory.kw.get("bind")
        self._factory = session_factory
        self._engine = (
            bind if isinstance(bind, Engine) and bind.dialect.name == "postgresql" else None
        )
        self._lock_timeout_ms = int(lock_timeout_s * 1000)

    @contextmanager
    def held(self, job_id: uuid.UUID) -> Iterator[None]:
        """Hold the fence of ``job_id``'s reply, waiting for a holder to finish."""
        if self._engine is None:
            yield
            return
        with self._engine.begin() as connection:
            connection.execute(text(f"SET LOCAL lock_timeout = {self._lock_timeout_ms}"))
            connection.execute(select(func.pg_advisory_xact_lock(_key(job_id))))
            yield

    def try_hold(self, job_id: uuid.UUID) -> HeldReply | None:
        """The fence of ``job_id``'s reply with the job's status read under it, or None while
        someone else holds it."""
        status = select(Job.status).where(Job.id == job_id)
        if self._engine is None:
            with self._factory() as session:
                return HeldReply(session.scalar(status), None)
        connection = self._engine.connect()
        try:
            connection.begin()
            if not connection.scalar(select(func.pg_try_advisory_xact_lock(_key(job_id)))):
                connection.rollback()
                connection.close()
                return None
            return HeldReply(connection.scalar(status), connection)
        except BaseException:
            connection.close()
            raise
