"""RestSession edge cases (on httpx.MockTransport) and the replay transport."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest

from shared.discord import (
    DiscordSettings,
    Message,
    RateLimited,
    ServerError,
    UnexpectedAnswer,
    build_discord_client,
    routes,
)
from shared.discord.rest import RequestPolicy, RestSession
from shared.discord.simulation import (
    Recorder,
    ReplayMiss,
    ReplayTransport,
    redact_body,
    redact_path,
)
from shared.discord.tokens import StaticToken
from shared.errors import ConfigError
from shared.ratelimit.discord import LimiterConfig, LimitKey, Outcome
from shared.ratelimit.inprocess import InProcessDiscordLimiter
from tests.fakes.discord_fixtures import envelope, fixture

CHANNEL = "1102565102059520001"
OTHER = "1102565102059520077"


def test_missing_token_is_a_config_error(make_client: Any) -> None:
    client, seen = make_client(lambda r: httpx.Response(200, json={}), token=None)
    with pytest.raises(ConfigError, match="no Discord bot token"):
        client.get_current_user()
    assert seen.requests == []


def test_backoff_is_exponential_with_jitter(make_client: Any, sleeps: list[float]) -> None:
    client, seen = make_client(
        lambda r: httpx.Response(500, json={"message": "boom", "code": 0}),
        policy=RequestPolicy(backoff_base_s=1.0, backoff_cap_s=3.0),
    )
    with pytest.raises(ServerError, match="4 time"):
        client.get_channel(CHANNEL)
    assert len(seen.requests) == 4
    backoffs = [s for s in sleeps if s >= 0.5]
    assert len(backoffs) == 3
    assert 0.5 <= backoffs[0] <= 1.0
    assert 1.0 <= backoffs[1] <= 2.0
    assert 1.5 <= backoffs[2] <= 3.0


def test_cloudflare_html_ban_is_not_retried(make_client: Any) -> None:
    client, seen = make_client(lambda r: httpx.Response(429, text="error code: 1015"))
    with pytest.raises(RateLimited) as caught:
        client.get_channel(CHANNEL)
    assert caught.value.scope == "cloudflare"
    assert caught.value.retry_after == 900
    assert len(seen.requests) == 1
    with pytest.raises(RateLimited, match="blocked this IP"):
        client.get_channel(CHANNEL)
    assert len(seen.requests) == 1


def test_limiter_wait_past_the_deadline_raises_before_sending(make_client: Any) -> None:
    limiter = InProcessDiscordLimiter(LimiterConfig())
    route = routes.EXECUTE_WEBHOOK.compile(webhook_id="1246251869798400003", webhook_token="t")
    key = LimitKey(route.key, route.major, None, "ip", route.webhook_key)
    slot = limiter.try_acquire(key, max_delay_s=0).slot
    assert slot is not None
    limiter.release(slot, Outcome(status=429, scope="sublimit", retry_after=60))
    client, seen = make_client(lambda r: httpx.Response(204), limiter=limiter)
    with pytest.raises(RateLimited) as caught:
        client.session.request(route, json={"content": "x"}, max_wait_s=5)
    assert caught.value.scope == "sublimit"
    assert caught.value.retry_after > 55
    assert "before the caller's deadline" in str(caught.value)
    assert seen.requests == []


def test_redaction() -> None:
    assert redact_path("/webhooks/1/abc/messages/2").startswith("/webhooks/1/<redacted:")
    assert redact_path("/webhooks/1/<redacted:x>") == "/webhooks/1/<redacted:x>"
    assert redact_path("/interactions/5/tok/callback").startswith("/interactions/5/<redacted:")
    body = {
        "token": "t",
        "url": "https://discord.com/api/webhooks/1/secret",
        "list": [{"token": "u"}],
    }
    clean = json.dumps(redact_body(body))
    assert "secret" not in clean
    assert '"t"' not in clean and '"u"' not in clean


def _write(path: Path, *entries: dict[str, Any]) -> Path:
    path.write_text("\n".join(json.dumps(e) for e in entries) + "\n\n")
    return path


def _entry(
    method: str, path: str, status: int | None, response: Any, query: str = ""
) -> dict[str, Any]:
    return {
        "method": method,
        "path": path,
        "query": query,
        "status": status,
        "route": "r",
        "headers": {"content-type": "application/json"},
        "response": response,
    }


def test_replay_transport(tmp_path: Path) -> None:
    message = fixture("message_reply_with_thread.json")
    recording = _write(
        tmp_path / "rec.jsonl",
        _entry("GET", f"/channels/{CHANNEL}/messages/1", 200, message),
        _entry(
            "GET",
            f"/channels/{CHANNEL}/messages/1",
            404,
            {"message": "Unknown Message", "code": 10008},
        ),
        _entry("GET", f"/channels/{CHANNEL}", None, None),
        _entry("POST", f"/channels/{CHANNEL}/messages", 200, message),
        _entry("GET", "/users/@me", 200, "plain text"),
    )
    transport = ReplayTransport(recording, api_base="https://discord.com/api/v10")
    http = httpx.Client(transport=transport, base_url="https://discord.com/api/v10")
    assert http.get(f"/channels/{CHANNEL}/messages/1").status_code == 200
    assert http.get(f"/channels/{CHANNEL}/messages/1").status_code == 404
    assert http.get(f"/channels/{CHANNEL}/messages/1").status_code == 404  # last answer repeats
    assert http.get("/users/@me").text == "plain text"
    with pytest.raises(ReplayMiss):
        http.get(f"/channels/{CHANNEL}")  # a network failure was recorded: no answer to give
    first = http.post(f"/channels/{CHANNEL}/messages", json={"content": "a"}).json()
    assert first["id"] == message["id"]
    other = http.post(f"/channels/{OTHER}/messages", json={"content": "new", "embeds": []}).json()
    assert int(other["id"]) > int(message["id"])
    assert (other["content"], other["channel_id"], other["author"]) == (
        "new",
        OTHER,
        message["author"],
    )
    again = http.post(f"/channels/{OTHER}/messages", json={"content": "new"}).json()
    assert int(again["id"]) > int(other["id"])
    edited = http.patch(f"/channels/{OTHER}/messages/{other['id']}", json={"content": "e"}).json()
    assert (edited["id"], edited["content"]) == (other["id"], "e")
    assert edited["edited_timestamp"]
    assert http.delete(f"/channels/{OTHER}/messages/5").status_code == 204
    assert (
        http.post("/webhooks/1/tok", params={"wait": "false"}, json={"content": "x"}).status_code
        == 204
    )
    thread = http.post(f"/channels/{OTHER}/threads", json={"name": "t", "type": 11})
    assert thread.status_code == 201
    assert thread.json()["name"] == "t"
    assert "rec.jsonl" in repr(transport)
    http.close()


def test_replay_rejects_broken_recordings(tmp_path: Path) -> None:
    broken = tmp_path / "broken.jsonl"
    broken.write_text('{"method": "GET"\n')
    with pytest.raises(ConfigError, match=r"broken\.jsonl:1 is not JSON"):
        ReplayTransport(broken, api_base="https://discord.com/api/v10")
    empty = _write(tmp_path / "empty.jsonl")
    transport = ReplayTransport(empty, api_base="https://discord.com/api/v10")
    with httpx.Client(transport=transport) as http:
        created = http.post(
            "https://discord.com/api/v10/channels/1/messages", json={"content": "x"}
        ).json()
    assert int(created["id"]) >> 22 > 0


def test_recorder_writes_redacted_lines(tmp_path: Path) -> None:
    recorder = Recorder(tmp_path / "deep" / "rec.jsonl")
    recorder.record(
        routes.EXECUTE_WEBHOOK.compile(webhook_id=1, webhook_token="secret"),
        {"wait": "true"},
        {"content": "x"},
        0.5,
        ["global"],
        headers={"Authorization": "Bot s"},
        error=httpx.ConnectError("refused"),
    )
    recorder.close()
    line = json.loads((tmp_path / "deep" / "rec.jsonl").read_text())
    assert "secret" not in json.dumps(line)
    assert line["route"] == "POST /webhooks/{webhook_id}/{webhook_token}"
    assert line["path"].startswith("/webhooks/1/<redacted:")
    assert line["status"] is None
    assert line["headers"] == {}
    assert line["error"] == "ConnectError"
    assert line["limiter"] == {"waited_s": 0.5, "denials": ["global"]}
    assert "rec.jsonl" in repr(recorder)


def test_session_records_network_errors_and_answers(tmp_path: Path) -> None:
    attempts: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        attempts.append(request)
        if len(attempts) == 1:
            raise httpx.ConnectError("refused", request=request)
        return httpx.Response(200, headers={"X-RateLimit-Bucket": "b1"}, json={"id": CHANNEL})

    recorder = Recorder(tmp_path / "rec.jsonl")
    with httpx.Client(transport=httpx.MockTransport(answer)) as http:
        session = RestSession(
            http=http,
            api_base="https://discord.test/api/v10",
            limiter=InProcessDiscordLimiter(LimiterConfig()),
            tokens=StaticToken("unit-token"),
            policy=RequestPolicy(backoff_base_s=0.0),
            recorder=recorder,
            sleep=lambda _s: None,
        )
        session.request(routes.GET_CHANNEL.compile(channel_id=CHANNEL), params={"x": True})
    recorder.close()
    failed, answered = (json.loads(x) for x in (tmp_path / "rec.jsonl").read_text().splitlines())
    assert failed["error"] == "ConnectError"
    assert (failed["status"], failed["headers"], failed["response"]) == (None, {}, None)
    assert answered["route"] == failed["route"] == "GET /channels/{channel_id}"
    assert answered["path"] == f"/channels/{CHANNEL}"
    assert answered["query"] == "x=true"
    assert answered["status"] == 200
    assert answered["headers"]["x-ratelimit-bucket"] == "b1"
    assert answered["response"] == {"id": CHANNEL}
    assert "error" not in answered


def test_replay_factory_needs_no_token_or_network(tmp_path: Path) -> None:
    recording = _write(
        tmp_path / "rec.jsonl",
        _entry("GET", f"/channels/{CHANNEL}", 200, fixture("channel_guild_text.json")),
    )
    settings = DiscordSettings(mode="replay", recording_path=recording)
    with build_discord_client(settings, None, None, None) as client:
        assert client.get_channel(CHANNEL).name == "release-eng"
        sent = client.send_message(CHANNEL, Message(content="hello"))
        assert sent.content == "hello"
    assert envelope("ratelimit_429_user.json").status_code == 429


def test_a_web_page_instead_of_the_api_is_explained(make_client: Any) -> None:
    # DISCORD_API_BASE=https://discord.com (no /api/v10): the web app answers 200 with HTML.
    page = "<!DOCTYPE html><html><head><title>Discord</title></head><body></body></html>"
    client, seen = make_client(lambda r: httpx.Response(200, text=page))
    with pytest.raises(UnexpectedAnswer) as caught:
        client.get_channel(CHANNEL)
    assert "answered 200 with the text '<!DOCTYPE html>" in str(caught.value)
    assert "DISCORD_API_BASE" in str(caught.value)
    assert len(seen.requests) == 1
