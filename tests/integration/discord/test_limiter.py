"""The Discord limiter's decisions, run against both implementations (Redis Lua and in-process).

Times are real (Redis TIME is the only clock of the shared limiter), so windows are short.
"""

from __future__ import annotations

import time
from typing import Any

import pytest

from shared.ratelimit.discord import LimitKey, Outcome, Slot

pytestmark = pytest.mark.integration

ROUTE = "GET /channels/{channel_id}/messages"
OTHER_ROUTE = "GET /channels/{channel_id}/messages/{message_id}"


def key(
    major: str = "111", route: str = ROUTE, token: str | None = "tok", webhook: str | None = None
) -> LimitKey:
    scope = f"t:{token}" if token else None
    return LimitKey(route, major, token, scope, webhook)


def grant(limiter: Any, k: LimitKey, max_delay_s: float = 1.0) -> Slot:
    verdict = limiter.try_acquire(k, max_delay_s=max_delay_s)
    assert verdict.slot is not None, verdict
    return verdict.slot


def since(started: float) -> float:
    """Seconds since ``started``: a wait the limiter reports shrinks by the time the test took
    to ask (a loaded machine may pause it for a while), so bounds subtract it."""
    return time.monotonic() - started


def headers(
    bucket: str = "h1",
    limit: int = 3,
    remaining: int = 2,
    reset_after: float = 0.3,
    status: int = 200,
    **kw: Any,
) -> Outcome:
    return Outcome(
        status=status,
        bucket=bucket,
        limit=limit,
        remaining=remaining,
        reset_after=reset_after,
        **kw,
    )


def test_unknown_bucket_allows_one_request_in_flight(make_limiter: Any) -> None:
    limiter = make_limiter()
    first = grant(limiter, key())
    second = limiter.try_acquire(key(), max_delay_s=0)
    assert second.slot is None
    assert second.denial == "discovery"
    # Another channel is another resource: its discovery runs in parallel.
    grant(limiter, key("222"))
    limiter.release(first, headers(limit=3, remaining=2))
    grant(limiter, key())


def test_learnt_bucket_limits_until_reset(make_limiter: Any) -> None:
    limiter = make_limiter(bucket_safety_ms=0)
    first = grant(limiter, key())
    started = time.monotonic()
    limiter.release(first, headers(limit=2, remaining=1, reset_after=0.3))
    slot = grant(limiter, key())
    verdict = limiter.try_acquire(key(), max_delay_s=0)
    assert verdict.denial == "bucket"
    limiter.release(slot, headers(limit=2, remaining=0, reset_after=0.25))
    verdict = limiter.try_acquire(key(), max_delay_s=0)
    assert verdict.denial == "bucket"
    # The window's reset was learnt from the first answer.
    assert 0.3 - since(started) - 0.01 < verdict.wait_s <= 0.302
    time.sleep(verdict.wait_s + 0.02)
    # A new window: the full limit is available again, concurrently.
    grant(limiter, key())
    grant(limiter, key())
    assert limiter.try_acquire(key(), max_delay_s=0).denial == "bucket"


def test_shared_hash_shares_state_per_major_only(make_limiter: Any) -> None:
    limiter = make_limiter()
    limiter.release(
        grant(limiter, key()), headers(bucket="same", limit=1, remaining=0, reset_after=5)
    )
    limiter.release(
        grant(limiter, key(route=OTHER_ROUTE)),
        headers(bucket="same", limit=1, remaining=0, reset_after=5),
    )
    assert limiter.try_acquire(key(), max_delay_s=0).denial == "bucket"
    assert limiter.try_acquire(key(route=OTHER_ROUTE), max_delay_s=0).denial == "bucket"
    # Same routes, another channel: counted separately (discovery first).
    grant(limiter, key("999"))


def test_stale_window_answer_is_ignored_and_same_window_only_lowers(make_limiter: Any) -> None:
    limiter = make_limiter(bucket_safety_ms=0)
    limiter.release(grant(limiter, key()), headers(limit=5, remaining=4, reset_after=0.2))
    a, b = grant(limiter, key()), grant(limiter, key())
    # Out-of-order answers of one window: the lower remaining wins.
    limiter.release(b, headers(limit=5, remaining=2, reset_after=0.19))
    limiter.release(a, headers(limit=5, remaining=3, reset_after=0.19))
    grant(limiter, key())
    grant(limiter, key())
    assert limiter.try_acquire(key(), max_delay_s=0).denial == "bucket"


def test_answer_from_an_ended_window_does_not_shrink_the_new_one(make_limiter: Any) -> None:
    limiter = make_limiter(bucket_safety_ms=0)
    limiter.release(grant(limiter, key()), headers(limit=2, remaining=1, reset_after=0.15))
    late = grant(limiter, key())
    time.sleep(0.2)
    fresh = grant(limiter, key())  # the window rolled over: remaining is the limit again
    limiter.release(late, headers(limit=2, remaining=0, reset_after=0.0))
    grant(limiter, key())
    limiter.release(fresh, headers(limit=2, remaining=1, reset_after=0.15))


def test_network_failure_is_never_refunded(make_limiter: Any) -> None:
    limiter = make_limiter(bucket_safety_ms=0)
    limiter.release(grant(limiter, key()), headers(limit=3, remaining=2, reset_after=2))
    limiter.release(grant(limiter, key()), Outcome(status=None))
    grant(limiter, key())
    assert limiter.try_acquire(key(), max_delay_s=0).denial == "bucket"


def test_route_without_bucket_headers_only_has_the_global_limit(make_limiter: Any) -> None:
    limiter = make_limiter()
    limiter.release(grant(limiter, key()), Outcome(status=200))
    slots = [grant(limiter, key(), max_delay_s=1) for _ in range(5)]
    assert len(slots) == 5


def test_global_limit_is_preemptive_and_books_slots(make_limiter: Any) -> None:
    limiter = make_limiter(global_limit=10, global_margin=0.0, global_burst=1)
    interval = limiter.config.gcra_interval_ms / 1000
    started = time.monotonic()
    limiter.release(grant(limiter, key()), Outcome(status=200))
    delays = [grant(limiter, key(), max_delay_s=5).delay_s for _ in range(7)]
    # Spaced one emission interval apart (the discovery request took the first slot).
    assert 7 * interval - since(started) - 0.01 <= delays[-1] <= 7 * interval + 0.01
    verdict = limiter.try_acquire(key(), max_delay_s=0.05)
    assert verdict.denial == "global"
    assert verdict.wait_s > 8 * interval - since(started) - 0.01
    # Token-less requests (webhooks) use another global scope.
    grant(limiter, key(token=None, route="POST /webhooks/{webhook_id}/{webhook_token}"))


def test_global_burst_leaves_at_once_after_a_pause(make_limiter: Any) -> None:
    limiter = make_limiter(global_limit=10, global_margin=0.0, global_burst=4)
    interval = limiter.config.gcra_interval_ms / 1000
    started = time.monotonic()
    limiter.release(grant(limiter, key()), Outcome(status=200))
    delays = [grant(limiter, key(), max_delay_s=5).delay_s for _ in range(4)]
    # The discovery request and three more leave at once; the fifth waits its interval.
    assert delays[:3] == [0.0, 0.0, 0.0]
    assert interval - since(started) - 0.01 <= delays[3] <= interval + 0.01


def _worst_period(sends: list[float], period_s: float) -> int:
    """The most send times any span of one period holds, whatever its phase."""
    return max(sum(1 for t in sends if start <= t < start + period_s) for start in sends)


@pytest.mark.parametrize("burst", [1, 5, 8])
def test_booked_sends_never_exceed_the_window_cap(make_limiter: Any, burst: int) -> None:
    limiter = make_limiter(global_limit=10, global_margin=0.0, global_burst=burst)
    cfg = limiter.config
    sends: list[float] = []
    slack = 0.0
    for _ in range(30):
        # The limiter reads its clock somewhere inside the call: the send time it booked is
        # known to within half the call's duration.
        before = time.monotonic()
        slot = grant(limiter, key(token="cap", route="GET /gateway", major="-"), max_delay_s=5)
        after = time.monotonic()
        sends.append((before + after) / 2 + slot.delay_s)
        slack = max(slack, (after - before) / 2 + 0.001)
        # No bucket headers: only the global limit applies to this route from now on.
        limiter.release(slot, Outcome(status=200))
    assert cfg.window_cap == 8
    assert _worst_period(sends, 1.0 - 2 * slack) <= cfg.window_cap
    # Nothing is wasted either: the busiest period holds the whole allowance.
    assert _worst_period(sends, 0.98 + 2 * slack) >= cfg.window_cap


def test_limiter_config_rules() -> None:
    from shared.ratelimit.discord import LimiterConfig

    for limit, margin in ((50, 0.06), (50, 0.1), (500, 0.06), (10, 0.2), (3, 0.0), (1, 0.0)):
        cfg = LimiterConfig(global_limit=limit, global_margin=margin)
        assert cfg.window_cap == max(1, limit - 2)
        assert 1 <= cfg.gcra_burst <= cfg.window_cap
        assert cfg.global_rate >= limit * (1 - margin) - 1e-9
    with pytest.raises(ValueError, match="global_burst"):
        LimiterConfig(global_burst=0)


def test_global_429_blocks_every_route_of_the_token(make_limiter: Any) -> None:
    limiter = make_limiter()
    slot = grant(limiter, key())
    started = time.monotonic()
    limiter.release(slot, Outcome(status=429, scope="global", retry_after=0.3, invalid=True))
    verdict = limiter.try_acquire(key(route=OTHER_ROUTE, major="5"), max_delay_s=0)
    assert verdict.denial == "global429"
    assert 0.3 - since(started) - 0.01 < verdict.wait_s <= 0.3
    assert limiter.invalid_count() == 1
    time.sleep(verdict.wait_s + 0.01)
    grant(limiter, key(route=OTHER_ROUTE, major="5"))


def test_user_429_exhausts_the_bucket_for_retry_after(make_limiter: Any) -> None:
    limiter = make_limiter(bucket_safety_ms=0)
    first = grant(limiter, key())
    started = time.monotonic()
    limiter.release(first, headers(limit=5, remaining=4, reset_after=1))
    slot = grant(limiter, key())
    limiter.release(
        slot,
        headers(limit=5, remaining=0, reset_after=0.2, status=429, scope="user", retry_after=0.4),
    )
    verdict = limiter.try_acquire(key(), max_delay_s=0)
    assert verdict.denial == "bucket"
    # Exhausted for Retry-After at least (the window learnt first ends later still).
    assert 0.4 - since(started) - 0.01 < verdict.wait_s <= 1.002


def test_shared_429_blocks_the_resource_without_counting_invalid(make_limiter: Any) -> None:
    limiter = make_limiter()
    limiter.release(grant(limiter, key()), headers(limit=5, remaining=4))
    slot = grant(limiter, key())
    started = time.monotonic()
    limiter.release(
        slot, headers(limit=5, remaining=4, status=429, scope="shared", retry_after=0.5)
    )
    verdict = limiter.try_acquire(key(), max_delay_s=0)
    assert verdict.denial == "shared"
    assert 0.5 - since(started) - 0.01 < verdict.wait_s <= 0.502
    assert limiter.invalid_count() == 0
    grant(limiter, key("another-channel"))


def test_sublimit_429_blocks_route_and_resource_only(make_limiter: Any) -> None:
    limiter = make_limiter()
    limiter.release(
        grant(limiter, key()), Outcome(status=429, scope="sublimit", retry_after=0.5, invalid=True)
    )
    assert limiter.try_acquire(key(), max_delay_s=0).denial == "sublimit"
    grant(limiter, key(route=OTHER_ROUTE))
    grant(limiter, key("2"))


def test_cloudflare_ban_stops_everything(make_limiter: Any) -> None:
    limiter = make_limiter(ban_s=60)
    limiter.release(grant(limiter, key()), Outcome(status=429, scope="cloudflare", invalid=True))
    verdict = limiter.try_acquire(key("other", token="another"), max_delay_s=0)
    assert verdict.denial == "ban"
    assert verdict.wait_s > 50


def test_invalid_request_breaker_trips_at_the_threshold(make_limiter: Any) -> None:
    limiter = make_limiter(invalid_limit=3)
    for n in range(3):
        limiter.release(grant(limiter, key(str(n))), Outcome(status=403, invalid=True))
    assert limiter.invalid_count() == 3
    verdict = limiter.try_acquire(key("9"), max_delay_s=0)
    assert verdict.denial == "breaker"
    assert 0 < verdict.wait_s <= 60


def test_dead_token_and_dead_webhook(make_limiter: Any) -> None:
    limiter = make_limiter()
    limiter.release(grant(limiter, key()), Outcome(status=401, invalid=True, dead_token=True))
    assert limiter.try_acquire(key("2"), max_delay_s=0).denial == "dead-token"
    # A rotated token has another id: it is not dead.
    grant(limiter, key("2", token="rotated"))
    hook = key(
        "w:1", route="POST /webhooks/{webhook_id}/{webhook_token}", token=None, webhook="1:abc"
    )
    limiter.release(grant(limiter, hook), Outcome(status=404, dead_webhook=True))
    assert limiter.try_acquire(hook, max_delay_s=0).denial == "dead-webhook"


def test_expired_lease_frees_a_slot_of_a_crashed_holder(make_limiter: Any) -> None:
    limiter = make_limiter(lease_s=0.15)
    grant(limiter, key())  # never released: its process "crashed"
    assert limiter.try_acquire(key(), max_delay_s=0).denial == "discovery"
    time.sleep(0.2)
    grant(limiter, key())


def test_hash_change_is_reported(make_limiter: Any) -> None:
    limiter = make_limiter()
    assert limiter.release(grant(limiter, key()), headers(bucket="a")) is False
    assert limiter.release(grant(limiter, key()), headers(bucket="a")) is False
    assert limiter.release(grant(limiter, key()), headers(bucket="b")) is True


def test_two_redis_limiters_share_one_state(redis_url: str, redis_client: Any, prefix: str) -> None:
    import redis

    from shared.ratelimit.discord import LimiterConfig, RedisDiscordLimiter

    one = RedisDiscordLimiter(redis_client, LimiterConfig(key_prefix=prefix))
    with redis.Redis.from_url(redis_url) as other_connection:
        two = RedisDiscordLimiter(other_connection, LimiterConfig(key_prefix=prefix))
        one.release(grant(one, key()), headers(limit=1, remaining=0, reset_after=5))
        assert two.try_acquire(key(), max_delay_s=0).denial == "bucket"


def test_bucket_reset_is_used_exactly_by_default(make_limiter: Any) -> None:
    limiter = make_limiter()
    assert limiter.config.bucket_safety_ms == 0
    slot = grant(limiter, key())
    started = time.monotonic()
    limiter.release(slot, headers(limit=1, remaining=0, reset_after=0.2))
    verdict = limiter.try_acquire(key(), max_delay_s=0)
    assert verdict.denial == "bucket"
    # Anchored when the answer was read: no margin on top of Discord's Reset-After.
    assert 0.2 - since(started) - 0.005 < verdict.wait_s <= 0.2
    time.sleep(verdict.wait_s + 0.005)
    grant(limiter, key())
