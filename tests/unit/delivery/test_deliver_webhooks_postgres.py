"""The delivery tests of :mod:`tests.unit.delivery.test_deliver_webhooks`, on PostgreSQL.

Production runs the outbox on PostgreSQL, where its claim and record statements take row
locks (``FOR UPDATE OF``) and bind native UUID, JSONB and timestamp types that SQLite does
not have: every scenario runs again there, each on a fresh migrated database.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import Engine

from tests.support.databases import postgres_engine
from tests.unit.delivery.test_deliver_webhooks import *  # noqa: F403 - the same tests, re-run

pytestmark = pytest.mark.integration


@pytest.fixture
def engine(postgres_url: str) -> Iterator[Engine]:
    """A fresh migrated PostgreSQL database instead of the SQLite file."""
    with postgres_engine(postgres_url, prefix="sb_outbox") as engine:
        yield engine
