"""Alembic environment: which database, which metadata, and how migrations are serialised.

The URL is the one the caller put on the config (``shared.db.migrate`` does), else the settings'
``DATABASE_URL`` or the embedded SQLite file.  Migrations of one database never run twice at
once: PostgreSQL takes a transaction-scoped advisory lock, SQLite a ``BEGIN IMMEDIATE`` write
lock, and whoever waited then finds the work already done.
"""

from __future__ import annotations

from logging.config import fileConfig
from typing import Any

from alembic import context
from sqlalchemy import Connection, Engine, event, text

import schema.models  # noqa: F401  (registers every table on Base.metadata)
from schema.base import Base
from shared.db.engine import make_engine
from shared.settings import load_settings

#: Key of the PostgreSQL advisory lock held while migrating ("sbmigrat" as a number).
PG_LOCK_KEY = 0x73626D6967726174

config = context.config
target_metadata = Base.metadata

# Only the alembic command line configures logging; a program calling the migrate functions
# keeps the logging it set up.
if config.cmd_opts is not None and config.config_file_name is not None:
    fileConfig(config.config_file_name, disable_existing_loggers=False)


def database_url() -> str:
    """The URL set by the caller, else the one the settings name."""
    return config.get_main_option("sqlalchemy.url") or load_settings().effective_database_url


def _sqlite_foreign_keys_off(dbapi_connection: Any, _record: Any) -> None:
    # ``make_engine`` leaves BEGIN to SQLAlchemy, which sends ``BEGIN IMMEDIATE``: the DDL runs in
    # one transaction that holds the write lock.  Batch migrations drop and re-create tables;
    # with foreign keys enforced the drop would cascade into child rows.  The pragma only works
    # outside a transaction, i.e. here, after make_engine's own connect handler turned it on.
    dbapi_connection.execute("PRAGMA foreign_keys=OFF")


def _migration_engine(url: str) -> Engine:
    engine = make_engine(url)
    if engine.dialect.name == "sqlite":
        event.listen(engine, "connect", _sqlite_foreign_keys_off)
    return engine


def _check_sqlite_foreign_keys(connection: Connection) -> None:
    broken = connection.exec_driver_sql("PRAGMA foreign_key_check").fetchall()
    if broken:
        raise RuntimeError(f"migration left rows with dangling foreign keys: {broken[:5]}")


def run_migrations_offline() -> None:
    """Write the SQL of the migrations to stdout (``alembic upgrade head --sql``)."""
    url = database_url()
    context.configure(
        url=url,
        target_metadata=target_metadata,
        literal_binds=True,
        dialect_opts={"paramstyle": "named"},
        compare_type=True,
        render_as_batch=url.startswith("sqlite"),
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    """Migrate the database in one transaction, holding the migration lock throughout."""
    engine = _migration_engine(database_url())
    try:
        with engine.connect() as connection:
            sqlite = connection.dialect.name == "sqlite"
            context.configure(
                connection=connection,
                target_metadata=target_metadata,
                compare_type=True,
                compare_server_default=True,
                render_as_batch=sqlite,
                # SQLite does run DDL transactionally once BEGIN is ours (see above).
                transactional_ddl=True,
            )
            with context.begin_transaction():
                if connection.dialect.name == "postgresql":
                    connection.execute(
                        text("SELECT pg_advisory_xact_lock(:key)"), {"key": PG_LOCK_KEY}
                    )
                context.run_migrations()
                if sqlite:
                    _check_sqlite_foreign_keys(connection)
    finally:
        engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
