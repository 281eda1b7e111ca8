"""How the workers' engine notices connections the server dropped, without a ping per checkout."""

from __future__ import annotations

import time
from collections.abc import Iterator

import psycopg
import pytest
from sqlalchemy import Engine, text
from sqlalchemy.exc import OperationalError

from shared.db import engine as engine_module
from shared.db.engine import make_engine
from shared.errors import ErrorKind, classify

pytestmark = pytest.mark.integration


@pytest.fixture
def engine(
    postgres_url: str, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest
) -> Iterator[Engine]:
    """An engine that pings connections idle for 0.2 s (or ``request.param`` seconds)."""
    monkeypatch.setattr(engine_module, "IDLE_PING_SECONDS", getattr(request, "param", 0.2))
    built = make_engine(postgres_url, pool_size=2, max_overflow=0)
    try:
        yield built
    finally:
        built.dispose()


def _backend_pid(engine: Engine) -> int:
    with engine.connect() as connection:
        return int(connection.execute(text("SELECT pg_backend_pid()")).scalar_one())


def _terminate(postgres_url: str, pid: int) -> None:
    dsn = postgres_url.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(dsn, autocommit=True) as admin:
        admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
    time.sleep(0.05)


# A loaded machine may pause the test between two checkouts: the idle time is well above that.
@pytest.mark.parametrize("engine", [1.0], indirect=True)
def test_only_a_connection_idle_for_a_while_is_pinged(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    pings: list[object] = []
    ping = engine.dialect.do_ping

    def counted(dbapi_connection: object) -> bool:
        pings.append(dbapi_connection)
        return ping(dbapi_connection)

    monkeypatch.setattr(engine.dialect, "do_ping", counted)
    pid = _backend_pid(engine)
    for _ in range(5):
        assert _backend_pid(engine) == pid
    assert pings == []
    time.sleep(1.05)
    assert _backend_pid(engine) == pid
    assert len(pings) == 1


def test_an_idle_connection_the_server_dropped_is_replaced_before_use(
    engine: Engine, postgres_url: str
) -> None:
    pid = _backend_pid(engine)
    _terminate(postgres_url, pid)
    time.sleep(0.25)
    assert _backend_pid(engine) != pid


# Terminating the backend may take a while on a loaded machine: no idle ping may replace the
# dropped connection first.
@pytest.mark.parametrize("engine", [60.0], indirect=True)
def test_a_connection_dropped_while_in_use_fails_once_as_transient(
    engine: Engine, postgres_url: str
) -> None:
    pid = _backend_pid(engine)
    _terminate(postgres_url, pid)
    with pytest.raises(OperationalError) as caught, engine.connect() as connection:
        connection.execute(text("SELECT 1"))
    assert classify(caught.value) is ErrorKind.TRANSIENT
    # The disconnect invalidated the pool: the retry runs on a fresh connection.
    assert _backend_pid(engine) != pid
