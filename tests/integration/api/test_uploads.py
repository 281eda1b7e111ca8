"""``POST /v1/jobs/upload`` end to end: a real API process without a Discord token, a real
worker process, real PostgreSQL and Redis, and a webhook receiver that verifies signatures.

A 20,000-message upload is streamed in, summarized and delivered with every citation pointing
at a message the client sent, while the API process's resident memory stays flat; a malformed
message 12,345 is refused naming it; the same upload twice under one Idempotency-Key is one job.
"""

from __future__ import annotations

import json
import os
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
from sqlalchemy import func, select

from schema.models.jobs import Job
from schema.models.uploads import Upload, UploadChunk
from shared.apikeys import create_api_key
from shared.crypto import SecretBox, generate_key
from shared.db.engine import make_engine, make_sessionmaker
from shared.db.migrate import upgrade
from tests.fakes.webhook_receiver import WebhookReceiver
from tests.integration.api.server import ApiServer, api_server
from tests.integration.processes import cli, workers
from tests.perf.export_data import build_large_export, build_message_array
from tests.unit.delivery.helpers import add_endpoint

pytestmark = [pytest.mark.integration, pytest.mark.slow]

GUILD = "1085131932217520185"
KEY = generate_key()


@pytest.fixture(scope="module")
def migrated(postgres_url: str) -> str:
    upgrade(postgres_url)
    return postgres_url


@pytest.fixture(scope="module")
def env(
    migrated: str, redis_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, str]]:
    client: redis.Redis[Any] = redis.Redis.from_url(redis_url)
    client.flushdb()  # this test database holds nothing but these tests' queues
    environment = {
        name: value
        for name, value in os.environ.items()
        if name not in ("DISCORD_TOKEN", "DISCORD_API_BASE")
    }
    yield {
        **environment,
        "DATABASE_URL": migrated,
        "REDIS_URL": redis_url,
        "SECRET_KEYS": KEY,
        "SUMMARYBOT_DATA_DIR": str(tmp_path_factory.mktemp("data")),
        "LOG_FORMAT": "json",
        # Nothing here kills a worker, so stages get production-sized time limits (a quarter of
        # this): the 20k summarize stage takes 5 s under coverage and went past 18 s on a
        # loaded CI machine in test_distributed_pipeline.
        "VISIBILITY_TIMEOUT": "600",
        "WEBHOOK_ALLOWED_HOSTS": "127.0.0.1",
    }
    client.flushdb()
    client.close()


@pytest.fixture(scope="module")
def api(
    env: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[ApiServer, dict[str, str]]]:
    engine = make_engine(env["DATABASE_URL"])
    _row, token = create_api_key(
        make_sessionmaker(engine),
        guild_id=GUILD,
        scopes=["jobs:write", "summaries:read"],
        name="uploads",
        now=datetime.now(UTC),
    )
    engine.dispose()
    with api_server(env, tmp_path_factory.mktemp("api") / "api.log") as running:
        yield running, {"Authorization": f"Bearer {token}"}


def _stream(path: Path, size: int = 64 * 1024) -> Iterator[bytes]:
    with path.open("rb") as handle:
        while chunk := handle.read(size):
            yield chunk


class _RssSampler(threading.Thread):
    """Samples a process's VmRSS every 20 ms until stopped; keeps the peak."""

    def __init__(self, server: ApiServer) -> None:
        super().__init__(daemon=True)
        self.server = server
        self.baseline = server.rss_mb()
        self.peak = self.baseline
        self._done = threading.Event()

    def run(self) -> None:
        while not self._done.is_set():
            self.peak = max(self.peak, self.server.rss_mb())
            time.sleep(0.02)

    def stop(self) -> float:
        self._done.set()
        self.join()
        return self.peak - self.baseline


def _counts(url: str) -> tuple[int, int, int]:
    engine = make_engine(url)
    try:
        with make_sessionmaker(engine)() as session:
            jobs = session.scalar(select(func.count()).select_from(Job)) or 0
            uploads = session.scalar(select(func.count()).select_from(Upload)) or 0
            chunks = session.scalar(select(func.count()).select_from(UploadChunk)) or 0
            return jobs, uploads, chunks
    finally:
        engine.dispose()


def test_a_20k_message_upload_is_summarized_to_a_webhook_with_valid_citations(
    api: tuple[ApiServer, dict[str, str]], env: dict[str, str], tmp_path: Path
) -> None:
    server, headers = api
    upload = build_message_array(tmp_path / "20k.json", 20_000)
    sent = {}
    for line in upload.read_text().splitlines()[1:-1]:
        message = json.loads(line.lstrip(","))
        sent[message["id"]] = message
    assert len(sent) == 20_000

    engine = make_engine(env["DATABASE_URL"])
    factory = make_sessionmaker(engine)
    with WebhookReceiver() as receiver, workers(env, tmp_path, 1):
        endpoint, secret = add_endpoint(
            factory, SecretBox([KEY]), f"{receiver.url}/hook", guild_id=GUILD
        )
        receiver.secrets = [secret]
        sampler = _RssSampler(server)
        sampler.start()
        try:
            response = httpx.post(
                f"{server.url}/v1/jobs/upload",
                params={"destination": f"webhook:{endpoint}", "format": "structured"},
                headers={**headers, "Content-Type": "application/json"},
                content=_stream(upload),
                timeout=120,
            )
        finally:
            growth = sampler.stop()
        assert response.status_code == 202, response.text
        job = response.json()
        assert job["status"] == "queued" and job["channel_id"] is None
        print(f"API process RSS growth while receiving 20k messages: {growth:.1f} MiB")
        assert growth < 50, f"the API process grew by {growth:.1f} MiB while receiving"

        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and not receiver.effects:
            time.sleep(0.5)
        assert receiver.effects, "no webhook delivery arrived"
    engine.dispose()

    bad = [r for r in receiver.requests if not r.verified]
    assert bad == []
    event = next(iter(receiver.effects.values()))
    assert event["type"] == "summary.completed" and event["data"]["job_id"] == job["id"]
    # A 20k summary passes the payload cap, so the event may leave it out: read it by id.
    stored = httpx.get(
        f"{server.url}/v1/summaries/{event['data']['summary_id']}", headers=headers, timeout=10
    )
    assert stored.status_code == 200, stored.text
    summary = stored.json()["summary"]
    assert summary["coverage"]["messages_total"] == 20_000
    assert summary["coverage"]["channel_name"] == "irc-dev support chat"
    citations = summary["citations"]
    cited = _cited_ids(summary)
    assert len(cited) >= 3
    assert cited <= set(citations)  # every cited id has its citation ...
    for message_id, citation in citations.items():  # ... and every citation is a sent message
        original = sent[message_id]
        assert citation["message_id"] == message_id
        assert citation["author"] == original["author"]["name"]
        assert citation["jump_url"] is None  # no Discord ids: no links that lead nowhere

    status = httpx.get(f"{server.url}/v1/jobs/{job['id']}", headers=headers, timeout=10).json()
    assert status["status"] == "completed" and status["message_count"] == 20_000


def _cited_ids(node: Any) -> set[str]:
    found: set[str] = set()
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "message_ids" and isinstance(value, list):
                found |= {str(v) for v in value}
            elif key != "citations":
                found |= _cited_ids(value)
    elif isinstance(node, list):
        for item in node:
            found |= _cited_ids(item)
    return found


def test_a_malformed_message_12345_is_refused_naming_it(
    api: tuple[ApiServer, dict[str, str]], env: dict[str, str], tmp_path: Path
) -> None:
    server, headers = api

    def drop_author(index: int, message: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in message.items() if k != "author"} if index == 12_345 else message

    upload = build_message_array(tmp_path / "broken.json", 20_000, edit=drop_author)
    before = _counts(env["DATABASE_URL"])
    with upload.open("rb") as body:
        response = httpx.post(
            f"{server.url}/v1/jobs/upload",
            headers=headers,
            files={"file": ("broken.json", body, "application/json")},
            timeout=120,
        )
    assert response.status_code == 422, response.text
    problem = response.json()
    assert "message at index 12345" in problem["detail"]
    assert 'has no "author"' in problem["detail"]
    assert problem["errors"][0]["pointer"] == "/messages/12345"
    assert _counts(env["DATABASE_URL"]) == before  # no job, and the upload was deleted


def test_an_upload_that_repeats_a_message_id_is_refused_naming_it(
    api: tuple[ApiServer, dict[str, str]], env: dict[str, str], tmp_path: Path
) -> None:
    server, headers = api
    first: list[str] = []

    def repeat_first(index: int, message: dict[str, Any]) -> dict[str, Any]:
        if index == 0:
            first.append(message["id"])
        return {**message, "id": first[0]} if index == 30 else message

    upload = build_message_array(tmp_path / "twice.json", 50, edit=repeat_first)
    before = _counts(env["DATABASE_URL"])
    with upload.open("rb") as body:
        response = httpx.post(
            f"{server.url}/v1/jobs/upload",
            headers=headers,
            files={"file": ("twice.json", body, "application/json")},
            timeout=120,
        )
    assert response.status_code == 422, response.text
    problem = response.json()
    assert f"message at index 30 (id {first[0]}) repeats the id" in problem["detail"]
    assert problem["errors"][0]["pointer"] == "/messages/30"
    assert _counts(env["DATABASE_URL"]) == before


def test_the_same_upload_twice_under_one_idempotency_key_is_one_job(
    api: tuple[ApiServer, dict[str, str]], env: dict[str, str], tmp_path: Path
) -> None:
    server, headers = api
    export = build_large_export(tmp_path / "export.json", 300)
    key = {"Idempotency-Key": uuid.uuid4().hex}
    jobs_before, uploads_before, _ = _counts(env["DATABASE_URL"])
    answers = []
    content = export.read_bytes()
    for _ in range(2):
        # A multipart form: each request gets a different boundary from the client.
        answers.append(
            httpx.post(
                f"{server.url}/v1/jobs/upload",
                headers={**headers, **key},
                files={"file": ("export.json", content, "application/json")},
                timeout=60,
            )
        )
    assert [a.status_code for a in answers] == [202, 202], answers[1].text
    assert answers[0].json()["id"] == answers[1].json()["id"]
    assert answers[1].headers.get("Idempotent-Replayed") == "true"
    jobs, uploads, _ = _counts(env["DATABASE_URL"])
    assert (jobs - jobs_before, uploads - uploads_before) == (1, 1)

    other = httpx.post(
        f"{server.url}/v1/jobs/upload",
        params={"format": "technical"},
        headers={**headers, **key},
        files={"file": ("export.json", content, "application/json")},
        timeout=60,
    )
    assert other.status_code == 422 and "Idempotency-Key" in other.json()["detail"]


def test_the_cli_summarizes_an_export_on_a_remote_deployment(
    api: tuple[ApiServer, dict[str, str]], env: dict[str, str], tmp_path: Path
) -> None:
    server, headers = api
    export = build_large_export(tmp_path / "export.json", 500, seed=3)
    token = headers["Authorization"].removeprefix("Bearer ")
    # The command line of another machine: no database, no Redis, only the API.
    remote_env = {
        name: value
        for name, value in env.items()
        if name not in ("DATABASE_URL", "REDIS_URL", "SECRET_KEYS")
    }
    output = tmp_path / "summary.md"
    remote = ("--api", server.url, "--key", token)
    with workers(env, tmp_path, 1):
        result = cli("summarize", str(export), *remote, "--json", env=remote_env)
        text = cli("summarize", str(export), *remote, "--output", str(output), env=remote_env)
    assert result.returncode == 0, result.stderr
    document = json.loads(result.stdout)
    assert document["summary"]["coverage"]["messages_total"] == 500
    citations = document["summary"]["citations"]
    assert citations and all(
        c["jump_url"].endswith(f"/{c['message_id']}") for c in citations.values()
    )  # a Discord export: its citations link to Discord
    assert text.returncode == 0, text.stderr
    assert text.stdout.startswith("Summary of #ubuntu-help-archive")
    assert output.read_text().startswith("# Summary of #ubuntu-help-archive")

    refused = cli("summarize", str(export), "--api", server.url, "--key", "sb_x_y", env=remote_env)
    assert refused.returncode == 2 and "401" in refused.stderr
