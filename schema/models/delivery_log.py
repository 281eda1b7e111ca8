"""Delivery bookkeeping beyond the outbox rows: the attempt log, retry schedules, job events.

- ``delivery_attempts`` logs every send attempt of every delivery (and job notification): when,
  how long, the HTTP status or error, a short response excerpt, and when the next try is due.
- ``delivery_schedules`` holds the retry state of a ``deliveries`` row: failures so far, when
  the next attempt is due, and the progress of a multi-part send (message ids already posted),
  so a retry resumes instead of posting parts twice.  Long retry delays live here, not in
  Celery countdowns: the ``redrive_deliveries`` sweep re-enqueues what is due.
- ``job_notifications`` is the outbox of events that have no summary (``job.failed``): one row
  per job, event and target, with the same ``pending → sending → sent | failed`` life as a
  delivery.
"""

from __future__ import annotations

import uuid
from enum import StrEnum
from typing import Any

from sqlalchemy import (
    CheckConstraint,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from schema.base import Base, JSONType
from schema.models.columns import DefaultNow, Timestamp
from schema.models.jobs import DeliveryStatus, OutboxColumns, _in

__all__ = ["AttemptOutcome", "DeliveryAttempt", "DeliverySchedule", "JobNotification"]


class AttemptOutcome(StrEnum):
    """How one attempt ended."""

    SENT = "sent"
    RETRY = "retry"
    FAILED = "failed"
    SKIPPED = "skipped"


class DeliveryAttempt(Base):
    """One attempt to send a delivery or a job notification (exactly one of the two is set)."""

    __tablename__ = "delivery_attempts"
    __table_args__ = (
        CheckConstraint(_in("outcome", AttemptOutcome), name="outcome"),
        CheckConstraint("(delivery_id IS NULL) <> (notification_id IS NULL)", name="one_parent"),
        Index("ix_delivery_attempts_delivery", "delivery_id", "started_at"),
        Index("ix_delivery_attempts_notification", "notification_id", "started_at"),
        Index("ix_delivery_attempts_endpoint", "endpoint_id", "started_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    delivery_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("deliveries.id", ondelete="CASCADE")
    )
    notification_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("job_notifications.id", ondelete="CASCADE")
    )
    number: Mapped[int] = mapped_column(Integer)
    target: Mapped[str] = mapped_column(String(500))
    endpoint_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("webhook_endpoints.id", ondelete="SET NULL")
    )
    started_at: Mapped[DefaultNow]
    duration_ms: Mapped[int] = mapped_column(Integer, default=0)
    status_code: Mapped[int | None] = mapped_column(Integer)
    outcome: Mapped[str] = mapped_column(String(16))
    error: Mapped[str | None] = mapped_column(Text)
    response_excerpt: Mapped[str | None] = mapped_column(Text)
    next_attempt_at: Mapped[Timestamp | None]


class DeliverySchedule(Base):
    """Retry state and send progress of one delivery; absent until needed."""

    __tablename__ = "delivery_schedules"
    __table_args__ = (Index("ix_delivery_schedules_due", "next_attempt_at"),)

    delivery_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("deliveries.id", ondelete="CASCADE"), primary_key=True
    )
    failures: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[Timestamp | None]
    redriven_at: Mapped[Timestamp | None]
    first_failure_at: Mapped[Timestamp | None]
    progress: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)


class JobNotification(OutboxColumns, Base):
    """An event about a job (``job.failed``) to send to one target, outbox style.

    A notification has no ``delivery_schedules`` row: its retry state and send progress are
    columns of its own.
    """

    __tablename__ = "job_notifications"
    __table_args__ = (
        UniqueConstraint("job_id", "event", "target"),
        CheckConstraint(_in("status", DeliveryStatus), name="status"),
        Index("ix_job_notifications_status_due", "status", "next_attempt_at"),
    )

    job_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"))
    event: Mapped[str] = mapped_column(String(64))
    failures: Mapped[int] = mapped_column(Integer, default=0, sort_order=1)
    next_attempt_at: Mapped[Timestamp | None] = mapped_column(sort_order=2)
    redriven_at: Mapped[Timestamp | None] = mapped_column(sort_order=2)
    first_failure_at: Mapped[Timestamp | None] = mapped_column(sort_order=2)
    progress: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict, sort_order=2)
    fallback_of: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("job_notifications.id", ondelete="SET NULL"), sort_order=3
    )
