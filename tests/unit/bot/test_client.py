"""The bot client's construction (sharding, intents, commands) and the CLI entry's failures."""

from __future__ import annotations

from typing import Any

import pytest
import redis.asyncio as aioredis
import typer
from sqlalchemy.orm import sessionmaker

from producers.bot.client import SummaryBot
from producers.bot.runtime import build_runtime
from producers.cli.bot_commands import run_bot
from shared.crypto import SecretBox, generate_key
from shared.settings import BotSettings, Settings, load_settings


class _Enqueuer:
    def enqueue(self, task_name: str, *args: str) -> None:
        raise AssertionError(f"nothing is published here ({task_name})")


def make_bot(settings: BotSettings) -> SummaryBot:
    return make_bot_from(load_settings(bot=settings))


def make_bot_from(settings: Settings) -> SummaryBot:
    runtime = build_runtime(
        settings,
        session_factory=sessionmaker(),
        enqueuer=_Enqueuer(),
        redis=aioredis.Redis(),  # never connected: nothing here talks to Redis
        box=SecretBox([generate_key()]),
    )
    return SummaryBot(runtime)


def test_one_process_per_shard_group() -> None:
    bot = make_bot(BotSettings(shard_count=4, shard_ids=[2, 3], application_id=1234))
    assert bot.shard_count == 4
    assert bot.shard_ids == [2, 3]
    assert bot.application_id == 1234
    assert not bot.intents.members


def test_unset_shards_let_discord_decide() -> None:
    bot = make_bot(BotSettings())
    assert bot.shard_count is None and bot.shard_ids is None


def test_run_bot_refuses_missing_settings_with_one_line(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(typer.Exit) as exc:
        run_bot(load_settings())
    assert exc.value.exit_code == 2
    err = capsys.readouterr().err
    assert err.startswith("summarybot: DISCORD_TOKEN is not set")
    assert len(err.strip().splitlines()) == 1


def test_every_command_is_registered_within_discords_limits() -> None:
    import asyncio

    async def scenario() -> list[dict[str, object]]:
        bot = make_bot(BotSettings(sync_commands=False, application_id=1234))
        await bot._async_setup_hook()
        await bot.setup_hook()
        try:
            return [command.to_dict(bot.tree) for command in bot.tree.get_commands()]
        finally:
            await bot.close()

    payloads = asyncio.run(scenario())
    names = {(p["name"], p["type"]) for p in payloads}
    assert names == {
        ("summarize", 1),
        ("summary-status", 1),
        ("catchup", 1),
        ("digest", 1),
        ("summary-config", 1),
        ("summary-optout", 1),
        ("summary-optin", 1),
        ("Summarize from here", 3),
    }

    def walk(options: list[dict[str, object]]) -> None:
        assert len(options) <= 25
        for item in options:
            assert 1 <= len(str(item["name"])) <= 32
            assert 1 <= len(str(item["description"])) <= 100, item
            walk(item.get("options", []))  # type: ignore[arg-type]

    for payload in payloads:
        if payload["type"] == 1:
            assert 1 <= len(str(payload["description"])) <= 100
            walk(payload.get("options", []))  # type: ignore[arg-type]
    summarize: Any = next(p for p in payloads if p["name"] == "summarize")
    options = {o["name"]: o for o in summarize["options"]}
    assert options["hours"]["min_value"] == 1 and options["hours"]["max_value"] == 168
    assert [c["value"] for c in options["format"]["choices"]] == [
        "brief",
        "structured",
        "detailed",
        "technical",
    ]
    config = next(p for p in payloads if p["name"] == "summary-config")
    assert int(str(config["default_member_permissions"])) == 1 << 5  # Manage Server


def test_the_bots_core_applies_the_deployments_rules() -> None:
    from shared.delivery.config import DeliverySettings

    settings = load_settings(
        max_messages=500,
        bot=BotSettings(application_id=1234),
        delivery=DeliverySettings.load(webhook_allowed_hosts="hooks.internal:8080"),
    )
    core = make_bot_from(settings).runtime.core()
    assert core.max_messages == 500
    assert core.egress == settings.delivery.egress_policy
    assert core.egress != DeliverySettings.load(webhook_allowed_hosts="").egress_policy
