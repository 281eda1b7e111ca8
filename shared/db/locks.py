"""Transaction-scoped locks on what has no row to lock.

A cap counted over a guild's rows (its schedules, its uploads' bytes) cannot be held by locking
those rows: a guild with none has nothing to lock, and a row being inserted is not there yet, so
racing writers would each count the same total and all pass.  :func:`lock_guild` serializes
them instead, with a PostgreSQL advisory lock held until the transaction ends.
"""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.orm import Session

__all__ = ["lock_guild"]


def lock_guild(session: Session, purpose: str, guild_id: str) -> None:
    """Hold, until ``session``'s transaction ends, the lock on ``purpose`` for ``guild_id``.

    ``purpose`` names what the lock guards (``"schedules"``, ``"uploads"``), so locks for
    different caps of one guild never wait on each other.  On SQLite it does nothing: every
    write transaction there begins with the database's write lock (``BEGIN IMMEDIATE``).
    """
    if session.get_bind().dialect.name != "postgresql":
        return
    key = func.hashtextextended(f"{purpose}:{guild_id}", 0)
    session.execute(select(func.pg_advisory_xact_lock(key)))
