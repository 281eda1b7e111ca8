"""Discord's rate limits, shared by every process that uses one bot token, kept in Redis.

Discord limits a bot per *bucket* (learnt from ``X-RateLimit-*`` headers, counted separately per
top-level resource), globally (50 requests/s by default), and per IP for invalid requests
(10,000 401/403/429 per 10 minutes earn a temporary ban).  Those are facts about the token and
the IP, not about one process, so the state lives in Redis and two Lua scripts change it
atomically, with Redis ``TIME`` as the only clock (host clocks may disagree):

``discord_acquire.lua``
    refuses at once for a dead token or webhook, an IP ban or a tripped invalid-request breaker;
    says how long to wait after a global 429, a shared/sub-limit 429, or while a bucket is
    exhausted (or still being discovered: one request in flight until its headers are known);
    otherwise books the next slot of the pre-emptive global limit and records a leased
    reservation in the bucket.  The global slot is a GCRA at ``limit x (1 - margin)`` per
    second with a burst (a few requests after a pause leave at once, so one job's requests are
    not spaced out when the token is idle), capped by a log of the booked send times: no
    window of one period holds more than ``limit - 2`` of them, whatever its phase.
``discord_release.lua``
    learns the route's bucket hash and the bucket's window from the response headers (a newer
    window replaces the state, the same window only lowers ``remaining``, a stale one is
    ignored (it ends within half a window of the current window's start), and a request without
    an answer is never refunded), then applies the 429 by scope,
    counts invalid requests per minute and marks dead tokens and webhooks.

Nothing holds a lock while waiting: the caller sleeps the returned time and asks again, or
raises when that is past its deadline.  :mod:`shared.ratelimit.inprocess` implements the same
protocol in memory for the embedded mode; the test suite runs the same cases against both.

Key layout (prefix ``P``; ``tid`` is a token fingerprint, never the token)::

    P:t:{tid}:dead                 dead bot token (after a 401)
    P:wh:{id}:{hash}:dead          dead webhook (after a 404 / invalid token)
    P:ipblock                      Cloudflare ban: epoch ms until which nothing is sent
    P:inv:{minute}                 invalid requests in that minute (TTL 11 min)
    P:g:{scope} / P:gb:{scope}     global GCRA theoretical arrival time / global-429 block
    P:gw:{scope}                   booked global send times (ZSET, the last period and ahead)
    P:t:{tid}:r2b:{route}          route key -> bucket hash ("-" = route has no bucket)
    P:t:{tid}:b:{hash}:{major}     bucket state HASH {k,l,r,ra,ws,prov,p,blk}; ":q" = leases
    P:t:{tid}:u:{route}:{major}    the same for a bucket not discovered yet (limit 1)
    P:t:{tid}:sub:{route}:{major}  sub-limit block after a 429 with a code or spare remaining
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from importlib import resources
from typing import TYPE_CHECKING, Any, Literal, Protocol

import structlog

if TYPE_CHECKING:
    from redis import Redis

__all__ = [
    "Denial",
    "DiscordRateLimiter",
    "LimitKey",
    "LimiterConfig",
    "Outcome",
    "RedisDiscordLimiter",
    "Scope",
    "Slot",
    "Verdict",
]

log = structlog.get_logger(__name__)

#: Why a request may not go now.  ``dead-*`` and ``ban`` are refusals; the rest are waits.
Denial = Literal[
    "bucket",
    "discovery",
    "global",
    "global429",
    "shared",
    "sublimit",
    "breaker",
    "ban",
    "dead-token",
    "dead-webhook",
]
#: How a 429 (or a ``retry_after`` answer) was classified.
Scope = Literal["user", "global", "shared", "sublimit", "cloudflare"]


@dataclass(frozen=True, slots=True)
class LimiterConfig:
    """Tunables of the Discord limiter (see :class:`shared.discord.config.DiscordSettings`).

    ``global_limit`` requests per ``global_period_s`` is Discord's global limit.  No header
    tells where Discord's global window starts, so two rules keep every window below it:

    * the booked send times are logged, and no span of one period (a little more: see
      :attr:`cap_span_ms`) holds more than :attr:`window_cap` (``limit - 2``) of them,
      whatever the window's phase; the two spare requests absorb requests that arrive later
      than booked (network, a busy host);
    * a GCRA at ``limit x (1 - margin)`` per period spreads a sustained load evenly instead of
      letting it leave in bunches of ``window_cap`` (a bunch that arrives late would land in
      the next window with the next bunch); after a pause, ``global_burst`` requests leave at
      once, so the few requests of one job are not spaced out on an idle token.  With the
      default 6 % margin, any period holds at most ``rate x (1 + spread) + 1`` of ours, where
      ``spread`` is how much arrival delays vary: about 40 ms is tolerated (see
      discord/discord-api-docs#5144: exactly 50 per second still met 429s).

    Bucket windows need no such margin: a window's end is anchored when its answer is *read*
    (Redis ``TIME`` plus ``X-RateLimit-Reset-After``), which is always later than the moment
    Discord computed the header, so the exact value never sends early.  ``bucket_safety_ms``
    (default 0) adds to every bucket reset for a server known to end windows late; every
    millisecond of it is lost from every window.  ``invalid_limit`` trips the breaker (Discord
    bans at 10,000 per 10 minutes).
    """

    key_prefix: str = "{drl}"
    global_limit: int = 50
    global_period_s: float = 1.0
    global_margin: float = 0.06
    global_burst: int = 5
    bucket_safety_ms: float = 0.0
    lease_s: float = 30.0
    poll_ms: float = 25.0
    invalid_limit: int = 2500
    ban_s: float = 900.0
    dead_ttl_s: float = 7 * 24 * 3600.0
    window_tolerance_ms: float = 50.0

    def __post_init__(self) -> None:
        if self.global_limit < 1:
            raise ValueError("global_limit must be at least 1 request per period")
        if not 0 <= self.global_margin < 1:
            raise ValueError("global_margin must be a fraction in [0, 1), e.g. 0.06")
        if self.global_burst < 1:
            raise ValueError("global_burst must be at least 1 request")
        if self.invalid_limit < 1:
            raise ValueError("invalid_limit must be at least 1")

    @property
    def global_rate(self) -> float:
        """Requests per period we allow ourselves: the limit minus the margin (at least 1)."""
        return max(1.0, self.global_limit * (1 - self.global_margin))

    @property
    def gcra_interval_ms(self) -> float:
        """Emission interval of the global GCRA."""
        return self.global_period_ms / self.global_rate

    @property
    def gcra_burst(self) -> int:
        """Requests allowed at once after a pause (never more than the window cap)."""
        return min(self.global_burst, self.window_cap)

    @property
    def window_cap(self) -> int:
        """Booked requests any one period may hold: two fewer than the limit (at least 1)."""
        return max(1, self.global_limit - 2)

    @property
    def global_period_ms(self) -> float:
        """The global limit's period in milliseconds."""
        return self.global_period_s * 1000

    @property
    def cap_span_ms(self) -> float:
        """The span the window cap counts over: one period, stretched to the time the GCRA's
        rate takes to send the cap's requests.  The cap then costs no sustained rate, and a
        full window's first request may arrive one emission interval late without meeting
        the next window's last."""
        return max(self.global_period_ms, self.window_cap * self.gcra_interval_ms)

    @property
    def gcra_tolerance_ms(self) -> float:
        """GCRA tolerance: ``burst - 1`` emission intervals."""
        return (self.gcra_burst - 1) * self.gcra_interval_ms


@dataclass(frozen=True, slots=True)
class LimitKey:
    """What the limiter needs to know about one request.

    ``token_id`` is the bot token's fingerprint (``None`` for token-authenticated webhook and
    interaction routes); ``global_scope`` names the global limit spent (``t:<tid>``, ``ip`` for
    unauthenticated webhooks, ``None`` for exempt interaction routes).
    """

    route_key: str
    major: str
    token_id: str | None
    global_scope: str | None
    webhook_key: str | None = None

    @property
    def tid(self) -> str:
        """Token id as used in keys (``-`` when there is no token)."""
        return self.token_id or "-"


@dataclass(frozen=True, slots=True)
class Slot:
    """A granted reservation: send after ``delay_s`` seconds, then :meth:`release` it."""

    key: LimitKey
    bucket: str
    reservation: str
    delay_s: float


@dataclass(frozen=True, slots=True)
class Verdict:
    """Result of one acquire attempt: a slot, or why not and for how long (seconds)."""

    slot: Slot | None
    denial: Denial | None = None
    wait_s: float = 0.0


@dataclass(frozen=True, slots=True)
class Outcome:
    """What one request taught us, already parsed from the response.

    ``status`` is ``None`` when no response arrived.  Bucket fields are set when the response
    carried ``X-RateLimit-*`` headers.  ``scope``/``retry_after`` describe a 429 (or any answer
    with ``retry_after``).  ``invalid`` counts toward Discord's invalid-request ban.
    """

    status: int | None
    bucket: str | None = None
    limit: int | None = None
    remaining: int | None = None
    reset_after: float | None = None
    scope: Scope | None = None
    retry_after: float | None = None
    invalid: bool = False
    dead_token: bool = False
    dead_webhook: bool = False

    @property
    def has_bucket(self) -> bool:
        """True when the response described its bucket completely."""
        return (
            self.bucket is not None
            and self.limit is not None
            and self.remaining is not None
            and self.reset_after is not None
        )


class DiscordRateLimiter(Protocol):
    """The limiter interface the REST client uses (Redis-shared or in-process)."""

    config: LimiterConfig

    def try_acquire(self, key: LimitKey, *, max_delay_s: float) -> Verdict:
        """One non-blocking attempt; books a global slot up to ``max_delay_s`` ahead."""
        ...

    def release(self, slot: Slot, outcome: Outcome) -> bool:
        """Apply a response (or its absence); True when the route's bucket hash changed."""
        ...

    def invalid_count(self) -> int:
        """Invalid requests counted over the last 10 minutes."""
        ...


def _num(value: float | int | None) -> str:
    return "" if value is None else repr(float(value))


class RedisDiscordLimiter:
    """:class:`DiscordRateLimiter` whose state lives in Redis, shared by every process.

    ``redis`` must be a synchronous client; the scripts are registered once per instance.
    """

    def __init__(self, redis: Redis[Any], config: LimiterConfig | None = None) -> None:
        self.redis = redis
        self.config = config or LimiterConfig()
        pkg = resources.files("shared.ratelimit")
        self._acquire = redis.register_script(
            pkg.joinpath("discord_acquire.lua").read_text(encoding="utf-8")
        )
        self._release = redis.register_script(
            pkg.joinpath("discord_release.lua").read_text(encoding="utf-8")
        )

    def __repr__(self) -> str:
        return f"RedisDiscordLimiter(prefix={self.config.key_prefix!r})"

    def _key_args(self, key: LimitKey) -> list[str]:
        """The arguments both scripts start with: where the limits of ``key`` are kept."""
        return [self.config.key_prefix, key.tid, key.route_key, key.major]

    def try_acquire(self, key: LimitKey, *, max_delay_s: float) -> Verdict:
        """One atomic attempt in Redis (see the module docstring)."""
        cfg = self.config
        rid = uuid.uuid4().hex
        reply: Any = self._acquire(
            keys=[],
            args=[
                *self._key_args(key),
                key.global_scope or "",
                key.webhook_key or "",
                rid,
                _num(max(0.0, max_delay_s) * 1000),
                _num(cfg.lease_s * 1000),
                _num(cfg.gcra_interval_ms),
                _num(cfg.gcra_tolerance_ms),
                str(cfg.invalid_limit),
                _num(cfg.poll_ms),
                _num(cfg.cap_span_ms),
                str(cfg.window_cap),
            ],
        )
        code = reply[0].decode() if isinstance(reply[0], bytes) else str(reply[0])
        wait_s = float(reply[1]) / 1000
        if code == "ok":
            bucket = reply[2].decode() if isinstance(reply[2], bytes) else str(reply[2])
            return Verdict(slot=Slot(key=key, bucket=bucket, reservation=rid, delay_s=wait_s))
        denial: Denial = code  # type: ignore[assignment]
        return Verdict(slot=None, denial=denial, wait_s=wait_s)

    def release(self, slot: Slot, outcome: Outcome) -> bool:
        """Apply ``outcome`` atomically; logs and returns True when a bucket hash changed."""
        cfg = self.config
        key = slot.key
        changed: Any = self._release(
            keys=[],
            args=[
                *self._key_args(key),
                slot.bucket,
                slot.reservation,
                "" if outcome.status is None else str(outcome.status),
                outcome.bucket or "" if outcome.has_bucket else "",
                "" if outcome.limit is None else str(outcome.limit),
                "" if outcome.remaining is None else str(outcome.remaining),
                _num(None if outcome.reset_after is None else outcome.reset_after * 1000),
                outcome.scope or "",
                _num((outcome.retry_after or 0.0) * 1000),
                "1" if outcome.invalid else "0",
                "1" if outcome.dead_token else "0",
                key.webhook_key or "",
                "1" if outcome.dead_webhook else "0",
                key.global_scope or "",
                _num(cfg.bucket_safety_ms),
                _num(cfg.ban_s * 1000),
                _num(cfg.dead_ttl_s * 1000),
                _num(cfg.window_tolerance_ms),
            ],
        )
        if int(changed):
            log.info("discord.bucket_hash_changed", route=key.route_key, bucket=outcome.bucket)
        return bool(int(changed))

    def invalid_count(self) -> int:
        """Sum of the per-minute invalid-request counters over the last 10 minutes."""
        seconds, micros = self.redis.time()
        minute = int((seconds * 1000 + micros / 1000) // 60000)
        keys = [f"{self.config.key_prefix}:inv:{m}" for m in range(minute - 9, minute + 1)]
        values: list[Any] = self.redis.mget(keys)
        return sum(int(v) for v in values if v is not None)
