"""Digest schedules and the runs they produced.

Beat claims due schedules (``enabled`` and ``next_run_at <= now``) and records one
:class:`ScheduleRun` per ``(schedule, window_start)``; the unique constraint is what keeps two
beat processes, or a replayed tick, from creating a digest twice.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import (
    Boolean,
    CheckConstraint,
    ForeignKey,
    Index,
    String,
    Text,
    UniqueConstraint,
    Uuid,
    func,
    text,
    true,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from schema.base import Base, JSONType, UTCDateTime, utcnow
from schema.models.jobs import _in
from schema.models.tenancy import SummaryFormatName

__all__ = ["EmptyPolicy", "Schedule", "ScheduleRun", "ScheduleScope"]


class EmptyPolicy(StrEnum):
    """What a digest does when its window has no messages: nothing, or a short notice."""

    SKIP = "skip"
    NOTICE = "notice"


class ScheduleScope(StrEnum):
    """What a digest covers: one channel, or several channels of the guild."""

    CHANNEL = "channel"  # the schedule's channel_id (or thread)
    SERVER = "server"  # every channel of the guild
    CATEGORY = "category"  # the channels of scope_category_id
    CHANNELS = "channels"  # the channels listed in scope_channel_ids

    @property
    def several(self) -> bool:
        """True for the scopes that summarize several channels in one digest."""
        return self is not ScheduleScope.CHANNEL


class Schedule(Base):
    """A recurring digest (``/digest create`` or ``/v1/schedules``).

    A ``channel`` scope summarizes ``channel_id``.  The other scopes summarize several channels
    (with their active threads and forum posts): the whole server, the category
    ``scope_category_id`` or the channels ``scope_channel_ids``.  Their digest is posted in the
    channel of their ``destination``, which ``channel_id`` then names, and contains only what
    every reader of that channel may read.

    ``spec`` keeps the user's own words ("daily 09:00 Europe/Berlin"); ``cron`` and ``timezone``
    are what it was parsed into, and ``next_run_at`` (UTC) is the next firing computed from them.
    ``destination`` says where the digest goes, e.g. ``{"kind": "channel", "channel_id": ...}``
    or ``{"kind": "webhook", "endpoint_id": ...}``.  Pausing sets ``enabled`` to false.
    """

    __tablename__ = "schedules"
    __table_args__ = (
        CheckConstraint(_in("format", SummaryFormatName), name="format"),
        CheckConstraint(_in("empty_policy", EmptyPolicy), name="empty_policy"),
        CheckConstraint(_in("scope", ScheduleScope), name="scope"),
        Index("ix_schedules_due", "enabled", "next_run_at"),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    guild_id: Mapped[str] = mapped_column(String(32), index=True)
    channel_id: Mapped[str] = mapped_column(String(32))
    scope: Mapped[str] = mapped_column(
        String(16), default=ScheduleScope.CHANNEL.value, server_default=ScheduleScope.CHANNEL.value
    )
    scope_category_id: Mapped[str | None] = mapped_column(String(32))
    scope_channel_ids: Mapped[list[str]] = mapped_column(
        JSONType, default=list, server_default=text("'[]'")
    )
    created_by: Mapped[str] = mapped_column(String(64))
    spec: Mapped[str] = mapped_column(Text)
    cron: Mapped[str] = mapped_column(String(120))
    timezone: Mapped[str] = mapped_column(String(64))
    format: Mapped[str] = mapped_column(
        String(16),
        default=SummaryFormatName.BRIEF.value,
        server_default=SummaryFormatName.BRIEF.value,
    )
    language: Mapped[str | None] = mapped_column(String(16))
    destination: Mapped[dict[str, Any]] = mapped_column(JSONType)
    empty_policy: Mapped[str] = mapped_column(
        String(8), default=EmptyPolicy.SKIP.value, server_default=EmptyPolicy.SKIP.value
    )
    enabled: Mapped[bool] = mapped_column(Boolean, default=True, server_default=true())
    next_run_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_run_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(
        UTCDateTime, default=utcnow, server_default=func.now()
    )
    updated_at: Mapped[datetime] = mapped_column(
        UTCDateTime, default=utcnow, onupdate=utcnow, server_default=func.now()
    )

    runs: Mapped[list[ScheduleRun]] = relationship(back_populates="schedule", passive_deletes=True)


class ScheduleRun(Base):
    """One firing of a schedule for one window; ``job_id`` is the digest job it started."""

    __tablename__ = "schedule_runs"
    __table_args__ = (
        UniqueConstraint("schedule_id", "window_start"),
        CheckConstraint("window_end > window_start", name="window_order"),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    schedule_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("schedules.id", ondelete="CASCADE"))
    window_start: Mapped[datetime] = mapped_column(UTCDateTime)
    window_end: Mapped[datetime] = mapped_column(UTCDateTime)
    job_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("jobs.id", ondelete="SET NULL"), index=True
    )
    created_at: Mapped[datetime] = mapped_column(
        UTCDateTime, default=utcnow, server_default=func.now()
    )

    schedule: Mapped[Schedule] = relationship(back_populates="runs")
