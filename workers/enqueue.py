"""Publish tasks by name on the Celery broker (the producers' side of ``shared.jobs``)."""

from __future__ import annotations

from celery import Celery

__all__ = ["CeleryEnqueuer"]


class CeleryEnqueuer:
    """:class:`shared.jobs.Enqueuer` over Celery's ``send_task``; routes pick the queue."""

    def __init__(self, app: Celery) -> None:
        self._app = app

    def enqueue(self, task_name: str, *args: str) -> None:
        """Publish ``task_name(*args)``; the route in ``celeryconfig`` picks its queue."""
        # No result is ever read; without ignore_result Celery subscribes to a result
        # channel per task and never drops it.
        self._app.send_task(task_name, args=list(args), ignore_result=True)
