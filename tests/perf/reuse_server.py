"""Benchmark (``python -m tests.perf.reuse --server``): a server digest after the day's channel
digests spends tokens only on what they did not already read, under Discord's rate limits.

Setup: a fresh PostgreSQL database; Redis DB ``TEST_REDIS_DB`` (default 3) as broker, message
cache, notes cache and limiters (every key the run made is removed at the end); the fake OpenAI
server (in this process, default LLM settings pointed at it); the fake Discord in its own
process with Discord's strict limits (fixed 1 s windows, 50 requests/s for the token, the
per-route buckets of :data:`tests.fakes.discord_limits.DEFAULT_LIMITS`: 5 history reads per
second per channel); and 4 ``summarybot worker`` processes (``-Q fetch,summarize,deliver``, one
pool child each) sharing one bot token.

The server is Acme (:func:`tests.fakes.server_chat.seed_server_chat`): 12 message channels,
two of them private to staff, each holding a different slice of the irc-dev logs (300-600
messages) over the last 24 h, plus 3 active threads (one a forum post).

1. *That day's channel digests*: one ordinary channel job per message channel, the day's window,
   the format of the server digest (a server digest's parts are exactly such jobs, see
   :func:`shared.pipeline.plan._part`), all submitted at once.
2. *The server digest*: one :class:`~shared.jobs.DiscordServerSource` job for the whole server
   and the same day, for the audience of #staff-only (Staff: they read every channel, the
   private ones included), submitted through :func:`shared.services.jobs.submit_job` by an
   actor of the guild.  Its plan publishes one part per channel and thread at once; the 4
   workers fetch them side by side.  Its summary's prompt tokens include its parts'.
3. *From scratch*: the notes cache emptied, the same server digest again.

Figures (last line, JSON): ``server_new_tokens_ratio`` = prompt tokens of the server digest ÷
prompt tokens of the from-scratch one (target ≤ 0.35); ``received_429``: 429s the fake Discord
sent (whole run, by scope in ``received_429_by_scope``); ``surfaced_429``: rate-limit errors
that reached a task (a ``task.retry``/``task.failed``/``task.gave_up`` event naming a rate
limit in a worker's log, or a job that failed on one).  Exit code 1 when the ratio is over the
target, a 429 surfaced, or a job did not complete.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from redis import Redis
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from schema.models.jobs import Job, Summary
from schema.models.usage import UsageLedger
from shared.crypto import generate_key
from shared.db.engine import make_engine, make_sessionmaker
from shared.discord.config import DiscordSettings
from shared.jobs import AudienceChannel, DiscordChannelSource, DiscordServerSource, JobParams
from shared.services.core import Actor, Core
from shared.services.jobs import submit_job
from shared.settings import load_settings
from shared.summarize.content import SummaryFormat
from tests.fakes.discord_server import control, spawn_server
from tests.fakes.openai_server import FakeConfig, FakeOpenAIServer
from tests.support.databases import fresh_database
from tests.support.jobs import settled
from tests.support.process_groups import stop_process_groups
from workers.app import create_worker_app
from workers.context import build_services

__all__ = ["run"]

TARGET_RATIO = 0.35
WORKERS = 4
FORMAT = SummaryFormat.STRUCTURED
TOKEN = "bench-acme-token"
POSTGRES = (
    f"postgresql+psycopg://postgres@{os.environ.get('TEST_PG_HOST', '127.0.0.1')}:5432/postgres"
)
REDIS_DB = int(os.environ.get("TEST_REDIS_DB", "3"))
REDIS_URL = f"redis://127.0.0.1:6379/{REDIS_DB}"
#: What the workers leave in the benchmark's Redis database (queues, caches, limiters).
WORKER_KEYS = ("fetch", "summarize", "deliver", "maintenance", "unacked*", "_kombu*", "sb:*")
NOTES_KEYS = "sb:notes:*"
#: Discord's limits, as strict as Discord's: fixed 1 s windows, 50/s for the token.
DISCORD_LIMITS = {"global_limit": 50, "global_window_s": 1.0, "global_mode": "fixed"}
_FAILURE_EVENTS = ("task.retry", "task.failed", "task.gave_up")
_RATE_LIMIT = re.compile(r"rate.?limit|429|cloudflare|invalid requests", re.IGNORECASE)


def _clear(redis: Redis, patterns: tuple[str, ...]) -> None:  # type: ignore[type-arg]
    for pattern in patterns:
        keys = list(redis.scan_iter(pattern, count=1000))
        for start in range(0, len(keys), 500):
            redis.delete(*keys[start : start + 500])


@contextmanager
def _workers(env: dict[str, str], tmp: Path) -> Iterator[list[Path]]:
    """``WORKERS`` ready worker processes, each in its own process group; their log files."""
    logs = [tmp / f"worker{i}.log" for i in range(WORKERS)]
    processes: list[subprocess.Popen[bytes]] = []
    try:
        for index, log in enumerate(logs):
            with log.open("wb") as handle:
                processes.append(
                    subprocess.Popen(
                        [
                            sys.executable,
                            "-m",
                            "producers.cli.main",
                            "worker",
                            "-Q",
                            "fetch,summarize,deliver",
                            "--concurrency",
                            "1",
                            "--hostname",
                            f"acme{index}@%h",
                        ],
                        env=env,
                        stdout=handle,
                        stderr=subprocess.STDOUT,
                        start_new_session=True,
                    )
                )
        deadline = time.monotonic() + 90
        for process, log in zip(processes, logs, strict=True):
            while b" ready" not in log.read_bytes():
                if process.poll() is not None:
                    raise RuntimeError(f"a worker exited early:\n{log.read_text()[-3000:]}")
                if time.monotonic() > deadline:
                    raise TimeoutError(f"a worker is not ready:\n{log.read_text()[-3000:]}")
                time.sleep(0.2)
        yield logs
    finally:
        stop_process_groups(processes)


def _wait(factory: sessionmaker[Session], ids: list[uuid.UUID], timeout: float) -> list[Job]:
    deadline = time.monotonic() + timeout
    done: dict[uuid.UUID, Job] = {}
    while len(done) < len(ids):
        for job_id in ids:
            if job_id not in done and (job := settled(factory, job_id)) is not None:
                done[job_id] = job
        if len(done) < len(ids):
            if time.monotonic() > deadline:
                raise TimeoutError(f"{len(ids) - len(done)} of {len(ids)} jobs still running")
            time.sleep(0.25)
    return [done[i] for i in ids]


def _prompt_tokens(factory: sessionmaker[Session], ids: list[uuid.UUID]) -> int:
    with factory() as session:
        total = session.scalar(
            select(func.coalesce(func.sum(UsageLedger.prompt_tokens), 0)).where(
                UsageLedger.job_id.in_(ids)
            )
        )
    return int(total or 0)


def _calls(factory: sessionmaker[Session], ids: list[uuid.UUID]) -> dict[str, int]:
    """LLM calls of these jobs by kind (``single``: a window summarized in one call)."""
    with factory() as session:
        rows = session.execute(
            select(UsageLedger.kind, func.count())
            .where(UsageLedger.job_id.in_(ids))
            .group_by(UsageLedger.kind)
        ).all()
    return {str(kind): int(count) for kind, count in sorted(rows)}


def _server_digest(
    core: Core, actor: Actor, seeded: dict[str, Any], factory: sessionmaker[Session]
) -> tuple[Job, Summary, list[uuid.UUID]]:
    """Submit the server digest, wait for it; the parent, its summary and its parts' ids."""
    params = JobParams(
        source=DiscordServerSource(
            guild_id=seeded["guild_id"],
            after=_time(seeded["after_ms"]),
            before=_time(seeded["before_ms"]),
            audience=[AudienceChannel(channel_id=seeded["staff_only_id"])],
        ),
        format=FORMAT,
    )
    parent_id = submit_job(core, actor, params).job_id
    (parent,) = _wait(factory, [parent_id], timeout=1200)
    with factory() as session:
        summary = session.scalars(select(Summary).where(Summary.job_id == parent_id)).one_or_none()
    if parent.status != "completed" or summary is None:
        raise RuntimeError(f"the server digest ended {parent.status}: {parent.error}")
    plan = parent.progress.get("plan") or {}
    parts = [uuid.UUID(entry["job_id"]) for entry in plan.get("parts", [])]
    return parent, summary, parts


def _time(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, tz=UTC)


def _surfaced(logs: list[Path], factory: sessionmaker[Session]) -> tuple[int, list[str]]:
    """Rate-limit errors that reached a task (worker log events), and every failure event."""
    surfaced = 0
    failures: list[str] = []
    for log in logs:
        for line in log.read_text(errors="replace").splitlines():
            if not any(event in line for event in _FAILURE_EVENTS):
                continue
            failures.append(line[-400:])
            if _RATE_LIMIT.search(line):
                surfaced += 1
    # A job that failed on a rate limit logged task.gave_up (or task.failed) first: listed only.
    with factory() as session:
        for job in session.scalars(select(Job).where(Job.status == "failed")):
            failures.append(f"job {job.id} failed: {job.error} ({job.error_detail})"[:400])
    return surfaced, failures


def run() -> int:
    """Run the benchmark; the last line printed is JSON."""
    started = time.perf_counter()
    redis = Redis.from_url(REDIS_URL)
    _clear(redis, WORKER_KEYS)
    discord_prefix = "{sbperf-" + uuid.uuid4().hex[:8] + "}"
    llm = FakeOpenAIServer(FakeConfig()).start()
    proc, url = spawn_server()
    try:
        control(url, "config", {**DISCORD_LIMITS, "latency_s": 0.0})
        seeded = control(url, "seed", {"scenario": "server_chat", "token": TOKEN})
        control(url, "reset", {})
        with (
            tempfile.TemporaryDirectory() as tmp,
            fresh_database(POSTGRES, prefix="sb_perf_reuse_server") as db,
        ):
            figures = _measure(Path(tmp), db, url, llm, seeded, discord_prefix)
    finally:
        if proc.stdin is not None:
            proc.stdin.close()
        proc.wait(timeout=10)
        llm.stop()
        _clear(redis, (*WORKER_KEYS, f"{discord_prefix}*"))
        redis.close()
    figures["seconds"] = round(time.perf_counter() - started, 1)
    print(
        f"server digest after {figures['channels']} channel digests: "
        f"{figures['server_prompt_tokens']} prompt tokens, {figures['scratch_prompt_tokens']} "
        f"from scratch; Discord sent {figures['received_429']} 429s, "
        f"{figures['surfaced_429']} surfaced"
    )
    print(json.dumps(figures))
    ok = figures["server_new_tokens_ratio"] <= TARGET_RATIO and figures["surfaced_429"] == 0
    return 0 if ok else 1


def _measure(
    tmp: Path, db: str, url: str, llm: FakeOpenAIServer, seeded: dict[str, Any], prefix: str
) -> dict[str, Any]:
    api_base = f"{url}/api/v10"
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("DISCORD_", "LLM_"))},
        "DATABASE_URL": db,
        "REDIS_URL": REDIS_URL,
        "SUMMARYBOT_DATA_DIR": str(tmp / "data"),
        "LOG_LEVEL": "INFO",
        "LOG_FORMAT": "json",
        "LLM_BASE_URL": llm.base_url,
        "OPENAI_API_KEY": "sk-bench",
        "LLM_PROVIDER": "openai",
        "DISCORD_TOKEN": TOKEN,
        "DISCORD_API_BASE": api_base,
        "DISCORD_KEY_PREFIX": prefix,
        "SECRET_KEYS": generate_key(),
    }
    settings = load_settings(
        database_url=db,
        redis_url=REDIS_URL,
        data_dir=tmp / "data",
        log_level="WARNING",
        discord=DiscordSettings(token=TOKEN, api_base=api_base, key_prefix=prefix),
    )
    app = create_worker_app(settings)
    services = build_services(settings, app.app)
    engine = make_engine(db)
    factory = make_sessionmaker(engine)
    actor = Actor(origin="api", guild_id=seeded["guild_id"], requested_by="bench")
    redis = Redis.from_url(REDIS_URL)
    try:
        with _workers(env, tmp) as logs:
            core = services.core()
            channel_ids = [c["id"] for c in seeded["channels"].values()]
            daily = [
                submit_job(
                    core,
                    actor,
                    JobParams(
                        source=DiscordChannelSource(
                            guild_id=seeded["guild_id"],
                            channel_id=channel_id,
                            after=_time(seeded["after_ms"]),
                            before=_time(seeded["before_ms"]),
                        ),
                        format=FORMAT,
                    ),
                ).job_id
                for channel_id in channel_ids
            ]
            ended = _wait(factory, daily, timeout=1200)
            bad = [
                f"{j.channel_id}: {j.status} {j.error}" for j in ended if j.status != "completed"
            ]
            if bad:
                raise RuntimeError(f"channel digests did not complete: {bad}")
            daily_tokens = _prompt_tokens(factory, daily)
            before_server = control(url, "stats")
            parent, summary, parts = _server_digest(core, actor, seeded, factory)
            after_server = control(url, "stats")
            _clear(redis, (NOTES_KEYS,))
            scratch_parent, scratch, scratch_parts = _server_digest(core, actor, seeded, factory)
            stats = control(url, "stats")
            surfaced, failures = _surfaced(logs, factory)
        counted = _prompt_tokens(factory, [parent.id, *parts])
        counted_scratch = _prompt_tokens(factory, [scratch_parent.id, *scratch_parts])
        calls = {
            "channel_digests_calls": _calls(factory, daily),
            "server_calls": _calls(factory, [parent.id, *parts]),
            "scratch_calls": _calls(factory, [scratch_parent.id, *scratch_parts]),
        }
    finally:
        redis.close()
        services.close()
        app.close()
        engine.dispose()
    for line in failures:
        print(f"failure: {line}", file=sys.stderr)
    print(f"fake Discord: {stats}", file=sys.stderr)
    server_tokens = int(summary.prompt_tokens or 0)
    scratch_tokens = int(scratch.prompt_tokens or 0)
    print(
        f"server digest: summary row {server_tokens} prompt tokens, usage rows of parent and "
        f"parts {counted}; from scratch {scratch_tokens} "
        f"({counted_scratch} in usage rows); {len(parts)} parts each",
        file=sys.stderr,
    )
    return {
        "server_new_tokens_ratio": round(server_tokens / scratch_tokens, 3)
        if scratch_tokens
        else None,
        "server_prompt_tokens": server_tokens,
        "scratch_prompt_tokens": scratch_tokens,
        "channel_digests_prompt_tokens": daily_tokens,
        "channels": len(channel_ids),
        "parts": len(parts),
        "messages": seeded["messages"],
        "workers": WORKERS,
        "received_429": stats["received_429"],
        "received_429_by_scope": stats["429_by_scope"],
        "received_429_server_digest": after_server["received_429"] - before_server["received_429"],
        "surfaced_429": surfaced,
        **calls,
        "target_ratio": TARGET_RATIO,
    }
