"""What a running API app holds: its options and the clients built at start."""

from __future__ import annotations

import weakref
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from fastapi import Request
from sqlalchemy.orm import Session, sessionmaker

from producers.api.metrics import ApiMetrics
from producers.api.problems import Problem
from shared.apikeys import KeyCache
from shared.crypto import SecretBox
from shared.idempotency import IdempotencyStore
from shared.ratelimit.auth_failures import AuthFailureLimit
from shared.ratelimit.inbound import InboundRateLimiter
from shared.services.core import Core
from shared.uploads import GUILD_UPLOAD_BYTES

if TYPE_CHECKING:
    from redis import Redis

__all__ = ["ApiOptions", "ApiResources", "get_resources", "utc_now"]


def utc_now() -> datetime:
    """The wall clock, timezone-aware."""
    return datetime.now(UTC)


@dataclass(frozen=True)
class ApiOptions:
    """Limits and defaults of the API (the defaults suit a public deployment).

    ``redis_prefix`` namespaces every Redis key the API writes (rate limits, idempotency
    records, last-used marks, seen signature ids), so tests and deployments sharing a Redis
    database stay apart.  ``key_cache_seconds`` is how long a verified API key is trusted
    without reading it again: a revocation takes effect on every replica within that time.
    ``max_upload_bytes`` is the body limit of ``POST /v1/jobs/upload`` (streamed into storage,
    never held in memory), ``max_body_bytes`` that of every other route;
    ``max_guild_upload_bytes`` what one guild's uploads may hold stored at once.
    ``auth_failures_per_minute`` failed authentications from one client address in a minute
    block that address for ``auth_block_seconds`` (:mod:`shared.ratelimit.auth_failures`; 0
    turns it off).  ``max_threads`` bounds the worker threads that run database and Redis
    calls (anyio's for most routes, and as many again for the one-hop routes): the work is
    mostly CPU under one GIL, and dozens of threads fighting for it cost more than they wait.
    """

    max_body_bytes: int = 64 * 1024
    max_upload_bytes: int = 100 * 1024 * 1024
    max_guild_upload_bytes: int = GUILD_UPLOAD_BYTES
    default_rate_limit_per_minute: int = 600
    idempotency_ttl_seconds: int = 24 * 3600
    idempotency_lease_seconds: int = 120
    last_used_interval_seconds: int = 60
    redis_prefix: str = "sb:api"
    readiness_timeout_seconds: float = 2.0
    key_cache_seconds: float = 1.0
    auth_failures_per_minute: int = 60
    auth_block_seconds: float = 300.0
    max_threads: int = 8


@dataclass
class ApiResources:
    """Clients and helpers shared by every request of one app.

    ``core`` is what the use cases (:mod:`shared.services`) are called with.
    """

    session_factory: sessionmaker[Session]
    redis: Redis[Any]
    core: Core
    secret_box: SecretBox
    metrics: ApiMetrics
    options: ApiOptions
    clock: Callable[[], datetime] = utc_now
    limiter: InboundRateLimiter = field(init=False)
    auth_failures: AuthFailureLimit = field(init=False)
    key_cache: KeyCache = field(init=False)
    idempotency: IdempotencyStore = field(init=False)
    #: The worker threads of the one-hop routes (:mod:`producers.api.onehop`).
    hops: ThreadPoolExecutor = field(init=False)
    #: Until when this process knows a key's last-used mark is set (key id -> time): a
    #: request inside that time skips the Redis round trip that would find the mark.
    used_marks: dict[str, datetime] = field(init=False, default_factory=dict)

    def __post_init__(self) -> None:
        prefix = self.options.redis_prefix
        self.hops = ThreadPoolExecutor(self.options.max_threads, thread_name_prefix="api-hop")
        # Idle threads end with the app (tests build many apps in one process).
        weakref.finalize(self, self.hops.shutdown, wait=False)
        self.key_cache = KeyCache(self.options.key_cache_seconds)
        self.limiter = InboundRateLimiter(self.redis, prefix=f"{prefix}:rl")
        self.auth_failures = AuthFailureLimit(
            self.redis,
            prefix=f"{prefix}:authfail",
            per_minute=self.options.auth_failures_per_minute,
            block_seconds=self.options.auth_block_seconds,
        )
        self.idempotency = IdempotencyStore(
            self.redis,
            prefix=f"{prefix}:idem",
            ttl_seconds=self.options.idempotency_ttl_seconds,
            lease_seconds=self.options.idempotency_lease_seconds,
        )


async def get_resources(request: Request) -> ApiResources:
    """FastAPI dependency: the app's resources (503 while the app is still starting).

    Async on purpose: FastAPI runs a plain function dependency in the thread pool.
    """
    resources: ApiResources | None = getattr(request.app.state, "resources", None)
    if resources is None:
        raise Problem(503, "the API is starting; retry in a moment", headers={"Retry-After": "1"})
    return resources
