"""What long-running processes (workers, the bot, beat, Flower) refuse at start: what their
retries cannot fix.  Redis refusing the URL's database, a database never migrated or behind
this release.  A service that is merely down is left to their reconnecting."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import redis
from sqlalchemy import text
from typer.testing import CliRunner

from producers.cli import processes
from producers.cli.main import cli
from shared.crypto import generate_key
from shared.db.engine import make_engine
from shared.db.migrate import head, known_revisions, upgrade
from shared.db.revisions import SCHEMA_HEAD, SCHEMA_REVISIONS
from shared.dependencies import check_redis, check_schema_at_start
from shared.errors import ConfigError
from tests.support.databases import fresh_database

runner = CliRunner()


class _Refusing:
    """A Redis client whose connection is refused as Redis refuses ``SELECT 99``."""

    def __init__(self, error: Exception) -> None:
        self.error = error

    def ping(self) -> None:
        raise self.error

    def close(self) -> None:
        pass


def _redis_answers(monkeypatch: pytest.MonkeyPatch, error: Exception) -> None:
    monkeypatch.setattr(redis.Redis, "from_url", classmethod(lambda cls, *a, **k: _Refusing(error)))


def test_a_database_number_redis_does_not_have_is_one_line(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _redis_answers(monkeypatch, redis.exceptions.ResponseError("DB index is out of range"))
    with pytest.raises(ConfigError, match=r"^REDIS_URL: Redis refused the database number"):
        check_redis("redis://127.0.0.1:6379/99")
    with pytest.raises(ConfigError, match="0 to 15"):
        check_redis("redis://127.0.0.1:6379/99", allow_unreachable=True)


def test_a_redis_that_is_down_is_left_to_reconnecting(monkeypatch: pytest.MonkeyPatch) -> None:
    _redis_answers(monkeypatch, redis.exceptions.ConnectionError("Error 111 connecting"))
    check_redis("redis://127.0.0.1:6390/0", allow_unreachable=True)
    with pytest.raises(ConfigError, match="not reachable"):
        check_redis("redis://127.0.0.1:6390/0")
    _redis_answers(monkeypatch, redis.exceptions.AuthenticationError("WRONGPASS invalid"))
    with pytest.raises(ConfigError, match="refused the credentials"):
        check_redis("redis://:pw@127.0.0.1:6379/0", allow_unreachable=True)


def _sqlite(tmp_path: Path, revision: str | None) -> str:
    url = f"sqlite:///{tmp_path / 'sb.db'}"
    if revision is not None:
        upgrade(url, revision)
    return url


def test_the_schema_must_be_there_and_current(tmp_path: Path) -> None:
    url = _sqlite(tmp_path, None)
    with pytest.raises(ConfigError, match=r"has no tables .* run `summarybot migrate`"):
        check_schema_at_start(url)
    upgrade(url, "0005")
    with pytest.raises(ConfigError, match=f"at schema revision 0005, this release needs {head()}"):
        check_schema_at_start(url)
    upgrade(url, "head")
    check_schema_at_start(url)
    # A newer release migrated it (expand → contract): this release keeps running.
    engine = make_engine(url)
    with engine.begin() as connection:
        connection.execute(text("UPDATE alembic_version SET version_num = '9999'"))
    engine.dispose()
    check_schema_at_start(url)


def test_the_listed_revisions_are_the_migration_scripts() -> None:
    # The start check reads this list instead of loading Alembic: a new migration must be
    # added to shared/db/revisions.py, or processes would start on a database behind it.
    assert known_revisions() == set(SCHEMA_REVISIONS)
    assert sorted(SCHEMA_REVISIONS) == list(SCHEMA_REVISIONS)
    assert head() == SCHEMA_HEAD


def test_a_database_that_is_down_is_left_to_retries() -> None:
    check_schema_at_start("postgresql+psycopg://postgres@127.0.0.1:1/summarybot")


@pytest.fixture
def services(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> list[dict[str, Any]]:
    started: list[dict[str, Any]] = []
    monkeypatch.setattr(processes, "run_worker", lambda settings, **kw: started.append(kw))
    monkeypatch.setenv("REDIS_URL", "redis://127.0.0.1:1/0")  # down: left to reconnecting
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{tmp_path / 'sb.db'}")
    monkeypatch.setenv("SECRET_KEYS", generate_key())  # every worker needs them
    return started


def test_a_worker_on_an_unmigrated_database_does_not_start(
    services: list[dict[str, Any]], tmp_path: Path
) -> None:
    result = runner.invoke(cli, ["worker", "-Q", "fetch"])
    assert result.exit_code == 2, result.output
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("summarybot: DATABASE_URL: the database has no tables")
    assert services == []
    upgrade(f"sqlite:///{tmp_path / 'sb.db'}", "head")
    result = runner.invoke(cli, ["worker", "-Q", "fetch"])
    assert result.exit_code == 0, result.output
    assert [s["queues"] for s in services] == [["fetch"]]


def test_the_api_refuses_a_redis_database_it_cannot_use(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import uvicorn

    from shared.crypto import generate_key

    served: list[object] = []
    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: served.append(app))
    monkeypatch.setenv("DATABASE_URL", "postgresql+psycopg://postgres@127.0.0.1:1/summarybot")
    monkeypatch.setenv("REDIS_URL", "redis://127.0.0.1:6379/99")
    monkeypatch.setenv("SECRET_KEYS", generate_key())
    _redis_answers(monkeypatch, redis.exceptions.ResponseError("DB index is out of range"))
    result = runner.invoke(cli, ["api", "--port", "1"])
    assert result.exit_code == 2, result.output
    assert (
        result.stderr.strip()
        .splitlines()[-1]
        .startswith("summarybot: REDIS_URL: Redis refused the database number")
    )
    assert served == []
    _redis_answers(monkeypatch, redis.exceptions.ConnectionError("Error 111 connecting"))
    assert runner.invoke(cli, ["api", "--port", "1"]).exit_code == 0  # down: /readyz says so
    assert len(served) == 1


def test_the_schema_check_logs_nothing_of_alembics(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    url = _sqlite(tmp_path, "head")
    caplog.set_level("INFO")
    caplog.clear()  # the migration above logs; the check must not
    check_schema_at_start(url)
    assert [r.getMessage() for r in caplog.records if r.name.startswith("alembic")] == []


@pytest.mark.parametrize(
    ("revision", "line"),
    [
        (None, "DATABASE_URL: the database has no tables (it was never migrated)"),
        ("0005", "DATABASE_URL: the database is at schema revision 0005, this release needs"),
    ],
    ids=["never-migrated", "behind"],
)
def test_the_api_refuses_a_database_it_cannot_serve(
    monkeypatch: pytest.MonkeyPatch, postgres_url: str, revision: str | None, line: str
) -> None:
    import uvicorn

    from shared.crypto import generate_key

    served: list[object] = []
    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: served.append(app))
    monkeypatch.setenv("REDIS_URL", "redis://127.0.0.1:1/0")  # down: left to reconnecting
    monkeypatch.setenv("SECRET_KEYS", generate_key())
    with fresh_database(postgres_url, prefix="sb_start", revision=revision) as database:
        monkeypatch.setenv("DATABASE_URL", database)
        result = runner.invoke(cli, ["api", "--port", "1"])
        assert result.exit_code == 2, result.output
        assert result.stderr.strip().splitlines()[-1].startswith(f"summarybot: {line}")
        assert served == []
        upgrade(database, "head")
        assert runner.invoke(cli, ["api", "--port", "1"]).exit_code == 0
    assert len(served) == 1
