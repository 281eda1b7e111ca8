from __future__ import annotations

from pathlib import Path

import pytest

from shared.settings import GROUPS, SettingsError, load_settings


def test_defaults_are_the_embedded_mode(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SUMMARYBOT_DATA_DIR", str(tmp_path))
    settings = load_settings()
    assert settings.embedded
    assert settings.broker_url == "memory://localhost/"
    assert settings.result_backend is None
    assert settings.effective_database_url == f"sqlite:///{tmp_path / 'summarybot.db'}"


def test_service_urls_switch_to_redis_and_postgres(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", "postgresql://u:p@db:5432/sb")
    monkeypatch.setenv("REDIS_URL", "redis://cache:6379/0")
    settings = load_settings()
    assert not settings.embedded
    assert settings.effective_database_url == "postgresql+psycopg://u:p@db:5432/sb"
    assert settings.broker_url == "redis://cache:6379/0"


def test_blank_urls_mean_unset(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REDIS_URL", "  ")
    assert load_settings().embedded


def test_every_bad_value_gets_one_line_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("DATABASE_URL", "mysql://x/y")
    monkeypatch.setenv("REDIS_URL", "http://cache")
    monkeypatch.setenv("MESSAGE_CACHE_TTL", "5")
    monkeypatch.setenv("LOG_LEVEL", "loud")
    with pytest.raises(SettingsError) as caught:
        load_settings()
    lines = caught.value.lines
    assert len(lines) == 4
    by_var = {line.split(":", 1)[0]: line for line in lines}
    assert set(by_var) == {"DATABASE_URL", "REDIS_URL", "MESSAGE_CACHE_TTL", "LOG_LEVEL"}
    assert "'mysql'" in by_var["DATABASE_URL"] and "postgresql+psycopg://" in by_var["DATABASE_URL"]
    assert "not a Redis URL" in by_var["REDIS_URL"]
    assert "between 60 and 604800" in by_var["MESSAGE_CACHE_TTL"]


def test_redis_url_needs_a_host(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REDIS_URL", "redis://")
    with pytest.raises(SettingsError, match="REDIS_URL: it has no host"):
        load_settings()


def test_a_port_that_is_not_a_number_is_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    # compose builds DATABASE_URL from POSTGRES_PASSWORD: a password holding "@" and ":"
    # moved part of it into the port, and each process died with a ValueError traceback.
    monkeypatch.setenv("DATABASE_URL", "postgresql://summarybot:p@ss:w0rd@postgres:5432/sb")
    monkeypatch.setenv("REDIS_URL", "redis://127.0.0.1:abc/7")
    with pytest.raises(SettingsError) as caught:
        load_settings()
    by_var = {line.split(":", 1)[0]: line for line in caught.value.lines}
    assert set(by_var) == {"DATABASE_URL", "REDIS_URL"}
    assert "port is not a number" in by_var["DATABASE_URL"]
    assert "percent-encode (%40 %3A %2F)" in by_var["DATABASE_URL"]
    assert "w0rd" not in by_var["DATABASE_URL"]  # no piece of the password
    assert "the port in '127.0.0.1:abc' is not a number; percent-encode" in by_var["REDIS_URL"]


def test_secrets_never_show_in_repr_or_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-verysecretvalue1234567890")
    monkeypatch.setenv("DISCORD_TOKEN", "discord-token-value")
    settings = load_settings()
    text = repr(settings) + str(settings.model_dump())
    assert "verysecret" not in text and "discord-token-value" not in text
    assert settings.llm.api_key is not None
    assert settings.llm.api_key.get_secret_value() == "sk-verysecretvalue1234567890"


#: One variable of every group: (group, variable, value in .env, field, value read).
GROUP_SAMPLES = [
    ("core", "VISIBILITY_TIMEOUT", "120", "visibility_timeout", 120),
    (
        "discord",
        "DISCORD_API_BASE",
        "http://127.0.0.1:9/api/v10/",
        "api_base",
        "http://127.0.0.1:9/api/v10",
    ),
    ("llm", "LLM_MAP_INPUT_TOKENS", "4000", "map_input_tokens", 4000),
    ("delivery", "WEBHOOK_TIMEOUT", "7", "webhook_timeout", 7.0),
    ("bot", "BOT_SYNC_COMMANDS", "false", "sync_commands", False),
    ("api", "API_WORKERS", "3", "workers", 3),
    ("metrics", "METRICS_PORT", "9109", "port", 9109),
]


@pytest.mark.parametrize(("group", "name", "raw", "field", "expected"), GROUP_SAMPLES)
def test_every_group_reads_dotenv_and_the_environment_alike(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    group: str,
    name: str,
    raw: str,
    field: str,
    expected: object,
) -> None:
    monkeypatch.chdir(tmp_path)

    def read() -> object:
        settings = load_settings()
        return getattr(settings if group == "core" else getattr(settings, group), field)

    default = read()
    (tmp_path / ".env").write_text(f"# a comment\n{name.lower()}={raw}\n")
    assert read() == expected != default
    (tmp_path / ".env").write_text(f"{name}=\n")  # blank is unset, in every group
    assert read() == default
    (tmp_path / ".env").write_text(f"{name}=not-a-valid-{name.lower()}!\n")
    with pytest.raises(SettingsError) as info:
        load_settings()
    assert info.value.lines[0].startswith(f"{name}: ")
    monkeypatch.setenv(name, raw)  # the environment wins over .env
    assert read() == expected


def test_every_root_group_is_covered_by_the_samples() -> None:
    assert {sample[0] for sample in GROUP_SAMPLES} == {"core", *GROUPS}


def test_dotenv_file_is_read(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / ".env").write_text("VISIBILITY_TIMEOUT=120\nlog_level=debug\n")
    settings = load_settings()
    assert settings.visibility_timeout == 120
    assert settings.log_level == "DEBUG"


def _lines(monkeypatch: pytest.MonkeyPatch, **env: str) -> list[str]:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(SettingsError) as caught:
        load_settings()
    return caught.value.lines


@pytest.mark.parametrize("database", ["abc", "0x1", "5/extra"])
def test_a_redis_database_that_is_not_a_number_is_refused(
    monkeypatch: pytest.MonkeyPatch, database: str
) -> None:
    # redis-py would silently use database 0; kombu refuses it with a traceback later.
    monkeypatch.setenv("DATABASE_URL", "postgresql://db/sb")
    [line] = _lines(monkeypatch, REDIS_URL=f"redis://127.0.0.1:6379/{database}")
    assert line.startswith("REDIS_URL: the database ") and "is not a number" in line
    monkeypatch.setenv("REDIS_URL", "redis://127.0.0.1:6379/5")
    assert load_settings().redis_url == "redis://127.0.0.1:6379/5"
    monkeypatch.setenv("REDIS_URL", "rediss://:pw@cache.example:6380")
    assert not load_settings().embedded


def test_redis_without_a_database_url_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Each process would open a SQLite file of its own: workers never see the API's jobs.
    [line] = _lines(monkeypatch, REDIS_URL="redis://127.0.0.1:6379/0")
    assert line.startswith("DATABASE_URL: not set while REDIS_URL is;")
    assert "postgresql+psycopg://" in line and "unset REDIS_URL" in line
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{tmp_path / 'shared.db'}")  # chosen: fine
    assert not load_settings().embedded


def test_a_malformed_secret_key_stops_every_process_without_showing_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from shared.crypto import generate_key

    [line] = _lines(monkeypatch, SECRET_KEYS=f"{generate_key()},not-a-real-fernet-key")
    assert line.startswith("SECRET_KEYS: key 2 of 2 is not a valid Fernet key")
    assert "rotate-keys --generate" in line and "not-a-real" not in line
    monkeypatch.setenv("SECRET_KEYS", f" {generate_key()} , {generate_key()} ")
    assert len(load_settings().secret_keys) == 2


def test_prometheus_multiproc_dir_must_be_a_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # prometheus_client would fail the first sample of a task or a scrape, not the start.
    [line] = _lines(monkeypatch, PROMETHEUS_MULTIPROC_DIR=str(tmp_path / "missing"))
    assert line.startswith("PROMETHEUS_MULTIPROC_DIR: ") and "is not a directory" in line
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
    assert load_settings().metrics.multiproc_dir == tmp_path


def test_only_summarybot_data_dir_sets_the_data_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("SUMMARYBOT_DATA_DIR")
    monkeypatch.setenv("DATA_DIR", str(tmp_path / "someone-elses"))
    assert load_settings().data_dir != tmp_path / "someone-elses"
    assert load_settings(data_dir=tmp_path / "mine").data_dir == tmp_path / "mine"
    monkeypatch.setenv("SUMMARYBOT_DATA_DIR", str(tmp_path / "ours"))
    assert load_settings().data_dir == tmp_path / "ours"


def test_rules_across_variables_name_the_variable_to_change(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    [line] = _lines(monkeypatch, BOT_SHARD_IDS="0,1")
    assert line.startswith("BOT_SHARD_COUNT: not set, and BOT_SHARD_IDS needs it;")
    monkeypatch.delenv("BOT_SHARD_IDS")
    [line] = _lines(monkeypatch, DISCORD_MODE="replay")
    assert line.startswith("DISCORD_RECORDING_PATH: not set, and DISCORD_MODE 'replay' needs it")


def test_a_delivery_lease_longer_than_discord_remembers_a_nonce_is_refused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A part a dead worker was sending goes again when its lease ends, with the same nonce,
    # which Discord only remembers for a few minutes.
    [line] = _lines(monkeypatch, DELIVERY_LEASE_SECONDS="600")
    assert line.startswith("DELIVERY_LEASE_SECONDS: ")
    assert "between 5 and 180" in line


def test_no_variable_is_decoded_outside_the_fields_own_validators(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # pydantic-settings decodes a list, dict or model field's variable as JSON before
    # validation, and its error stops the whole group; every such field must be
    # CommaSeparated or JsonEncoded, so that text which is not JSON is one line among others.
    for group in GROUPS.values():
        for variable in group.variables():
            monkeypatch.setenv(variable, "{not json")
        with pytest.raises(SettingsError) as info:
            group.load()
        assert info.value.lines
