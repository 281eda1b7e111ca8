"""Per-user and per-guild cooldowns and daily quotas, shared by every bot process via Redis.

One Lua script checks all four limits and, when none is hit, starts both cooldowns and counts the
request against both quotas, atomically: two shards handling the same member at the same moment
cannot both get through.  Redis's own clock decides (``TIME``), so process clocks do not matter.
Quotas are per UTC day.  All keys of one request share the guild as hash tag, so the script also
runs on Redis Cluster.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

from redis.asyncio import Redis

__all__ = ["LimitDecision", "OverLimit", "RequestLimiter"]

Reason = Literal["user_cooldown", "guild_cooldown", "user_quota", "guild_quota"]
T = TypeVar("T")

_ACQUIRE = """
local t = redis.call('TIME')
local now_ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local day = math.floor(tonumber(t[1]) / 86400)
local to_midnight = (day + 1) * 86400000 - now_ms
local user_quota_key = KEYS[3] .. day
local guild_quota_key = KEYS[4] .. day
local ttl = redis.call('PTTL', KEYS[1])
if ttl > 0 then return {'user_cooldown', ttl, day, 0} end
ttl = redis.call('PTTL', KEYS[2])
if ttl > 0 then return {'guild_cooldown', ttl, day, 0} end
local user_quota = tonumber(ARGV[3])
local used = tonumber(redis.call('GET', user_quota_key) or '0')
if user_quota > 0 and used >= user_quota then return {'user_quota', to_midnight, day, used} end
local guild_quota = tonumber(ARGV[4])
local guild_used = tonumber(redis.call('GET', guild_quota_key) or '0')
if guild_quota > 0 and guild_used >= guild_quota then
  return {'guild_quota', to_midnight, day, guild_used}
end
if tonumber(ARGV[1]) > 0 then redis.call('SET', KEYS[1], '1', 'PX', ARGV[1]) end
if tonumber(ARGV[2]) > 0 then redis.call('SET', KEYS[2], '1', 'PX', ARGV[2]) end
redis.call('INCR', user_quota_key)
redis.call('PEXPIRE', user_quota_key, to_midnight + 3600000)
redis.call('INCR', guild_quota_key)
redis.call('PEXPIRE', guild_quota_key, to_midnight + 3600000)
return {'ok', 0, day, used + 1}
"""

_RELEASE = """
redis.call('DEL', KEYS[1], KEYS[2])
for i = 3, 4 do
  local n = tonumber(redis.call('GET', KEYS[i]) or '0')
  if n > 0 then redis.call('DECR', KEYS[i]) end
end
return 1
"""


@dataclass(frozen=True)
class LimitDecision:
    """The limiter's verdict: allowed, or which limit was hit and for how long."""

    allowed: bool
    reason: Reason | None = None
    retry_after: float = 0.0
    day: int = 0
    used: int = 0

    def message(self, *, user_quota: int, guild_quota: int) -> str:
        """What to tell the member when refused."""
        wait = _duration(self.retry_after)
        if self.reason == "user_cooldown":
            return f"you asked for a summary moments ago; try again in {wait}"
        if self.reason == "guild_cooldown":
            return f"this server just asked for a summary; try again in {wait}"
        if self.reason == "user_quota":
            return (
                f"you have used your {_count(user_quota)} for today (UTC); "
                f"more are available in {wait}"
            )
        if self.reason == "guild_quota":
            return (
                f"this server has used its {_count(guild_quota)} for today (UTC); "
                f"more are available in {wait}"
            )
        return "allowed"


@dataclass(frozen=True)
class OverLimit:
    """A request :meth:`RequestLimiter.run` refused: what to tell the member."""

    message: str


def _count(n: int) -> str:
    return f"{n} summary" if n == 1 else f"{n} summaries"


def _duration(seconds: float) -> str:
    seconds = max(1, round(seconds))
    if seconds < 90:
        return f"{seconds} s"
    minutes = round(seconds / 60)
    if minutes < 90:
        return f"{minutes} min"
    return f"{minutes // 60} h {minutes % 60:02d} min"


class RequestLimiter:
    """Cooldowns and quotas of summary requests (see module docstring)."""

    def __init__(
        self,
        redis: Redis[Any],
        *,
        prefix: str,
        user_cooldown: float,
        guild_cooldown: float,
        user_quota: int,
        guild_quota: int,
    ) -> None:
        self._redis = redis
        self._prefix = prefix
        self.user_cooldown = user_cooldown
        self.guild_cooldown = guild_cooldown
        self.user_quota = user_quota
        self.guild_quota = guild_quota
        self._acquire = redis.register_script(_ACQUIRE)
        self._release = redis.register_script(_RELEASE)

    def _keys(self, guild_id: int, user_id: int) -> list[str]:
        tag = f"{self._prefix}{{g{guild_id}}}"
        return [
            f"{tag}:cd:u:{user_id}",
            f"{tag}:cd:g",
            f"{tag}:q:u:{user_id}:",
            f"{tag}:q:g:",
        ]

    async def acquire(self, *, guild_id: int, user_id: int) -> LimitDecision:
        """Check every limit and, when none is hit, count this request."""
        result = await self._acquire(
            keys=self._keys(guild_id, user_id),
            args=[
                int(self.user_cooldown * 1000),
                int(self.guild_cooldown * 1000),
                self.user_quota,
                self.guild_quota,
            ],
        )
        reason = result[0].decode() if isinstance(result[0], bytes) else str(result[0])
        wait_ms, day, used = int(result[1]), int(result[2]), int(result[3])
        if reason == "ok":
            return LimitDecision(allowed=True, day=day, used=used)
        return LimitDecision(
            allowed=False,
            reason=reason,  # type: ignore[arg-type]
            retry_after=wait_ms / 1000,
            day=day,
            used=used,
        )

    async def release(self, decision: LimitDecision, *, guild_id: int, user_id: int) -> None:
        """Give back what :meth:`acquire` took, when the request could not be submitted."""
        if not decision.allowed:
            return
        keys = self._keys(guild_id, user_id)
        await self._release(
            keys=[keys[0], keys[1], f"{keys[2]}{decision.day}", f"{keys[3]}{decision.day}"]
        )

    async def run(
        self,
        *,
        guild_id: int,
        user_id: int,
        submit: Callable[[], Awaitable[T]],
        started: Callable[[T], bool],
    ) -> T | OverLimit:
        """Run ``submit`` as a request of ``user_id`` in ``guild_id``, within the limits.

        When a limit is hit, ``submit`` does not run and the answer is :class:`OverLimit`.  The
        request counts only when ``started`` says its result started something new: when
        ``submit`` raises, or starts nothing (a refusal, a repeat of an earlier request), what
        :meth:`acquire` took is given back.
        """
        decision = await self.acquire(guild_id=guild_id, user_id=user_id)
        if not decision.allowed:
            return OverLimit(
                decision.message(user_quota=self.user_quota, guild_quota=self.guild_quota)
            )
        try:
            result = await submit()
        except BaseException:
            await self.release(decision, guild_id=guild_id, user_id=user_id)
            raise
        if not started(result):
            await self.release(decision, guild_id=guild_id, user_id=user_id)
        return result

    def describe(self) -> str:
        """The limits in words, for ``/summary-config show``."""
        parts = []
        if self.user_cooldown:
            parts.append(f"{_duration(self.user_cooldown)} between a member's requests")
        if self.guild_cooldown:
            parts.append(f"{_duration(self.guild_cooldown)} between the server's requests")
        parts.append(
            f"{self.user_quota} per member per day" if self.user_quota else "no per-member quota"
        )
        parts.append(
            f"{self.guild_quota} per server per day" if self.guild_quota else "no server quota"
        )
        return "; ".join(parts)
