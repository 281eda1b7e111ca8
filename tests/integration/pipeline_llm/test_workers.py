"""Map steps fan out across separately started worker processes over the real Redis broker."""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from sqlalchemy import select

from schema.models.jobs import Job, Summary
from schema.models.usage import UsageLedger
from shared.crypto import generate_key
from shared.db.engine import make_engine, make_sessionmaker
from shared.summarize.llm.prompts import PROMPT_VERSION
from tests.fakes.openai_server import FakeOpenAIServer
from tests.integration.pipeline_llm.conftest import API_KEY
from tests.integration.pipeline_llm.harness import channel, irc_messages, write
from tests.integration.processes import cli, workers

pytestmark = pytest.mark.integration

#: Keys the workers create in the test Redis database (Celery's and the default ``sb`` prefix).
WORKER_KEYS = ("fetch", "summarize", "deliver", "maintenance", "unacked*", "_kombu*", "sb:*")


def _clear(client: redis.Redis) -> None:  # type: ignore[type-arg]
    for pattern in WORKER_KEYS:
        for key in client.scan_iter(pattern):
            client.delete(key)


@pytest.fixture
def worker_env(
    llm_db: str, redis_url: str, tmp_path: Path, fake: FakeOpenAIServer
) -> Iterator[dict[str, str]]:
    client = redis.Redis.from_url(redis_url)
    _clear(client)
    yield {
        **os.environ,
        "DATABASE_URL": llm_db,
        "REDIS_URL": redis_url,
        "SUMMARYBOT_DATA_DIR": str(tmp_path / "data"),
        "LOG_FORMAT": "json",
        "VISIBILITY_TIMEOUT": "120",
        "LLM_BASE_URL": fake.base_url,
        "OPENAI_API_KEY": API_KEY,
        "LLM_PROVIDER": "openai",
        "LLM_MAP_INPUT_TOKENS": "2500",
        "LLM_SINGLE_CALL_TOKENS": "0",
        "LLM_REQUEST_TIMEOUT": "10",
        "SECRET_KEYS": generate_key(),
    }
    _clear(client)
    client.close()


def test_two_worker_processes_share_the_map_steps(
    worker_env: dict[str, str], tmp_path: Path, llm_db: str, fake: FakeOpenAIServer
) -> None:
    # Each call takes a while, so the map steps overlap however the two processes are
    # scheduled: one alone cannot take them all.
    fake.config.latency_base = 0.3
    where = channel(guild_id="1085131932217520185", channel_id="1191512658436472899")
    export = write(
        tmp_path / "export.json",
        irc_messages(1500, guild_id="1085131932217520185", channel_id=where.channel_id),
        where,
    )
    with workers(worker_env, tmp_path, 2) as started:
        result = cli("summarize", str(export), "--json", env=worker_env, timeout=240)
        logs = [w.log.read_text() for w in started]
    assert result.returncode == 0, result.stderr
    document = json.loads(result.stdout)
    assert document["prompt_version"] == PROMPT_VERSION and document["model"] == "gpt-4o-mini"
    assert document["summary"]["backend"] == "openai"
    assert document["summary"]["coverage"]["messages_total"] == 1500
    # Both processes ran map steps.
    assert all("summarybot.summarize.map" in log for log in logs), [len(x) for x in logs]
    engine = make_engine(llm_db)
    try:
        with make_sessionmaker(engine)() as session:
            job = session.get(Job, uuid.UUID(document["job_id"]))
            assert job is not None and job.status == "completed"
            usage = list(session.scalars(select(UsageLedger).where(UsageLedger.job_id == job.id)))
            summary = session.scalars(select(Summary).where(Summary.job_id == job.id)).one()
    finally:
        engine.dispose()
    maps = [u for u in usage if u.kind == "map"]
    assert len(maps) == job.progress["chunks"] >= 6
    assert summary.prompt_tokens == sum(u.prompt_tokens for u in usage)


def test_worker_processes_learn_a_missing_json_schema_once(
    worker_env: dict[str, str], tmp_path: Path, fake: FakeOpenAIServer
) -> None:
    """A vLLM without json_schema whose model writes its own JSON: one 400 for both workers."""
    fake.configure(supports_json_schema=False, dialect="vllm", answer_style="own_json")
    where = channel(guild_id="1085131932217520185", channel_id="1191512658436472898")
    export = write(
        tmp_path / "export.json",
        irc_messages(900, guild_id="1085131932217520185", channel_id=where.channel_id),
        where,
    )
    with workers(worker_env, tmp_path, 2) as started:
        result = cli("summarize", str(export), "--json", env=worker_env, timeout=240)
        logs = [w.log.read_text() for w in started]
    assert result.returncode == 0, result.stderr
    document = json.loads(result.stdout)
    assert document["summary"]["backend"] == "openai" and not document["summary"]["degraded"]
    assert document["summary"]["citations"]
    assert all("summarybot.summarize.map" in log for log in logs), [len(x) for x in logs]
    statuses = fake.stats()["statuses"]
    assert statuses.get("400") == 1, statuses
