"""Map/reduce bookkeeping of LLM summaries: plans, chunk notes, the reduce claim.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-24 09:12:05

Written against the models of ``schema.models.chunks`` and checked for drift with ``alembic
check`` on PostgreSQL and SQLite.  Only new tables, so SQLite needs no batch mode.

Migrations are frozen history: they use plain SQLAlchemy types, never the models, so a later
change to a model cannot change what an old revision does.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from schema.migrations import ddl

# revision identifiers, used by Alembic.
revision: str = "0004"
down_revision: str | Sequence[str] | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Create the plan, chunk and reduction tables."""
    op.create_table(
        "summary_plans",
        sa.Column("job_id", sa.Uuid(), nullable=False),
        sa.Column("chunk_count", sa.Integer(), nullable=False),
        sa.Column("cached_chunks", sa.Integer(), nullable=False),
        sa.Column("estimated_tokens", sa.BigInteger(), nullable=False),
        sa.Column("model", sa.String(length=100), nullable=False),
        sa.Column("stats", ddl.JSON, nullable=False),
        sa.Column("created_at", ddl.TIMESTAMP, nullable=False),
        ddl.foreign_key("summary_plans", "job_id", "jobs", ondelete="CASCADE"),
        ddl.primary_key("summary_plans", "job_id"),
    )
    op.create_table(
        "summary_chunks",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("job_id", sa.Uuid(), nullable=False),
        sa.Column("chunk_index", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("content_hash", sa.String(length=64), nullable=False),
        sa.Column("message_count", sa.Integer(), nullable=False),
        sa.Column("transcript_tokens", sa.Integer(), nullable=False),
        sa.Column("notes", ddl.JSON, nullable=True),
        sa.Column("cached", sa.Boolean(), nullable=False),
        sa.Column("model", sa.String(length=100), nullable=True),
        *ddl.usage_columns(server_default_zero=False),
        sa.Column("lease_until", ddl.TIMESTAMP, nullable=True),
        *ddl.created_updated_at(server_default_now=False),
        ddl.check("summary_chunks", "status", "status IN ('pending', 'done')"),
        ddl.non_negative_usage("summary_chunks"),
        ddl.foreign_key("summary_chunks", "job_id", "jobs", ondelete="CASCADE"),
        ddl.primary_key("summary_chunks", "id"),
        ddl.unique("summary_chunks", "job_id", "chunk_index"),
    )
    op.create_table(
        "summary_reductions",
        sa.Column("job_id", sa.Uuid(), nullable=False),
        sa.Column("mode", sa.String(length=16), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("created_at", ddl.TIMESTAMP, nullable=False),
        ddl.check("summary_reductions", "mode", "mode IN ('notes', 'degraded')"),
        ddl.foreign_key("summary_reductions", "job_id", "jobs", ondelete="CASCADE"),
        ddl.primary_key("summary_reductions", "job_id"),
    )


def downgrade() -> None:
    """Drop the three tables."""
    op.drop_table("summary_reductions")
    op.drop_table("summary_chunks")
    op.drop_table("summary_plans")
