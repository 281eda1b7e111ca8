"""What the pipeline stages need, built once per process and passed in.

:mod:`workers.context` builds a :class:`Services` in each worker process (and for the embedded
worker thread) on the process's :class:`~shared.context.ProcessContext`; stage functions receive
it explicitly and never build clients themselves.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TextIO

from sqlalchemy.orm import Session, sessionmaker

from shared.cache import MessageCache
from shared.crypto import deferred_secret_box
from shared.delivery.runtime import DeliveryRuntime, build_runtime
from shared.discord.client import DiscordClient
from shared.errors import ConfigError
from shared.jobs import Enqueuer
from shared.services.core import Core
from shared.settings import Settings
from shared.summarize.extractive import ExtractiveSummarizer
from shared.summarize.llm.backend import LLMBackend
from shared.tenancy import DiscordDirectory

__all__ = ["Services", "Summarizer"]


#: The offline summarizer, the only one the pipeline holds besides the LLM backend.
Summarizer = ExtractiveSummarizer


def _utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass
class Services:
    """Per-process resources of the pipeline.

    ``llm`` is set when an LLM endpoint is configured: the summarize stage then runs the
    map/reduce pipeline of :mod:`shared.pipeline.llm.mapreduce`, and ``summarizer`` (the offline
    extractive backend) serves empty windows and the degraded fallback.
    """

    settings: Settings
    session_factory: sessionmaker[Session]
    cache: MessageCache
    enqueuer: Enqueuer
    summarizer: ExtractiveSummarizer
    console: TextIO
    clock: Callable[[], datetime] = field(default=_utcnow)
    llm: LLMBackend | None = None
    discord: DiscordClient | None = None
    delivery: DeliveryRuntime | None = None
    closers: list[Callable[[], None]] = field(default_factory=list, repr=False)
    _core: Core | None = field(default=None, repr=False)

    def delivery_runtime(self) -> DeliveryRuntime:
        """Delivery's resources, built on first use when the worker was built without them."""
        if self.delivery is None:
            self.delivery = build_runtime(self.settings, discord=self.discord)
        return self.delivery

    def require_discord(self) -> DiscordClient:
        """The Discord adapter, or a configuration error naming the missing token."""
        if self.discord is None:
            raise ConfigError(
                "reading Discord channels needs the Discord adapter: set DISCORD_TOKEN",
                user_message="this deployment cannot read Discord channels (no DISCORD_TOKEN)",
            )
        return self.discord

    def core(self) -> Core:
        """The use cases' view of this worker (digests submit jobs through it)."""
        if self._core is None:
            self._core = Core.configured(
                self.settings,
                session_factory=self.session_factory,
                enqueuer=self.enqueuer,
                box=deferred_secret_box(self.settings),
                directory=DiscordDirectory(self.discord) if self.discord is not None else None,
                clock=self.clock,
            )
        return self._core

    def close(self) -> None:
        """Release what was built for these services (HTTP pools, clients, engine), newest
        first; safe to call twice."""
        if self.delivery is not None:
            self.delivery.close()
        while self.closers:
            self.closers.pop()()
