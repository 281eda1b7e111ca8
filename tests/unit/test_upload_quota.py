"""Uploads are stored in PostgreSQL for as long as their job: one guild's share is bounded."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy.orm import Session, sessionmaker

from shared.db.engine import make_engine, make_sessionmaker
from shared.db.migrate import upgrade
from shared.uploads import UploadQuotaExceeded, UploadWriter, delete_upload

NOW = datetime(2026, 9, 1, 12, tzinfo=UTC)
GUILD, OTHER = "100000000000000001", "100000000000000002"
MIB = 1024 * 1024


@pytest.fixture
def factory(tmp_path: Path) -> Iterator[sessionmaker[Session]]:
    url = f"sqlite:///{tmp_path / 'uploads.db'}"
    upgrade(url)
    engine = make_engine(url)
    yield make_sessionmaker(engine)
    engine.dispose()


def _writer(factory: sessionmaker[Session], guild: str) -> UploadWriter:
    return UploadWriter(factory, guild_id=guild, now=NOW, max_guild_bytes=3 * MIB)


def test_a_guild_cannot_store_more_uploads_than_its_quota(
    factory: sessionmaker[Session],
) -> None:
    # One API key used to be able to keep 100 MiB uploads coming (each kept with its job for
    # the guild's retention, up to ten years) until PostgreSQL's disk was full for everyone.
    first = _writer(factory, GUILD)
    first.write(b"x" * 2 * MIB)
    # Still streaming, not finished: its stored chunks already count for a second upload.
    second = _writer(factory, GUILD)
    with pytest.raises(UploadQuotaExceeded):
        second.write(b"y" * (MIB + 1))
    kept = first.finish()
    # Another guild is not held back by it.
    other = _writer(factory, OTHER)
    other.write(b"z" * 2 * MIB)
    other.finish()
    # Room comes back when an upload is deleted (its job removed by retention).
    delete_upload(factory, kept)
    third = _writer(factory, GUILD)
    third.write(b"w" * 2 * MIB)
    third.finish()


def test_a_full_quota_refuses_before_anything_is_stored(
    factory: sessionmaker[Session],
) -> None:
    first = _writer(factory, GUILD)
    first.write(b"x" * 3 * MIB)
    first.finish()
    with pytest.raises(UploadQuotaExceeded, match="quota"):
        _writer(factory, GUILD)
