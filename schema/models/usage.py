"""The usage ledger: one row per LLM call (or offline summarization), for budgets and costs.

Rows outlive their jobs (``job_id`` is set NULL when a job is purged), so a guild's monthly
spend stays correct after retention deletes its summaries.
"""

from __future__ import annotations

import uuid
from decimal import Decimal
from enum import StrEnum

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    ForeignKey,
    Index,
    Integer,
    Numeric,
    String,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from schema.base import Base
from schema.models.columns import DefaultNowInDb, Snowflake
from schema.models.jobs import _in

__all__ = ["UsageKind", "UsageLedger"]


class UsageKind(StrEnum):
    """Which step spent the tokens."""

    SINGLE = "single"
    MAP = "map"
    REDUCE = "reduce"
    REPAIR = "repair"
    EXTRACTIVE = "extractive"


class UsageLedger(Base):
    """Tokens and cost of one model call; summed per guild and month to enforce budgets.

    ``model`` is NULL for the offline extractive backend, which costs nothing.
    """

    __tablename__ = "usage_ledger"
    __table_args__ = (
        CheckConstraint(_in("kind", UsageKind), name="kind"),
        CheckConstraint(
            "prompt_tokens >= 0 AND completion_tokens >= 0 AND cost_usd >= 0",
            name="non_negative",
        ),
        Index("ix_usage_ledger_guild_created", "guild_id", "created_at"),
    )

    # SQLite only auto-increments a column declared exactly INTEGER PRIMARY KEY.
    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    )
    guild_id: Mapped[Snowflake | None]
    job_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("jobs.id", ondelete="SET NULL"), index=True
    )
    model: Mapped[str | None] = mapped_column(String(100))
    kind: Mapped[str] = mapped_column(String(16))
    prompt_tokens: Mapped[int] = mapped_column(Integer, default=0, server_default=text("0"))
    completion_tokens: Mapped[int] = mapped_column(Integer, default=0, server_default=text("0"))
    cost_usd: Mapped[Decimal] = mapped_column(
        Numeric(12, 6), default=Decimal(0), server_default=text("0")
    )
    created_at: Mapped[DefaultNowInDb]
