"""Digest schedules and the runs they produced.

Beat claims due schedules (``enabled`` and ``next_run_at <= now``) and records one
:class:`ScheduleRun` per ``(schedule, window_start)``; the unique constraint is what keeps two
beat processes, or a replayed tick, from creating a digest twice.
"""

from __future__ import annotations

import uuid
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
    text,
    true,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from schema.base import Base, JSONType
from schema.models.columns import DefaultNowInDb, Snowflake, Timestamp, UpdatedAtInDb, UuidPk
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

    id: Mapped[UuidPk]
    guild_id: Mapped[Snowflake] = mapped_column(index=True)
    channel_id: Mapped[Snowflake]
    scope: Mapped[str] = mapped_column(
        String(16), default=ScheduleScope.CHANNEL.value, server_default=ScheduleScope.CHANNEL.value
    )
    scope_category_id: Mapped[Snowflake | None]
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
    next_run_at: Mapped[Timestamp | None]
    last_run_at: Mapped[Timestamp | None]
    created_at: Mapped[DefaultNowInDb]
    updated_at: Mapped[UpdatedAtInDb]

    runs: Mapped[list[ScheduleRun]] = relationship(back_populates="schedule", passive_deletes=True)


class ScheduleRun(Base):
    """One firing of a schedule for one window; ``job_id`` is the digest job it started."""

    __tablename__ = "schedule_runs"
    __table_args__ = (
        UniqueConstraint("schedule_id", "window_start"),
        CheckConstraint("window_end > window_start", name="window_order"),
    )

    id: Mapped[UuidPk]
    schedule_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("schedules.id", ondelete="CASCADE"))
    window_start: Mapped[Timestamp]
    window_end: Mapped[Timestamp]
    job_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("jobs.id", ondelete="SET NULL"), index=True
    )
    created_at: Mapped[DefaultNowInDb]

    schedule: Mapped[Schedule] = relationship(back_populates="runs")
