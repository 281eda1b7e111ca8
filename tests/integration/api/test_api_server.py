"""The API as a real uvicorn process on real PostgreSQL and Redis: a POSTed job is queued in the
database and its fetch task is on the Redis ``fetch`` queue; a chunked body over the limit is
refused while it streams."""

from __future__ import annotations

import base64
import json
import os
import re
import socket
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis

from schema.models.jobs import Job
from shared.apikeys import create_api_key
from shared.crypto import generate_key
from shared.db.engine import make_engine, make_sessionmaker
from shared.db.migrate import upgrade
from shared.jobs import FETCH
from tests.integration.api.server import ApiServer, api_server
from tests.support.discord_tenants import DiscordTenants

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def migrated(postgres_url: str) -> str:
    upgrade(postgres_url)
    return postgres_url


@pytest.fixture(scope="module")
def tenant(discord_tenants: DiscordTenants) -> tuple[str, str]:
    """The API key's guild and a channel of it, on the fake Discord the API asks."""
    return discord_tenants.tenant()


@pytest.fixture(scope="module")
def api_process(
    migrated: str,
    redis_url: str,
    tmp_path_factory: pytest.TempPathFactory,
    discord_tenants: DiscordTenants,
    tenant: tuple[str, str],
) -> Iterator[tuple[ApiServer, str, Path]]:
    engine = make_engine(migrated)
    _row, token = create_api_key(
        make_sessionmaker(engine),
        guild_id=tenant[0],
        scopes=["jobs:write", "summaries:read"],
        name="integration",
        now=datetime.now(UTC),
    )
    engine.dispose()
    tmp = tmp_path_factory.mktemp("api")
    env = {
        **os.environ,
        "DATABASE_URL": migrated,
        "REDIS_URL": redis_url,
        "SECRET_KEYS": generate_key(),
        "SUMMARYBOT_DATA_DIR": str(tmp / "data"),
        "LOG_LEVEL": "WARNING",
        "DISCORD_TOKEN": discord_tenants.token,
        "DISCORD_API_BASE": discord_tenants.server.api_base,
        "SUMMARYBOT_MODULES_REPORT": str(tmp / "modules.json"),
    }
    with api_server(env, tmp / "api.log") as running:
        yield running, token, tmp / "modules.json"


@pytest.fixture(scope="module")
def server(api_process: tuple[ApiServer, str, Path]) -> tuple[str, str]:
    running, token, _ = api_process
    return running.url, token


#: What only workers need: the task modules, the LLM SDK and its tokenizer, the pipeline.
WORKER_ONLY = ("workers", "openai", "tiktoken", "shared.pipeline", "shared.summarize.llm")


def test_the_api_process_loads_no_worker_code(
    api_process: tuple[ApiServer, str, Path], tenant: tuple[str, str]
) -> None:
    running, token, report = api_process
    response = httpx.post(
        f"{running.url}/v1/jobs",
        headers={"Authorization": f"Bearer {token}"},
        json={"channel_id": tenant[1], "window": {"hours": 2}},
        timeout=10,
    )
    assert response.status_code == 202, response.text  # the submit path is loaded too
    modules = running.imported_modules(report)
    assert "producers.api.app" in modules and "celery" in modules  # the report is real
    loaded = [m for m in modules if any(m == w or m.startswith(w + ".") for w in WORKER_ONLY)]
    assert loaded == []


def _fetch_messages(client: redis.Redis[Any]) -> list[tuple[bytes, dict[str, Any], list[Any]]]:
    found = []
    for raw in client.lrange("fetch", 0, -1):
        message = json.loads(raw)
        body = json.loads(base64.b64decode(message["body"]))
        found.append((raw, message["headers"], body[0]))
    return found


def test_posted_job_is_queued_in_the_database_and_on_the_fetch_queue(
    server: tuple[str, str], migrated: str, redis_url: str, tenant: tuple[str, str]
) -> None:
    base, token = server
    guild, channel = tenant
    response = httpx.post(
        base + "/v1/jobs",
        headers={"Authorization": f"Bearer {token}", "Idempotency-Key": uuid.uuid4().hex},
        json={"channel_id": channel, "window": {"hours": 2}, "format": "technical"},
        timeout=10,
    )
    assert response.status_code == 202, response.text
    job_id = response.json()["id"]

    engine = make_engine(migrated)
    try:
        with make_sessionmaker(engine)() as session:
            job = session.get(Job, uuid.UUID(job_id))
            assert job is not None
            assert (job.status, job.origin, job.guild_id, job.channel_id) == (
                "queued",
                "api",
                guild,
                channel,
            )
            assert job.params["format"] == "technical"
            assert job.idempotency_key is not None and job.idempotency_key.startswith("api:")
    finally:
        engine.dispose()

    client: redis.Redis[Any] = redis.Redis.from_url(redis_url)
    try:
        mine = [m for m in _fetch_messages(client) if m[2] == [job_id]]
        assert len(mine) == 1
        raw, headers, _args = mine[0]
        assert headers["task"] == FETCH
        client.lrem("fetch", 1, raw)  # no worker runs here; leave the queue as it was
    finally:
        client.close()

    status = httpx.get(base + f"/v1/jobs/{job_id}", headers={"Authorization": f"Bearer {token}"})
    assert status.json()["status"] == "queued"
    metrics = httpx.get(base + "/metrics").text
    assert 'summary_requests_total{status="accepted",type="technical"} 1.0' in metrics


def test_chunked_body_over_the_limit_is_refused_while_streaming(server: tuple[str, str]) -> None:
    base, token = server
    port = int(base.rsplit(":", 1)[1])
    chunk = b"x" * 8192
    request = (
        "POST /v1/jobs HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        f"Authorization: Bearer {token}\r\nTransfer-Encoding: chunked\r\n\r\n"
    ).encode()
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(request)
        sent = 0
        try:
            # Far more than 64 KiB, and no Content-Length: only counting can catch it.
            for _ in range(64):
                sock.sendall(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
                sent += len(chunk)
        except (BrokenPipeError, ConnectionResetError):
            pass
        answer = b""
        while b"\r\n\r\n" not in answer:
            data = sock.recv(65536)
            if not data:
                break
            answer += data
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
    assert b"application/problem+json" in answer


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
def test_the_docs_pages_load_every_asset_from_the_api_itself(
    server: tuple[str, str], page: str
) -> None:
    base, _ = server
    response = httpx.get(base + page, timeout=10)
    assert response.status_code == 200 and "text/html" in response.headers["content-type"]
    assets = re.findall(r'(?:src|href)\s*=\s*["\']([^"\']+)["\']', response.text)
    assets += re.findall(r"url:\s*'([^']+)'", response.text)  # the spec Swagger UI loads
    scripts = [a for a in assets if a.endswith(".js")]
    assert scripts, response.text  # the page does load scripts ...
    for asset in assets:
        assert asset.startswith("/"), f"{page} loads {asset} from elsewhere"  # ... all ours
        fetched = httpx.get(base + asset, timeout=10)
        assert fetched.status_code == 200, asset
    assert "openapi.json" in response.text
