"""Long-running processes started by the CLI: Celery worker, beat, and Flower."""

from __future__ import annotations

import structlog

from shared.errors import ConfigError
from shared.jobs import publisher_app
from shared.settings import Settings, ensure_data_dir

__all__ = ["default_node_name", "run_beat", "run_flower", "run_worker"]

log = structlog.get_logger(__name__)


def default_node_name(queues: list[str]) -> str:
    """A node name unique per queue set on a host (``fetch-summarize@%h``), so Flower lists
    every worker of a machine instead of one ``celery@%h``."""
    return f"{'-'.join(queues) or 'worker'}@%h"


def run_worker(
    settings: Settings, *, queues: list[str], concurrency: int, pool: str, hostname: str | None
) -> None:
    """Run a Celery worker on ``queues`` until it is stopped (SIGTERM: warm shutdown).

    ``/metrics`` is served from this (main) process when ``METRICS_PORT`` is set; a port that
    is taken, or a resource the tasks need that cannot be built, raises :class:`ConfigError`
    before the worker starts.
    """
    from shared.metrics import clean_multiprocess_dir, start_worker_metrics_server
    from workers.app import create_worker_app

    names = [q.strip() for q in queues if q.strip()]
    worker = create_worker_app(settings)
    # What every pool process builds for its tasks is built once here, and closed before the
    # pool forks: a setting that cannot work (an unreadable key or token file, a missing
    # recording) stops the worker now, with one line, instead of failing each pool process.
    worker.context.build()
    worker.context.close()
    worker.context.serving = True
    removed = clean_multiprocess_dir()
    if removed:
        log.info("metrics.stale_files_removed", files=removed)
    server = None
    if settings.metrics.port is not None:
        import redis

        client = redis.Redis.from_url(settings.redis_url) if settings.redis_url else None
        try:
            server, _ = start_worker_metrics_server(
                settings.metrics.port, addr=settings.metrics.host, redis_client=client
            )
        except OSError as exc:
            raise ConfigError(
                f"METRICS_PORT: {settings.metrics.port} on {settings.metrics.host} cannot be "
                f"served ({exc.strerror}); pick a free port, or unset METRICS_PORT"
            ) from None
    argv = [
        "worker",
        f"--queues={','.join(names)}",
        f"--concurrency={concurrency}",
        f"--pool={pool}",
        "--events",
        f"--loglevel={settings.log_level}",
        "--without-mingle",
        f"--hostname={hostname or default_node_name(names)}",
    ]
    try:
        worker.app.worker_main(argv)
    finally:
        if server is not None:
            server.shutdown()
            server.server_close()
        worker.close()


def run_beat(settings: Settings) -> None:
    """Run Celery beat with the fixed maintenance schedule (it only publishes by task name).

    Its schedule file lives in ``SUMMARYBOT_DATA_DIR``, created here when missing (Celery's
    shelve would otherwise die with a traceback); :class:`ConfigError` when it cannot be.
    """
    from celery.signals import before_task_publish

    from shared.broker import stamp_published_at

    data_dir = ensure_data_dir(settings)
    app = publisher_app(settings.broker_url, visibility_timeout=settings.visibility_timeout)
    # Its sweeps say when they were published, as the enqueuer's messages do, so the
    # maintenance queue's lag shows in job_queue_oldest_seconds like the others'.
    before_task_publish.connect(stamp_published_at, weak=False)
    app.start(
        [
            "beat",
            f"--loglevel={settings.log_level}",
            f"--schedule={data_dir / 'celerybeat-schedule'}",
        ]
    )


def run_flower(settings: Settings, *, port: int, address: str, basic_auth: str) -> None:
    """Run Flower against the broker, requiring basic auth."""
    app = publisher_app(settings.broker_url, visibility_timeout=settings.visibility_timeout)
    app.start(["flower", f"--port={port}", f"--address={address}", f"--basic-auth={basic_auth}"])
