"""DDL that several revisions spell alike: column types, named constraints, the outbox columns.

Frozen history.  Revisions that databases have already run build their tables from what these
functions return, so none of it may ever change: a changed column here would make an old
revision create a different schema than it did, and ``alembic check`` drift where nothing moved.
A later revision that needs another shape writes its own (or adds a new function here); it
never edits one of these.  Like the revisions, this uses plain SQLAlchemy types, never the
models, so a change to a model cannot reach into history.

The constraint builders name a constraint as the naming convention of ``schema.base`` does
(``check`` takes the short name a model gives, such as ``status``); ``op.f()`` marks the name
as final, as the revisions do.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql
from sqlalchemy.schema import SchemaItem

__all__ = [
    "JSON",
    "TIMESTAMP",
    "check",
    "created_updated_at",
    "foreign_key",
    "jobs_columns",
    "non_negative_usage",
    "outbox_columns",
    "primary_key",
    "retry_columns",
    "schedules_columns",
    "unique",
    "usage_columns",
]

#: JSON on every backend, JSONB on PostgreSQL.
JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")
#: A moment with its zone (the models' ``UTCDateTime`` underneath).
TIMESTAMP = sa.DateTime(timezone=True)


def created_updated_at(*, server_default_now: bool) -> list[sa.Column[Any]]:
    """``created_at`` and ``updated_at``, both required; with ``server_default_now`` the
    database fills them with ``now()`` (the models' ``...InDb`` columns)."""
    default = sa.func.now() if server_default_now else None
    return [
        sa.Column("created_at", TIMESTAMP, server_default=default, nullable=False),
        sa.Column("updated_at", TIMESTAMP, server_default=default, nullable=False),
    ]


def usage_columns(*, server_default_zero: bool) -> list[sa.Column[Any]]:
    """The token counts and the cost of LLM calls (``prompt_tokens``, ``completion_tokens``,
    ``cost_usd``), all required; with ``server_default_zero`` the database starts them at 0."""
    default = sa.text("0") if server_default_zero else None
    return [
        sa.Column("prompt_tokens", sa.Integer(), server_default=default, nullable=False),
        sa.Column("completion_tokens", sa.Integer(), server_default=default, nullable=False),
        sa.Column(
            "cost_usd", sa.Numeric(precision=12, scale=6), server_default=default, nullable=False
        ),
    ]


def primary_key(table: str, *columns: str) -> sa.PrimaryKeyConstraint:
    """The primary key of ``table``, named ``pk_<table>``."""
    return sa.PrimaryKeyConstraint(*columns, name=op.f(f"pk_{table}"))


def unique(table: str, *columns: str) -> sa.UniqueConstraint:
    """A unique constraint on ``columns``, named ``uq_<table>_<column>_<column>...``."""
    return sa.UniqueConstraint(*columns, name=op.f(f"uq_{table}_{'_'.join(columns)}"))


def check(table: str, name: str, condition: str) -> sa.CheckConstraint:
    """A check constraint, named ``ck_<table>_<name>`` (``name`` as a model gives it)."""
    return sa.CheckConstraint(condition, name=op.f(f"ck_{table}_{name}"))


def non_negative_usage(table: str) -> sa.CheckConstraint:
    """No negative token count or cost in the ``usage_columns``."""
    return check(
        table, "non_negative", "prompt_tokens >= 0 AND completion_tokens >= 0 AND cost_usd >= 0"
    )


def foreign_key(table: str, column: str, parent: str, *, ondelete: str) -> sa.ForeignKeyConstraint:
    """``table.column`` references ``parent.id``, named ``fk_<table>_<column>_<parent>``."""
    return sa.ForeignKeyConstraint(
        [column], [f"{parent}.id"], name=op.f(f"fk_{table}_{column}_{parent}"), ondelete=ondelete
    )


def outbox_columns(
    table: str,
    *,
    before_lease: Sequence[sa.Column[Any]] = (),
    after_lease: Sequence[sa.Column[Any]] = (),
) -> list[SchemaItem]:
    """The columns of an outbox table after its own leading ones (0001 ``deliveries``, 0002
    ``job_notifications``), with the ``status`` check and the ``fallback_of`` reference to the
    table's own rows.

    A table's columns that its revision placed among these go in ``before_lease`` (right after
    ``attempts``) and ``after_lease`` (right after ``lease_until``).
    """
    return [
        sa.Column("target", sa.String(length=500), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("params", JSON, nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        *before_lease,
        sa.Column("lease_until", TIMESTAMP, nullable=True),
        *after_lease,
        sa.Column("remote_id", sa.String(length=200), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("fallback_of", sa.Uuid(), nullable=True),
        sa.Column("created_at", TIMESTAMP, nullable=False),
        sa.Column("sent_at", TIMESTAMP, nullable=True),
        check(table, "status", "status IN ('pending', 'sending', 'sent', 'failed')"),
        foreign_key(table, "fallback_of", table, ondelete="SET NULL"),
    ]


def retry_columns() -> list[sa.Column[Any]]:
    """The retry state and send progress of a delivery or a job notification (0002):
    ``failures``, ``next_attempt_at``, ``redriven_at``, ``first_failure_at``, ``progress``."""
    return [
        sa.Column("failures", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", TIMESTAMP, nullable=True),
        sa.Column("redriven_at", TIMESTAMP, nullable=True),
        sa.Column("first_failure_at", TIMESTAMP, nullable=True),
        sa.Column("progress", JSON, nullable=False),
    ]


def jobs_columns(*, status_length: int) -> list[sa.Column[Any]]:
    """The columns of ``jobs`` as 0001 created them; 0005 widened ``status`` from 16 to 32."""
    return [
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("origin", sa.String(length=16), nullable=False),
        sa.Column("status", sa.String(length=status_length), nullable=False),
        sa.Column("guild_id", sa.String(length=32), nullable=True),
        sa.Column("channel_id", sa.String(length=32), nullable=True),
        sa.Column("requested_by", sa.String(length=64), nullable=True),
        sa.Column("params", JSON, nullable=False),
        sa.Column("progress", JSON, nullable=False),
        sa.Column("idempotency_key", sa.String(length=200), nullable=True),
        sa.Column("message_count", sa.Integer(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("error_detail", sa.Text(), nullable=True),
        sa.Column("redeliveries", sa.Integer(), nullable=False),
        *created_updated_at(server_default_now=False),
        sa.Column("stage_started_at", TIMESTAMP, nullable=True),
        sa.Column("heartbeat_at", TIMESTAMP, nullable=True),
        sa.Column("finished_at", TIMESTAMP, nullable=True),
    ]


def schedules_columns() -> list[sa.Column[Any]]:
    """The columns of ``schedules`` as 0001 created them (0007 added the scope columns)."""
    return [
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("guild_id", sa.String(length=32), nullable=False),
        sa.Column("channel_id", sa.String(length=32), nullable=False),
        sa.Column("created_by", sa.String(length=64), nullable=False),
        sa.Column("spec", sa.Text(), nullable=False),
        sa.Column("cron", sa.String(length=120), nullable=False),
        sa.Column("timezone", sa.String(length=64), nullable=False),
        sa.Column("format", sa.String(length=16), server_default="brief", nullable=False),
        sa.Column("language", sa.String(length=16), nullable=True),
        sa.Column("destination", JSON, nullable=False),
        sa.Column("empty_policy", sa.String(length=8), server_default="skip", nullable=False),
        sa.Column("enabled", sa.Boolean(), server_default=sa.true(), nullable=False),
        sa.Column("next_run_at", TIMESTAMP, nullable=True),
        sa.Column("last_run_at", TIMESTAMP, nullable=True),
        *created_updated_at(server_default_now=True),
    ]
