"""What readers thought of a summary: the helpful / not helpful buttons under every summary.

One row per summary and member (pressing the other button changes the vote).  The summary's
``prompt_version`` is copied onto the row, so feedback can be compared across versions of the
summarization recipe even after retention has deleted the summaries themselves.
"""

from __future__ import annotations

import uuid

from sqlalchemy import Boolean, ForeignKey, Index, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from schema.base import Base
from schema.models.columns import DefaultNowInDb, Snowflake, UpdatedAtInDb, UuidPk

__all__ = ["SummaryFeedback"]


class SummaryFeedback(Base):
    """A member's verdict on one summary, with the prompt version that produced it.

    ``summary_id`` is set NULL when the summary is purged; the verdict and its prompt version
    stay for the statistics.
    """

    __tablename__ = "summary_feedback"
    __table_args__ = (
        UniqueConstraint("summary_id", "user_id"),
        Index("ix_summary_feedback_prompt_version", "prompt_version", "created_at"),
    )

    id: Mapped[UuidPk]
    summary_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("summaries.id", ondelete="SET NULL")
    )
    guild_id: Mapped[Snowflake | None] = mapped_column(index=True)
    user_id: Mapped[Snowflake] = mapped_column(index=True)
    helpful: Mapped[bool] = mapped_column(Boolean)
    prompt_version: Mapped[str] = mapped_column(String(32))
    created_at: Mapped[DefaultNowInDb]
    updated_at: Mapped[UpdatedAtInDb]
