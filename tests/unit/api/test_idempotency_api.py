"""Idempotency-Key on POST: replay, 422 on a different body, 409 while in flight, 24 h, per key."""

from __future__ import annotations

import json
import uuid
from datetime import timedelta

import pytest
from sqlalchemy import func, select

from schema.models.jobs import Job
from shared.idempotency import fingerprint
from tests.unit.api.conftest import Api

pytestmark = pytest.mark.integration


def _jobs_of(api: Api) -> int:
    with api.session_factory() as session:
        return int(
            session.scalar(select(func.count()).select_from(Job).where(Job.guild_id == api.guild))
            or 0
        )


def test_same_key_and_body_replays_the_first_response(api: Api) -> None:
    token = api.key(("jobs:write",))
    body = {"channel_id": api.channel, "window": {"hours": 3}}
    headers = api.auth(token) | {"Idempotency-Key": "order-42"}
    first = api.client.post("/v1/jobs", headers=headers, json=body)
    assert first.status_code == 202
    assert "idempotent-replayed" not in first.headers
    # The same document with other key order and whitespace is the same request.
    same = json.dumps(dict(reversed(list(body.items()))), indent=2)
    second = api.client.post(
        "/v1/jobs", headers=headers | {"Content-Type": "application/json"}, content=same
    )
    assert second.status_code == 202
    assert second.headers["idempotent-replayed"] == "true"
    assert second.content == first.content
    assert second.headers["location"] == first.headers["location"]
    assert _jobs_of(api) == 1
    assert len(api.enqueuer.sent) == 1
    ttl = api.redis.pttl(
        api.app.state.resources.idempotency.record_key(token.split("_")[1], "order-42")
    )
    assert 23 * 3600 * 1000 < ttl <= 24 * 3600 * 1000


def test_same_key_with_another_body_or_path_is_422(api: Api) -> None:
    token = api.key(("admin",))
    headers = api.auth(token) | {"Idempotency-Key": "k-1"}
    first = api.client.post("/v1/jobs", headers=headers, json={"channel_id": api.channel})
    assert first.status_code == 202
    other_channel = api.discord.channel(api.guild)
    other = api.client.post("/v1/jobs", headers=headers, json={"channel_id": other_channel})
    assert other.status_code == 422
    assert other.json()["type"].endswith("/idempotency-key-reused")
    elsewhere = api.client.post(
        "/v1/webhook-endpoints", headers=headers, json={"url": "https://example.com/x"}
    )
    assert elsewhere.status_code == 422
    assert _jobs_of(api) == 1


def test_in_flight_key_is_409(api: Api) -> None:
    token = api.key(("jobs:write",))
    body = {"channel_id": api.channel}
    resources = api.app.state.resources
    raw = json.dumps(body).encode()
    # Another replica is still running this request: the key is claimed, not completed.
    claim = resources.idempotency.begin(
        token.split("_")[1], "busy", fingerprint("POST", "/v1/jobs", raw)
    )
    response = api.client.post(
        "/v1/jobs",
        headers=api.auth(token) | {"Idempotency-Key": "busy", "Content-Type": "application/json"},
        content=raw,
    )
    assert response.status_code == 409
    assert response.headers["retry-after"] == "1"
    assert response.json()["type"].endswith("/idempotency-key-in-use")
    assert _jobs_of(api) == 0
    resources.idempotency.release(claim)
    retried = api.client.post(
        "/v1/jobs",
        headers=api.auth(token) | {"Idempotency-Key": "busy", "Content-Type": "application/json"},
        content=raw,
    )
    assert retried.status_code == 202


def test_failed_requests_are_not_stored(api: Api) -> None:
    token = api.key(("jobs:write",))
    headers = api.auth(token) | {"Idempotency-Key": "retry-me"}
    unknown = "5f0c8e1e-8a7e-4d0b-9a51-0f6a1c2b3d4e"
    refused = api.client.post(
        "/v1/jobs",
        headers=headers,
        json={
            "channel_id": api.channel,
            "destinations": [{"kind": "webhook", "endpoint_id": unknown}],
        },
    )
    assert refused.status_code == 404
    invalid = api.client.post("/v1/jobs", headers=headers, json={"channel_id": "nope"})
    assert invalid.status_code == 422
    # Neither failure holds the key: a corrected request with it goes through.
    fixed = api.client.post("/v1/jobs", headers=headers, json={"channel_id": api.channel})
    assert fixed.status_code == 202
    assert "idempotent-replayed" not in fixed.headers


def test_keys_are_scoped_per_api_key(api: Api) -> None:
    first, second = api.key(("jobs:write",)), api.key(("jobs:write",))
    body = {"channel_id": api.channel}
    a = api.client.post(
        "/v1/jobs", headers=api.auth(first) | {"Idempotency-Key": "shared"}, json=body
    )
    b = api.client.post(
        "/v1/jobs", headers=api.auth(second) | {"Idempotency-Key": "shared"}, json=body
    )
    assert a.status_code == b.status_code == 202
    assert a.json()["id"] != b.json()["id"]
    assert _jobs_of(api) == 2


def test_job_row_is_the_durable_backstop_when_redis_forgets(api: Api) -> None:
    token = api.key(("jobs:write",))
    headers = api.auth(token) | {"Idempotency-Key": "durable"}
    body = {"channel_id": api.channel}
    first = api.client.post("/v1/jobs", headers=headers, json=body)
    api.redis.delete(api.app.state.resources.idempotency.record_key(token.split("_")[1], "durable"))
    second = api.client.post("/v1/jobs", headers=headers, json=body)
    assert second.status_code == 202
    assert second.json()["id"] == first.json()["id"]
    assert _jobs_of(api) == 1
    assert len(api.enqueuer.sent) == 1


def test_a_key_reused_after_its_24_hours_makes_a_new_job(api: Api) -> None:
    token = api.key(("jobs:write",))
    headers = api.auth(token) | {"Idempotency-Key": "daily-report"}
    body = {"channel_id": api.channel}
    first = api.client.post("/v1/jobs", headers=headers, json=body)
    assert first.status_code == 202
    # A day later Redis has let the record go, and the job is older than the key's life.
    api.redis.delete(
        api.app.state.resources.idempotency.record_key(token.split("_")[1], "daily-report")
    )
    with api.session_factory() as session, session.begin():
        job = session.get(Job, uuid.UUID(first.json()["id"]))
        assert job is not None
        job.created_at -= timedelta(hours=24, seconds=1)
    again = api.client.post("/v1/jobs", headers=headers, json=body)
    assert again.status_code == 202
    assert "idempotent-replayed" not in again.headers
    assert again.json()["id"] != first.json()["id"]
    assert _jobs_of(api) == 2
    assert [args for _name, args in api.enqueuer.sent] == [
        (first.json()["id"],),
        (again.json()["id"],),
    ]
    # The new job holds the key now: within its day a retry answers it.
    replay = api.client.post("/v1/jobs", headers=headers, json=body)
    assert replay.json()["id"] == again.json()["id"]
    assert _jobs_of(api) == 2


@pytest.mark.parametrize("value", ["", "x" * 256, "has space", "tab\there", "ünï"])
def test_malformed_keys_are_400(api: Api, value: str) -> None:
    token = api.key(("jobs:write",))
    response = api.client.post(
        "/v1/jobs",
        headers={**api.auth(token), "Idempotency-Key": value.encode()},  # type: ignore[dict-item]
        json={"channel_id": api.channel},
    )
    assert response.status_code == 400
    assert response.json()["type"].endswith("/invalid-idempotency-key")
    assert _jobs_of(api) == 0


def test_secret_responses_replay_but_are_stored_encrypted(api: Api) -> None:
    token = api.key(("admin",))
    headers = api.auth(token) | {"Idempotency-Key": "endpoint-1"}
    body = {"url": "https://example.com/hook"}
    first = api.client.post("/v1/webhook-endpoints", headers=headers, json=body)
    second = api.client.post("/v1/webhook-endpoints", headers=headers, json=body)
    assert first.status_code == second.status_code == 201
    secret = first.json()["secret"]
    assert second.json()["secret"] == secret
    assert second.headers["idempotent-replayed"] == "true"
    assert "x-summarybot-sealed" not in second.headers
    record = api.app.state.resources.idempotency.record_key(token.split("_")[1], "endpoint-1")
    stored = api.redis.hget(record, "body")
    assert stored is not None
    assert secret.encode() not in stored
