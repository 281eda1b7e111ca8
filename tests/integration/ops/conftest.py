"""Fixtures of the operations tests: a PostgreSQL database of their own, migrated to head.

The digest dispatcher works on every due schedule in its database, so these tests get a
database no other test writes schedules to.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from shared.db.engine import make_engine, make_sessionmaker
from tests.support.databases import fresh_database


@pytest.fixture(scope="module")
def ops_db(postgres_url: str) -> Iterator[str]:
    """URL of a fresh, migrated PostgreSQL database for one test module."""
    with fresh_database(postgres_url, prefix="sb_ops") as database_url:
        yield database_url


@pytest.fixture
def engine(ops_db: str) -> Iterator[Engine]:
    engine = make_engine(ops_db)
    yield engine
    engine.dispose()


@pytest.fixture
def factory(engine: Engine) -> sessionmaker[Session]:
    return make_sessionmaker(engine)
