"""Fixtures: a migrated PostgreSQL database, one embedded worker, the fake OpenAI, a harness."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from redis import Redis
from sqlalchemy import Engine

from shared.db.engine import make_engine, make_sessionmaker
from shared.llm.config import LLMSettings
from shared.settings import Settings, load_settings
from tests.fakes.openai_server import FakeConfig, FakeOpenAIServer
from tests.integration.pipeline_llm.harness import Harness
from tests.support.databases import fresh_database
from workers.app import WorkerApp, create_worker_app
from workers.embedded import EmbeddedWorker

API_KEY = "sk-test"


@pytest.fixture(scope="module")
def llm_db(postgres_url: str) -> Iterator[str]:
    """A fresh PostgreSQL database of this module, migrated to head."""
    with fresh_database(postgres_url, prefix="sb_llmp") as database_url:
        yield database_url


@pytest.fixture(scope="module")
def engine(llm_db: str) -> Iterator[Engine]:
    engine = make_engine(llm_db)
    yield engine
    engine.dispose()


@pytest.fixture(scope="module")
def app_settings(llm_db: str, tmp_path_factory: pytest.TempPathFactory) -> Settings:
    # No REDIS_URL: the embedded (in-process) broker; Redis is used for the caches only.
    return load_settings(
        database_url=llm_db,
        redis_url=None,
        data_dir=tmp_path_factory.mktemp("llm-data"),
        visibility_timeout=60,
        max_task_retries=3,
    )


@pytest.fixture(scope="module")
def worker_app(app_settings: Settings) -> Iterator[WorkerApp]:
    worker = create_worker_app(app_settings)
    with EmbeddedWorker(worker.app, concurrency=2):
        yield worker
    worker.close()


@pytest.fixture(scope="module")
def fake_server() -> Iterator[FakeOpenAIServer]:
    with FakeOpenAIServer(FakeConfig(api_keys=frozenset({API_KEY}))) as server:
        yield server


@pytest.fixture
def fake(fake_server: FakeOpenAIServer) -> Iterator[FakeOpenAIServer]:
    fake_server.reset()
    fake_server.config = FakeConfig(api_keys=frozenset({API_KEY}))
    yield fake_server
    fake_server.reset()


@pytest.fixture
def redis_client(redis_url: str) -> Iterator[Redis]:  # type: ignore[type-arg]
    client: Redis = Redis.from_url(redis_url)  # type: ignore[type-arg]
    yield client
    client.close()


def llm_settings(fake: FakeOpenAIServer, **overrides: Any) -> LLMSettings:
    """Settings pointed at the fake, with chunks small enough to make test windows multi-chunk."""
    values: dict[str, Any] = {
        "base_url": fake.base_url,
        "provider": "openai",
        "api_key": API_KEY,
        "model": "gpt-4o-mini",
        "request_timeout": 5.0,
        "max_output_tokens": 2000,
        "map_input_tokens": 2500,
        "map_output_tokens": 1500,
        "single_call_tokens": 0,
        "reduce_input_tokens": 30000,
        "max_rate_wait": 5.0,
    }
    values.update(overrides)
    return LLMSettings(**values)


@pytest.fixture
def make_harness(
    app_settings: Settings,
    engine: Engine,
    worker_app: WorkerApp,
    fake: FakeOpenAIServer,
    redis_client: Redis,  # type: ignore[type-arg]
    tmp_path: Path,
) -> Iterator[Callable[..., Harness]]:
    made: list[Harness] = []

    def make(**overrides: Any) -> Harness:
        harness = Harness(
            settings=app_settings,
            session_factory=make_sessionmaker(engine),
            redis=redis_client,
            fake=fake,
            worker=worker_app,
            tmp=tmp_path,
            prefix=f"sbtest:llmp:{uuid.uuid4().hex[:10]}",
            llm_settings=llm_settings(fake, **overrides),
        )
        made.append(harness)
        return harness

    yield make
    for harness in made:
        harness.close()
