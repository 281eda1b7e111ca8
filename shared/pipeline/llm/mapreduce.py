"""The LLM summarize pipeline: plan, map chunks in parallel, reduce their notes, once.

This module holds what the steps share — task names, the failure policy, the barrier, re-drive
and reset; the steps are :mod:`~shared.pipeline.llm.start`, :mod:`~shared.pipeline.llm.map_step` and
:mod:`~shared.pipeline.llm.reduce_step`.

``summarybot.summarize`` (:func:`~shared.pipeline.llm.start.start`) streams the job's cached
messages through the :class:`~shared.summarize.llm.plan.Planner`. A window that fits one call is
summarized right there. Otherwise each chunk either finds its notes in the notes cache (reuse:
no tokens) or has its lines put in the job scratch; the guild's token budget is checked against
the estimate; and the plan and one ``summary_chunks`` row per chunk are committed together
before one ``summarybot.summarize.map`` task per missing chunk is enqueued.

Map tasks (:func:`~shared.pipeline.llm.map_step.run_map`) run on any summarize worker. A task leases
its chunk (so a duplicate delivery does not pay twice), maps it to notes, and in one transaction
— holding the job row's lock, so completions are counted one at a time — stores the notes, its
usage rows and, when its notes complete the set, inserts the job's unique ``summary_reductions``
row. Only the transaction that wins that insert enqueues ``summarybot.summarize.reduce``
(:func:`~shared.pipeline.llm.reduce_step.run_reduce`): the barrier lives in Postgres, survives any
worker dying, and cannot fire early or twice.

The reduce step merges notes (never raw text) level by level while they exceed
``reduce_input_tokens``, writes the final summary in the requested format, validates every
citation against the lines the notes cite, and stores summary, deliveries and usage together.

Failure policy: transient errors retry the task (the task decorator); a context overflow
re-chunks; when the LLM is unavailable (circuit open, quota exhausted) or gives no usable
answer on any rung of the structured-output ladder (:data:`UNUSABLE`), a job whose guild opted
in is summarized offline, flagged ``degraded`` with the reason (the reduce claim is taken in
``degraded`` mode, so the two paths exclude each other), and any other job fails with a message
naming the cause and the fix; a job over its guild's monthly budget fails with the
reason, or is summarized offline when ``over_budget`` is ``degrade``. Every call a step made
is written to the usage ledger, also when the step fails (:func:`record_spent`). The recovery
sweep re-enqueues ``summarybot.summarize`` for a stalled job, which re-drives what is missing
(:func:`redrive`).
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from functools import cache
from typing import Any

import structlog
from sqlalchemy import Row, Select, bindparam, delete, exists, func, literal, select
from sqlalchemy.orm import Session

from schema.base import table_of
from schema.models.chunks import (
    ChunkStatus,
    ReduceMode,
    SummaryChunk,
    SummaryPlan,
    SummaryReduction,
)
from schema.models.jobs import Job
from schema.models.tenancy import GuildSettings, UserOptOut
from schema.models.usage import UsageLedger
from shared.db.engine import reading_session
from shared.db.rows import add_unless_present
from shared.errors import ConfigError, InvalidInputError, PermanentError
from shared.jobs import SUMMARIZE, JobParams
from shared.llm.breaker import CircuitOpenError
from shared.llm.client import BILLING_CODES, InvalidOutputError, QuotaExceededError
from shared.llm.ladder import unusable_detail
from shared.llm.models import Meter
from shared.pipeline import state
from shared.pipeline.finish import persist_summary, record_usage
from shared.pipeline.services import Services
from shared.services.members import opt_out_scopes
from shared.summarize.content import SummaryContent
from shared.summarize.llm import prompts
from shared.summarize.llm.backend import (
    CallRecord,
    LLMBackend,
)
from shared.summarize.llm.plan import WindowStats
from shared.summarize.llm.validate import ValidationReport
from shared.summarize.transcript import TranscriptOptions

__all__ = [
    "FALLBACK_TRIGGERS",
    "MAP_CHUNK",
    "QUOTA_MESSAGE",
    "REDUCE",
    "UNAVAILABLE",
    "UNUSABLE",
    "GuildPreferences",
    "as_failure",
    "claim_degraded",
    "claim_reduce",
    "cleanup",
    "fallback_reason",
    "guild_preferences",
    "job_options",
    "ledger_rows",
    "llm_of",
    "load_unfinished",
    "persist_llm_summary",
    "plan_and_preferences",
    "purge_finished_chunks",
    "record_spent",
    "redrive",
    "report_progress",
    "reset",
    "restart",
    "unusable_failure",
    "unusable_reason",
    "with_window",
]

log = structlog.get_logger(__name__)

MAP_CHUNK = "summarybot.summarize.map"
REDUCE = "summarybot.summarize.reduce"

#: Errors that mean "no LLM call can succeed now" (the degraded fallback's trigger).
UNAVAILABLE = (CircuitOpenError, QuotaExceededError)
QUOTA_MESSAGE = (
    "The LLM account is out of quota or credit; an operator must check its plan and billing."
)


#: Errors that mean "this LLM gives no usable answer" (also a degraded fallback trigger).
UNUSABLE = (InvalidOutputError,)


def unusable_reason(exc: InvalidOutputError) -> str:
    """Why the LLM's summary could not be used, rung by rung (the degraded reason)."""
    detail = unusable_detail(exc.outcomes) if exc.outcomes else "; ".join(exc.problems[:3])
    return f"the LLM gave no usable summary in any output format ({detail})"


def unusable_failure(exc: InvalidOutputError) -> PermanentError:
    """The job's failure when the degraded fallback is off: the cause, then the fix."""
    reason = unusable_reason(exc)
    return PermanentError(
        str(exc),
        user_message=reason[:1].upper()
        + reason[1:]
        + ". An operator can set LLM_DEGRADED_FALLBACK=true to get an offline summary "
        "instead, or configure a model that follows formatting instructions (LLM_MODEL).",
    )


def record_spent(
    services: Services, meter: Meter, *, job_id: uuid.UUID, guild_id: str | None
) -> None:
    """Write every call ``meter`` holds to the usage ledger (a step that failed after them)."""
    record_usage(
        services, ledger_rows(meter.charges, job_id=job_id, guild_id=guild_id, services=services)
    )


def as_failure(exc: CircuitOpenError | QuotaExceededError) -> Exception:
    """A circuit opened by a quota error fails the job now: waiting will not refill it."""
    if isinstance(exc, CircuitOpenError) and exc.reason in BILLING_CODES:
        return QuotaExceededError(str(exc), user_message=QUOTA_MESSAGE)
    return exc


#: Errors after which the offline summary may stand in for the LLM's.
FALLBACK_TRIGGERS = UNAVAILABLE + UNUSABLE


def fallback_reason(
    llm: LLMBackend,
    guild_id: str | None,
    exc: CircuitOpenError | QuotaExceededError | InvalidOutputError,
) -> str:
    """Why the offline summary stands in for the LLM's after ``exc`` (the degraded reason);
    raises the job's failure instead when jobs of ``guild_id`` may not fall back."""
    allowed = llm.settings.degraded_allowed(guild_id)
    if isinstance(exc, InvalidOutputError):
        if not allowed:
            raise unusable_failure(exc) from None
        return unusable_reason(exc)
    if not allowed:
        raise as_failure(exc) from None
    return exc.user_message


def llm_of(services: Services) -> LLMBackend:
    """The LLM backend; a worker without one cannot run LLM steps (a fleet misconfiguration)."""
    if services.llm is None:
        raise ConfigError(
            "this worker has no LLM configured but received an LLM summarize step; set "
            "OPENAI_API_KEY or LLM_BASE_URL on every summarize worker",
            user_message="a worker without an LLM configuration took part in this summary",
        )
    return services.llm


def ledger_rows(
    calls: Sequence[CallRecord], *, job_id: uuid.UUID, guild_id: str | None, services: Services
) -> list[UsageLedger]:
    """One usage-ledger row per model call."""
    now = services.clock()
    return [
        UsageLedger(
            guild_id=guild_id,
            job_id=job_id,
            model=call.model,
            kind=call.kind,
            prompt_tokens=call.usage.prompt_tokens,
            completion_tokens=call.usage.completion_tokens,
            cost_usd=Decimal(str(round(call.cost_usd, 6))),
            created_at=now,
        )
        for call in calls
    ]


# -- options ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class GuildPreferences:
    """What a guild's rows say about its summaries: who opted out, language, instructions."""

    opted_out: frozenset[str]
    language: str | None
    instructions: str | None
    #: Whether the guild has a monthly token budget to check.
    budgeted: bool = True


_GUILD_SETTINGS = table_of(GuildSettings)
_OPT_OUTS = table_of(UserOptOut)
_PLANS = table_of(SummaryPlan)


@cache
def _preference_rows(planned: bool) -> Select[*tuple[Any, ...]]:
    """One row per opted-out member (the guild's and everyone's), at least one, each with
    the guild's settings (NULL without a row), led by whether job ``job_id`` is planned when
    ``planned``.  Built once per shape, with bound ``guild_id``, ``scopes`` and ``job_id``:
    the summarize stage reads it for every job."""
    first = (
        [exists().where(_PLANS.c.job_id == bindparam("job_id")).label("planned")] if planned else []
    )
    return (
        select(
            *first,
            _GUILD_SETTINGS.c.default_language,
            _GUILD_SETTINGS.c.custom_instructions,
            _GUILD_SETTINGS.c.monthly_token_budget.is_not(None).label("budgeted"),
            _OPT_OUTS.c.user_id,
        )
        .select_from(select(literal(1).label("one")).subquery())
        .outerjoin(_GUILD_SETTINGS, _GUILD_SETTINGS.c.guild_id == bindparam("guild_id"))
        .outerjoin(_OPT_OUTS, _OPT_OUTS.c.guild_id.in_(bindparam("scopes", expanding=True)))
    )


def _preference_values(guild_id: str | None, **more: Any) -> dict[str, Any]:
    return {"guild_id": guild_id, "scopes": opt_out_scopes(guild_id), **more}


def _preferences(rows: Sequence[Row[Any]]) -> GuildPreferences:
    first = rows[0]
    return GuildPreferences(
        opted_out=frozenset(row.user_id for row in rows if row.user_id is not None),
        language=first.default_language,
        instructions=first.custom_instructions,
        budgeted=bool(first.budgeted),
    )


def guild_preferences(session: Session, guild_id: str | None) -> GuildPreferences:
    """Read the opt-outs (the guild's and everyone's) and the guild's settings in ``session``,
    in one query."""
    return _preferences(
        session.execute(_preference_rows(False), _preference_values(guild_id)).all()
    )


def plan_and_preferences(
    session: Session, job_id: uuid.UUID, guild_id: str | None
) -> tuple[bool, GuildPreferences]:
    """Whether the job's summary is already planned, and :func:`guild_preferences`, in one
    query (the summarize stage's first read)."""
    rows = session.execute(
        _preference_rows(True), _preference_values(guild_id, job_id=job_id)
    ).all()
    return bool(rows[0].planned), _preferences(rows)


def job_options(
    services: Services,
    guild_id: str | None,
    params: JobParams,
    timezone: str = "UTC",
    *,
    preferences: GuildPreferences | None = None,
) -> tuple[TranscriptOptions, prompts.PromptOptions]:
    """Transcript options (opt-outs) and prompt options (format, language, instructions).

    ``preferences`` are the guild's, when the caller already read them in a session of its
    own (:func:`guild_preferences`); otherwise they are read here.
    """
    if preferences is None:
        with reading_session(services.session_factory) as session:
            preferences = guild_preferences(session, guild_id)
    language = params.language or preferences.language or "en"
    instructions = preferences.instructions
    if instructions and len(instructions) > prompts.MAX_CUSTOM_INSTRUCTIONS:
        log.warning(
            "summarize.instructions_truncated",
            length=len(instructions),
            limit=prompts.MAX_CUSTOM_INSTRUCTIONS,
        )
        instructions = instructions[: prompts.MAX_CUSTOM_INSTRUCTIONS]
    try:
        prompt = prompts.PromptOptions(
            format=params.format, language=language, custom_instructions=instructions
        )
    except ValueError as exc:
        raise InvalidInputError(str(exc)) from None
    return TranscriptOptions(opted_out_user_ids=preferences.opted_out, timezone=timezone), prompt


def with_window(content: SummaryContent, stats: WindowStats) -> SummaryContent:
    """The window's participants and span (the validator only saw the cited lines)."""
    coverage = content.coverage.model_copy(update={"start": stats.start, "end": stats.end})
    return content.model_copy(
        update={"participants": stats.participant_list(), "coverage": coverage}
    )


def persist_llm_summary(
    services: Services,
    job: Job,
    params: JobParams,
    content: SummaryContent,
    stats: WindowStats,
    *,
    model: str | None,
    usage: Sequence[UsageLedger],
    progress: Mapping[str, Any],
    drop_chunks: bool = True,
) -> tuple[uuid.UUID, ...] | None:
    """Store a summary the LLM wrote: with the window's participants and span, and the prompt
    version that asked for it (see :func:`shared.pipeline.finish.persist_summary`)."""
    return persist_summary(
        services,
        job,
        params,
        with_window(content, stats),
        prompt_version=prompts.PROMPT_VERSION,
        model=model,
        usage=usage,
        progress=progress,
        drop_chunks=drop_chunks,
    )


def report_progress(report: ValidationReport, **extra: Any) -> dict[str, Any]:
    """What cleaning changed, for the job's progress."""
    return {
        "llm": {
            **extra,
            "citations_kept": report.citations_kept,
            "citations_dropped": report.citations_dropped,
            "citations_repaired": report.citations_repaired,
            "inline_aliases_removed": report.aliases_removed,
            "unsupported_facts": len(report.problems),
        }
    }


# -- barrier ----------------------------------------------------------------------------------


def claim_reduce(session: Session, job_id: uuid.UUID, mode: ReduceMode, reason: str | None) -> bool:
    """Insert the job's one reduction row; the caller holds the job row's lock.

    ``notes`` mode needs every chunk done.  Returns True for the one caller that inserted it.
    """
    if mode is ReduceMode.NOTES:
        plan = session.get(SummaryPlan, job_id)
        done = session.scalar(
            select(func.count())
            .select_from(SummaryChunk)
            .where(SummaryChunk.job_id == job_id, SummaryChunk.status == ChunkStatus.DONE.value)
        )
        if plan is None or int(done or 0) < plan.chunk_count:
            return False
    return add_unless_present(
        session, SummaryReduction(job_id=job_id, mode=mode.value, reason=reason)
    )


def claim_degraded(services: Services, job_id: uuid.UUID, reason: str) -> bool:
    """Take the job's reduce step for the offline fallback; True if this call took it."""
    with services.session_factory() as session, session.begin():
        job = session.get(Job, job_id, with_for_update=True)
        if job is None or job.status in state.FINISHED:
            return False
        won = claim_reduce(session, job_id, ReduceMode.DEGRADED, reason)
    if won:
        log.warning("summarize.degrade", reason=reason)
        services.enqueuer.enqueue(REDUCE, str(job_id))
    return won


def redrive(services: Services, job_id: uuid.UUID) -> None:
    """Enqueue whatever a planned job still misses: its map steps, or its reduce step."""
    with reading_session(services.session_factory) as session:
        reduction = session.get(SummaryReduction, job_id)
        pending = list(
            session.scalars(
                select(SummaryChunk.id).where(
                    SummaryChunk.job_id == job_id,
                    SummaryChunk.status == ChunkStatus.PENDING.value,
                )
            )
        )
    if reduction is not None:
        services.enqueuer.enqueue(REDUCE, str(job_id))
        return
    if pending:
        log.info("summarize.redrive", pending=len(pending))
        for chunk_id in pending:
            services.enqueuer.enqueue(MAP_CHUNK, str(job_id), str(chunk_id))
        return
    with services.session_factory() as session, session.begin():
        job = session.get(Job, job_id, with_for_update=True)
        won = (
            job is not None
            and job.status not in state.FINISHED
            and claim_reduce(session, job_id, ReduceMode.NOTES, None)
        )
    if won:
        services.enqueuer.enqueue(REDUCE, str(job_id))


def reset(services: Services, job_id: uuid.UUID, *, plan_created: datetime | None = None) -> bool:
    """Forget a job's plan, chunks, claim and scratch (it will be planned again).

    With ``plan_created`` only that plan is forgotten: of several tasks that find the same plan
    broken, one resets it, and a newer plan is left alone.  Returns whether anything was reset.
    """
    with services.session_factory() as session, session.begin():
        if plan_created is not None:
            removed = session.execute(
                delete(SummaryPlan).where(
                    SummaryPlan.job_id == job_id, SummaryPlan.created_at == plan_created
                )
            )
            if not getattr(removed, "rowcount", 0):
                return False
        for model in (SummaryReduction, SummaryChunk, SummaryPlan):
            session.execute(delete(model).where(model.job_id == job_id))
    if services.llm is not None:
        services.llm.scratch.delete(str(job_id))
    return True


def restart(services: Services, plan: SummaryPlan, why: str) -> None:
    """Plan the job again (its chunks or notes are gone); one caller per broken plan acts."""
    if reset(services, plan.job_id, plan_created=plan.created_at):
        log.warning("summarize.restart", reason=why)
        services.enqueuer.enqueue(SUMMARIZE, str(plan.job_id))


def cleanup(services: Services, job_id: uuid.UUID) -> None:
    """A finished job keeps no notes and no scratch."""
    with services.session_factory() as session, session.begin():
        session.execute(delete(SummaryChunk).where(SummaryChunk.job_id == job_id))
    if services.llm is not None:
        services.llm.scratch.delete(str(job_id))


def load_unfinished(services: Services, job_id: uuid.UUID) -> Job | None:
    """The job of a map or reduce task, or None when it is gone or finished (then cleaned up)."""
    job = state.load(services.session_factory, job_id)
    if job is not None and job.status in state.FINISHED:
        cleanup(services, job_id)
        return None
    return job


def purge_finished_chunks(services: Services) -> int:
    """Delete the chunk notes of every finished job (for a periodic sweep); returns rows."""
    finished = select(Job.id).where(Job.status.in_(state.FINISHED))
    with services.session_factory() as session, session.begin():
        result = session.execute(delete(SummaryChunk).where(SummaryChunk.job_id.in_(finished)))
    return int(getattr(result, "rowcount", 0) or 0)
