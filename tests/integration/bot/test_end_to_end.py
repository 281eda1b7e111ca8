"""``/summarize`` through the whole pipeline: the bot in this process (real discord.py objects,
fake Discord over HTTP), a ``summarybot worker`` subprocess on real Postgres and Redis, until
the summary appears in the interaction's reply on the fake Discord."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
import redis
from celery import Celery
from sqlalchemy import select

import celeryconfig
from schema.models.jobs import Job, JobStatus
from shared import lifecycle
from shared.cache import CachedFetch, RedisMessageCache
from shared.crypto import generate_key
from shared.discord.convert import to_channel_info, to_chat_message
from shared.jobs import SUMMARIZE, CeleryEnqueuer
from tests.fakes.discord_server import FakeDiscordServer
from tests.integration.bot.harness import running_bot
from tests.integration.processes import Worker
from tests.support.jobs import settled

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.fixture
def clean_redis(redis_url: str) -> Iterator[str]:
    client = redis.Redis.from_url(redis_url)
    client.flushdb()  # this test database holds nothing but these tests' queues and keys
    yield redis_url
    client.flushdb()
    client.close()


def test_summarize_runs_through_the_pipeline_to_the_followup(
    database_url: str, clean_redis: str, tmp_path: Path
) -> None:
    key = generate_key()
    server = FakeDiscordServer().start()
    app = Celery("summarybot-bot-test", set_as_current=False)
    app.config_from_object(celeryconfig)
    app.conf.broker_url = clean_redis

    async def scenario() -> None:
        async with running_bot(
            database_url=database_url,
            redis_url=clean_redis,
            enqueuer=CeleryEnqueuer(app),
            server=server,
            secret_key=key,
        ) as h:
            w = h.world
            start_ms = h.fake.now_ms() - 3 * 3600 * 1000
            lines = [
                (w.alice, "the 4.2 release build is failing on arm64"),
                (w.bob, "I see it too, the linker runs out of memory"),
                (w.alice, "let's bump the runner size and retry the build"),
                (w.bob, "retry passed, publishing the release notes now"),
                (w.alice, "thanks! release 4.2 is out"),
            ]
            for n, (author, text) in enumerate(lines):
                h.fake.add_message(w.general, author, text, at_ms=start_ms + n * 60_000)
            env = {
                **os.environ,
                "DATABASE_URL": database_url,
                "REDIS_URL": clean_redis,
                "SECRET_KEYS": key,
                "DISCORD_TOKEN": w.token,
                "DISCORD_API_BASE": server.api_base,
                "SUMMARYBOT_DATA_DIR": str(tmp_path / "data"),
                "LOG_FORMAT": "json",
                "VISIBILITY_TIMEOUT": "60",
            }
            worker = Worker(env, tmp_path / "worker.log", name="bot-e2e")
            try:
                await asyncio.to_thread(worker.wait_ready)
                token = await h.command("summarize", [], user=w.bob, channel=w.general)
                deadline = time.monotonic() + 90
                while True:
                    with h.session_factory() as session:
                        job = session.scalars(
                            select(Job).where(Job.guild_id == str(w.guild.id))
                        ).one()
                    if (ended := settled(h.session_factory, job.id)) is not None:
                        job = ended
                        break
                    assert time.monotonic() < deadline, worker.log.read_text()[-4000:]
                    await asyncio.sleep(0.3)
            finally:
                await asyncio.to_thread(worker.stop)
            assert job.status == JobStatus.COMPLETED.value, (job.error, job.error_detail)
            assert (job.message_count or 0) >= len(lines)
            # The deliver stage wrote the summary into the reply the bot deferred.
            original = h.original(token)
            assert original is not None
            titles = [e.get("title") or "" for e in original.embeds]
            assert titles[0].startswith(f"Summary of #{w.general.name}"), original.embeds
            assert "release" in str(original.embeds).lower()

    try:
        asyncio.run(scenario())
    finally:
        server.stop()


def test_summary_is_delivered_into_the_interaction_reply(
    database_url: str, clean_redis: str, tmp_path: Path
) -> None:
    """The bot's half and the deliver stage's half of the contract, with the test doing the
    fetch stage's work: the Discord messages, converted by the adapter, go into the job's
    message cache exactly as fetch leaves them, then the summarize stage is published."""
    key = generate_key()
    server = FakeDiscordServer().start()
    app = Celery("summarybot-bot-test", set_as_current=False)
    app.config_from_object(celeryconfig)
    app.conf.broker_url = clean_redis

    async def scenario() -> None:
        async with running_bot(
            database_url=database_url, redis_url=clean_redis, server=server, secret_key=key
        ) as h:
            w = h.world
            start_ms = h.fake.now_ms() - 3 * 3600 * 1000
            lines = [
                (w.alice, "the 4.2 release build is failing on arm64"),
                (w.bob, "I see it too, the linker runs out of memory"),
                (w.alice, "let's bump the runner size and retry the release build"),
                (w.bob, "retry passed, publishing the release notes now"),
            ]
            posted = [
                h.fake.add_message(w.general, author, text, at_ms=start_ms + n * 60_000)
                for n, (author, text) in enumerate(lines)
            ]
            env = {
                **os.environ,
                "DATABASE_URL": database_url,
                "REDIS_URL": clean_redis,
                "SECRET_KEYS": key,
                "DISCORD_TOKEN": w.token,
                "DISCORD_API_BASE": server.api_base,
                "SUMMARYBOT_DATA_DIR": str(tmp_path / "data"),
                "LOG_FORMAT": "json",
                "VISIBILITY_TIMEOUT": "60",
            }
            worker = Worker(env, tmp_path / "worker.log", name="bot-deliver")
            try:
                await asyncio.to_thread(worker.wait_ready)
                token = await h.command("summarize", [], user=w.bob, channel=w.general)
                with h.session_factory() as session:
                    job = session.scalars(select(Job).where(Job.guild_id == str(w.guild.id))).one()
                # What the fetch stage does for a Discord source, done here.
                cache = RedisMessageCache(redis.Redis.from_url(clean_redis), ttl=600)
                channel = to_channel_info(h.fake.channels[w.general.id].to_json())
                cache.begin(str(job.id))
                cache.append(
                    str(job.id),
                    [
                        to_chat_message(
                            h.fake.message_json(m, w.bot.id), channel_id=str(w.general.id)
                        )
                        for m in posted
                    ],
                )
                cache.complete(
                    str(job.id), CachedFetch(channel=channel, count=len(posted), skipped=0)
                )
                now = datetime.now(UTC)
                lifecycle.move(h.session_factory, job.id, lifecycle.Move.START_FETCH, now=now)
                lifecycle.move(
                    h.session_factory,
                    job.id,
                    lifecycle.Move.FETCHED,
                    now=now,
                    message_count=len(posted),
                )
                CeleryEnqueuer(app).enqueue(SUMMARIZE, str(job.id))
                deadline = time.monotonic() + 90
                while True:
                    with h.session_factory() as session:
                        current = session.get(Job, job.id)
                        assert current is not None
                    if (ended := settled(h.session_factory, job.id)) is not None:
                        current = ended
                        break
                    assert time.monotonic() < deadline, worker.log.read_text()[-4000:]
                    await asyncio.sleep(0.3)
            finally:
                await asyncio.to_thread(worker.stop)
            assert current.status == JobStatus.COMPLETED.value, (
                current.error,
                worker.log.read_text()[-4000:],
            )
            original = h.original(token)
            assert original is not None
            assert original.embeds[0]["title"].startswith(f"Summary of #{w.general.name}")
            assert "release" in str(original.embeds).lower()
            assert job.id not in h.runtime.tracker  # the poller let the summary be

    try:
        asyncio.run(scenario())
    finally:
        server.stop()
