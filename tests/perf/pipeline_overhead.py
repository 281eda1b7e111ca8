"""Pipeline overhead: one job through fetch → summarize → deliver vs a bare Celery chain.

    python -m tests.perf.pipeline_overhead [--warmup 30] [--jobs 50] [--poll-ms 5]

Both sides run in the same run, on the same Redis (a ``redis-server`` of its own on a spare
port), with the same Celery settings (``celeryconfig``: acks_late, prefetch 1) and the same
worker shape (one prefork worker, concurrency 1, ``--events``, ``--without-mingle``):

- ours: a real ``summarybot worker`` on a fresh database of the PostgreSQL on 127.0.0.1, the
  fake Discord and the fake OpenAI in this process, both at zero latency (the fake Discord's
  buckets raised out of reach: Discord's rate limits are not our overhead).  Each job is
  submitted as a producer does (``submit_job``: guild check, idempotency, insert, publish) to
  summarize the last 20 messages of a channel through the LLM backend and post the summary to
  another channel; it is done when its delivery is recorded as sent.  A message is added to
  the channel before each job, so no job finds its window's answer cached.
- bare: :mod:`tests.perf.bare_chain`, three tasks that only pass a value on; a chain is done
  when its last task has set a Redis key.

Jobs run one at a time (submit, poll every ``--poll-ms`` until done, next), alternating ours
and bare so both see the same machine; the ``--warmup`` first of each are not measured.  The
last line is one JSON object: ``ours_p50_ms``, ``ours_p90_ms``, ``bare_p50_ms``,
``bare_p90_ms``, ``ratio`` (ours p50 ÷ bare p50), ``ours_exact_p50_ms``, ``bare_exact_p50_ms``
and ``ratio_exact`` (the same, each measured to the end time its side recorded: the
delivery's ``sent_at``, the last hop's clock reading; the polled figures include up to one
poll interval each, which moves a 12 ms chain's p50 by half), ``submit_p50_ms`` (the producer's
``submit_job`` call alone, inside ours), ``ours_cpu_ms_per_job`` and ``bare_cpu_ms_per_job``
(CPU time of each side's worker processes, parent and pool child, per measured job: less
noisy than latency on a shared machine), ``jobs``, ``failed``.  Target: ``ratio`` ≤ 3.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime
from pathlib import Path
from typing import Any

import psycopg
import redis
from cryptography.fernet import Fernet
from sqlalchemy.engine import make_url

import celeryconfig
from shared.delivery.targets import ChannelTarget
from shared.jobs import DiscordChannelSource, JobParams, publisher_app
from shared.services.core import Actor
from shared.services.jobs import submit_job
from tests.fakes.discord_limits import DEFAULT_LIMITS, FakeConfig
from tests.fakes.discord_server import FakeDiscordServer, seed_basic
from tests.fakes.openai_server import FakeOpenAIServer
from tests.integration.processes import Worker
from tests.perf.bare_chain import DONE_PREFIX, chain_of, make_app
from tests.perf.chaos import RedisServer, driver_services
from tests.support.databases import fresh_database
from tests.support.process_groups import group_cpu_seconds, stop_on_sigterm

__all__ = ["main", "run"]

PG = "127.0.0.1"
MESSAGES = 20
TARGET_RATIO = 3.0
_DONE_DELIVERY = ("sent", "failed")


def _unlimited() -> FakeConfig:
    """The fake's buckets with the same routes and headers but room for any pace: one job a
    few dozen ms apart would otherwise wait on Discord's 5-per-5-s channel buckets, which
    measures Discord's limits, not our overhead."""
    return FakeConfig(
        global_limit=1_000_000,
        limits={
            route: None if limit is None else replace(limit, limit=1_000_000)
            for route, limit in DEFAULT_LIMITS.items()
        },
    )


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def _wait(done: Callable[[], bool | None], *, poll: float, timeout: float = 60.0) -> bool:
    """Poll ``done`` every ``poll`` seconds; True when it said True, False when it said None
    (ended badly); raises on timeout."""
    deadline = time.perf_counter() + timeout
    while time.perf_counter() < deadline:
        answer = done()
        if answer is not None and answer is not False:
            return True
        if answer is None:
            return False
        time.sleep(poll)
    raise TimeoutError("a job did not finish within 60 s")


#: The job's status and each of its deliveries' (none yet: one row, NULL), by job id.
_PROBE = """
    SELECT jobs.status, deliveries.status, deliveries.sent_at
    FROM jobs
    LEFT JOIN summaries ON summaries.job_id = jobs.id
    LEFT JOIN deliveries ON deliveries.summary_id = summaries.id
    WHERE jobs.id = %s
"""


class _Probe:
    """Reads a job's progress on one autocommit connection with a prepared statement.

    The poll runs every few milliseconds on a machine the worker shares, so it must cost
    about as little as the bare side's ``EXISTS``: a session and an ORM query per poll took a
    noticeable share of a CPU from the worker being measured.
    """

    def __init__(self, url: str) -> None:
        dsn = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
        self._connection = psycopg.connect(dsn, autocommit=True)

    def rows(self, job_id: uuid.UUID) -> list[tuple[str, str | None, datetime | None]]:
        """(job status, delivery status, delivery sent_at) of each of the job's deliveries."""
        return self._connection.execute(_PROBE, (job_id,), prepare=True).fetchall()

    def done(self, job_id: uuid.UUID) -> Callable[[], bool | None]:
        """True once the job's deliveries were sent; None when it failed; False while under
        way."""

        def check() -> bool | None:
            rows = self.rows(job_id)
            if any(job == "failed" or delivery == "failed" for job, delivery, _ in rows):
                return None
            return bool(rows) and all(delivery == "sent" for _, delivery, _ in rows)

        return check

    def sent_at(self, job_id: uuid.UUID) -> float:
        """When the job's last delivery was recorded as sent (a UNIX time)."""
        sent = [at for _, _, at in self.rows(job_id) if at is not None]
        if not sent:
            raise RuntimeError(f"job {job_id} is done but no delivery of it has a sent_at")
        return max(sent).timestamp()

    def close(self) -> None:
        """Close the connection."""
        self._connection.close()


def _ready(worker: Worker) -> Worker:
    worker.wait_ready(120)
    return worker


def run(*, warmup: int, jobs: int, poll_ms: float) -> dict[str, Any]:
    """Run both sides, alternating, and return the figures."""
    poll = poll_ms / 1000
    root = Path(tempfile.mkdtemp(prefix="sb-perf-overhead-"))
    redis_server = RedisServer(root)
    discord = FakeDiscordServer(config=_unlimited())
    world = seed_basic(discord.fake, token="overhead-bot-token")
    discord.fake.add_history(
        world.general,
        [world.alice, world.bob],
        MESSAGES,
        start_ms=1_770_000_000_000,
        step_ms=60_000,
    )
    digests = discord.fake.add_channel(world.guild, "digests", topic="summaries land here").id
    openai = FakeOpenAIServer()
    workers: list[Worker] = []
    bare: subprocess.Popen[bytes] | None = None
    try:
        redis_server.start()
        discord.start()
        openai.start()
        server = f"postgresql+psycopg://postgres@{PG}:5432/postgres"
        with fresh_database(server, prefix="sb_perf_overhead") as url:
            env = {
                **os.environ,
                "DATABASE_URL": url,
                "REDIS_URL": redis_server.url,
                "SUMMARYBOT_DATA_DIR": str(root / "data"),
                "LOG_FORMAT": "json",
                "LOG_LEVEL": "INFO",  # the worker says " ready" at INFO
                "SECRET_KEYS": Fernet.generate_key().decode(),
                "DISCORD_TOKEN": world.token,
                "DISCORD_API_BASE": discord.api_base,
                "LLM_BASE_URL": openai.base_url,
                "OPENAI_API_KEY": "sk-overhead-benchmark",
                "LLM_PROVIDER": "openai",
            }
            workers.append(Worker(env, root / "worker.log", name="overhead", concurrency=1))
            bare_log = (root / "bare.log").open("wb")
            bare = subprocess.Popen(
                [sys.executable, "-m", "tests.perf.bare_chain", redis_server.url],
                stdout=bare_log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
            _ready(workers[0])
            _wait_bare_ready(root / "bare.log", bare)
            return _measure(
                url,
                redis_server.url,
                world,
                discord,
                digests,
                groups=(workers[0].process.pid, bare.pid),
                warmup=warmup,
                jobs=jobs,
                poll=poll,
            )
    finally:
        for worker in workers:
            worker.stop()
        if bare is not None:
            bare.terminate()
            try:
                bare.wait(30)
            except subprocess.TimeoutExpired:
                bare.kill()
                bare.wait(10)
        openai.stop()
        discord.stop()
        redis_server.kill()
        shutil.rmtree(root, ignore_errors=True)


def _wait_bare_ready(log: Path, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if b" ready" in log.read_bytes():
            return
        if process.poll() is not None:
            raise RuntimeError(f"bare worker exited early:\n{log.read_text()}")
        time.sleep(0.2)
    raise TimeoutError(f"bare worker not ready:\n{log.read_text()}")


def _measure(
    url: str,
    redis_url: str,
    world: Any,
    discord: FakeDiscordServer,
    digests: int,
    *,
    groups: tuple[int, int],
    warmup: int,
    jobs: int,
    poll: float,
) -> dict[str, Any]:
    # The producers' own publisher (its broker transport included), as the API's submit uses.
    publisher = publisher_app(redis_url, visibility_timeout=celeryconfig.VISIBILITY_TIMEOUT)
    services, engine = driver_services(
        url, redis_url, publisher, token=world.token, api_base=discord.api_base
    )
    bare_app = make_app(redis_url)
    client = redis.Redis.from_url(redis_url)
    probe = _Probe(url)
    actor = Actor(origin="api", guild_id=str(world.guild.id), requested_by="perf")
    params = JobParams(
        source=DiscordChannelSource(
            guild_id=str(world.guild.id), channel_id=str(world.general.id), limit=MESSAGES
        ),
        destinations=[ChannelTarget(channel_id=str(digests))],
    )
    ours: list[float] = []
    bare: list[float] = []
    ours_exact: list[float] = []
    bare_exact: list[float] = []
    submits: list[float] = []
    failed = 0
    cpu_at_start = (0.0, 0.0)
    try:
        for index in range(warmup + jobs):
            # A new message before each job, as in a live channel: every job's window (the
            # last 20 messages) is new, so each one calls the LLM rather than reusing the
            # answer cached for an identical window.
            discord.fake.add_message(world.general, world.alice, f"status update number {index}")
            started, started_at = time.perf_counter(), time.time()
            submission = submit_job(services.core(), actor, params)
            submit_ms = (time.perf_counter() - started) * 1000
            ok = _wait(probe.done(submission.job_id), poll=poll)
            ours_ms = (time.perf_counter() - started) * 1000
            failed += not ok
            if ok:
                sent_at = probe.sent_at(submission.job_id)
                ours_exact_ms = (sent_at - started_at) * 1000

            token = uuid.uuid4().hex
            started, started_at = time.perf_counter(), time.time()
            chain_of(bare_app, token).apply_async()
            _wait(lambda token=token: bool(client.exists(DONE_PREFIX + token)), poll=poll)
            bare_ms = (time.perf_counter() - started) * 1000
            bare_exact_ms = (float(client.get(DONE_PREFIX + token) or 0) - started_at) * 1000
            if index >= warmup:
                ours.append(ours_ms)
                bare.append(bare_ms)
                submits.append(submit_ms)
                bare_exact.append(bare_exact_ms)
                if ok:
                    ours_exact.append(ours_exact_ms)
            if index == warmup - 1:
                print(f"warm-up done ({warmup} of each)", file=sys.stderr)
                cpu_at_start = _cpu(groups)
        cpu_at_end = _cpu(groups)
    finally:
        probe.close()
        client.close()
        bare_app.close()
        services.close()
        publisher.close()
        engine.dispose()
    ours_p50, bare_p50 = statistics.median(ours), statistics.median(bare)
    return {
        "ours_p50_ms": round(ours_p50, 1),
        "ours_p90_ms": round(_pct(ours, 0.9), 1),
        "bare_p50_ms": round(bare_p50, 1),
        "bare_p90_ms": round(_pct(bare, 0.9), 1),
        "ratio": round(ours_p50 / bare_p50, 2),
        "ours_exact_p50_ms": round(statistics.median(ours_exact), 1),
        "bare_exact_p50_ms": round(statistics.median(bare_exact), 1),
        "ratio_exact": round(statistics.median(ours_exact) / statistics.median(bare_exact), 2),
        "submit_p50_ms": round(statistics.median(submits), 1),
        "ours_cpu_ms_per_job": round((cpu_at_end[0] - cpu_at_start[0]) / jobs * 1000, 1),
        "bare_cpu_ms_per_job": round((cpu_at_end[1] - cpu_at_start[1]) / jobs * 1000, 1),
        "jobs": jobs,
        "warmup": warmup,
        "failed": failed,
        "poll_ms": poll * 1000,
    }


def _cpu(groups: tuple[int, int]) -> tuple[float, float]:
    """CPU seconds used so far by our worker's and the bare worker's process groups."""
    ours, bare = groups
    return group_cpu_seconds(ours), group_cpu_seconds(bare)


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; human lines first, the last line printed is the JSON of figures."""
    stop_on_sigterm()
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--warmup", type=int, default=30)
    parser.add_argument("--jobs", type=int, default=50)
    parser.add_argument("--poll-ms", type=float, default=5.0)
    args = parser.parse_args(argv)
    figures = run(warmup=args.warmup, jobs=args.jobs, poll_ms=args.poll_ms)
    print(
        f"ours: p50 {figures['ours_p50_ms']} ms, p90 {figures['ours_p90_ms']} ms "
        f"(submit_job alone p50 {figures['submit_p50_ms']} ms), "
        f"worker CPU {figures['ours_cpu_ms_per_job']} ms per job"
    )
    print(
        f"bare chain: p50 {figures['bare_p50_ms']} ms, p90 {figures['bare_p90_ms']} ms, "
        f"worker CPU {figures['bare_cpu_ms_per_job']} ms per chain"
    )
    print(
        f"ratio {figures['ratio']} (target ≤ {TARGET_RATIO}), failed jobs {figures['failed']}; "
        f"to each side's recorded end: ours p50 {figures['ours_exact_p50_ms']} ms, bare "
        f"{figures['bare_exact_p50_ms']} ms, ratio {figures['ratio_exact']}"
    )
    print(json.dumps(figures))
    return 0 if figures["ratio"] <= TARGET_RATIO and not figures["failed"] else 1


if __name__ == "__main__":
    sys.exit(main())
