"""An API process opens its connections before it serves, and starts even when they fail."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import redis
import structlog
from sqlalchemy.pool import QueuePool

from producers.api.warmup import warm_up
from shared.db.engine import make_engine, make_sessionmaker
from shared.jobs import publisher_app
from tests.integration.api.server import free_port


def test_warm_up_leaves_each_connection_open_for_the_first_request(
    redis_url: str, tmp_path: Path
) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'db.sqlite'}", poolclass=QueuePool)
    client: redis.Redis[Any] = redis.Redis.from_url(redis_url)
    publisher = publisher_app(redis_url, visibility_timeout=3600)
    try:
        assert not publisher.finalized
        with structlog.testing.capture_logs() as logs:
            warm_up(make_sessionmaker(engine), client, publisher)
        assert publisher.finalized
        assert engine.pool.checkedin() == 1  # type: ignore[attr-defined]
        assert [log["event"] for log in logs] == ["api.warmed_up"]
    finally:
        client.close()
        publisher.close()
        engine.dispose()


def test_warm_up_reports_what_is_down_and_does_not_raise(tmp_path: Path) -> None:
    down = f"redis://127.0.0.1:{free_port()}/0"
    engine = make_engine(
        f"postgresql+psycopg://postgres@127.0.0.1:{free_port()}/x",
        connect_args={"connect_timeout": 2},
    )
    client: redis.Redis[Any] = redis.Redis.from_url(down, socket_connect_timeout=1)
    publisher = publisher_app(down, visibility_timeout=3600)
    try:
        began = time.monotonic()
        with structlog.testing.capture_logs() as logs:
            warm_up(make_sessionmaker(engine), client, publisher)
        assert time.monotonic() - began < 10
        (warning,) = logs
        assert warning["event"] == "api.warm_up_incomplete"
        assert warning["unavailable"] == ["database", "redis", "broker"]
    finally:
        client.close()
        publisher.close()
        engine.dispose()
