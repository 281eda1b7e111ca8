"""Initial schema: jobs and their outputs, tenancy, schedules, usage.

Revision ID: 0001
Revises:
Create Date: 2026-11-23 18:02:47

Generated with ``--autogenerate`` against an empty PostgreSQL database, then reviewed by hand:
plain SQLAlchemy types instead of the models' (``UTCDateTime`` is ``DateTime(timezone=True)``
underneath, JSON is JSONB on PostgreSQL), ``now()`` as ``func.now()`` so SQLite gets
``CURRENT_TIMESTAMP``, tables ordered parents first.  Constraint names follow the naming
convention of ``schema.base``; ``op.f()`` marks them as final.

Migrations are frozen history: they use plain SQLAlchemy types, never the models, so a later
change to a model cannot change what an old revision does.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from schema.migrations import ddl

# revision identifiers, used by Alembic.
revision: str = "0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Create every table of the system of record."""
    op.create_table(
        "jobs",
        *ddl.jobs_columns(status_length=16),
        ddl.check(
            "jobs",
            "status",
            "status IN ('queued', 'fetching', 'summarizing', 'delivering', 'completed', 'failed', 'cancelled')",
        ),
        ddl.primary_key("jobs", "id"),
        ddl.unique("jobs", "idempotency_key"),
    )
    op.create_index("ix_jobs_guild_created", "jobs", ["guild_id", "created_at"], unique=False)
    op.create_index("ix_jobs_status_heartbeat", "jobs", ["status", "heartbeat_at"], unique=False)
    op.create_table(
        "summaries",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("job_id", sa.Uuid(), nullable=False),
        sa.Column("guild_id", sa.String(length=32), nullable=True),
        sa.Column("channel_id", sa.String(length=32), nullable=True),
        sa.Column("format", sa.String(length=16), nullable=False),
        sa.Column("language", sa.String(length=16), nullable=True),
        sa.Column("content", ddl.JSON, nullable=False),
        sa.Column("backend", sa.String(length=32), nullable=False),
        sa.Column("model", sa.String(length=100), nullable=True),
        sa.Column("prompt_version", sa.String(length=32), nullable=False),
        sa.Column("degraded", sa.Boolean(), nullable=False),
        sa.Column("message_count", sa.Integer(), nullable=False),
        *ddl.usage_columns(server_default_zero=False),
        sa.Column("window_start", ddl.TIMESTAMP, nullable=True),
        sa.Column("window_end", ddl.TIMESTAMP, nullable=True),
        sa.Column("created_at", ddl.TIMESTAMP, nullable=False),
        ddl.foreign_key("summaries", "job_id", "jobs", ondelete="CASCADE"),
        ddl.primary_key("summaries", "id"),
        ddl.unique("summaries", "job_id"),
    )
    op.create_index(
        "ix_summaries_guild_created", "summaries", ["guild_id", "created_at"], unique=False
    )
    op.create_table(
        "deliveries",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("summary_id", sa.Uuid(), nullable=False),
        *ddl.outbox_columns("deliveries"),
        ddl.foreign_key("deliveries", "summary_id", "summaries", ondelete="CASCADE"),
        ddl.primary_key("deliveries", "id"),
        ddl.unique("deliveries", "summary_id", "target"),
    )
    op.create_index(
        "ix_deliveries_status_lease", "deliveries", ["status", "lease_until"], unique=False
    )
    op.create_table(
        "dead_letters",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("task_id", sa.String(length=64), nullable=False),
        sa.Column("task_name", sa.String(length=200), nullable=False),
        sa.Column("job_id", sa.Uuid(), nullable=True),
        sa.Column("delivery_id", sa.Uuid(), nullable=True),
        sa.Column("args", ddl.JSON, nullable=False),
        sa.Column("kwargs", ddl.JSON, nullable=False),
        sa.Column("error", sa.Text(), nullable=False),
        sa.Column("traceback", sa.Text(), nullable=True),
        sa.Column("retries", sa.Integer(), nullable=False),
        sa.Column("first_seen", ddl.TIMESTAMP, nullable=False),
        sa.Column("last_seen", ddl.TIMESTAMP, nullable=False),
        sa.Column("replayed_at", ddl.TIMESTAMP, nullable=True),
        ddl.foreign_key("dead_letters", "delivery_id", "deliveries", ondelete="CASCADE"),
        ddl.foreign_key("dead_letters", "job_id", "jobs", ondelete="CASCADE"),
        ddl.primary_key("dead_letters", "id"),
        ddl.unique("dead_letters", "task_id"),
    )
    op.create_index(op.f("ix_dead_letters_job_id"), "dead_letters", ["job_id"], unique=False)
    op.create_table(
        "guild_settings",
        sa.Column("guild_id", sa.String(length=32), nullable=False),
        sa.Column("default_format", sa.String(length=16), server_default="brief", nullable=False),
        sa.Column("default_language", sa.String(length=16), nullable=True),
        sa.Column("allowed_role_ids", ddl.JSON, server_default=sa.text("'[]'"), nullable=False),
        sa.Column("excluded_channel_ids", ddl.JSON, server_default=sa.text("'[]'"), nullable=False),
        sa.Column("retention_days", sa.Integer(), server_default=sa.text("90"), nullable=False),
        sa.Column("monthly_token_budget", sa.BigInteger(), nullable=True),
        sa.Column("reaction_trigger_emoji", sa.String(length=100), nullable=True),
        sa.Column(
            "private_channel_policy",
            sa.String(length=16),
            server_default="same_channel",
            nullable=False,
        ),
        sa.Column("custom_instructions", sa.Text(), nullable=True),
        *ddl.created_updated_at(server_default_now=True),
        ddl.check(
            "guild_settings",
            "default_format",
            "default_format IN ('brief', 'structured', 'detailed', 'technical')",
        ),
        ddl.check(
            "guild_settings",
            "private_policy",
            "private_channel_policy IN ('allow', 'same_channel', 'deny')",
        ),
        ddl.check("guild_settings", "instructions_length", "length(custom_instructions) <= 2000"),
        ddl.check("guild_settings", "token_budget", "monthly_token_budget >= 0"),
        ddl.check("guild_settings", "retention_days", "retention_days BETWEEN 1 AND 3650"),
        ddl.primary_key("guild_settings", "guild_id"),
    )
    op.create_table(
        "api_keys",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("guild_id", sa.String(length=32), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("secret_hash", sa.String(length=128), nullable=False),
        sa.Column("scopes", ddl.JSON, server_default=sa.text("'[]'"), nullable=False),
        sa.Column("ip_allowlist", ddl.JSON, nullable=True),
        sa.Column("signing_secret_encrypted", sa.Text(), nullable=True),
        sa.Column("rate_limit_per_minute", sa.Integer(), nullable=True),
        sa.Column("created_by", sa.String(length=64), nullable=True),
        sa.Column("created_at", ddl.TIMESTAMP, server_default=sa.func.now(), nullable=False),
        sa.Column("expires_at", ddl.TIMESTAMP, nullable=True),
        sa.Column("revoked_at", ddl.TIMESTAMP, nullable=True),
        sa.Column("last_used_at", ddl.TIMESTAMP, nullable=True),
        ddl.check("api_keys", "id_length", "length(id) BETWEEN 8 AND 32"),
        ddl.check("api_keys", "rate_limit", "rate_limit_per_minute > 0"),
        ddl.primary_key("api_keys", "id"),
    )
    op.create_index(op.f("ix_api_keys_guild_id"), "api_keys", ["guild_id"], unique=False)
    op.create_table(
        "webhook_endpoints",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("guild_id", sa.String(length=32), nullable=False),
        sa.Column("url", sa.String(length=2048), nullable=False),
        sa.Column("description", sa.String(length=200), nullable=True),
        sa.Column("secret_encrypted", sa.Text(), nullable=False),
        sa.Column("previous_secrets", ddl.JSON, server_default=sa.text("'[]'"), nullable=False),
        sa.Column("auth_kind", sa.String(length=16), server_default="none", nullable=False),
        sa.Column("auth_encrypted", sa.Text(), nullable=True),
        sa.Column("events", ddl.JSON, nullable=False),
        sa.Column("enabled", sa.Boolean(), server_default=sa.true(), nullable=False),
        sa.Column("disabled_reason", sa.Text(), nullable=True),
        sa.Column("failing_since", ddl.TIMESTAMP, nullable=True),
        sa.Column("fallback", ddl.JSON, nullable=True),
        *ddl.created_updated_at(server_default_now=True),
        ddl.check(
            "webhook_endpoints",
            "auth_secret",
            "(auth_kind = 'none' AND auth_encrypted IS NULL) OR (auth_kind <> 'none' AND auth_encrypted IS NOT NULL)",
        ),
        ddl.check(
            "webhook_endpoints", "auth_kind", "auth_kind IN ('none', 'bearer', 'basic', 'header')"
        ),
        ddl.primary_key("webhook_endpoints", "id"),
    )
    op.create_index(
        op.f("ix_webhook_endpoints_guild_id"), "webhook_endpoints", ["guild_id"], unique=False
    )
    op.create_table(
        "user_opt_outs",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("guild_id", sa.String(length=32), nullable=False),
        sa.Column("user_id", sa.String(length=32), nullable=False),
        sa.Column("created_at", ddl.TIMESTAMP, server_default=sa.func.now(), nullable=False),
        ddl.primary_key("user_opt_outs", "id"),
        ddl.unique("user_opt_outs", "guild_id", "user_id"),
    )
    op.create_index(op.f("ix_user_opt_outs_user_id"), "user_opt_outs", ["user_id"], unique=False)
    op.create_table(
        "schedules",
        *ddl.schedules_columns(),
        ddl.check("schedules", "empty_policy", "empty_policy IN ('skip', 'notice')"),
        ddl.check(
            "schedules", "format", "format IN ('brief', 'structured', 'detailed', 'technical')"
        ),
        ddl.primary_key("schedules", "id"),
    )
    op.create_index("ix_schedules_due", "schedules", ["enabled", "next_run_at"], unique=False)
    op.create_index(op.f("ix_schedules_guild_id"), "schedules", ["guild_id"], unique=False)
    op.create_table(
        "schedule_runs",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("schedule_id", sa.Uuid(), nullable=False),
        sa.Column("window_start", ddl.TIMESTAMP, nullable=False),
        sa.Column("window_end", ddl.TIMESTAMP, nullable=False),
        sa.Column("job_id", sa.Uuid(), nullable=True),
        sa.Column("created_at", ddl.TIMESTAMP, server_default=sa.func.now(), nullable=False),
        ddl.check("schedule_runs", "window_order", "window_end > window_start"),
        ddl.foreign_key("schedule_runs", "job_id", "jobs", ondelete="SET NULL"),
        ddl.foreign_key("schedule_runs", "schedule_id", "schedules", ondelete="CASCADE"),
        ddl.primary_key("schedule_runs", "id"),
        ddl.unique("schedule_runs", "schedule_id", "window_start"),
    )
    op.create_index(op.f("ix_schedule_runs_job_id"), "schedule_runs", ["job_id"], unique=False)
    op.create_table(
        "usage_ledger",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("guild_id", sa.String(length=32), nullable=True),
        sa.Column("job_id", sa.Uuid(), nullable=True),
        sa.Column("model", sa.String(length=100), nullable=True),
        sa.Column("kind", sa.String(length=16), nullable=False),
        *ddl.usage_columns(server_default_zero=True),
        sa.Column("created_at", ddl.TIMESTAMP, server_default=sa.func.now(), nullable=False),
        ddl.check(
            "usage_ledger", "kind", "kind IN ('single', 'map', 'reduce', 'repair', 'extractive')"
        ),
        ddl.non_negative_usage("usage_ledger"),
        ddl.foreign_key("usage_ledger", "job_id", "jobs", ondelete="SET NULL"),
        ddl.primary_key("usage_ledger", "id"),
    )
    op.create_index(
        "ix_usage_ledger_guild_created", "usage_ledger", ["guild_id", "created_at"], unique=False
    )
    op.create_index(op.f("ix_usage_ledger_job_id"), "usage_ledger", ["job_id"], unique=False)


def downgrade() -> None:
    """Drop every table upgrade() created, children first (their indexes go with them)."""
    op.drop_table("usage_ledger")
    op.drop_table("schedule_runs")
    op.drop_table("schedules")
    op.drop_table("user_opt_outs")
    op.drop_table("webhook_endpoints")
    op.drop_table("api_keys")
    op.drop_table("guild_settings")
    op.drop_table("dead_letters")
    op.drop_table("deliveries")
    op.drop_table("summaries")
    op.drop_table("jobs")
