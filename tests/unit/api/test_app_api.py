"""The app factory, lifespan, health/readiness/metrics, OpenAPI, problem documents, and the CLI."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest
import redis
from fastapi.testclient import TestClient
from redis.backoff import NoBackoff
from redis.retry import Retry
from sqlalchemy.orm import Session, sessionmaker
from typer.testing import CliRunner

from producers.api.app import create_app
from producers.api.resources import ApiOptions
from producers.cli.api_commands import keys_app
from schema.models.tenancy import ApiKey
from shared.crypto import SecretBox, generate_key
from shared.db.engine import make_engine, make_sessionmaker
from shared.errors import ConfigError
from shared.settings import Settings, load_settings
from tests.fakes.enqueuer import RecordingEnqueuer
from tests.unit.api.conftest import Api

pytestmark = pytest.mark.integration


@pytest.mark.parametrize(
    "overrides",
    [
        {},
        {"database_url": "postgresql://u@h/db"},
        {"database_url": "sqlite:////tmp/x.db", "redis_url": "redis://127.0.0.1:6379/9"},
    ],
)
def test_embedded_mode_is_refused(overrides: dict[str, str]) -> None:
    with pytest.raises(ConfigError, match="the API needs REDIS_URL and a PostgreSQL DATABASE_URL"):
        create_app(load_settings(**overrides))


def test_redis_without_a_database_is_refused_by_the_settings() -> None:
    with pytest.raises(ConfigError, match="DATABASE_URL: not set while REDIS_URL is"):
        create_app(load_settings(redis_url="redis://127.0.0.1:6379/9"))


def test_healthz_readyz_metrics(api: Api) -> None:
    assert api.client.get("/healthz").json() == {"status": "ok"}
    ready = api.client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json() == {"status": "ready", "database": "ok", "redis": "ok"}
    api.client.get("/v1/jobs/00000000-0000-0000-0000-000000000001")
    metrics = api.client.get("/metrics")
    assert metrics.headers["content-type"].startswith("text/plain")
    text = metrics.text
    assert 'summarybot_api_requests_total{method="GET",route="/readyz",status="200"} 1.0' in text
    assert 'route="/v1/jobs/{job_id}",status="401"' in text
    assert 'summarybot_api_auth_failures_total{reason="missing"} 1.0' in text
    assert "summarybot_api_request_duration_seconds_bucket" in text
    assert "summary_requests_total" in text


def test_each_app_has_its_own_registry(make_api: Callable[..., Api]) -> None:
    first, second = make_api(), make_api()
    first.client.get("/healthz")
    assert 'route="/healthz"' in first.client.get("/metrics").text
    assert 'route="/healthz"' not in second.client.get("/metrics").text


def test_readyz_reports_each_dependency_down(
    settings: Settings,
    session_factory: sessionmaker[Session],
    redis_client: redis.Redis[Any],
    box: SecretBox,
) -> None:
    dead_engine = make_engine(
        "postgresql+psycopg://postgres@127.0.0.1:1/none", connect_args={"connect_timeout": 1}
    )
    dead_redis: redis.Redis[Any] = redis.Redis(
        host="127.0.0.1", port=1, socket_connect_timeout=0.5, retry=Retry(NoBackoff(), 0)
    )
    cases = [
        (make_sessionmaker(dead_engine), redis_client, "unavailable", "ok"),
        (session_factory, dead_redis, "ok", "unavailable"),
    ]
    try:
        for factory, client, database, redis_state in cases:
            app = create_app(
                settings,
                session_factory=factory,
                redis=client,
                enqueuer=RecordingEnqueuer(),
                box=box,
                options=ApiOptions(readiness_timeout_seconds=1.5),
            )
            with TestClient(app) as test_client:
                response = test_client.get("/readyz")
            assert response.status_code == 503
            assert response.headers["content-type"] == "application/problem+json"
            assert response.headers["retry-after"] == "5"
            body = response.json()
            assert (body["database"], body["redis"]) == (database, redis_state)
            assert body["status"] == 503
            assert "did not answer" in body["detail"]
    finally:
        dead_engine.dispose()
        dead_redis.close()


def test_unreachable_redis_during_a_request_is_503(
    settings: Settings, session_factory: sessionmaker[Session], box: SecretBox
) -> None:
    dead_redis: redis.Redis[Any] = redis.Redis(
        host="127.0.0.1", port=1, socket_connect_timeout=0.5, retry=Retry(NoBackoff(), 0)
    )
    app = create_app(
        settings,
        session_factory=session_factory,
        redis=dead_redis,
        enqueuer=RecordingEnqueuer(),
        box=box,
    )
    from shared.apikeys import create_api_key

    _row, token = create_api_key(
        session_factory,
        guild_id="123456789012345678",
        scopes=["admin"],
        name="t",
        now=datetime.now(UTC),
    )
    with TestClient(app) as client:
        response = client.get("/v1/schedules", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 503
    assert response.headers["retry-after"] == "5"
    dead_redis.close()


def test_lifespan_builds_and_closes_its_own_resources(
    migrated_url: str, redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = load_settings(
        database_url=migrated_url, redis_url=redis_url, secret_keys=generate_key()
    )
    app = create_app(settings)
    with TestClient(app) as client:
        assert client.get("/readyz").status_code == 200
        resources = app.state.resources
        assert resources.core.enqueuer.__class__.__name__ == "CeleryEnqueuer"
    assert app.state.resources is None
    with TestClient(app, raise_server_exceptions=False) as client:
        app.state.resources = None
        starting = client.get("/v1/schedules", headers={"Authorization": "Bearer sb_x_y"})
        assert starting.status_code == 503


def test_openapi_documents_every_route_with_examples_and_problems(api: Api) -> None:
    doc = api.client.get("/openapi.json").json()
    assert doc["info"]["title"] == "Summary Bot NG API"
    assert doc["components"]["securitySchemes"]["ApiKey"]["scheme"] == "bearer"
    schemas = doc["components"]["schemas"]
    assert schemas["JobCreate"]["examples"][0]["window"] == {"hours": 24}
    for path, item in doc["paths"].items():
        for method, operation in item.items():
            for status, response in operation["responses"].items():
                if str(status).startswith("4"):
                    assert list(response["content"]) == ["application/problem+json"], (
                        path,
                        method,
                        status,
                    )
            if path.startswith("/v1"):
                assert {"401", "403", "429"} <= set(operation["responses"]), (path, method)


def test_unknown_paths_and_methods_are_problems(api: Api) -> None:
    missing = api.client.get("/v1/nothing")
    assert missing.status_code == 404
    assert missing.headers["content-type"] == "application/problem+json"
    assert missing.json()["type"] == "https://summarybot.dev/problems/not-found"
    wrong = api.client.put("/v1/jobs")
    assert wrong.status_code == 405
    assert wrong.json()["title"] == "Method Not Allowed"
    assert "allow" in wrong.headers


def test_keys_cli_create_list_revoke(
    migrated_url: str, session_factory: sessionmaker[Session]
) -> None:
    runner = CliRunner()
    env = {"DATABASE_URL": migrated_url, "SECRET_KEYS": generate_key()}
    created = runner.invoke(
        keys_app,
        [
            "create",
            "--guild",
            "123456789012345678",
            "--scope",
            "jobs:write",
            "--scope",
            "summaries:read",
            "--expires-in-days",
            "30",
            "--name",
            "ci",
            "--rate-limit",
            "120",
            "--allow-ip",
            "10.0.0.0/8",
            "--sign-requests",
        ],
        env=env,
    )
    assert created.exit_code == 0, created.output
    lines = dict(line.split(": ", 1) for line in created.output.splitlines() if ": " in line)
    token = lines["api key"].strip()
    key_id = lines["key id"].strip()
    assert token.startswith(f"sb_{key_id}_")
    assert lines["signing secret"].startswith("whsec_")
    assert "not shown again" in created.output
    with session_factory() as session:
        row = session.get(ApiKey, key_id)
        assert row is not None
        assert row.scopes == ["jobs:write", "summaries:read"]
        assert row.ip_allowlist == ["10.0.0.0/8"]
        assert row.rate_limit_per_minute == 120
        assert row.signing_secret_encrypted is not None
        assert token not in str(row.secret_hash)
        assert row.expires_at is not None

    listed = runner.invoke(keys_app, ["list", "--guild", "123456789012345678"], env=env)
    assert listed.exit_code == 0
    assert key_id in listed.output and "active" in listed.output
    assert token not in listed.output
    revoked = runner.invoke(keys_app, ["revoke", key_id], env=env)
    assert revoked.exit_code == 0 and f"revoked {key_id}" in revoked.output
    again = runner.invoke(keys_app, ["revoke", key_id], env=env)
    assert again.exit_code == 2
    assert "no active API key" in again.output
    relisted = runner.invoke(keys_app, ["list", "--guild", "123456789012345678"], env=env)
    assert "revoked" in relisted.output
    assert (
        runner.invoke(keys_app, ["list", "--guild", "9"], env=env).output.strip() == "no API keys"
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["create", "--guild", "abc", "--scope", "admin"], "is not a Discord id"),
        (["create", "--guild", "123456789012345678", "--scope", "root"], "root"),
        (
            ["create", "--guild", "123456789012345678", "--scope", "admin", "--allow-ip", "nope"],
            "not an IP",
        ),
        (["create", "--guild", "123456789012345678", "--scope", "admin", "--name", " "], "name"),
    ],
)
def test_keys_cli_rejects_bad_input(migrated_url: str, args: list[str], message: str) -> None:
    result = CliRunner().invoke(keys_app, args, env={"DATABASE_URL": migrated_url})
    assert result.exit_code == 2
    assert message in result.output


def test_keys_cli_reports_unreachable_database_and_missing_secret_keys() -> None:
    runner = CliRunner()
    down = runner.invoke(
        keys_app, ["list"], env={"DATABASE_URL": "postgresql://postgres@127.0.0.1:1/x"}
    )
    assert down.exit_code == 2
    assert "run `summarybot migrate`" in down.output
    no_keys = runner.invoke(
        keys_app,
        ["create", "--guild", "123456789012345678", "--scope", "admin", "--sign-requests"],
        env={
            "DATABASE_URL": "postgresql://postgres@127.0.0.1:1/x",
            "REDIS_URL": "redis://127.0.0.1:6379/9",
        },
    )
    assert no_keys.exit_code == 2
    assert "SECRET_KEYS" in no_keys.output
    bad_settings = runner.invoke(keys_app, ["list"], env={"DATABASE_URL": "mysql://x"})
    assert bad_settings.exit_code == 2
    assert "DATABASE_URL" in bad_settings.output


def test_run_api_refuses_embedded_mode_with_one_line() -> None:
    import typer

    from producers.cli.api_commands import run_api

    app = typer.Typer()

    @app.command()
    def api() -> None:
        run_api(load_settings())

    result = CliRunner().invoke(app, [])
    assert result.exit_code == 2
    assert result.output.count("\n") == 1
    assert result.output.startswith("summarybot: the API needs REDIS_URL")
