"""A limit on failed API authentications per client address, checked before any key lookup.

Every request with a well-formed but unknown or wrong key costs a database lookup and a hash
before it can be refused, and the per-key limit cannot count it (there is no key).  So the
failures are counted per client address (the proxy's view of it when ``FORWARDED_ALLOW_IPS``
names the proxy) in Redis, shared by every API replica, in one-minute windows.  An address past
``per_minute`` failures is blocked for ``block_seconds``: its requests are refused with 429
before the key is even parsed, by a check in this process's memory, so neither a flood of bad
keys nor the check itself costs a database or Redis round trip per request.  A replica learns
of a block at its own next failure from that address.

Requests with valid keys never touch Redis here.  Behind a proxy that is not named in
``FORWARDED_ALLOW_IPS`` every client shares the proxy's address, and a flood of bad keys blocks
them all: name the proxy.

Key layout (prefix ``P``)::

    P:{address}:{minute}     failures in that minute, expiring after two minutes
"""

from __future__ import annotations

import math
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import structlog
from redis import Redis
from redis.exceptions import RedisError

__all__ = ["AuthFailureLimit"]

log = structlog.get_logger(__name__)


@dataclass
class AuthFailureLimit:
    """Count failed authentications per address; block an address past the limit.

    ``per_minute`` 0 turns the limit off.  At most ``max_blocked`` blocked addresses are kept
    in memory (the oldest blocks are forgotten first).
    """

    redis: Redis[Any]
    prefix: str
    per_minute: int
    block_seconds: float
    clock: Callable[[], float] = time.time
    max_blocked: int = 10_000
    _blocked: OrderedDict[str, float] = field(default_factory=OrderedDict, init=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False)

    def __post_init__(self) -> None:
        if self.per_minute < 0 or self.block_seconds <= 0:
            raise ValueError("per_minute must be >= 0 and block_seconds > 0")

    def blocked_for(self, address: str | None) -> int | None:
        """Whole seconds ``address`` stays blocked, or None when it is not (no I/O)."""
        if address is None or not self.per_minute:
            return None
        with self._lock:
            until = self._blocked.get(address)
            if until is None:
                return None
            left = until - self.clock()
            if left <= 0:
                del self._blocked[address]
                return None
        return max(1, math.ceil(left))

    def failed(self, address: str | None) -> None:
        """Count a failed authentication from ``address``; block it once past the limit.

        A Redis error is logged and the failure left uncounted: the request is refused (401)
        either way, and an outage must not turn that answer into a 500.
        """
        if address is None or not self.per_minute:
            return
        now = self.clock()
        key = f"{self.prefix}:{address}:{int(now // 60)}"
        try:
            pipe = self.redis.pipeline(transaction=False)
            pipe.incr(key)
            pipe.expire(key, 120)
            count = int(pipe.execute()[0])
        except RedisError as exc:
            log.warning("api.auth_failure_uncounted", error=type(exc).__name__)
            return
        if count <= self.per_minute:
            return
        with self._lock:
            self._blocked[address] = now + self.block_seconds
            self._blocked.move_to_end(address)
            while len(self._blocked) > self.max_blocked:
                self._blocked.popitem(last=False)
        if count == self.per_minute + 1:
            log.warning(
                "api.address_blocked",
                address=address,
                failures=count,
                block_seconds=self.block_seconds,
            )
