"""The reduce step: merge the notes of every chunk (never raw text), write the final summary.

Notes are merged level by level while they exceed ``reduce_input_tokens``; each merge is cached
by the notes it merged, so a retried or continued reduce step never pays twice, and a long one
hands over to a new task before the time limit (:data:`CONTINUE_AFTER`).  The final summary is
validated against the lines the notes cite and stored with its deliveries and usage rows.  A
reduction claimed in ``degraded`` mode summarizes offline instead.
"""

from __future__ import annotations

import hashlib
import json
import time
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

import structlog
from sqlalchemy import select, update

from schema.models.chunks import (
    ReduceMode,
    SummaryChunk,
    SummaryPlan,
    SummaryReduction,
)
from schema.models.jobs import Job, JobStatus
from schema.models.usage import UsageLedger
from shared.db.engine import reading_session
from shared.domain.messages import ChannelInfo
from shared.jobs import JobParams, parse_params
from shared.llm.client import ContextLengthError
from shared.llm.models import Meter
from shared.llm.tokens import count_tokens
from shared.pipeline import state
from shared.pipeline.finish import (
    after_persist,
    enqueue_pending_deliveries,
    record_usage,
    summarize_offline,
)
from shared.pipeline.llm.mapreduce import (
    FALLBACK_TRIGGERS,
    REDUCE,
    fallback_reason,
    job_options,
    ledger_rows,
    llm_of,
    load_unfinished,
    persist_llm_summary,
    report_progress,
    restart,
)
from shared.pipeline.services import Services
from shared.summarize.llm import prompts
from shared.summarize.llm.backend import (
    CallRecord,
    cited_values,
    notes_to_aliases,
    notes_to_ids,
)
from shared.summarize.llm.notes_cache import notes_key
from shared.summarize.llm.plan import WindowStats, realias, transcript_of
from shared.summarize.llm.validate import ValidationReport, to_summary_content
from shared.summarize.transcript import Transcript, TranscriptLine
from shared.tenancy import tenant_guild

__all__ = ["CONTINUE_AFTER", "run_reduce"]

log = structlog.get_logger(__name__)

#: Share of a task's hard time limit a reduce step spends merging before it hands over.
CONTINUE_AFTER = 0.5


class _Abandoned(Exception):
    """The job ended (cancelled, failed) while a step worked on it."""


class _Continue(Exception):
    """The reduce step used its share of the task's time; a new task goes on from the cache."""


def _tokens(notes: Sequence[Mapping[str, Any]], encoding: str) -> int:
    return sum(count_tokens(json.dumps(n, ensure_ascii=False), encoding=encoding) for n in notes)


class _Reducer:
    """Merges a job's notes level by level (cached by content), then writes the summary."""

    def __init__(
        self,
        services: Services,
        job_id: uuid.UUID,
        transcript: Transcript,
        channel: ChannelInfo,
    ) -> None:
        self.services = services
        self.llm = llm_of(services)
        self.job_id = job_id
        self.transcript = transcript
        self.channel = channel
        self.meter = Meter("reduce")
        self.report = ValidationReport()
        self.merges = 0
        # Merges are cached, so a long reduce can stop and go on in a new task well before
        # the task's time limit: past this point no new merge call is started.
        settings = self.llm.settings
        self.deadline = (
            time.monotonic() + services.settings.visibility_timeout / 4 * CONTINUE_AFTER
            if settings.notes_cache_days > 0
            else None
        )

    @property
    def calls(self) -> tuple[CallRecord, ...]:
        """Every call this reduce step made, failed ones the server charged for included."""
        return self.meter.charges

    def usage(self, guild_id: str | None) -> list[UsageLedger]:
        """One usage-ledger row per call in :attr:`calls`, charged to ``guild_id``."""
        return ledger_rows(
            self.calls, job_id=self.job_id, guild_id=guild_id, services=self.services
        )

    def _alive(self) -> None:
        if not state.heartbeat(
            self.services.session_factory,
            self.job_id,
            now=self.services.clock(),
            progress={"reduce_calls": len(self.calls)},
        ):
            raise _Abandoned

    def _merge(self, batch: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
        ids_form = [notes_to_ids(n, self.transcript.alias_map) for n in batch]
        digest = hashlib.sha256(
            json.dumps(ids_form, ensure_ascii=False, sort_keys=True).encode()
        ).hexdigest()
        settings = self.llm.settings
        models = [settings.model]
        if settings.fallback_model and settings.fallback_model != settings.model:
            models.append(settings.fallback_model)
        keys = {
            model: notes_key(
                kind="merge",
                channel_id=self.channel.channel_id,
                content_hash=digest,
                prompt_version=prompts.PROMPT_VERSION,
                model=model,
            )
            for model in models
        }
        aliases = {line.message_id: line.alias for line in self.transcript.lines}
        for cached in self.llm.notes.get_many(list(keys.values())):
            if cached is not None:
                return [notes_to_aliases(cached, aliases)]
        if self.merges and self.deadline is not None and time.monotonic() > self.deadline:
            raise _Continue  # at least one new merge per task, so every task makes progress
        try:
            result = self.llm.merge_notes(
                batch, transcript=self.transcript, channel=self.channel, meter=self.meter
            )
        except ContextLengthError:
            if len(batch) < 2:
                raise
            half = len(batch) // 2
            return self._merge(batch[:half]) + self._merge(batch[half:])
        self.report.merge(result.report)
        self.merges += 1
        if result.model in keys:
            ids_notes = notes_to_ids(result.notes, self.transcript.alias_map)
            self.llm.notes.put(keys[result.model], ids_notes)
        self._alive()
        return [result.notes]

    def reduce(self, notes: list[dict[str, Any]], budget: int) -> list[dict[str, Any]]:
        """Merge consecutive notes until they fit ``budget`` tokens (or levels run out)."""
        encoding = self.llm.encoding
        for _ in range(self.llm.settings.max_reduce_levels):
            if _tokens(notes, encoding) <= budget or len(notes) < 2:
                return notes
            batches: list[list[dict[str, Any]]] = [[]]
            size = 0
            for item in notes:
                cost = _tokens([item], encoding)
                if batches[-1] and size + cost > budget:
                    batches.append([])
                    size = 0
                batches[-1].append(item)
                size += cost
            if all(len(b) == 1 for b in batches):
                return notes  # every note alone exceeds the budget: nothing left to merge
            merged: list[dict[str, Any]] = []
            for batch in batches:
                merged.extend(batch if len(batch) == 1 else self._merge(batch))
            notes = merged
        return notes

    def final(
        self, notes: list[dict[str, Any]], options: prompts.PromptOptions
    ) -> tuple[dict[str, Any], str]:
        """The final answer from ``notes``; on context overflow merge further and try again."""
        budget = self.llm.settings.reduce_input_tokens
        notes = self.reduce(notes, budget)
        while True:
            try:
                result = self.llm.final(
                    transcript=self.transcript,
                    channel=self.channel,
                    options=options,
                    notes=notes,
                    meter=self.meter,
                )
            except ContextLengthError:
                if budget <= 500 or len(notes) < 2:
                    raise
                budget //= 2
                log.info("summarize.reduce_overflow", budget=budget)
                notes = self.reduce(notes, budget)
                continue
            return result.data, result.model


def _cited_transcript(
    services: Services,
    job_id: uuid.UUID,
    notes: Sequence[Mapping[str, Any]],
    channel: ChannelInfo,
    stats: WindowStats,
) -> Transcript | None:
    """Lines the notes cite, in time order, aliased ``m1`` …; None when they expired."""
    llm = llm_of(services)
    ids = cited_values(list(notes))
    found = llm.scratch.get_cited(str(job_id), ids)
    if ids and not found:
        return None
    lines: list[TranscriptLine] = sorted(
        found.values(),
        key=lambda line: (
            line.timestamp,
            int(line.message_id) if line.message_id.isdigit() else 0,
            line.message_id,
        ),
    )
    return transcript_of(realias(lines), channel, stats=stats.transcript_stats())


def _degrade_in_reduce(
    services: Services, job: Job, plan: SummaryPlan, params: JobParams, reason: str | None
) -> None:
    fetched = services.cache.get(str(job.id))
    if fetched is None:
        restart(services, plan, "the cached messages expired before the offline fallback")
        return
    summarize_offline(services, job, params, fetched, degraded=True, reason=reason)


def _switch_to_degraded(
    services: Services, job: Job, plan: SummaryPlan, params: JobParams, reason: str
) -> None:
    """The reduce claim becomes a degraded one, then the offline summary is written."""
    with services.session_factory() as session, session.begin():
        session.execute(
            update(SummaryReduction)
            .where(SummaryReduction.job_id == job.id)
            .values(mode=ReduceMode.DEGRADED.value, reason=reason)
        )
    _degrade_in_reduce(services, job, plan, params, reason)


def run_reduce(services: Services, job_id: uuid.UUID) -> None:
    """Write the job's summary from its chunks' notes (or offline, when degraded)."""
    job = load_unfinished(services, job_id)
    if job is None:
        return
    if job.status == JobStatus.DELIVERING.value:
        enqueue_pending_deliveries(services, job_id)
        return
    with reading_session(services.session_factory) as session:
        reduction = session.get(SummaryReduction, job_id)
        plan = session.get(SummaryPlan, job_id)
        chunks = list(
            session.scalars(
                select(SummaryChunk)
                .where(SummaryChunk.job_id == job_id)
                .order_by(SummaryChunk.chunk_index)
            )
        )
    if reduction is None or plan is None:
        return
    params = parse_params(job.params)
    if reduction.mode == ReduceMode.DEGRADED.value:
        _degrade_in_reduce(services, job, plan, params, reduction.reason)
        return
    llm = llm_of(services)
    channel = ChannelInfo.from_wire(plan.stats["channel"])
    stats = WindowStats.from_json(plan.stats)
    guild_id = tenant_guild(job.guild_id, channel.guild_id)
    if len(chunks) != plan.chunk_count or any(c.notes is None for c in chunks):
        restart(services, plan, "the notes of this job are incomplete")
        return
    notes_ids = [c.notes or {} for c in chunks]
    transcript = _cited_transcript(services, job_id, notes_ids, channel, stats)
    if transcript is None:
        restart(services, plan, "the cited lines of this job expired before the reduce step")
        return
    _, options = job_options(services, guild_id, params)
    aliases = {line.message_id: line.alias for line in transcript.lines}
    reducer = _Reducer(services, job_id, transcript, channel)
    try:
        data, model = reducer.final([notes_to_aliases(n, aliases) for n in notes_ids], options)
    except _Abandoned:
        record_usage(services, reducer.usage(guild_id))
        return
    except _Continue:
        record_usage(services, reducer.usage(guild_id))
        log.info("summarize.reduce_continues", merges=reducer.merges)
        services.enqueuer.enqueue(REDUCE, str(job_id))
        return
    except FALLBACK_TRIGGERS as exc:
        record_usage(services, reducer.usage(guild_id))
        _switch_to_degraded(services, job, plan, params, fallback_reason(llm, guild_id, exc))
        return
    except BaseException:
        record_usage(services, reducer.usage(guild_id))
        raise
    content, report = to_summary_content(
        data,
        fmt=options.format,
        transcript=transcript,
        backend=llm.provider,
        skipped=int(plan.stats.get("skipped", 0)),
    )
    report.merge(reducer.report)
    stored = persist_llm_summary(
        services,
        job,
        params,
        content,
        stats,
        model=model,
        usage=reducer.usage(guild_id),
        progress=report_progress(
            report,
            mode="map_reduce",
            chunks=plan.chunk_count,
            cached_chunks=sum(1 for c in chunks if c.cached),
            merges=reducer.merges,
        ),
    )
    if stored is not None:
        log.info(
            "summarize.done",
            mode="map_reduce",
            chunks=plan.chunk_count,
            merges=reducer.merges,
            cited=len(content.citations),
            model=model,
        )
    after_persist(services, job_id, stored)
