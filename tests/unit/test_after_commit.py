"""Callbacks run after a session's transaction commits, and only then."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import text

from shared.db.engine import after_commit, make_engine, make_sessionmaker


def test_callbacks_run_once_after_commit_and_never_after_rollback(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'a.db'}")
    factory = make_sessionmaker(engine)
    ran: list[str] = []
    with factory() as session:
        with session.begin():
            session.execute(text("SELECT 1"))
            after_commit(session, lambda: ran.append("dropped"))
            session.rollback()
        with session.begin():
            session.execute(text("SELECT 1"))
            after_commit(session, lambda: ran.append("first"))
            assert ran == []  # not before the commit
        with session.begin():
            session.execute(text("SELECT 1"))  # a later transaction runs nothing again
    assert ran == ["first"]
    engine.dispose()


def test_a_failing_callback_is_logged_not_raised(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'b.db'}")
    factory = make_sessionmaker(engine)
    ran: list[str] = []

    def broken() -> None:
        raise RuntimeError("metrics down")

    with factory() as session, session.begin():
        session.execute(text("SELECT 1"))
        after_commit(session, broken)
        after_commit(session, lambda: ran.append("after"))
    assert ran == ["after"]  # the data is committed; the next callback still runs
    engine.dispose()
