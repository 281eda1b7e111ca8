"""The in-process twin of the Redis Discord limiter, for the embedded mode (one process, no Redis).

It implements :class:`shared.ratelimit.discord.DiscordRateLimiter` with the same algorithm as
the two Lua scripts, step for step, on dictionaries under one lock, with a monotonic clock in
milliseconds (injectable for tests).  Keep the two in step: the limiter tests run every case
against both.
"""

from __future__ import annotations

import threading
import time
import uuid
from bisect import bisect_right, insort
from collections.abc import Callable
from dataclasses import dataclass, field

from shared.ratelimit.discord import (
    LimiterConfig,
    LimitKey,
    Outcome,
    Slot,
    Verdict,
)

__all__ = ["InProcessDiscordLimiter"]


@dataclass(slots=True)
class _Bucket:
    known: bool = False
    limit: int = 1
    remaining: float = 0.0
    reset_at: float = 0.0
    window_start: float = 0.0
    provisional: bool = False
    period: float = 1000.0
    blocked_until: float = 0.0
    inflight: dict[str, float] = field(default_factory=dict)


def _monotonic_ms() -> float:
    return time.monotonic() * 1000


class InProcessDiscordLimiter:
    """:class:`~shared.ratelimit.discord.DiscordRateLimiter` in memory (thread-safe)."""

    def __init__(
        self,
        config: LimiterConfig | None = None,
        *,
        clock_ms: Callable[[], float] = _monotonic_ms,
    ) -> None:
        self.config = config or LimiterConfig()
        self._now = clock_ms
        self._lock = threading.Lock()
        self._buckets: dict[str, _Bucket] = {}
        self._route_hash: dict[tuple[str, str], str] = {}
        self._tat: dict[str, float] = {}
        self._booked: dict[str, list[float]] = {}
        self._global_block: dict[str, float] = {}
        self._sub_block: dict[tuple[str, str, str], float] = {}
        self._dead_tokens: dict[str, float] = {}
        self._dead_webhooks: dict[str, float] = {}
        self._invalid: dict[int, int] = {}
        self._ban_until = 0.0

    def __repr__(self) -> str:
        return f"InProcessDiscordLimiter(buckets={len(self._buckets)})"

    def _bucket_key(self, key: LimitKey) -> str:
        bucket_hash = self._route_hash.get((key.tid, key.route_key))
        if bucket_hash == "-":
            return ""
        if bucket_hash is None:
            return f"u:{key.tid}:{key.route_key}:{key.major}"
        return f"b:{key.tid}:{bucket_hash}:{key.major}"

    def _invalid_total(self, now: float) -> int:
        minute = int(now // 60000)
        return sum(self._invalid.get(m, 0) for m in range(minute - 9, minute + 1))

    def _global_delay(self, scope: str, now: float) -> float:
        """Milliseconds until the next global slot: the GCRA's, moved past any booked send
        time that would make one span of :attr:`LimiterConfig.cap_span_ms` hold more than the
        window cap."""
        cfg = self.config
        span = cfg.cap_span_ms
        tat = max(self._tat.get(scope, 0.0), now)
        send = max(now, tat - cfg.gcra_tolerance_ms)
        booked = self._booked.setdefault(scope, [])
        del booked[: bisect_right(booked, now - span)]
        first = bisect_right(booked, send - span)
        inside = len(booked) - first
        if inside >= cfg.window_cap:
            send = booked[first + inside - cfg.window_cap] + span
        return send - now

    def try_acquire(self, key: LimitKey, *, max_delay_s: float) -> Verdict:
        """One attempt; the same decisions as ``discord_acquire.lua``."""
        cfg = self.config
        with self._lock:
            now = self._now()
            if key.token_id is not None and self._dead_tokens.get(key.tid, 0) > now:
                return Verdict(slot=None, denial="dead-token")
            if key.webhook_key and self._dead_webhooks.get(key.webhook_key, 0) > now:
                return Verdict(slot=None, denial="dead-webhook")
            if self._ban_until > now:
                return Verdict(slot=None, denial="ban", wait_s=(self._ban_until - now) / 1000)
            if self._invalid_total(now) >= cfg.invalid_limit:
                wait = (int(now // 60000) + 1) * 60000 - now
                return Verdict(slot=None, denial="breaker", wait_s=wait / 1000)
            scope = key.global_scope
            if scope and self._global_block.get(scope, 0) > now:
                wait = self._global_block[scope] - now
                return Verdict(slot=None, denial="global429", wait_s=wait / 1000)
            sub = self._sub_block.get((key.tid, key.route_key, key.major), 0)
            if sub > now:
                return Verdict(slot=None, denial="sublimit", wait_s=(sub - now) / 1000)

            bkey = self._bucket_key(key)
            bucket = self._buckets.get(bkey) if bkey else None
            if bkey:
                if bucket is not None:
                    bucket.inflight = {r: e for r, e in bucket.inflight.items() if e > now}
                    if bucket.blocked_until > now:
                        wait = bucket.blocked_until - now
                        return Verdict(slot=None, denial="shared", wait_s=wait / 1000)
                inflight = 0 if bucket is None else len(bucket.inflight)
                if bucket is not None and bucket.known:
                    if now >= bucket.reset_at:
                        bucket.remaining = bucket.limit
                        bucket.reset_at = now + bucket.period
                        bucket.window_start = now
                        bucket.provisional = True
                    if bucket.remaining - inflight <= 0:
                        wait = max(1.0, bucket.reset_at - now)
                        if bucket.remaining > 0 and inflight > 0:
                            wait = max(1.0, min(cfg.poll_ms, bucket.reset_at - now))
                        return Verdict(slot=None, denial="bucket", wait_s=wait / 1000)
                elif inflight >= 1:
                    return Verdict(slot=None, denial="discovery", wait_s=cfg.poll_ms / 1000)

            delay = 0.0
            if scope:
                delay = self._global_delay(scope, now)
                if delay > max_delay_s * 1000:
                    return Verdict(slot=None, denial="global", wait_s=delay / 1000)
                self._tat[scope] = max(self._tat.get(scope, 0.0), now + delay) + (
                    cfg.gcra_interval_ms
                )
                insort(self._booked[scope], now + delay)

            rid = uuid.uuid4().hex
            if bkey:
                if bucket is None:
                    bucket = self._buckets[bkey] = _Bucket()
                bucket.inflight[rid] = now + delay + cfg.lease_s * 1000
            return Verdict(slot=Slot(key=key, bucket=bkey, reservation=rid, delay_s=delay / 1000))

    def release(self, slot: Slot, outcome: Outcome) -> bool:
        """Apply a response; the same state changes as ``discord_release.lua``."""
        cfg = self.config
        key = slot.key
        with self._lock:
            now = self._now()
            changed = False
            held = self._buckets.get(slot.bucket) if slot.bucket else None
            if held is not None:
                held.inflight.pop(slot.reservation, None)
            target = slot.bucket
            if outcome.has_bucket:
                assert outcome.bucket is not None
                assert outcome.reset_after is not None
                assert outcome.limit is not None
                assert outcome.remaining is not None
                prev = self._route_hash.get((key.tid, key.route_key))
                changed = prev not in (None, "-", outcome.bucket)
                self._route_hash[(key.tid, key.route_key)] = outcome.bucket
                target = f"b:{key.tid}:{outcome.bucket}:{key.major}"
                bucket = self._buckets.setdefault(target, _Bucket())
                span = outcome.reset_after * 1000 + cfg.bucket_safety_ms
                new_reset = now + span
                if not bucket.known:
                    bucket.known = True
                    bucket.limit, bucket.remaining = outcome.limit, outcome.remaining
                    bucket.reset_at, bucket.window_start = new_reset, now
                    bucket.provisional, bucket.period = False, span
                elif new_reset <= bucket.window_start + bucket.period / 2:
                    pass  # an answer from a window that has already ended
                elif bucket.provisional or new_reset > bucket.reset_at + cfg.window_tolerance_ms:
                    if not bucket.provisional:
                        bucket.window_start = bucket.reset_at
                    bucket.limit, bucket.remaining = outcome.limit, outcome.remaining
                    bucket.reset_at, bucket.provisional = new_reset, False
                    bucket.period = max(bucket.period, span)
                else:
                    bucket.limit = outcome.limit
                    bucket.remaining = min(bucket.remaining, outcome.remaining)
                discovered = target != slot.bucket and slot.bucket.startswith("u:")
                if discovered and held is not None and not held.inflight:
                    del self._buckets[slot.bucket]
            elif (
                outcome.status is not None
                and 200 <= outcome.status < 300
                and slot.bucket.startswith("u:")
            ):
                self._route_hash[(key.tid, key.route_key)] = "-"
                if held is not None and not held.inflight:
                    del self._buckets[slot.bucket]
            elif (
                held is not None
                and outcome.scope != "global"
                and held.known
                and now < held.reset_at
            ):
                # No headers (network error, 5xx): Discord may have counted it; never refund.
                held.remaining -= 1

            retry_ms = (outcome.retry_after or 0.0) * 1000
            sub_key = (key.tid, key.route_key, key.major)
            tbucket = self._buckets.get(target) if target else None
            if outcome.scope == "global" and key.global_scope:
                until = max(self._global_block.get(key.global_scope, 0.0), now + retry_ms)
                self._global_block[key.global_scope] = until
            elif outcome.scope in ("user", "shared") and tbucket is not None:
                if outcome.scope == "user":
                    wait = max(retry_ms, (outcome.reset_after or 0.0) * 1000 + cfg.bucket_safety_ms)
                    if not tbucket.known:
                        tbucket.known, tbucket.limit = True, 1
                        tbucket.period, tbucket.window_start = wait, now
                    tbucket.remaining = 0
                    tbucket.reset_at = max(tbucket.reset_at, now + wait)
                else:
                    tbucket.blocked_until = now + retry_ms
            elif outcome.scope in ("global", "user", "shared", "sublimit"):
                self._sub_block[sub_key] = now + retry_ms
            elif outcome.scope == "cloudflare":
                self._ban_until = now + cfg.ban_s * 1000

            if outcome.invalid:
                minute = int(now // 60000)
                self._invalid[minute] = self._invalid.get(minute, 0) + 1
                for old in [m for m in self._invalid if m < minute - 10]:
                    del self._invalid[old]
            if outcome.dead_token and key.token_id is not None:
                self._dead_tokens[key.tid] = now + cfg.dead_ttl_s * 1000
            if outcome.dead_webhook and key.webhook_key:
                self._dead_webhooks[key.webhook_key] = now + cfg.dead_ttl_s * 1000
            return changed

    def invalid_count(self) -> int:
        """Invalid requests counted over the last 10 minutes."""
        with self._lock:
            return self._invalid_total(self._now())
