"""The in-process limiter and breaker twins, driven by a fake clock."""

from __future__ import annotations

import pytest

from shared.errors import RateLimitedError
from shared.llm.breaker import QUOTA_REASON, CircuitOpenError, LocalCircuitBreaker
from shared.ratelimit.llm import (
    LocalLLMLimiter,
    RateLimitHeaders,
    RequestTooLargeError,
    parse_duration,
    parse_retry_after,
)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def limiter(clock: Clock, tpm: int | None = 6000, rpm: int | None = 60) -> LocalLLMLimiter:
    return LocalLLMLimiter(
        scope="s",
        tokens_per_minute=tpm,
        requests_per_minute=rpm,
        headroom=0,
        clock=clock,
        sleep=clock.sleep,
    )


def test_reservations_queue_in_order_and_refill() -> None:
    clock = Clock()
    lim = limiter(clock)
    assert lim.reserve(5000, max_wait=0).waited == 0
    # 1000 left; 2000 more needs 1000 tokens of refill = 10 s at 100 tokens/s
    second = lim.reserve(2000, max_wait=30)
    assert second.waited == pytest.approx(10)
    # The bucket is now booked 0 at t+10; the next one waits its own turn.
    third = lim.reserve(1000, max_wait=30)
    assert third.waited == pytest.approx(10)
    with pytest.raises(RateLimitedError) as info:
        lim.reserve(6000, max_wait=5)
    assert info.value.retry_after == pytest.approx(60)


def test_settle_refunds_unused_allowance_and_charges_shortfall() -> None:
    clock = Clock()
    lim = limiter(clock)
    reservation = lim.reserve(6000, max_wait=0)
    lim.settle(reservation, 1000)  # 5000 back
    assert lim.reserve(5000, max_wait=0).waited == 0
    short = lim.reserve(0, max_wait=100)
    lim.settle(short, 600)  # used 600 more than reserved: now in debt
    assert lim.reserve(1, max_wait=100).waited == pytest.approx(6.01)


def test_requests_per_minute() -> None:
    clock = Clock()
    lim = limiter(clock, tpm=None, rpm=2)
    lim.reserve(10**9, max_wait=0)  # no token limit known
    lim.reserve(1, max_wait=0)
    assert lim.reserve(1, max_wait=60).waited == pytest.approx(30)


def test_too_large_is_permanent() -> None:
    with pytest.raises(RequestTooLargeError, match="exceeds"):
        limiter(Clock()).reserve(6001, max_wait=600)


def test_calibrate_learns_limits_and_follows_outside_spending() -> None:
    clock = Clock()
    lim = limiter(clock, tpm=None, rpm=None)
    lim.calibrate(
        {
            "x-ratelimit-limit-tokens": "6000",
            "x-ratelimit-remaining-tokens": "6000",
            "x-ratelimit-limit-requests": "60",
            "x-ratelimit-remaining-requests": "60",
        }
    )
    lim.reserve(6000, max_wait=0)
    with pytest.raises(RateLimitedError):
        lim.reserve(100, max_wait=0.5)
    clock.now += 60
    # Someone outside spent most of it: follow the server down.
    lim.calibrate(
        {
            "x-ratelimit-limit-tokens": "6000",
            "x-ratelimit-remaining-tokens": "1000",
            "x-ratelimit-limit-requests": "60",
            "x-ratelimit-remaining-requests": "3",
        }
    )
    assert lim.reserve(2000, max_wait=60).waited == pytest.approx(10)
    # A limit change rescales the level; local servers send nothing and change nothing.
    lim.calibrate({"x-ratelimit-limit-tokens": "12000"})
    lim.calibrate({})


def test_settle_follows_the_answers_headers_first() -> None:
    lim = limiter(Clock(), tpm=None, rpm=None)
    reservation = lim.reserve(1_000, max_wait=0)
    headers = {
        "x-ratelimit-limit-tokens": "6000",
        "x-ratelimit-remaining-tokens": "600",
        "x-ratelimit-limit-requests": "60",
        "x-ratelimit-remaining-requests": "60",
    }
    lim.settle(reservation, 100, headers)  # 600 left, then 900 given back
    assert lim.reserve(2_100, max_wait=60).waited == pytest.approx(6.0)


def test_penalize_makes_everyone_wait() -> None:
    clock = Clock()
    lim = limiter(clock)
    lim.penalize(2.5)
    assert lim.reserve(10, max_wait=60).waited == pytest.approx(2.5)


def test_bad_limits_are_refused() -> None:
    with pytest.raises(ValueError, match="tokens_per_minute"):
        LocalLLMLimiter(scope="s", tokens_per_minute=0, requests_per_minute=None)
    with pytest.raises(ValueError, match="requests_per_minute"):
        LocalLLMLimiter(scope="s", tokens_per_minute=None, requests_per_minute=-1)
    with pytest.raises(ValueError, match="headroom"):
        LocalLLMLimiter(scope="s", tokens_per_minute=None, requests_per_minute=None, headroom=0.9)
    with pytest.raises(ValueError, match="negative"):
        limiter(Clock()).reserve(-1, max_wait=0)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("6m0s", 360.0),
        ("1s", 1.0),
        ("20ms", 0.02),
        ("1.146s", 1.146),
        ("1h2m3s", 3723.0),
        ("3m57.024s", 237.024),
        (".5s", 0.5),
        ("60", 60.0),
        ("", None),
        ("soon", None),
        (None, None),
        # malformed or endless: no wait can be read from them (they used to raise or be inf)
        ("1..2s", None),
        ("1.2.3m", None),
        ("inf", None),
        ("nan", None),
    ],
)
def test_parse_duration(text: str | None, seconds: float | None) -> None:
    assert parse_duration(text) == (pytest.approx(seconds) if seconds is not None else None)


def test_parse_retry_after() -> None:
    assert parse_retry_after({"Retry-After-Ms": "1500", "retry-after": "9"}) == 1.5
    assert parse_retry_after({"retry-after": "3"}) == 3
    assert parse_retry_after({"retry-after": "Wed, 21 Oct 2015 07:28:10 GMT"}, now=1445412480) == 10
    assert parse_retry_after({"retry-after": "later"}) is None
    assert parse_retry_after({"retry-after-ms": "x"}) is None
    assert parse_retry_after({}) is None
    assert parse_retry_after({"retry-after-ms": "inf", "retry-after": "2"}) == 2
    assert parse_retry_after({"retry-after": "inf"}) is None


def test_rate_limit_headers() -> None:
    seen = RateLimitHeaders.parse(
        {
            "x-ratelimit-limit-tokens": "150000",
            "x-ratelimit-remaining-tokens": "149984",
            "x-ratelimit-reset-tokens": "6m0s",
            "x-ratelimit-limit-requests": "-1",
        }
    )
    assert (seen.limit_tokens, seen.remaining_tokens, seen.reset_tokens) == (150000, 149984, 360.0)
    assert seen.limit_requests is None and not seen.empty
    assert RateLimitHeaders.parse({"x-ratelimit-limit-tokens": "0"}).empty
    assert RateLimitHeaders.parse({"x-ratelimit-limit-tokens": "abc"}).empty
    assert RateLimitHeaders.parse({"x-ratelimit-limit-tokens": "inf"}).empty
    assert RateLimitHeaders.parse({"x-ratelimit-reset-tokens": "1..2s"}).reset_tokens is None


def test_breaker_opens_after_threshold_and_probes_once() -> None:
    clock = Clock()
    breaker = LocalCircuitBreaker(
        scope="s", failure_threshold=3, open_seconds=300, probe_lease=60, clock=clock
    )
    for _ in range(2):
        breaker.allow()
        breaker.record_failure("http_500")
    assert breaker.state().state == "closed"
    breaker.record_failure("http_503")
    with pytest.raises(CircuitOpenError) as info:
        breaker.allow()
    assert info.value.reason == "http_503"
    assert info.value.retry_after == pytest.approx(300)
    clock.now += 300
    assert breaker.state().state == "half_open"
    assert breaker.allow().probe
    with pytest.raises(CircuitOpenError):
        breaker.allow()  # one probe at a time
    assert breaker.state().state == "half_open"
    breaker.record_failure("timeout")  # the probe failed: open again
    assert breaker.state().state == "open"
    clock.now += 300
    assert breaker.allow().probe
    breaker.record_success()
    assert breaker.state().state == "closed"
    permit = breaker.allow()
    assert not permit.probe and permit.clean
    breaker.record_failure("timeout")
    assert not breaker.allow().clean  # a success now has a failure to forget


def test_an_open_breaker_tells_users_why_it_opened() -> None:
    breaker = LocalCircuitBreaker(scope="s", failure_threshold=1, clock=Clock())
    breaker.trip(QUOTA_REASON)
    with pytest.raises(CircuitOpenError) as quota:
        breaker.allow()
    assert "out of quota or credit" in quota.value.user_message
    failing = LocalCircuitBreaker(scope="s", failure_threshold=1, clock=Clock())
    failing.record_failure("http_503")
    with pytest.raises(CircuitOpenError) as outage:
        failing.allow()
    assert "failing right now" in outage.value.user_message


def test_breaker_forgets_old_failures_and_probe_leases_expire() -> None:
    clock = Clock()
    breaker = LocalCircuitBreaker(
        scope="s", failure_threshold=2, failure_window=10, probe_lease=5, clock=clock
    )
    breaker.record_failure("x")
    clock.now += 11
    breaker.record_failure("x")
    assert breaker.state().state == "closed"
    breaker.trip("insufficient_quota", open_seconds=1)
    assert breaker.state().reason == "insufficient_quota"
    clock.now += 1
    assert breaker.allow().probe
    clock.now += 6  # the prober died: someone else may probe
    assert breaker.allow().probe
    with pytest.raises(ValueError, match="failure_threshold"):
        LocalCircuitBreaker(scope="s", failure_threshold=0)
