"""``RequestLimiter.run`` against real Redis: a request counts only when it started something."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable

import pytest
from redis.asyncio import Redis

from producers.bot.limits import OverLimit, RequestLimiter

pytestmark = pytest.mark.integration

GUILD, USER = 1, 2


def _run(redis_url: str, body: Callable[[RequestLimiter], Awaitable[None]]) -> None:
    async def main() -> None:
        redis: Redis = Redis.from_url(redis_url)
        try:
            limiter = RequestLimiter(
                redis,
                prefix=f"test:{uuid.uuid4().hex}:",
                user_cooldown=0,
                guild_cooldown=0,
                user_quota=1,
                guild_quota=0,
            )
            await body(limiter)
        finally:
            await redis.aclose()

    asyncio.run(main())


async def _submit(value: bool) -> bool:
    return value


def test_a_request_that_started_something_spends_the_quota(redis_url: str) -> None:
    calls: list[bool] = []

    async def body(limiter: RequestLimiter) -> None:
        async def submit() -> bool:
            calls.append(True)
            return True

        first = await limiter.run(guild_id=GUILD, user_id=USER, submit=submit, started=bool)
        assert first is True
        second = await limiter.run(guild_id=GUILD, user_id=USER, submit=submit, started=bool)
        assert isinstance(second, OverLimit)
        assert "your 1 summary for today" in second.message

    _run(redis_url, body)
    assert calls == [True]  # refused requests never run


def test_a_request_that_started_nothing_gives_its_place_back(redis_url: str) -> None:
    async def body(limiter: RequestLimiter) -> None:
        for _ in range(3):
            assert (
                await limiter.run(
                    guild_id=GUILD, user_id=USER, submit=lambda: _submit(False), started=bool
                )
                is False
            )
        assert await limiter.run(
            guild_id=GUILD, user_id=USER, submit=lambda: _submit(True), started=bool
        )

    _run(redis_url, body)


def test_a_failed_request_gives_its_place_back(redis_url: str) -> None:
    async def body(limiter: RequestLimiter) -> None:
        async def fail() -> bool:
            raise RuntimeError("broker down")

        with pytest.raises(RuntimeError):
            await limiter.run(guild_id=GUILD, user_id=USER, submit=fail, started=bool)
        assert await limiter.run(
            guild_id=GUILD, user_id=USER, submit=lambda: _submit(True), started=bool
        )

    _run(redis_url, body)
