"""The worker's Celery application, made from the settings root by :func:`create_worker_app`.

Nothing here runs at import: no app exists, no task is registered and no signal is connected
until an entry point (``summarybot worker``, the embedded mode, a test) calls
:func:`create_worker_app`.  Each call makes a fresh app with its own tasks (``shared=False``, so
no other app ever sees them), its own :class:`~workers.context.WorkerContext`, and its signal
hooks; :meth:`WorkerApp.close` disconnects the hooks and closes what the context built.

Producers never import this package: they publish by task name through
:func:`shared.jobs.publisher_app`.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import structlog
from celery import Celery
from celery.signals import worker_init, worker_process_init, worker_process_shutdown

import celeryconfig
from shared.broker import broker_settings
from shared.settings import Settings
from workers.context import WorkerContext, connect

__all__ = ["WorkerApp", "create_worker_app"]

log = structlog.get_logger(__name__)


@dataclass
class WorkerApp:
    """A configured worker app, the context its tasks read, and how to undo both."""

    app: Celery
    context: WorkerContext
    disconnects: list[Callable[[], None]] = field(default_factory=list, repr=False)

    def close(self) -> None:
        """Disconnect this app's signal hooks and close the services its context built."""
        while self.disconnects:
            self.disconnects.pop()()
        self.context.close()


def create_worker_app(settings: Settings) -> WorkerApp:
    """A Celery app configured from ``settings`` with every worker task registered."""
    from workers import signals_metrics
    from workers.tasks import deliver, fetch, maintenance, summarize

    app = Celery("summarybot", set_as_current=False)
    app.config_from_object(celeryconfig)
    app.conf.update(
        **broker_settings(settings.broker_url),
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
    context = WorkerContext(settings, app)
    for module in (fetch, summarize, deliver, maintenance):
        module.register(app, context)
    worker = WorkerApp(app, context)
    _connect_process_hooks(worker)
    signals_metrics.connect_metrics(worker.context, worker.disconnects)
    return worker


def _connect_process_hooks(worker: WorkerApp) -> None:
    context = worker.context

    def on_worker_init(sender: Any = None, **_: Any) -> None:
        if not context.serving or getattr(sender, "app", None) is not context.app:
            return
        _preload_tokenizers(context.settings, sender)
        pool = getattr(sender, "pool_cls", None)
        pool_name = pool if isinstance(pool, str) else getattr(pool, "__module__", "")
        if not str(pool_name).endswith("prefork"):
            context.build()

    def on_process_init(**_: Any) -> None:
        if context.serving:
            context.forget_parent()
            try:
                context.build()
            except Exception as exc:
                # The main process built the same at start, so something changed since (a
                # file removed): stop the worker, which would otherwise say it is ready and
                # hand every task to a process that cannot run it.
                log.critical("worker.process_init_failed", error=str(exc))
                context.failed = str(exc)
                os.kill(os.getppid(), signal.SIGTERM)
                raise

    def on_process_shutdown(**_: Any) -> None:
        if context.serving:
            context.close()

    connect(worker_init, on_worker_init, worker.disconnects)
    connect(worker_process_init, on_process_init, worker.disconnects)
    connect(worker_process_shutdown, on_process_shutdown, worker.disconnects)


def _preload_tokenizers(settings: Settings, controller: Any) -> None:
    """Load the LLM's token tables before the pool forks, in a worker that summarizes with an
    LLM (see :func:`shared.llm.tokens.preload`)."""
    from shared.llm.tokens import preload
    from workers.tasks.summarize import QUEUE

    if not settings.llm.configured:
        return
    queues = controller.app.amqp.queues.consume_from or controller.app.amqp.queues
    if QUEUE not in queues:
        return

    llm = settings.llm
    names = preload([llm.model, *([llm.fallback_model] if llm.fallback_model else [])])
    log.info("worker.tokenizers_loaded", encodings=list(names))
