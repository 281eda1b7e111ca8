"""Settings validation, route keys, tokens, webhook URLs, emoji normalisation."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
from pydantic import SecretStr, ValidationError

from shared.discord import DiscordSettings, WebhookRef, normalize_emoji, routes
from shared.discord.factory import limiter_config, token_source
from shared.discord.routes import _delete_age_suffix
from shared.discord.tokens import FileToken, StaticToken, token_id
from shared.domain.messages import DISCORD_EPOCH_MS
from shared.errors import ConfigError, InvalidInputError, SettingsError


def test_settings_defaults_and_validation() -> None:
    settings = DiscordSettings()
    assert settings.api_base == "https://discord.com/api/v10"
    assert settings.mode == "live"
    config = limiter_config(settings)
    assert config.global_limit == 50
    assert config.lease_s == settings.request_timeout_s + 5
    assert DiscordSettings(api_base="http://127.0.0.1:9/api/v10/").api_base.endswith("/v10")
    assert DiscordSettings(api_base="https://discord.com/api/v9").api_base.endswith("/v9")
    cases = [
        ({"api_base": "discord.com"}, r"not an http\(s\) URL"),
        # No version is v6 to Discord (retry_after in milliseconds, no threads).
        ({"api_base": "https://discord.com/api"}, "does not end in the API version"),
        ({"api_base": "https://discord.com/api/v6"}, "use https://discord.com/api/v10"),
        ({"api_base": "https://discord.com/api/v8/"}, "does not end in the API version"),
        ({"token": "a", "token_file": "/x"}, "set as well; keep one of the two"),
        ({"mode": "replay"}, "DISCORD_MODE 'replay' needs it"),
        ({"global_margin": 1.5}, "less than 1"),
        ({"invalid_request_limit": 20000}, "less than or equal to 9000"),
    ]
    for values, message in cases:
        with pytest.raises(ValidationError, match=message):
            DiscordSettings.model_validate(values)
    assert "hunter2" not in repr(DiscordSettings(token=SecretStr("hunter2")))


@pytest.mark.parametrize(
    "agent",
    [
        "DiscordBot (https://github.com/summary-bot-ng/summary-bot-ng, 0.1.0)",
        "DiscordBot (https://example.org/bot, 2.4.1) Python/3.11 httpx/0.28",
        "DiscordBot (http://example.org,1)",
        # discord.py's own agent, without the comma: Discord accepts it.
        "DiscordBot (https://github.com/Rapptz/discord.py 2.6.3) Python/3.11 aiohttp/3.12.15",
    ],
)
def test_a_user_agent_of_discords_form_is_accepted(agent: str) -> None:
    assert DiscordSettings(user_agent=agent).user_agent == agent


@pytest.mark.parametrize(
    ("agent", "problem"),
    [
        (
            "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 Chrome/131",
            "is a browser's User-Agent; Discord's edge blocks browser-like agents on the bot API "
            "(403, code 40333)",
        ),
        (
            "python-httpx/0.28",
            "is not of Discord's required form 'DiscordBot ($url, $versionNumber)'",
        ),
        ("DiscordBot (https://example.org)", "is not of Discord's required form"),
        ("DiscordBot (summary-bot, 1.0)", "names no http(s) URL of the bot before the version"),
        ("DiscordBot (https://example.org, )", "has no one-word version after the URL"),
        ("DiscordBot (https://example.org, 1.0)\r\nX-Evil: 1", "characters an HTTP header"),
        ("DiscordBot (https://example.org, 1.0) \u00e9t\u00e9", "characters an HTTP header"),
    ],
)
def test_a_user_agent_discord_would_block_fails_validation_with_the_fix(
    agent: str, problem: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(ValidationError) as caught:
        DiscordSettings(user_agent=agent)
    text = str(caught.value)
    assert problem in text
    assert "set DISCORD_USER_AGENT to 'DiscordBot (<url of the bot>, <version>)'" in text
    # Read from the environment, the problem is reported on the variable's own line.
    monkeypatch.setenv("DISCORD_USER_AGENT", agent)
    with pytest.raises(SettingsError) as loaded:
        DiscordSettings.load()
    (line,) = loaded.value.lines
    assert line.startswith(f"DISCORD_USER_AGENT: {agent!r} ")
    assert problem in line


def test_route_keys_and_major_parameters() -> None:
    read = routes.GET_MESSAGES.compile(channel_id="10")
    assert (read.key, read.major, read.label) == (
        "GET /channels/{channel_id}/messages",
        "10",
        "GET /channels/{channel_id}/messages",
    )
    put = routes.ADD_REACTION.compile(channel_id="10", message_id="11", emoji="👍")
    delete = routes.DELETE_OWN_REACTION.compile(channel_id="10", message_id="11", emoji="x:1")
    assert put.key == delete.key  # one bucket per channel for every reaction change
    assert put.path.endswith("/reactions/%F0%9F%91%8D/@me")
    hook = routes.EXECUTE_WEBHOOK.compile(webhook_id="7", webhook_token="s3cr3t/en")
    assert hook.major == f"7:{token_id('s3cr3t/en')}"
    assert hook.webhook_key == hook.major
    assert "s3cr3t" not in repr(hook)
    assert hook.path == "/webhooks/7/s3cr3t%2Fen"
    assert hook.redacted_path == f"/webhooks/7/<redacted:{token_id('s3cr3t/en')}>"
    assert routes.GET_CURRENT_USER.compile().major == "-"
    followup = routes.CREATE_FOLLOWUP.compile(application_id="1", interaction_token="abc")
    assert followup.webhook_key is None
    assert followup.route.interaction
    with pytest.raises(ValueError, match="needs parameter 'channel_id'"):
        routes.GET_CHANNEL.compile()


def test_delete_age_buckets() -> None:
    now_ms = time.time() * 1000

    def snowflake(age_ms: float) -> str:
        return str(int(now_ms - age_ms - DISCORD_EPOCH_MS) << 22)

    assert _delete_age_suffix(snowflake(1000), now_ms=now_ms) == "#lt10s"
    assert _delete_age_suffix(snowflake(60_000), now_ms=now_ms) == ""
    assert _delete_age_suffix(snowflake(15 * 86400_000), now_ms=now_ms) == "#gt14d"
    assert _delete_age_suffix("not-a-snowflake") == ""
    old = routes.DELETE_MESSAGE.compile(channel_id="1", message_id=snowflake(15 * 86400_000))
    assert old.key.endswith("#gt14d")


def test_tokens_rotate_from_a_file(tmp_path: Path) -> None:
    secret = tmp_path / "token"
    secret.write_text("first\n")
    source = FileToken(secret)
    assert source.current() == "first"
    assert source.current() == "first"
    secret.write_text("second-token")
    os.utime(secret, ns=(time.time_ns(), time.time_ns() + 1_000_000))
    assert source.current() == "second-token"
    assert "second" not in repr(source)
    secret.unlink()
    with pytest.raises(ConfigError, match="cannot be read"):
        source.current()
    assert StaticToken(None).current() is None
    assert StaticToken("  ").current() is None
    assert StaticToken(SecretStr("abc")).current() == "abc"
    assert "abc" not in repr(StaticToken("abc"))
    # Read once when the client is built: an unreadable file stops the process at start.
    with pytest.raises(ConfigError, match="cannot be read"):
        token_source(DiscordSettings(token_file=secret))
    secret.write_text("third")
    assert isinstance(token_source(DiscordSettings(token_file=secret)), FileToken)
    assert token_source(DiscordSettings(token=SecretStr("x"))).current() == "x"


def test_webhook_urls() -> None:
    ref = WebhookRef.from_url("https://discord.com/api/webhooks/1246251869798400003/ab-C_d.e")
    assert ref.id == "1246251869798400003"
    assert ref.token.get_secret_value() == "ab-C_d.e"
    assert "ab-C" not in repr(ref)
    assert WebhookRef.from_url(
        SecretStr("https://ptb.discord.com/api/v10/webhooks/1246251869798400003/x?wait=true")
    ).id
    with pytest.raises(InvalidInputError, match="not a Discord webhook URL"):
        WebhookRef.from_url("https://example.com/hooks/1")


def test_emoji_normalisation() -> None:
    assert normalize_emoji(" 👍 ") == "👍"
    assert normalize_emoji("<:party:1102867070976000123>") == "party:1102867070976000123"
    assert normalize_emoji("<a:aparty:1102867070976000123>") == "aparty:1102867070976000123"
    assert normalize_emoji("aparty:1102867070976000123") == "aparty:1102867070976000123"
    for bad in ("", "thumbsup", ":thumbsup:", "<:x:1>", "ok👍", "é", "👍 👍", "👍!", "٣"):
        with pytest.raises(InvalidInputError, match=r"not an emoji|empty"):
            normalize_emoji(bad)
    # Emoji built from a keycap's digit, and the five emoji filed as letters or punctuation.
    for good in ("1️⃣", "#️⃣", "ℹ️", "‼️", "⁉️", "〰️", "〽️", "👩🏽‍💻", "🇫🇷", "©️"):
        assert normalize_emoji(good) == good
