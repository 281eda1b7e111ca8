"""What the bot's handlers share: database, enqueuer, Redis limiters, caches, the progress poller.

Built once by :func:`producers.cli.bot_commands.run_bot` (or by tests) and handed to the bot;
handlers reach it as ``bot.runtime``.  Database work is synchronous SQLAlchemy and always runs
in a worker thread (:meth:`BotRuntime.db`), never on the event loop.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable
from dataclasses import KW_ONLY, dataclass, field
from datetime import UTC, datetime
from typing import Any, ParamSpec, Protocol, TypeVar

from redis.asyncio import Redis
from sqlalchemy.orm import Session, sessionmaker

from producers.bot.activity import ActivityCounter
from producers.bot.directory import GatewayDirectory
from producers.bot.estimates import CostLine, EtaModel, estimate_summary_cost, fit_eta
from producers.bot.limits import RequestLimiter
from producers.bot.progress import Hold, ProgressTracker
from producers.bot.store import GuildConfig, load_guild_config, load_jobs, recent_durations
from shared.crypto import SecretBox
from shared.delivery.reply_fence import HeldReply, ReplyFence
from shared.jobs import Enqueuer
from shared.llm.models import ModelInfo
from shared.services.core import Core
from shared.settings import BotSettings, MetricsSettings, Settings

__all__ = ["BotRuntime", "ConfigCache", "EtaCache", "HasRuntime", "build_runtime"]

P = ParamSpec("P")
T = TypeVar("T")


async def _in_thread(fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
    return await asyncio.to_thread(fn, *args, **kwargs)


def _let_go(held: HeldReply | None) -> None:
    if held is not None:
        held.release()


async def _to_the_end(fn: Callable[[], T], undo: Callable[[T], object] | None = None) -> T:
    """``fn()`` in a thread, finished even if the caller is cancelled meanwhile (the bot
    stopping): a fence taken or released half-way would hold a database connection, and the
    lock with it, until the process ends.  ``undo`` reverses a result nobody will use."""
    running = asyncio.ensure_future(asyncio.to_thread(fn))
    try:
        return await asyncio.shield(running)
    except asyncio.CancelledError:
        result = await running
        if undo is not None:
            await asyncio.to_thread(undo, result)
        raise


@dataclass
class _Cache:
    """Something read from the database and kept for ``ttl`` seconds of ``clock``."""

    session_factory: sessionmaker[Session]
    _: KW_ONLY
    ttl: float
    clock: Callable[[], float] = time.monotonic

    def _fresh(self, read_at: float) -> bool:
        return self.clock() - read_at < self.ttl


@dataclass
class ConfigCache(_Cache):
    """Guild settings cached for a few seconds, so a burst of commands reads the row once.

    Changes made through this process replace the cached value at once; other bot processes
    see them when their entry expires.
    """

    ttl: float = field(default=30.0, kw_only=True)
    _entries: dict[int, tuple[float, GuildConfig]] = field(
        default_factory=dict, init=False, repr=False
    )

    async def get(self, guild_id: int) -> GuildConfig:
        """The guild's settings (from the cache when fresh)."""
        entry = self._entries.get(guild_id)
        if entry is not None and self._fresh(entry[0]):
            return entry[1]
        config = await _in_thread(load_guild_config, self.session_factory, guild_id)
        self.put(config)
        return config

    def put(self, config: GuildConfig) -> None:
        """Replace the cached settings of ``config.guild_id``."""
        self._entries[config.guild_id] = (self.clock(), config)


@dataclass
class EtaCache(_Cache):
    """The time model, refitted from recent jobs at most once a minute."""

    ttl: float = field(default=60.0, kw_only=True)
    _model: EtaModel | None = field(default=None, init=False, repr=False)
    _at: float = field(default=0.0, init=False, repr=False)

    async def get(self) -> EtaModel:
        """The current model."""
        if self._model is None or not self._fresh(self._at):
            samples = await _in_thread(recent_durations, self.session_factory)
            self._model = fit_eta(samples)
            self._at = self.clock()
        return self._model


@dataclass
class BotRuntime:
    """Shared resources of the bot process (see module docstring)."""

    #: The deployment's settings: the bot's own group, and the rules the core applies.
    deployment: Settings
    session_factory: sessionmaker[Session]
    enqueuer: Enqueuer
    redis: Redis[Any]
    limiter: RequestLimiter
    activity: ActivityCounter
    tracker: ProgressTracker
    configs: ConfigCache
    eta: EtaCache
    box: SecretBox
    llm_model: ModelInfo | None = None
    llm_max_output_tokens: int = 2_000
    clock: Callable[[], datetime] = field(default=lambda: datetime.now(UTC))
    directory: GatewayDirectory = field(default_factory=GatewayDirectory)

    @property
    def bot_settings(self) -> BotSettings:
        """The ``bot`` group of the settings (limits, intervals, sharding)."""
        return self.deployment.bot

    @property
    def metrics(self) -> MetricsSettings:
        """The ``metrics`` group of the settings (the bot's metrics server)."""
        return self.deployment.metrics

    def core(self) -> Core:
        """The use cases' view of the bot: its database, publisher and gateway directory,
        under the deployment's rules (message limit, outbound URL policy)."""
        return Core.configured(
            self.deployment,
            session_factory=self.session_factory,
            enqueuer=self.enqueuer,
            box=self.box,
            directory=self.directory,
            clock=self.clock,
        )

    async def db(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """Run a synchronous database function in a worker thread."""
        return await _in_thread(fn, *args, **kwargs)

    def cost(self, messages: int | None) -> CostLine:
        """The cost line for a window of ``messages`` messages."""
        return estimate_summary_cost(
            messages=messages,
            model=self.llm_model,
            max_output_tokens=self.llm_max_output_tokens,
            tokens_per_message=self.bot_settings.tokens_per_message,
        )

    def describe_summarizer(self) -> str:
        """Which summarizer runs, for ``/summary-config show``."""
        if self.llm_model is None:
            return "offline extractive summarizer (free)"
        return f"LLM {self.llm_model.name}"


class HasRuntime(Protocol):
    """A client that carries the runtime (the bot)."""

    runtime: BotRuntime


def build_runtime(
    settings: Settings,
    *,
    session_factory: sessionmaker[Session],
    enqueuer: Enqueuer,
    redis: Redis[Any],
    box: SecretBox,
    llm_model: ModelInfo | None = None,
    llm_max_output_tokens: int = 2_000,
    clock: Callable[[], datetime] | None = None,
) -> BotRuntime:
    """Assemble the runtime from its parts (limits and intervals from ``settings.bot``)."""
    bot_settings = settings.bot
    prefix = bot_settings.redis_key_prefix
    now = clock or (lambda: datetime.now(UTC))

    async def load(ids: Any) -> Any:
        return await _in_thread(load_jobs, session_factory, list(ids))

    fence = ReplyFence(session_factory)

    async def hold(job_id: uuid.UUID) -> Hold | None:
        held = await _to_the_end(lambda: fence.try_hold(job_id), undo=_let_go)
        if held is None:
            return None

        async def release() -> None:
            await _to_the_end(held.release)

        return Hold(held.status, release)

    return BotRuntime(
        deployment=settings,
        session_factory=session_factory,
        enqueuer=enqueuer,
        redis=redis,
        limiter=RequestLimiter(
            redis,
            prefix=prefix,
            user_cooldown=bot_settings.user_cooldown_seconds,
            guild_cooldown=bot_settings.guild_cooldown_seconds,
            user_quota=bot_settings.user_daily_quota,
            guild_quota=bot_settings.guild_daily_quota,
        ),
        activity=ActivityCounter(redis, prefix=prefix, ttl_hours=bot_settings.activity_ttl_hours),
        tracker=ProgressTracker(
            load,
            interval=bot_settings.progress_interval_seconds,
            token_lifetime=bot_settings.interaction_token_seconds,
            clock=now,
            hold=hold,
        ),
        configs=ConfigCache(session_factory),
        eta=EtaCache(session_factory),
        box=box,
        llm_model=llm_model,
        llm_max_output_tokens=llm_max_output_tokens,
        clock=now,
    )
