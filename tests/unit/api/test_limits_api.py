"""Rate limit (429 + Retry-After), 64 KiB bodies (413, counted while streaming), IP allowlists,
signed requests (Standard Webhooks) and last-used bookkeeping."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from producers.api.resources import ApiOptions
from schema.models.tenancy import ApiKey
from schema.models.uploads import Upload
from shared.signing import generate_secret, sign, sign_request
from tests.unit.api.conftest import Api

pytestmark = pytest.mark.integration


def test_rate_limit_answers_429_with_retry_after(api: Api) -> None:
    # 6 a minute: a burst of 1, then one request every 10 s.
    token = api.key(("summaries:read",), rate_limit_per_minute=6)
    path = "/v1/schedules"
    first = api.client.get("/v1/jobs/00000000-0000-0000-0000-000000000001", headers=api.auth(token))
    assert first.status_code == 404
    second = api.client.get(
        "/v1/jobs/00000000-0000-0000-0000-000000000001", headers=api.auth(token)
    )
    assert second.status_code == 429
    assert second.headers["content-type"] == "application/problem+json"
    assert 9 <= int(second.headers["retry-after"]) <= 10
    assert second.headers["ratelimit-limit"] == "6"
    assert second.json()["type"].endswith("/rate-limited")
    # Another key is not affected.
    other = api.key(("admin",))
    assert api.client.get(path, headers=api.auth(other)).status_code == 200
    metrics = api.client.get("/metrics").text
    assert "summarybot_api_rate_limited_total 1.0" in metrics


def test_default_rate_limit_applies_without_a_per_key_one(
    make_api: Callable[..., Api], prefix: str
) -> None:
    api = make_api(options=ApiOptions(redis_prefix=prefix, default_rate_limit_per_minute=12))
    token = api.key(("admin",))
    statuses = [
        api.client.get("/v1/schedules", headers=api.auth(token)).status_code for _ in range(4)
    ]
    # Burst of ceil(12 / 6) = 2.
    assert statuses == [200, 200, 429, 429]


def test_bodies_over_64_kib_are_413(api: Api) -> None:
    token = api.key(("jobs:write",))
    padding = "x" * (64 * 1024)
    big = json.dumps({"channel_id": api.channel, "language": padding}).encode()
    declared = api.client.post(
        "/v1/jobs", headers=api.auth(token) | {"Content-Type": "application/json"}, content=big
    )
    assert declared.status_code == 413
    assert declared.headers["content-type"] == "application/problem+json"
    assert declared.json()["title"] == "Content Too Large"

    def chunks() -> Iterator[bytes]:
        for start in range(0, len(big), 4096):
            yield big[start : start + 4096]

    streamed = api.client.post(
        "/v1/jobs", headers=api.auth(token) | {"Content-Type": "application/json"}, content=chunks()
    )
    assert streamed.status_code == 413
    # Right at the limit is fine (and then invalid for other reasons).
    exact = b'{"channel_id":"1","x":"' + b"y" * (64 * 1024 - 27) + b'"}'
    assert len(exact) <= 64 * 1024
    at_limit = api.client.post(
        "/v1/jobs", headers=api.auth(token) | {"Content-Type": "application/json"}, content=exact
    )
    assert at_limit.status_code == 422
    assert api.enqueuer.sent == []
    assert "summarybot_api_body_too_large_total 2.0" in api.client.get("/metrics").text


def test_ip_allowlist(make_api: Callable[..., Api]) -> None:
    outside = make_api(client=("198.51.100.7", 5000))
    inside = make_api(client=("203.0.113.9", 5000))
    token = outside.key(("admin",), ip_allowlist=["203.0.113.0/24", "2001:db8::/32"])
    refused = outside.client.get("/v1/schedules", headers=outside.auth(token))
    assert refused.status_code == 403
    assert refused.json()["type"].endswith("/ip-not-allowed")
    assert "198.51.100.7" in refused.json()["detail"]
    inside_guild_key = token  # the same key from an allowed address
    assert (
        inside.client.get("/v1/schedules", headers=inside.auth(inside_guild_key)).status_code == 200
    )
    unparsable = make_api(client=("testclient", 5000))
    assert unparsable.client.get("/v1/schedules", headers=unparsable.auth(token)).status_code == 403


def _signed_key(api: Api) -> tuple[str, str]:
    secret = generate_secret()
    token = api.key(("jobs:write",), signing_secret_encrypted=api.box.encrypt(secret))
    return token, secret


def test_signed_requests(api: Api) -> None:
    token, secret = _signed_key(api)
    body = json.dumps({"channel_id": api.channel}).encode()
    now = int(time.time())

    def post(msg_id: str | None, timestamp: int | None, signature: str | None) -> int:
        headers = api.auth(token) | {"Content-Type": "application/json"}
        if msg_id is not None:
            headers["webhook-id"] = msg_id
        if timestamp is not None:
            headers["webhook-timestamp"] = str(timestamp)
        if signature is not None:
            headers["webhook-signature"] = signature
        response = api.client.post("/v1/jobs", headers=headers, content=body)
        if response.status_code == 401:
            assert response.headers["content-type"] == "application/problem+json"
        return response.status_code

    def signed(msg_id: str, at: int, content: bytes = body) -> str:
        return sign_request(msg_id, at, "POST", "/v1/jobs", content, [secret])

    good = signed("msg_1", now)
    assert post("msg_1", now, "v1,bm9wZQ== " + good) == 202
    assert post("msg_1", now, good) == 401  # replayed id
    assert post(None, None, None) == 401
    assert post("msg_2", now, None) == 401
    assert post("msg_3", now, signed("msg_3", now, body + b" ")) == 401
    # Past the 300 s tolerance by more than the seconds this test may take on a busy machine.
    assert post("msg_4", now - 320, signed("msg_4", now - 320)) == 401
    assert post("msg_5", now + 320, signed("msg_5", now + 320)) == 401
    assert post("msg.6", now, signed("msg_6", now)) == 401
    assert post("msg_7", now, "v2," + good[3:]) == 401
    # The body alone, as a webhook event is signed, is not a request signature.
    assert post("msg_9", now, sign("msg_9", now, body, [secret])) == 401
    assert post("msg_8", now - 200, signed("msg_8", now - 200)) == 202
    unsigned = api.key(("jobs:write",))
    plain = api.client.post(
        "/v1/jobs", headers=api.auth(unsigned) | {"Content-Type": "application/json"}, content=body
    )
    assert plain.status_code == 202


def test_a_request_signature_covers_method_path_and_query(api: Api) -> None:
    token, secret = _signed_key(api)
    now = int(time.time())
    job = api.client.post(
        "/v1/jobs",
        headers=api.auth(token)
        | {"Content-Type": "application/json"}
        | _signature(
            "j1", now, "POST", "/v1/jobs", json.dumps({"channel_id": api.channel}), secret
        ),
        content=json.dumps({"channel_id": api.channel}),
    )
    assert job.status_code == 202, job.text
    path = f"/v1/jobs/{job.json()['id']}"

    def call(method: str, target: str, signed_for: tuple[str, str], msg_id: str) -> int:
        headers = api.auth(token) | _signature(msg_id, now, *signed_for, "", secret)
        return api.client.request(method, target, headers=headers).status_code

    # Made for a read, offered on a cancel of the same path: refused, and the job is untouched.
    refused = call("DELETE", path, ("GET", path), "m1")
    assert refused == 401
    assert call("GET", path, ("GET", path), "m2") == 200
    assert call("GET", f"{path}?x=1", ("GET", path), "m3") == 401
    assert call("GET", f"{path}?x=1", ("GET", f"{path}?x=1"), "m4") == 200
    assert call("GET", "/v1/jobs/" + str(uuid.uuid4()), ("GET", path), "m5") == 401
    assert call("DELETE", path, ("DELETE", path), "m6") in {200, 202, 204}
    response = api.client.get(
        path, headers=api.auth(token) | _signature("m7", now, "GET", path, "", secret)
    )
    assert response.json()["status"] == "cancelled"


def _signature(
    msg_id: str, at: int, method: str, target: str, body: str, secret: str
) -> dict[str, str]:
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(at),
        "webhook-signature": sign_request(msg_id, at, method, target, body.encode(), [secret]),
    }


def test_unreadable_signing_secret_is_a_clear_500(make_api: Callable[..., Api]) -> None:
    api = make_api(raise_server_exceptions=False)
    token = api.key(("jobs:write",), signing_secret_encrypted="not-a-fernet-token")
    response = api.client.get(
        "/v1/jobs/00000000-0000-0000-0000-000000000001", headers=api.auth(token)
    )
    assert response.status_code == 500
    assert "re-issue the key" in response.json()["detail"]


def test_last_used_is_written_at_most_once_a_minute(api: Api) -> None:
    token = api.key(("admin",))
    key_id = token.split("_")[1]

    def last_used() -> datetime | None:
        with api.session_factory() as session:
            row = session.get(ApiKey, key_id)
            assert row is not None
            return row.last_used_at

    assert last_used() is None
    api.client.get("/v1/schedules", headers=api.auth(token))
    first = last_used()
    assert first is not None
    assert datetime.now(UTC) - first < timedelta(seconds=30)
    for _ in range(3):
        api.client.get("/v1/schedules", headers=api.auth(token))
    assert last_used() == first
    assert 0 < api.redis.ttl(f"{api.prefix}:used:{key_id}") <= 60


def test_verified_keys_are_cached_briefly_and_revocation_wins_after_that(
    make_api: Callable[..., Api], prefix: str
) -> None:
    from shared.apikeys import KeyCache, revoke_api_key

    now = [datetime.now(UTC)]
    seconds = [0.0]
    api = make_api(options=ApiOptions(redis_prefix=prefix, key_cache_seconds=0.3))
    api.app.state.resources.clock = lambda: now[0]
    api.app.state.resources.key_cache = KeyCache(0.3, clock=lambda: seconds[0])
    token = api.key(("admin",), expires_in=timedelta(days=1))
    assert api.client.get("/v1/schedules", headers=api.auth(token)).status_code == 200
    assert revoke_api_key(api.session_factory, token.split("_")[1], now=datetime.now(UTC))
    # Within the cache time the verified key still works on this replica ...
    assert api.client.get("/v1/schedules", headers=api.auth(token)).status_code == 200
    # ... but expiry is checked on every use, cached or not ...
    now[0] += timedelta(days=2)
    expired = api.client.get("/v1/schedules", headers=api.auth(token))
    assert expired.status_code == 401
    assert "expired" in expired.json()["detail"]
    now[0] -= timedelta(days=2)
    # ... and once the cache time is over the revocation applies.
    seconds[0] += 0.31
    revoked = api.client.get("/v1/schedules", headers=api.auth(token))
    assert revoked.status_code == 401
    assert "revoked" in revoked.json()["detail"]


def test_a_process_remembers_the_last_used_mark_and_skips_redis_until_it_expires(
    api: Api,
) -> None:
    token = api.key(("admin",))
    mark = f"{api.prefix}:used:{token.split('_')[1]}"
    api.client.get("/v1/schedules", headers=api.auth(token))
    assert api.redis.exists(mark)
    api.redis.delete(mark)
    api.client.get("/v1/schedules", headers=api.auth(token))
    assert not api.redis.exists(mark), "inside the interval the process asks Redis nothing"
    resources = api.app.state.resources
    later = datetime.now(UTC) + timedelta(seconds=61)
    resources.clock = lambda: later
    api.client.get("/v1/schedules", headers=api.auth(token))
    assert api.redis.exists(mark)


def test_a_guilds_stored_uploads_are_bounded(make_api: Callable[..., Api]) -> None:
    # Uploads stay stored with their jobs until retention: one guild's share has a ceiling,
    # and the refused upload leaves nothing behind.
    api = make_api(
        options=ApiOptions(
            redis_prefix=f"sbtest:api:{uuid.uuid4().hex[:10]}", max_guild_upload_bytes=4096
        )
    )
    token = api.key(("jobs:write",))
    message = {"id": "m-1", "author": "ana", "time": "2026-03-01T09:00:00Z", "content": "x" * 1500}
    first = api.client.post(
        "/v1/jobs/upload",
        headers={**api.auth(token), "Content-Type": "application/json"},
        content=json.dumps([message, {**message, "id": "m-2"}]),
    )
    assert first.status_code == 202, first.text
    second = api.client.post(
        "/v1/jobs/upload",
        headers={**api.auth(token), "Content-Type": "application/json"},
        content=json.dumps([message, {**message, "id": "m-2"}]),
    )
    assert second.status_code == 409, second.text
    assert "quota" in second.json()["detail"]
    with api.session_factory() as session:
        stored = session.scalars(select(Upload.guild_id).where(Upload.guild_id == api.guild)).all()
    assert len(stored) == 1


def test_an_address_sending_invalid_keys_is_blocked_before_any_key_lookup(
    make_api: Callable[..., Api], prefix: str
) -> None:
    options = ApiOptions(redis_prefix=prefix, auth_failures_per_minute=3, auth_block_seconds=90)
    flooder = make_api(options=options, client=("198.51.100.20", 5000))
    valid = flooder.key(("admin",))
    key_id = valid.split("_")[1]
    guesses = [f"sb_{key_id}_{'x' * 43}", "sb_ffffffffffff_" + "y" * 43, "not-a-key", valid + "z"]
    answers = [
        flooder.client.get("/v1/schedules", headers=flooder.auth(guess)).status_code
        for guess in guesses
    ]
    # Three failures are allowed in a minute; the fourth is still answered, and blocks.
    assert answers == [401, 401, 401, 401]
    lookups = _metric(flooder, "summarybot_api_auth_failures_total")
    blocked = flooder.client.get("/v1/schedules", headers=flooder.auth(guesses[0]))
    assert blocked.status_code == 429
    assert blocked.headers["content-type"] == "application/problem+json"
    assert 89 <= int(blocked.headers["retry-after"]) <= 90
    assert "invalid API key" in blocked.json()["detail"]
    # Refused before the key was read: no lookup failed meanwhile.
    assert _metric(flooder, "summarybot_api_auth_failures_total") == lookups
    # The address is blocked, whatever key it sends (the block is about the address).
    assert flooder.client.get("/v1/schedules", headers=flooder.auth(valid)).status_code == 429
    # Another address, on another replica sharing the counters, is not.
    other = make_api(options=options, client=("198.51.100.21", 5000))
    assert other.client.get("/v1/schedules", headers=other.auth(valid)).status_code == 200


def _metric(api: Api, name: str) -> float:
    total = 0.0
    for line in api.client.get("/metrics").text.splitlines():
        if line.startswith(name):
            total += float(line.rsplit(" ", 1)[1])
    return total
