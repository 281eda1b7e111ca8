"""``summarybot bot`` stops with one line saying what to fix, never a traceback: a token
Discord refuses, a metrics port that is taken.  discord.py is pointed at the fake Discord by
its REST base (it has no setting for it), as the bot harness does."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import discord.http
import pytest
import typer

from producers.cli.bot_commands import run_bot
from shared.crypto import generate_key
from shared.discord.config import DiscordSettings
from shared.settings import MetricsSettings, Settings, load_settings
from tests.fakes.discord_server import FakeDiscordServer, seed_basic


@pytest.fixture
def fake_discord(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeDiscordServer]:
    with FakeDiscordServer() as server:
        seed_basic(server.fake)
        monkeypatch.setattr(discord.http.Route, "BASE", server.api_base)
        yield server


def _settings(database_url: str, redis_url: str, tmp_path: Path, **overrides: object) -> Settings:
    return load_settings(
        database_url=database_url,
        redis_url=redis_url,
        secret_keys=generate_key(),
        data_dir=tmp_path,
        **overrides,
    )


def _one_line(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert "Traceback" not in err
    return err


def test_a_token_discord_refuses_is_one_line_and_exit_2(
    fake_discord: FakeDiscordServer,
    database_url: str,
    redis_url: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    settings = _settings(
        database_url, redis_url, tmp_path, discord=DiscordSettings(token="not-the-bot-token")
    )
    with pytest.raises(typer.Exit) as exc:
        run_bot(settings)
    assert exc.value.exit_code == 2
    err = _one_line(capsys)
    assert err.startswith("summarybot: DISCORD_TOKEN: Discord refused the token")
    assert "Reset Token" in err


def test_a_taken_metrics_port_is_one_line_before_logging_in(
    fake_discord: FakeDiscordServer,
    database_url: str,
    redis_url: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        settings = _settings(
            database_url,
            redis_url,
            tmp_path,
            discord=DiscordSettings(token="not-the-bot-token"),
            metrics=MetricsSettings(port=port, host="127.0.0.1"),
        )
        with pytest.raises(typer.Exit) as exc:
            run_bot(settings)
    assert exc.value.exit_code == 2
    err = _one_line(capsys)
    # Refused before logging in (with this token, logging in would have failed first).
    assert err.startswith(f"summarybot: METRICS_PORT: {port} on 127.0.0.1 cannot be served")
