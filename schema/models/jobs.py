"""Jobs, their summaries, the deliveries of those summaries, and dead letters.

The ``jobs`` row is the source of truth for a job's life: every stage writes its status,
heartbeat and progress here, and a task that runs twice reads it first and skips done work.
"""

from __future__ import annotations

import uuid
from decimal import Decimal
from enum import StrEnum
from typing import Any

from sqlalchemy import (
    Boolean,
    CheckConstraint,
    ForeignKey,
    Index,
    Integer,
    Numeric,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from schema.base import Base, JSONType
from schema.models.columns import DefaultNow, Snowflake, Timestamp, UpdatedAt, UuidPk

__all__ = [
    "DeadLetter",
    "Delivery",
    "DeliveryStatus",
    "Job",
    "JobStatus",
    "OutboxColumns",
    "Summary",
]


class JobStatus(StrEnum):
    """Life of a job: ``queued → fetching → summarizing → delivering → completed``."""

    QUEUED = "queued"
    FETCHING = "fetching"
    SUMMARIZING = "summarizing"
    DELIVERING = "delivering"
    COMPLETED = "completed"
    COMPLETED_WITH_ERRORS = "completed_with_errors"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def finished(self) -> bool:
        """True for the end states."""
        return self in (
            JobStatus.COMPLETED,
            JobStatus.COMPLETED_WITH_ERRORS,
            JobStatus.FAILED,
            JobStatus.CANCELLED,
        )


class DeliveryStatus(StrEnum):
    """Outbox states of one delivery: ``pending → sending (leased) → sent`` or ``failed``."""

    PENDING = "pending"
    SENDING = "sending"
    SENT = "sent"
    FAILED = "failed"


def _in(column: str, enum: type[StrEnum]) -> str:
    return f"{column} IN ({', '.join(repr(m.value) for m in enum)})"


class OutboxColumns:
    """The columns of an outbox row (:class:`Delivery`, ``JobNotification``).

    One item sent to one ``target`` of a ``kind`` with its ``params``: ``status`` goes
    ``pending → sending (leased until lease_until) → sent | failed``, ``attempts`` counts the
    sends, ``remote_id`` is what the target answered (a message id) and ``last_error`` why the
    last send failed.  Each table adds ``fallback_of``, a reference to its own rows.
    """

    # sort_order keeps each table's columns in the order its migration created them: id (-1),
    # then groups 0 (target..attempts), 1 (lease_until), 2 (remote_id, last_error) and 3
    # (created_at, sent_at).  A table slots its own columns in with the same numbers; within a
    # group SQLAlchemy puts the table's columns before these.
    id: Mapped[UuidPk] = mapped_column(sort_order=-1)
    target: Mapped[str] = mapped_column(String(500))
    kind: Mapped[str] = mapped_column(String(32))
    params: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    status: Mapped[str] = mapped_column(String(16), default=DeliveryStatus.PENDING.value)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    lease_until: Mapped[Timestamp | None] = mapped_column(sort_order=1)
    remote_id: Mapped[str | None] = mapped_column(String(200), sort_order=2)
    last_error: Mapped[str | None] = mapped_column(Text, sort_order=2)
    created_at: Mapped[DefaultNow] = mapped_column(sort_order=3)
    sent_at: Mapped[Timestamp | None] = mapped_column(sort_order=3)


class Job(Base):
    """One request to summarize a conversation and deliver the result."""

    __tablename__ = "jobs"
    __table_args__ = (
        CheckConstraint(_in("status", JobStatus), name="status"),
        Index("ix_jobs_status_heartbeat", "status", "heartbeat_at"),
        Index("ix_jobs_guild_created", "guild_id", "created_at"),
    )

    id: Mapped[UuidPk]
    origin: Mapped[str] = mapped_column(String(16))
    status: Mapped[str] = mapped_column(String(32), default=JobStatus.QUEUED.value)
    guild_id: Mapped[Snowflake | None]
    channel_id: Mapped[Snowflake | None]
    requested_by: Mapped[str | None] = mapped_column(String(64))
    params: Mapped[dict[str, Any]] = mapped_column(JSONType)
    progress: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    idempotency_key: Mapped[str | None] = mapped_column(String(200), unique=True)
    message_count: Mapped[int | None] = mapped_column(Integer)
    error: Mapped[str | None] = mapped_column(Text)
    error_detail: Mapped[str | None] = mapped_column(Text)
    redeliveries: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[DefaultNow]
    updated_at: Mapped[UpdatedAt]
    stage_started_at: Mapped[Timestamp | None]
    heartbeat_at: Mapped[Timestamp | None]
    finished_at: Mapped[Timestamp | None]

    summary: Mapped[Summary | None] = relationship(back_populates="job", uselist=False)


class Summary(Base):
    """The structured summary a job produced (``content`` follows ``SummaryContent``)."""

    __tablename__ = "summaries"
    __table_args__ = (Index("ix_summaries_guild_created", "guild_id", "created_at"),)

    id: Mapped[UuidPk]
    job_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("jobs.id", ondelete="CASCADE"), unique=True
    )
    guild_id: Mapped[Snowflake | None]
    channel_id: Mapped[Snowflake | None]
    format: Mapped[str] = mapped_column(String(16))
    language: Mapped[str | None] = mapped_column(String(16))
    content: Mapped[dict[str, Any]] = mapped_column(JSONType)
    backend: Mapped[str] = mapped_column(String(32))
    model: Mapped[str | None] = mapped_column(String(100))
    prompt_version: Mapped[str] = mapped_column(String(32))
    degraded: Mapped[bool] = mapped_column(Boolean, default=False)
    message_count: Mapped[int] = mapped_column(Integer)
    prompt_tokens: Mapped[int] = mapped_column(Integer, default=0)
    completion_tokens: Mapped[int] = mapped_column(Integer, default=0)
    cost_usd: Mapped[Decimal] = mapped_column(Numeric(12, 6), default=Decimal(0))
    window_start: Mapped[Timestamp | None]
    window_end: Mapped[Timestamp | None]
    created_at: Mapped[DefaultNow]

    job: Mapped[Job] = relationship(back_populates="summary")
    deliveries: Mapped[list[Delivery]] = relationship(back_populates="summary")


class Delivery(OutboxColumns, Base):
    """One summary sent to one target: an outbox row, unique per summary and target."""

    __tablename__ = "deliveries"
    __table_args__ = (
        UniqueConstraint("summary_id", "target"),
        CheckConstraint(_in("status", DeliveryStatus), name="status"),
        Index("ix_deliveries_status_lease", "status", "lease_until"),
    )

    summary_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("summaries.id", ondelete="CASCADE"))
    fallback_of: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("deliveries.id", ondelete="SET NULL"), sort_order=3
    )

    summary: Mapped[Summary] = relationship(back_populates="deliveries")


class DeadLetter(Base):
    """A task that exhausted its retries or was poison; ``summarybot replay`` re-drives it."""

    __tablename__ = "dead_letters"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    task_id: Mapped[str] = mapped_column(String(64), unique=True)
    task_name: Mapped[str] = mapped_column(String(200))
    job_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("jobs.id", ondelete="CASCADE"), index=True
    )
    delivery_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("deliveries.id", ondelete="CASCADE")
    )
    args: Mapped[list[Any]] = mapped_column(JSONType, default=list)
    kwargs: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    error: Mapped[str] = mapped_column(Text)
    traceback: Mapped[str | None] = mapped_column(Text)
    retries: Mapped[int] = mapped_column(Integer, default=0)
    first_seen: Mapped[DefaultNow]
    last_seen: Mapped[DefaultNow]
    replayed_at: Mapped[Timestamp | None]
