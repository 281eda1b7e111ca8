"""Fixtures for the Discord adapter's integration tests: the fake server, limiters, clients."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import httpx
import pytest
import redis as redis_lib
from prometheus_client import CollectorRegistry

from shared.discord.client import DiscordClient
from shared.discord.config import DiscordSettings
from shared.discord.factory import build_discord_client
from shared.ratelimit.discord import LimiterConfig, RedisDiscordLimiter
from shared.ratelimit.inprocess import InProcessDiscordLimiter
from tests.fakes.discord_limits import FakeConfig
from tests.fakes.discord_server import FakeDiscordServer, World, seed_basic


def _drop_prefix(client: redis_lib.Redis, prefix: str) -> None:
    keys = list(client.scan_iter(match=f"{prefix}*", count=500))
    if keys:
        client.delete(*keys)


@pytest.fixture
def prefix() -> str:
    """A key prefix unique to this test."""
    return "{dtest-" + uuid.uuid4().hex[:10] + "}"


@pytest.fixture
def redis_client(redis_url: str, prefix: str) -> Iterator[redis_lib.Redis]:
    """A Redis client on the test database; the test's keys are removed afterwards."""
    client = redis_lib.Redis.from_url(redis_url)
    yield client
    _drop_prefix(client, prefix)
    client.close()


@pytest.fixture(params=["inprocess", "redis"])
def make_limiter(request: pytest.FixtureRequest, prefix: str) -> Any:
    """Factory of limiters of the parametrized kind, sharing one state per test."""
    kind = request.param
    client = request.getfixturevalue("redis_client") if kind == "redis" else None
    shared_inprocess: dict[str, InProcessDiscordLimiter] = {}

    def make(**overrides: Any) -> Any:
        config = LimiterConfig(key_prefix=prefix, **overrides)
        if client is not None:
            return RedisDiscordLimiter(client, config)
        if "one" not in shared_inprocess:
            shared_inprocess["one"] = InProcessDiscordLimiter(config)
        return shared_inprocess["one"]

    make.kind = kind  # type: ignore[attr-defined]
    return make


def fast_config() -> FakeConfig:
    """Discord's default limits with every window 20 times shorter (tests stay fast)."""
    config = FakeConfig()
    config.limits = {
        route: None if limit is None else replace(limit, window_s=limit.window_s / 20)
        for route, limit in config.limits.items()
    }
    config.webhook_channel_limit = (30, 3.0)
    return config


@pytest.fixture
def server() -> Iterator[FakeDiscordServer]:
    """A fresh fake Discord for this test."""
    with FakeDiscordServer(config=fast_config()) as srv:
        yield srv


@pytest.fixture
def world(server: FakeDiscordServer) -> World:
    """The basic world seeded into the fake."""
    seeded = seed_basic(server.fake)
    seeded.api_base = server.api_base
    return seeded


@pytest.fixture
def registry() -> CollectorRegistry:
    """A private metrics registry."""
    return CollectorRegistry()


@pytest.fixture
def http() -> Iterator[httpx.Client]:
    """The HTTP client the adapter is given."""
    with httpx.Client(timeout=10) as client:
        yield client


@pytest.fixture
def settings(world: World, prefix: str) -> DiscordSettings:
    """Settings pointing at the fake, with fast retries."""
    return DiscordSettings(
        token=world.token,
        api_base=world.api_base,
        key_prefix=prefix,
        backoff_base_s=0.01,
        max_wait_s=10,
    )


@pytest.fixture
def client(
    settings: DiscordSettings,
    http: httpx.Client,
    redis_client: redis_lib.Redis,
    registry: CollectorRegistry,
) -> Iterator[DiscordClient]:
    """The adapter on the fake, with the Redis-shared limiter."""
    with build_discord_client(settings, http, redis_client, registry) as built:
        yield built
