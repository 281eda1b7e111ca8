"""Chaos benchmark: jobs keep completing exactly once while workers, Redis and Postgres die.

    python -m tests.perf.chaos                 # 200 jobs, 3 workers, SIGKILL every 5 s
    python -m tests.perf.chaos --jobs 20 --workers 2 --messages 150

It starts its own Redis (``redis-server --save ""`` on a spare port) and its own PostgreSQL
(``initdb`` into a temporary folder, ``pg_ctl`` on a spare port, as the ``postgres`` user when
run as root), so it can kill them without touching the shared services, and, in this process,
the fake Discord (four channels of real irc-dev conversation and a ``#digests`` channel) and
the fake OpenAI.  Every job reads the latest ``--messages`` messages of one channel through the
Discord adapter, is summarized by the LLM backend and posted to ``#digests``, all by real
``summarybot worker`` processes.  While they run it SIGKILLs a random worker (main process and
pool) every ``--kill-every`` seconds and starts a replacement, restarts Redis empty once (after
``--redis-at`` of the jobs completed) and crashes and restarts PostgreSQL once (after
``--postgres-at``).  A real ``summarybot beat`` runs the recovery sweeps; ``--sweep-every``
adds the same sweeps from this process (every 5 s by default; 0 turns them off): stale-job
recovery and the delivery outbox's ``redrive_deliveries``, as beat schedules them.

The last line is one JSON object: ``completed`` (jobs that ended completed), ``failed``,
``stuck`` (not finished at the deadline), ``duplicates`` (jobs whose effect happened twice:
two summaries, or a summary posted to ``#digests`` more than once), ``undelivered`` (completed
jobs with nothing in ``#digests``), ``resends`` (sends repeated after a worker died between
sending and recording; Discord's ``nonce`` + ``enforce_nonce`` turns them into the same
message), ``max_recovery_s`` (longest time from a disruption until the next job completed),
``llm_calls``, ``discord_requests``, ``seconds``, and the disruption counts.
"""

from __future__ import annotations

import argparse
import contextlib
import glob
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

import psycopg
import redis
from celery import Celery
from cryptography.fernet import Fernet
from sqlalchemy import case, func, select
from sqlalchemy.exc import SQLAlchemyError

import celeryconfig
from schema.models.jobs import Delivery, Job, Summary
from shared.cache import MemoryMessageCache
from shared.db.engine import make_engine, make_sessionmaker
from shared.db.migrate import upgrade
from shared.delivery.discord_targets import nonce_prefix
from shared.delivery.redrive import redrive_deliveries
from shared.delivery.targets import ChannelTarget
from shared.jobs import DiscordChannelSource, JobParams
from shared.lifecycle import FINISHED
from shared.pipeline.recovery import requeue_stale_jobs
from shared.pipeline.services import Services
from shared.services.core import Actor
from shared.services.jobs import submit_job
from shared.settings import load_settings
from shared.summarize.extractive.summarizer import ExtractiveSummarizer
from tests.fakes.discord_server import FakeDiscordServer, World, seed_basic
from tests.fakes.openai_server import FakeOpenAIServer
from tests.integration.pipeline_llm.harness import irc_messages
from tests.integration.processes import CLI, Worker
from tests.support.process_groups import stop_on_sigterm

__all__ = ["ChaosConfig", "PostgresServer", "RedisServer", "main", "run_chaos"]

_FINISHED = tuple(status.value for status in FINISHED)


@dataclass
class ChaosConfig:
    """What one chaos run does."""

    jobs: int = 200
    workers: int = 3
    concurrency: int = 2
    messages: int = 300
    kill_every: float = 5.0
    redis_at: float = 0.3
    postgres_at: float = 0.6
    sweep_every: float | None = 5.0
    in_flight: int = 12
    timeout: float = 1800.0
    seed: int = 0


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait(condition: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.1)
    raise TimeoutError(f"{what} did not happen within {timeout} s")


class RedisServer:
    """A throw-away ``redis-server``; without ``persist`` a restart comes back empty, with it
    every write is in the append-only file first, so a restart comes back with everything."""

    def __init__(self, workdir: Path, *, persist: bool = False) -> None:
        self.persist = persist
        self.port = free_port()
        self.workdir = workdir
        self.process: subprocess.Popen[bytes] | None = None
        self.url = f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        """Start it and wait until it answers."""
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("redis-server is not installed (apt-get install redis-server)")
        self.process = subprocess.Popen(
            [
                *(binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", ""),
                *("--appendonly", "yes" if self.persist else "no", "--appendfsync", "always"),
                *("--maxmemory-policy", "noeviction"),
                *("--dir", str(self.workdir), "--logfile", str(self.workdir / "redis.log")),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        client = redis.Redis(port=self.port, socket_connect_timeout=0.5)

        def answers() -> bool:
            try:
                return bool(client.ping())
            except redis.exceptions.ConnectionError:
                return False

        _wait(answers, 20, "redis start")
        client.close()

    def kill(self) -> None:
        """SIGKILL it (nothing is saved)."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)

    def restart_empty(self) -> None:
        """Kill it and start it again (with nothing in it unless it persists)."""
        self.kill()
        self.start()


class PostgresServer:
    """A throw-away PostgreSQL cluster in a temporary folder, owned by ``postgres`` if root."""

    def __init__(self, workdir: Path) -> None:
        self.port = free_port()
        self.datadir = workdir / "pgdata"
        self.socketdir = workdir / "pgsock"
        self.logfile = workdir / "postgres.log"
        self._bin = self._find_bin()
        self._as_postgres = os.geteuid() == 0
        self.url = f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/chaos"

    @staticmethod
    def _find_bin() -> Path:
        found = shutil.which("pg_ctl")
        if found:
            return Path(found).parent
        candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"))
        if not candidates:
            raise RuntimeError("PostgreSQL server binaries (initdb, pg_ctl) are not installed")
        return Path(candidates[-1]).parent

    def _run(self, *args: str) -> None:
        command = [str(self._bin / args[0]), *args[1:]]
        if self._as_postgres:
            command = ["runuser", "-u", "postgres", "--", *command]
        done = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(command)} failed: {done.stderr.strip()[-500:]}")

    def init(self) -> None:
        """initdb with trust authentication, then start and create the ``chaos`` database."""
        for folder in (self.datadir, self.socketdir):
            folder.mkdir(parents=True)
        for path in (self.datadir.parent, self.datadir, self.socketdir):
            if self._as_postgres:
                shutil.chown(path, "postgres", "postgres")
        if self._as_postgres:
            self.logfile.touch()
            shutil.chown(self.logfile, "postgres", "postgres")
        self._run("initdb", "-D", str(self.datadir), "-U", "postgres", "--auth=trust", "-E", "UTF8")
        self.start()
        with psycopg.connect(self._admin(), autocommit=True) as conn:
            conn.execute("CREATE DATABASE chaos")

    def _admin(self) -> str:
        return f"host=127.0.0.1 port={self.port} user=postgres dbname=postgres"

    def start(self) -> None:
        """Start the server and wait until it accepts connections."""
        options = (
            f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.socketdir} "
            # fsync off is safe here: a killed server loses no write the OS already has.
            # synchronous_commit stays on: with it off, an immediate stop loses commits, which
            # a real failover (synchronous replication) does not.
            "-c fsync=off -c full_page_writes=off "
            "-c max_connections=300"
        )
        self._run(
            "pg_ctl",
            "-D",
            str(self.datadir),
            "-l",
            str(self.logfile),
            "-o",
            options,
            "-w",
            "-t",
            "60",
            "start",
        )

    def crash_restart(self) -> None:
        """Stop it the way a crash does (immediate, no checkpoint), then start it again."""
        self._run("pg_ctl", "-D", str(self.datadir), "-m", "immediate", "stop")
        self.start()

    def stop(self) -> None:
        """Stop it for good."""
        with contextlib.suppress(subprocess.SubprocessError, RuntimeError):
            self._run("pg_ctl", "-D", str(self.datadir), "-m", "immediate", "stop")


@dataclass
class _Run:
    config: ChaosConfig
    env: dict[str, str]
    workdir: Path
    workers: list[Worker] = field(default_factory=list)
    retired: list[Worker] = field(default_factory=list)
    events: list[tuple[str, float]] = field(default_factory=list)
    completions: list[float] = field(default_factory=list)
    serial: int = 0
    submitted: int = 0
    submit: Any = None
    submit_errors: Counter[str] = field(default_factory=Counter)

    def start_worker(self) -> Worker:
        self.serial += 1
        worker = Worker(
            self.env,
            self.workdir / f"worker{self.serial}.log",
            name=f"chaos{self.serial}",
            concurrency=self.config.concurrency,
        )
        self.workers.append(worker)
        return worker

    def kill_one(self, rng: random.Random) -> None:
        victim = rng.choice(self.workers)
        victim.kill()
        self.workers.remove(victim)
        self.retired.append(victim)
        self.events.append(("worker_kill", time.monotonic()))
        self.start_worker()


#: Time bounds shrunk to fit a run of minutes; the workers, beat and this driver's sweep share them.
WORKER_ENV = {
    # Task time limits derive from it (hard 15 s): room for a cold worker's first task.
    "VISIBILITY_TIMEOUT": "60",
    "STAGE_TIMEOUT_SECONDS": "30",
    "MAX_REDELIVERIES": "50",
    # A delivery leased by a killed worker is sent again once its lease runs out.
    "DELIVERY_LEASE_SECONDS": "15",
    # A pending delivery whose task died with the emptied Redis is re-enqueued after this
    # (300 s by default, longer than the short run).
    "DELIVERY_REDRIVE_GRACE_SECONDS": "20",
}


def driver_services(
    url: str, redis_url: str, app: Celery, *, token: str, api_base: str
) -> tuple[Services, Any]:
    """What a driver (the producer) uses: Postgres, the broker, and the fake Discord (bot
    ``token`` at ``api_base``) the guild boundary asks about each submitted channel."""
    from shared.delivery.config import DeliverySettings
    from shared.discord.config import DiscordSettings
    from shared.discord.factory import build_discord_client
    from shared.jobs import CeleryEnqueuer

    settings = load_settings(
        database_url=url,
        redis_url=redis_url,
        stage_timeout_seconds=30,
        secret_keys=[Fernet.generate_key().decode()],
        discord=DiscordSettings(token=token, api_base=api_base),
        delivery=DeliverySettings(
            delivery_lease_seconds=float(WORKER_ENV["DELIVERY_LEASE_SECONDS"]),
            delivery_redrive_grace_seconds=float(WORKER_ENV["DELIVERY_REDRIVE_GRACE_SECONDS"]),
        ),
    )
    engine = make_engine(url)
    services = Services(
        settings=settings,
        session_factory=make_sessionmaker(engine),
        cache=MemoryMessageCache(ttl=60),
        enqueuer=CeleryEnqueuer(app),
        summarizer=ExtractiveSummarizer(),
        console=sys.stderr,
        discord=build_discord_client(settings.discord, None, None, None),
    )
    if services.discord is not None:
        services.closers.append(services.discord.close)
    return services, engine


def _status_counts(services: Services) -> Counter[str] | None:
    """Jobs by status; a job whose deliveries are still under way counts as ``delivering``."""
    sending = (
        select(Summary.job_id)
        .join(Delivery, Delivery.summary_id == Summary.id)
        .where(Delivery.status.in_(["pending", "sending"]))
    )
    status = case((Job.id.in_(sending), "delivering"), else_=Job.status)
    try:
        with services.session_factory() as session:
            rows = session.execute(select(status, func.count()).group_by(status)).all()
        return Counter({str(name): int(count) for name, count in rows})
    except SQLAlchemyError:
        return None  # PostgreSQL is restarting


@contextlib.contextmanager
def _servers(workdir: Path) -> Iterator[tuple[RedisServer, PostgresServer]]:
    redis_server = RedisServer(workdir)
    postgres = PostgresServer(workdir)
    try:
        redis_server.start()
        postgres.init()
        yield redis_server, postgres
    finally:
        redis_server.kill()
        postgres.stop()


@dataclass
class _Fakes:
    """The fake Discord and fake OpenAI this run's workers talk to."""

    discord: FakeDiscordServer
    openai: FakeOpenAIServer
    world: World
    sources: list[int]
    digests: int


#: Fake users who speak the irc-dev lines, by the order their nick first appears.
_SPEAKERS = 8


@contextlib.contextmanager
def _fakes(config: ChaosConfig) -> Iterator[_Fakes]:
    """Four channels of irc-dev conversation and ``#digests`` on the fake Discord."""
    discord = FakeDiscordServer()
    fake = discord.fake
    world = seed_basic(fake, token="chaos-bot-token")
    people = [fake.add_user(f"speaker{n}") for n in range(_SPEAKERS)]
    for person in people:
        fake.add_member(world.guild, person)
    sources = []
    for index in range(4):
        channel = fake.add_channel(world.guild, f"support-{index}", topic="Ubuntu help")
        nicks: dict[str, int] = {}
        for message in irc_messages(
            config.messages,
            guild_id=str(world.guild.id),
            channel_id=str(channel.id),
            first_day=date(2026, 3, 1 + index),
        ):
            speaker = nicks.setdefault(message.author_name, len(nicks) % _SPEAKERS)
            fake.add_message(
                channel,
                people[speaker],
                message.content,
                at_ms=int(message.timestamp.timestamp() * 1000),
            )
        sources.append(channel.id)
    digests = fake.add_channel(world.guild, "digests", topic="summaries land here")
    openai = FakeOpenAIServer()
    discord.start()
    openai.start()
    try:
        yield _Fakes(discord, openai, world, sources, digests.id)
    finally:
        openai.stop()
        discord.stop()


def run_chaos(config: ChaosConfig, *, workdir: Path | None = None) -> dict[str, Any]:
    """Run one chaos experiment and return its figures."""
    rng = random.Random(config.seed)
    own_dir = workdir is None
    root = Path(tempfile.mkdtemp(prefix="summarybot-chaos-")) if workdir is None else workdir
    os.chmod(root, 0o755)  # the postgres user must reach its data folder
    try:
        with _servers(root) as (redis_server, postgres), _fakes(config) as fakes:
            return _experiment(config, rng, root, redis_server, postgres, fakes)
    finally:
        if own_dir:
            shutil.rmtree(root, ignore_errors=True)


def _experiment(
    config: ChaosConfig,
    rng: random.Random,
    root: Path,
    redis_server: RedisServer,
    postgres: PostgresServer,
    fakes: _Fakes,
) -> dict[str, Any]:
    upgrade(postgres.url)
    data_dir = root / "data"
    data_dir.mkdir(exist_ok=True)
    env = {
        **os.environ,
        "DATABASE_URL": postgres.url,
        "REDIS_URL": redis_server.url,
        "SUMMARYBOT_DATA_DIR": str(data_dir),
        "LOG_FORMAT": "json",
        "LOG_LEVEL": "INFO",  # the worker says " ready" at INFO
        **WORKER_ENV,
        "SECRET_KEYS": Fernet.generate_key().decode(),
        "DISCORD_TOKEN": fakes.world.token,
        "DISCORD_API_BASE": fakes.discord.api_base,
        "LLM_BASE_URL": fakes.openai.base_url,
        "OPENAI_API_KEY": "sk-chaos-benchmark",
        "LLM_PROVIDER": "openai",
        "LLM_REQUEST_TIMEOUT": "20",
    }
    app = Celery("chaos", set_as_current=False)
    app.config_from_object(celeryconfig)
    app.conf.broker_url = redis_server.url
    services, engine = driver_services(
        postgres.url,
        redis_server.url,
        app,
        token=fakes.world.token,
        api_base=fakes.discord.api_base,
    )
    run = _Run(config, env, root)
    with (root / "beat.log").open("wb") as beat_log:  # the child keeps its own descriptor
        beat = subprocess.Popen(
            [*CLI, "beat"],
            env=env,
            stdout=beat_log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        for _ in range(config.workers):
            run.start_worker()
        for worker in run.workers:
            worker.wait_ready(120)
        started = time.monotonic()

        def submit(index: int) -> None:
            params = JobParams(
                source=DiscordChannelSource(
                    guild_id=str(fakes.world.guild.id),
                    channel_id=str(fakes.sources[index % len(fakes.sources)]),
                    # A window of its own per job: the same window twice would reuse the first
                    # answer, and every job is meant to call the LLM under the disruptions.
                    limit=max(1, config.messages - index // len(fakes.sources)),
                ),
                destinations=[ChannelTarget(channel_id=str(fakes.digests))],
            )
            # The key makes a retry after a failed publish return the same job (the recovery
            # sweep then enqueues it), so exactly ``jobs`` jobs exist.
            actor = Actor(origin="chaos", guild_id=str(fakes.world.guild.id))
            submit_job(services.core(), actor, params, idempotency_key=f"chaos-{index}")

        run.submit = submit
        _drive(run, services, redis_server, postgres, rng, started)
        seconds = time.monotonic() - started
        counts = _status_counts(services) or Counter()
        effects = _effects(services, fakes)
        with services.session_factory() as session:
            errors = Counter(
                str(error)[:160]
                for error in session.scalars(select(Job.error).where(Job.error.is_not(None)))
            )
            unfinished = [
                {
                    "status": job.status,
                    "redeliveries": job.redeliveries,
                    "idle_s": round(
                        (services.clock() - (job.heartbeat_at or job.created_at)).total_seconds(), 1
                    ),
                    "progress": {k: v for k, v in job.progress.items() if k != "digest"},
                }
                for job in session.scalars(select(Job).where(Job.status.not_in(_FINISHED)).limit(5))
            ]
    finally:
        for worker in [*run.workers, *run.retired]:
            worker.stop()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(beat.pid, signal.SIGKILL)
        beat.wait(10)
        services.close()
        app.close()
        engine.dispose()
    recoveries = []
    for _, at in run.events:
        after = [t for t in run.completions if t > at]
        if after:
            recoveries.append(after[0] - at)
    kinds = Counter(kind for kind, _ in run.events)
    return {
        "jobs": config.jobs,
        "completed": counts.get("completed", 0),
        "failed": counts.get("failed", 0) + counts.get("cancelled", 0),
        "stuck": config.jobs - sum(counts.get(s, 0) for s in _FINISHED),
        "duplicates": effects["duplicates"],
        "undelivered": effects["undelivered"],
        "resends": effects["resends"],
        "max_recovery_s": round(max(recoveries, default=0.0), 2),
        "seconds": round(seconds, 2),
        "llm_calls": fakes.openai.stats()["requests"],
        "discord_requests": fakes.discord.fake.limits.stats()["requests"],
        "worker_kills": kinds.get("worker_kill", 0),
        "redis_restarts": kinds.get("redis_restart", 0),
        "postgres_restarts": kinds.get("postgres_restart", 0),
        "failure_reasons": dict(errors.most_common(3)),
        "submitted": run.submitted,
        "submit_errors": dict(run.submit_errors.most_common(3)),
        "unfinished_sample": unfinished,
    }


def _drive(
    run: _Run,
    services: Services,
    redis_server: RedisServer,
    postgres: PostgresServer,
    rng: random.Random,
    started: float,
) -> None:
    config = run.config
    next_kill = started + config.kill_every
    next_sweep = started + (config.sweep_every or 0)
    redis_done = postgres_done = False
    finished_before = 0
    while time.monotonic() - started < config.timeout:
        now = time.monotonic()
        counts = _status_counts(services)
        if counts is not None:
            finished = sum(counts.get(s, 0) for s in _FINISHED)
            run.completions.extend([now] * (finished - finished_before))
            finished_before = max(finished_before, finished)
            if finished >= config.jobs:
                return
            # A steady stream, like real traffic, rather than one backlog that the recovery
            # sweep would take for stale jobs.
            while run.submitted < config.jobs and run.submitted - finished < config.in_flight:
                try:
                    run.submit(run.submitted)
                except Exception as exc:  # Redis or Postgres is restarting: next turn
                    run.submit_errors[f"{type(exc).__name__}: {exc}"[:160]] += 1
                    break
                run.submitted += 1
            if not redis_done and finished >= config.redis_at * config.jobs:
                redis_server.restart_empty()
                run.events.append(("redis_restart", time.monotonic()))
                redis_done = True
            elif not postgres_done and finished >= config.postgres_at * config.jobs:
                postgres.crash_restart()
                run.events.append(("postgres_restart", time.monotonic()))
                postgres_done = True
        if now >= next_kill:
            run.kill_one(rng)
            next_kill = now + config.kill_every
        if config.sweep_every and now >= next_sweep:
            _sweep(services)
            next_sweep = now + config.sweep_every
        time.sleep(0.25)


def _sweep(services: Services) -> None:
    """The beat-driven recovery sweeps, run from here (more often than beat's schedule).

    ``requeue_stale_jobs`` re-enqueues jobs whose stage stopped beating; the delivery outbox's
    ``redrive_deliveries`` returns deliveries leased by a killed worker.  Both are
    the system's own recovery code; a failure (Postgres restarting) waits for the next turn.
    """
    with contextlib.suppress(Exception):
        requeue_stale_jobs(services)
    with contextlib.suppress(Exception):
        report = redrive_deliveries(
            services.session_factory,
            services.delivery_runtime().settings,
            now=services.clock(),
        )
        for step in report.steps:
            services.enqueuer.enqueue(step.task, *step.args)


def _effects(services: Services, fakes: _Fakes) -> dict[str, int]:
    """What the jobs did to the world: Postgres's summaries and the fake's ``#digests``.

    A duplicate is a job whose effect happened twice: more than one summary row, or its summary
    posted to ``#digests`` as more than one message with the first part's nonce.  The nonce is
    derived from the delivery id, so it tells which delivery posted what.
    """
    with services.session_factory() as session:
        per_job = session.execute(
            select(Summary.job_id, func.count()).group_by(Summary.job_id).having(func.count() > 1)
        ).all()
        rows = session.execute(
            select(Delivery.id, Delivery.attempts)
            .join(Summary, Summary.id == Delivery.summary_id)
            .join(Job, Job.id == Summary.job_id)
            .where(Job.status == "completed", Delivery.kind == "channel")
        ).all()
    with fakes.discord.fake.lock:
        firsts = Counter(
            message.nonce
            for message in fakes.discord.fake.messages.values()
            if message.channel_id == fakes.digests and message.nonce
        )
    posted = [firsts.get(f"{nonce_prefix(delivery_id)}000", 0) for delivery_id, _ in rows]
    return {
        "duplicates": len(per_job) + sum(1 for count in posted if count > 1),
        "undelivered": sum(1 for count in posted if count == 0),
        "resends": sum(max(0, attempts - 1) for _, attempts in rows),
    }


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; the last line printed is the JSON of figures."""
    stop_on_sigterm()
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    defaults = ChaosConfig()
    parser.add_argument("--jobs", type=int, default=defaults.jobs)
    parser.add_argument("--workers", type=int, default=defaults.workers)
    parser.add_argument("--concurrency", type=int, default=defaults.concurrency)
    parser.add_argument("--messages", type=int, default=defaults.messages)
    parser.add_argument("--kill-every", type=float, default=defaults.kill_every)
    parser.add_argument("--redis-at", type=float, default=defaults.redis_at)
    parser.add_argument("--postgres-at", type=float, default=defaults.postgres_at)
    parser.add_argument("--sweep-every", type=float, default=defaults.sweep_every)
    parser.add_argument("--in-flight", type=int, default=defaults.in_flight)
    parser.add_argument("--timeout", type=float, default=defaults.timeout)
    parser.add_argument("--seed", type=int, default=defaults.seed)
    args = parser.parse_args(argv)
    config = ChaosConfig(**vars(args))
    result = run_chaos(config)
    print(json.dumps(result))
    ok = (result["completed"], result["duplicates"], result["undelivered"]) == (config.jobs, 0, 0)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
