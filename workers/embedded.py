"""A Celery worker inside the current process, for the embedded (no Redis) mode.

Kombu's ``memory://`` transport passes messages only between threads of one process, so the
CLI runs the real Celery consumer — routing, acks, retries with countdowns, the task
decorator — in a background thread with the ``threads`` pool, and publishes to it from the main
thread.  Nothing survives the process: that is what Redis mode is for.
"""

from __future__ import annotations

import threading
from types import TracebackType
from typing import Any

from celery import Celery
from celery.result import _set_task_join_will_block
from celery.worker import WorkController

import celeryconfig

__all__ = ["EmbeddedWorker"]


class _ReadyWorkController(WorkController):  # type: ignore[misc]
    """A WorkController that says when its consumer is ready."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.ready = threading.Event()
        super().__init__(*args, **kwargs)

    def on_consumer_ready(self, consumer: Any) -> None:
        super().on_consumer_ready(consumer)
        self.ready.set()


class EmbeddedWorker:
    """Context manager running a threads-pool worker on every queue until exit."""

    def __init__(self, app: Celery, *, concurrency: int = 2, ready_timeout: float = 30.0):
        self._app = app
        self._concurrency = concurrency
        self._ready_timeout = ready_timeout
        self._thread: threading.Thread | None = None
        self._controller: _ReadyWorkController | None = None

    def __enter__(self) -> EmbeddedWorker:
        self._controller = _ReadyWorkController(
            app=self._app,
            concurrency=self._concurrency,
            pool="threads",
            queues=list(celeryconfig.QUEUES),
            hostname="embedded@localhost",
            without_heartbeat=True,
            without_mingle=True,
            without_gossip=True,
            loglevel="WARNING",
        )
        self._thread = threading.Thread(
            target=self._controller.start, name="summarybot-embedded-worker", daemon=True
        )
        self._thread.start()
        if not self._controller.ready.wait(self._ready_timeout):
            raise RuntimeError("the embedded worker did not start")
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._controller is not None:
            self._controller.stop(in_sighandler=False)
            if self._thread is not None:
                self._thread.join(15)
            # A started worker marks the process as one where joining a result would block;
            # once it is gone this process is a plain producer again.
            _set_task_join_will_block(False)
