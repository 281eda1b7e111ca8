"""What a digest does when its window has no messages: skip it, or send a short notice.

The policy is the schedule's ``empty_policy``; the dispatcher snapshots it on the job
(``progress.digest``) when it submits the run, so editing a schedule does not change a digest
already under way.  The summarize stage asks :func:`empty_window_action` once it knows how many
messages the window holds, and records what it did with :func:`record_outcome`.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from schema.models.jobs import Job
from schema.models.schedules import EmptyPolicy, Schedule, ScheduleRun
from shared.domain.messages import ChannelInfo
from shared.summarize.content import Coverage, SummaryContent, SummaryFormat

__all__ = [
    "EmptyWindowAction",
    "digest_snapshot",
    "empty_window_action",
    "no_activity_content",
    "record_outcome",
    "run_snapshot",
]


class EmptyWindowAction(StrEnum):
    """What the summarize stage does with a job's window."""

    SUMMARIZE = "summarize"  # not a digest, or the window has messages
    SKIP = "skip"  # end the job as completed without a summary or delivery
    NOTICE = "notice"  # deliver a short "no activity" summary


def digest_snapshot(session: Session, job: Job) -> dict[str, Any] | None:
    """The digest run a job belongs to (``progress.digest``), or None for other jobs.

    A job whose snapshot was not written yet (its dispatcher died right after submitting)
    is recognised by its idempotency key and read from its run and schedule.
    """
    snapshot = job.progress.get("digest") if isinstance(job.progress, dict) else None
    if isinstance(snapshot, dict):
        return snapshot
    key = job.idempotency_key or ""
    if not key.startswith("digest:"):
        return None
    try:
        run_id = uuid.UUID(key.removeprefix("digest:"))
    except ValueError:
        return None
    run = session.get(ScheduleRun, run_id)
    schedule = session.get(Schedule, run.schedule_id) if run is not None else None
    if run is None or schedule is None:
        return None
    return run_snapshot(schedule, run)


def run_snapshot(schedule: Schedule, run: ScheduleRun) -> dict[str, Any]:
    """What a digest job keeps of its run and schedule (``progress.digest``)."""
    return {
        "schedule_id": str(schedule.id),
        "run_id": str(run.id),
        "window_start": run.window_start.isoformat(),
        "window_end": run.window_end.isoformat(),
        "empty_policy": schedule.empty_policy,
        "destination": schedule.destination,
    }


def empty_window_action(
    session_factory: sessionmaker[Session], job_id: uuid.UUID, *, message_count: int
) -> EmptyWindowAction:
    """Decide how the summarize stage treats a job whose window holds ``message_count``."""
    if message_count > 0:
        return EmptyWindowAction.SUMMARIZE
    with session_factory() as session:
        job = session.get(Job, job_id)
        snapshot = digest_snapshot(session, job) if job is not None else None
    if snapshot is None:
        return EmptyWindowAction.SUMMARIZE
    if snapshot.get("empty_policy") == EmptyPolicy.NOTICE.value:
        return EmptyWindowAction.NOTICE
    return EmptyWindowAction.SKIP


def no_activity_content(
    channel: ChannelInfo,
    *,
    window_start: datetime,
    window_end: datetime,
    format: SummaryFormat,
) -> SummaryContent:
    """The short summary a ``notice`` digest delivers for a window without messages."""
    return SummaryContent(
        format=format,
        overview=(
            f"No activity in #{channel.channel_name} between "
            f"{window_start:%Y-%m-%d %H:%M} and {window_end:%Y-%m-%d %H:%M} UTC."
        ),
        coverage=Coverage(
            messages_total=0,
            messages_used=0,
            messages_skipped=0,
            start=window_start,
            end=window_end,
            channel_id=channel.channel_id,
            channel_name=channel.channel_name,
            guild_id=channel.guild_id,
        ),
        backend="none",
    )


def record_outcome(
    session_factory: sessionmaker[Session],
    job_id: uuid.UUID,
    action: EmptyWindowAction,
    *,
    now: datetime,
) -> None:
    """Write what was done with an empty window on the job's digest snapshot."""
    with session_factory() as session, session.begin():
        job = session.get(Job, job_id, with_for_update=True)
        if job is None:
            return
        snapshot = digest_snapshot(session, job) or {}
        outcome = {"outcome": f"empty_{action.value}", "outcome_at": now.isoformat()}
        job.progress = {**job.progress, "digest": {**snapshot, **outcome}}
        job.updated_at = now
