"""The ``summarybot`` CLI on the embedded default: real pipeline, in-process worker thread."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest
from typer.testing import CliRunner

from producers.cli.main import cli, demo_export
from shared.crypto import SecretBox, generate_key
from shared.db.migrate import head
from tests.support.discord_tenants import DiscordTenants

SCHEMA = json.loads(
    (Path(__file__).parents[2] / "schema" / "json" / "summary-document.v1.json").read_text()
)

runner = CliRunner()


def _jobs(data_dir: Path) -> int:
    db = data_dir / "summarybot.db"
    if not db.exists():
        return 0
    with sqlite3.connect(db) as conn:
        tables = {r[0] for r in conn.execute("select name from sqlite_master")}
        return conn.execute("select count(*) from jobs").fetchone()[0] if "jobs" in tables else 0


@pytest.fixture
def data_dir(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    monkeypatch.setenv("SUMMARYBOT_DATA_DIR", str(tmp_path / "data"))
    return tmp_path / "data"


def test_demo_prints_a_cited_summary(data_dir: Path) -> None:
    result = runner.invoke(cli, ["demo"])
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert out.startswith("Summary of #")
    for section in ("Overview", "Topics", "Key points", "Participants", "Citations"):
        assert f"\n{section}\n" in out
    citations = [line for line in out.splitlines() if line.startswith("  [")]
    assert len(citations) >= 3
    assert all("https://discord.com/channels/" in line for line in citations)
    assert "done in" in out
    assert _jobs(data_dir) == 1


def test_demo_json_validates_against_the_schema(data_dir: Path, tmp_path: Path) -> None:
    output = tmp_path / "out" / "summary.json"
    result = runner.invoke(cli, ["demo", "--json", "--format", "technical", "-o", str(output)])
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    jsonschema.validate(document, SCHEMA)
    assert document["summary"]["format"] == "technical"
    assert len(document["summary"]["citations"]) >= 3
    assert json.loads(output.read_text()) == document


@pytest.mark.parametrize("fmt", ["brief", "structured", "detailed"])
def test_every_format_runs(data_dir: Path, fmt: str) -> None:
    result = runner.invoke(
        cli, ["summarize", str(demo_export()), "--format", fmt, "--max-messages", "300"]
    )
    assert result.exit_code == 0, result.output
    assert f"({fmt})" in result.stdout.splitlines()[0]
    assert "300 messages" in result.stdout.splitlines()[1]


def _bad(tmp_path: Path, name: str, text: str | None) -> Path:
    path = tmp_path / name
    if text is not None:
        path.write_text(text)
    return path


@pytest.mark.parametrize(
    ("name", "text", "expected"),
    [
        ("missing.json", None, "no such file"),
        ("broken.json", '{"guild": {"id": "1"}, "messages": [', "JSON"),
        ("other.json", '{"hello": "world"}', "DiscordChatExporter"),
        ("list.json", "[1, 2, 3]", "message at index 0 is not a JSON object"),
    ],
)
def test_bad_input_is_one_line_exit_2_and_no_job(
    data_dir: Path, tmp_path: Path, name: str, text: str | None, expected: str
) -> None:
    result = runner.invoke(cli, ["summarize", str(_bad(tmp_path, name, text))])
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("summarybot: ") and expected in lines[0]
    assert _jobs(data_dir) == 0


def test_invalid_setting_is_one_line_per_variable(
    data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MAX_MESSAGES", "zero")
    result = runner.invoke(cli, ["demo"])
    assert result.exit_code == 2
    assert result.stderr.strip().splitlines() == [
        "summarybot: MAX_MESSAGES: Input should be a valid integer, unable to parse string as an "
        "integer; give a whole number between 1 and 1000000"
    ]
    assert _jobs(data_dir) == 0


@pytest.mark.parametrize("command", [["worker"], ["beat"], ["flower", "--basic-auth", "a:b"]])
def test_processes_that_need_redis_say_so(data_dir: Path, command: list[str]) -> None:
    result = runner.invoke(cli, command)
    assert result.exit_code == 2
    assert "REDIS_URL is not set" in result.stderr


def test_flower_requires_basic_auth(data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REDIS_URL", "redis://127.0.0.1:6379/9")
    monkeypatch.setenv("DATABASE_URL", "postgresql://127.0.0.1/summarybot")
    result = runner.invoke(cli, ["flower"])
    assert result.exit_code == 2
    assert "--basic-auth" in result.stderr


def test_migrate_up_and_down_on_sqlite(data_dir: Path) -> None:
    up = runner.invoke(cli, ["migrate"])
    assert up.exit_code == 0, up.output
    assert up.stdout.strip() == f"database at revision {head()}"
    down = runner.invoke(cli, ["migrate", "--downgrade", "--revision", "base"])
    assert down.exit_code == 0 and "revision base" in down.stdout


def test_console_script_runs_the_demo(tmp_path: Path) -> None:
    env = {"PATH": "/usr/bin:/bin", "SUMMARYBOT_DATA_DIR": str(tmp_path), "HOME": str(tmp_path)}
    result = subprocess.run(
        [sys.executable, "-m", "producers.cli.main", "demo"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "Citations" in result.stdout


def _console(tmp_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """``summarybot ARGS`` as an operator runs it: its own process, a clean environment."""
    base = {
        "PATH": "/usr/bin:/bin",
        "HOME": str(tmp_path),
        "PYTHONPATH": str(Path(__file__).parents[2]),
        "SUMMARYBOT_DATA_DIR": str(tmp_path / "data"),
    }
    return subprocess.run(
        [sys.executable, "-m", "producers.cli.main", *args],
        env={**base, **env},
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def _one_line(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.startswith("summarybot: ")]
    assert len(lines) == 1, result.stderr
    return lines[0]


def test_an_unusable_data_directory_is_one_line(tmp_path: Path) -> None:
    taken = tmp_path / "a-file"
    taken.write_text("not a directory")
    line = _one_line(_console(tmp_path, "demo", SUMMARYBOT_DATA_DIR=str(taken / "data")))
    assert "cannot be created" in line and "SUMMARYBOT_DATA_DIR" in line
    services = {
        "DATABASE_URL": "postgresql://127.0.0.1:1/x",
        "REDIS_URL": "redis://127.0.0.1:1",
        "SECRET_KEYS": generate_key(),
    }
    line = _one_line(_console(tmp_path, "beat", SUMMARYBOT_DATA_DIR=str(taken), **services))
    assert line.startswith("summarybot: SUMMARYBOT_DATA_DIR: ") and "cannot be created" in line


def test_beat_creates_its_data_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # The default (~/.local/share/summarybot) does not exist on a fresh host; Celery's
    # schedule shelve died there with a traceback.
    from producers.cli import processes

    started: list[list[str]] = []

    class App:
        def start(self, argv: list[str]) -> None:
            started.append(argv)

    monkeypatch.setattr(processes, "publisher_app", lambda *a, **k: App())
    monkeypatch.setenv("SUMMARYBOT_DATA_DIR", str(tmp_path / "new" / "data"))
    monkeypatch.setenv("DATABASE_URL", "postgresql://127.0.0.1/summarybot")
    monkeypatch.setenv("REDIS_URL", "redis://127.0.0.1:6379/9")
    monkeypatch.setenv("SECRET_KEYS", generate_key())
    result = runner.invoke(cli, ["beat"])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "new" / "data").is_dir()
    assert f"--schedule={tmp_path / 'new' / 'data' / 'celerybeat-schedule'}" in started[0]


def test_an_unknown_migration_revision_is_one_line(tmp_path: Path) -> None:
    line = _one_line(_console(tmp_path, "migrate", "--revision", "no-such-rev"))
    assert "cannot upgrade the database to 'no-such-rev'" in line
    assert "known revisions (0001, " in line and head() in line


@pytest.fixture
def discord_env(
    data_dir: Path, monkeypatch: pytest.MonkeyPatch, discord_tenants: DiscordTenants
) -> DiscordTenants:
    monkeypatch.setenv("DISCORD_TOKEN", discord_tenants.token)
    monkeypatch.setenv("DISCORD_API_BASE", discord_tenants.server.api_base)
    return discord_tenants


@pytest.mark.parametrize("where", ["--channel", "--post-to"])
def test_a_channel_of_another_guild_is_refused_before_anything_runs(
    data_dir: Path, discord_env: DiscordTenants, where: str
) -> None:
    guild, channel = discord_env.tenant()
    _, foreign = discord_env.tenant()
    history = len(discord_env.history_requests())
    args = ["summarize", "--guild", guild, "--channel", channel, "--post-to", channel]
    args[args.index(where) + 1] = foreign
    result = runner.invoke(cli, args)
    assert result.exit_code == 2, result.output
    assert result.stderr.strip().splitlines() == [
        f"summarybot: no channel {foreign} in this server"
    ]
    missing = runner.invoke(
        cli, [*args[: args.index(where) + 1], "1" * 18, *args[args.index(where) + 2 :]]
    )
    assert missing.stderr.strip() == f"summarybot: no channel {'1' * 18} in this server"
    assert _jobs(data_dir) == 0
    assert len(discord_env.history_requests()) == history


def test_a_channel_of_the_guild_is_summarized_and_posted(
    data_dir: Path, discord_env: DiscordTenants
) -> None:
    guild, channel = discord_env.tenant()
    fake = discord_env.server.fake
    with fake.lock:
        people = [fake.add_user(name) for name in ("ana", "ben")]
        for person in people:
            fake.add_member(fake.guilds[int(guild)], person)
        fake.add_history(
            fake.channels[int(channel)],
            people,
            12,
            start_ms=fake.now_ms() - 3_600_000,
            step_ms=60_000,
        )
    before = len([m for m in fake.messages.values() if m.channel_id == int(channel)])
    result = runner.invoke(
        cli,
        ["summarize", "--guild", guild, "--channel", channel, "--hours", "2", "--post-to", channel],
    )
    assert result.exit_code == 0, result.output
    assert "messages cited" in result.stdout
    after = [m for m in fake.messages.values() if m.channel_id == int(channel)]
    assert len(after) > before  # the summary was posted in the channel too
    assert _jobs(data_dir) == 1


def test_the_command_line_loads_no_server_until_a_command_needs_one() -> None:
    # `summarybot summarize` and the other local commands run in processes whose memory and
    # start-up the benchmarks measure: the API (FastAPI, uvicorn) and the bot (discord.py)
    # are imported by their own commands only.
    probe = (
        "import sys, producers.cli.main\n"
        "heavy = ('producers.api', 'producers.bot', 'fastapi', 'starlette', 'uvicorn', 'discord')\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in heavy or m.startswith(heavy)))\n"
    )
    loaded = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True
    ).stdout
    assert loaded.strip() == "[]"


def test_erase_member_in_one_guild_or_every_guild(data_dir: Path) -> None:
    # docs/operations.md, "Retention and erasure": the operator's way to honour a request.
    import uuid
    from datetime import UTC, datetime

    from schema.models.jobs import Job
    from shared.db.engine import make_engine, make_sessionmaker

    assert runner.invoke(cli, ["migrate"]).exit_code == 0
    member, guilds = "400000000000000001", ("100000000000000001", "100000000000000002")
    engine = make_engine(f"sqlite:///{data_dir / 'summarybot.db'}")
    factory = make_sessionmaker(engine)
    now = datetime.now(UTC)
    with factory() as session, session.begin():
        for guild in guilds:
            session.add(
                Job(
                    id=uuid.uuid4(),
                    origin="bot",
                    status="completed",
                    guild_id=guild,
                    channel_id="1",
                    requested_by=member,
                    params={},
                    progress={},
                    created_at=now,
                    updated_at=now,
                )
            )

    def requesters() -> list[str | None]:
        with factory() as session:
            jobs = session.query(Job).order_by(Job.guild_id).all()
            return [job.requested_by for job in jobs]

    one = runner.invoke(cli, ["erase-member", "--guild", guilds[0], "--user", member])
    assert one.exit_code == 0, one.output
    assert one.stdout.startswith(
        f"erased member {member} in guild {guilds[0]}: 0 summaries, 1 jobs"
    )
    assert requesters() == [None, member]
    every = runner.invoke(cli, ["erase-member", "--guild", "*", "--user", member])
    assert every.exit_code == 0 and "in every guild: 0 summaries, 1 jobs" in every.stdout
    assert requesters() == [None, None]
    bad = runner.invoke(cli, ["erase-member", "--guild", "*", "--user", "alice"])
    assert bad.exit_code == 2 and "is not a Discord id" in bad.stderr
    engine.dispose()


def test_a_new_key_needs_no_settings(tmp_path: Path) -> None:
    # Every SECRET_KEYS error says to run it: it failed on the broken SECRET_KEYS itself.
    result = _console(tmp_path, "rotate-keys", "--generate", SECRET_KEYS="not-a-key")
    assert result.returncode == 0, result.stderr
    key = result.stdout.strip()
    SecretBox([key])  # a valid Fernet key, alone on stdout
    assert "put this key first in SECRET_KEYS" in result.stderr


def test_a_downgrade_names_its_revision(tmp_path: Path) -> None:
    # Without --revision it went "down" to head: nothing happened, and it exited 0.
    line = _one_line(_console(tmp_path, "migrate", "--downgrade"))
    assert line == (
        "summarybot: --downgrade needs --revision: the revision to go back to (e.g. 0006, or base)"
    )


def test_log_level_in_dot_env_is_heard_by_quiet_commands(tmp_path: Path) -> None:
    # Only the environment's LOG_LEVEL lifted a quiet command's WARNING; .env's was ignored.
    quiet = _console(tmp_path, "demo")
    assert quiet.returncode == 0 and '"level": "info"' not in quiet.stderr
    (tmp_path / ".env").write_text("LOG_LEVEL=INFO\n")
    told = _console(tmp_path, "demo")
    assert told.returncode == 0 and '"level": "info"' in told.stderr


def test_terminal_control_sequences_in_an_export_never_reach_the_terminal(
    data_dir: Path, tmp_path: Path
) -> None:
    texts = [
        "The release build fails on ARM since version 2.3 with a linker error in libssl.",
        "We decided to ship the fix in 2.3.1 after the ARM build "
        "\x1b]8;;https://evil.example\x1b\\passes\x1b]8;;\x1b\\ on libssl3.\x1b[2J\x1b[H",
        "Install libssl3 first, then rerun the build script and the ARM linker error goes away.",
        "Yes, the ARM build works now after installing libssl3, thanks\x9b2J a lot for the help.",
    ]
    authors = [{"id": "401", "name": "ana"}, {"id": "402", "name": "ben\x1b[8m\r"}]
    export = {
        "guild": {"id": "111111111111111111", "name": "g\x07"},
        "channel": {"id": "222222222222222222", "name": "support\x1b[5m", "type": "GuildTextChat"},
        "messages": [
            {
                "id": str(1300000000000000000 + i),
                "type": "Default",
                "timestamp": f"2024-11-15T14:0{i}:00+00:00",
                "content": text,
                "author": authors[i % 2],
            }
            for i, text in enumerate(texts)
        ],
    }
    path = tmp_path / "export.json"
    path.write_text(json.dumps(export), encoding="utf-8")
    result = runner.invoke(cli, ["summarize", str(path)])
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert "Summary of #support [5m (structured)" in out
    assert "ben [8m" in out
    unprintable = {c for c in out if not c.isprintable() and c != "\n"}
    assert not unprintable, unprintable
