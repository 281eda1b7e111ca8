"""The summarize stage of a multi-channel job: once every part has ended, compose the summary.

The parent of a digest or catch-up (see :mod:`shared.pipeline.plan`) waits in ``summarizing``.
Every time one of its parts ends, the part's task wakes it; this stage then reads the parts and,
while any is still running, only records a heartbeat.  When all have ended it builds the
summary from theirs (:func:`shared.summarize.digest.compose_digest`) and stores it with the
parent's deliveries, like any summary.  The summary's token figures include its parts' usage.
A part that failed is left out of the summary and named, with its reason, in the plan that the
person who set the job up reads (``progress.plan.left_out``).
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

import structlog
from sqlalchemy import select

from schema.models.jobs import Job, JobStatus, Summary
from shared import lifecycle
from shared.db.engine import reading_session
from shared.digests.empty import EmptyWindowAction, empty_window_action, record_outcome
from shared.jobs import FETCH, DiscordServerSource, JobParams, Step
from shared.pipeline.finish import after_persist, persist_summary
from shared.pipeline.services import Services
from shared.summarize.content import SummaryContent
from shared.summarize.digest import ChannelPart, Involvement, compose_digest

__all__ = ["run_compose"]

log = structlog.get_logger(__name__)


def _involvement(progress: dict[str, Any]) -> Involvement:
    reader = progress.get("reader") if isinstance(progress, dict) else None
    if not isinstance(reader, dict):
        return Involvement()
    return Involvement(
        mentions=int(reader.get("mentions", 0)),
        replies=int(reader.get("replies", 0)),
        took_part=bool(reader.get("took_part")),
        message_ids=frozenset(str(i) for i in reader.get("involved_ids", ())),
    )


def _load_parts(
    services: Services, ids: list[uuid.UUID]
) -> dict[uuid.UUID, tuple[Job, Summary | None]]:
    with reading_session(services.session_factory) as session:
        rows = session.execute(
            select(Job, Summary).outerjoin(Summary, Summary.job_id == Job.id).where(Job.id.in_(ids))
        ).all()
        return {job.id: (job, summary) for job, summary in rows}


def run_compose(services: Services, job: Job, params: JobParams) -> list[Step]:
    """Compose the parent's summary once all its parts ended (see the module docstring)."""
    source = params.source
    assert isinstance(source, DiscordServerSource)
    plan = job.progress.get("plan") if isinstance(job.progress, dict) else None
    if not isinstance(plan, dict):
        # Planned by no one yet (the plan's write was lost): plan again.
        return [Step(FETCH, (str(job.id),))]
    entries = plan.get("parts", [])
    ids = [uuid.UUID(e["job_id"]) for e in entries]
    found = _load_parts(services, ids)
    waiting = [i for i in ids if i not in found or not JobStatus(found[i][0].status).finished]
    if waiting:
        lifecycle.heartbeat(
            services.session_factory,
            job.id,
            now=services.clock(),
            progress={"parts_done": len(ids) - len(waiting), "parts_total": len(ids)},
        )
        log.info("compose.waiting", waiting=len(waiting), parts=len(ids))
        return []
    parts, failed = _parts(entries, found)
    parts += [
        ChannelPart(
            channel_id=e["channel_id"], name=e["name"], parent_name=e.get("parent"), content=None
        )
        for e in plan.get("quiet", [])
    ]
    total = sum(p.messages for p in parts)
    action = empty_window_action(services.session_factory, job.id, message_count=total)
    progress: dict[str, Any] = {"parts_done": len(ids), "parts_total": len(ids)}
    if failed:
        progress["plan"] = {**plan, "left_out": [*plan.get("left_out", []), *failed]}
    if action is EmptyWindowAction.SKIP:
        record_outcome(services.session_factory, job.id, action, now=services.clock())
        lifecycle.move(
            services.session_factory,
            job.id,
            lifecycle.Move.SUMMARIZED,
            now=services.clock(),
            progress={**progress, "empty_window": "skipped"},
        )
        return []
    if action is EmptyWindowAction.NOTICE:
        record_outcome(services.session_factory, job.id, action, now=services.clock())
    content = compose_digest(
        parts,
        scope_id=source.category_id or source.guild_id,
        scope_name=str(plan.get("scope_name") or source.guild_id),
        guild_id=source.guild_id,
        window_start=datetime.fromisoformat(str(plan.get("since") or source.after.isoformat())),
        window_end=source.before or services.clock(),
        format=params.format,
        reader_first=source.focus_user_id is not None,
    )
    stored = persist_summary(services, job, params, content, usage_of=ids, progress=progress)
    if stored is not None:
        log.info("compose.done", channels=len(content.channels), quiet=len(content.quiet_channels))
    after_persist(services, job.id, stored)
    return []


def _parts(
    entries: list[dict[str, Any]], found: dict[uuid.UUID, tuple[Job, Summary | None]]
) -> tuple[list[ChannelPart], list[dict[str, str]]]:
    parts: list[ChannelPart] = []
    failed: list[dict[str, str]] = []
    for entry in entries:
        row, summary = found[uuid.UUID(entry["job_id"])]
        if row.status in (JobStatus.FAILED.value, JobStatus.CANCELLED.value):
            failed.append(
                {
                    "channel_id": entry["channel_id"],
                    "name": entry["name"],
                    "reason": f"could not be summarized: {row.error or row.status}",
                }
            )
            continue
        content = SummaryContent.model_validate(summary.content) if summary is not None else None
        parts.append(
            ChannelPart(
                channel_id=entry["channel_id"],
                name=entry["name"],
                parent_name=entry.get("parent"),
                content=content,
                involvement=_involvement(row.progress),
            )
        )
    return parts, failed
