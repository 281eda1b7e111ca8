"""The bot's reads and writes of the system of record (synchronous; the bot runs them in threads).

Guild settings (``/summary-config``), opt-outs, digest schedules, summary feedback, job status,
token usage for budgets and recent job durations for time estimates.  Each function opens its own
short transaction; none keeps ORM objects attached, so results are safe to use from the event
loop.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import String, cast, func, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from schema.models.feedback import SummaryFeedback
from schema.models.jobs import Job, JobStatus, Summary
from schema.models.schedules import Schedule
from schema.models.tenancy import GuildSettings, PrivateChannelPolicy
from schema.models.usage import UsageLedger
from shared.db.engine import reading_session, session_scope
from shared.errors import InvalidInputError
from shared.job_view import JobView
from shared.jobs import PART_ORIGIN
from shared.services.schedules import ScheduleView, schedule_views
from shared.summarize.content import SummaryFormat

__all__ = [
    "FeedbackResult",
    "GuildConfig",
    "find_jobs",
    "list_schedules",
    "load_guild_config",
    "load_jobs",
    "recent_durations",
    "recent_jobs",
    "record_feedback",
    "tokens_used_this_month",
    "update_guild_config",
]

_REF = re.compile(r"^[0-9a-f]{6,32}$")

SessionFactory = sessionmaker[Session]


@dataclass(frozen=True)
class GuildConfig:
    """A guild's settings with the defaults filled in (a guild without a row gets these)."""

    guild_id: int
    default_format: SummaryFormat = SummaryFormat.BRIEF
    default_language: str | None = None
    allowed_role_ids: frozenset[int] = frozenset()
    excluded_channel_ids: frozenset[int] = frozenset()
    retention_days: int = 90
    monthly_token_budget: int | None = None
    reaction_emoji: str | None = None
    private_channel_policy: PrivateChannelPolicy = PrivateChannelPolicy.SAME_CHANNEL

    @classmethod
    def from_row(cls, row: GuildSettings) -> GuildConfig:
        """Read a ``guild_settings`` row."""
        return cls(
            guild_id=int(row.guild_id),
            default_format=SummaryFormat(row.default_format),
            default_language=row.default_language,
            allowed_role_ids=frozenset(int(r) for r in row.allowed_role_ids),
            excluded_channel_ids=frozenset(int(c) for c in row.excluded_channel_ids),
            retention_days=row.retention_days,
            monthly_token_budget=row.monthly_token_budget,
            reaction_emoji=row.reaction_trigger_emoji,
            private_channel_policy=PrivateChannelPolicy(row.private_channel_policy),
        )


def load_guild_config(session_factory: SessionFactory, guild_id: int) -> GuildConfig:
    """The guild's settings, or the defaults when it has none."""
    with reading_session(session_factory) as session:
        row = session.get(GuildSettings, str(guild_id))
        return GuildConfig.from_row(row) if row else GuildConfig(guild_id=guild_id)


_COLUMNS = {
    "default_format": "default_format",
    "default_language": "default_language",
    "allowed_role_ids": "allowed_role_ids",
    "excluded_channel_ids": "excluded_channel_ids",
    "retention_days": "retention_days",
    "monthly_token_budget": "monthly_token_budget",
    "reaction_emoji": "reaction_trigger_emoji",
    "private_channel_policy": "private_channel_policy",
}


def _column_value(value: Any) -> Any:
    if isinstance(value, frozenset | set):
        return sorted(str(v) for v in value)
    if isinstance(value, SummaryFormat | PrivateChannelPolicy):
        return value.value
    return value


def update_guild_config(
    session_factory: SessionFactory, guild_id: int, changes: dict[str, Any]
) -> GuildConfig:
    """Apply ``changes`` (field names of :class:`GuildConfig`) and return the new settings.

    Two admins changing settings at once both land: the row is created once (a racing insert
    retries as an update) and each update touches only the fields it names.
    """
    unknown = set(changes) - set(_COLUMNS)
    if unknown:
        raise ValueError(f"unknown guild settings {sorted(unknown)}")
    for attempt in range(2):
        try:
            with session_scope(session_factory) as session:
                row = session.get(GuildSettings, str(guild_id), with_for_update=True)
                if row is None:
                    row = GuildSettings(guild_id=str(guild_id))
                    session.add(row)
                for name, value in changes.items():
                    setattr(row, _COLUMNS[name], _column_value(value))
                session.flush()
                return GuildConfig.from_row(row)
        except IntegrityError:
            if attempt:
                raise
    raise AssertionError("unreachable")  # pragma: no cover


def list_schedules(session_factory: SessionFactory, *, guild_id: int) -> list[ScheduleView]:
    """The guild's digest schedules, oldest first, each with its latest run's left-out
    channels."""
    with reading_session(session_factory) as session:
        rows = list(
            session.scalars(
                select(Schedule)
                .where(Schedule.guild_id == str(guild_id))
                .order_by(Schedule.created_at, Schedule.id)
            )
        )
    return schedule_views(session_factory, rows)


@dataclass(frozen=True)
class FeedbackResult:
    """What a feedback click did: recorded (or changed), or the summary is gone."""

    recorded: bool
    changed: bool = False
    prompt_version: str | None = None


def record_feedback(
    session_factory: SessionFactory,
    *,
    summary_id: uuid.UUID,
    user_id: int,
    helpful: bool,
    now: datetime,
) -> FeedbackResult:
    """Store a member's vote on a summary with the summary's prompt version (one per member)."""
    for attempt in range(2):
        try:
            with session_scope(session_factory) as session:
                summary = session.get(Summary, summary_id)
                if summary is None:
                    return FeedbackResult(recorded=False)
                row = session.scalar(
                    select(SummaryFeedback)
                    .where(
                        SummaryFeedback.summary_id == summary_id,
                        SummaryFeedback.user_id == str(user_id),
                    )
                    .with_for_update()
                )
                if row is None:
                    session.add(
                        SummaryFeedback(
                            summary_id=summary_id,
                            guild_id=summary.guild_id,
                            user_id=str(user_id),
                            helpful=helpful,
                            prompt_version=summary.prompt_version,
                            created_at=now,
                            updated_at=now,
                        )
                    )
                    session.flush()
                    return FeedbackResult(True, prompt_version=summary.prompt_version)
                changed = row.helpful != helpful
                row.helpful = helpful
                row.updated_at = now
                return FeedbackResult(True, changed=changed, prompt_version=row.prompt_version)
        except IntegrityError:
            if attempt:
                raise
    raise AssertionError("unreachable")  # pragma: no cover


def tokens_used_this_month(session_factory: SessionFactory, *, guild_id: int, now: datetime) -> int:
    """Prompt plus completion tokens the guild spent since the first of this month (UTC)."""
    start = now.astimezone(UTC).replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    with reading_session(session_factory) as session:
        total = session.scalar(
            select(
                func.coalesce(
                    func.sum(UsageLedger.prompt_tokens + UsageLedger.completion_tokens), 0
                )
            ).where(UsageLedger.guild_id == str(guild_id), UsageLedger.created_at >= start)
        )
    return int(total or 0)


def recent_durations(
    session_factory: SessionFactory, *, limit: int = 50
) -> list[tuple[int, float]]:
    """``(messages, seconds)`` of the most recently completed jobs, for time estimates."""
    with reading_session(session_factory) as session:
        rows = session.execute(
            select(Job.message_count, Job.created_at, Job.finished_at)
            .where(
                Job.status == JobStatus.COMPLETED.value,
                Job.finished_at.is_not(None),
                Job.message_count.is_not(None),
            )
            .order_by(Job.finished_at.desc())
            .limit(limit)
        ).all()
    return [
        (int(count), (finished - created).total_seconds())
        for count, created, finished in rows
        if count is not None and finished is not None
    ]


def load_jobs(
    session_factory: SessionFactory, ids: Iterable[uuid.UUID]
) -> dict[uuid.UUID, JobView]:
    """The jobs with these ids (missing ones are left out)."""
    wanted = list(ids)
    if not wanted:
        return {}
    with reading_session(session_factory) as session:
        rows = session.scalars(select(Job).where(Job.id.in_(wanted)))
        return {row.id: JobView.of(row) for row in rows}


def _hyphenated(hex_prefix: str) -> str:
    cuts = (8, 12, 16, 20)
    parts, start = [], 0
    for cut in cuts:
        if len(hex_prefix) <= cut:
            break
        parts.append(hex_prefix[start:cut])
        start = cut
    parts.append(hex_prefix[start:])
    return "-".join(parts)


def find_jobs(session_factory: SessionFactory, *, guild_id: int, ref: str) -> list[JobView]:
    """The guild's jobs whose id starts with ``ref`` (hex digits, hyphens ignored), at most 2."""
    text = ref.strip().lower().replace("-", "")
    if not _REF.match(text):
        raise InvalidInputError(f"{ref!r} is not a job id; copy it from a summary reply")
    as_text = cast(Job.id, String)
    with reading_session(session_factory) as session:
        rows = session.scalars(
            select(Job)
            .where(
                Job.guild_id == str(guild_id),
                or_(as_text.like(f"{text}%"), as_text.like(f"{_hyphenated(text)}%")),
            )
            .limit(2)
        )
        return [JobView.of(row) for row in rows]


def recent_jobs(
    session_factory: SessionFactory, *, guild_id: int, user_id: int | None, limit: int = 5
) -> list[JobView]:
    """The guild's latest jobs (only ``user_id``'s when given), newest first; the parts of a
    multi-channel job are not listed (its parent is)."""
    query = select(Job).where(Job.guild_id == str(guild_id), Job.origin != PART_ORIGIN)
    if user_id is not None:
        query = query.where(Job.requested_by == str(user_id))
    with reading_session(session_factory) as session:
        rows = session.scalars(query.order_by(Job.created_at.desc()).limit(limit))
        return [JobView.of(row) for row in rows]
