"""Circuit breaker for an LLM endpoint, shared by every worker through Redis.

When an endpoint keeps failing (5xx, timeouts, refused connections), every worker would keep
spending time and retries on it.  The breaker opens after ``failure_threshold`` consecutive
failures (default 5) and refuses calls for ``open_seconds`` (default 300); then exactly one
caller gets a *probe*: if it succeeds the breaker closes, if it fails the breaker opens again.
A quota or billing error opens it at once (:meth:`trip`): every sibling would fail the same way.

Refusals raise :class:`CircuitOpenError` (a :class:`~shared.errors.RateLimitedError` with
``retry_after`` and the ``reason`` the breaker opened for), so the task layer retries later or
the pipeline falls back to another model or the extractive backend.

:class:`RedisCircuitBreaker` keeps its state in one Redis hash changed by an atomic Lua script
on Redis ``TIME``; :class:`LocalCircuitBreaker` is the in-process twin for the embedded mode.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from redis import Redis

from shared.errors import RateLimitedError

__all__ = [
    "QUOTA_REASON",
    "BreakerState",
    "CircuitBreaker",
    "CircuitOpenError",
    "LocalCircuitBreaker",
    "Permit",
    "RedisCircuitBreaker",
]

State = Literal["closed", "open", "half_open"]

# KEYS[1] hash: state, failures, last_failure, opened_at, open_for, probe_until, reason (µs)
# ARGV: op, threshold, open_us, probe_lease_us, failure_window_us, [reason], [open_for_us]
_LUA = """
local key = KEYS[1]
local op = ARGV[1]
local threshold = tonumber(ARGV[2])
local open_us = tonumber(ARGV[3])
local lease = tonumber(ARGV[4])
local window = tonumber(ARGV[5])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local h = redis.call('HMGET', key, 'state', 'failures', 'last_failure', 'opened_at',
                     'open_for', 'probe_until', 'reason')
local state = h[1] or 'closed'
local failures = tonumber(h[2]) or 0
local last_failure = tonumber(h[3]) or 0
local opened_at = tonumber(h[4]) or 0
local open_for = tonumber(h[5]) or open_us
local probe_until = tonumber(h[6]) or 0
local reason = h[7] or ''
local function fmt(x) return string.format('%.0f', x) end
local function open(why, duration)
  redis.call('HSET', key, 'state', 'open', 'failures', failures, 'opened_at', fmt(now),
             'open_for', fmt(duration), 'probe_until', '0', 'reason', why)
  redis.call('PEXPIRE', key, math.ceil((duration + lease + window) / 1000))
  return {0, fmt(duration), why, failures}
end
if op == 'allow' then
  if state == 'open' then
    local left = opened_at + open_for - now
    if left > 0 then return {0, fmt(left), reason, failures} end
    state = 'half_open'
  end
  if state == 'half_open' then
    if probe_until > now then return {0, fmt(probe_until - now), reason, failures} end
    redis.call('HSET', key, 'state', 'half_open', 'probe_until', fmt(now + lease))
    redis.call('PEXPIRE', key, math.ceil((lease + open_us + window) / 1000))
    return {2, '0', reason, failures}
  end
  return {1, '0', '', failures}
elseif op == 'success' then
  redis.call('DEL', key)
  return {1, '0', '', 0}
elseif op == 'failure' then
  if state == 'half_open' or state == 'open' then
    return open(ARGV[6], open_us)
  end
  if now - last_failure > window then failures = 0 end
  failures = failures + 1
  if failures >= threshold then return open(ARGV[6], open_us) end
  redis.call('HSET', key, 'state', 'closed', 'failures', failures, 'last_failure', fmt(now))
  redis.call('PEXPIRE', key, math.ceil(window / 1000))
  return {1, '0', '', failures}
elseif op == 'trip' then
  return open(ARGV[6], tonumber(ARGV[7]))
elseif op == 'state' then
  if state == 'open' then
    local left = opened_at + open_for - now
    if left > 0 then return {0, fmt(left), reason, failures} end
    return {2, '0', reason, failures}
  end
  if state == 'half_open' then return {2, fmt(math.max(0, probe_until - now)), reason, failures} end
  return {1, '0', '', failures}
end
return redis.error_reply('unknown operation ' .. tostring(op))
"""


#: The reason a breaker is tripped with when the account is out of quota or credit.
QUOTA_REASON = "insufficient_quota"


class CircuitOpenError(RateLimitedError):
    """The breaker refuses calls for ``retry_after`` seconds; ``reason`` says why it opened."""

    def __init__(self, scope: str, *, retry_after: float, reason: str) -> None:
        if reason == QUOTA_REASON:
            user_message = (
                "The LLM account is out of quota or credit; add credit or raise its usage limit."
            )
        else:
            user_message = "The LLM service is failing right now."
        super().__init__(
            f"LLM circuit {scope} is open for {retry_after:.1f}s more ({reason or 'failures'})",
            retry_after=retry_after,
            user_message=user_message,
        )
        self.scope = scope
        self.reason = reason


@dataclass(frozen=True, slots=True)
class Permit:
    """Leave to call; ``probe`` is True for the single trial call of a half-open breaker.

    ``clean`` says the breaker was closed with no failure counted when leave was given: a
    success after such a permit changes nothing (:meth:`CircuitBreaker.record_success` of a
    closed, failure-free breaker is a no-op), so the caller need not report it.
    """

    probe: bool = False
    clean: bool = False


@dataclass(frozen=True, slots=True)
class BreakerState:
    """A snapshot for health checks and metrics."""

    state: State
    failures: int
    retry_after: float
    reason: str


class CircuitBreaker(Protocol):
    """What the LLM client needs from a breaker."""

    def allow(self) -> Permit:
        """Leave to call, or :class:`CircuitOpenError`."""
        ...

    def record_success(self) -> None:
        """The call worked: close the breaker."""
        ...

    def record_failure(self, reason: str) -> None:
        """The endpoint failed (5xx, timeout, connection)."""
        ...

    def trip(self, reason: str, *, open_seconds: float | None = None) -> None:
        """Open at once (quota or billing errors)."""
        ...

    def state(self) -> BreakerState:
        """Current state."""
        ...


def _check(failure_threshold: int, open_seconds: float, probe_lease: float) -> None:
    if failure_threshold < 1:
        raise ValueError("failure_threshold must be at least 1")
    if open_seconds <= 0 or probe_lease <= 0:
        raise ValueError("open_seconds and probe_lease must be positive")


class RedisCircuitBreaker:
    """A breaker whose state lives in Redis under ``{prefix}:{scope}``.

    ``probe_lease`` bounds how long one probe may take before another caller gets to probe
    (a worker that died mid-probe must not keep the breaker half-open forever);
    ``failure_window`` forgets failures older than that, so rare errors never add up.
    """

    def __init__(
        self,
        redis: Redis[Any],
        *,
        scope: str,
        failure_threshold: int = 5,
        open_seconds: float = 300.0,
        probe_lease: float = 120.0,
        failure_window: float = 300.0,
        prefix: str = "sb:cb:llm",
    ) -> None:
        _check(failure_threshold, open_seconds, probe_lease)
        self.scope = scope
        self.key = f"{prefix}:{scope}"
        self._args = [
            failure_threshold,
            int(open_seconds * 1e6),
            int(probe_lease * 1e6),
            int(failure_window * 1e6),
        ]
        self._script = redis.register_script(_LUA)

    def _run(self, op: str, *extra: str | int) -> tuple[int, float, str, int]:
        status, micros, reason, failures = self._script(
            keys=[self.key], args=[op, *self._args, *extra]
        )
        text = reason.decode() if isinstance(reason, bytes) else str(reason)
        return int(status), float(micros) / 1e6, text, int(failures)

    def allow(self) -> Permit:
        """Leave to call (``probe=True`` for the half-open trial), or :class:`CircuitOpenError`."""
        status, left, reason, failures = self._run("allow")
        if status == 0:
            raise CircuitOpenError(self.scope, retry_after=left, reason=reason)
        return Permit(probe=status == 2, clean=status == 1 and failures == 0)

    def record_success(self) -> None:
        """Close the breaker and forget failures."""
        self._run("success")

    def record_failure(self, reason: str) -> None:
        """Count a failure; open at the threshold, or at once when a probe failed."""
        self._run("failure", reason)

    def trip(self, reason: str, *, open_seconds: float | None = None) -> None:
        """Open now, for ``open_seconds`` (default: the configured open time)."""
        duration = int(open_seconds * 1e6) if open_seconds is not None else self._args[1]
        self._run("trip", reason, duration)

    def state(self) -> BreakerState:
        """Current state, without changing it."""
        status, left, reason, failures = self._run("state")
        names: dict[int, State] = {0: "open", 1: "closed", 2: "half_open"}
        return BreakerState(state=names[status], failures=failures, retry_after=left, reason=reason)


class LocalCircuitBreaker:
    """The same breaker inside one process (embedded mode)."""

    def __init__(
        self,
        *,
        scope: str,
        failure_threshold: int = 5,
        open_seconds: float = 300.0,
        probe_lease: float = 120.0,
        failure_window: float = 300.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        _check(failure_threshold, open_seconds, probe_lease)
        self.scope = scope
        self._threshold = failure_threshold
        self._open_seconds = open_seconds
        self._lease = probe_lease
        self._window = failure_window
        self._clock = clock
        self._lock = threading.Lock()
        self._reset()

    def _reset(self) -> None:
        self._state: State = "closed"
        self._failures = 0
        self._last_failure = float("-inf")
        self._opened_at = 0.0
        self._open_for = self._open_seconds
        self._probe_until = 0.0
        self._reason = ""

    def _open(self, reason: str, duration: float, now: float) -> None:
        self._state = "open"
        self._opened_at = now
        self._open_for = duration
        self._probe_until = 0.0
        self._reason = reason

    def allow(self) -> Permit:
        """Leave to call (``probe=True`` for the half-open trial), or :class:`CircuitOpenError`."""
        with self._lock:
            now = self._clock()
            state, left = self._seen(now)
            if state == "closed":
                return Permit(clean=self._failures == 0)
            if left > 0:
                raise CircuitOpenError(self.scope, retry_after=left, reason=self._reason)
            self._state = "half_open"
            self._probe_until = now + self._lease
            return Permit(probe=True)

    def record_success(self) -> None:
        """Close the breaker and forget failures."""
        with self._lock:
            self._reset()

    def record_failure(self, reason: str) -> None:
        """Count a failure; open at the threshold, or at once when a probe failed."""
        with self._lock:
            now = self._clock()
            if self._state != "closed":
                self._open(reason, self._open_seconds, now)
                return
            if now - self._last_failure > self._window:
                self._failures = 0
            self._failures += 1
            self._last_failure = now
            if self._failures >= self._threshold:
                self._open(reason, self._open_seconds, now)

    def trip(self, reason: str, *, open_seconds: float | None = None) -> None:
        """Open now, for ``open_seconds`` (default: the configured open time)."""
        with self._lock:
            self._open(
                reason, self._open_seconds if open_seconds is None else open_seconds, self._clock()
            )

    def state(self) -> BreakerState:
        """Current state, without changing it."""
        with self._lock:
            state, left = self._seen(self._clock())
            reason = "" if state == "closed" else self._reason
            return BreakerState(state, self._failures, left, reason)

    def _seen(self, now: float) -> tuple[State, float]:
        """The state at ``now`` (an open breaker whose time is up is half-open) and the
        seconds left until a call may pass: the open time, or another probe's lease."""
        if self._state == "open":
            left = self._opened_at + self._open_for - now
            return ("open", left) if left > 0 else ("half_open", 0.0)
        if self._state == "half_open":
            return "half_open", max(0.0, self._probe_until - now)
        return "closed", 0.0
