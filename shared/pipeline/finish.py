"""How a summarize run ends: the summary stored with its deliveries and usage, in one go.

The summary row, its delivery rows and the usage-ledger rows of the calls that wrote it are
stored in one transaction (a transactional outbox): either all exist or none, and
``summaries.job_id`` being unique makes a second run a no-op.  :func:`summarize_offline` is the
offline extractive path (no LLM configured, an empty window, or the degraded fallback).
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from decimal import Decimal
from functools import cache
from typing import Any

import structlog
from sqlalchemy import bindparam, delete, func, insert, select
from sqlalchemy.sql.dml import ReturningInsert

from schema.base import table_of
from schema.models.chunks import SummaryChunk
from schema.models.jobs import Delivery, DeliveryStatus, Job, Summary
from schema.models.usage import UsageKind, UsageLedger
from shared import lifecycle
from shared.cache import CachedFetch
from shared.db.engine import reading_session
from shared.delivery.settle import pending_deliver_steps
from shared.jobs import DELIVER, JobParams, Step
from shared.metrics import count_summary_spend
from shared.pipeline.services import Services
from shared.services.members import opted_out_ids
from shared.summarize.content import SummaryContent
from shared.tenancy import tenant_guild

__all__ = [
    "PROMPT_VERSION",
    "after_persist",
    "enqueue_pending_deliveries",
    "pending_delivery_steps",
    "persist_summary",
    "record_usage",
    "summarize_offline",
]

log = structlog.get_logger(__name__)

#: Version of the offline summarization recipe, stored with its summaries.
PROMPT_VERSION = "extractive-1"


def pending_delivery_steps(services: Services, job_id: uuid.UUID) -> list[Step]:
    """One deliver step per pending delivery of the job's summary."""
    with reading_session(services.session_factory) as session:
        return pending_deliver_steps(session, job_id)


def enqueue_pending_deliveries(services: Services, job_id: uuid.UUID) -> None:
    """Publish one deliver task per pending delivery of the job's summary."""
    for step in pending_delivery_steps(services, job_id):
        services.enqueuer.enqueue(step.task, *step.args)


def record_usage(services: Services, rows: Sequence[UsageLedger]) -> None:
    """Write usage rows in a transaction of their own (spend that no summary carries)."""
    if rows:
        with services.session_factory() as session, session.begin():
            session.add_all(rows)


def persist_summary(
    services: Services,
    job: Job,
    params: JobParams,
    content: SummaryContent,
    *,
    prompt_version: str = PROMPT_VERSION,
    model: str | None = None,
    usage: Sequence[UsageLedger] = (),
    progress: Mapping[str, Any] | None = None,
    usage_of: Sequence[uuid.UUID] = (),
    drop_chunks: bool = True,
) -> tuple[uuid.UUID, ...] | None:
    """Write summary, deliveries, usage rows and job status at once.

    Returns the ids of the deliveries it stored (for :func:`after_persist`), or None when
    another run got there first; ``usage`` is then recorded on its own, since those calls were
    made all the same.  The summary's token and cost figures are the sum of every usage row of
    the job (map steps included) and of the jobs in ``usage_of`` (a multi-channel job's parts).
    ``drop_chunks=False`` skips deleting the job's map notes, for a caller that made none.
    """
    now = services.clock()
    summary_id = uuid.uuid4()
    summary: dict[str, Any] = {
        "id": summary_id,
        "job_id": job.id,
        "guild_id": tenant_guild(job.guild_id, content.coverage.guild_id),
        "channel_id": content.coverage.channel_id,
        "format": content.format.value,
        "language": params.language,
        "content": content.model_dump(mode="json"),
        "backend": content.backend,
        "model": model,
        "prompt_version": prompt_version,
        "degraded": content.degraded,
        "message_count": content.coverage.messages_total,
        "window_start": content.coverage.start,
        "window_end": content.coverage.end,
        "created_at": now,
        "spenders": [job.id, *usage_of],
    }
    deliveries: list[dict[str, Any]] = [
        {
            "id": uuid.uuid4(),
            "summary_id": summary_id,
            "target": target.key,
            "kind": target.kind,
            "params": target.model_dump(mode="json"),
            "status": DeliveryStatus.PENDING.value,
            "created_at": now,
        }
        for target in params.destinations
    ]
    with services.session_factory() as session:
        transaction = session.begin()
        # The move comes first: a conditional UPDATE that takes the job row's lock, so of two
        # runs one stores the summary and the other finds the job no longer summarizing.
        moved = lifecycle.move_in(
            session,
            job.id,
            lifecycle.Move.SUMMARIZED,
            now=now,
            progress={**(progress or {}), "summary_id": str(summary_id)},
        )
        if moved is None:
            transaction.rollback()
            log.info("summarize.duplicate", reason="the job is no longer summarizing")
            record_usage(services, usage)
            return None
        with transaction:
            if usage:
                session.execute(insert(_USAGE), [_ledger_values(row, now) for row in usage])
            # The sums come back with the insert: the metrics need no read-back.
            spent = session.execute(_summary_insert(), summary).one()
            if deliveries:
                session.execute(insert(_DELIVERIES), deliveries)
            if drop_chunks:
                # The notes were only needed to write this summary.
                session.execute(delete(SummaryChunk).where(SummaryChunk.job_id == job.id))
    count_summary_spend(
        model=model or content.backend,
        prompt_tokens=spent.prompt_tokens or 0,
        completion_tokens=spent.completion_tokens or 0,
        cost_usd=float(spent.cost_usd or 0),
    )
    return tuple(delivery["id"] for delivery in deliveries)


_SUMMARIES = table_of(Summary)
_DELIVERIES = table_of(Delivery)
_USAGE = table_of(UsageLedger)


def _ledger_values(row: UsageLedger, now: Any) -> dict[str, Any]:
    """``row``'s columns for a Core insert, with the defaults its ORM flush would have given
    (one executemany statement needs the same keys in every row)."""
    return {
        "guild_id": row.guild_id,
        "job_id": row.job_id,
        "model": row.model,
        "kind": row.kind,
        "prompt_tokens": row.prompt_tokens or 0,
        "completion_tokens": row.completion_tokens or 0,
        "cost_usd": Decimal(0) if row.cost_usd is None else row.cost_usd,
        "created_at": row.created_at or now,
    }


@cache
def _summary_insert() -> ReturningInsert[tuple[int, int, Decimal]]:
    """The summary's INSERT, summing the usage of the ``spenders`` jobs itself (their rows
    are inserted first) and returning the sums.

    Built once and run with the values bound: building it for each summary cost more CPU
    than its round trip (see :func:`shared.lifecycle._move_update`).
    """
    spenders = bindparam("spenders", expanding=True, type_=_USAGE.c.job_id.type)

    def spent(column: Any) -> Any:
        total = func.coalesce(func.sum(column), 0)
        return select(total).where(_USAGE.c.job_id.in_(spenders)).scalar_subquery()

    sums = ("prompt_tokens", "completion_tokens", "cost_usd")
    # Every other column is bound: a column added to the table and not given a value by
    # persist_summary fails the first insert instead of silently taking its default.
    values: dict[str, Any] = {
        column.name: bindparam(column.name, type_=column.type)
        for column in _SUMMARIES.c
        if column.name not in sums
    }
    values.update((name, spent(_USAGE.c[name])) for name in sums)
    return insert(_SUMMARIES).values(values).returning(*(_SUMMARIES.c[name] for name in sums))


def after_persist(
    services: Services,
    job_id: uuid.UUID,
    stored: Sequence[uuid.UUID] | None = None,
    *,
    drop_scratch: bool = True,
) -> None:
    """Drop what the job no longer needs and hand its deliveries to the deliver stage.

    ``stored``: what :func:`persist_summary` returned.  The deliveries this run just stored
    are published as they are; when another run stored the summary (None), the job's pending
    deliveries are looked up.  ``drop_scratch=False`` skips deleting the LLM scratch, for a
    run that planned no chunks and so wrote none (a single call); what an earlier attempt
    with other settings may have left expires with the scratch's TTL.
    """
    services.cache.delete(str(job_id))
    if services.llm is not None and drop_scratch:
        services.llm.scratch.delete(str(job_id))
    if stored is None:
        enqueue_pending_deliveries(services, job_id)
        return
    for delivery_id in stored:
        services.enqueuer.enqueue(DELIVER, str(job_id), str(delivery_id))


def summarize_offline(
    services: Services,
    job: Job,
    params: JobParams,
    fetched: CachedFetch,
    *,
    degraded: bool = False,
    reason: str | None = None,
) -> None:
    """Summarize with the offline backend; ``degraded`` marks a fallback from the LLM."""
    key = str(job.id)
    lifecycle.heartbeat(
        services.session_factory, job.id, now=services.clock(), progress={"summarizing": True}
    )
    with reading_session(services.session_factory) as session:
        opted_out = opted_out_ids(session, tenant_guild(job.guild_id, fetched.channel.guild_id))
    # Opted-out members are left out here as the LLM path's transcript leaves them out.
    messages = [m for m in services.cache.iter_messages(key) if m.author_id not in opted_out]
    content = services.summarizer.summarize(
        messages,
        fetched.channel,
        format=params.format,
        language=params.language,
        skipped=0,
    )
    del messages
    usage: list[UsageLedger] = []
    progress: dict[str, Any] = {}
    if degraded:
        content = content.model_copy(update={"degraded": True})
        progress["degraded_reason"] = reason or "the LLM was unavailable"
        usage.append(
            UsageLedger(
                guild_id=tenant_guild(job.guild_id, fetched.channel.guild_id),
                job_id=job.id,
                model=None,
                kind=UsageKind.EXTRACTIVE.value,
                created_at=services.clock(),
            )
        )
        log.warning("summarize.degraded", reason=progress["degraded_reason"])
    stored = persist_summary(services, job, params, content, usage=usage, progress=progress)
    if stored is not None:
        log.info("summarize.done", cited=len(content.citations), backend=content.backend)
    after_persist(services, job.id, stored)
