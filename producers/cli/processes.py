"""Long-running processes started by the CLI: Celery worker, beat, and Flower."""

from __future__ import annotations

from shared.jobs import publisher_app
from shared.settings import Settings

__all__ = ["run_beat", "run_flower", "run_worker"]


def run_worker(
    settings: Settings, *, queues: list[str], concurrency: int, pool: str, hostname: str | None
) -> None:
    """Run a Celery worker on ``queues`` until it is stopped (SIGTERM: warm shutdown)."""
    from workers import resources
    from workers.app import configure

    app = configure(settings)
    resources.prepare(settings, app)
    argv = [
        "worker",
        f"--queues={','.join(q.strip() for q in queues if q.strip())}",
        f"--concurrency={concurrency}",
        f"--pool={pool}",
        "--events",
        f"--loglevel={settings.log_level}",
        "--without-mingle",
    ]
    if hostname:
        argv.append(f"--hostname={hostname}")
    app.worker_main(argv)


def run_beat(settings: Settings) -> None:
    """Run Celery beat with the fixed maintenance schedule (it only publishes by task name)."""
    app = publisher_app(settings.broker_url, visibility_timeout=settings.visibility_timeout)
    app.start(
        [
            "beat",
            f"--loglevel={settings.log_level}",
            f"--schedule={settings.data_dir / 'celerybeat-schedule'}",
        ]
    )


def run_flower(settings: Settings, *, port: int, address: str, basic_auth: str) -> None:
    """Run Flower against the broker, requiring basic auth."""
    app = publisher_app(settings.broker_url, visibility_timeout=settings.visibility_timeout)
    app.start(["flower", f"--port={port}", f"--address={address}", f"--basic-auth={basic_auth}"])
