"""Edges of the policy: the LLM failing at the reduce step or in a one-call window, bad options,
empty windows, a lost message cache, and notes of finished jobs."""

from __future__ import annotations

import random
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest

from schema.models.chunks import ChunkStatus, SummaryChunk
from schema.models.jobs import Job
from schema.models.tenancy import GuildSettings
from shared.domain.messages import ChatMessage
from shared.pipeline.llm.mapreduce import MAP_CHUNK, purge_finished_chunks
from shared.pipeline.recovery import requeue_stale_jobs
from shared.summarize.content import SummaryFormat
from tests.fakes.enqueuer import RecordingEnqueuer
from tests.integration.pipeline_llm.harness import Harness, channel, irc_messages

pytestmark = pytest.mark.integration


def _guild() -> str:
    return str(random.randrange(10**17, 10**18))


def _export(harness: Harness, name: str, count: int, guild: str):  # type: ignore[no-untyped-def]
    where = channel(guild_id=guild)
    return harness.export(
        name, irc_messages(count, guild_id=guild, channel_id=where.channel_id), where
    )


@pytest.mark.parametrize("opted_in", [True, False])
def test_quota_at_the_reduce_step(opted_in: bool, make_harness: Callable[..., Harness]) -> None:
    guild = _guild()
    harness = make_harness(degraded_fallback_guilds=frozenset({guild} if opted_in else ()))
    path = _export(harness, "reduce-quota", 400, guild)
    assert harness.run(path).job.status == "completed"  # notes are cached now
    harness.fake.reset()
    harness.fake.inject("insufficient_quota", times=1000)
    run = harness.run(path)
    assert run.plan is not None and run.plan.cached_chunks == run.plan.chunk_count
    if opted_in:
        assert run.job.status == "completed", run.job.error
        assert run.content.degraded and "quota" in run.job.progress["degraded_reason"]
    else:
        assert run.job.status == "failed"
        assert run.job.error is not None and "out of quota" in run.job.error


def test_quota_in_a_one_call_window_degrades_when_opted_in(
    make_harness: Callable[..., Harness],
) -> None:
    harness = make_harness(single_call_tokens=8000, degraded_fallback=True)
    harness.fake.inject("insufficient_quota", times=1000)
    run = harness.run(_export(harness, "single-quota", 60, _guild()))
    assert run.job.status == "completed", run.job.error
    assert run.content.degraded and run.kinds() == {"extractive": 1}


def test_a_one_call_window_over_budget_fails(make_harness: Callable[..., Harness]) -> None:
    harness = make_harness(single_call_tokens=8000)
    guild = _guild()
    with harness.session_factory() as session, session.begin():
        session.add(GuildSettings(guild_id=guild, monthly_token_budget=100))
    run = harness.run(_export(harness, "single-budget", 60, guild))
    assert run.job.status == "failed" and "monthly budget of 100 tokens" in (run.job.error or "")


def test_unknown_language_fails_clearly_and_long_instructions_are_cut(
    make_harness: Callable[..., Harness],
) -> None:
    harness = make_harness(single_call_tokens=8000)
    guild = _guild()
    with harness.session_factory() as session, session.begin():
        session.add(GuildSettings(guild_id=guild, custom_instructions="Be brief. " * 150))
    path = _export(harness, "options", 60, guild)
    bad = harness.run(path, language="12!")
    assert bad.job.status == "failed"
    assert bad.job.error is not None and "is not a language code or name" in bad.job.error
    good = harness.run(path)
    assert good.job.status == "completed", good.job.error
    system = harness.fake.requests_seen[-1]["messages"][0]["content"]
    assert "Be brief." in system and system.count("Be brief.") == 100


def test_an_empty_window_is_summarized_offline(make_harness: Callable[..., Harness]) -> None:
    harness = make_harness()
    where = channel(guild_id=_guild())
    t0 = datetime(2024, 1, 1, tzinfo=UTC)
    bots = [
        ChatMessage(
            id=str(10**17 + i),
            channel_id=where.channel_id,
            timestamp=t0 + timedelta(minutes=i),
            author_id="1",
            author_name="ci-bot",
            content=f"build {i} passed",
            is_bot=True,
        )
        for i in range(5)
    ]
    run = harness.run(harness.export("bots", bots, where))
    assert run.job.status == "completed", run.job.error
    assert run.content.backend == "extractive" and not run.content.degraded
    assert harness.fake.stats()["requests"] == 0


def test_a_lost_message_cache_is_fetched_again(make_harness: Callable[..., Harness]) -> None:
    harness = make_harness()
    inner = harness.services.enqueuer
    hold = RecordingEnqueuer(target=inner, drop={MAP_CHUNK})
    harness.services.enqueuer = hold
    job_id = harness.submit(_export(harness, "lost-cache", 400, _guild()))
    deadline = time.monotonic() + 30
    while not hold.dropped:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    for key in harness.keys("fetch:*") + harness.keys("scratch:*"):
        harness.redis.delete(key)
    harness.services.enqueuer = inner
    real_clock = harness.services.clock
    harness.services.clock = lambda: real_clock() + timedelta(hours=1)
    requeue_stale_jobs(harness.services)
    harness.services.clock = real_clock
    run = harness.wait(job_id)
    assert run.job.status == "completed", run.job.error
    assert run.plan is not None and run.kinds()["map"] == run.plan.chunk_count


def test_notes_of_finished_jobs_are_purged(make_harness: Callable[..., Harness]) -> None:
    harness = make_harness()
    with harness.session_factory() as session, session.begin():
        job = Job(id=uuid.uuid4(), origin="test", status="failed", params={}, progress={})
        session.add(job)
        session.flush()
        session.add(
            SummaryChunk(
                job_id=job.id,
                chunk_index=0,
                status=ChunkStatus.DONE.value,
                content_hash="0" * 64,
                message_count=1,
                transcript_tokens=10,
                notes={"key_points": []},
            )
        )
    assert purge_finished_chunks(harness.services) >= 1
    assert harness.chunk_rows(job.id) == []


def test_a_one_call_window_summarized_again_reuses_the_first_answer(
    make_harness: Callable[..., Harness],
) -> None:
    harness = make_harness(single_call_tokens=8000)
    path = _export(harness, "single-again", 60, _guild())
    first = harness.run(path)
    assert first.job.status == "completed", first.job.error
    calls = len(harness.fake.requests_seen)
    again = harness.run(path)
    assert again.job.status == "completed", again.job.error
    assert len(harness.fake.requests_seen) == calls  # nothing new was asked
    assert again.prompt_tokens == 0 and again.job.progress["llm"]["cached"] is True
    assert again.content.topics == first.content.topics
    assert again.content.citations == first.content.citations
    # Another format is another answer: asked for, not reused.
    other = harness.run(path, fmt=SummaryFormat.BRIEF)
    assert other.job.status == "completed", other.job.error
    assert len(harness.fake.requests_seen) > calls and other.prompt_tokens > 0
