"""The deliver stage: send one outbox item (a summary delivery or a job notification), once.

An item is claimed with a lease (``pending → sending``), sent by its target kind, and the outcome
recorded with its attempt-log row in one transaction (:mod:`shared.delivery.outbox`).  A copy of
the task that finds the item sent, failed, leased by a live worker, or not yet due does nothing.

Failed attempts are retried on the delivery retry schedule, which lives in the database: short
delays (up to the Celery backoff cap) come back as a Celery retry with that countdown, longer
ones are re-enqueued by the ``redrive_deliveries`` sweep when due, so no countdown ever outlives
the broker's visibility timeout.  When the last delivery of a summary ends, the job ends; a job
that fails here notifies its webhooks (``job.failed``).
"""

from __future__ import annotations

import uuid
from datetime import timedelta

import structlog
from sqlalchemy import select

from schema.models.jobs import Delivery, DeliveryStatus, JobStatus
from shared.delivery.discord_targets import DISCORD_KINDS, send_discord
from shared.delivery.local import write_file, write_terminal
from shared.delivery.notifications import create_job_failed_notifications
from shared.delivery.outbox import (
    Claim,
    Outcome,
    RetryRules,
    Skip,
    claim_item,
    record_outcome,
    save_progress,
)
from shared.delivery.runtime import DeliveryRuntime, runtime_for
from shared.delivery.webhook_target import send_webhook
from shared.errors import ErrorKind, PipelineError, RateLimitedError, classify
from shared.jobs import DELIVER, FileTarget, TerminalTarget
from shared.pipeline import state
from shared.pipeline.services import Services
from shared.summarize.content import SummaryContent
from shared.summarize.render import SummaryDocument

__all__ = ["finish_job", "run_deliver", "short_retry_cap"]

log = structlog.get_logger(__name__)

_DONE = (DeliveryStatus.SENT.value, DeliveryStatus.FAILED.value)


def short_retry_cap(services: Services) -> float:
    """Longest delay retried with a Celery countdown: the task decorator's backoff cap.

    Mirrors ``celeryconfig.time_bounds`` (``retry_backoff_max`` = visibility timeout / 12).
    """
    return float(max(1, services.settings.visibility_timeout // 12))


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
            box=runtime.box,
            save=lambda progress: save_progress(
                services.session_factory, claim, progress, now=services.clock(), lease=lease
            ),
            now=now,
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


def finish_job(services: Services, summary_id: uuid.UUID, job_id: uuid.UUID) -> None:
    """End the job once every delivery of its summary has ended (no-op before that)."""
    with services.session_factory() as session:
        rows = session.execute(
            select(Delivery.status, Delivery.last_error, Delivery.fallback_of).where(
                Delivery.summary_id == summary_id
            )
        ).all()
    if any(status not in _DONE for status, _, _ in rows):
        return
    failed = [
        error or "unknown error"
        for status, error, _ in rows
        if status == DeliveryStatus.FAILED.value
    ]
    now = services.clock()
    if failed and len(failed) == len(rows):
        if state.fail(
            services.session_factory,
            job_id,
            now=now,
            reason="delivery failed: " + "; ".join(failed),
        ):
            for row_id in create_job_failed_notifications(
                services.session_factory, job_id, now=now
            ):
                services.enqueuer.enqueue(DELIVER, str(job_id), str(row_id))
    else:
        progress: dict[str, object] = {}
        if failed:
            progress["deliveries_failed"] = len(failed)
        fallbacks = sum(1 for _, _, of in rows if of is not None)
        if fallbacks:
            progress["fallbacks"] = fallbacks
        state.advance(
            services.session_factory,
            job_id,
            JobStatus.COMPLETED,
            now=now,
            progress=progress or None,
        )
    services.cache.delete(str(job_id))


def _after_skip(services: Services, job_id: uuid.UUID, skip: Skip) -> None:
    log.debug("deliver.skip", reason=skip.reason)
    if skip.reason not in ("done", "missing"):
        return
    job = state.load(services.session_factory, job_id)
    summary_id = job.progress.get("summary_id") if job else None
    if job is not None and summary_id and job.status == JobStatus.DELIVERING.value:
        finish_job(services, uuid.UUID(summary_id), job_id)


def run_deliver(services: Services, job_id: uuid.UUID, item_id: uuid.UUID) -> None:
    """Send one delivery or job notification (see module docstring)."""
    runtime = runtime_for(services.settings)
    settings = runtime.settings
    started_at = services.clock()
    claimed = claim_item(
        services.session_factory,
        item_id,
        now=started_at,
        lease=timedelta(seconds=settings.delivery_lease_seconds),
    )
    if isinstance(claimed, Skip):
        _after_skip(services, job_id, claimed)
        return
    if claimed.attempt > settings.delivery_max_claims:
        outcome = Outcome.failure(
            f"gave up after {claimed.attempt - 1} attempts that never finished "
            "(the worker stopped each time)",
            retryable=False,
        )
    else:
        try:
            outcome = _send(services, runtime, claimed)
        except Exception as exc:
            record_outcome(
                services.session_factory,
                claimed,
                Outcome.failure(f"internal error: {exc!r}", retryable=False),
                now=services.clock(),
                started_at=started_at,
                rules=_rules(runtime),
            )
            raise
    result = record_outcome(
        services.session_factory,
        claimed,
        outcome,
        now=services.clock(),
        started_at=started_at,
        rules=_rules(runtime),
    )
    for _, fallback_id in result.fallbacks:
        services.enqueuer.enqueue(DELIVER, str(job_id), str(fallback_id))
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
    if (
        result.retry_in is not None
        and result.retry_in <= short_retry_cap(services)
        and result.failures <= services.settings.max_task_retries
    ):
        raise RateLimitedError(
            f"{claimed.target}: {outcome.error}; next attempt in {result.retry_in:.1f} s",
            retry_after=result.retry_in,
        )
    if claimed.summary is not None and result.status in _DONE:
        finish_job(services, claimed.summary.id, claimed.job.id)


def _rules(runtime: DeliveryRuntime) -> RetryRules:
    settings = runtime.settings
    return RetryRules(
        schedule=settings.webhook_retry_schedule,
        jitter=settings.webhook_retry_jitter,
        disable_after=timedelta(days=settings.webhook_disable_after_days),
        rng=runtime.rng,
    )
