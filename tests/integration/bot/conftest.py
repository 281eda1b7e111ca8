"""Fixtures of the bot's integration tests: a migrated PostgreSQL database and Redis."""

from __future__ import annotations

import pytest

from shared.db.migrate import upgrade


@pytest.fixture(scope="session")
def database_url(postgres_url: str) -> str:
    """The session's PostgreSQL database, migrated to head."""
    upgrade(postgres_url)
    return postgres_url
