"""The summarize stage: turn cached messages into a persisted summary and its deliveries.

Without an LLM the offline extractive backend summarizes the window in this task.  With one
(``services.llm``), this task plans the map/reduce run (:mod:`shared.pipeline.llm.start`; a
short window is summarized here in one call) and the map and reduce tasks finish it
(:mod:`shared.pipeline.llm.mapreduce`).
Storing the result is :mod:`shared.pipeline.finish`: summary, deliveries and usage rows in one
transaction, so a second run is a no-op.
"""

from __future__ import annotations

import structlog

from schema.models.jobs import Job, JobStatus
from shared import lifecycle
from shared.cache import CachedFetch
from shared.digests.empty import (
    EmptyWindowAction,
    empty_window_action,
    no_activity_content,
    record_outcome,
)
from shared.jobs import FETCH, DiscordServerSource, JobParams, Step, parse_params
from shared.pipeline.compose import run_compose
from shared.pipeline.finish import (
    PROMPT_VERSION,
    after_persist,
    pending_delivery_steps,
    persist_summary,
    summarize_offline,
)
from shared.pipeline.llm import mapreduce
from shared.pipeline.llm import start as llm_start
from shared.pipeline.services import Services

__all__ = ["PROMPT_VERSION", "run_summarize"]

log = structlog.get_logger(__name__)


def run_summarize(services: Services, job: Job) -> list[Step]:
    """Summarize a fetched job once; the deliver tasks of its pending deliveries come next.

    A job already ``delivering`` only has its pending deliveries published again.  A job whose
    cached messages are gone (expired, or Redis lost them) has the fetch stage fill the cache
    again; the job stays ``summarizing``.
    """
    if job.status == JobStatus.DELIVERING.value:
        return pending_delivery_steps(services, job.id)
    params = parse_params(job.params)
    if isinstance(params.source, DiscordServerSource):
        return run_compose(services, job, params)
    fetched = services.cache.get(str(job.id))
    if fetched is None:
        log.warning("summarize.cache_missing", action="refetch")
        if services.llm is not None:
            mapreduce.reset(services, job.id)
        lifecycle.heartbeat(services.session_factory, job.id, now=services.clock())
        return [Step(FETCH, (str(job.id),))]
    action = empty_window_action(services.session_factory, job.id, message_count=fetched.count)
    if action is not EmptyWindowAction.SUMMARIZE:
        return _empty_digest(services, job, params, fetched, action)
    if services.llm is not None:
        llm_start.start(services, job, params, fetched)
        return []
    summarize_offline(services, job, params, fetched)
    return []


def _empty_digest(
    services: Services,
    job: Job,
    params: JobParams,
    fetched: CachedFetch,
    action: EmptyWindowAction,
) -> list[Step]:
    """A digest window without messages: skip it, or deliver a short "no activity" notice."""
    now = services.clock()
    record_outcome(services.session_factory, job.id, action, now=now)
    if action is EmptyWindowAction.SKIP:
        lifecycle.move(
            services.session_factory,
            job.id,
            lifecycle.Move.SUMMARIZED,
            now=now,
            progress={"empty_window": "skipped"},
        )
        services.cache.delete(str(job.id))
        return []
    source = params.source
    start = getattr(source, "after", None) or job.created_at
    end = getattr(source, "before", None) or job.created_at
    content = no_activity_content(
        fetched.channel, window_start=start, window_end=end, format=params.format
    )
    stored = persist_summary(services, job, params, content, progress={"empty_window": "notice"})
    after_persist(services, job.id, stored)
    return []
