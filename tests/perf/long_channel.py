"""Benchmark: a 100,000-message channel through the whole LLM pipeline, in bounded memory.

Setup: a DiscordChatExporter export of ``N`` messages (default 100,000) built from the irc-dev
logs (:func:`tests.perf.export_data.build_large_export`); a fresh PostgreSQL database migrated
to head; Redis DB ``TEST_REDIS_DB`` (default 3) as broker and caches; the fake OpenAI server as
its own process; two ``summarybot worker`` processes (prefork, one pool child each) with the
LLM configured through the environment; and the real ``summarybot summarize`` command, which
submits the job and waits for it.  The fetch stage streams the export into the Redis message
cache; the planner streams it out block by block; map steps fan out over both workers; the
reduce step merges notes level by level and writes the final summary.

While it runs, every process of both workers (main process and pool children) is sampled for
its peak resident set (``VmHWM``).  Figures (last line, JSON):

* ``peak_rss_mb``: the largest peak of any one process (workers, their children, the command);
* ``seconds``: wall time of the ``summarize`` command (submission to stored summary);
* ``llm_calls``: chat requests the fake server received; ``map_calls``/``reduce_calls`` split
  the usage ledger rows;
* ``citations_valid_pct``: cited message ids that exist in the export with the cited time and
  jump link, over all cited ids (the validator guarantees 100; this checks it independently).

Run ``python -m tests.perf.long_channel [N_MESSAGES]``; it stops by itself (``--timeout``).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.request import urlopen

import psycopg
from redis import Redis
from sqlalchemy import func, select

from schema.models.usage import UsageLedger
from shared.crypto import generate_key
from shared.db.engine import make_engine, make_sessionmaker
from shared.db.migrate import upgrade
from shared.sources.export_file import open_export
from tests.perf.export_data import build_large_export
from tests.support.process_groups import stop_on_sigterm

TARGET_RSS_MB = 500
PG = os.environ.get("TEST_PG_HOST", "127.0.0.1")
REDIS_DB = int(os.environ.get("TEST_REDIS_DB", "3"))
#: Keys the workers create in the benchmark's Redis database, removed before and after.
WORKER_KEYS = ("fetch", "summarize", "deliver", "maintenance", "unacked*", "_kombu*", "sb:*")


def _clear(redis: Redis) -> None:  # type: ignore[type-arg]
    for pattern in WORKER_KEYS:
        for key in redis.scan_iter(pattern):
            redis.delete(key)


@contextmanager
def _database() -> Iterator[str]:
    name = f"sb_perf_long_{uuid.uuid4().hex[:10]}"
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


@contextmanager
def _fake_server() -> Iterator[tuple[str, subprocess.Popen[str]]]:
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.fakes.openai_server", "--port", "0"],
        stdout=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline().strip()
        if not line.startswith("READY "):
            raise RuntimeError(f"the fake OpenAI server did not start: {line!r}")
        yield line.split(" ", 1)[1], process
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(10)


class _Sampler:
    """Peak resident set of every process in the given process groups, sampled often."""

    def __init__(self) -> None:
        self.groups: dict[int, str] = {}
        self.peaks: dict[int, tuple[str, float]] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._sample()
        self._stop.set()
        self._thread.join(5)

    def _run(self) -> None:
        while not self._stop.wait(0.25):
            self._sample()

    def _sample(self) -> None:
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                pgid = os.getpgid(int(entry.name))
                if pgid not in self.groups:
                    continue
                status = (entry / "status").read_text()
            except (OSError, ProcessLookupError):
                continue
            fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
            hwm = float(fields.get("VmHWM", "0 kB").split()[0]) / 1024
            role = self.groups[pgid] + ("" if int(entry.name) == pgid else "-child")
            label = f"{role}:{entry.name}"
            if hwm > self.peaks.get(int(entry.name), ("", 0.0))[1]:
                self.peaks[int(entry.name)] = (label, hwm)


def _check_citations(export: Path, document: dict[str, Any]) -> tuple[int, int]:
    summary = document["summary"]
    citations: dict[str, Any] = summary["citations"]
    cited: set[str] = set()
    for section in ("key_points", "decisions", "open_questions", "technical"):
        for point in summary.get(section, []):
            cited.update(point["message_ids"])
    for topic in summary.get("topics", []):
        cited.update(topic["message_ids"])
    for item in summary.get("action_items", []):
        cited.update(item["message_ids"])
    for contribution in summary.get("contributions", []):
        for point in contribution["points"]:
            cited.update(point["message_ids"])
    valid = 0
    with open_export(export) as source:
        guild, channel = source.channel.guild_id, source.channel.channel_id
        for message in source.iter_messages():
            if message.id not in cited:
                continue
            citation = citations.get(message.id)
            if (
                citation is not None
                and citation["timestamp"].replace("Z", "+00:00") == message.timestamp.isoformat()
                and citation["jump_url"].endswith(f"/{guild}/{channel}/{message.id}")
            ):
                valid += 1
    return valid, len(cited)


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; the last line printed is JSON."""
    stop_on_sigterm()
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("messages", nargs="?", type=int, default=100_000)
    parser.add_argument("--timeout", type=float, default=900.0)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument(
        "--offline",
        action="store_true",
        help="no LLM: measure the extractive path (also the degraded fallback's) instead",
    )
    args = parser.parse_args(argv)
    redis_url = f"redis://127.0.0.1:6379/{REDIS_DB}"
    redis = Redis.from_url(redis_url)
    _clear(redis)
    sampler = _Sampler()
    with tempfile.TemporaryDirectory() as tmp, _database() as db, _fake_server() as (base, _fake):
        export = build_large_export(Path(tmp) / "export.json", args.messages)
        env = {
            **os.environ,
            "DATABASE_URL": db,
            "REDIS_URL": redis_url,
            "SUMMARYBOT_DATA_DIR": str(Path(tmp) / "data"),
            "LOG_LEVEL": "WARNING",
            "LOG_FORMAT": "json",
            "LLM_BASE_URL": base,
            "OPENAI_API_KEY": "sk-bench",
            "LLM_PROVIDER": "openai",
            "JOB_WAIT_TIMEOUT": str(int(args.timeout)),
            "SECRET_KEYS": generate_key(),  # deliver workers refuse to start without them
        }
        if args.offline:
            for name in ("LLM_BASE_URL", "OPENAI_API_KEY", "LLM_PROVIDER"):
                env.pop(name)
        workers = []
        for index in range(args.workers):
            log = (Path(tmp) / f"worker{index}.log").open("wb")
            process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "producers.cli.main",
                    "worker",
                    "--concurrency",
                    "1",
                    "--hostname",
                    f"bench{index}@%h",
                ],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
            workers.append((process, log))
            sampler.groups[process.pid] = f"worker{index}"
        sampler.start()
        try:
            time.sleep(3)  # let the workers connect before the job is published
            started = time.perf_counter()
            result = subprocess.run(
                [sys.executable, "-m", "producers.cli.main", "summarize", str(export), "--json"],
                env=env,
                capture_output=True,
                text=True,
                timeout=args.timeout,
                check=False,
            )
            seconds = time.perf_counter() - started
            # Before any worker is waited for: only the command has been reaped so far.
            command_peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
        finally:
            sampler.stop()
            for process, log in workers:
                os.killpg(process.pid, signal.SIGTERM)
                try:
                    process.wait(30)
                except subprocess.TimeoutExpired:
                    os.killpg(process.pid, signal.SIGKILL)
                    process.wait(10)
                log.close()
        if result.returncode != 0:
            print(result.stderr[-3000:], file=sys.stderr)
            for index in range(len(workers)):
                tail = (Path(tmp) / f"worker{index}.log").read_text()[-3000:]
                print(f"--- worker{index}\n{tail}", file=sys.stderr)
            _clear(redis)
            return 1
        document = json.loads(result.stdout)
        with urlopen(base.replace("/v1", "/_fake/stats")) as response:
            stats = json.loads(response.read())
        valid, cited = _check_citations(export, document)
        engine = make_engine(db)
        try:
            with make_sessionmaker(engine)() as session:
                kinds = dict(
                    session.execute(
                        select(UsageLedger.kind, func.count()).group_by(UsageLedger.kind)
                    ).all()
                )
        finally:
            engine.dispose()
    _clear(redis)
    redis.close()
    peaks = {label: round(mb, 1) for label, mb in sampler.peaks.values()}
    peaks["summarize-command"] = round(command_peak, 1)
    peak = max(peaks.values())
    figures = {
        "messages": document["summary"]["coverage"]["messages_total"],
        "seconds": round(seconds, 1),
        "llm_calls": stats["requests"],
        "map_calls": kinds.get("map", 0),
        "reduce_calls": kinds.get("reduce", 0),
        "repair_calls": kinds.get("repair", 0),
        "prompt_tokens": stats["prompt_tokens"],
        "completion_tokens": stats["completion_tokens"],
        "peak_rss_mb": peak,
        "peak_rss_mb_by_process": peaks,
        "rss_target_mb": TARGET_RSS_MB,
        "citations": cited,
        "citations_valid_pct": round(100.0 * valid / cited, 2) if cited else 0.0,
        "model": document["model"],
        "degraded": document["summary"]["degraded"],
        "backend": document["summary"]["backend"],
    }
    print(
        f"summarized {figures['messages']} messages in {figures['seconds']} s with "
        f"{figures['llm_calls']} LLM calls; peak RSS {peak} MB"
    )
    print(json.dumps(figures))
    ok = (
        peak < TARGET_RSS_MB and figures["citations_valid_pct"] == 100.0 and not figures["degraded"]
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
