"""The schemathesis run of ``tests.perf.api_fuzz``, smaller, as part of the suite (and so in CI)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import redis

from shared.db.migrate import upgrade
from tests.perf.api_fuzz import existing_resources, fuzz_app, fuzz_target
from tests.support.discord_tenants import DiscordTenants

pytestmark = pytest.mark.integration


@pytest.fixture
def client(redis_url: str) -> Iterator[tuple[redis.Redis[Any], str]]:
    connection: redis.Redis[Any] = redis.Redis.from_url(redis_url)
    prefix = f"sbtest:fuzz:{uuid.uuid4().hex[:8]}"
    yield connection, prefix
    keys = list(connection.scan_iter(match=f"{prefix}:*", count=1000))
    if keys:
        connection.delete(*keys)
    connection.close()


def test_schemathesis_finds_no_server_error_and_no_schema_violation(
    postgres_url: str,
    redis_url: str,
    client: tuple[redis.Redis[Any], str],
    discord_tenants: DiscordTenants,
) -> None:
    upgrade(postgres_url)
    connection, prefix = client
    target = fuzz_target(postgres_url, redis_url, connection, prefix, discord_tenants)
    try:
        report = fuzz_app(
            target.app,
            headers=target.headers,
            examples=4,
            existing=existing_resources(target),
        )
    finally:
        target.engine.dispose()
    assert report.failures == []
    assert (report.server_errors, report.schema_violations) == (0, 0)
    assert report.cases > 150
    # Generated channel ids are not channels of the key's guild on the fake Discord: the
    # accepted (202) path runs in existing_resources, the fuzz meets its 404s.
    assert report.statuses[200] and report.statuses[404] and report.statuses[422]
