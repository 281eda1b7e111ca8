"""Failures of what a command depends on are one line and exit 2, and leave no job behind;
workers refuse at start what they could never do."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from producers.cli.main import demo_export
from schema.models.jobs import Job
from shared.crypto import generate_key
from tests.fakes.openai_server import FakeConfig, FakeOpenAIServer
from tests.support.process_groups import stop_process_group

pytestmark = pytest.mark.integration

LAUNCHER = "from producers.cli.main import main\nmain()\n"


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])  # nobody listens once the socket is closed


def _cli(env: dict[str, str], *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", LAUNCHER, *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def _jobs(factory: sessionmaker[Session]) -> int:
    with factory() as session:
        return int(session.scalar(select(func.count()).select_from(Job)) or 0)


@pytest.fixture
def env(ops_db: str, redis_url: str, tmp_path: Path) -> dict[str, str]:
    clean = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")}
    return {
        **clean,
        "DATABASE_URL": ops_db,
        "REDIS_URL": redis_url,
        "SECRET_KEYS": generate_key(),
        "SUMMARYBOT_DATA_DIR": str(tmp_path / "data"),
    }


def _one_line(result: subprocess.CompletedProcess[str], variable: str) -> str:
    assert result.returncode == 2, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"summarybot: {variable}: "), lines[0]
    assert "Traceback" not in result.stderr
    return lines[0]


def test_summarize_with_redis_down_is_one_line_and_writes_no_job(
    env: dict[str, str], factory: sessionmaker[Session]
) -> None:
    before = _jobs(factory)
    env["REDIS_URL"] = f"redis://127.0.0.1:{_closed_port()}/0"
    line = _one_line(_cli(env, "summarize", str(demo_export())), "REDIS_URL")
    assert "not reachable" in line and "start it or fix REDIS_URL" in line
    assert _jobs(factory) == before


def test_commands_with_postgresql_down_are_one_line(env: dict[str, str]) -> None:
    env["DATABASE_URL"] = f"postgresql+psycopg://postgres@127.0.0.1:{_closed_port()}/summarybot"
    replay = ("replay", "--all-dead-letters", "--dry-run")
    for args in (("summarize", str(demo_export())), ("migrate",), replay):
        line = _one_line(_cli(env, *args), "DATABASE_URL")
        assert "not reachable" in line, args


def test_wrong_database_credentials_say_so(env: dict[str, str]) -> None:
    env["DATABASE_URL"] = "postgresql+psycopg://no_such_role:pw@127.0.0.1:5432/postgres"
    line = _one_line(_cli(env, "migrate"), "DATABASE_URL")
    assert "refused the credentials" in line


def test_a_deliver_worker_without_valid_secret_keys_does_not_start(env: dict[str, str]) -> None:
    del env["SECRET_KEYS"]
    line = _one_line(_cli(env, "worker", "-Q", "deliver", "-P", "solo"), "SECRET_KEYS")
    assert "rotate-keys --generate" in line
    env["SECRET_KEYS"] = "not-a-fernet-key"
    _one_line(_cli(env, "worker", "-Q", "deliver", "-P", "solo"), "SECRET_KEYS")


def test_every_worker_and_beat_need_the_secret_keys(env: dict[str, str]) -> None:
    # Webhook secrets are sealed, and members' log pseudonyms keyed, with SECRET_KEYS: a
    # process without them would fail later, or log other pseudonyms than its peers.
    del env["SECRET_KEYS"]
    for args in (("worker", "-Q", "fetch", "-P", "solo"), ("beat",)):
        line = _one_line(_cli(env, *args), "SECRET_KEYS")
        assert "rotate-keys --generate" in line, args


def test_a_worker_whose_tasks_could_not_build_their_resources_does_not_start(
    env: dict[str, str], tmp_path: Path
) -> None:
    # Every pool process builds the LLM client, whatever its queues: an unreadable key file
    # used to fail each of them while the worker said it was ready, and lose their tasks.
    env["LLM_API_KEY_FILE"] = str(tmp_path / "missing-key")
    started = time.monotonic()
    result = _cli(env, "worker", "-Q", "fetch", "-c", "1", timeout=90)
    assert result.returncode == 2, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    assert lines[0].startswith(f"summarybot: LLM API key file {tmp_path / 'missing-key'} ")
    assert "LLM_API_KEY_FILE" in lines[0]
    assert time.monotonic() - started < 60


def test_an_unreadable_discord_token_file_stops_the_worker_and_the_api(
    env: dict[str, str], tmp_path: Path
) -> None:
    # The bot refused it; the worker and the API started and failed each Discord call.
    env["DISCORD_TOKEN_FILE"] = str(tmp_path / "no-token")
    for args in (("worker", "-Q", "fetch", "-c", "1"), ("api", "--port", str(_closed_port()))):
        result = _cli(env, *args, timeout=90)
        assert result.returncode == 2, (args, result.stderr)
        lines = [line for line in result.stderr.splitlines() if line.strip()]
        assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
        assert lines[0].startswith(f"summarybot: Discord token file {tmp_path / 'no-token'} ")
        assert "DISCORD_TOKEN_FILE" in lines[0]


def test_worker_options_are_checked(env: dict[str, str]) -> None:
    result = _cli(env, "worker", "-Q", "fetch,fecth", "-P", "solo")
    assert result.returncode == 2
    assert result.stderr.strip() == (
        "summarybot: --queues: unknown queue(s) fecth; the queues are fetch, summarize, "
        "deliver, maintenance"
    )
    pool = _cli(env, "worker", "-P", "gevnet")
    assert pool.returncode == 2 and "Traceback" not in pool.stderr
    assert "gevnet" in pool.stderr and "prefork" in pool.stderr


def test_a_summarize_worker_with_a_key_the_llm_does_not_know_does_not_start(
    env: dict[str, str],
) -> None:
    with FakeOpenAIServer(FakeConfig(api_keys=frozenset({"sk-right"}))) as fake:
        env |= {"LLM_BASE_URL": fake.base_url, "LLM_PROVIDER": "openai"}
        env["OPENAI_API_KEY"] = "sk-wrong-key-here"
        line = _one_line(_cli(env, "worker", "-Q", "summarize", "-P", "solo"), "OPENAI_API_KEY")
        assert "refused the key" in line and "Incorrect API key provided" in line
        # A worker that does not summarize never asks: it gets as far as its metrics port.
        with socket.socket() as taken:
            taken.bind(("127.0.0.1", 0))
            taken.listen()
            env["METRICS_PORT"] = str(taken.getsockname()[1])
            _one_line(_cli(env, "worker", "-Q", "fetch", "-P", "solo"), "METRICS_PORT")


def test_a_taken_metrics_port_stops_the_worker_at_start(env: dict[str, str]) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        env["METRICS_PORT"] = str(taken.getsockname()[1])
        line = _one_line(_cli(env, "worker", "-Q", "fetch", "-P", "solo"), "METRICS_PORT")
    assert "pick a free port" in line


def _start(env: dict[str, str], log: Path, *args: str) -> subprocess.Popen[bytes]:
    with log.open("wb") as handle:
        return subprocess.Popen(
            [sys.executable, "-c", LAUNCHER, *args],
            env=env,
            stdout=handle,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def _stop(process: subprocess.Popen[bytes]) -> None:
    stop_process_group(process)


def test_the_readmes_three_workers_are_three_workers_in_flower(
    env: dict[str, str], tmp_path: Path
) -> None:
    """The README's per-queue worker commands, on one host, with their default node names;
    with an LLM configured, only the summarize worker loads the token tables (before forking)."""
    env = {**env, "OPENAI_API_KEY": "sk-unused", "LLM_BASE_URL": "http://127.0.0.1:9/v1"}
    commands = [
        ("worker", "-Q", "fetch", "-c", "1"),
        ("worker", "-Q", "summarize", "-c", "1"),
        ("worker", "-Q", "deliver,maintenance", "-c", "1"),
    ]
    port = _closed_port()
    processes = [_start(env, tmp_path / f"worker{i}.log", *c) for i, c in enumerate(commands)]
    flower = _start(
        env, tmp_path / "flower.log", "flower", "--port", str(port), "--basic-auth", "ops:pw"
    )
    try:
        deadline = time.monotonic() + 90
        names: set[str] = set()
        while time.monotonic() < deadline:
            try:
                answer = httpx.get(
                    f"http://127.0.0.1:{port}/api/workers?refresh=1",
                    auth=("ops", "pw"),
                    timeout=10,
                )
                if answer.status_code == 200:
                    names = set(answer.json())
            except httpx.HTTPError:
                pass  # Flower is still starting
            if len(names) >= 3:
                break
            time.sleep(1)
        host = socket.gethostname()
        assert names == {f"fetch@{host}", f"summarize@{host}", f"deliver-maintenance@{host}"}
    finally:
        for process in [flower, *processes]:
            _stop(process)
        logs = "".join(p.read_text() for p in tmp_path.glob("worker*.log"))
        assert "DuplicateNodenameWarning" not in logs
    loaded = [
        "worker.tokenizers_loaded" in (tmp_path / f"worker{i}.log").read_text()
        for i in range(len(commands))
    ]
    assert loaded == [False, True, False]
