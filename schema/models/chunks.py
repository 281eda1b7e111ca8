"""Map/reduce bookkeeping of LLM summaries: the plan, one row per map chunk, the reduce claim.

A long conversation is summarized as *map* steps (one per chunk of transcript, run as separate
tasks on any summarize worker) and one *reduce* step over their notes.  Postgres is the barrier:

- ``summary_plans`` holds one row per job once its chunks are known (inserting it is the
  planner's claim, so a duplicated planner backs off) with the window's statistics;
- ``summary_chunks`` holds one row per ``(job_id, chunk_index)``; a map task stores the chunk's
  notes there (notes are derived text that cite message ids, never raw messages) and they are
  deleted as soon as the summary is stored;
- ``summary_reductions`` holds at most one row per job: the map task whose transaction completes
  the set of notes inserts it and only that task enqueues the reduce step.  A job that falls
  back to the offline summarizer (LLM unavailable, budget) claims it too, with mode
  ``degraded``, so the two can never both run.
"""

from __future__ import annotations

import uuid
from decimal import Decimal
from enum import StrEnum
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    ForeignKey,
    Integer,
    Numeric,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from schema.base import Base, JSONType
from schema.models.columns import DefaultNow, Timestamp, UpdatedAt, UuidPk
from schema.models.jobs import _in

__all__ = ["ChunkStatus", "ReduceMode", "SummaryChunk", "SummaryPlan", "SummaryReduction"]


class ChunkStatus(StrEnum):
    """A chunk waits for its map step, or has its notes."""

    PENDING = "pending"
    DONE = "done"


class ReduceMode(StrEnum):
    """What the one reduce step of a job does."""

    NOTES = "notes"  # merge the chunks' notes and write the final summary with the LLM
    DEGRADED = "degraded"  # the LLM is unavailable: summarize offline, flagged as degraded


class SummaryPlan(Base):
    """How a job's window was cut into chunks, and what the window holds.

    ``stats`` holds counts (messages seen, kept, dropped per reason), the window's first and
    last kept message times, and the participants with their message counts.
    """

    __tablename__ = "summary_plans"

    job_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("jobs.id", ondelete="CASCADE"), primary_key=True
    )
    chunk_count: Mapped[int] = mapped_column(Integer)
    cached_chunks: Mapped[int] = mapped_column(Integer, default=0)
    estimated_tokens: Mapped[int] = mapped_column(BigInteger, default=0)
    model: Mapped[str] = mapped_column(String(100))
    stats: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    created_at: Mapped[DefaultNow]


class SummaryChunk(Base):
    """One map step: a chunk of a job's transcript and, once mapped, its notes.

    ``lease_until`` is set while a map task works on the chunk, so a duplicate of that task
    (at-least-once delivery, the recovery sweep) does not pay for the same call twice.
    """

    __tablename__ = "summary_chunks"
    __table_args__ = (
        UniqueConstraint("job_id", "chunk_index"),
        CheckConstraint(_in("status", ChunkStatus), name="status"),
        CheckConstraint(
            "prompt_tokens >= 0 AND completion_tokens >= 0 AND cost_usd >= 0",
            name="non_negative",
        ),
    )

    id: Mapped[UuidPk]
    job_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"))
    chunk_index: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(16), default=ChunkStatus.PENDING.value)
    content_hash: Mapped[str] = mapped_column(String(64))
    message_count: Mapped[int] = mapped_column(Integer)
    transcript_tokens: Mapped[int] = mapped_column(Integer)
    notes: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    cached: Mapped[bool] = mapped_column(Boolean, default=False)
    model: Mapped[str | None] = mapped_column(String(100))
    prompt_tokens: Mapped[int] = mapped_column(Integer, default=0)
    completion_tokens: Mapped[int] = mapped_column(Integer, default=0)
    cost_usd: Mapped[Decimal] = mapped_column(Numeric(12, 6), default=Decimal(0))
    lease_until: Mapped[Timestamp | None]
    created_at: Mapped[DefaultNow]
    updated_at: Mapped[UpdatedAt]


class SummaryReduction(Base):
    """The claim of a job's one reduce step; its primary key is the barrier."""

    __tablename__ = "summary_reductions"
    __table_args__ = (CheckConstraint(_in("mode", ReduceMode), name="mode"),)

    job_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("jobs.id", ondelete="CASCADE"), primary_key=True
    )
    mode: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[DefaultNow]
