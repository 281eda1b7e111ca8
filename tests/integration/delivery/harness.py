"""Deliver workers in separate processes, the beat-like sweep, and publishing, for tests and the
delivery benchmark (real PostgreSQL, Redis, and ``summarybot worker`` processes)."""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from celery import Celery
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

import celeryconfig
from schema.models.jobs import Delivery
from shared.delivery.config import DeliverySettings
from shared.jobs import DELIVER, CeleryEnqueuer
from shared.settings import Settings, load_settings
from tests.integration.processes import CLI
from tests.support.process_groups import stop_process_groups
from tests.unit.delivery.helpers import make_services, redrive

__all__ = ["DeliverWorkers", "Sweeper", "counts", "deliver_env", "publisher"]


def deliver_env(
    database_url: str, redis_url: str, secret_key: str, data_dir: Path, **extra: str
) -> dict[str, str]:
    """Environment of the worker processes (and of the settings the test process loads)."""
    return {
        **os.environ,
        "DATABASE_URL": database_url,
        "REDIS_URL": redis_url,
        "SECRET_KEYS": secret_key,
        "SUMMARYBOT_DATA_DIR": str(data_dir),
        "LOG_FORMAT": "json",
        "LOG_LEVEL": "WARNING",
        "VISIBILITY_TIMEOUT": "60",
        "WEBHOOK_ALLOWED_HOSTS": "127.0.0.1",
        "DELIVERY_LEASE_SECONDS": "6",
        "DELIVERY_REDRIVE_GRACE_SECONDS": "4",
        "WEBHOOK_RETRY_SCHEDULE": "1,2,3,3,3,3,3,3,3,3,3,3,3,3,3,3,3,3,3,3",
        "WEBHOOK_RETRY_JITTER": "0.2",
        **extra,
    }


def settings_from(env: dict[str, str]) -> Settings:
    """The application settings the workers will read from ``env``."""
    return load_settings(
        database_url=env["DATABASE_URL"],
        redis_url=env["REDIS_URL"],
        secret_keys=env["SECRET_KEYS"],
        data_dir=env["SUMMARYBOT_DATA_DIR"],
        visibility_timeout=int(env["VISIBILITY_TIMEOUT"]),
    )


class DeliverWorkers:
    """``count`` ``summarybot worker -Q deliver`` processes that can be SIGKILLed and restarted."""

    def __init__(self, env: dict[str, str], logs: Path, *, count: int, concurrency: int) -> None:
        self.env, self.logs, self.concurrency = env, logs, concurrency
        self.procs: list[subprocess.Popen[bytes] | None] = [None] * count
        self.generation = [0] * count
        self.kills = 0
        for index in range(count):
            self.start(index)

    def start(self, index: int) -> None:
        """Start worker ``index`` (a new process)."""
        self.generation[index] += 1
        log = self.logs / f"deliver{index}-{self.generation[index]}.log"
        with log.open("wb") as handle:
            self.procs[index] = subprocess.Popen(
                [
                    *CLI,
                    "worker",
                    "-Q",
                    "deliver",
                    "-c",
                    str(self.concurrency),
                    "--hostname",
                    f"d{index}g{self.generation[index]}@%h",
                ],
                env=self.env,
                stdout=handle,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def kill(self, index: int) -> None:
        """SIGKILL worker ``index`` and its pool children, as the OOM killer would."""
        proc = self.procs[index]
        if proc is not None and proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)
            self.kills += 1

    def stop(self) -> None:
        """SIGTERM everything still running (then SIGKILL what does not stop)."""
        stop_process_groups(self.procs)


class Sweeper:
    """What beat does for delivery: run ``redrive_deliveries`` every ``interval`` seconds."""

    def __init__(
        self, settings: Settings, factory: sessionmaker[Session], app: Celery, interval: float
    ) -> None:
        self.services = make_services(settings, factory, enqueuer=CeleryEnqueuer(app))
        self.delivery = DeliverySettings.load(
            delivery_redrive_grace_seconds=4, delivery_lease_seconds=6
        )
        self.interval = interval
        self.passes = 0
        self.enqueued = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            report = redrive(self.services, self.delivery)
            self.passes += 1
            self.enqueued += report.enqueued

    def __enter__(self) -> Sweeper:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(10)


@contextmanager
def publisher(settings: Settings) -> Iterator[Celery]:
    """A Celery app configured like the workers' (routes, broker), to publish deliver tasks.

    A separate app, so the process-wide ``workers.app.app`` other tests configure is untouched.
    """
    app = Celery("delivery-test-publisher", set_as_current=False)
    app.config_from_object(celeryconfig)
    app.conf.update(
        broker_url=settings.broker_url,
        result_backend=settings.result_backend,
        **celeryconfig.time_bounds(settings.visibility_timeout),
    )
    try:
        yield app
    finally:
        app.close()


def publish(app: Celery, items: Sequence[tuple[uuid.UUID, uuid.UUID]]) -> None:
    """Enqueue one deliver task per ``(job_id, delivery_id)``."""
    enqueuer = CeleryEnqueuer(app)
    for job_id, item_id in items:
        enqueuer.enqueue(DELIVER, str(job_id), str(item_id))


def counts(factory: sessionmaker[Session], summary_ids: Sequence[uuid.UUID]) -> dict[str, int]:
    """Deliveries of these summaries by status."""
    with factory() as session:
        rows = session.execute(
            select(Delivery.status, func.count())
            .where(Delivery.summary_id.in_(list(summary_ids)))
            .group_by(Delivery.status)
        ).all()
    return {str(status): int(n) for status, n in rows}


def wait_until(predicate: Any, *, timeout: float, step: float = 0.25) -> bool:
    """Poll ``predicate`` until true or ``timeout`` seconds passed."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(step)
    return bool(predicate())
