"""Celery signal hooks: task metrics, job outcome metrics, trace-id propagation, exporter.

Importing this module connects the hooks (once per process).  They never change what a task
does, and a failing hook only logs: metrics must not break the pipeline.

- ``before_task_publish``: every message carries a ``trace_id`` header, the producer's (bound in
  ``structlog.contextvars``) or the running task's, so a job's tasks share one trace id.
- ``task_prerun``/``task_postrun``/``task_failure``/``task_retry``: counts and run times per task
  name, per-stage latency, and, read back from Postgres after each pipeline task, the job's end
  (``summary_requests_total``, ``summary_processing_seconds``), the tokens and cost of a stored
  summary, and each delivery that ended.
- ``worker_init`` (the worker's main process): removes sample files a previous run left in
  ``PROMETHEUS_MULTIPROC_DIR`` and, when ``METRICS_PORT`` is set, serves ``/metrics``
  (all pool processes summed, plus queue lengths from Redis).
"""

from __future__ import annotations

import os
import time
import uuid
from datetime import datetime
from typing import Any

import redis
import structlog
from celery.signals import (
    before_task_publish,
    task_failure,
    task_postrun,
    task_prerun,
    task_retry,
    worker_init,
    worker_process_shutdown,
)
from prometheus_client import multiprocess
from sqlalchemy import select

from schema.models.jobs import Delivery, DeliveryStatus, Job, JobStatus, Summary
from shared.jobs import DELIVER, FETCH, SUMMARIZE
from shared.lifecycle import FINISHED
from shared.metrics import (
    CELERY_TASK_SECONDS,
    CELERY_TASKS,
    COST_USD,
    DELIVERIES,
    JOBS_FINISHED,
    PROCESSING_SECONDS,
    REQUESTS,
    STAGE_SECONDS,
    TOKENS,
    clean_multiprocess_dir,
    multiprocess_enabled,
    start_worker_metrics_server,
)
from shared.metrics_logging import TRACE_HEADER, current_trace_id, new_trace_id
from shared.settings import load_settings
from workers import resources

__all__ = ["METRICS_PORT_ENV", "STAGES"]

log = structlog.get_logger(__name__)

#: Environment variable naming the port a worker serves ``/metrics`` on (unset: none).
METRICS_PORT_ENV = "METRICS_PORT"
#: Pipeline task name → stage label.
STAGES = {FETCH: "fetch", SUMMARIZE: "summarize", DELIVER: "deliver"}

_DELIVERY_DONE = {DeliveryStatus.SENT.value, DeliveryStatus.FAILED.value}


class _Started:
    __slots__ = ("delivery_status", "monotonic", "wall")

    def __init__(self, monotonic: float, wall: datetime | None, delivery_status: str | None):
        self.monotonic = monotonic
        self.wall = wall
        self.delivery_status = delivery_status


_started: dict[str, _Started] = {}


def _on_publish(headers: dict[str, Any] | None = None, **_: Any) -> None:
    if headers is not None and not headers.get(TRACE_HEADER):
        headers[TRACE_HEADER] = current_trace_id() or new_trace_id()


def _services() -> Any:
    try:
        return resources.current()
    except RuntimeError:
        return None


def _uuid(value: Any) -> uuid.UUID | None:
    try:
        return uuid.UUID(str(value))
    except ValueError:
        return None


def _on_prerun(task_id: str = "", task: Any = None, args: Any = (), **_: Any) -> None:
    name = getattr(task, "name", "unknown")
    CELERY_TASKS.labels(task=name, state="started").inc()
    services = _services() if name in STAGES else None
    wall = services.clock() if services is not None else None
    delivery_status = None
    if services is not None and name == DELIVER and len(args) > 1:
        delivery_id = _uuid(args[1])
        try:
            with services.session_factory() as session:
                delivery_status = session.scalar(
                    select(Delivery.status).where(Delivery.id == delivery_id)
                )
        except Exception as exc:  # noqa: BLE001 - metrics never break a task
            log.debug("metrics.prerun_failed", error=type(exc).__name__)
    _started[task_id] = _Started(time.monotonic(), wall, delivery_status)


def _account_job(name: str, args: Any, started: _Started) -> None:
    """Read back what a pipeline task changed and record the job's outcome metrics."""
    services = _services()
    job_id = _uuid(args[0]) if args else None
    if services is None or job_id is None or started.wall is None:
        return
    with services.session_factory() as session:
        job = session.get(Job, job_id)
        if job is None:
            return
        if (
            JobStatus(job.status) in FINISHED
            and job.finished_at is not None
            and job.finished_at >= started.wall
        ):
            kind = str((job.params or {}).get("format") or "structured")
            REQUESTS.labels(type=kind, status=job.status).inc()
            JOBS_FINISHED.labels(origin=job.origin, status=job.status).inc()
            elapsed = (job.finished_at - job.created_at).total_seconds()
            PROCESSING_SECONDS.labels(type=kind).observe(max(0.0, elapsed))
        if name == SUMMARIZE:
            summary = session.scalar(select(Summary).where(Summary.job_id == job_id))
            if summary is not None and summary.created_at >= started.wall:
                model = summary.model or summary.backend
                TOKENS.labels(model=model, kind="prompt").inc(summary.prompt_tokens or 0)
                TOKENS.labels(model=model, kind="completion").inc(summary.completion_tokens or 0)
                COST_USD.labels(model=model).inc(float(summary.cost_usd or 0))
        if name == DELIVER and len(args) > 1 and started.delivery_status not in _DELIVERY_DONE:
            delivery = session.get(Delivery, _uuid(args[1]))
            if delivery is not None and delivery.status in _DELIVERY_DONE:
                DELIVERIES.labels(kind=delivery.kind, status=delivery.status).inc()


def _on_postrun(
    task_id: str = "", task: Any = None, args: Any = (), state: str | None = None, **_: Any
) -> None:
    name = getattr(task, "name", "unknown")
    started = _started.pop(task_id, None)
    if started is None:
        return
    elapsed = time.monotonic() - started.monotonic
    CELERY_TASK_SECONDS.labels(task=name).observe(elapsed)
    if state == "SUCCESS":
        CELERY_TASKS.labels(task=name, state="succeeded").inc()
    if name in STAGES:
        STAGE_SECONDS.labels(stage=STAGES[name]).observe(elapsed)
        try:
            _account_job(name, args, started)
        except Exception as exc:  # noqa: BLE001 - metrics never break a task
            log.debug("metrics.account_failed", error=type(exc).__name__)


def _on_failure(sender: Any = None, **_: Any) -> None:
    CELERY_TASKS.labels(task=getattr(sender, "name", "unknown"), state="failed").inc()


def _on_retry(sender: Any = None, **_: Any) -> None:
    CELERY_TASKS.labels(task=getattr(sender, "name", "unknown"), state="retried").inc()


def _on_worker_init(**_: Any) -> None:
    removed = clean_multiprocess_dir()
    if removed:
        log.info("metrics.stale_files_removed", files=removed)
    port = os.environ.get(METRICS_PORT_ENV)
    if not port:
        return
    settings = load_settings()
    client = redis.Redis.from_url(settings.redis_url) if settings.redis_url else None
    start_worker_metrics_server(int(port), redis_client=client)


def _on_process_shutdown(**_: Any) -> None:
    if multiprocess_enabled():
        multiprocess.mark_process_dead(os.getpid())  # type: ignore[no-untyped-call]


before_task_publish.connect(_on_publish, weak=False)
task_prerun.connect(_on_prerun, weak=False)
task_postrun.connect(_on_postrun, weak=False)
task_failure.connect(_on_failure, weak=False)
task_retry.connect(_on_retry, weak=False)
worker_init.connect(_on_worker_init, weak=False)
worker_process_shutdown.connect(_on_process_shutdown, weak=False)
