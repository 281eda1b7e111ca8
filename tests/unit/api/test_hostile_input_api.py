"""What an attacker or a careless client may send that the API must refuse cleanly: forged
list cursors, and other hostile input; every refusal is a problem document, never a 500."""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from producers.api.routes.summaries import preferred_type
from schema.models.uploads import CHUNK_BYTES, Upload
from shared.domain.messages import DISCORD_EPOCH_MS
from shared.uploads import UploadQuotaExceeded, UploadWriter
from tests.unit.api.conftest import Api, snowflake

pytestmark = pytest.mark.integration


def _cursor(value: Any) -> str:
    return base64.urlsafe_b64encode(json.dumps(value).encode()).decode().rstrip("=")


@pytest.mark.parametrize("path", ["/v1/schedules", "/v1/webhook-endpoints"])
@pytest.mark.parametrize(
    "cursor",
    [
        _cursor(["2026-01-01T00:00:00+00:00", 5]),
        _cursor(["2026-01-01T00:00:00+00:00", ["x"]]),
        _cursor(["0001-01-01T00:00:00+14:00", str(uuid.UUID(int=1))]),
        _cursor(["9999-12-31T23:59:59-14:00", str(uuid.UUID(int=1))]),
    ],
    ids=["id-number", "id-list", "before-year-1", "after-year-9999"],
)
def test_a_forged_cursor_is_422_not_500(
    make_api: Callable[..., Api], path: str, cursor: str
) -> None:
    api = make_api(raise_server_exceptions=False)
    response = api.client.get(path, headers=api.auth(api.key()), params={"cursor": cursor})
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert "cursor is not valid" in response.json()["detail"]


def test_an_upload_destination_id_above_the_snowflake_range_is_422(
    make_api: Callable[..., Api],
) -> None:
    # 19 digits match the id pattern, but Discord ids end at 2**63 - 1.
    api = make_api(raise_server_exceptions=False)
    response = api.client.post(
        "/v1/jobs/upload",
        params={"destination": "channel:9999999999999999999"},
        headers=api.auth(api.key(("jobs:write",))),
        json=[{"id": "1", "author": "ana", "time": "2026-03-01T09:00:00Z", "content": "hi"}],
    )
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == "application/problem+json"
    problem = response.json()
    assert problem["errors"][0]["location"] == "query"
    assert problem["errors"][0]["pointer"] == "/destination/0"
    assert "is not a Discord id" in problem["detail"]
    assert api.enqueuer.sent == []


@pytest.mark.parametrize("field", ["schedule", "timezone", "format", "destination", "enabled"])
def test_a_null_in_a_schedule_change_names_the_field_the_client_sent(api: Api, field: str) -> None:
    token = api.key()
    created = api.client.post(
        "/v1/schedules",
        headers=api.auth(token),
        json={
            "channel_id": api.channel,
            "schedule": "hourly",
            "destination": {"kind": "channel", "channel_id": api.channel},
        },
    )
    assert created.status_code == 201, created.text
    response = api.client.patch(
        f"/v1/schedules/{created.json()['id']}", headers=api.auth(token), json={field: None}
    )
    assert response.status_code == 422, response.text
    problem = response.json()
    assert problem["detail"].startswith(f"{field} cannot be null")
    assert problem["errors"] == [
        {"location": "body", "pointer": f"/{field}", "detail": problem["detail"]}
    ]


def test_a_null_in_an_endpoint_change_points_at_the_field(api: Api) -> None:
    token = api.key()
    created = api.client.post(
        "/v1/webhook-endpoints", headers=api.auth(token), json={"url": "https://example.com/h"}
    )
    assert created.status_code == 201, created.text
    response = api.client.patch(
        f"/v1/webhook-endpoints/{created.json()['id']}",
        headers=api.auth(token),
        json={"url": None},
    )
    assert response.status_code == 422, response.text
    assert response.json()["errors"][0]["pointer"] == "/url"


@pytest.mark.parametrize(
    ("text", "timezone"), [("hourly", "localtime"), ("hourly localtime", "UTC")]
)
def test_a_schedule_zone_must_be_an_iana_zone_not_the_servers_own(
    api: Api, text: str, timezone: str
) -> None:
    # "localtime" is a file next to the zones on many hosts, a link to the server's own
    # /etc/localtime: accepted, a schedule would fire by whatever zone the host is set to.
    response = api.client.post(
        "/v1/schedules",
        headers=api.auth(api.key()),
        json={
            "channel_id": api.channel,
            "schedule": text,
            "timezone": timezone,
            "destination": {"kind": "channel", "channel_id": api.channel},
        },
    )
    assert response.status_code == 422, response.text
    assert "localtime" in response.json()["detail"]


@pytest.mark.parametrize("path", ["/v1/jobs", "/v1/digests", "/v1/schedules"])
def test_a_key_sent_twice_in_one_object_is_a_400(api: Api, path: str) -> None:
    # Which of two values counts is up to each parser (RFC 8259 section 4); taking the last
    # silently drops the first, and a proxy that checked the first would be bypassed.
    window = '"window": {"hours": 1, "hours": 2}'
    body = f'{{"channel_id": "{api.other_channel}", {window}, "channel_id": "{api.channel}"}}'
    response = api.client.post(
        path,
        headers=api.auth(api.key()) | {"Content-Type": "application/json"},
        content=body,
    )
    assert response.status_code == 400, response.text
    assert response.headers["content-type"] == "application/problem+json"
    problem = response.json()
    assert problem["type"].endswith("/invalid-json")
    assert 'the key "hours" appears twice in one object' in problem["detail"]
    assert f"character {body.index('{', 1)}" in problem["detail"]
    assert api.enqueuer.sent == []


def test_uploads_streaming_at_once_cannot_pass_the_guild_quota_together(
    session_factory: sessionmaker[Session],
) -> None:
    # Each upload used to measure the guild's room once, when it started: uploads started
    # together (a burst of requests) each saw the whole room, and together stored N times it.
    guild = snowflake()
    quota = 3 * CHUNK_BYTES
    now = datetime.now(UTC)
    first = UploadWriter(session_factory, guild_id=guild, now=now, max_guild_bytes=quota)
    second = UploadWriter(session_factory, guild_id=guild, now=now, max_guild_bytes=quota)
    first.write(b"[" + b" " * (2 * CHUNK_BYTES - 1))
    second.write(b"[" + b" " * (CHUNK_BYTES - 1))
    with pytest.raises(UploadQuotaExceeded):
        second.write(b" " * CHUNK_BYTES)
    with session_factory() as session:
        stored = session.scalar(select(func.sum(Upload.size)).where(Upload.guild_id == guild))
    assert stored is not None and stored <= quota


def test_a_window_after_a_message_id_from_the_future_is_refused_like_a_future_time(
    api: Api,
) -> None:
    # An id is its own time: one minted a day from now cannot name a message yet, and the
    # same window given as a time is refused.
    tomorrow = datetime.now(UTC) + timedelta(days=1)
    future_id = str((int(tomorrow.timestamp() * 1000) - DISCORD_EPOCH_MS) << 22)
    token = api.key(("jobs:write",))
    answers = [
        api.client.post(
            "/v1/jobs",
            headers=api.auth(token),
            json={"channel_id": api.channel, "window": window},
        )
        for window in ({"after": tomorrow.isoformat()}, {"after_message_id": future_id})
    ]
    for response in answers:
        assert response.status_code == 422, response.text
        assert "in the future" in response.json()["detail"]
    assert api.enqueuer.sent == []


def _message(**fields: Any) -> dict[str, Any]:
    return {"id": "m1", "author": "ana", "time": "2026-03-01T09:00:00Z", "content": "hi"} | fields


@pytest.mark.parametrize(
    "body",
    [
        [_message(id="m\u00001")],
        [_message(author={"id": "u\u00007", "name": "ana"})],
        [_message(author="an\u0000a")],
        [_message(), _message(id="m2", reply_to="m\u00001")],
        {"conversation": {"channel_id": "c\u00001"}, "messages": [_message()]},
        {"conversation": {"guild_id": "g\u00001"}, "messages": [_message()]},
    ],
    ids=["message-id", "author-id", "author-as-text", "reply-to", "channel-id", "guild-id"],
)
def test_an_upload_with_a_control_character_in_an_id_is_refused_at_the_door(
    api: Api, body: Any
) -> None:
    # Ids are stored as they come (names and text are cleaned, ids are not), and PostgreSQL
    # refuses a NUL in text or JSON: accepted here, the job failed later in a worker.
    response = api.client.post(
        "/v1/jobs/upload", headers=api.auth(api.key(("jobs:write",))), json=body
    )
    assert response.status_code == 422, response.text
    assert "control character" in response.json()["detail"]
    assert api.enqueuer.sent == []


def test_an_upload_with_a_number_too_large_to_read_does_not_call_the_json_malformed(
    api: Api,
) -> None:
    # 10**20 is valid JSON; the streaming reader only holds 64-bit integers.
    body = json.dumps([_message()])[:-2] + ', "reactions": 100000000000000000000}]'
    response = api.client.post(
        "/v1/jobs/upload",
        headers=api.auth(api.key(("jobs:write",))) | {"Content-Type": "application/json"},
        content=body,
    )
    assert response.status_code == 422, response.text
    detail = response.json()["detail"]
    assert "malformed" not in detail and "not valid JSON" not in detail
    assert "too large" in detail
    assert "at line 1, column" in detail


def test_a_route_without_a_body_still_ignores_one(api: Api) -> None:
    # Only a route that reads a body decodes it: a GET with a stray body answers as before.
    response = api.client.request(
        "GET",
        "/v1/schedules",
        headers=api.auth(api.key()) | {"Content-Type": "application/json"},
        content='{"a": 1, "a": 2}',
    )
    assert response.status_code == 200, response.text


def test_the_most_specific_accept_range_decides_a_summarys_type() -> None:
    # RFC 9110 section 12.5.1: application/*;q=0 refuses JSON even when */* accepts anything.
    assert preferred_type("application/*;q=0, */*") == "text/markdown"
    assert preferred_type("text/*;q=0, */*") == "application/json"
    assert preferred_type("application/*;q=0.1, */*;q=0.9") == "text/markdown"
    assert preferred_type("application/*;q=0, text/*;q=0, */*") is None
    assert preferred_type("application/json;q=0, application/problem+json") is None


def test_every_admitted_response_tells_the_key_its_rate_limit(api: Api) -> None:
    # 60 a minute: a burst of 10, one more each second.  A client paces itself by these
    # headers instead of learning the limit from a 429.
    token = api.key(("admin",), rate_limit_per_minute=60)
    answers = [
        api.client.get("/v1/schedules", headers=api.auth(token)),
        api.client.post("/v1/jobs", headers=api.auth(token), json={"channel_id": api.channel}),
        api.client.get(f"/v1/jobs/{uuid.UUID(int=7)}", headers=api.auth(token)),
    ]
    assert [r.status_code for r in answers] == [200, 202, 404]
    remaining = [int(r.headers["ratelimit-remaining"]) for r in answers]
    assert remaining == [9, 8, 7]
    for response in answers:
        assert response.headers["ratelimit-limit"] == "60"
        assert 1 <= int(response.headers["ratelimit-reset"]) <= 4
    unknown = api.client.get("/v1/schedules", headers=api.auth(token + "x"))
    assert unknown.status_code == 401
    assert "ratelimit-limit" not in unknown.headers


def test_a_reused_key_never_answers_with_another_requests_job_when_redis_forgot(
    api: Api,
) -> None:
    # The job row keeps the key as a backstop for Redis; it must not hand the first
    # request's job to a different request that reuses the key.
    token = api.key(("jobs:write",))
    headers = api.auth(token) | {"Idempotency-Key": "reused"}
    other_channel = api.discord.channel(api.guild)
    first = api.client.post("/v1/jobs", headers=headers, json={"channel_id": api.channel})
    assert first.status_code == 202, first.text
    api.redis.delete(api.app.state.resources.idempotency.record_key(token.split("_")[1], "reused"))
    second = api.client.post("/v1/jobs", headers=headers, json={"channel_id": other_channel})
    assert second.status_code in (202, 422), second.text
    if second.status_code == 202:
        assert second.json()["id"] != first.json()["id"]
        assert second.json()["channel_id"] == other_channel
