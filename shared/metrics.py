"""Prometheus metrics of every process (API, bot, workers, beat), multiprocess-safe.

Names follow the seed service where it had them (``summary_requests_total{type,status}``,
``summary_processing_seconds``, ``job_queue_size``); the rest describe the pipeline: per-stage
latency, tokens, cost, rate-limit waits, 429s, deliveries and Celery task outcomes.  Labels
are small closed sets (origins, stages, task names, models, kinds): never ids, so cardinality
stays bounded and nothing personal is exported.

Prefork workers run tasks in child processes; each child writes its samples to files under
``PROMETHEUS_MULTIPROC_DIR`` (prometheus_client's multiprocess mode, chosen when that variable is
set *before* the process imports prometheus_client), and the worker's main process serves the
sum of them (:func:`start_worker_metrics_server`).  Without the variable every process serves
its own samples, which is right for the API and the bot (one process each).
"""

from __future__ import annotations

import contextlib
import os
import re
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from threading import Thread
from typing import Any
from wsgiref.simple_server import WSGIServer

import structlog
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
    multiprocess,
    start_http_server,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from shared.broker import QueueHead, head_of, queue_keys

__all__ = [
    "CELERY_TASKS",
    "CELERY_TASK_SECONDS",
    "COST_USD",
    "DELIVERIES",
    "DIGEST_RUNS",
    "JOBS_FINISHED",
    "PROCESSING_SECONDS",
    "QUEUES",
    "RATE_LIMITED",
    "RATE_LIMIT_WAIT",
    "REQUESTS",
    "STAGE_SECONDS",
    "TOKENS",
    "QueueSizeCollector",
    "clean_multiprocess_dir",
    "count_job_end",
    "count_summary_spend",
    "exposition_registry",
    "multiprocess_enabled",
    "observe_rate_limit_wait",
    "record_rate_limited",
    "render_metrics",
    "start_worker_metrics_server",
]

log = structlog.get_logger(__name__)

#: The Celery queues whose length ``job_queue_size`` reports.
QUEUES = ("fetch", "summarize", "deliver", "maintenance")

_DURATION_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600)
_WAIT_BUCKETS = (0.001, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)

REQUESTS = Counter(
    "summary_requests",
    "Summary jobs by summary type (format) and outcome; the API also counts accepted and "
    "duplicate submissions under this name",
    ["type", "status"],
)
PROCESSING_SECONDS = Histogram(
    "summary_processing_seconds",
    "Time from job submission to its end, by summary type (format)",
    ["type"],
    buckets=_DURATION_BUCKETS,
)
JOBS_FINISHED = Counter(
    "summary_jobs_finished",
    "Jobs that ended, by origin (bot, api, digest, cli) and status (completed, failed, cancelled)",
    ["origin", "status"],
)
STAGE_SECONDS = Histogram(
    "summary_stage_seconds",
    "Run time of one pipeline stage task (fetch, summarize, deliver)",
    ["stage"],
    buckets=_DURATION_BUCKETS,
)
TOKENS = Counter(
    "summary_llm_tokens",
    "LLM tokens spent on stored summaries, by model and kind (prompt, completion)",
    ["model", "kind"],
)
COST_USD = Counter("summary_llm_cost_usd", "Estimated LLM cost of stored summaries", ["model"])
RATE_LIMIT_WAIT = Histogram(
    "summary_rate_limit_wait_seconds",
    "Time spent waiting on a shared rate limiter before a call (discord, llm, webhook, api)",
    ["limiter"],
    buckets=_WAIT_BUCKETS,
)
RATE_LIMITED = Counter(
    "summary_rate_limited_responses",
    "HTTP 429 answers received from a remote service, by service and scope",
    ["service", "scope"],
)
DELIVERIES = Counter(
    "summary_deliveries",
    "Deliveries that ended, by target kind and status (sent, failed)",
    ["kind", "status"],
)
DIGEST_RUNS = Counter(
    "summary_digest_runs",
    "Digest runs created by the dispatcher, and schedules it had to pause",
    ["outcome"],
)
CELERY_TASKS = Counter(
    "summary_celery_tasks",
    "Celery task executions by task name and state (started, succeeded, failed, retried)",
    ["task", "state"],
)
CELERY_TASK_SECONDS = Histogram(
    "summary_celery_task_seconds",
    "Run time of Celery tasks by name",
    ["task"],
    buckets=_DURATION_BUCKETS,
)


def count_job_end(*, origin: str, status: str, kind: str, seconds: float) -> None:
    """Count a job that has just ended (``status``), ``seconds`` after it was submitted.

    ``kind`` is its summary type (the job's ``format``).  Called once per end, where the move
    that ends the job is committed (:mod:`shared.lifecycle`).
    """
    REQUESTS.labels(type=kind, status=status).inc()
    JOBS_FINISHED.labels(origin=origin, status=status).inc()
    PROCESSING_SECONDS.labels(type=kind).observe(max(0.0, seconds))


def count_summary_spend(
    *, model: str, prompt_tokens: int, completion_tokens: int, cost_usd: float
) -> None:
    """Count the tokens and cost of a summary that has just been stored."""
    TOKENS.labels(model=model, kind="prompt").inc(prompt_tokens)
    TOKENS.labels(model=model, kind="completion").inc(completion_tokens)
    COST_USD.labels(model=model).inc(cost_usd)


def observe_rate_limit_wait(limiter: str, seconds: float) -> None:
    """Record how long a call waited for a shared limiter (``discord``, ``llm``, …)."""
    RATE_LIMIT_WAIT.labels(limiter=limiter).observe(max(0.0, seconds))


def record_rate_limited(service: str, scope: str = "route") -> None:
    """Count one 429 answer from ``service`` (``discord``, ``openai``, ``webhook``)."""
    RATE_LIMITED.labels(service=service, scope=scope).inc()


def multiprocess_enabled() -> bool:
    """True when this process writes its samples to ``PROMETHEUS_MULTIPROC_DIR`` files."""
    return bool(os.environ.get("PROMETHEUS_MULTIPROC_DIR"))


class QueueSizeCollector(Collector):
    """``job_queue_size{queue}``: messages waiting in each Celery queue, read at scrape time.

    Each queue's lists (:func:`shared.broker.queue_keys`, one per priority step) are summed.
    ``job_queue_oldest_seconds{queue}`` is how long the oldest of them has waited (0 when the
    queue is empty; absent when that message does not say when it was published): how far
    behind the queue's workers are, which a length alone does not tell.  ``job_unacked_tasks``
    counts messages delivered to a worker and not acknowledged yet.
    """

    def __init__(
        self,
        client: Any,
        queues: Sequence[str] = QUEUES,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._client = client
        self._queues = tuple(queues)
        self._clock = clock

    def _read(self) -> tuple[dict[str, tuple[int, QueueHead]], int]:
        keys = {queue: queue_keys(queue) for queue in self._queues}
        pipe = self._client.pipeline(transaction=False)
        for names in keys.values():
            for name in names:
                pipe.llen(name)
                pipe.lindex(name, -1)
        pipe.hlen("unacked")
        values = pipe.execute()
        queues, index = {}, 0
        for queue, names in keys.items():
            part = values[index : index + 2 * len(names)]
            queues[queue] = (int(sum(part[0::2])), head_of(part[1::2]))
            index += len(part)
        return queues, int(values[index])

    def collect(self) -> Iterator[GaugeMetricFamily]:
        """Yield the queue lengths (nothing when Redis cannot be reached)."""
        size = GaugeMetricFamily(
            "job_queue_size", "Messages waiting in each Celery queue", labels=["queue"]
        )
        oldest = GaugeMetricFamily(
            "job_queue_oldest_seconds",
            "How long the oldest message waiting in each Celery queue has waited",
            labels=["queue"],
        )
        unacked = GaugeMetricFamily(
            "job_unacked_tasks", "Messages delivered to workers and not yet acknowledged"
        )
        try:
            queues, pending = self._read()
        except Exception as exc:  # noqa: BLE001 - a scrape must not fail because Redis is down
            log.warning("metrics.queue_size_unavailable", error=type(exc).__name__)
        else:
            now = self._clock()
            for queue, (length, head) in queues.items():
                size.add_metric([queue], length)
                if head.empty:
                    oldest.add_metric([queue], 0.0)
                elif head.published_at is not None:
                    oldest.add_metric([queue], max(0.0, now - head.published_at))
            unacked.add_metric([], pending)
        yield size
        yield oldest
        yield unacked


def exposition_registry(*, redis_client: Any = None) -> CollectorRegistry:
    """The registry to serve: every process's samples in multiprocess mode, else this one's.

    With ``redis_client`` the queue lengths are added (read on each scrape).
    """
    if multiprocess_enabled():
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    else:
        registry = CollectorRegistry()
        registry.register(_Forward(REGISTRY))
    if redis_client is not None:
        registry.register(QueueSizeCollector(redis_client))
    return registry


class _Forward(Collector):
    """Serves another registry's metrics next to extra collectors without re-registering."""

    def __init__(self, source: CollectorRegistry) -> None:
        self._source = source

    def collect(self) -> Iterable[Any]:
        return self._source.collect()


def render_metrics(*, redis_client: Any = None) -> tuple[bytes, str]:
    """The text exposition and its content type, for an HTTP ``/metrics`` route (API, bot)."""
    return generate_latest(exposition_registry(redis_client=redis_client)), CONTENT_TYPE_LATEST


_PID_FILE = re.compile(r"_(\d+)\.db$")


def clean_multiprocess_dir(*, keep_pids: Iterable[int] = ()) -> int:
    """Remove sample files of processes that are gone; returns how many were removed.

    Run it in a worker's main process before the pool starts: files left by a previous run
    would otherwise be added to this run's counters.
    """
    directory = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if not directory:
        return 0
    keep = {os.getpid(), *keep_pids}
    removed = 0
    for path in Path(directory).glob("*.db"):
        match = _PID_FILE.search(path.name)
        if match and int(match.group(1)) in keep:
            continue
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
            removed += 1
    return removed


def start_worker_metrics_server(
    port: int,
    *,
    addr: str = "127.0.0.1",
    redis_client: Any = None,
) -> tuple[WSGIServer, Thread]:
    """Serve ``/metrics`` of this worker (all its pool processes) on ``addr:port``.

    Call it once, in the worker's main process.  ``port`` 0 picks a free port (read it from
    ``server.server_port``).
    """
    registry = exposition_registry(redis_client=redis_client)
    server, thread = start_http_server(port, addr=addr, registry=registry)
    log.info(
        "metrics.serving",
        port=server.server_port,
        multiprocess=multiprocess_enabled(),
    )
    return server, thread
