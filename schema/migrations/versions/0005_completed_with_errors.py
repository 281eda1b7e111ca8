"""Jobs can end ``completed_with_errors``: the summary was stored, some deliveries failed.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-05 09:00:00

The status column widens to 32 characters and its check constraint gains the new state.  Batch
mode, so SQLite (which cannot alter a constraint in place) rebuilds the table; the table is
described here as 0001 created it (with 0001's columns, ``ddl.jobs_columns``; no later revision
changed it), so the rebuild needs no reflection and also renders as offline SQL.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from schema.migrations import ddl

# revision identifiers, used by Alembic.
revision: str = "0005"
down_revision: str | Sequence[str] | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_OLD = ("queued", "fetching", "summarizing", "delivering", "completed", "failed", "cancelled")
_NEW = (*_OLD, "completed_with_errors")


def _check(states: tuple[str, ...]) -> str:
    return "status IN (" + ", ".join(f"'{s}'" for s in states) + ")"


def _jobs(status_length: int, states: tuple[str, ...]) -> sa.Table:
    """The ``jobs`` table before this revision's change, for SQLite's table rebuild."""
    return sa.Table(
        "jobs",
        sa.MetaData(),
        *ddl.jobs_columns(status_length=status_length),
        ddl.check("jobs", "status", _check(states)),
        ddl.primary_key("jobs", "id"),
        ddl.unique("jobs", "idempotency_key"),
        sa.Index("ix_jobs_guild_created", "guild_id", "created_at"),
        sa.Index("ix_jobs_status_heartbeat", "status", "heartbeat_at"),
    )


def _batch(length: int, states: tuple[str, ...]) -> object:
    sqlite = op.get_context().dialect.name == "sqlite"
    return op.batch_alter_table("jobs", copy_from=_jobs(length, states) if sqlite else None)


def upgrade() -> None:
    """Widen ``jobs.status`` and allow ``completed_with_errors``."""
    with _batch(16, _OLD) as batch:  # type: ignore[attr-defined]
        batch.drop_constraint(op.f("ck_jobs_status"), type_="check")
        batch.alter_column("status", existing_type=sa.String(length=16), type_=sa.String(length=32))
        batch.create_check_constraint(op.f("ck_jobs_status"), _check(_NEW))


def downgrade() -> None:
    """Jobs that ended with errors become ``completed`` again; the column narrows."""
    op.execute("UPDATE jobs SET status = 'completed' WHERE status = 'completed_with_errors'")
    with _batch(32, _NEW) as batch:  # type: ignore[attr-defined]
        batch.drop_constraint(op.f("ck_jobs_status"), type_="check")
        batch.alter_column("status", existing_type=sa.String(length=32), type_=sa.String(length=16))
        batch.create_check_constraint(op.f("ck_jobs_status"), _check(_OLD))
