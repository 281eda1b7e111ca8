"""The fake answers in Discord's shapes: the fixture payloads, headers and pagination order."""

from __future__ import annotations

import re
from typing import Any

import httpx
import pytest

from tests.fakes.discord_fixtures import fixture
from tests.fakes.discord_limits import RouteLimit
from tests.fakes.discord_server import FakeDiscordServer, World

pytestmark = pytest.mark.integration


def _get(world: World, path: str, **kw: Any) -> httpx.Response:
    headers = {"Authorization": f"Bot {world.token}"}
    return httpx.request(kw.pop("method", "GET"), world.api_base + path, headers=headers, **kw)


def test_shapes_match_the_fixtures(world: World, server: FakeDiscordServer) -> None:
    fake = server.fake
    reply_target = fake.add_message(world.general, world.bob, "Deploy 4.2 is out")
    channel = _get(world, f"/channels/{world.general.id}").json()
    assert set(channel) == set(fixture("channel_guild_text.json"))
    sent = _get(
        world,
        f"/channels/{world.general.id}/messages",
        method="POST",
        json={
            "content": f"<@{world.bob.id}> looks good",
            "message_reference": {"message_id": str(reply_target.id)},
        },
    ).json()
    expected = fixture("message_reply_with_thread.json")
    optional = {"thread", "reactions"}
    assert set(expected) - optional <= set(sent)
    assert set(sent["author"]) - {"bot"} == set(expected["author"])  # the bot flag is extra
    assert set(sent["mentions"][0]) == set(expected["mentions"][0])
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}\+00:00", sent["timestamp"])
    thread = _get(
        world,
        f"/channels/{world.general.id}/messages/{sent['id']}/threads",
        method="POST",
        json=fixture("request_start_thread_from_message.json"),
    )
    assert thread.status_code == 201
    assert set(thread.json()) == set(fixture("thread_created_from_message_201.json"))
    private = _get(
        world,
        f"/channels/{world.general.id}/threads",
        method="POST",
        json=fixture("request_start_thread_without_message.json"),
    )
    assert set(private.json()) == set(fixture("thread_private_created_without_message_201.json"))
    assert set(private.json()["thread_metadata"]) == set(
        fixture("thread_private_created_without_message_201.json")["thread_metadata"]
    )
    dm = _get(
        world, "/users/@me/channels", method="POST", json={"recipient_id": str(world.alice.id)}
    )
    assert set(dm.json()) == set(fixture("dm_channel_200.json"))
    hook = httpx.post(
        f"{world.api_base}/webhooks/{world.webhook.id}/{world.webhook.token}",
        params={"wait": "true"},
        json=fixture("request_execute_webhook.json"),
    ).json()
    assert set(hook) == set(fixture("webhook_message_200.json"))
    assert set(hook["author"]) == set(fixture("webhook_message_200.json")["author"])
    assert hook["embeds"][0] == fixture("webhook_message_200.json")["embeds"][0]


def test_rate_limit_headers_and_statuses(world: World) -> None:
    response = _get(world, f"/channels/{world.general.id}/messages", params={"limit": 1})
    headers = response.headers
    assert headers["via"] == "1.1 google"
    assert re.fullmatch(r"[0-9a-f]{32}", headers["x-ratelimit-bucket"])
    assert re.fullmatch(r"\d+\.\d{3}", headers["x-ratelimit-reset"])
    assert re.fullmatch(r"\d+\.\d{3}", headers["x-ratelimit-reset-after"])
    assert headers["x-ratelimit-limit"] == "5"
    assert headers["x-ratelimit-remaining"] == "4"
    other = _get(world, f"/channels/{world.readonly.id}/messages", params={"limit": 1})
    # Same shared limit, another channel: same hash, its own counter.
    assert other.headers["x-ratelimit-bucket"] == headers["x-ratelimit-bucket"]
    assert other.headers["x-ratelimit-remaining"] == "4"
    assert "x-ratelimit-bucket" not in _get(world, "/users/@me").headers
    assert _get(world, "/nowhere").json() == {"message": "404: Not Found", "code": 0}
    assert _get(world, f"/channels/{world.general.id}", method="PUT").status_code == 405
    bad_json = _get(world, f"/channels/{world.general.id}/messages", method="POST", content=b"{")
    assert bad_json.json()["code"] == 50109
    hook = f"{world.api_base}/webhooks/{world.webhook.id}/{world.webhook.token}"
    assert httpx.post(hook, json={"content": "x"}).status_code == 204


def test_exhausted_bucket_and_global_limit_answer_429(
    world: World, server: FakeDiscordServer
) -> None:
    server.fake.config.limits["GET /channels/{channel_id}/messages"] = RouteLimit("read", 5, 5.0)
    path = f"/channels/{world.general.id}/messages"
    answers = [_get(world, path, params={"limit": 1}) for _ in range(6)]
    assert [a.status_code for a in answers] == [200] * 5 + [429]
    limited = answers[-1]
    assert limited.headers["x-ratelimit-scope"] == "user"
    assert limited.headers["x-ratelimit-remaining"] == "0"
    body = limited.json()
    assert body["global"] is False
    assert 0 < body["retry_after"] <= 5.0
    assert int(limited.headers["retry-after"]) >= body["retry_after"]
    server.fake.config.global_limit = 2
    server.fake.limits.reset_counters()
    statuses = [_get(world, "/users/@me") for _ in range(3)]
    assert [s.status_code for s in statuses] == [200, 200, 429]
    glob = statuses[-1]
    assert glob.headers["x-ratelimit-global"] == "true"
    assert "x-ratelimit-bucket" not in glob.headers
    assert glob.json()["global"] is True
