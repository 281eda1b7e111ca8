"""Token estimates and the monthly budget check, on the migrated SQLite schema."""

from __future__ import annotations

import math
import uuid
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy.orm import Session, sessionmaker

from schema.models.chunks import SummaryPlan
from schema.models.jobs import Job
from schema.models.tenancy import GuildSettings
from schema.models.usage import UsageLedger
from shared.db.engine import make_engine, make_sessionmaker
from shared.db.migrate import upgrade
from shared.domain.messages import ChannelInfo
from shared.llm.config import LLMSettings
from shared.pipeline.llm.budget import (
    BudgetStatus,
    check_budget,
    estimate_job,
    month_start,
    step_overhead,
)

CHANNEL = ChannelInfo(channel_id="42", channel_name="help", guild_id="7")
NOW = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)


@pytest.fixture
def factory(tmp_path: Path) -> Iterator[sessionmaker[Session]]:
    url = f"sqlite:///{tmp_path / 'budget.db'}"
    upgrade(url)
    engine = make_engine(url)
    yield make_sessionmaker(engine)
    engine.dispose()


def _job(session: Session, guild: str, status: str = "summarizing") -> uuid.UUID:
    job = Job(id=uuid.uuid4(), origin="test", status=status, guild_id=guild, params={}, progress={})
    session.add(job)
    session.flush()
    return job.id


def test_estimates_grow_with_chunks_and_count_reduce_levels() -> None:
    settings = LLMSettings(api_key="k", reduce_input_tokens=4000, map_output_tokens=1000)
    small = estimate_job(
        uncached_chunk_tokens=[5000],
        total_chunks=1,
        channel=CHANNEL,
        settings=settings,
        encoding="o200k_base",
    )
    big = estimate_job(
        uncached_chunk_tokens=[5000] * 20,
        total_chunks=20,
        channel=CHANNEL,
        settings=settings,
        encoding="o200k_base",
    )
    reused = estimate_job(
        uncached_chunk_tokens=[],
        total_chunks=20,
        channel=CHANNEL,
        settings=settings,
        encoding="o200k_base",
    )
    overhead = step_overhead("map", CHANNEL, encoding="o200k_base")
    assert 300 < overhead < 3000
    assert small.calls == 2 and small.prompt_tokens >= 5000 + overhead
    assert big.calls > 20 + 1  # merges were needed: 20 notes of ~500 tokens > 4000
    assert reused.prompt_tokens < big.prompt_tokens / 5  # cached notes cost only the reduce
    assert big.completion_tokens == math.ceil(big.max_completion_tokens / 2)
    assert big.total == big.prompt_tokens + big.completion_tokens


def test_step_overhead_is_counted_once_per_channel_and_encoding() -> None:
    """The prompt and schema are tokenized once; a channel with another topic is its own."""
    step_overhead.cache_clear()
    first = step_overhead("reduce", CHANNEL, encoding="o200k_base")
    assert step_overhead("reduce", CHANNEL, encoding="o200k_base") == first
    assert step_overhead.cache_info().hits == 1
    longer = replace(CHANNEL, topic="a much longer topic " * 20)
    assert step_overhead("reduce", longer, encoding="o200k_base") > first
    assert step_overhead.cache_info().misses == 2


def test_month_start_is_utc_midnight_of_the_first() -> None:
    assert month_start(NOW) == datetime(2026, 11, 1, tzinfo=UTC)


def test_status_explains_what_is_left() -> None:
    status = BudgetStatus(limit=100_000, spent=60_000, reserved=30_000)
    assert status.remaining == 10_000
    assert status.allows(10_000) and not status.allows(10_001)
    text = status.explain(25_000)
    assert text.startswith("this summary needs about 25,000 tokens but the server has 10,000")
    assert "30,000 reserved by running summaries" in text
    assert BudgetStatus(limit=None, spent=5, reserved=0).allows(10**9)


def test_check_counts_this_months_spend_and_other_running_plans(
    factory: sessionmaker[Session],
) -> None:
    with factory() as session, session.begin():
        session.add(GuildSettings(guild_id="g1", monthly_token_budget=100_000))
        mine = _job(session, "g1")
        other = _job(session, "g1")
        done = _job(session, "g1", status="completed")
        session.add_all(
            [
                UsageLedger(
                    guild_id="g1",
                    kind="map",
                    prompt_tokens=20_000,
                    completion_tokens=5_000,
                    created_at=NOW,
                ),
                # Last month's spend does not count.
                UsageLedger(
                    guild_id="g1",
                    kind="map",
                    prompt_tokens=90_000,
                    created_at=datetime(2026, 10, 31, 23, tzinfo=UTC),
                ),
                # Another guild's neither.
                UsageLedger(guild_id="g2", kind="map", prompt_tokens=90_000, created_at=NOW),
                # Another running job planned 30,000 and spent 10,000 of it so far.
                SummaryPlan(
                    job_id=other,
                    chunk_count=3,
                    estimated_tokens=30_000,
                    model="m",
                    stats={},
                    created_at=NOW,
                ),
                UsageLedger(
                    guild_id="g1", job_id=other, kind="map", prompt_tokens=10_000, created_at=NOW
                ),
                # A finished job reserves nothing.
                SummaryPlan(
                    job_id=done,
                    chunk_count=1,
                    estimated_tokens=50_000,
                    model="m",
                    stats={},
                    created_at=NOW,
                ),
            ]
        )
    with factory() as session, session.begin():
        status = check_budget(session, guild_id="g1", job_id=mine, now=NOW)
    assert (status.limit, status.spent, status.reserved) == (100_000, 35_000, 20_000)
    assert status.remaining == 45_000
    with factory() as session, session.begin():
        assert check_budget(session, guild_id="g2", job_id=mine, now=NOW).limit is None
        assert check_budget(session, guild_id=None, job_id=mine, now=NOW).allows(10**12)
