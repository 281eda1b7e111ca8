"""How many messages a channel received per hour, counted from the gateway, kept in Redis.

The bot sees every message it can read (message content and guild messages intents), so it
can say how many messages a window holds before a job fetches anything: one ``INCR`` per message
on an hourly counter with a TTL, nothing about the message itself.  Counts are approximate
(deleted messages are not subtracted, a partial first hour counts whole) and only cover the time
the counters exist; :meth:`ActivityCounter.count_since` reports whether it saw the whole window.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from redis.asyncio import Redis

__all__ = ["ActivityCounter", "WindowCount"]

_HOUR = 3600


@dataclass(frozen=True)
class WindowCount:
    """Messages in a window, with how exact the figure is.

    ``about``: counted over the whole window; ``at_least``: counting began inside it;
    ``at_most``: a message-count window on a channel that may hold fewer.
    """

    messages: int
    bound: Literal["about", "at_least", "at_most"]

    def describe(self) -> str:
        """The figure with its sign: "≈ 120", "≥ 120" or "≤ 120"."""
        sign = {"about": "≈", "at_least": "≥", "at_most": "≤"}[self.bound]
        return f"{sign} {self.messages}"


class ActivityCounter:
    """Hourly message counters per channel (see module docstring)."""

    def __init__(self, redis: Redis[Any], *, prefix: str, ttl_hours: int) -> None:
        self._redis = redis
        self._prefix = prefix
        self._ttl = ttl_hours * _HOUR

    def _key(self, channel_id: int, hour: int) -> str:
        return f"{self._prefix}{{c{channel_id}}}:act:{hour}"

    def _since_key(self, channel_id: int) -> str:
        return f"{self._prefix}{{c{channel_id}}}:act:since"

    async def record(self, channel_id: int, at: datetime) -> None:
        """Count one message written at ``at`` in ``channel_id``."""
        hour = int(at.timestamp()) // _HOUR
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.incr(self._key(channel_id, hour))
            pipe.expire(self._key(channel_id, hour), self._ttl)
            pipe.set(self._since_key(channel_id), hour, nx=True, ex=self._ttl)
            pipe.expire(self._since_key(channel_id), self._ttl, gt=True)
            await pipe.execute()

    async def count_since(
        self, channel_id: int, start: datetime, now: datetime
    ) -> WindowCount | None:
        """Messages from the hour of ``start`` to the hour of ``now`` (None: never counted)."""
        first = int(start.timestamp()) // _HOUR
        last = int(now.timestamp()) // _HOUR
        hours = list(range(first, last + 1))[-(self._ttl // _HOUR) :]
        values = await self._redis.mget(
            [self._since_key(channel_id)] + [self._key(channel_id, h) for h in hours]
        )
        if values[0] is None:
            return None
        since = int(values[0])
        total = sum(int(v) for v in values[1:] if v is not None)
        return WindowCount(messages=total, bound="about" if since < first else "at_least")
