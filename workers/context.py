"""The per-process context of a worker: built after fork, passed to every task, never global.

:func:`workers.app.create_worker_app` makes one :class:`WorkerContext` per app.  In a worker
process its :class:`~shared.pipeline.services.Services` are built in ``worker_process_init``
(prefork children) or ``worker_init`` (solo/threads pools) from the settings root, on one
:class:`~shared.context.ProcessContext` (one engine, one Redis pool, one Discord client with its
metrics on the process registry); the embedded mode and tests :meth:`~WorkerContext.install`
the services they built.  Tasks read them with :meth:`~WorkerContext.services`.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable
from typing import Any

import redis
from celery import Celery
from celery.utils.dispatch import Signal
from prometheus_client import REGISTRY, CollectorRegistry

from shared.cache import MemoryMessageCache, MessageCache, RedisMessageCache
from shared.context import open_process_context
from shared.delivery.runtime import build_runtime
from shared.jobs import CeleryEnqueuer
from shared.llm.client import LLMClient
from shared.logging import configure_from_settings
from shared.pipeline.services import Services, Summarizer
from shared.settings import Settings
from shared.summarize.extractive.summarizer import ExtractiveSummarizer
from shared.summarize.llm.backend import LLMBackend
from shared.summarize.llm.notes_cache import (
    MemoryNotesCache,
    MemoryScratchStore,
    NotesCache,
    RedisNotesCache,
    RedisScratchStore,
    ScratchStore,
)

__all__ = ["WorkerContext", "build_services", "connect"]


def build_services(
    settings: Settings,
    app: Celery,
    *,
    cache: MessageCache | None = None,
    registry: CollectorRegistry = REGISTRY,
) -> Services:
    """Build every resource a pipeline stage needs; the caller closes them (``.close()``)."""
    process = open_process_context(settings, enqueuer=CeleryEnqueuer(app), registry=registry)
    redis_client: redis.Redis[bytes] | None = process.redis
    if cache is None:
        if redis_client is not None:
            cache = RedisMessageCache(redis_client, ttl=settings.message_cache_ttl)
        else:
            cache = MemoryMessageCache(ttl=settings.message_cache_ttl)
    summarizer, llm = _build_summarizer(settings, redis_client)
    services = Services(
        settings=settings,
        session_factory=process.session_factory,
        cache=cache,
        enqueuer=process.enqueuer,
        summarizer=summarizer,
        console=sys.stdout,
        llm=llm,
        discord=process.discord,
        delivery=build_runtime(settings, discord=process.discord),
        closers=[process.close],
    )
    if llm is not None:
        services.closers.append(llm.close)
    return services


def _build_summarizer(
    settings: Settings, redis_client: redis.Redis[bytes] | None
) -> tuple[Summarizer, LLMBackend | None]:
    """The offline summarizer, and the LLM backend when an LLM endpoint is configured.

    With Redis the LLM's rate limits, circuit breaker, notes cache and job scratch are shared
    by every worker; without it (embedded mode) they are in-process.
    """
    llm_settings = settings.llm
    if not llm_settings.configured:
        return ExtractiveSummarizer(), None
    notes_ttl = int(llm_settings.notes_cache_days * 86400)
    notes: NotesCache
    scratch: ScratchStore
    if redis_client is not None:
        client = LLMClient.shared(llm_settings, redis_client)
        notes = RedisNotesCache(redis_client, ttl=notes_ttl)
        scratch = RedisScratchStore(redis_client, ttl=settings.message_cache_ttl)
    else:
        client = LLMClient.embedded(llm_settings)
        notes = MemoryNotesCache(ttl=notes_ttl)
        scratch = MemoryScratchStore()
    return ExtractiveSummarizer(), LLMBackend(client, notes=notes, scratch=scratch)


def connect(signal: Signal, receiver: Callable[..., Any], disconnects: list[Any]) -> None:
    """Connect ``receiver`` to a Celery signal (strongly) and remember how to disconnect it."""
    signal.connect(receiver, weak=False)
    disconnects.append(lambda: signal.disconnect(receiver))


class WorkerContext:
    """The services of this process's tasks (see module docstring)."""

    def __init__(self, settings: Settings, app: Celery) -> None:
        self.settings = settings
        self.app = app
        #: Set by ``summarybot worker``: this process's pool builds its own services.
        self.serving = False
        self._services: Services | None = None
        self._built: Services | None = None
        self._lock = threading.Lock()
        #: Why this (pool) process could not build its services, if it could not.
        self.failed: str | None = None

    def services(self) -> Services:
        """The services of this process; fails clearly when none were built or installed."""
        services = self._services
        if services is None:
            if self.failed is not None:
                raise RuntimeError(f"this worker process could not start: {self.failed}")
            raise RuntimeError(
                "worker resources were not built: start workers with `summarybot worker`"
            )
        return services

    @property
    def ready(self) -> bool:
        """True once services were built or installed."""
        return self._services is not None

    def install(self, services: Services | None) -> None:
        """Use ``services`` for this process's tasks (embedded mode, tests); None forgets them.

        The caller keeps ownership: :meth:`close` does not close installed services.
        """
        with self._lock:
            self._services = services

    def build(self) -> Services:
        """Build this process's services from the settings (a worker process after fork)."""
        with self._lock:
            if self._services is None:
                configure_from_settings(self.settings)
                self._services = self._built = build_services(self.settings, self.app)
            return self._services

    def forget_parent(self) -> None:
        """In a forked child: drop (without closing) what the parent built; its sockets are
        the parent's."""
        with self._lock:
            self._services = self._built = None

    def close(self) -> None:
        """Close the services this context built."""
        with self._lock:
            built, self._built = self._built, None
            if self._services is built:
                self._services = None
        if built is not None:
            built.close()
