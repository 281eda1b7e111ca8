"""A worker process configured only by ``DISCORD_TOKEN_FILE``: it reads history and posts to a
Discord channel on the fake Discord, its adapter metrics show a 429, and a rotated token file
is used from the next request on."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import redis
from cryptography.fernet import Fernet

import celeryconfig
from tests.fakes.discord_limits import Fault
from tests.fakes.discord_server import FakeDiscordServer, World, seed_basic
from tests.support.process_groups import stop_process_group

pytestmark = pytest.mark.integration

LAUNCHER = "from producers.cli.main import main\nmain()\n"
SEND = "POST /channels/{channel_id}/messages"


@dataclass
class Deployment:
    """The fake Discord, the token file, and the environment every process shares."""

    server: FakeDiscordServer
    world: World
    token_file: Path
    env: dict[str, str]
    metrics_port: int
    log: Path


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def deployment(ops_db: str, redis_url: str, tmp_path: Path) -> Iterator[Deployment]:
    server = FakeDiscordServer().start()
    world = seed_basic(server.fake, token="file-token-one")
    now_ms = server.fake.now_ms()
    server.fake.add_history(
        world.general, [world.alice, world.bob], 40, start_ms=now_ms - 3_600_000, step_ms=60_000
    )
    token_file = tmp_path / "discord-token"
    token_file.write_text("file-token-one\n")
    port = _free_port()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("DISCORD_")},
        "DATABASE_URL": ops_db,
        "REDIS_URL": redis_url,
        "SECRET_KEYS": Fernet.generate_key().decode(),
        "SUMMARYBOT_DATA_DIR": str(tmp_path / "data"),
        "DISCORD_TOKEN_FILE": str(token_file),
        "DISCORD_API_BASE": server.api_base,
        "METRICS_PORT": str(port),
        "LOG_LEVEL": "INFO",
        "JOB_WAIT_TIMEOUT": "90",
    }
    log = tmp_path / "worker.log"
    with log.open("wb") as handle:
        worker = subprocess.Popen(
            [sys.executable, "-c", LAUNCHER, "worker", "-P", "solo", "-n", f"dtf{port}@%h"],
            env=env,
            stdout=handle,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + 60
        while b" ready" not in log.read_bytes():
            assert worker.poll() is None, log.read_text()
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.2)
        yield Deployment(server, world, token_file, env, port, log)
    finally:
        stop_process_group(worker)
        client = redis.Redis.from_url(redis_url)
        client.delete(*celeryconfig.QUEUES, "unacked", "unacked_index")
        client.close()
        server.stop()


def _summarize_and_post(d: Deployment) -> subprocess.CompletedProcess[str]:
    channel = str(d.world.general.id)
    return subprocess.run(
        [
            sys.executable,
            "-c",
            LAUNCHER,
            "summarize",
            "--guild",
            str(d.world.guild.id),
            "--channel",
            channel,
            "--hours",
            "2",
            "--post-to",
            channel,
        ],
        env=d.env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def _bot_posts(d: Deployment) -> int:
    return sum(
        1
        for m in list(d.server.fake.messages.values())
        if m.channel_id == d.world.general.id and m.author_id == d.world.bot.id
    )


def _metric(port: int, name: str) -> float:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith((name + "{", name + " "))
    )


def test_a_worker_with_only_a_token_file_delivers_and_follows_rotation(
    deployment: Deployment,
) -> None:
    d = deployment
    assert _metric(d.metrics_port, "summarybot_discord_429_total") == 0
    d.server.fake.inject(Fault("user429", route=SEND, times=1, retry_after=0.05))
    first = _summarize_and_post(d)
    assert first.returncode == 0, first.stderr + d.log.read_text()[-3000:]
    assert _bot_posts(d) >= 1
    # The adapter's metrics live on the worker's process registry and are served.
    assert _metric(d.metrics_port, "summarybot_discord_429_total") >= 1

    # Rotate: the new token is valid, the old one is revoked (401 from now on).
    d.server.fake.add_token("file-token-two", d.world.bot)
    d.token_file.write_text("file-token-two\n")
    d.server.fake.revoke_token("file-token-one")
    posted = _bot_posts(d)
    second = _summarize_and_post(d)
    assert second.returncode == 0, second.stderr + d.log.read_text()[-3000:]
    assert _bot_posts(d) > posted
