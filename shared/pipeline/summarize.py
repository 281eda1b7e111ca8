"""The summarize stage: turn cached messages into a persisted summary and its deliveries.

Without an LLM the offline extractive backend summarizes the window in this task.  With one
(``services.llm``), this task plans the map/reduce run (:mod:`shared.pipeline.llm.start`; a
short window is summarized here in one call) and the map and reduce tasks finish it
(:mod:`shared.pipeline.llm.mapreduce`).
Storing the result is :mod:`shared.pipeline.finish`: summary, deliveries and usage rows in one
transaction, so a second run is a no-op.
"""

from __future__ import annotations

import uuid

import structlog

from schema.models.jobs import Job, JobStatus
from shared.cache import CachedFetch
from shared.digests.empty import (
    EmptyWindowAction,
    empty_window_action,
    no_activity_content,
    record_outcome,
)
from shared.jobs import FETCH, JobParams, parse_params
from shared.pipeline import state
from shared.pipeline.finish import (
    PROMPT_VERSION,
    after_persist,
    enqueue_pending_deliveries,
    persist_summary,
    summarize_offline,
)
from shared.pipeline.llm import mapreduce
from shared.pipeline.llm import start as llm_start
from shared.pipeline.services import Services

__all__ = ["PROMPT_VERSION", "run_summarize"]

log = structlog.get_logger(__name__)


def run_summarize(services: Services, job_id: uuid.UUID) -> None:
    """Summarize a fetched job once and enqueue one deliver task per pending delivery."""
    job = state.load(services.session_factory, job_id)
    if job is None or job.status in state.FINISHED:
        return
    key = str(job_id)
    if job.status == JobStatus.DELIVERING.value:
        enqueue_pending_deliveries(services, job_id)
        return
    fetched = services.cache.get(key)
    if fetched is None:
        if job.status == JobStatus.SUMMARIZING.value:
            # The cache expired or Redis lost it: fetch again rather than fail the job.
            log.warning("summarize.cache_missing", action="refetch")
            if services.llm is not None:
                mapreduce.reset(services, job_id)
            state.advance(services.session_factory, job_id, JobStatus.QUEUED, now=services.clock())
            services.enqueuer.enqueue(FETCH, key)
        return
    params = parse_params(job.params)
    action = empty_window_action(services.session_factory, job_id, message_count=fetched.count)
    if action is not EmptyWindowAction.SUMMARIZE:
        _empty_digest(services, job, params, fetched, action)
        return
    if services.llm is not None:
        llm_start.start(services, job, params, fetched)
        return
    summarize_offline(services, job, params, fetched)


def _empty_digest(
    services: Services,
    job: Job,
    params: JobParams,
    fetched: CachedFetch,
    action: EmptyWindowAction,
) -> None:
    """A digest window without messages: skip it, or deliver a short "no activity" notice."""
    now = services.clock()
    record_outcome(services.session_factory, job.id, action, now=now)
    if action is EmptyWindowAction.SKIP:
        state.advance(
            services.session_factory,
            job.id,
            JobStatus.COMPLETED,
            now=now,
            progress={"empty_window": "skipped"},
        )
        services.cache.delete(str(job.id))
        return
    source = params.source
    start = getattr(source, "after", None) or job.created_at
    end = getattr(source, "before", None) or job.created_at
    content = no_activity_content(
        fetched.channel, window_start=start, window_end=end, format=params.format
    )
    if persist_summary(services, job, params, content, progress={"empty_window": "notice"}):
        after_persist(services, job.id, params)
