"""Tasks of the ``maintenance`` queue: beat-driven sweeps, digests and retention.

Every task here is safe to run twice or concurrently: each reads Postgres (the system of record)
and claims what it changes, so a duplicated or replayed beat tick has no second effect, and a
missed tick is simply caught up by the next.
"""

from __future__ import annotations

import structlog

from shared.digests.dispatch import dispatch_due_digests
from shared.metrics import DIGEST_RUNS
from shared.pipeline.recovery import requeue_stale_jobs
from shared.retention import purge_expired
from workers import resources
from workers.app import app

__all__ = [
    "DISPATCH_DUE_DIGESTS",
    "PURGE_EXPIRED",
    "REQUEUE_STALE_JOBS",
    "dispatch_due_digests_task",
    "purge_expired_task",
    "requeue_stale_jobs_task",
]

log = structlog.get_logger(__name__)

REQUEUE_STALE_JOBS = "summarybot.maintenance.requeue_stale_jobs"
DISPATCH_DUE_DIGESTS = "summarybot.maintenance.dispatch_due_digests"
PURGE_EXPIRED = "summarybot.maintenance.purge_expired"


@app.task(name=REQUEUE_STALE_JOBS, queue="maintenance", ignore_result=True)  # type: ignore[untyped-decorator]
def requeue_stale_jobs_task() -> int:
    """Re-enqueue stale unfinished jobs (a missed tick is simply caught up by the next)."""
    count = requeue_stale_jobs(resources.current())
    if count:
        log.info("maintenance.requeued", jobs=count)
    return count


@app.task(name=DISPATCH_DUE_DIGESTS, queue="maintenance", ignore_result=True)  # type: ignore[untyped-decorator]
def dispatch_due_digests_task() -> int:
    """Create and submit the runs of due digest schedules; returns how many runs were made."""
    services = resources.current()
    result = dispatch_due_digests(services.core(), now=services.clock())
    for outcome, count in (
        ("created", result.runs_created),
        ("resubmitted", result.orphans_resubmitted),
        ("paused", result.disabled),
    ):
        if count:
            DIGEST_RUNS.labels(outcome=outcome).inc(count)
    if result.runs_created or result.orphans_resubmitted or result.disabled:
        log.info(
            "maintenance.digests",
            runs=result.runs_created,
            submitted=result.jobs_submitted,
            resubmitted=result.orphans_resubmitted,
            disabled=result.disabled,
        )
    return result.runs_created


@app.task(name=PURGE_EXPIRED, queue="maintenance", ignore_result=True)  # type: ignore[untyped-decorator]
def purge_expired_task() -> dict[str, int]:
    """Enforce every guild's retention and clear message caches of finished jobs."""
    services = resources.current()
    result = purge_expired(
        services.session_factory,
        services.cache,
        now=services.clock(),
        cache_ttl=services.settings.message_cache_ttl,
    )
    return dict(result.__dict__)
