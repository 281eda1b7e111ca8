"""Tokens-per-minute and requests-per-minute limiter for LLM calls, shared by every worker.

An OpenAI organisation (or project) has one TPM and one RPM limit per model, and every worker
spends from it.  Before a call, :meth:`reserve` takes ``prompt estimate + max_tokens`` tokens
and one request from the shared budget (the server admits requests the same way); after the
call, :meth:`settle` gives back what the reply did not use; :meth:`calibrate` follows the
``x-ratelimit-*`` headers (the true limits, and spending by anyone outside this limiter);
:meth:`penalize` makes everybody wait after a 429.

Both buckets refill continuously at ``limit / 60`` per second.  A reservation may drive a
bucket below zero, in which case the caller sleeps until its turn: callers are served in
reservation order and never poll.  A wait longer than ``max_wait`` is refused with
:class:`~shared.errors.RateLimitedError` so the task can be retried later instead of holding a
worker slot.

:class:`RedisLLMLimiter` keeps the state in Redis (atomic Lua in ``llm.lua``, Redis ``TIME``);
:class:`LocalLLMLimiter` is the in-process twin for the embedded mode, with the same algorithm.
"""

from __future__ import annotations

import math
import re
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any

from redis import Redis

from shared.errors import PermanentError, RateLimitedError

__all__ = [
    "LLMRateLimiter",
    "LocalLLMLimiter",
    "RateLimitHeaders",
    "RedisLLMLimiter",
    "RequestTooLargeError",
    "Reservation",
    "parse_duration",
    "parse_retry_after",
]

_LUA = Path(__file__).with_name("llm.lua").read_text(encoding="utf-8")
_NUMBER = r"(?:\d+(?:\.\d*)?|\.\d+)"
_DURATION = re.compile(
    rf"^(?:(?P<h>{_NUMBER})h)?(?:(?P<m>{_NUMBER})m(?!s))?(?:(?P<s>{_NUMBER})s)?"
    rf"(?:(?P<ms>{_NUMBER})ms)?$"
)
#: Server views this far (fraction of the limit) below ours mean someone else is spending.
CALIBRATION_TOLERANCE = 0.05


class RequestTooLargeError(PermanentError):
    """One request needs more tokens than the whole per-minute limit; it can never be sent."""


def parse_duration(value: str | None) -> float | None:
    """Seconds of a Go-style duration (``6m0s``, ``1.5s``, ``20ms``) or a bare number.

    None when ``value`` is none of these (``1..2s``, ``inf``, ``soon``).
    """
    if value is None:
        return None
    text = value.strip()
    if not text:
        return None
    seconds = _seconds(text)
    if seconds is not None:
        return seconds
    match = _DURATION.match(text)
    if match is None or not any(match.groupdict().values()):
        return None
    parts = {k: float(v) for k, v in match.groupdict().items() if v}
    return (
        parts.get("h", 0.0) * 3600
        + parts.get("m", 0.0) * 60
        + parts.get("s", 0.0)
        + parts.get("ms", 0.0) / 1000
    )


def _seconds(text: str) -> float | None:
    """A bare number of seconds (negative reads as 0); None for anything else, ``inf`` and
    ``nan`` included: a wait must be finite."""
    try:
        value = float(text)
    except ValueError:
        return None
    return max(0.0, value) if math.isfinite(value) else None


def parse_retry_after(headers: Mapping[str, str], *, now: float | None = None) -> float | None:
    """Seconds the server asks us to wait: ``retry-after-ms``, then ``retry-after``.

    ``retry-after`` may be seconds or an HTTP date.  Returns None when neither is usable.
    """
    lowered = {k.lower(): v for k, v in headers.items()}
    raw_ms = lowered.get("retry-after-ms")
    if raw_ms is not None:
        millis = _seconds(raw_ms)
        if millis is not None:
            return millis / 1000
    raw = lowered.get("retry-after")
    if raw is None:
        return None
    seconds = _seconds(raw)
    if seconds is not None:
        return seconds
    try:
        moment = parsedate_to_datetime(raw)
    except (TypeError, ValueError):
        return None
    return max(0.0, moment.timestamp() - (time.time() if now is None else now))


@dataclass(frozen=True, slots=True)
class RateLimitHeaders:
    """The ``x-ratelimit-*`` family of one response (None where a header was absent)."""

    limit_tokens: int | None = None
    remaining_tokens: int | None = None
    limit_requests: int | None = None
    remaining_requests: int | None = None
    reset_tokens: float | None = None
    reset_requests: float | None = None

    @classmethod
    def parse(cls, headers: Mapping[str, str]) -> RateLimitHeaders:
        """Read the headers leniently; Azure's ``-1``/``0`` placeholders count as absent."""
        lowered = {k.lower(): v for k, v in headers.items()}

        def number(name: str) -> int | None:
            raw = lowered.get(name)
            if raw is None:
                return None
            try:
                value = int(float(raw))
            except (ValueError, OverflowError):  # OverflowError: "inf"
                return None
            return value if value >= 0 else None

        limit_tokens = number("x-ratelimit-limit-tokens")
        limit_requests = number("x-ratelimit-limit-requests")
        return cls(
            limit_tokens=limit_tokens or None,
            remaining_tokens=number("x-ratelimit-remaining-tokens") if limit_tokens else None,
            limit_requests=limit_requests or None,
            remaining_requests=number("x-ratelimit-remaining-requests") if limit_requests else None,
            reset_tokens=parse_duration(lowered.get("x-ratelimit-reset-tokens")),
            reset_requests=parse_duration(lowered.get("x-ratelimit-reset-requests")),
        )

    @property
    def empty(self) -> bool:
        """True when the response carried no usable limit (local servers send none)."""
        return self.limit_tokens is None and self.limit_requests is None


@dataclass(frozen=True, slots=True)
class Reservation:
    """Tokens and one request taken from a scope's budget; settle it after the call."""

    scope: str
    tokens: int
    waited: float


class LLMRateLimiter(ABC):
    """What the LLM client needs from a limiter (Redis-shared or in-process).

    :meth:`reserve` and :meth:`settle` work the same whichever it is; a subclass says where its
    buckets live (:meth:`_book`, :meth:`_give_back`, :meth:`calibrate`, :meth:`penalize`).
    """

    scope: str
    _sleep: Callable[[float], None]

    def reserve(self, tokens: int, *, max_wait: float) -> Reservation:
        """Take ``tokens`` + 1 request, sleeping for our turn; raise if the wait is too long."""
        if tokens < 0:
            raise ValueError("tokens must not be negative")
        wait = self._book(tokens, max_wait)
        if wait > 0:
            self._sleep(wait)
        return Reservation(scope=self.scope, tokens=tokens, waited=wait)

    def settle(
        self,
        reservation: Reservation,
        used_tokens: int,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        """Give back what the call did not use (or take the shortfall); with the answer's
        ``headers``, follow them first as :meth:`calibrate` does."""
        self._give_back(reservation.tokens - max(0, used_tokens), headers)

    @abstractmethod
    def calibrate(self, headers: Mapping[str, str]) -> None:
        """Follow the server's ``x-ratelimit-*`` view: the true limits, and the remaining
        budget when someone outside this limiter spent from it."""

    @abstractmethod
    def penalize(self, retry_after: float) -> None:
        """After a 429: nobody in this scope sends for ``retry_after`` seconds."""

    @abstractmethod
    def _book(self, tokens: int, max_wait: float) -> float:
        """Book ``tokens`` and one request; the seconds until they are ours.

        Raises :class:`RequestTooLargeError` (never fits) or :class:`RateLimitedError` (the
        wait exceeds ``max_wait``) without booking anything.
        """

    @abstractmethod
    def _give_back(self, tokens: int, headers: Mapping[str, str] | None) -> None:
        """Return ``tokens`` to the token bucket (negative: take them), after following
        ``headers`` when given."""


def _calibration(headers: Mapping[str, str]) -> tuple[float, ...]:
    """The script's calibrate arguments for ``headers`` (-1 for an absent header), or ()
    when they carry no limit."""
    seen = RateLimitHeaders.parse(headers)
    if seen.empty:
        return ()

    def arg(value: int | None) -> int:
        return -1 if value is None else value

    return (
        arg(seen.limit_tokens),
        arg(seen.remaining_tokens),
        arg(seen.limit_requests),
        arg(seen.remaining_requests),
        CALIBRATION_TOLERANCE,
    )


def _check_limits(tpm: int | None, rpm: int | None, headroom: float) -> None:
    if tpm is not None and tpm < 1:
        raise ValueError("tokens_per_minute must be positive, or None to learn it from headers")
    if rpm is not None and rpm < 1:
        raise ValueError("requests_per_minute must be positive, or None to learn it from headers")
    if not 0 <= headroom < 0.5:
        raise ValueError("headroom must be a fraction between 0 and 0.5")


def _too_large(scope: str, tokens: int, limit: float) -> RequestTooLargeError:
    return RequestTooLargeError(
        f"LLM request of {tokens} tokens exceeds the {limit:.0f} tokens/min budget of {scope}",
        user_message=(
            "The conversation chunk is larger than the LLM's per-minute token limit; "
            "lower the chunk size or max output tokens, or raise the limit."
        ),
    )


def _wait_too_long(scope: str, wait: float) -> RateLimitedError:
    return RateLimitedError(
        f"LLM budget of {scope} is booked for the next {wait:.1f}s",
        retry_after=wait,
        user_message="The LLM is busy; the summary will continue shortly.",
    )


class RedisLLMLimiter(LLMRateLimiter):
    """The limiter with its state in Redis, shared by every process that names the same scope.

    ``scope`` identifies one limit (for example ``"api.openai.com|org-1|proj-1|gpt-4o-mini"``).
    ``tokens_per_minute``/``requests_per_minute`` may be None: the limit is then learnt from the
    first response's headers.  ``headroom`` keeps a small share unused so clock skew between
    us and the server does not turn into 429s.
    """

    def __init__(
        self,
        redis: Redis[Any],
        *,
        scope: str,
        tokens_per_minute: int | None,
        requests_per_minute: int | None,
        headroom: float = 0.03,
        prefix: str = "sb:rl:llm",
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        _check_limits(tokens_per_minute, requests_per_minute, headroom)
        self.scope = scope
        self.key = f"{prefix}:{scope}"
        self._tpm = tokens_per_minute or 0
        self._rpm = requests_per_minute or 0
        self._headroom = headroom
        self._sleep = sleep
        self._script = redis.register_script(_LUA)

    def _run(self, op: str, *args: float | int) -> list[Any]:
        argv: list[Any] = [op, self._tpm, self._rpm, self._headroom, 120_000, *args]
        result: list[Any] = self._script(keys=[self.key], args=argv)
        return result

    def _book(self, tokens: int, max_wait: float) -> float:
        status, wait_us, level = self._run("reserve", tokens, int(max_wait * 1_000_000))
        wait = int(wait_us) / 1_000_000
        if int(status) == -1:
            raise _too_large(self.scope, tokens, float(level))
        if int(status) == 0:
            raise _wait_too_long(self.scope, wait)
        return wait

    def _give_back(self, tokens: int, headers: Mapping[str, str] | None) -> None:
        # The headers are followed in the same round trip.
        seen = _calibration(headers) if headers is not None else ()
        self._run("settle", tokens, *seen)

    def calibrate(self, headers: Mapping[str, str]) -> None:
        """Learn the limits and follow the server's remaining budget down."""
        seen = _calibration(headers)
        if seen:
            self._run("calibrate", *seen)

    def penalize(self, retry_after: float) -> None:
        """Nobody sends for ``retry_after`` seconds; the token bucket drops to zero."""
        self._run("penalize", int(max(0.0, retry_after) * 1_000_000))


class LocalLLMLimiter(LLMRateLimiter):
    """The same limiter inside one process (embedded mode): a lock and a monotonic clock."""

    def __init__(
        self,
        *,
        scope: str,
        tokens_per_minute: int | None,
        requests_per_minute: int | None,
        headroom: float = 0.03,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        _check_limits(tokens_per_minute, requests_per_minute, headroom)
        self.scope = scope
        self._headroom = headroom
        self._tcap = float(tokens_per_minute or 0)
        self._rcap = float(requests_per_minute or 0)
        self._tl = self._tlim
        self._rl = self._rlim
        self._cool = 0.0
        self._clock = clock
        self._sleep = sleep
        self._ts = clock()
        self._lock = threading.Lock()

    @property
    def _tlim(self) -> float:
        return self._tcap * (1 - self._headroom)

    @property
    def _rlim(self) -> float:
        return self._rcap * (1 - self._headroom)

    def _refill(self) -> float:
        now = self._clock()
        elapsed = now - self._ts
        if elapsed > 0:
            if self._tcap:
                self._tl = min(self._tlim, self._tl + self._tlim * elapsed / 60)
            if self._rcap:
                self._rl = min(self._rlim, self._rl + self._rlim * elapsed / 60)
        self._ts = now
        return now

    def _book(self, tokens: int, max_wait: float) -> float:
        with self._lock:
            now = self._refill()
            if self._tcap and tokens > self._tlim:
                raise _too_large(self.scope, tokens, self._tlim)
            wait = max(0.0, self._cool - now)
            if self._tcap and self._tl < tokens:
                wait = max(wait, (tokens - self._tl) * 60 / self._tlim)
            if self._rcap and self._rl < 1:
                wait = max(wait, (1 - self._rl) * 60 / self._rlim)
            if wait > max_wait:
                raise _wait_too_long(self.scope, wait)
            if self._tcap:
                self._tl -= tokens
            if self._rcap:
                self._rl -= 1
        return wait

    def _give_back(self, tokens: int, headers: Mapping[str, str] | None) -> None:
        if headers is not None:
            self.calibrate(headers)
        with self._lock:
            self._refill()
            if self._tcap:
                self._tl = min(self._tlim, self._tl + tokens)

    def calibrate(self, headers: Mapping[str, str]) -> None:
        """Learn the limits and follow the server's remaining budget down."""
        seen = RateLimitHeaders.parse(headers)
        if seen.empty:
            return
        with self._lock:
            self._refill()
            if seen.limit_tokens and seen.limit_tokens != self._tcap:
                old = self._tlim
                self._tcap = float(seen.limit_tokens)
                self._tl = self._tl * self._tlim / old if old else self._tlim
            if seen.limit_requests and seen.limit_requests != self._rcap:
                old = self._rlim
                self._rcap = float(seen.limit_requests)
                self._rl = self._rl * self._rlim / old if old else self._rlim
            tol = CALIBRATION_TOLERANCE
            remaining = seen.remaining_tokens
            if self._tcap and remaining is not None and remaining < self._tl - tol * self._tcap:
                self._tl = float(remaining)
            remaining = seen.remaining_requests
            if self._rcap and remaining is not None and remaining < self._rl - tol * self._rcap:
                self._rl = float(remaining)

    def penalize(self, retry_after: float) -> None:
        """Nobody sends for ``retry_after`` seconds; the token bucket drops to zero."""
        with self._lock:
            now = self._refill()
            self._cool = max(self._cool, now + max(0.0, retry_after))
            self._tl = min(self._tl, 0.0)
