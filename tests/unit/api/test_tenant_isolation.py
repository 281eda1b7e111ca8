"""Every /v1 endpoint with a key of another guild (404), and with missing, invalid, expired and
revoked keys (401) and keys without the scope (403)."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select

from schema.models.jobs import Job, Summary
from schema.models.schedules import Schedule
from schema.models.tenancy import ApiKey, WebhookEndpoint
from schema.models.uploads import Upload
from shared.apikeys import revoke_api_key
from tests.unit.api.conftest import Api, insert_summary

pytestmark = pytest.mark.integration

MEMBER = ("333333333333333333", "carol")


@dataclass
class World:
    """Resources of guild A, made with guild A's admin key."""

    api: Api
    admin: str
    job: str
    summary: str
    schedule: str
    endpoint: str


@pytest.fixture
def world(api: Api) -> World:
    admin = api.key(("admin",))
    job = api.client.post("/v1/jobs", headers=api.auth(admin), json={"channel_id": api.channel})
    endpoint = api.client.post(
        "/v1/webhook-endpoints", headers=api.auth(admin), json={"url": "https://example.com/a"}
    )
    schedule = api.client.post(
        "/v1/schedules",
        headers=api.auth(admin),
        json={
            "channel_id": api.channel,
            "schedule": "daily 09:00 Europe/Berlin",
            "destination": {"kind": "channel", "channel_id": api.channel},
        },
    )
    assert job.status_code == 202, job.text
    assert endpoint.status_code == 201, endpoint.text
    assert schedule.status_code == 201, schedule.text
    _job, summary = insert_summary(api.session_factory, api.guild, member=MEMBER)
    return World(
        api=api,
        admin=admin,
        job=job.json()["id"],
        summary=str(summary),
        schedule=schedule.json()["id"],
        endpoint=endpoint.json()["id"],
    )


# (method, path template, body, scopes that may call it)
ENDPOINTS: list[tuple[str, str, Any, set[str]]] = [
    ("POST", "/v1/jobs", {"channel_id": "OWN_CHANNEL"}, {"jobs:write"}),
    ("GET", "/v1/jobs/{job}", None, {"jobs:write", "summaries:read"}),
    ("DELETE", "/v1/jobs/{job}", None, {"jobs:write"}),
    ("GET", "/v1/summaries/{summary}", None, {"summaries:read"}),
    (
        "POST",
        "/v1/schedules",
        {
            "channel_id": "OWN_CHANNEL",
            "schedule": "weekly mon 08:00",
            "destination": {"kind": "channel", "channel_id": "OWN_CHANNEL"},
        },
        set(),
    ),
    ("GET", "/v1/schedules", None, set()),
    ("GET", "/v1/schedules/{schedule}", None, set()),
    ("PATCH", "/v1/schedules/{schedule}", {"enabled": False}, set()),
    ("DELETE", "/v1/schedules/{schedule}", None, set()),
    ("POST", "/v1/webhook-endpoints", {"url": "https://example.com/b"}, set()),
    ("GET", "/v1/webhook-endpoints", None, set()),
    ("GET", "/v1/webhook-endpoints/{endpoint}", None, set()),
    ("PATCH", "/v1/webhook-endpoints/{endpoint}", {"enabled": False}, set()),
    ("POST", "/v1/webhook-endpoints/{endpoint}/rotate-secret", None, set()),
    ("DELETE", "/v1/webhook-endpoints/{endpoint}", None, set()),
    ("DELETE", "/v1/users/{user}/data", None, set()),
]
IDS = [f"{m} {p}" for m, p, _b, _s in ENDPOINTS]


def _call(
    world: World, method: str, template: str, body: Any, token: str | None, *, foreign: bool = False
) -> Any:
    """``OWN_CHANNEL`` in a body is a channel of the caller's guild (B when ``foreign``)."""
    own = world.api.other_channel if foreign else world.api.channel
    if body is not None:
        body = json.loads(json.dumps(body).replace("OWN_CHANNEL", own))
    path = template.format(
        job=world.job,
        summary=world.summary,
        schedule=world.schedule,
        endpoint=world.endpoint,
        user=MEMBER[0],
    )
    headers = world.api.auth(token) if token else {}
    return world.api.client.request(method, path, headers=headers, json=body)


def _snapshot(world: World) -> dict[str, Any]:
    """Everything of guild A the foreign calls could have changed."""
    with world.api.session_factory() as session:
        job = session.get(Job, uuid.UUID(world.job))
        summary = session.get(Summary, uuid.UUID(world.summary))
        schedule = session.get(Schedule, uuid.UUID(world.schedule))
        endpoint = session.get(WebhookEndpoint, uuid.UUID(world.endpoint))
        assert job and summary and schedule and endpoint
        return {
            "job": (job.status, job.error),
            "summary": summary.content,
            "schedule": (schedule.enabled, schedule.next_run_at, schedule.spec),
            "endpoint": (endpoint.enabled, endpoint.secret_encrypted, endpoint.url),
            "schedules": session.scalars(
                select(Schedule.id).where(Schedule.guild_id == world.api.guild)
            ).all(),
            "endpoints": session.scalars(
                select(WebhookEndpoint.id).where(WebhookEndpoint.guild_id == world.api.guild)
            ).all(),
        }


@pytest.mark.parametrize(("method", "template", "body", "_scopes"), ENDPOINTS, ids=IDS)
def test_key_of_another_guild_never_reaches_guild_a(
    world: World, method: str, template: str, body: Any, _scopes: set[str]
) -> None:
    api = world.api
    foreign = api.key(("admin",), guild=api.other_guild)
    before = _snapshot(world)
    response = _call(world, method, template, body, foreign, foreign=True)
    if "{" in template and "{user}" not in template:
        # A resource of guild A: not found, exactly like one that does not exist.
        assert response.status_code == 404, response.text
        assert response.headers["content-type"] == "application/problem+json"
        assert response.json()["detail"].endswith("in this server")
    elif method == "GET":
        # A listing shows guild B's items only (none), never guild A's.
        assert response.status_code == 200
        assert response.json()["items"] == []
    elif template == "/v1/users/{user}/data":
        assert response.status_code == 200
        assert response.json()["guild_id"] == api.other_guild
        assert response.json()["summaries_updated"] == 0
    else:
        # Creating works, but in guild B.
        assert response.status_code in (201, 202), response.text
        assert response.json().get("guild_id", api.other_guild) == api.other_guild
    assert _snapshot(world) == before


def test_body_references_to_guild_a_are_refused(world: World) -> None:
    api = world.api
    foreign = api.key(("admin",), guild=api.other_guild)
    job = api.client.post(
        "/v1/jobs",
        headers=api.auth(foreign),
        json={"guild_id": api.guild, "channel_id": api.channel},
    )
    assert job.status_code == 404
    for body in (
        {
            "channel_id": api.other_channel,
            "destinations": [{"kind": "webhook", "endpoint_id": world.endpoint}],
        },
    ):
        assert api.client.post("/v1/jobs", headers=api.auth(foreign), json=body).status_code == 404
    schedule = api.client.post(
        "/v1/schedules",
        headers=api.auth(foreign),
        json={
            "channel_id": api.other_channel,
            "schedule": "hourly",
            "destination": {"kind": "webhook", "endpoint_id": world.endpoint},
        },
    )
    assert schedule.status_code == 404
    assert f"no webhook endpoint {world.endpoint} in this server" in schedule.json()["detail"]
    fallback = api.client.post(
        "/v1/webhook-endpoints",
        headers=api.auth(foreign),
        json={
            "url": "https://example.com/c",
            "fallback": {"kind": "webhook", "endpoint_id": world.endpoint},
        },
    )
    assert fallback.status_code == 422


def _bad_tokens(world: World) -> dict[str, str | None]:
    api = world.api
    expired = api.key(("admin",), expires_in=timedelta(seconds=1))
    with api.session_factory() as session, session.begin():
        row = session.get(ApiKey, expired.split("_")[1])
        assert row is not None
        row.expires_at = datetime.now(UTC) - timedelta(minutes=1)
    revoked = api.key(("admin",))
    assert revoke_api_key(api.session_factory, revoked.split("_")[1], now=datetime.now(UTC))
    valid = api.key(("admin",))
    return {
        "missing": None,
        "garbage": "not-a-key",
        "unknown id": "sb_unknownkey1_" + "A" * 43,
        "wrong secret": valid[:-4] + ("AAAA" if not valid.endswith("AAAA") else "BBBB"),
        "expired": expired,
        "revoked": revoked,
    }


@pytest.mark.parametrize(("method", "template", "body", "_scopes"), ENDPOINTS, ids=IDS)
def test_missing_invalid_expired_and_revoked_keys_get_401(
    world: World, method: str, template: str, body: Any, _scopes: set[str]
) -> None:
    before = _snapshot(world)
    for label, token in _bad_tokens(world).items():
        response = _call(world, method, template, body, token)
        assert response.status_code == 401, (label, response.text)
        assert response.headers["content-type"] == "application/problem+json"
        assert response.headers["www-authenticate"].startswith("Bearer")
        problem = response.json()
        assert problem["type"].endswith("/unauthorized")
        if label in ("expired", "revoked"):
            assert label in problem["detail"] or "has expired" in problem["detail"]
        else:
            assert "API key" in problem["detail"]
    basic = world.api.client.request(
        method,
        template.format(
            job=world.job,
            summary=world.summary,
            schedule=world.schedule,
            endpoint=world.endpoint,
            user=MEMBER[0],
        ),
        headers={"Authorization": "Basic dXNlcjpwYXNz"},
        json=body,
    )
    assert basic.status_code == 401
    assert _snapshot(world) == before


@pytest.mark.parametrize(("method", "template", "body", "scopes"), ENDPOINTS, ids=IDS)
def test_keys_without_the_scope_get_403(
    world: World, method: str, template: str, body: Any, scopes: set[str]
) -> None:
    lacking = tuple(s for s in ("jobs:write", "summaries:read") if s not in scopes)
    if not lacking:
        # Every scope may read a job: each single-scope key gets it.
        for scope in ("jobs:write", "summaries:read"):
            response = _call(world, method, template, body, world.api.key((scope,)))
            assert response.status_code == 200, response.text
        return
    before = _snapshot(world)
    token = world.api.key(lacking)
    response = _call(world, method, template, body, token)
    assert response.status_code == 403, response.text
    problem = response.json()
    assert problem["type"].endswith("/insufficient-scope")
    assert "scope" in problem["detail"]
    assert _snapshot(world) == before
    if scopes:
        allowed = world.api.key(tuple(sorted(scopes))[:1])
        assert _call(world, method, template, body, allowed).status_code < 400


def test_an_upload_may_not_deliver_into_another_guild_and_stores_nothing(world: World) -> None:
    api = world.api
    foreign = api.key(("jobs:write",), guild=api.other_guild)
    body = json.dumps(
        [{"id": "m-1", "author": "ana", "time": "2026-03-01T09:00:00Z", "content": "hello"}]
    )
    before = _snapshot(world)
    published = list(api.enqueuer.sent)
    with api.session_factory() as session:
        uploads_before = session.scalars(select(Upload.id)).all()
        jobs_before = session.scalars(select(Job.id)).all()
    for destination in (f"channel:{api.channel}", f"webhook:{world.endpoint}"):
        response = api.client.post(
            "/v1/jobs/upload",
            params={"destination": destination},
            headers={**api.auth(foreign), "Content-Type": "application/json"},
            content=body,
        )
        assert response.status_code == 404, response.text
    with api.session_factory() as session:
        assert session.scalars(select(Upload.id)).all() == uploads_before
        assert session.scalars(select(Job.id)).all() == jobs_before
    assert api.enqueuer.sent == published
    assert _snapshot(world) == before
