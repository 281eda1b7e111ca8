"""What the API says about a body it cannot use, and the access log it writes per request."""

from __future__ import annotations

import structlog

from tests.unit.api.conftest import Api


def test_a_body_that_is_not_json_is_a_400_saying_where_and_why(api: Api) -> None:
    token = api.key(("jobs:write",))
    body = b'{\n  "channel_id": "1",\n  "window": {"hours": 2},\n}'
    response = api.client.post(
        "/v1/jobs", headers=api.auth(token) | {"Content-Type": "application/json"}, content=body
    )
    assert response.status_code == 400
    assert response.headers["content-type"] == "application/problem+json"
    detail = response.json()["detail"]
    assert detail.startswith("the body is not valid JSON: Expecting property name")
    assert "line 4, column 1" in detail


def test_a_form_or_text_body_is_a_415_naming_what_to_send(api: Api) -> None:
    token = api.key(("jobs:write",))
    form = api.client.post("/v1/jobs", headers=api.auth(token), data={"channel_id": api.channel})
    assert form.status_code == 415
    assert "application/x-www-form-urlencoded" in form.json()["detail"]
    assert "Content-Type: application/json" in form.json()["detail"]
    text = api.client.post(
        "/v1/jobs",
        headers=api.auth(token) | {"Content-Type": "text/plain"},
        content=b'{"channel_id": "1"}',
    )
    assert text.status_code == 415


def test_json_needs_its_content_type_and_may_name_a_charset(api: Api) -> None:
    token = api.key(("jobs:write",))
    body = f'{{"channel_id": "{api.channel}"}}'.encode()
    with_charset = {"Content-Type": "application/json; charset=utf-8"}
    response = api.client.post("/v1/jobs", headers=api.auth(token) | with_charset, content=body)
    assert response.status_code == 202, response.text
    bare = api.client.post("/v1/jobs", headers=api.auth(token), content=body)
    assert bare.status_code == 415
    assert bare.json()["detail"].startswith("the body has no Content-Type")


def test_every_request_has_one_access_log_line_without_the_key(api: Api) -> None:
    token = api.key(("jobs:write",))
    key_id = token.split("_")[1]
    with structlog.testing.capture_logs() as logs:
        accepted = api.client.post(
            "/v1/jobs", headers=api.auth(token), json={"channel_id": api.channel}
        )
        missing = api.client.get("/v1/jobs/00000000-0000-0000-0000-000000000000")
    assert accepted.status_code == 202 and missing.status_code == 401
    lines = [entry for entry in logs if entry["event"] == "api.request"]
    assert [(e["method"], e["route"], e["status"]) for e in lines] == [
        ("POST", "/v1/jobs", 202),
        ("GET", "/v1/jobs/{job_id}", 401),
    ]
    assert lines[0]["api_key_id"] == key_id
    assert all(isinstance(e["duration_ms"], float) for e in lines)
    assert token not in repr(logs)
