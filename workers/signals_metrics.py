"""Celery signal hooks: task metrics, job outcome metrics, trace-id propagation.

:func:`connect_metrics` connects the hooks of one worker app (called by
:func:`workers.app.create_worker_app`; nothing is connected at import).  They never change what
a task does, and a failing hook only logs: metrics must not break the pipeline.

- ``before_task_publish``: every message carries a ``trace_id`` header, the producer's (bound in
  ``structlog.contextvars``) or the running task's, so a job's tasks share one trace id.
- ``task_prerun``/``task_postrun``/``task_failure``/``task_retry``: counts and run times per task
  name and per-stage latency.  What a task did to its job is counted where it is written, with
  no read-back: a job's end by :mod:`shared.lifecycle`, a stored summary's tokens and cost by
  :func:`shared.pipeline.finish.persist_summary`, a delivery's end by the deliver stage.
- ``worker_process_shutdown``: marks a prefork child's samples dead (multiprocess mode).

The ``/metrics`` endpoint itself is started by ``summarybot worker`` before the pool starts
(:func:`shared.metrics.start_worker_metrics_server`), so a busy port stops the start.
"""

from __future__ import annotations

import os
import time
from typing import Any

from celery.signals import (
    before_task_publish,
    task_failure,
    task_postrun,
    task_prerun,
    task_retry,
    worker_process_shutdown,
)
from prometheus_client import multiprocess

from shared.jobs import DELIVER, FETCH, SUMMARIZE
from shared.metrics import (
    CELERY_TASK_SECONDS,
    CELERY_TASKS,
    STAGE_SECONDS,
    multiprocess_enabled,
)
from shared.metrics_logging import TRACE_HEADER, current_trace_id, new_trace_id
from workers.context import WorkerContext, connect

__all__ = ["STAGES", "connect_metrics"]

#: Pipeline task name → stage label.
STAGES = {FETCH: "fetch", SUMMARIZE: "summarize", DELIVER: "deliver"}


def _on_publish(headers: dict[str, Any] | None = None, **_: Any) -> None:
    if headers is not None and not headers.get(TRACE_HEADER):
        headers[TRACE_HEADER] = current_trace_id() or new_trace_id()


def _on_process_shutdown(**_: Any) -> None:
    if multiprocess_enabled():
        multiprocess.mark_process_dead(os.getpid())  # type: ignore[no-untyped-call]


class _Hooks:
    """The task hooks of one worker app; tasks of other apps in the process are ignored."""

    def __init__(self, context: WorkerContext) -> None:
        self.context = context
        #: Task id → when it started (monotonic seconds).
        self.started: dict[str, float] = {}

    def _ours(self, task: Any) -> bool:
        return getattr(task, "app", None) is self.context.app

    def on_prerun(self, task_id: str = "", task: Any = None, **_: Any) -> None:
        if not self._ours(task):
            return
        CELERY_TASKS.labels(task=getattr(task, "name", "unknown"), state="started").inc()
        self.started[task_id] = time.monotonic()

    def on_postrun(
        self,
        task_id: str = "",
        task: Any = None,
        state: str | None = None,
        **_: Any,
    ) -> None:
        if not self._ours(task):
            return
        name = getattr(task, "name", "unknown")
        started = self.started.pop(task_id, None)
        if started is None:
            return
        elapsed = time.monotonic() - started
        CELERY_TASK_SECONDS.labels(task=name).observe(elapsed)
        if state == "SUCCESS":
            CELERY_TASKS.labels(task=name, state="succeeded").inc()
        if name in STAGES:
            STAGE_SECONDS.labels(stage=STAGES[name]).observe(elapsed)

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
