"""A worker app with its services, run in this process on the embedded broker (for tests)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

from shared.pipeline.services import Services
from shared.settings import Settings
from workers.app import WorkerApp, create_worker_app
from workers.context import build_services
from workers.embedded import EmbeddedWorker

__all__ = ["embedded_worker"]


@contextmanager
def embedded_worker(
    settings: Settings,
    *,
    concurrency: int = 2,
    prepare: Callable[[WorkerApp, Services], None] | None = None,
) -> Iterator[tuple[WorkerApp, Services]]:
    """A worker app made from ``settings``, its services built and installed, consuming every
    queue in a thread until the block ends; then everything is closed.

    ``prepare`` runs before the consumer starts (register extra tasks, swap a service).
    """
    worker = create_worker_app(settings)
    services = build_services(settings, worker.app)
    worker.context.install(services)
    try:
        if prepare is not None:
            prepare(worker, services)
        with EmbeddedWorker(worker.app, concurrency=concurrency):
            yield worker, services
    finally:
        worker.close()
        services.close()
