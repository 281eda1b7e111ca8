"""Run the Alembic migrations of ``schema/`` from code: upgrade, downgrade, current, ensure.

The same scripts serve ``alembic -c schema/alembic.ini ...`` and these functions; the config is
found next to the installed ``schema`` package, so neither depends on the working directory.
``ensure_schema`` is what the embedded mode calls at start: one short query when the database
is already at head, an upgrade (under the migration lock of ``env.py``) otherwise.
"""

from __future__ import annotations

from functools import cache
from importlib.resources import files
from typing import Literal

import alembic.config
from alembic import command
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util import CommandError
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from shared.db.engine import make_engine
from shared.errors import ConfigError

__all__ = [
    "ALEMBIC_INI",
    "MigrationError",
    "alembic_config",
    "current",
    "downgrade",
    "ensure_schema",
    "head",
    "known_revisions",
    "upgrade",
]

#: The Alembic ini file shipped inside the ``schema`` package.
ALEMBIC_INI = str(files("schema").joinpath("alembic.ini"))

_URL_HINT = (
    "use postgresql+psycopg://user:pass@host:5432/db or sqlite:///path/to.db "
    "(DATABASE_URL, or unset it for the embedded SQLite database)"
)


class MigrationError(ConfigError):
    """The database schema cannot be brought to (or read at) the revision asked for."""


def _checked_url(url: str) -> str:
    if not url or not url.strip():
        raise MigrationError(f"no database URL given; {_URL_HINT}")
    try:
        make_url(url)
    except ArgumentError:
        # The URL may hold a password, so it is not repeated in the message.
        raise MigrationError(f"the database URL cannot be parsed; {_URL_HINT}") from None
    return url


def alembic_config(url: str) -> alembic.config.Config:
    """An Alembic config for ``url`` that uses the migration scripts of the ``schema`` package."""
    config = alembic.config.Config(ALEMBIC_INI)
    # The ini parser interpolates ``%``, which percent-encoded passwords contain.
    config.set_main_option("sqlalchemy.url", _checked_url(url).replace("%", "%%"))
    return config


@cache
def _scripts() -> ScriptDirectory:
    # The scripts are files of the installed package; they do not change while we run.
    return ScriptDirectory.from_config(alembic.config.Config(ALEMBIC_INI))


def _run(action: Literal["upgrade", "downgrade"], url: str, revision: str) -> None:
    config = alembic_config(url)
    try:
        if action == "upgrade":
            command.upgrade(config, revision)
        else:
            command.downgrade(config, revision)
    except CommandError as exc:
        known = ", ".join(reversed([rev.revision for rev in _scripts().walk_revisions()]))
        raise MigrationError(
            f"cannot {action} the database to {revision!r}: {exc}; give one of the known "
            f"revisions ({known}), 'head' or (down) 'base'"
        ) from exc


def upgrade(url: str, revision: str = "head") -> None:
    """Apply migrations up to ``revision`` (default: the newest)."""
    _run("upgrade", url, revision)


def downgrade(url: str, revision: str = "base") -> None:
    """Undo migrations down to ``revision`` (default: ``base``, an empty database)."""
    _run("downgrade", url, revision)


def head() -> str:
    """The newest revision the migration scripts know."""
    heads = _scripts().get_heads()
    if len(heads) != 1:
        raise MigrationError(
            f"the migration scripts have {len(heads)} heads {heads}; merge them with "
            "`alembic -c schema/alembic.ini merge heads`"
        )
    return heads[0]


def current(url: str) -> str | None:
    """The revision the database is at, or None when it was never migrated."""
    engine = make_engine(_checked_url(url))
    try:
        with engine.connect() as connection:
            return MigrationContext.configure(connection).get_current_revision()
    finally:
        engine.dispose()


def ensure_schema(url: str) -> None:
    """Bring the database to head; a cheap no-op when it is there already.

    Raises :class:`MigrationError` when the database is at a revision these scripts do not know,
    which means a newer release migrated it.
    """
    target = head()
    at = current(url)
    if at == target:
        return
    if at is not None and at not in known_revisions():
        raise MigrationError(
            f"the database is at schema revision {at!r}, which this release does not know; "
            "it was migrated by a newer release: run that release, or restore a backup"
        )
    upgrade(url, "head")


def known_revisions() -> set[str]:
    """Every revision the migration scripts of this release know."""
    return {rev.revision for rev in _scripts().walk_revisions()}
