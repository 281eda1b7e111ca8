"""Per-process resources of a worker: built after fork, closed at shutdown, never at import.

``summarybot worker`` calls :func:`prepare` with the validated settings before Celery starts;
each pool process then builds its :class:`~shared.pipeline.services.Services` in
``worker_process_init`` (prefork children) or ``worker_init`` (solo/threads pools), and the
embedded mode installs the ones it built itself with :func:`install`.
"""

from __future__ import annotations

import sys
from typing import Any

import redis
from celery import Celery
from celery.signals import worker_init, worker_process_init, worker_process_shutdown
from prometheus_client import REGISTRY
from sqlalchemy import Engine

from shared.cache import MemoryMessageCache, MessageCache, RedisMessageCache
from shared.db.engine import make_engine, make_sessionmaker
from shared.delivery.runtime import build_runtime
from shared.discord.factory import build_discord_client
from shared.jobs import CeleryEnqueuer
from shared.llm.client import LLMClient
from shared.llm.config import load_llm_settings
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

__all__ = ["build_services", "close_services", "current", "install", "prepare"]

_settings: Settings | None = None
_app: Celery | None = None
_services: Services | None = None
_engine: Engine | None = None


def build_services(
    settings: Settings, app: Celery, *, cache: MessageCache | None = None
) -> tuple[Services, Engine]:
    """Build every resource a pipeline stage needs; the caller owns (and closes) the engine."""
    engine = make_engine(settings.effective_database_url)
    redis_client = (
        redis.Redis.from_url(settings.redis_url, health_check_interval=25)
        if settings.redis_url
        else None
    )
    if cache is None:
        if redis_client is not None:
            cache = RedisMessageCache(redis_client, ttl=settings.message_cache_ttl)
        else:
            cache = MemoryMessageCache(ttl=settings.message_cache_ttl)
    summarizer, llm = _build_summarizer(settings, redis_client)
    discord = (
        build_discord_client(settings.discord_settings(), None, redis_client, REGISTRY)
        if settings.discord_configured
        else None
    )
    services = Services(
        settings=settings,
        session_factory=make_sessionmaker(engine),
        cache=cache,
        enqueuer=CeleryEnqueuer(app),
        summarizer=summarizer,
        console=sys.stdout,
        llm=llm,
        discord=discord,
        delivery=build_runtime(settings, discord=discord),
    )
    return services, engine


def _build_summarizer(
    settings: Settings, redis_client: redis.Redis[bytes] | None
) -> tuple[Summarizer, LLMBackend | None]:
    """The offline summarizer, and the LLM backend when an LLM endpoint is configured.

    With Redis the LLM's rate limits, circuit breaker, notes cache and job scratch are shared
    by every worker; without it (embedded mode) they are in-process.
    """
    llm_settings = load_llm_settings(settings)
    if llm_settings is None:
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


def prepare(settings: Settings, app: Celery) -> None:
    """Remember settings and app for the pool processes about to be started."""
    global _settings, _app
    _settings, _app = settings, app


def install(services: Services) -> None:
    """Make ``services`` the ones tasks of this process use (embedded mode and tests)."""
    global _services
    _services = services


def current() -> Services:
    """The services of this process; fails clearly when the worker was not prepared."""
    if _services is None:
        raise RuntimeError(
            "worker resources were not built: start workers with `summarybot worker`"
        )
    return _services


def close_services() -> None:
    """Dispose of the engine built by this process (connections are not shared with a fork)."""
    global _services, _engine
    if _engine is not None:
        _engine.dispose()
    _services, _engine = None, None


def _build_for_this_process(**_: Any) -> None:
    global _services, _engine
    if _settings is None or _app is None or _services is not None:
        return
    configure_from_settings(_settings)
    _services, _engine = build_services(_settings, _app)


def _on_worker_init(sender: Any = None, **_: Any) -> None:
    pool = getattr(sender, "pool_cls", None)
    pool_name = pool if isinstance(pool, str) else getattr(pool, "__module__", "")
    if not str(pool_name).endswith("prefork"):
        _build_for_this_process()


def _on_process_init(**_: Any) -> None:
    global _services, _engine
    # A forked child must not reuse the parent's connections.
    _services, _engine = None, None
    _build_for_this_process()


def _on_process_shutdown(**_: Any) -> None:
    close_services()


worker_init.connect(_on_worker_init)
worker_process_init.connect(_on_process_init)
worker_process_shutdown.connect(_on_process_shutdown)
