"""Schedules get a scope: one channel (as before), the whole server, a category or listed channels.

Revision ID: 0007
Revises: 0006
Create Date: 2027-01-24 09:00:00

Three columns on ``schedules``: ``scope`` (``channel`` for every existing row), the category of
a category digest and the channels of a digest of listed channels.  A check constraint keeps
``scope`` to the known values.  Batch mode, so SQLite (which cannot add a constraint in place)
rebuilds the table; the table is described here as 0001 created it (with 0001's columns,
``ddl.schedules_columns``; no revision in between changed it), so the rebuild needs no
reflection and also renders as offline SQL.

Downgrading pauses the schedules of several channels: before this revision a schedule could
only summarize its ``channel_id``, which for them is the channel their digest is posted in.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from schema.migrations import ddl

# revision identifiers, used by Alembic.
revision: str = "0007"
down_revision: str | Sequence[str] | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


_SCOPES = ("channel", "server", "category", "channels")
_SCOPE_CHECK = "scope IN (" + ", ".join(f"'{s}'" for s in _SCOPES) + ")"


def _scope_columns() -> list[sa.Column[object]]:
    return [
        sa.Column("scope", sa.String(length=16), server_default="channel", nullable=False),
        sa.Column("scope_category_id", sa.String(length=32), nullable=True),
        sa.Column("scope_channel_ids", ddl.JSON, server_default=sa.text("'[]'"), nullable=False),
    ]


def _schedules(*, scoped: bool) -> sa.Table:
    """The ``schedules`` table before (``scoped`` False) or after this revision, for SQLite's
    table rebuild."""
    extra: list[sa.SchemaItem] = []
    if scoped:
        extra = [*_scope_columns(), ddl.check("schedules", "scope", _SCOPE_CHECK)]
    return sa.Table(
        "schedules",
        sa.MetaData(),
        *ddl.schedules_columns(),
        ddl.check("schedules", "empty_policy", "empty_policy IN ('skip', 'notice')"),
        ddl.check(
            "schedules", "format", "format IN ('brief', 'structured', 'detailed', 'technical')"
        ),
        ddl.primary_key("schedules", "id"),
        sa.Index("ix_schedules_due", "enabled", "next_run_at"),
        sa.Index("ix_schedules_guild_id", "guild_id"),
        *extra,
    )


def _batch(*, scoped: bool) -> object:
    sqlite = op.get_context().dialect.name == "sqlite"
    return op.batch_alter_table(
        "schedules", copy_from=_schedules(scoped=scoped) if sqlite else None
    )


def upgrade() -> None:
    """Add the scope columns; every existing schedule keeps summarizing its one channel."""
    with _batch(scoped=False) as batch:  # type: ignore[attr-defined]
        for column in _scope_columns():
            batch.add_column(column)
        batch.create_check_constraint(op.f("ck_schedules_scope"), _SCOPE_CHECK)


def downgrade() -> None:
    """Pause the schedules of several channels, then drop the scope columns."""
    op.execute("UPDATE schedules SET enabled = false, next_run_at = NULL WHERE scope <> 'channel'")
    with _batch(scoped=True) as batch:  # type: ignore[attr-defined]
        batch.drop_constraint(op.f("ck_schedules_scope"), type_="check")
        batch.drop_column("scope_channel_ids")
        batch.drop_column("scope_category_id")
        batch.drop_column("scope")
