"""The resources of one process, built once at its start and passed to whatever needs them.

Every entry point (a worker process after fork, the API's lifespan, the bot's setup, a CLI
command, the embedded mode) builds one :class:`ProcessContext` from the validated settings: the
database, Redis, the Discord client (the token file honoured, its metrics on this process's
registry), the secret box, the publisher of tasks and the guild boundary's directory.  Nothing
here is a module global and nothing connects at import; :meth:`ProcessContext.close` releases
what :func:`open_process_context` opened.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from prometheus_client import REGISTRY, CollectorRegistry
from sqlalchemy.orm import Session, sessionmaker

from shared.crypto import SecretBox, deferred_secret_box
from shared.db.engine import make_engine, make_sessionmaker
from shared.discord.client import DiscordClient
from shared.jobs import Enqueuer
from shared.services.core import Core
from shared.settings import Settings
from shared.tenancy import ChannelDirectory, DiscordDirectory

if TYPE_CHECKING:
    from redis import Redis

__all__ = ["ProcessContext", "open_process_context"]


def _utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass
class ProcessContext:
    """What a process holds for its whole life (see module docstring)."""

    settings: Settings
    session_factory: sessionmaker[Session]
    enqueuer: Enqueuer
    box: SecretBox
    redis: Redis[Any] | None = None
    discord: DiscordClient | None = None
    registry: CollectorRegistry = REGISTRY
    clock: Callable[[], datetime] = _utcnow
    closers: list[Callable[[], None]] = field(default_factory=list, repr=False)
    _core: Core | None = field(default=None, repr=False)

    @property
    def directory(self) -> ChannelDirectory | None:
        """The guild boundary's directory, over Discord; None without Discord access."""
        return self.core().directory

    def core(self) -> Core:
        """The use cases' view of this process (:mod:`shared.services`)."""
        if self._core is None:
            directory = DiscordDirectory(self.discord) if self.discord is not None else None
            self._core = Core.configured(
                self.settings,
                session_factory=self.session_factory,
                enqueuer=self.enqueuer,
                box=self.box,
                directory=directory,
                clock=self.clock,
            )
        return self._core

    def close(self) -> None:
        """Release what was opened for this context, newest first."""
        while self.closers:
            self.closers.pop()()


def open_process_context(
    settings: Settings,
    *,
    enqueuer: Enqueuer,
    engine_options: Mapping[str, Any] | None = None,
    redis_options: Mapping[str, Any] | None = None,
    registry: CollectorRegistry = REGISTRY,
    with_discord: bool = True,
) -> ProcessContext:
    """Build this process's context: engine, Redis client and Discord client when configured."""
    from shared.discord.factory import build_discord_client

    closers: list[Callable[[], None]] = []
    engine = make_engine(settings.effective_database_url, **dict(engine_options or {}))
    closers.append(engine.dispose)
    redis_client = None
    if settings.redis_url:
        from redis import Redis as RedisClient

        redis_client = RedisClient.from_url(
            settings.redis_url, **dict(redis_options or {"health_check_interval": 25})
        )
        closers.append(redis_client.close)
    discord = None
    if with_discord and settings.discord.configured:
        discord = build_discord_client(settings.discord, None, redis_client, registry)
        closers.append(discord.close)
    return ProcessContext(
        settings=settings,
        session_factory=make_sessionmaker(engine),
        enqueuer=enqueuer,
        box=deferred_secret_box(settings),
        redis=redis_client,
        discord=discord,
        registry=registry,
        closers=closers,
    )
