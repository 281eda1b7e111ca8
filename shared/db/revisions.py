"""The schema revisions this release knows, and the one a database is at, without Alembic.

Every long-running process checks the database's revision at start
(:func:`shared.dependencies.check_schema_at_start`).  Loading Alembic's script directory for
that costs each process about 7 MB and 60 ms; the revision ids are known when the release is
built, so they are listed here, and a test holds the list to the migration scripts.
"""

from __future__ import annotations

from sqlalchemy import inspect, text
from sqlalchemy.engine import Connection

__all__ = ["SCHEMA_HEAD", "SCHEMA_REVISIONS", "database_revision"]

#: Every revision of ``schema/migrations/versions``, oldest first (a test compares them).
SCHEMA_REVISIONS: tuple[str, ...] = ("0001", "0002", "0003", "0004", "0005", "0006", "0007")

#: The revision this release needs.
SCHEMA_HEAD = SCHEMA_REVISIONS[-1]


def database_revision(connection: Connection) -> str | None:
    """The revision the database of ``connection`` is at; None when it was never migrated."""
    if not inspect(connection).has_table("alembic_version"):
        return None
    found = connection.execute(text("SELECT version_num FROM alembic_version")).scalar()
    return None if found is None else str(found)
