"""The Redis limiter and circuit breaker, shared by many callers, against real Redis."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator

import pytest
from redis import Redis

from shared.errors import RateLimitedError
from shared.llm.breaker import CircuitOpenError, RedisCircuitBreaker
from shared.ratelimit.llm import RedisLLMLimiter, RequestTooLargeError

pytestmark = pytest.mark.integration


@pytest.fixture
def redis(redis_url: str) -> Iterator[Redis]:  # type: ignore[type-arg]
    client: Redis = Redis.from_url(redis_url)  # type: ignore[type-arg]
    prefix = f"sbtest:llm:{uuid.uuid4().hex[:8]}"
    client.set("sbtest:llm:prefix", prefix)  # unique per test; cleaned below
    yield client
    for key in client.scan_iter(f"{prefix}*"):
        client.delete(key)
    client.delete("sbtest:llm:prefix")
    client.close()


def _prefix(redis: Redis) -> str:  # type: ignore[type-arg]
    return redis.get("sbtest:llm:prefix").decode()  # type: ignore[union-attr]


def limiter(redis: Redis, **kw: object) -> RedisLLMLimiter:  # type: ignore[type-arg]
    values: dict[str, object] = {
        "scope": "s",
        "tokens_per_minute": 60_000,
        "requests_per_minute": 600,
        "headroom": 0.0,
    }
    values.update(kw)
    return RedisLLMLimiter(redis, prefix=_prefix(redis), **values)  # type: ignore[arg-type]


def test_reserve_wait_settle_and_refuse(redis: Redis) -> None:  # type: ignore[type-arg]
    slept: list[float] = []
    lim = limiter(redis, sleep=slept.append)
    started = time.monotonic()
    assert lim.reserve(59_000, max_wait=0).waited == 0
    second = lim.reserve(2_000, max_wait=5)  # 1,000 short at 1,000 tokens/s
    # Less by what refilled while the test asked (a loaded machine may pause it).
    assert 1.0 - (time.monotonic() - started) - 0.01 < second.waited <= 1.001
    assert slept == [second.waited]
    with pytest.raises(RateLimitedError) as info:
        lim.reserve(30_000, max_wait=1)
    assert 25 < info.value.retry_after < 32
    lim.settle(second, 0)  # the call failed before sending: all back
    assert lim.reserve(900, max_wait=0.5).waited < 0.05
    with pytest.raises(RequestTooLargeError):
        lim.reserve(60_001, max_wait=600)


def test_calibrate_and_penalize(redis: Redis) -> None:  # type: ignore[type-arg]
    lim = limiter(redis, tokens_per_minute=None, requests_per_minute=None, sleep=lambda s: None)
    assert lim.reserve(10**9, max_wait=0).waited == 0  # limits unknown until a response says
    started = time.monotonic()
    lim.calibrate(
        {
            "x-ratelimit-limit-tokens": "6000",
            "x-ratelimit-remaining-tokens": "600",
            "x-ratelimit-limit-requests": "60",
            "x-ratelimit-remaining-requests": "60",
        }
    )
    waited = lim.reserve(1_200, max_wait=60).waited
    assert 6.0 - (time.monotonic() - started) - 0.01 < waited <= 6.001
    lim.penalize(3.0)
    assert lim.reserve(1, max_wait=60).waited >= 2.9
    lim.calibrate({})  # local servers send no headers: nothing changes


def test_settle_follows_the_answers_headers_in_the_same_round_trip(
    redis: Redis,  # type: ignore[type-arg]
) -> None:
    lim = limiter(redis, tokens_per_minute=None, requests_per_minute=None, sleep=lambda s: None)
    calls: list[object] = []
    script = lim._script
    lim._script = lambda **kw: calls.append(kw) or script(**kw)  # type: ignore[assignment]
    reservation = lim.reserve(1_000, max_wait=0)
    headers = {
        "x-ratelimit-limit-tokens": "6000",
        "x-ratelimit-remaining-tokens": "600",
        "x-ratelimit-limit-requests": "60",
        "x-ratelimit-remaining-requests": "60",
    }
    # Learnt 6,000/min with 600 left, then 900 of the 1,000 reserved given back: 1,500.
    started = time.monotonic()
    lim.settle(reservation, 100, headers)
    assert len(calls) == 2  # reserve, then settle and calibrate in one script call
    waited = lim.reserve(2_100, max_wait=60).waited
    assert 6.0 - (time.monotonic() - started) - 0.01 < waited <= 6.001
    # Without limit headers (a local server) it only settles.
    lim.settle(lim.reserve(10, max_wait=60), 10, {})
    assert len(calls) == 5


def test_workers_sharing_the_limit_never_exceed_it(redis: Redis) -> None:  # type: ignore[type-arg]
    # 12,000 tokens/min = 200/s with an empty bucket after the first burst.
    granted: list[tuple[float, int]] = []
    lock = threading.Lock()
    stop = time.monotonic() + 1.5

    def worker() -> None:
        lim = limiter(redis, tokens_per_minute=12_000, requests_per_minute=None)
        while time.monotonic() < stop:
            lim.reserve(100, max_wait=5)
            with lock:
                granted.append((time.monotonic(), 100))

    threads = [threading.Thread(target=worker) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    first = granted[0][0]
    spent = sum(n for at, n in granted if at <= first + 1.5)
    # Full bucket (12,000) plus 1.5 s of refill (300), and nothing more, whoever asks.
    assert 11_000 < spent <= 12_000 + 300 + 100 * 6


def breaker(redis: Redis, **kw: object) -> RedisCircuitBreaker:  # type: ignore[type-arg]
    values: dict[str, object] = {
        "scope": "s",
        "failure_threshold": 5,
        "open_seconds": 0.4,
        "probe_lease": 0.3,
    }
    values.update(kw)
    return RedisCircuitBreaker(redis, prefix=_prefix(redis), **values)  # type: ignore[arg-type]


def test_breaker_shared_between_workers(redis: Redis) -> None:  # type: ignore[type-arg]
    a, b = breaker(redis), breaker(redis)
    for _ in range(4):
        a.record_failure("http_500")
    assert b.state().state == "closed" and b.state().failures == 4
    started = time.monotonic()
    b.record_failure("http_503")  # the fifth, from another worker
    with pytest.raises(CircuitOpenError) as info:
        a.allow()
    assert info.value.reason == "http_503"
    assert 0.4 - (time.monotonic() - started) - 0.01 < info.value.retry_after <= 0.4
    time.sleep(0.45)
    assert b.state().state == "half_open"
    # Exactly one probe among concurrent callers.
    outcomes: list[bool] = []

    def try_allow(br: RedisCircuitBreaker) -> None:
        try:
            outcomes.append(br.allow().probe)
        except CircuitOpenError:
            outcomes.append(False)

    threads = [threading.Thread(target=try_allow, args=(x,)) for x in (a, b, a, b)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(outcomes) == [False, False, False, True]
    a.record_success()
    assert b.state().state == "closed"
    assert not b.allow().probe


def test_permit_says_when_a_success_would_change_nothing(redis: Redis) -> None:  # type: ignore[type-arg]
    a, b = breaker(redis), breaker(redis)
    assert a.allow().clean  # closed, nothing counted: the client skips reporting success
    b.record_failure("http_500")
    permit = a.allow()
    assert not permit.clean and not permit.probe
    a.record_success()  # reported, and it forgets the failure
    assert b.state().failures == 0
    assert b.allow().clean


def test_breaker_probe_failure_reopens_and_trip(redis: Redis) -> None:  # type: ignore[type-arg]
    br = breaker(redis, failure_threshold=1)
    br.record_failure("timeout")
    time.sleep(0.45)
    assert br.allow().probe
    br.record_failure("timeout")
    assert br.state().state == "open"
    br.trip("insufficient_quota", open_seconds=60)
    state = br.state()
    assert (state.state, state.reason) == ("open", "insufficient_quota")
    assert state.retry_after > 59


def test_clients_in_different_workers_share_breaker_and_budget(
    redis: Redis,  # type: ignore[type-arg]
    fake_server: object,
) -> None:
    from shared.llm.client import LLMClient, QuotaExceededError
    from shared.llm.config import LLMSettings
    from tests.fakes.openai_server import FakeConfig, FakeOpenAIServer

    assert isinstance(fake_server, FakeOpenAIServer)
    fake_server.reset()
    fake_server.config = FakeConfig()
    settings = LLMSettings(
        base_url=fake_server.base_url,
        provider="openai",
        api_key="sk-test",
        tokens_per_minute=100_000,
    )
    first = LLMClient.shared(settings, redis, prefix=_prefix(redis))
    second = LLMClient.shared(settings, redis, prefix=_prefix(redis))
    ask = [{"role": "user", "content": "hello"}]
    first.complete(ask, max_tokens=100)
    key = f"{_prefix(redis)}:rl:llm:{settings.scope('gpt-4o-mini')}"
    assert redis.exists(key)  # the budget lives in Redis, under the shared scope
    fake_server.inject("insufficient_quota")
    with pytest.raises(QuotaExceededError):
        first.complete(ask)
    with pytest.raises(CircuitOpenError) as info:
        second.complete(ask)  # another worker: refused without a request
    assert info.value.reason == "insufficient_quota"
    assert fake_server.stats()["requests"] == 2
    first.close()
    second.close()
    fake_server.reset()
