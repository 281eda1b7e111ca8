"""Celery signal hooks: task metrics, job outcome metrics, trace-id propagation.

:func:`connect_metrics` connects the hooks of one worker app (called by
:func:`workers.app.create_worker_app`; nothing is connected at import).  They never change what
a task does, and a failing hook only logs: metrics must not break the pipeline.

- ``before_task_publish``: every message carries a ``trace_id`` header, the producer's (bound in
  ``structlog.contextvars``) or the running task's, so a job's tasks share one trace id.
- ``task_prerun``/``task_postrun``/``task_failure``/``task_retry``: counts and run times per task
  name, per-stage latency, and, read back from Postgres after each pipeline task, the job's end
  (``summary_requests_total``, ``summary_processing_seconds``), the tokens and cost of a stored
  summary, and each delivery that ended.
- ``worker_process_shutdown``: marks a prefork child's samples dead (multiprocess mode).

The ``/metrics`` endpoint itself is started by ``summarybot worker`` before the pool starts
(:func:`shared.metrics.start_worker_metrics_server`), so a busy port stops the start.
"""

from __future__ import annotations

import os
import time
import uuid
from datetime import datetime
from typing import Any

import structlog
from celery.signals import (
    before_task_publish,
    task_failure,
    task_postrun,
    task_prerun,
    task_retry,
    worker_process_shutdown,
)
from prometheus_client import multiprocess
from sqlalchemy import select

from schema.models.jobs import Job, JobStatus, Summary
from shared.db.engine import reading_session
from shared.jobs import DELIVER, FETCH, SUMMARIZE
from shared.lifecycle import FINISHED
from shared.metrics import (
    CELERY_TASK_SECONDS,
    CELERY_TASKS,
    COST_USD,
    JOBS_FINISHED,
    PROCESSING_SECONDS,
    REQUESTS,
    STAGE_SECONDS,
    TOKENS,
    multiprocess_enabled,
)
from shared.metrics_logging import TRACE_HEADER, current_trace_id, new_trace_id
from shared.pipeline.services import Services
from workers.context import WorkerContext, connect

__all__ = ["STAGES", "connect_metrics"]

log = structlog.get_logger(__name__)

#: Pipeline task name → stage label.
STAGES = {FETCH: "fetch", SUMMARIZE: "summarize", DELIVER: "deliver"}


class _Started:
    __slots__ = ("monotonic", "wall")

    def __init__(self, monotonic: float, wall: datetime | None):
        self.monotonic = monotonic
        self.wall = wall


def _on_publish(headers: dict[str, Any] | None = None, **_: Any) -> None:
    if headers is not None and not headers.get(TRACE_HEADER):
        headers[TRACE_HEADER] = current_trace_id() or new_trace_id()


def _uuid(value: Any) -> uuid.UUID | None:
    try:
        return uuid.UUID(str(value))
    except ValueError:
        return None


def _on_process_shutdown(**_: Any) -> None:
    if multiprocess_enabled():
        multiprocess.mark_process_dead(os.getpid())  # type: ignore[no-untyped-call]


class _Hooks:
    """The task hooks of one worker app; tasks of other apps in the process are ignored."""

    def __init__(self, context: WorkerContext) -> None:
        self.context = context
        self.started: dict[str, _Started] = {}

    def _ours(self, task: Any) -> bool:
        return getattr(task, "app", None) is self.context.app

    def _services(self) -> Services | None:
        return self.context.services() if self.context.ready else None

    def on_prerun(self, task_id: str = "", task: Any = None, **_: Any) -> None:
        if not self._ours(task):
            return
        name = getattr(task, "name", "unknown")
        CELERY_TASKS.labels(task=name, state="started").inc()
        services = self._services() if name in STAGES else None
        wall = services.clock() if services is not None else None
        self.started[task_id] = _Started(time.monotonic(), wall)

    def on_postrun(
        self,
        task_id: str = "",
        task: Any = None,
        args: Any = (),
        state: str | None = None,
        **_: Any,
    ) -> None:
        if not self._ours(task):
            return
        name = getattr(task, "name", "unknown")
        started = self.started.pop(task_id, None)
        if started is None:
            return
        elapsed = time.monotonic() - started.monotonic
        CELERY_TASK_SECONDS.labels(task=name).observe(elapsed)
        if state == "SUCCESS":
            CELERY_TASKS.labels(task=name, state="succeeded").inc()
        if name in STAGES:
            STAGE_SECONDS.labels(stage=STAGES[name]).observe(elapsed)
            services = self._services()
            try:
                if services is not None:
                    _account_job(services, name, args, started)
            except Exception as exc:  # noqa: BLE001 - metrics never break a task
                log.debug("metrics.account_failed", error=type(exc).__name__)

    def on_failure(self, sender: Any = None, **_: Any) -> None:
        if self._ours(sender):
            CELERY_TASKS.labels(task=getattr(sender, "name", "unknown"), state="failed").inc()

    def on_retry(self, sender: Any = None, **_: Any) -> None:
        if self._ours(sender):
            CELERY_TASKS.labels(task=getattr(sender, "name", "unknown"), state="retried").inc()


def connect_metrics(context: WorkerContext, disconnects: list[Any]) -> None:
    """Connect the metric hooks of ``context``'s app; ``disconnects`` learns how to undo it."""
    hooks = _Hooks(context)
    connect(before_task_publish, _on_publish, disconnects)
    connect(task_prerun, hooks.on_prerun, disconnects)
    connect(task_postrun, hooks.on_postrun, disconnects)
    connect(task_failure, hooks.on_failure, disconnects)
    connect(task_retry, hooks.on_retry, disconnects)
    connect(worker_process_shutdown, _on_process_shutdown, disconnects)


def _account_job(services: Services, name: str, args: Any, started: _Started) -> None:
    """Read back what a pipeline task changed and record the job's outcome metrics.

    One query per task: the job, joined with its summary after a summarize task.  (A
    delivery's end is counted where the deliver stage records it.)
    """
    job_id = _uuid(args[0]) if args else None
    if job_id is None or started.wall is None:
        return
    statement = select(Job.status, Job.finished_at, Job.created_at, Job.origin, Job.params).where(
        Job.id == job_id
    )
    if name == SUMMARIZE:
        statement = statement.add_columns(
            Summary.model,
            Summary.backend,
            Summary.created_at,
            Summary.prompt_tokens,
            Summary.completion_tokens,
            Summary.cost_usd,
        ).outerjoin(Summary, Summary.job_id == Job.id)
    with reading_session(services.session_factory) as session:
        row = session.execute(statement).first()
    if row is None:
        return
    status, finished_at, created_at, origin, params = row[:5]
    if JobStatus(status) in FINISHED and finished_at is not None and finished_at >= started.wall:
        kind = str((params or {}).get("format") or "structured")
        REQUESTS.labels(type=kind, status=status).inc()
        JOBS_FINISHED.labels(origin=origin, status=status).inc()
        elapsed = (finished_at - created_at).total_seconds()
        PROCESSING_SECONDS.labels(type=kind).observe(max(0.0, elapsed))
    if name == SUMMARIZE:
        model, backend, summary_at, prompt_tokens, completion_tokens, cost = row[5:11]
        if summary_at is not None and summary_at >= started.wall:
            model = model or backend
            TOKENS.labels(model=model, kind="prompt").inc(prompt_tokens or 0)
            TOKENS.labels(model=model, kind="completion").inc(completion_tokens or 0)
            COST_USD.labels(model=model).inc(float(cost or 0))
