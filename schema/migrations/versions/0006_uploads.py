"""Uploads: conversations sent through the API (``POST /v1/jobs/upload``), stored in chunks.

Revision ID: 0006
Revises: 0005
Create Date: 2027-01-10 09:00:00

Only new tables, so SQLite needs no batch mode.  Plain SQLAlchemy types, never the models.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from schema.migrations import ddl

# revision identifiers, used by Alembic.
revision: str = "0006"
down_revision: str | Sequence[str] | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Create ``uploads`` and ``upload_chunks``."""
    op.create_table(
        "uploads",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("guild_id", sa.String(length=32), nullable=True),
        sa.Column("job_id", sa.Uuid(), nullable=True),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("created_at", ddl.TIMESTAMP, nullable=False),
        ddl.foreign_key("uploads", "job_id", "jobs", ondelete="CASCADE"),
        ddl.primary_key("uploads", "id"),
        ddl.unique("uploads", "job_id"),
    )
    op.create_index("ix_uploads_guild_created", "uploads", ["guild_id", "created_at"])
    op.create_table(
        "upload_chunks",
        sa.Column("upload_id", sa.Uuid(), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("data", sa.LargeBinary(), nullable=False),
        ddl.foreign_key("upload_chunks", "upload_id", "uploads", ondelete="CASCADE"),
        ddl.primary_key("upload_chunks", "upload_id", "seq"),
    )


def downgrade() -> None:
    """Drop both tables (stored uploads are lost)."""
    op.drop_table("upload_chunks")
    op.drop_index("ix_uploads_guild_created", table_name="uploads")
    op.drop_table("uploads")
