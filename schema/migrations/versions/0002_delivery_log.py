"""Delivery bookkeeping: attempt log, retry schedules, job notifications (``job.failed``).

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23 18:15:44

Generated with ``--autogenerate`` against PostgreSQL at 0001, then reviewed by hand: plain
SQLAlchemy types, tables ordered parents first.  Only new tables, so SQLite needs no batch mode.

Migrations are frozen history: they use plain SQLAlchemy types, never the models, so a later
change to a model cannot change what an old revision does.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from schema.migrations import ddl

# revision identifiers, used by Alembic.
revision: str = "0002"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Create the attempt log, the retry schedules and the job notification outbox."""
    failures, *retry_state = ddl.retry_columns()
    op.create_table(
        "job_notifications",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("job_id", sa.Uuid(), nullable=False),
        sa.Column("event", sa.String(length=64), nullable=False),
        # A notification keeps its retry state in its own row, around lease_until.
        *ddl.outbox_columns("job_notifications", before_lease=[failures], after_lease=retry_state),
        ddl.foreign_key("job_notifications", "job_id", "jobs", ondelete="CASCADE"),
        ddl.primary_key("job_notifications", "id"),
        ddl.unique("job_notifications", "job_id", "event", "target"),
    )
    op.create_index(
        "ix_job_notifications_status_due",
        "job_notifications",
        ["status", "next_attempt_at"],
        unique=False,
    )
    op.create_table(
        "delivery_attempts",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("delivery_id", sa.Uuid(), nullable=True),
        sa.Column("notification_id", sa.Uuid(), nullable=True),
        sa.Column("number", sa.Integer(), nullable=False),
        sa.Column("target", sa.String(length=500), nullable=False),
        sa.Column("endpoint_id", sa.Uuid(), nullable=True),
        sa.Column("started_at", ddl.TIMESTAMP, nullable=False),
        sa.Column("duration_ms", sa.Integer(), nullable=False),
        sa.Column("status_code", sa.Integer(), nullable=True),
        sa.Column("outcome", sa.String(length=16), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("response_excerpt", sa.Text(), nullable=True),
        sa.Column("next_attempt_at", ddl.TIMESTAMP, nullable=True),
        ddl.check(
            "delivery_attempts", "outcome", "outcome IN ('sent', 'retry', 'failed', 'skipped')"
        ),
        ddl.check(
            "delivery_attempts", "one_parent", "(delivery_id IS NULL) <> (notification_id IS NULL)"
        ),
        ddl.foreign_key("delivery_attempts", "delivery_id", "deliveries", ondelete="CASCADE"),
        ddl.foreign_key(
            "delivery_attempts", "endpoint_id", "webhook_endpoints", ondelete="SET NULL"
        ),
        ddl.foreign_key(
            "delivery_attempts", "notification_id", "job_notifications", ondelete="CASCADE"
        ),
        ddl.primary_key("delivery_attempts", "id"),
    )
    op.create_index(
        "ix_delivery_attempts_delivery",
        "delivery_attempts",
        ["delivery_id", "started_at"],
        unique=False,
    )
    op.create_index(
        "ix_delivery_attempts_endpoint",
        "delivery_attempts",
        ["endpoint_id", "started_at"],
        unique=False,
    )
    op.create_index(
        "ix_delivery_attempts_notification",
        "delivery_attempts",
        ["notification_id", "started_at"],
        unique=False,
    )
    op.create_table(
        "delivery_schedules",
        sa.Column("delivery_id", sa.Uuid(), nullable=False),
        *ddl.retry_columns(),
        ddl.foreign_key("delivery_schedules", "delivery_id", "deliveries", ondelete="CASCADE"),
        ddl.primary_key("delivery_schedules", "delivery_id"),
    )
    op.create_index(
        "ix_delivery_schedules_due", "delivery_schedules", ["next_attempt_at"], unique=False
    )


def downgrade() -> None:
    """Drop the three tables (children first)."""
    op.drop_index("ix_delivery_schedules_due", table_name="delivery_schedules")
    op.drop_table("delivery_schedules")
    op.drop_index("ix_delivery_attempts_notification", table_name="delivery_attempts")
    op.drop_index("ix_delivery_attempts_endpoint", table_name="delivery_attempts")
    op.drop_index("ix_delivery_attempts_delivery", table_name="delivery_attempts")
    op.drop_table("delivery_attempts")
    op.drop_index("ix_job_notifications_status_due", table_name="job_notifications")
    op.drop_table("job_notifications")
