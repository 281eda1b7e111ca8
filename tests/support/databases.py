"""Throw-away PostgreSQL databases for tests whose subject scans a whole table.

Most tests share the session's database and tell their rows apart by id; a test of something
that works on *every* row (replaying all dead letters, dispatching every due schedule) needs a
database no other test writes to.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg
from sqlalchemy import Engine
from sqlalchemy.engine import make_url

from shared.db.engine import make_engine
from shared.db.migrate import upgrade


@contextmanager
def fresh_database(
    postgres_url: str, *, prefix: str = "sb_own", revision: str | None = "head"
) -> Iterator[str]:
    """Create a database beside ``postgres_url``, migrate it to ``revision`` (None: leave it
    empty), yield its URL, drop it."""
    url = make_url(postgres_url)
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    admin = f"host={url.host} port={url.port} user={url.username} dbname=postgres"
    if url.password:
        admin += f" password={url.password}"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    database_url = url.set(database=name).render_as_string(hide_password=False)
    try:
        if revision is not None:
            upgrade(database_url, revision)
        yield database_url
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@contextmanager
def postgres_engine(postgres_url: str, *, prefix: str = "sb_own") -> Iterator[Engine]:
    """An engine on a :func:`fresh_database` (migrated to head), disposed of afterwards."""
    with fresh_database(postgres_url, prefix=prefix) as url:
        engine = make_engine(url)
        try:
            yield engine
        finally:
            engine.dispose()
