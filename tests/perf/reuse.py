"""Benchmark: a weekly digest after the dailies spends tokens only on what is new.

Setup: a 7-day channel (one irc-dev log per day, about 1,250 messages each) summarized through
the real pipeline — a fresh PostgreSQL database, the Redis notes cache and scratch (DB
``TEST_REDIS_DB``, default 3, under a unique key prefix removed afterwards), an in-process
Celery worker, the fake OpenAI server, default LLM settings.  First every calendar day is
summarized on its own (the dailies), then the whole week (the weekly digest), then the week
again with an empty notes cache (what the weekly would cost from scratch).

Figures (last line, JSON): ``weekly_new_tokens_ratio`` = prompt tokens of the weekly digest ÷
prompt tokens of the same digest from scratch (target ≤ 0.35); ``weekly_cached_chunks`` of
``weekly_chunks``; the prompt tokens of each run.

Run ``python -m tests.perf.reuse [DAYS]``; it stops by itself.  ``--server`` runs the other
benchmark of this issue instead: a server digest after that day's channel digests, on worker
processes and a rate-limited fake Discord (:mod:`tests.perf.reuse_server`).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date
from pathlib import Path

import psycopg
from redis import Redis

from shared.db.engine import make_engine, make_sessionmaker
from shared.db.migrate import upgrade
from shared.llm.config import LLMSettings
from shared.settings import load_settings
from shared.summarize.content import SummaryFormat
from tests.fakes.openai_server import FakeConfig, FakeOpenAIServer
from tests.integration.pipeline_llm.harness import Harness, Run, channel, irc_messages
from tests.support.process_groups import stop_on_sigterm
from workers.app import create_worker_app
from workers.embedded import EmbeddedWorker

TARGET_RATIO = 0.35
PG = os.environ.get("TEST_PG_HOST", "127.0.0.1")
REDIS_DB = int(os.environ.get("TEST_REDIS_DB", "3"))
GUILD = "1085131932217520185"
CHANNEL_ID = "1191512658436472873"


@contextmanager
def _database() -> Iterator[str]:
    name = f"sb_perf_reuse_{uuid.uuid4().hex[:10]}"
    admin = f"host={PG} port=5432 user=postgres dbname=postgres"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = f"postgresql+psycopg://postgres@{PG}:5432/{name}"
    try:
        upgrade(url)
        yield url
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _checked(run: Run, what: str) -> Run:
    if run.job.status != "completed":
        raise RuntimeError(f"the {what} job ended {run.job.status}: {run.job.error}")
    return run


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; the last line printed is JSON."""
    stop_on_sigterm()
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("days", nargs="?", type=int, default=7)
    parser.add_argument(
        "--server",
        action="store_true",
        help="a server digest after the day's channel digests (tests.perf.reuse_server)",
    )
    args = parser.parse_args(argv)
    if args.server:
        from tests.perf.reuse_server import run as run_server

        return run_server()
    started = time.perf_counter()
    redis = Redis.from_url(f"redis://127.0.0.1:6379/{REDIS_DB}")
    prefix = f"sbperf:reuse:{uuid.uuid4().hex[:8]}"
    fake = FakeOpenAIServer(FakeConfig()).start()
    harnesses: list[Harness] = []
    try:
        with tempfile.TemporaryDirectory() as tmp, _database() as db:
            settings = load_settings(
                database_url=db, redis_url=None, data_dir=Path(tmp) / "data", log_level="WARNING"
            )
            worker = create_worker_app(settings)
            engine = make_engine(db)

            def harness(name: str) -> Harness:
                made = Harness(
                    settings=settings,
                    session_factory=make_sessionmaker(engine),
                    redis=redis,
                    fake=fake,
                    worker=worker,
                    tmp=Path(tmp),
                    prefix=f"{prefix}:{name}",
                    llm_settings=LLMSettings(
                        base_url=fake.base_url, provider="openai", api_key="sk-bench"
                    ),
                )
                harnesses.append(made)
                return made

            where = channel(guild_id=GUILD, channel_id=CHANNEL_ID)
            week = list(
                irc_messages(
                    1250 * args.days,
                    guild_id=GUILD,
                    channel_id=CHANNEL_ID,
                    first_day=date(2024, 3, 4),
                )
            )
            days = sorted({m.timestamp.date() for m in week})[: args.days]
            week = [m for m in week if m.timestamp.date() in days]
            with EmbeddedWorker(worker.app, concurrency=2):
                shared_cache = harness("shared")
                daily_tokens = 0
                for day in days:
                    path = shared_cache.export(
                        f"day-{day}", [m for m in week if m.timestamp.date() == day], where
                    )
                    run = _checked(shared_cache.run(path, fmt=SummaryFormat.BRIEF), f"daily {day}")
                    daily_tokens += run.prompt_tokens
                weekly_path = shared_cache.export("week", week, where)
                weekly = _checked(shared_cache.run(weekly_path), "weekly")
                scratch = _checked(harness("scratch").run(weekly_path), "from-scratch weekly")
            engine.dispose()
            worker.close()
    finally:
        for made in harnesses:
            made.close()
        fake.stop()
        redis.close()
    assert weekly.plan is not None and scratch.plan is not None
    ratio = weekly.prompt_tokens / scratch.prompt_tokens
    figures = {
        "days": len(days),
        "messages": len(week),
        "daily_prompt_tokens": daily_tokens,
        "weekly_prompt_tokens": weekly.prompt_tokens,
        "scratch_prompt_tokens": scratch.prompt_tokens,
        "weekly_chunks": weekly.plan.chunk_count,
        "weekly_cached_chunks": weekly.plan.cached_chunks,
        "weekly_calls": len(weekly.usage),
        "scratch_calls": len(scratch.usage),
        "weekly_new_tokens_ratio": round(ratio, 3),
        "target_ratio": TARGET_RATIO,
        "seconds": round(time.perf_counter() - started, 1),
    }
    print(
        f"weekly digest after {len(days)} dailies: {weekly.prompt_tokens} prompt tokens, "
        f"{scratch.prompt_tokens} from scratch ({figures['weekly_cached_chunks']}/"
        f"{figures['weekly_chunks']} chunks reused)"
    )
    print(json.dumps(figures))
    return 0 if ratio <= TARGET_RATIO else 1


if __name__ == "__main__":
    sys.exit(main())
