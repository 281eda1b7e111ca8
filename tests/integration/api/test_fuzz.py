"""The schemathesis run of ``tests.perf.api_fuzz``, smaller, as part of the suite (and so in CI)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
import redis

from producers.api.app import create_app
from producers.api.resources import ApiOptions
from shared.apikeys import create_api_key
from shared.crypto import SecretBox, generate_key
from shared.db.engine import make_engine, make_sessionmaker
from shared.db.migrate import upgrade
from shared.settings import load_settings
from tests.perf.api_fuzz import GUILD, PublishedJobs, existing_resources, fuzz_app

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
    postgres_url: str, redis_url: str, client: tuple[redis.Redis[Any], str]
) -> None:
    upgrade(postgres_url)
    connection, prefix = client
    engine = make_engine(postgres_url)
    factory = make_sessionmaker(engine)
    _row, token = create_api_key(
        factory,
        guild_id=GUILD,
        scopes=["admin"],
        name="fuzz",
        now=datetime.now(UTC),
        rate_limit_per_minute=1_000_000,
    )
    app = create_app(
        load_settings(database_url=postgres_url, redis_url=redis_url),
        session_factory=factory,
        redis=connection,
        enqueuer=PublishedJobs(),
        box=SecretBox([generate_key()]),
        options=ApiOptions(redis_prefix=prefix),
    )
    headers = {"Authorization": f"Bearer {token}"}
    try:
        report = fuzz_app(
            app,
            headers=headers,
            examples=4,
            existing=existing_resources(app, factory, headers, GUILD),
        )
    finally:
        engine.dispose()
    assert report.failures == []
    assert (report.server_errors, report.schema_violations) == (0, 0)
    assert report.cases > 150
    assert report.statuses[200] and report.statuses[202] and report.statuses[422]
