"""Redis dies (``kill -9``) while a worker is in the middle of a task, and comes back.

Each case runs a Redis of its own on another port, a real prefork worker, the fake Discord and
a fake OpenAI slow enough that the kill lands inside the summarize stage's LLM call.  The
worker process must stay up, reconnect, and the job must end ``completed`` with exactly one
summary and exactly one post: whether Redis comes back empty (no persistence, the common
cache-style deployment) or with everything it had (append-only file).
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from celery import Celery
from cryptography.fernet import Fernet
from sqlalchemy import func, select

import celeryconfig
from schema.models.jobs import Job, Summary
from shared.delivery.targets import ChannelTarget
from shared.jobs import DiscordChannelSource, JobParams
from shared.pipeline.services import Services
from shared.services.core import Actor
from shared.services.jobs import submit_job
from tests.fakes.discord_server import FakeDiscordServer, World, seed_basic
from tests.fakes.openai_server import FakeConfig, FakeOpenAIServer
from tests.integration.processes import Worker
from tests.perf.chaos import RedisServer, driver_services

pytestmark = pytest.mark.integration

#: Seconds the fake OpenAI takes to answer: the window in which Redis is killed.
LLM_SECONDS = 4.0


@dataclass
class Outage:
    """Everything one case needs: its Redis, the fakes, a ready worker and a driver."""

    redis: RedisServer
    discord: FakeDiscordServer
    world: World
    openai: FakeOpenAIServer
    worker: Worker
    services: Services


@pytest.fixture(params=["restarted-empty", "restarted-with-data"])
def outage(request: pytest.FixtureRequest, ops_db: str, tmp_path: Path) -> Iterator[Outage]:
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server is not installed")
    redis_server = RedisServer(tmp_path, persist=request.param == "restarted-with-data")
    redis_server.start()
    discord = FakeDiscordServer().start()
    world = seed_basic(discord.fake, token="outage-bot-token")
    now_ms = discord.fake.now_ms()
    discord.fake.add_history(
        world.general, [world.alice, world.bob], 30, start_ms=now_ms - 3_600_000, step_ms=60_000
    )
    openai = FakeOpenAIServer(FakeConfig(latency_base=LLM_SECONDS)).start()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("DISCORD_", "LLM_"))},
        "DATABASE_URL": ops_db,
        "REDIS_URL": redis_server.url,
        "SECRET_KEYS": Fernet.generate_key().decode(),
        "SUMMARYBOT_DATA_DIR": str(tmp_path / "data"),
        "DISCORD_TOKEN": world.token,
        "DISCORD_API_BASE": discord.api_base,
        "LLM_BASE_URL": openai.base_url,
        "OPENAI_API_KEY": "sk-outage-test",
        "LLM_PROVIDER": "openai",
        "LLM_REQUEST_TIMEOUT": "30",
        "LOG_LEVEL": "INFO",
    }
    worker = Worker(env, tmp_path / "worker.log", name=f"outage{redis_server.port}")
    app = Celery("outage-driver", set_as_current=False)
    app.config_from_object(celeryconfig)
    app.conf.broker_url = redis_server.url
    services, engine = driver_services(
        ops_db, redis_server.url, app, token=world.token, api_base=discord.api_base
    )
    try:
        worker.wait_ready(120)
        yield Outage(redis_server, discord, world, openai, worker, services)
    finally:
        worker.stop()
        services.close()
        app.close()
        engine.dispose()
        openai.stop()
        discord.stop()
        redis_server.kill()


def _wait_for(condition: object, timeout: float, what: str, outage: Outage) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if callable(condition) and condition():
            return
        time.sleep(0.2)
    log = outage.worker.log.read_text()[-4000:]
    raise AssertionError(f"{what} did not happen within {timeout} s; worker log:\n{log}")


def test_a_worker_survives_redis_dying_mid_task_and_the_job_completes_once(
    outage: Outage,
) -> None:
    o = outage
    params = JobParams(
        source=DiscordChannelSource(
            guild_id=str(o.world.guild.id), channel_id=str(o.world.general.id), limit=30
        ),
        destinations=[ChannelTarget(channel_id=str(o.world.general.id))],
    )
    actor = Actor(origin="outage-test", guild_id=str(o.world.guild.id))
    job_id = submit_job(o.services.core(), actor, params).job_id

    _wait_for(lambda: o.openai.stats()["requests"] >= 1, 60, "the LLM call", o)
    o.redis.kill()
    time.sleep(1.0)  # the worker notices the connection is gone while its task still runs
    o.redis.start()

    def finished() -> bool:
        with o.services.session_factory() as session:
            job = session.get(Job, job_id)
            return job is not None and job.status in {"completed", "failed"}

    _wait_for(finished, 120, "the job finishing", o)
    time.sleep(3.0)  # time for a second copy, had one been started, to post too
    log = o.worker.log.read_text()
    assert o.worker.process.poll() is None, log[-4000:]
    # The outage was real for the worker: it lost the broker and connected again.
    assert "Cannot connect to redis" in log or "Connection to broker lost" in log, log[-4000:]
    assert log.count("Connected to summarybot-redis://") >= 2, log[-4000:]
    with o.services.session_factory() as session:
        job = session.get(Job, job_id)
        assert job is not None and job.status == "completed", (job and job.error, job)
        summaries = session.scalar(
            select(func.count()).select_from(Summary).where(Summary.job_id == job_id)
        )
    assert summaries == 1
    posts = [
        m
        for m in list(o.discord.fake.messages.values())
        if m.channel_id == o.world.general.id and m.author_id == o.world.bot.id
    ]
    assert len(posts) == 1, [p.content[:80] for p in posts]
