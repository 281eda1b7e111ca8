"""Per-API-key request limits in Redis (GCRA), shared by every API replica.

GCRA is a token bucket stored as one number, the key's *theoretical arrival time*: each request
pushes it forward by ``60 / per_minute`` seconds, and a request is refused while that time is more
than ``burst`` intervals ahead of now.  ``inbound.lua`` does the read-compare-write atomically
with Redis ``TIME`` as the clock, so replicas with drifting clocks still agree.

Key layout (prefix ``P``)::

    P:{key_id}     TAT in microseconds, expiring when the bucket is full again

:meth:`InboundRateLimiter.hit_and_begin` books a request and, only when it is allowed, claims
its ``Idempotency-Key`` (:mod:`shared.idempotency`) in the same script: one round trip instead
of two for a request that carries a key, and a refused request claims nothing.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from importlib import resources
from typing import TYPE_CHECKING, Any

from shared.idempotency import Claim, IdempotencyStore, begin_script

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
        self._with_claim = redis.register_script(_limited_claim(source))

    def hit(self, key_id: str, limit: Limit) -> Decision:
        """Book one request for ``key_id`` under ``limit``, or say how long to wait."""
        raw: Any = self._script(keys=[f"{self._prefix}:{key_id}"], args=_args(limit))
        return _decision(limit, raw)

    def hit_and_begin(
        self,
        key_id: str,
        limit: Limit,
        store: IdempotencyStore,
        key: str,
        request_fingerprint: str,
    ) -> tuple[Decision, Claim | None]:
        """:meth:`hit`, then, when allowed, :meth:`IdempotencyStore.begin` for ``key`` (scoped
        to ``key_id``), atomically in one round trip; the claim is None when refused."""
        record, claim_args = store.begin_args(key_id, key, request_fingerprint)
        raw: Any = self._with_claim(
            keys=[f"{self._prefix}:{key_id}", record], args=[*_args(limit), *claim_args]
        )
        decision = _decision(limit, raw[0])
        if not decision.allowed:
            return decision, None
        return decision, store.claim_from(record, claim_args, raw[1])


def _limited_claim(gcra: str) -> str:
    # Each part runs as a function whose parameters shadow KEYS and ARGV, so both keep their
    # own numbering and their source stays in one place.
    return (
        f"local function limit(KEYS, ARGV)\n{gcra}\nend\n"
        f"local function claim(KEYS, ARGV)\n{begin_script()}\nend\n"
        "local decision = limit({KEYS[1]}, {ARGV[1], ARGV[2]})\n"
        "if decision[1] == 0 then\n  return {decision}\nend\n"
        "return {decision, claim({KEYS[2]}, {ARGV[3], ARGV[4], ARGV[5]})}\n"
    )


def _args(limit: Limit) -> list[int]:
    return [max(1, round(60_000_000 / limit.per_minute)), limit.burst]


def _decision(limit: Limit, raw: Any) -> Decision:
    allowed, retry_us, remaining, reset_us = (int(v) for v in raw)
    return Decision(
        allowed=bool(allowed),
        limit=limit,
        remaining=max(0, remaining),
        retry_after=retry_us / 1_000_000,
        reset_after=max(0, reset_us) / 1_000_000,
    )
