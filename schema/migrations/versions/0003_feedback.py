"""Summary feedback: the helpful / not helpful votes under each summary, with prompt version.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-24 10:05:00

Written by hand to match ``schema.models.feedback``; only a new table, so SQLite needs no batch
mode.  Migrations are frozen history: plain SQLAlchemy types, never the models.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from schema.migrations import ddl

# revision identifiers, used by Alembic.
revision: str = "0003"
down_revision: str | Sequence[str] | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Create ``summary_feedback``."""
    op.create_table(
        "summary_feedback",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("summary_id", sa.Uuid(), nullable=True),
        sa.Column("guild_id", sa.String(length=32), nullable=True),
        sa.Column("user_id", sa.String(length=32), nullable=False),
        sa.Column("helpful", sa.Boolean(), nullable=False),
        sa.Column("prompt_version", sa.String(length=32), nullable=False),
        *ddl.created_updated_at(server_default_now=True),
        ddl.foreign_key("summary_feedback", "summary_id", "summaries", ondelete="SET NULL"),
        ddl.primary_key("summary_feedback", "id"),
        ddl.unique("summary_feedback", "summary_id", "user_id"),
    )
    op.create_index("ix_summary_feedback_guild_id", "summary_feedback", ["guild_id"], unique=False)
    op.create_index("ix_summary_feedback_user_id", "summary_feedback", ["user_id"], unique=False)
    op.create_index(
        "ix_summary_feedback_prompt_version",
        "summary_feedback",
        ["prompt_version", "created_at"],
        unique=False,
    )


def downgrade() -> None:
    """Drop ``summary_feedback``."""
    op.drop_index("ix_summary_feedback_prompt_version", table_name="summary_feedback")
    op.drop_index("ix_summary_feedback_user_id", table_name="summary_feedback")
    op.drop_index("ix_summary_feedback_guild_id", table_name="summary_feedback")
    op.drop_table("summary_feedback")
