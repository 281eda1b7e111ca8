"""POST /v1/jobs is served in one worker-thread hop and answers as its declaration would: the
same refusals, in the same order (body not JSON, then the key, then the header, then fields)."""

from __future__ import annotations

from typing import Any

import pytest
import starlette.concurrency
import structlog

from producers.api.routes import jobs
from tests.unit.api.conftest import Api

pytestmark = pytest.mark.integration

_BAD_FIELDS = {"channel_id": "not-a-snowflake"}


def _post(api: Api, headers: dict[str, str], **kwargs: Any) -> Any:
    return api.client.post("/v1/jobs", headers=headers, **kwargs)


def test_a_submission_is_one_worker_thread_hop(api: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    hops: list[str] = []
    original = starlette.concurrency.run_in_threadpool

    async def counting(*args: Any, **kwargs: Any) -> Any:
        hops.append("hop")
        return await original(*args, **kwargs)

    original_hop = jobs.in_hop if hasattr(jobs, "in_hop") else None

    async def counting_hop(*args: Any) -> Any:
        hops.append("hop")
        assert original_hop is not None
        return await original_hop(*args)

    monkeypatch.setattr(jobs, "in_hop", counting_hop, raising=False)
    monkeypatch.setattr("producers.api.auth.run_in_threadpool", counting)
    monkeypatch.setattr("fastapi.routing.run_in_threadpool", counting)
    monkeypatch.setattr("fastapi.dependencies.utils.run_in_threadpool", counting)
    token = api.key(("jobs:write",))
    response = _post(
        api, api.auth(token) | {"Idempotency-Key": "k1"}, json={"channel_id": api.channel}
    )
    assert response.status_code == 202, response.text
    assert len(hops) == 1


def test_a_body_that_is_not_json_is_400_before_the_key_is_checked(api: Api) -> None:
    response = _post(api, {"Content-Type": "application/json"}, content=b"{nope")
    assert response.status_code == 400
    assert response.json()["type"].endswith("/invalid-json")


def test_the_key_is_checked_before_the_fields(api: Api) -> None:
    missing = _post(api, {}, json=_BAD_FIELDS)
    assert missing.status_code == 401
    assert missing.headers["www-authenticate"].startswith("Bearer")
    unknown = _post(api, api.auth("sb_" + "a" * 12 + "_" + "b" * 43), json=_BAD_FIELDS)
    assert unknown.status_code == 401
    reader = _post(api, api.auth(api.key(("summaries:read",))), json=_BAD_FIELDS)
    assert reader.status_code == 403
    assert reader.json()["type"].endswith("/insufficient-scope")


def test_the_rate_limit_is_checked_before_the_header_and_the_fields(api: Api) -> None:
    token = api.key(("jobs:write",), rate_limit_per_minute=6)
    first = _post(api, api.auth(token), json=_BAD_FIELDS)
    assert first.status_code == 422
    second = _post(api, api.auth(token) | {"Idempotency-Key": "bad key"}, json=_BAD_FIELDS)
    assert second.status_code == 429
    assert second.headers["ratelimit-limit"] == "6"


def test_the_header_is_checked_before_the_fields(api: Api) -> None:
    response = _post(
        api, api.auth(api.key(("jobs:write",))) | {"Idempotency-Key": "bad key"}, json=_BAD_FIELDS
    )
    assert response.status_code == 400
    assert response.json()["type"].endswith("/invalid-idempotency-key")


@pytest.mark.parametrize(
    ("content", "pointer", "detail"),
    [
        (b"", "", "Field required"),
        (b"[1, 2]", "", "Input should be a valid dictionary or object to extract fields from"),
        (b'{"channel_id": "x"}', "/channel_id", "String should match pattern"),
        (b'{"channel_id": "123456789012345678", "extra": 1}', "/extra", "Extra inputs"),
    ],
)
def test_invalid_fields_are_422_under_body_and_logged_with_the_key(
    api: Api, content: bytes, pointer: str, detail: str
) -> None:
    token = api.key(("jobs:write",))
    with structlog.testing.capture_logs() as logs:
        response = _post(
            api, api.auth(token) | {"Content-Type": "application/json"}, content=content
        )
    assert response.status_code == 422, response.text
    (error,) = response.json()["errors"]
    assert (error["location"], error["pointer"]) == ("body", pointer)
    assert error["detail"].startswith(detail)
    (line,) = [entry for entry in logs if entry["event"] == "api.request"]
    assert line["api_key_id"] == token.split("_")[1]
    assert line["route"] == "/v1/jobs"
    assert api.enqueuer.sent == []


def test_an_idempotent_submission_replays_and_refuses_another_body(api: Api) -> None:
    headers = api.auth(api.key(("jobs:write",))) | {"Idempotency-Key": "same"}
    first = _post(api, headers, json={"channel_id": api.channel})
    again = _post(
        api,
        headers | {"Content-Type": "application/json"},
        content=f'{{ "channel_id" : "{api.channel}" }}'.encode(),
    )
    assert first.status_code == again.status_code == 202
    assert again.content == first.content
    assert again.headers["idempotent-replayed"] == "true"
    other = _post(api, headers, json={"channel_id": api.channel, "format": "brief"})
    assert other.status_code == 422
    assert other.json()["type"].endswith("/idempotency-key-reused")
    assert len(api.enqueuer.sent) == 1


def test_a_hop_runs_in_a_pool_thread_with_the_callers_context() -> None:
    import asyncio
    import contextvars
    import threading
    from concurrent.futures import ThreadPoolExecutor

    from producers.api.onehop import in_hop

    marker: contextvars.ContextVar[str] = contextvars.ContextVar("marker", default="unset")

    def seen() -> tuple[str, str]:
        return marker.get(), threading.current_thread().name

    async def hop(executor: ThreadPoolExecutor) -> tuple[str, str]:
        marker.set("request")
        return await in_hop(executor, seen)

    with ThreadPoolExecutor(1, thread_name_prefix="api-hop") as executor:
        value, thread = asyncio.run(hop(executor))
    assert value == "request"
    assert thread.startswith("api-hop")


def test_a_keyed_submission_books_the_limit_and_claims_the_key_in_one_round_trip(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    headers = api.auth(api.key(("jobs:write",)))
    warm = _post(api, headers | {"Idempotency-Key": "warm"}, json={"channel_id": api.channel})
    assert warm.status_code == 202  # the key's last-used mark is now known
    commands: list[str] = []
    original = type(api.redis).execute_command

    def counting(self: Any, *args: Any, **options: Any) -> Any:
        commands.append(str(args[0]).upper())
        return original(self, *args, **options)

    monkeypatch.setattr(type(api.redis), "execute_command", counting)
    response = _post(api, headers | {"Idempotency-Key": "k2"}, json={"channel_id": api.channel})
    assert response.status_code == 202, response.text
    # One script books the limit and claims the key; one stores the response.
    assert commands == ["EVALSHA", "EVALSHA"]
    assert len(api.enqueuer.sent) == 2


def test_a_rate_limited_submission_claims_nothing(api: Api) -> None:
    headers = api.auth(api.key(("jobs:write",), rate_limit_per_minute=6))
    assert _post(api, headers, json={"channel_id": api.channel}).status_code == 202
    refused = _post(api, headers | {"Idempotency-Key": "later"}, json={"channel_id": api.channel})
    assert refused.status_code == 429
    assert not list(api.redis.scan_iter(match=f"{api.prefix}:idem:*"))
    assert len(api.enqueuer.sent) == 1


def test_a_submission_skips_the_router_and_other_routes_do_not(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    from fastapi.routing import APIRoute

    matched: list[str] = []
    original = APIRoute.matches

    def recording(self: APIRoute, scope: Any) -> Any:
        matched.append(self.path)
        return original(self, scope)

    monkeypatch.setattr(APIRoute, "matches", recording)
    headers = api.auth(api.key(("jobs:write", "summaries:read")))
    with structlog.testing.capture_logs() as logs:
        created = _post(api, headers, json={"channel_id": api.channel})
    assert created.status_code == 202, created.text
    assert matched == []
    (line,) = [entry for entry in logs if entry["event"] == "api.request"]
    assert (line["route"], line["status"]) == ("/v1/jobs", 202)
    read = api.client.get(created.headers["location"], headers=headers)
    assert read.status_code == 200
    assert matched  # the router served it
    assert api.client.get("/v1/jobs", headers=headers).status_code == 405
