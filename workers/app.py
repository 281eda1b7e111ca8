"""The Celery application: created bare at import, configured from settings at start.

Task modules register on :data:`app` when imported; :func:`configure` applies ``celeryconfig``
plus the broker and time bounds from the validated settings.  No connection is opened and no
setting is read until an entry point calls :func:`configure`.
"""

from __future__ import annotations

from celery import Celery

import celeryconfig
from shared.settings import Settings

__all__ = ["TASK_MODULES", "app", "configure"]

app = Celery("summarybot", set_as_current=False)

TASK_MODULES = (
    "workers.tasks.fetch",
    "workers.tasks.summarize",
    "workers.tasks.deliver",
    "workers.tasks.maintenance",
    "workers.tasks.delivery_sweep",
    "workers.signals_metrics",
)


def configure(settings: Settings) -> Celery:
    """Apply ``celeryconfig`` and the settings to :data:`app`, import tasks, return the app."""
    app.config_from_object(celeryconfig)
    app.conf.update(
        broker_url=settings.broker_url,
        result_backend=settings.result_backend,
        **celeryconfig.time_bounds(settings.visibility_timeout),
    )
    if settings.embedded:
        # Kombu's memory transport has no fanout (no events, no remote control); it polls, so
        # poll often: each stage hand-over would otherwise wait up to a second.
        app.conf.update(worker_send_task_events=False, task_send_sent_event=False)
        app.conf.broker_transport_options = {
            **app.conf.broker_transport_options,
            "polling_interval": 0.02,
        }
    # Celery resolves signatures (retries, canvas) through the *current* app; without this a
    # retry from a worker thread would publish through Celery's unconfigured default app.
    app.set_default()
    app.set_current()
    app.loader.import_default_modules()
    for module in TASK_MODULES:
        __import__(module)
    return app
