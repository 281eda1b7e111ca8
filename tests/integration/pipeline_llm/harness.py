"""The LLM pipeline on real PostgreSQL and Redis, an in-process Celery worker, the fake OpenAI.

:class:`Harness` builds the services a worker would (Redis message cache, Redis limiter,
breaker, notes cache and scratch under a key prefix of the test's own), installs them for the
embedded worker, submits jobs through :func:`shared.services.jobs.submit_job` and waits for them.
"""

from __future__ import annotations

import io
import time
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from redis import Redis
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from schema.models.chunks import SummaryChunk, SummaryPlan
from schema.models.jobs import Job, Summary
from schema.models.usage import UsageLedger
from shared.cache import RedisMessageCache
from shared.domain.messages import ChannelInfo, ChatMessage
from shared.jobs import CeleryEnqueuer, Destination, ExportFileSource, JobParams
from shared.llm.client import LLMClient
from shared.llm.config import LLMSettings
from shared.pipeline.services import Services
from shared.services.core import OPERATOR
from shared.services.jobs import submit_job
from shared.settings import Settings
from shared.summarize.content import SummaryContent, SummaryFormat
from shared.summarize.extractive.summarizer import ExtractiveSummarizer
from shared.summarize.llm.backend import LLMBackend
from shared.summarize.llm.notes_cache import RedisNotesCache, RedisScratchStore
from tests.fakes.openai_server import FakeOpenAIServer
from tests.support.irc import read_irc_log, write_export
from tests.support.jobs import settled
from workers.app import WorkerApp

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "irc-dev"
EXPORTED_AT = datetime(2030, 1, 1, tzinfo=UTC)


def channel(guild_id: str = "1085131932217520185", channel_id: str = "1191512658436472873"):
    """A guild text channel with the given ids."""
    return ChannelInfo(
        channel_id=channel_id,
        channel_name="support",
        guild_id=guild_id,
        guild_name="Ubuntu Support (test)",
        topic="help with Ubuntu",
    )


def irc_messages(
    count: int, *, guild_id: str, channel_id: str, first_day: date = date(2024, 3, 1)
) -> Iterator[ChatMessage]:
    """``count`` messages from the irc-dev logs, one log per day from ``first_day``."""
    raws = sorted(FIXTURES.glob("*.raw.txt"))
    produced, run, day = 0, 0, first_day
    while produced < count:
        raw = raws[run % len(raws)]
        log = read_irc_log(
            raw,
            raw.with_name(raw.name.replace(".raw.", ".annotation.")),
            day=day,
            seed=run,
            guild_id=guild_id,
            channel_id=channel_id,
        )
        for message in log.messages[: count - produced]:
            yield message
            produced += 1
        day = log.messages[-1].timestamp.date() + timedelta(days=1)
        run += 1


def write(path: Path, messages: Iterable[ChatMessage], where: ChannelInfo) -> Path:
    """Write ``messages`` as a DCE export at ``path``."""
    with path.open("w", encoding="utf-8") as out:
        write_export(messages, where, out, exported_at=EXPORTED_AT)
    return path


@dataclass
class Run:
    """A finished job, its summary (if any) and its usage rows."""

    job: Job
    summary: Summary | None
    usage: list[UsageLedger]
    plan: SummaryPlan | None

    @property
    def content(self) -> SummaryContent:
        """The stored summary content (fails when there is none)."""
        assert self.summary is not None, f"no summary: job {self.job.status} {self.job.error}"
        return SummaryContent.model_validate(self.summary.content)

    def kinds(self) -> dict[str, int]:
        """Usage rows per kind."""
        counts: dict[str, int] = {}
        for row in self.usage:
            counts[row.kind] = counts.get(row.kind, 0) + 1
        return counts

    @property
    def prompt_tokens(self) -> int:
        """Prompt tokens of every call the job made."""
        return sum(row.prompt_tokens for row in self.usage)


@dataclass
class Harness:
    """Services for the embedded worker, bound to one test's Redis prefix."""

    settings: Settings
    session_factory: sessionmaker[Session]
    redis: Redis  # type: ignore[type-arg]
    fake: FakeOpenAIServer
    worker: WorkerApp
    tmp: Path
    prefix: str
    llm_settings: LLMSettings
    services: Services = field(init=False)

    def __post_init__(self) -> None:
        client = LLMClient.shared(self.llm_settings, self.redis, prefix=self.prefix)
        self.services = Services(
            settings=self.settings,
            session_factory=self.session_factory,
            cache=RedisMessageCache(self.redis, ttl=3600, prefix=f"{self.prefix}:fetch"),
            enqueuer=CeleryEnqueuer(self.worker.app),
            summarizer=ExtractiveSummarizer(),
            console=io.StringIO(),
            llm=LLMBackend(
                client,
                notes=RedisNotesCache(self.redis, ttl=3600, prefix=f"{self.prefix}:notes"),
                scratch=RedisScratchStore(self.redis, ttl=3600, prefix=f"{self.prefix}:scratch"),
            ),
        )
        self.worker.context.install(self.services)

    @property
    def llm(self) -> LLMBackend:
        """The LLM backend of these services."""
        assert self.services.llm is not None
        return self.services.llm

    def export(self, name: str, messages: Iterable[ChatMessage], where: ChannelInfo) -> Path:
        """Write an export file for this test."""
        return write(self.tmp / f"{name}.json", messages, where)

    def submit(
        self,
        path: Path,
        *,
        fmt: SummaryFormat = SummaryFormat.STRUCTURED,
        language: str | None = None,
        destinations: list[Destination] | None = None,
    ) -> uuid.UUID:
        """Submit a summarize job for ``path``; returns its id."""
        params = JobParams(
            source=ExportFileSource(path=str(path)),
            format=fmt,
            language=language,
            destinations=destinations or [],
        )
        return submit_job(self.services.core(), OPERATOR, params).job_id

    def wait(self, job_id: uuid.UUID, *, timeout: float = 90.0) -> Run:
        """Wait until the job finished; return it with its summary and usage."""
        deadline = time.monotonic() + timeout
        while settled(self.session_factory, job_id) is None:
            if time.monotonic() > deadline:
                with self.session_factory() as session:
                    job = session.get(Job, job_id)
                raise AssertionError(f"job {job_id} still {job and job.status} after {timeout} s")
            time.sleep(0.05)
        with self.session_factory() as session:
            job = session.get(Job, job_id)
            assert job is not None
            summary = session.scalars(select(Summary).where(Summary.job_id == job_id)).one_or_none()
            usage = list(
                session.scalars(
                    select(UsageLedger).where(UsageLedger.job_id == job_id).order_by(UsageLedger.id)
                )
            )
            return Run(job, summary, usage, session.get(SummaryPlan, job_id))

    def run(self, path: Path, **kwargs: Any) -> Run:
        """Submit and wait."""
        return self.wait(self.submit(path, **kwargs))

    def chunk_rows(self, job_id: uuid.UUID) -> list[SummaryChunk]:
        """The job's chunk rows (deleted once its summary is stored)."""
        with self.session_factory() as session:
            return list(session.scalars(select(SummaryChunk).where(SummaryChunk.job_id == job_id)))

    def keys(self, pattern: str) -> list[bytes]:
        """Redis keys of this test matching ``{prefix}:{pattern}``."""
        return list(self.redis.scan_iter(f"{self.prefix}:{pattern}"))

    def close(self) -> None:
        """Delete this test's Redis keys and close the LLM client."""
        for key in self.redis.scan_iter(f"{self.prefix}:*"):
            self.redis.delete(key)
        self.llm.close()
