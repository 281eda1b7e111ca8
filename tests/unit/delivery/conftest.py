"""Fixtures of the delivery unit tests: a migrated SQLite database, services, a runtime."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from shared.crypto import SecretBox, generate_key, secret_box
from shared.db import migrate
from shared.db.engine import make_engine, make_sessionmaker
from shared.delivery.runtime import DeliveryRuntime
from shared.settings import Settings, load_settings
from tests.fakes.webhook_receiver import WebhookReceiver
from tests.unit.delivery.helpers import MADE_RUNTIMES, make_runtime


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Engine]:
    url = f"sqlite:///{tmp_path / 'delivery.db'}"
    migrate.upgrade(url)
    engine = make_engine(url)
    yield engine
    engine.dispose()


@pytest.fixture
def session_factory(engine: Engine) -> sessionmaker[Session]:
    return make_sessionmaker(engine)


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return load_settings(secret_keys=generate_key(), data_dir=tmp_path / "data")


@pytest.fixture
def box(settings: Settings) -> SecretBox:
    return secret_box(settings)


@pytest.fixture(autouse=True)
def _close_runtimes() -> Iterator[None]:
    """Every runtime a test made is closed after it (their pools hold sockets)."""
    yield
    while MADE_RUNTIMES:
        MADE_RUNTIMES.pop().close()


@pytest.fixture
def runtime(box: SecretBox) -> Iterator[DeliveryRuntime]:
    runtime = make_runtime(box, webhook_retry_schedule=[1, 60, 3600], webhook_retry_jitter=0.0)
    yield runtime
    runtime.close()


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    with WebhookReceiver() as receiver:
        yield receiver
