"""SQLite transactions from ``make_engine`` lock at their start, as FOR UPDATE does on PostgreSQL."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, String, event, insert, select, text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from shared.db.engine import make_engine, make_sessionmaker, one_statement, session_scope


class _Base(DeclarativeBase):
    pass


class _Claim(_Base):
    __tablename__ = "claims"

    id: Mapped[int] = mapped_column(primary_key=True)
    owner: Mapped[str | None] = mapped_column(String(20))


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Engine]:
    built = make_engine(f"sqlite:///{tmp_path / 'lock.db'}")
    _Base.metadata.create_all(built)
    with built.begin() as connection:
        connection.execute(insert(_Claim).values(id=1, owner=None))
    yield built
    built.dispose()


def test_two_claims_of_one_row_serialize(engine: Engine) -> None:
    """Both read the row before either writes: only one of them may see it unclaimed."""
    factory = make_sessionmaker(engine)
    start = threading.Barrier(2)
    have_read = {name: threading.Event() for name in ("a", "b")}
    claimed: list[str] = []
    errors: list[BaseException] = []

    def claim(name: str, other: str) -> None:
        try:
            start.wait(timeout=5)
            with session_scope(factory) as session:
                row = session.get(_Claim, 1, with_for_update=True)
                assert row is not None
                have_read[name].set()
                # Without a lock taken at BEGIN the other thread reads the same unclaimed row
                # meanwhile; with it the other waits for our commit, and this wait times out.
                have_read[other].wait(timeout=1.0)
                if row.owner is None:
                    row.owner = name
                    claimed.append(name)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [
        threading.Thread(target=claim, args=("a", "b")),
        threading.Thread(target=claim, args=("b", "a")),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert not errors
    assert len(claimed) == 1
    with factory() as session:
        assert session.scalar(select(_Claim.owner).where(_Claim.id == 1)) == claimed[0]


def test_autocommit_sends_no_begin_and_the_next_transaction_locks(engine: Engine) -> None:
    factory = make_sessionmaker(engine)
    sent: list[str] = []

    def record(_conn: object, _cursor: object, statement: str, *_args: object) -> None:
        sent.append(statement)

    event.listen(engine, "before_cursor_execute", record)
    try:
        with one_statement(factory) as connection:
            connection.execute(text("UPDATE claims SET owner = 'x' WHERE id = 1"))
        assert not any(statement.startswith("BEGIN") for statement in sent)
        # The autocommit write is visible at once, from another connection.
        with engine.connect() as other:
            assert other.scalar(text("SELECT owner FROM claims WHERE id = 1")) == "x"
        sent.clear()
        # The pooled connection that ran in AUTOCOMMIT begins immediately again afterwards.
        with session_scope(factory) as session:
            dbapi_connection = session.connection().connection.dbapi_connection
            assert getattr(dbapi_connection, "in_transaction", False)
            assert getattr(dbapi_connection, "isolation_level", "") is None
        assert sent[0] == "BEGIN IMMEDIATE"
    finally:
        event.remove(engine, "before_cursor_execute", record)


def test_savepoints_work_inside_a_transaction(engine: Engine) -> None:
    factory = make_sessionmaker(engine)
    with session_scope(factory) as session:
        session.get_one(_Claim, 1).owner = "kept"
        nested = session.begin_nested()
        session.get_one(_Claim, 1).owner = "undone"
        session.flush()
        nested.rollback()
    with factory() as session:
        assert session.get_one(_Claim, 1).owner == "kept"
