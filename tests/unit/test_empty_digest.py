"""A digest window without messages follows its schedule's empty policy in the summarize stage."""

from __future__ import annotations

import io
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import select

from schema.models.jobs import Job, Summary
from shared import lifecycle
from shared.cache import CachedFetch, MemoryMessageCache
from shared.db.engine import make_engine, make_sessionmaker
from shared.db.migrate import upgrade
from shared.domain.messages import ChannelInfo
from shared.jobs import DiscordChannelSource, JobParams
from shared.pipeline.services import Services
from shared.pipeline.summarize import run_summarize
from shared.settings import load_settings
from shared.summarize.extractive.summarizer import ExtractiveSummarizer
from tests.fakes.enqueuer import RecordingEnqueuer

START = datetime(2026, 3, 1, 9, tzinfo=UTC)
END = datetime(2026, 3, 2, 9, tzinfo=UTC)
CHANNEL = ChannelInfo(channel_id="222222222222222222", channel_name="general", guild_id="1")


def _load(services: Services, job_id: uuid.UUID) -> Job:
    job = lifecycle.load(services.session_factory, job_id)
    assert job is not None
    return job


@pytest.fixture
def services(tmp_path: Path) -> Iterator[Services]:
    settings = load_settings(data_dir=tmp_path)
    upgrade(settings.effective_database_url)
    engine = make_engine(settings.effective_database_url)
    yield Services(
        settings=settings,
        session_factory=make_sessionmaker(engine),
        cache=MemoryMessageCache(ttl=60),
        enqueuer=RecordingEnqueuer(),
        summarizer=ExtractiveSummarizer(),
        console=io.StringIO(),
    )
    engine.dispose()


def _digest_job(services: Services, policy: str, count: int) -> uuid.UUID:
    params = JobParams(
        source=DiscordChannelSource(channel_id=CHANNEL.channel_id, after=START, before=END)
    )
    job = Job(
        origin="digest",
        status="summarizing",
        params=params.model_dump(mode="json"),
        progress={"digest": {"empty_policy": policy, "run_id": "r"}},
    )
    with services.session_factory() as session, session.begin():
        session.add(job)
    services.cache.begin(str(job.id))
    services.cache.complete(str(job.id), CachedFetch(CHANNEL, count, 0))
    return job.id


def _state(services: Services, job_id: uuid.UUID) -> tuple[Job, list[Summary]]:
    with services.session_factory() as session:
        job = session.get(Job, job_id)
        assert job is not None
        return job, list(session.scalars(select(Summary).where(Summary.job_id == job_id)))


def test_skip_policy_completes_without_a_summary(services: Services) -> None:
    job_id = _digest_job(services, "skip", 0)
    run_summarize(services, _load(services, job_id))
    job, summaries = _state(services, job_id)
    assert job.status == "completed" and summaries == []
    assert job.progress["empty_window"] == "skipped"
    assert job.progress["digest"]["outcome"] == "empty_skip"
    assert services.cache.get(str(job_id)) is None


def test_notice_policy_stores_a_no_activity_summary(services: Services) -> None:
    job_id = _digest_job(services, "notice", 0)
    run_summarize(services, _load(services, job_id))
    job, (summary,) = _state(services, job_id)
    assert job.status == "completed"
    assert summary.content["overview"].startswith("No activity in #general between 2026-03-01")
    assert job.progress["digest"]["outcome"] == "empty_notice"
