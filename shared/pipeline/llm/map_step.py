"""The map step: one chunk of a job's transcript to notes, then the barrier.

A map task leases its chunk (a duplicate delivery of the task does not pay twice), finds the
chunk's notes in the notes cache or asks the model, keeps the lines those notes cite in the job
scratch, and in one transaction — holding the job row's lock, so completions are counted one at
a time — stores the notes and its usage rows and, when its notes complete the set, inserts the
job's reduction row.  Only the transaction that wins that insert enqueues the reduce step.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal
from typing import Any

import structlog
from sqlalchemy import func, select, update

from schema.models.chunks import (
    ChunkStatus,
    ReduceMode,
    SummaryChunk,
    SummaryPlan,
)
from schema.models.jobs import Job
from schema.models.usage import UsageLedger
from shared.db.engine import reading_session
from shared.domain.messages import ChannelInfo
from shared.llm.models import Meter
from shared.pipeline import state
from shared.pipeline.llm.mapreduce import (
    FALLBACK_TRIGGERS,
    REDUCE,
    claim_degraded,
    claim_reduce,
    fallback_reason,
    ledger_rows,
    llm_of,
    load_unfinished,
    record_spent,
    restart,
)
from shared.pipeline.services import Services
from shared.summarize.llm import prompts
from shared.summarize.llm.backend import (
    CallRecord,
    cited_values,
    notes_to_ids,
)
from shared.summarize.llm.notes_cache import notes_key
from shared.summarize.llm.plan import transcript_of

__all__ = ["run_map"]

log = structlog.get_logger(__name__)

# -- map --------------------------------------------------------------------------------------


def _lease(services: Services, chunk_id: uuid.UUID) -> bool:
    now = services.clock()
    # A lease as long as the task's hard time limit: past that the task is surely dead.
    until = now + timedelta(seconds=max(10, services.settings.visibility_timeout // 4))
    with services.session_factory() as session, session.begin():
        result = session.execute(
            update(SummaryChunk)
            .where(
                SummaryChunk.id == chunk_id,
                SummaryChunk.status == ChunkStatus.PENDING.value,
                (SummaryChunk.lease_until.is_(None)) | (SummaryChunk.lease_until < now),
            )
            .values(lease_until=until, updated_at=now)
        )
    return bool(getattr(result, "rowcount", 0))


def _release(services: Services, chunk_id: uuid.UUID) -> None:
    with services.session_factory() as session, session.begin():
        session.execute(
            update(SummaryChunk)
            .where(SummaryChunk.id == chunk_id, SummaryChunk.status == ChunkStatus.PENDING.value)
            .values(lease_until=None)
        )


@dataclass(frozen=True)
class _Mapped:
    notes: dict[str, Any]
    calls: tuple[CallRecord, ...]
    model: str
    cached: bool


def _map_chunk(
    services: Services,
    job_id: uuid.UUID,
    chunk: SummaryChunk,
    plan: SummaryPlan,
    meter: Meter,
) -> _Mapped | None:
    """The chunk's notes in id form (from the cache or the model); None when lines expired."""
    llm = llm_of(services)
    lines = llm.scratch.get_chunk(str(job_id), chunk.chunk_index)
    if lines is None:
        return None
    channel = ChannelInfo.from_wire(plan.stats["channel"])

    def key(model: str) -> str:
        return notes_key(
            kind="map",
            channel_id=channel.channel_id,
            content_hash=chunk.content_hash,
            prompt_version=prompts.PROMPT_VERSION,
            model=model,
        )

    ids = {line.message_id for line in lines}
    cached = llm.notes.get_many([key(plan.model)])[0]
    if cached is not None and set(cited_values(cached)) <= ids:
        mapped = _Mapped(cached, (), plan.model, cached=True)
    else:
        transcript = transcript_of(lines, channel)
        result = llm.map_notes(transcript, channel=channel, meter=meter)
        notes = notes_to_ids(result.notes, transcript.alias_map)
        llm.notes.put(key(result.model), notes)
        if result.report.citations_dropped:
            log.info("summarize.map_citations_dropped", dropped=result.report.citations_dropped)
        mapped = _Mapped(notes, result.calls, result.model, cached=False)
    cited = set(cited_values(mapped.notes))
    llm.scratch.put_cited(str(job_id), [line for line in lines if line.message_id in cited])
    return mapped


def _complete_chunk(
    services: Services,
    job_id: uuid.UUID,
    chunk_id: uuid.UUID,
    mapped: _Mapped,
    usage: list[UsageLedger],
) -> bool:
    """Store the notes and usage; True when these notes completed the set (reduce claimed)."""
    now = services.clock()
    prompt_tokens = sum(c.usage.prompt_tokens for c in mapped.calls)
    completion_tokens = sum(c.usage.completion_tokens for c in mapped.calls)
    cost = Decimal(str(round(sum(c.cost_usd for c in mapped.calls), 6)))
    with services.session_factory() as session, session.begin():
        job = session.get(Job, job_id, with_for_update=True)
        if job is None:
            return False
        session.add_all(usage)  # the calls were made and paid for, whatever happens next
        if job.status in state.FINISHED:
            return False
        result = session.execute(
            update(SummaryChunk)
            .where(SummaryChunk.id == chunk_id, SummaryChunk.status == ChunkStatus.PENDING.value)
            .values(
                status=ChunkStatus.DONE.value,
                notes=mapped.notes,
                model=mapped.model,
                cached=mapped.cached,
                prompt_tokens=prompt_tokens,
                completion_tokens=completion_tokens,
                cost_usd=cost,
                lease_until=None,
                updated_at=now,
            )
        )
        if not getattr(result, "rowcount", 0):
            return False
        done = session.scalar(
            select(func.count())
            .select_from(SummaryChunk)
            .where(SummaryChunk.job_id == job_id, SummaryChunk.status == ChunkStatus.DONE.value)
        )
        job.heartbeat_at = job.updated_at = now
        job.progress = {**job.progress, "chunks_done": int(done or 0)}
        return claim_reduce(session, job_id, ReduceMode.NOTES, None)


def run_map(services: Services, job_id: uuid.UUID, chunk_id: uuid.UUID) -> None:
    """Map one chunk to notes; the map that completes the set enqueues the reduce step."""
    job = load_unfinished(services, job_id)
    if job is None:
        return
    llm = llm_of(services)
    with reading_session(services.session_factory) as session:
        chunk = session.get(SummaryChunk, chunk_id)
        plan = session.get(SummaryPlan, job_id)
    if chunk is None or plan is None or chunk.job_id != job_id:
        return
    if chunk.status == ChunkStatus.DONE.value:
        return
    if not _lease(services, chunk_id):
        log.info("summarize.map_leased", chunk=chunk.chunk_index)
        return
    guild_id = ChannelInfo.from_wire(plan.stats["channel"]).guild_id or job.guild_id
    meter = Meter("map")
    try:
        mapped = _map_chunk(services, job_id, chunk, plan, meter)
    except FALLBACK_TRIGGERS as exc:
        _release(services, chunk_id)
        record_spent(services, meter, job_id=job_id, guild_id=guild_id)
        claim_degraded(services, job_id, fallback_reason(llm, guild_id, exc))
        return
    except BaseException:
        _release(services, chunk_id)
        record_spent(services, meter, job_id=job_id, guild_id=guild_id)
        raise
    if mapped is None:
        restart(services, plan, "the chunks of this job expired before they were mapped")
        return
    usage = ledger_rows(mapped.calls, job_id=job_id, guild_id=guild_id, services=services)
    if _complete_chunk(services, job_id, chunk_id, mapped, usage):
        log.info("summarize.map_barrier", chunk=chunk.chunk_index, action="enqueue reduce")
        services.enqueuer.enqueue(REDUCE, str(job_id))
