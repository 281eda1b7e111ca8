"""Engine and session factories.  Call them after fork, once per process, and pass them on."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import structlog
from sqlalchemy import Connection, Engine, create_engine, event, exc
from sqlalchemy.orm import Session, sessionmaker

from shared.errors import ConfigError

__all__ = [
    "IDLE_PING_SECONDS",
    "after_commit",
    "make_engine",
    "make_sessionmaker",
    "one_statement",
    "reading_session",
    "session_scope",
]

log = structlog.get_logger(__name__)

_WAL_ATTEMPTS = 20
#: A pooled PostgreSQL connection idle at least this long is pinged before it is handed out.
IDLE_PING_SECONDS = 5.0
_CHECKED_IN_AT = "summarybot_checked_in_at"
_AFTER_COMMIT = "summarybot_after_commit"


def make_engine(url: str, **kwargs: Any) -> Engine:
    """Build an engine with settings fit for long-running workers.

    A PostgreSQL connection that sat idle in the pool for :data:`IDLE_PING_SECONDS` or more
    is checked before use, and connections are replaced after half an hour: a server that
    failed over or restarted while the process was quiet is noticed (and the whole pool
    replaced) instead of surfacing as an error in a task.  A connection in steady use is not
    pinged on every checkout (``pool_pre_ping`` cost a round trip per transaction, several per
    job); one the server dropped in between fails its statement with a disconnect error,
    which invalidates the pool and which :func:`shared.errors.classify` sorts as transient, so
    the task is retried on fresh connections.  ``pool_pre_ping=True`` still forces a ping on
    every checkout.  SQLite gets WAL, a busy timeout and write transactions that lock at their
    start (see :func:`_sqlite_begin`) so an in-process worker thread and the CLI can share one
    file.
    """
    if url.startswith("sqlite"):
        database = url.split(":///", 1)[-1]
        if database and database != ":memory:":
            _make_parent(Path(database))
        engine = create_engine(url, connect_args={"timeout": 30}, **kwargs)
        event.listen(engine, "connect", _sqlite_pragmas)
        event.listen(engine, "begin", _sqlite_begin)
        return engine
    kwargs.setdefault("pool_size", 5)
    kwargs.setdefault("max_overflow", 5)
    kwargs.setdefault("pool_recycle", 1800)
    engine = create_engine(url, **kwargs)
    if not kwargs.get("pool_pre_ping"):
        _ping_after_idle(engine, IDLE_PING_SECONDS)
    return engine


def _make_parent(database: Path) -> None:
    """Create the SQLite file's directory, or say in one line which setting to fix."""
    try:
        database.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(
            f"the SQLite database's directory {str(database.parent)!r} cannot be created "
            f"({exc.strerror}); point SUMMARYBOT_DATA_DIR (or a sqlite:/// DATABASE_URL) at a "
            "writable directory"
        ) from None


def _ping_after_idle(engine: Engine, idle_seconds: float) -> None:
    """Ping a pooled connection on checkout when it was checked in ``idle_seconds`` ago."""
    dialect = engine.dialect

    def on_checkin(_dbapi_connection: Any, record: Any) -> None:
        record.info[_CHECKED_IN_AT] = time.monotonic()

    def on_checkout(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
        checked_in_at = record.info.get(_CHECKED_IN_AT)
        if checked_in_at is None or time.monotonic() - checked_in_at < idle_seconds:
            return
        try:
            dialect.do_ping(dbapi_connection)
        except dialect.loaded_dbapi.Error as error:
            if not dialect.is_disconnect(error, dbapi_connection, None):
                raise
            # The others were idle as long: after a failover every one of them is dead.  The
            # pool replaces them all and hands out a fresh connection.
            raise exc.InvalidatePoolError() from error

    event.listen(engine, "checkin", on_checkin)
    event.listen(engine, "checkout", on_checkout)


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    # BEGIN is ours (``_sqlite_begin``), not sqlite3's: left to itself the driver begins a
    # transaction only at the first INSERT/UPDATE/DELETE, so the SELECTs before it (a claim's
    # read) run outside any transaction.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    # The busy timeout first: switching to WAL itself needs a lock another process may hold.
    cursor.execute("PRAGMA busy_timeout=30000")
    _switch_to_wal(cursor)
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def _sqlite_begin(connection: Connection) -> None:
    """Start a SQLAlchemy transaction on SQLite with ``BEGIN IMMEDIATE``.

    SQLite has no row locks and ignores ``FOR UPDATE``; the immediate transaction takes the
    database's write lock at its start, so two transactions that read a row and then write
    depending on it (an outbox claim) run one after the other, as ``SELECT ... FOR UPDATE``
    makes them on PostgreSQL.  The busy timeout makes the second wait instead of failing.  In
    WAL mode readers outside a transaction are not blocked; reads that need no transaction use
    an autocommit connection, on which no ``BEGIN`` is sent at all.
    """
    if connection.get_execution_options().get("isolation_level") == "AUTOCOMMIT":
        return
    dbapi_connection: Any = connection.connection.dbapi_connection
    # Resetting a connection that ran in AUTOCOMMIT hands transactions back to the driver.
    if dbapi_connection is not None and dbapi_connection.isolation_level is not None:
        dbapi_connection.isolation_level = None
    connection.exec_driver_sql("BEGIN IMMEDIATE")


def _switch_to_wal(cursor: Any) -> None:
    # Two processes opening a new file both hold SHARED and both want EXCLUSIVE to leave the
    # rollback journal; SQLite answers one of them "database is locked" at once rather than
    # deadlock, without consulting the busy timeout.  The other finishes the switch in
    # milliseconds, after which the pragma is a no-op, so trying again is all it takes.
    for attempt in range(_WAL_ATTEMPTS):
        try:
            cursor.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or attempt == _WAL_ATTEMPTS - 1:
                raise
            time.sleep(0.05 * (attempt + 1))


def make_sessionmaker(engine: Engine) -> sessionmaker[Session]:
    """Session factory bound to ``engine``; objects stay usable after commit."""
    return sessionmaker(engine, expire_on_commit=False)


@contextmanager
def session_scope(factory: sessionmaker[Session]) -> Iterator[Session]:
    """A session in one transaction: committed on success, rolled back on any error."""
    with factory() as session, session.begin():
        yield session


@contextmanager
def one_statement(factory: sessionmaker[Session]) -> Iterator[Connection]:
    """A connection for one statement that commits by itself.

    A transaction around a single statement costs two more round trips (``BEGIN`` and
    ``COMMIT``) for nothing: the statement is atomic on its own.  With a factory not bound to
    an engine (a test's connection) it is an ordinary transaction.
    """
    bind = factory.kw.get("bind")
    if isinstance(bind, Engine):
        with bind.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
            yield connection
    else:
        with factory() as session, session.begin():
            yield session.connection()


@contextmanager
def reading_session(factory: sessionmaker[Session]) -> Iterator[Session]:
    """A session for reads that need no transaction around them (one row, one query).

    It runs on an autocommit connection: no ``BEGIN`` and ``ROLLBACK`` round trips on
    PostgreSQL, and on SQLite no ``BEGIN IMMEDIATE``, so a read never takes the write lock.
    Several reads in it may see different snapshots; use :func:`session_scope` for reads that
    must agree or that lock rows.  With a factory not bound to an engine (a test's connection)
    it is an ordinary session.
    """
    bind = factory.kw.get("bind")
    if isinstance(bind, Engine):
        with (
            bind.connect().execution_options(isolation_level="AUTOCOMMIT") as connection,
            factory(bind=connection) as session,
        ):
            yield session
    else:
        with factory() as session:
            yield session


def after_commit(session: Session, callback: Callable[[], None]) -> None:
    """Run ``callback`` once ``session``'s transaction has committed; drop it on rollback.

    For what must only happen to written data (counting a job's end): the caller's transaction
    may still fail after the write.  A failing callback is logged, never raised: the data is
    committed by then.
    """
    session.info.setdefault(_AFTER_COMMIT, []).append(callback)


@event.listens_for(Session, "after_commit")
def _run_after_commit(session: Session) -> None:
    for callback in session.info.pop(_AFTER_COMMIT, ()):
        try:
            callback()
        except Exception as exc:  # noqa: BLE001 - the transaction is already committed
            log.warning("db.after_commit_failed", error=repr(exc))


@event.listens_for(Session, "after_rollback")
def _drop_after_commit(session: Session) -> None:
    session.info.pop(_AFTER_COMMIT, None)
