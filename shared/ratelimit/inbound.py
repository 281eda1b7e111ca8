"""Per-API-key request limits in Redis (GCRA), shared by every API replica.

GCRA is a token bucket stored as one number, the key's *theoretical arrival time*: each request
pushes it forward by ``60 / per_minute`` seconds, and a request is refused while that time is more
than ``burst`` intervals ahead of now.  ``inbound.lua`` does the read-compare-write atomically
with Redis ``TIME`` as the clock, so replicas with drifting clocks still agree.

Key layout (prefix ``P``)::

    P:{key_id}     TAT in microseconds, expiring when the bucket is full again
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from importlib import resources
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from redis import Redis

__all__ = ["Decision", "InboundRateLimiter", "Limit", "default_burst"]


def default_burst(per_minute: int) -> int:
    """Burst allowed on an idle key: ten seconds' worth of the rate, at least one request."""
    return max(1, math.ceil(per_minute / 6))


@dataclass(frozen=True)
class Limit:
    """A rate (requests per minute) and the burst an idle key may spend at once."""

    per_minute: int
    burst: int

    def __post_init__(self) -> None:
        if self.per_minute < 1 or self.burst < 1:
            raise ValueError("a limit needs per_minute >= 1 and burst >= 1")


@dataclass(frozen=True)
class Decision:
    """The answer for one request.

    ``retry_after`` (seconds) is set when refused; ``remaining`` is how many more requests fit
    right now; ``reset_after`` is when the bucket is full again.
    """

    allowed: bool
    limit: Limit
    remaining: int
    retry_after: float
    reset_after: float

    @property
    def retry_after_header(self) -> str:
        """``Retry-After`` in whole seconds, rounded up (never 0 for a refusal)."""
        return str(max(1, math.ceil(self.retry_after)))


class InboundRateLimiter:
    """Checks and books one request per call for a given key id."""

    def __init__(self, redis: Redis[Any], *, prefix: str = "sb:api:rl") -> None:
        self._prefix = prefix
        source = resources.files("shared.ratelimit").joinpath("inbound.lua").read_text()
        self._script = redis.register_script(source)

    def hit(self, key_id: str, limit: Limit) -> Decision:
        """Book one request for ``key_id`` under ``limit``, or say how long to wait."""
        interval_us = max(1, round(60_000_000 / limit.per_minute))
        raw: Any = self._script(keys=[f"{self._prefix}:{key_id}"], args=[interval_us, limit.burst])
        allowed, retry_us, remaining, reset_us = (int(v) for v in raw)
        return Decision(
            allowed=bool(allowed),
            limit=limit,
            remaining=max(0, remaining),
            retry_after=retry_us / 1_000_000,
            reset_after=max(0, reset_us) / 1_000_000,
        )
