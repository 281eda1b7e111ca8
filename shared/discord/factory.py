"""Build a ready :class:`DiscordClient` from :class:`DiscordSettings`.

The caller owns the HTTP client, the Redis client and the metrics registry it passes in; the
factory only creates (and the returned client's ``close()`` only closes) what it made itself:
the recording file, and the replay HTTP client or a default HTTP client when none was given.

* With a Redis client the rate limits are shared by every process using the same token
  (the normal deployment); without one, the in-process twin is used (embedded mode).
* ``mode=replay`` needs neither Discord nor Redis: answers come from the recording and the
  limiter is in-process.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import httpx
from prometheus_client import CollectorRegistry

from shared.discord.client import DiscordClient
from shared.discord.config import DiscordSettings
from shared.discord.metrics import DiscordMetrics
from shared.discord.rest import RequestPolicy, RestSession
from shared.discord.simulation import Recorder, ReplayTransport
from shared.discord.tokens import FileToken, StaticToken, TokenSource
from shared.ratelimit.discord import DiscordRateLimiter, LimiterConfig, RedisDiscordLimiter
from shared.ratelimit.inprocess import InProcessDiscordLimiter

if TYPE_CHECKING:
    from redis import Redis

__all__ = ["build_discord_client", "limiter_config", "token_source"]


def limiter_config(settings: DiscordSettings) -> LimiterConfig:
    """The limiter tunables of ``settings``."""
    return LimiterConfig(
        key_prefix=settings.key_prefix,
        global_limit=settings.global_limit,
        global_margin=settings.global_margin,
        global_burst=settings.global_burst,
        bucket_safety_ms=settings.bucket_safety_ms,
        lease_s=settings.request_timeout_s + 5,
        invalid_limit=settings.invalid_request_limit,
        ban_s=settings.ban_backoff_s,
    )


def token_source(settings: DiscordSettings) -> TokenSource:
    """A :class:`FileToken` when ``token_file`` is set, else the static token (maybe none).

    The file is read once here: one that cannot be read is a :class:`ConfigError` at start,
    as the LLM's key file is, not a failure of the first job.
    """
    if settings.token_file is not None:
        source = FileToken(settings.token_file)
        source.current()
        return source
    return StaticToken(settings.token)


def build_discord_client(
    settings: DiscordSettings,
    http: httpx.Client | None,
    redis: Redis[Any] | None,
    registry: CollectorRegistry | None,
) -> DiscordClient:
    """A client configured by ``settings`` (see module docstring for who owns what)."""
    closers: list[Callable[[], None]] = []
    timeout = httpx.Timeout(settings.request_timeout_s)
    if settings.mode == "replay":
        assert settings.recording_path is not None
        transport = ReplayTransport(settings.recording_path, api_base=settings.api_base)
        http = httpx.Client(transport=transport, timeout=timeout)
        closers.append(http.close)
    elif http is None:
        http = httpx.Client(timeout=timeout)
        closers.append(http.close)
    config = limiter_config(settings)
    limiter: DiscordRateLimiter
    if redis is not None and settings.mode != "replay":
        limiter = RedisDiscordLimiter(redis, config)
    else:
        limiter = InProcessDiscordLimiter(config)
    recorder: Recorder | None = None
    if settings.mode == "record":
        assert settings.recording_path is not None
        recorder = Recorder(settings.recording_path)
        closers.append(recorder.close)
    tokens = token_source(settings)
    if settings.mode == "replay" and settings.token is None and settings.token_file is None:
        # A recording never holds the token, so replay needs none.
        tokens = StaticToken("replay")
    session = RestSession(
        http=http,
        api_base=settings.api_base,
        limiter=limiter,
        tokens=tokens,
        policy=RequestPolicy(
            max_retries=settings.max_retries,
            backoff_base_s=settings.backoff_base_s,
            max_wait_s=settings.max_wait_s,
            user_agent=settings.user_agent,
        ),
        metrics=DiscordMetrics.on(registry) if registry is not None else None,
        recorder=recorder,
    )
    return DiscordClient(session, closers=closers)
