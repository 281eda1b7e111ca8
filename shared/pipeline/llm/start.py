"""The LLM branch of the summarize task: plan the job, or summarize a short window at once.

:func:`start` streams the job's cached messages through the
:class:`~shared.summarize.llm.plan.Planner`.  A window that fits ``single_call_tokens`` is
summarized here in one call, or takes the answer cached for exactly that window.  Otherwise
each chunk either finds its notes in the notes cache (no tokens) or has its lines put in the
job scratch; the guild's token budget is checked against the estimate while the guild's
settings row is locked; and the plan and one ``summary_chunks`` row per chunk are committed
together before one map task per missing chunk is enqueued (see
:mod:`shared.pipeline.llm.mapreduce`).
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field

import structlog
from sqlalchemy.exc import IntegrityError

from schema.models.chunks import (
    ChunkStatus,
    ReduceMode,
    SummaryChunk,
    SummaryPlan,
)
from schema.models.jobs import Job
from shared.cache import CachedFetch
from shared.db.engine import reading_session
from shared.domain.messages import ChannelInfo
from shared.jobs import JobParams
from shared.llm.client import QuotaExceededError
from shared.llm.models import Meter
from shared.pipeline import state
from shared.pipeline.finish import (
    after_persist,
    summarize_offline,
)
from shared.pipeline.llm.budget import (
    BudgetExceededError,
    check_budget,
    estimate_job,
    step_overhead,
)
from shared.pipeline.llm.mapreduce import (
    FALLBACK_TRIGGERS,
    MAP_CHUNK,
    QUOTA_MESSAGE,
    REDUCE,
    claim_reduce,
    fallback_reason,
    job_options,
    ledger_rows,
    llm_of,
    persist_llm_summary,
    plan_and_preferences,
    record_spent,
    redrive,
    report_progress,
)
from shared.pipeline.services import Services
from shared.summarize.content import SummaryContent
from shared.summarize.llm import prompts
from shared.summarize.llm.backend import (
    LLMBackend,
    cited_values,
)
from shared.summarize.llm.notes_cache import notes_key
from shared.summarize.llm.plan import Chunk, Planner, WindowStats, realias, transcript_of
from shared.summarize.llm.validate import to_summary_content
from shared.tenancy import tenant_guild

__all__ = ["start"]

log = structlog.get_logger(__name__)

_HEARTBEAT_CHUNKS = 20


# -- planning ---------------------------------------------------------------------------------


@dataclass
class _Staging:
    """What planning collected: chunk rows, cached notes, tokens still to be spent."""

    rows: list[SummaryChunk] = field(default_factory=list)
    uncached_tokens: list[int] = field(default_factory=list)
    cached: int = 0


def _stage_chunk(
    llm: LLMBackend, job_id: uuid.UUID, channel: ChannelInfo, chunk: Chunk
) -> SummaryChunk:
    """Reuse the chunk's cached notes, or put its lines where a map task will find them."""
    key = notes_key(
        kind="map",
        channel_id=channel.channel_id,
        content_hash=chunk.content_hash,
        prompt_version=prompts.PROMPT_VERSION,
        model=llm.model,
    )
    notes = llm.notes.get_many([key])[0]
    ids = set(chunk.message_ids)
    if notes is not None and not set(cited_values(notes)) <= ids:
        notes = None  # cannot happen for a sound key; never trust a cache blindly
    row = SummaryChunk(
        id=uuid.uuid4(),
        job_id=job_id,
        chunk_index=chunk.index,
        content_hash=chunk.content_hash,
        message_count=len(chunk.lines),
        transcript_tokens=chunk.tokens,
        cached=notes is not None,
    )
    if notes is not None:
        cited = set(cited_values(notes))
        llm.scratch.put_cited(str(job_id), [ln for ln in chunk.lines if ln.message_id in cited])
        row.status = ChunkStatus.DONE.value
        row.notes = notes
        row.model = llm.model
    else:
        llm.scratch.put_chunk(str(job_id), chunk.index, chunk.lines)
        row.status = ChunkStatus.PENDING.value
    return row


def start(services: Services, job: Job, params: JobParams, fetched: CachedFetch) -> None:
    """Plan a job's LLM summary (or write it in one call) and enqueue its map steps."""
    llm = llm_of(services)
    channel = fetched.channel
    guild_id = tenant_guild(job.guild_id, channel.guild_id)
    with reading_session(services.session_factory) as session:
        planned, preferences = plan_and_preferences(session, job.id, guild_id)
    if planned:
        redrive(services, job.id)
        return
    if fetched.count == 0:
        summarize_offline(services, job, params, fetched)
        return
    unavailable = llm.unavailable_reason()
    if unavailable and llm.settings.degraded_allowed(guild_id):
        summarize_offline(services, job, params, fetched, degraded=True, reason=unavailable)
        return
    # Only an open breaker can mean "out of quota"; with none open this is one Redis read less.
    if unavailable is not None and llm.quota_exhausted():
        raise QuotaExceededError(f"LLM quota exhausted: {unavailable}", user_message=QUOTA_MESSAGE)
    transcript_options, prompt_options = job_options(
        services, guild_id, params, preferences=preferences
    )
    settings = llm.settings
    planner = Planner(
        channel,
        options=transcript_options,
        chunk_tokens=settings.map_input_tokens,
        block_messages=settings.segment_block_messages,
        encoding=llm.encoding,
    )
    held: list[Chunk] = []
    held_tokens = 0
    staging = _Staging()
    key = str(job.id)

    def stage(chunk: Chunk) -> None:
        row = _stage_chunk(llm, job.id, channel, chunk)
        staging.rows.append(row)
        if row.status == ChunkStatus.DONE.value:
            staging.cached += 1
        else:
            staging.uncached_tokens.append(chunk.tokens)

    next_beat = _HEARTBEAT_CHUNKS
    for chunk in planner.chunks(services.cache.iter_messages(key)):
        # Chunks are held back while the window could still be summarized in one call.
        if held_tokens + chunk.tokens <= settings.single_call_tokens:
            held.append(chunk)
            held_tokens += chunk.tokens
            continue
        for earlier in held:
            stage(earlier)
        held = []
        held_tokens = settings.single_call_tokens + 1  # from now on nothing is held
        stage(chunk)
        if len(staging.rows) >= next_beat:
            next_beat += _HEARTBEAT_CHUNKS
            alive = state.heartbeat(
                services.session_factory,
                job.id,
                now=services.clock(),
                progress={"planned_chunks": len(staging.rows)},
            )
            if not alive:
                llm.scratch.delete(key)
                return
    stats = planner.stats
    if not staging.rows:
        if not held or stats.kept == 0:
            summarize_offline(services, job, params, fetched)
            return
        _single(
            services,
            job,
            params,
            fetched,
            held,
            stats,
            prompt_options,
            budgeted=preferences.budgeted,
        )
        return
    _commit_plan(services, llm, job, params, fetched, staging, stats)


def _single_key(
    channel: ChannelInfo,
    chunks: Sequence[Chunk],
    options: prompts.PromptOptions,
    skipped: int,
    model: str,
) -> str:
    """Cache key of a one-call summary: the window's chunks and everything that shapes the
    answer (format, language, the guild's instructions)."""
    parts = [c.content_hash for c in chunks]
    parts += [
        options.format.value,
        options.language,
        options.custom_instructions or "",
        str(skipped),
    ]
    digest = hashlib.sha256("\x1f".join(parts).encode()).hexdigest()
    return notes_key(
        kind="single",
        channel_id=channel.channel_id,
        content_hash=digest,
        prompt_version=prompts.PROMPT_VERSION,
        model=model,
    )


def _cached_single(llm: LLMBackend, key: str, chunks: Sequence[Chunk]) -> SummaryContent | None:
    """The summary an earlier job wrote for exactly this window, if it is still cached and
    cites only messages of the window (a cache is never trusted blindly)."""
    cached = llm.notes.get_many([key])[0]
    if cached is None:
        return None
    try:
        content = SummaryContent.model_validate(cached.get("content"))
    except ValueError:
        return None
    ids = {m for chunk in chunks for m in chunk.message_ids}
    return content if content.cited_ids() <= ids else None


def _single(
    services: Services,
    job: Job,
    params: JobParams,
    fetched: CachedFetch,
    chunks: Sequence[Chunk],
    stats: WindowStats,
    options: prompts.PromptOptions,
    *,
    budgeted: bool,
) -> None:
    """A window that fits one call: transcript → summary, in this task.

    Its summary is stored without a plan or map notes; ``budgeted`` says whether the guild
    has a token budget to check first (its settings row was read when the job was planned).
    """
    llm = llm_of(services)
    channel = fetched.channel
    guild_id = tenant_guild(job.guild_id, channel.guild_id)
    lines = realias([line for chunk in chunks for line in chunk.lines])
    transcript = transcript_of(lines, channel, stats=stats.transcript_stats())
    # A second summary of the same short window (a server digest after the channel's own, or
    # /summarize twice) reuses the first one's answer instead of paying for it again.
    cached = _cached_single(
        llm, _single_key(channel, chunks, options, fetched.skipped, llm.model), chunks
    )
    if cached is not None:
        stored = persist_llm_summary(
            services,
            job,
            params,
            cached,
            stats,
            model=llm.model,
            usage=[],
            progress={"llm": {"mode": "single", "calls": 0, "cached": True}},
            drop_chunks=False,
        )
        log.info("summarize.done", mode="single", cached=True, cited=len(cached.citations))
        after_persist(services, job.id, stored, drop_scratch=False)
        return
    if budgeted:
        needed = (
            sum(c.tokens for c in chunks)
            + step_overhead("reduce", channel, encoding=llm.encoding)
            + llm.settings.max_output_tokens // 2
        )
        with services.session_factory() as session, session.begin():
            budget = check_budget(session, guild_id=guild_id, job_id=job.id, now=services.clock())
        if not budget.allows(needed):
            _over_budget(services, job, params, fetched, budget.explain(needed))
            return
    meter = Meter("single")
    try:
        result = llm.final(transcript=transcript, channel=channel, options=options, meter=meter)
    except FALLBACK_TRIGGERS as exc:
        record_spent(services, meter, job_id=job.id, guild_id=guild_id)
        reason = fallback_reason(llm, guild_id, exc)
        summarize_offline(services, job, params, fetched, degraded=True, reason=reason)
        return
    except BaseException:
        record_spent(services, meter, job_id=job.id, guild_id=guild_id)
        raise
    content, report = to_summary_content(
        result.data,
        fmt=options.format,
        transcript=transcript,
        backend=llm.provider,
        skipped=fetched.skipped,
    )
    if not content.degraded:
        key = _single_key(channel, chunks, options, fetched.skipped, result.model)
        llm.notes.put(key, {"content": content.model_dump(mode="json")})
    stored = persist_llm_summary(
        services,
        job,
        params,
        content,
        stats,
        model=result.model,
        usage=ledger_rows(result.calls, job_id=job.id, guild_id=guild_id, services=services),
        progress=report_progress(report, mode="single", calls=len(result.calls)),
        drop_chunks=False,
    )
    if stored is not None:
        log.info("summarize.done", mode="single", cited=len(content.citations), model=result.model)
    after_persist(services, job.id, stored, drop_scratch=False)


def _over_budget(
    services: Services, job: Job, params: JobParams, fetched: CachedFetch, reason: str
) -> None:
    llm = llm_of(services)
    llm.scratch.delete(str(job.id))
    if llm.settings.over_budget == "degrade":
        summarize_offline(services, job, params, fetched, degraded=True, reason=reason)
        return
    raise BudgetExceededError(f"token budget exceeded: {reason}", user_message=reason)


def _commit_plan(
    services: Services,
    llm: LLMBackend,
    job: Job,
    params: JobParams,
    fetched: CachedFetch,
    staging: _Staging,
    stats: WindowStats,
) -> None:
    channel = fetched.channel
    guild_id = tenant_guild(job.guild_id, channel.guild_id)
    estimate = estimate_job(
        uncached_chunk_tokens=staging.uncached_tokens,
        total_chunks=len(staging.rows),
        channel=channel,
        settings=llm.settings,
        encoding=llm.encoding,
    )
    plan_stats = {
        **stats.to_json(),
        "channel": channel.to_wire(),
        "skipped": fetched.skipped,
    }
    over: str | None = None
    pending: list[uuid.UUID] = []
    won = False
    with services.session_factory() as session:
        try:
            with session.begin():
                row = session.get(Job, job.id, with_for_update=True)
                if row is None or row.status in state.FINISHED:
                    llm.scratch.delete(str(job.id))
                    return
                budget = check_budget(
                    session, guild_id=guild_id, job_id=job.id, now=services.clock()
                )
                if not budget.allows(estimate.total):
                    over = budget.explain(estimate.total)
                else:
                    session.add(
                        SummaryPlan(
                            job_id=job.id,
                            chunk_count=len(staging.rows),
                            cached_chunks=staging.cached,
                            estimated_tokens=estimate.total,
                            model=llm.model,
                            stats=plan_stats,
                            created_at=services.clock(),
                        )
                    )
                    session.flush()
                    session.add_all(staging.rows)
                    session.flush()
                    row.heartbeat_at = services.clock()
                    row.progress = {
                        **row.progress,
                        "chunks": len(staging.rows),
                        "cached_chunks": staging.cached,
                        "estimated_tokens": estimate.total,
                    }
                    pending = [r.id for r in staging.rows if r.status == ChunkStatus.PENDING.value]
                    if not pending:
                        won = claim_reduce(session, job.id, ReduceMode.NOTES, None)
        except IntegrityError:
            log.info("summarize.plan_exists", reason="another planner committed first")
            return
    if over is not None:
        _over_budget(services, job, params, fetched, over)
        return
    log.info(
        "summarize.planned",
        chunks=len(staging.rows),
        cached=staging.cached,
        estimated_tokens=estimate.total,
        calls=estimate.calls,
    )
    for chunk_id in pending:
        services.enqueuer.enqueue(MAP_CHUNK, str(job.id), str(chunk_id))
    if won:
        services.enqueuer.enqueue(REDUCE, str(job.id))
