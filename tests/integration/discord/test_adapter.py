"""Simulation (record/replay), channel routing, metrics, secrets, and discord.py against the fake."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import httpx
import pytest
import redis as redis_lib
import structlog
from prometheus_client import CollectorRegistry, generate_latest

from shared.discord import (
    DiscordSettings,
    InvalidWebhook,
    Message,
    Unauthorized,
    build_discord_client,
)
from shared.discord.simulation import ReplayMiss
from shared.errors import ConfigError
from tests.fakes.discord_limits import Fault
from tests.fakes.discord_server import FakeDiscordServer, World

pytestmark = pytest.mark.integration


def _scenario(settings: DiscordSettings, http: httpx.Client | None, world: World) -> list[str]:
    with build_discord_client(settings, http, None, None) as client:
        channel = str(world.general.id)
        out = [client.get_channel(channel).name or ""]
        out += [m.content for m in client.iter_history(channel)]
        sent = client.send_message(channel, Message(content="summary ready"))
        out += [sent.id, sent.content]
        hooked = client.execute_webhook(world.webhook_url, Message(content="digest"))
        assert hooked is not None
        out += [hooked.id]
        client.add_reaction(channel, sent.id, "👍")
        client.delete_message(channel, sent.id)
        return out


def test_record_then_replay_without_discord(
    settings: DiscordSettings,
    http: httpx.Client,
    world: World,
    server: FakeDiscordServer,
    tmp_path: Path,
) -> None:
    fake = server.fake
    start = fake.now_ms() - 3_600_000
    fake.add_history(world.general, [world.alice, world.bob], 120, start_ms=start, step_ms=1000)
    fake.inject(Fault("user429", route="GET /channels/{channel_id}", retry_after=0.05))
    recording = tmp_path / "session.jsonl"
    recorded = _scenario(
        settings.model_copy(update={"mode": "record", "recording_path": recording}), http, world
    )
    text = recording.read_text()
    assert world.token not in text
    assert world.webhook.token not in text
    lines = [json.loads(line) for line in text.splitlines()]
    assert {line["route"] for line in lines} >= {"GET /channels/{channel_id}/messages"}
    assert any(line["status"] == 429 for line in lines)
    assert all("x-ratelimit-bucket" in line["headers"] for line in lines if line["status"] == 200)
    assert any(line["limiter"]["denials"] for line in lines)
    webhook_lines = [line for line in lines if line["route"].startswith("POST /webhooks")]
    assert webhook_lines[0]["path"].startswith(f"/webhooks/{world.webhook.id}/<redacted:")

    server.stop()  # from here on there is no Discord at all
    replay = settings.model_copy(
        update={"mode": "replay", "recording_path": recording, "token": None}
    )
    first = _scenario(replay, None, world)
    second = _scenario(replay, None, world)
    assert first[:121] == recorded[:121]  # channel name and the 120 messages
    assert first == second  # deterministic
    assert first[121] == recorded[121]  # the recorded send is answered from the recording
    with build_discord_client(replay, None, None, None) as client:
        with pytest.raises(ReplayMiss, match="record this scenario"):
            client.get_channel(str(world.readonly.id))
        # A send the recording lacks gets a snowflake after the recording's newest one.
        new = client.send_message(str(world.readonly.id), Message(content="not recorded"))
        assert int(new.id) > int(recorded[121])
        assert new.content == "not recorded"
        assert new.channel_id == str(world.readonly.id)


def test_replay_needs_an_existing_recording(tmp_path: Path) -> None:
    settings = DiscordSettings(mode="replay", recording_path=tmp_path / "missing.jsonl")
    with pytest.raises(ConfigError, match="does not exist"):
        build_discord_client(settings, None, None, None)


def test_metrics_by_route_status_scope_and_wait(
    settings: DiscordSettings,
    http: httpx.Client,
    redis_client: redis_lib.Redis,
    registry: CollectorRegistry,
    world: World,
    server: FakeDiscordServer,
) -> None:
    server.fake.inject(
        Fault("global429", route="GET /channels/{channel_id}/messages", retry_after=0.05)
    )
    server.fake.inject(Fault("status", route="GET /channels/{channel_id}", status=503))
    with build_discord_client(settings, http, redis_client, registry) as client:
        client.get_messages(str(world.general.id), limit=1)
        client.get_channel(str(world.general.id))
    sample = registry.get_sample_value
    route = "GET /channels/{channel_id}/messages"
    assert sample("summarybot_discord_requests_total", {"route": route, "status": "429"}) == 1
    assert sample("summarybot_discord_requests_total", {"route": route, "status": "200"}) == 1
    assert sample("summarybot_discord_429_total", {"scope": "global"}) == 1
    assert (
        sample(
            "summarybot_discord_retries_total",
            {"route": "GET /channels/{channel_id}", "reason": "5xx"},
        )
        == 1
    )
    assert sample("summarybot_discord_limiter_wait_seconds_count", {"route": route}) == 2
    assert sample("summarybot_discord_limiter_wait_seconds_sum", {"route": route}) >= 0.04


def test_secrets_stay_out_of_logs_errors_and_metrics(
    settings: DiscordSettings,
    http: httpx.Client,
    registry: CollectorRegistry,
    world: World,
    server: FakeDiscordServer,
) -> None:
    bad_token = "super-secret-token-value"
    hook_url = f"https://discord.com/api/webhooks/{world.webhook.id + 7}/secret-webhook-token"
    leaky = DiscordSettings.model_validate({**settings.model_dump(), "token": bad_token})
    with (
        structlog.testing.capture_logs() as logs,
        build_discord_client(leaky, http, None, registry) as client,
    ):
        texts = [repr(client), repr(leaky), str(leaky.model_dump())]
        for call in (
            lambda: client.get_current_user(),
            lambda: client.execute_webhook(hook_url, Message(content="x")),
        ):
            with pytest.raises((Unauthorized, InvalidWebhook)) as caught:
                call()
            texts += [str(caught.value), repr(caught.value), caught.value.user_message]
    texts += [json.dumps(logs, default=str), generate_latest(registry).decode()]
    for text in texts:
        assert bad_token not in text
        assert "secret-webhook-token" not in text


def test_discordpy_http_client_talks_to_the_fake(
    world: World, server: FakeDiscordServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    from discord.http import HTTPClient, Route

    monkeypatch.setattr(Route, "BASE", server.api_base)
    fake = server.fake
    fake.add_history(world.general, [world.alice], 5, start_ms=fake.now_ms() - 60_000, step_ms=1000)

    async def run() -> tuple[str, int, str]:
        http = HTTPClient(asyncio.get_running_loop())
        try:
            me = await http.static_login(world.token)
            page = await http.logs_from(world.general.id, 100)
            sent = await http.send_message(
                world.general.id, params=_params("hello from discord.py")
            )
        finally:
            await http.close()
        return me["username"], len(page), sent["content"]

    assert asyncio.run(run()) == ("RelayBot", 5, "hello from discord.py")


def _params(content: str) -> object:
    from discord.http import handle_message_parameters

    return handle_message_parameters(content=content)
