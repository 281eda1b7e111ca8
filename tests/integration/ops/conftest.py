"""Fixtures of the operations tests: a PostgreSQL database of their own, migrated to head.

The digest dispatcher works on every due schedule in its database, so these tests get a
database no other test writes schedules to.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import psycopg
import pytest
from sqlalchemy import Engine
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

from shared.db.engine import make_engine, make_sessionmaker
from shared.db.migrate import upgrade


@pytest.fixture(scope="module")
def ops_db(postgres_url: str) -> Iterator[str]:
    """URL of a fresh, migrated PostgreSQL database for one test module."""
    url = make_url(postgres_url)
    name = f"sb_ops_{uuid.uuid4().hex[:12]}"
    admin = f"host={url.host} port={url.port} user={url.username} dbname=postgres"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    database_url = url.set(database=name).render_as_string(hide_password=False)
    try:
        upgrade(database_url)
        yield database_url
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def engine(ops_db: str) -> Iterator[Engine]:
    engine = make_engine(ops_db)
    yield engine
    engine.dispose()


@pytest.fixture
def factory(engine: Engine) -> sessionmaker[Session]:
    return make_sessionmaker(engine)
