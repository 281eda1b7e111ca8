"""Tasks of the ``maintenance`` queue: beat-driven sweeps, digests, retention and redrive.

Every task here is safe to run twice or concurrently: each reads Postgres (the system of record)
and claims what it changes, so a duplicated or replayed beat tick has no second effect, and a
missed tick is simply caught up by the next.  Each is a plain function of the process's
services, registered on an app by :func:`register`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import structlog
from celery import Celery

from shared.delivery.redrive import redrive_deliveries
from shared.digests.dispatch import dispatch_due_digests
from shared.metrics import DIGEST_RUNS
from shared.pipeline.recovery import requeue_stale_jobs
from shared.pipeline.services import Services
from shared.retention import purge_expired
from workers.context import WorkerContext

__all__ = [
    "DISPATCH_DUE_DIGESTS",
    "PURGE_EXPIRED",
    "REDRIVE_DELIVERIES",
    "REQUEUE_STALE_JOBS",
    "dispatch_digests",
    "purge",
    "redrive",
    "register",
    "requeue",
]

log = structlog.get_logger(__name__)

REQUEUE_STALE_JOBS = "summarybot.maintenance.requeue_stale_jobs"
DISPATCH_DUE_DIGESTS = "summarybot.maintenance.dispatch_due_digests"
PURGE_EXPIRED = "summarybot.maintenance.purge_expired"
REDRIVE_DELIVERIES = "summarybot.maintenance.redrive_deliveries"


def requeue(services: Services) -> int:
    """Re-enqueue stale unfinished jobs (a missed tick is simply caught up by the next)."""
    count = requeue_stale_jobs(services)
    if count:
        log.info("maintenance.requeued", jobs=count)
    return count


def dispatch_digests(services: Services) -> int:
    """Create and submit the runs of due digest schedules; returns how many runs were made."""
    result = dispatch_due_digests(services.core(), now=services.clock())
    paused = result.disabled + result.paused
    for outcome, count in (
        ("created", result.runs_created),
        ("resubmitted", result.orphans_resubmitted),
        ("paused", paused),
    ):
        if count:
            DIGEST_RUNS.labels(outcome=outcome).inc(count)
    if result.runs_created or result.orphans_resubmitted or paused:
        log.info(
            "maintenance.digests",
            runs=result.runs_created,
            submitted=result.jobs_submitted,
            resubmitted=result.orphans_resubmitted,
            disabled=paused,
        )
    return result.runs_created


def purge(services: Services) -> dict[str, int]:
    """Enforce every guild's retention and clear message caches of finished jobs."""
    result = purge_expired(
        services.session_factory,
        services.cache,
        now=services.clock(),
        cache_ttl=services.settings.message_cache_ttl,
    )
    return dict(result.__dict__)


def redrive(services: Services) -> int:
    """Re-enqueue due and orphaned deliveries (the outbox's one retry engine)."""
    report = redrive_deliveries(
        services.session_factory, services.delivery_runtime().settings, now=services.clock()
    )
    for step in report.steps:
        services.enqueuer.enqueue(step.task, *step.args)
    return report.enqueued


TASKS: dict[str, Callable[[Services], Any]] = {
    REQUEUE_STALE_JOBS: requeue,
    DISPATCH_DUE_DIGESTS: dispatch_digests,
    PURGE_EXPIRED: purge,
    REDRIVE_DELIVERIES: redrive,
}


def register(app: Celery, context: WorkerContext) -> None:
    """Register every maintenance task on ``app``, each reading ``context``'s services."""
    for name, fn in TASKS.items():
        app.task(name=name, queue="maintenance", ignore_result=True, shared=False)(
            _bound(fn, context)
        )


def _bound(fn: Callable[[Services], Any], context: WorkerContext) -> Callable[[], Any]:
    def run() -> Any:
        return fn(context.services())

    run.__name__ = fn.__name__
    run.__doc__ = fn.__doc__
    return run
