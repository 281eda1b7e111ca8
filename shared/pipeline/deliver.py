"""The deliver stage: send one outbox item (a summary delivery or a job notification), once.

An item is claimed with a lease (``pending → sending``), its Discord destination checked against
the job's guild (:mod:`shared.delivery.guard`), sent by its target kind, and the outcome recorded
with its attempt-log row in one transaction (:mod:`shared.delivery.outbox`).  A copy of the task
that finds the item sent, failed, leased by a live worker, or not yet due does nothing.

The outbox is the one retry engine: a failed attempt records when the next one is due, and the
``redrive_deliveries`` sweep publishes the item again then; a task never waits or retries
itself.  When the last delivery of a summary ends, the job's end state follows
(:mod:`shared.delivery.settle`).
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta

import structlog
from sqlalchemy.orm import Session

from shared import lifecycle
from shared.delivery.discord_targets import DISCORD_KINDS, send_discord
from shared.delivery.local import write_file, write_terminal
from shared.delivery.outbox import (
    Claim,
    Outcome,
    RecordResult,
    RetryRules,
    Skip,
    claim_item,
    record_outcome,
    save_progress,
)
from shared.delivery.reply_fence import ReplyFence
from shared.delivery.runtime import DeliveryRuntime
from shared.delivery.settle import DONE, after_settle, settle_in, settle_job
from shared.delivery.webhook_target import send_webhook
from shared.errors import ErrorKind, PipelineError, RateLimitedError, classify
from shared.jobs import DELIVER, FileTarget, Step, TerminalTarget
from shared.metrics import DELIVERIES
from shared.pipeline.services import Services
from shared.summarize.content import SummaryContent
from shared.summarize.render import SummaryDocument

__all__ = ["run_deliver"]

log = structlog.get_logger(__name__)


def _send_timeout(services: Services, runtime: DeliveryRuntime) -> float:
    # The send must end well inside the task's soft time limit (a quarter of the visibility
    # timeout, see celeryconfig.time_bounds) and inside the lease.
    budget = min(
        services.settings.visibility_timeout / 4 * 0.8, runtime.settings.delivery_lease_seconds / 2
    )
    return max(1.0, min(runtime.settings.webhook_timeout, budget))


def _document(claim: Claim) -> SummaryDocument:
    summary = claim.summary
    assert summary is not None, "only summary deliveries render a document"
    return SummaryDocument(
        job_id=str(claim.job.id),
        summary_id=str(summary.id),
        created_at=summary.created_at,
        duration_seconds=(summary.created_at - claim.job.created_at).total_seconds(),
        model=summary.model,
        prompt_version=summary.prompt_version,
        summary=SummaryContent.model_validate(summary.content),
    )


def _send_local(services: Services, claim: Claim) -> str:
    if claim.kind == "terminal":
        return write_terminal(
            TerminalTarget.model_validate(claim.params), _document(claim), services.console
        )
    if claim.kind == "file":
        return write_file(FileTarget.model_validate(claim.params), _document(claim))
    raise PipelineError(
        f"unknown delivery kind {claim.kind!r}",
        user_message=f"the destination kind {claim.kind!r} is not supported by this worker",
    )


def _send(services: Services, runtime: DeliveryRuntime, claim: Claim) -> Outcome:
    now = services.clock()
    if claim.kind == "webhook":
        return send_webhook(
            claim,
            session_factory=services.session_factory,
            http=runtime.http,
            box=runtime.box,
            now=now,
            timeout=_send_timeout(services, runtime),
            max_payload_bytes=runtime.settings.webhook_max_payload_bytes,
        )
    if claim.kind in DISCORD_KINDS:
        lease = timedelta(seconds=runtime.settings.delivery_lease_seconds)
        return send_discord(
            claim,
            client=runtime.discord,
            directory=runtime.directory,
            box=runtime.box,
            save=lambda progress: save_progress(
                services.session_factory, claim, progress, now=services.clock(), lease=lease
            ),
            now=now,
            reply_fence=lambda: ReplyFence(services.session_factory).held(claim.job.id),
        )
    try:
        remote_id = _send_local(services, claim)
    except Exception as exc:
        if not isinstance(exc, PipelineError) and classify(exc) is ErrorKind.PERMANENT:
            raise  # a bug: the task decorator keeps the traceback in a dead letter
        return Outcome.failure(
            exc.user_message if isinstance(exc, PipelineError) else str(exc),
            retryable=classify(exc) is ErrorKind.TRANSIENT,
            retry_after=exc.retry_after if isinstance(exc, RateLimitedError) else None,
        )
    return Outcome.sent(remote_id)


def _after_skip(services: Services, job_id: uuid.UUID, skip: Skip) -> list[Step]:
    log.debug("deliver.skip", reason=skip.reason)
    if skip.reason not in ("done", "missing"):
        return []
    # The item ended (or went) without this task: settle the job, should its end be unwritten.
    job = lifecycle.load(services.session_factory, job_id)
    summary_id = job.progress.get("summary_id") if job is not None else None
    if not summary_id:
        return []
    return settle_job(services.session_factory, job_id, uuid.UUID(summary_id), now=services.clock())


def _attempt(services: Services, runtime: DeliveryRuntime, claimed: Claim) -> Outcome:
    if claimed.attempt > runtime.settings.delivery_max_claims:
        return Outcome.failure(
            f"gave up after {claimed.attempt - 1} attempts that never finished "
            "(the worker stopped each time)",
            retryable=False,
        )
    return _send(services, runtime, claimed)


def run_deliver(services: Services, job_id: uuid.UUID, item_id: uuid.UUID) -> list[Step]:
    """Send one delivery or job notification of job ``job_id`` (see module docstring).

    The job is read with the item, in the claim: its task loads no job row first.
    """
    runtime = services.delivery_runtime()
    started_at = services.clock()
    claimed = claim_item(
        services.session_factory,
        item_id,
        now=started_at,
        lease=timedelta(seconds=runtime.settings.delivery_lease_seconds),
    )
    if isinstance(claimed, Skip):
        return _after_skip(services, job_id, claimed)
    try:
        outcome = _attempt(services, runtime, claimed)
    except Exception as exc:
        # A database or broker that went away mid-send, or a stall past the soft time limit,
        # is retried on the outbox's schedule; anything else is a bug and fails the delivery.
        failure = Outcome.failure(
            f"internal error: {exc!r}", retryable=classify(exc) is ErrorKind.TRANSIENT
        )
        with services.session_factory() as session, session.begin():
            ended = _record(session, services, runtime, claimed, failure, started_at=started_at)
        _count_ended(claimed, ended)
        raise
    with services.session_factory() as session, session.begin():
        result = _record(session, services, runtime, claimed, outcome, started_at=started_at)
        # The job's end state follows the last delivery in the same transaction.
        settled = (
            settle_in(session, job_id, claimed.summary.id, now=services.clock())
            if claimed.summary is not None and result.status in DONE
            else None
        )
    _count_ended(claimed, result)
    log.info(
        "deliver.attempt",
        target=claimed.target,
        kind=claimed.kind,
        event_type=claimed.event,
        attempt=claimed.attempt,
        status=result.status,
        http_status=outcome.status_code,
        error=outcome.error,
        retry_in=round(result.retry_in, 1) if result.retry_in is not None else None,
    )
    steps = [Step(DELIVER, (str(job_id), str(fallback_id))) for _, fallback_id in result.fallbacks]
    return steps + after_settle(services.session_factory, job_id, settled, now=services.clock())


def _count_ended(claimed: Claim, result: RecordResult) -> None:
    """Count a delivery that this attempt ended, once its record is committed (the claim's
    lease makes this task the only one that can end it)."""
    if claimed.item == "delivery" and result.status in DONE:
        DELIVERIES.labels(kind=claimed.kind, status=result.status).inc()


def _record(
    session: Session,
    services: Services,
    runtime: DeliveryRuntime,
    claimed: Claim,
    outcome: Outcome,
    *,
    started_at: datetime,
) -> RecordResult:
    """Record the attempt's outcome now, under the runtime's retry rules, in ``session``."""
    return record_outcome(
        session,
        claimed,
        outcome,
        now=services.clock(),
        started_at=started_at,
        rules=_rules(runtime),
    )


def _rules(runtime: DeliveryRuntime) -> RetryRules:
    settings = runtime.settings
    return RetryRules(
        schedule=settings.webhook_retry_schedule,
        jitter=settings.webhook_retry_jitter,
        disable_after=timedelta(days=settings.webhook_disable_after_days),
        rng=runtime.rng,
    )
