"""Fixtures for the API tests: a migrated PostgreSQL database, the test Redis, an app per test.

Every test gets its own Redis key prefix and fresh guild ids, so tests never see each other's
rate limits, idempotency records or rows.
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import redis
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from producers.api.app import create_app
from producers.api.resources import ApiOptions
from shared.apikeys import create_api_key
from shared.crypto import SecretBox, generate_key
from shared.db.engine import make_engine, make_sessionmaker
from shared.db.migrate import upgrade
from shared.settings import Settings, load_settings
from tests.fakes.enqueuer import RecordingEnqueuer
from tests.support.discord_tenants import DiscordTenants


def snowflake() -> str:
    """A random Discord-like id (18 digits)."""
    return str(random.randint(10**17, 10**18 - 1))


@pytest.fixture(scope="session")
def migrated_url(postgres_url: str) -> str:
    upgrade(postgres_url)
    return postgres_url


@pytest.fixture(scope="session")
def engine(migrated_url: str) -> Iterator[Engine]:
    engine = make_engine(migrated_url, pool_size=10, max_overflow=10)
    yield engine
    engine.dispose()


@pytest.fixture(scope="session")
def session_factory(engine: Engine) -> sessionmaker[Session]:
    return make_sessionmaker(engine)


@pytest.fixture
def redis_client(redis_url: str) -> Iterator[redis.Redis[Any]]:
    client: redis.Redis[Any] = redis.Redis.from_url(redis_url)
    yield client
    client.close()


@pytest.fixture
def prefix(redis_client: redis.Redis[Any]) -> Iterator[str]:
    value = f"sbtest:api:{uuid.uuid4().hex[:10]}"
    yield value
    keys = list(redis_client.scan_iter(match=f"{value}:*", count=500))
    if keys:
        redis_client.delete(*keys)


@pytest.fixture
def settings(migrated_url: str, redis_url: str) -> Settings:
    return load_settings(database_url=migrated_url, redis_url=redis_url)


@pytest.fixture
def box() -> SecretBox:
    return SecretBox([generate_key()])


@dataclass
class Api:
    """One app under test, two guilds of the fake Discord (each with a channel), key helpers."""

    app: FastAPI
    client: TestClient
    enqueuer: RecordingEnqueuer
    session_factory: sessionmaker[Session]
    redis: redis.Redis[Any]
    box: SecretBox
    prefix: str
    discord: DiscordTenants
    guild: str = ""
    channel: str = ""
    other_guild: str = ""
    other_channel: str = ""

    def __post_init__(self) -> None:
        self.guild, self.channel = self.discord.tenant()
        self.other_guild, self.other_channel = self.discord.tenant()

    def key(
        self,
        scopes: tuple[str, ...] = ("admin",),
        *,
        guild: str | None = None,
        expires_in: timedelta | None = None,
        **kwargs: Any,
    ) -> str:
        _row, token = create_api_key(
            self.session_factory,
            guild_id=guild or self.guild,
            scopes=list(scopes),
            name="test",
            now=datetime.now(UTC),
            expires_in=expires_in,
            **kwargs,
        )
        return token

    def auth(self, token: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {token}"}


@pytest.fixture
def make_api(
    settings: Settings,
    session_factory: sessionmaker[Session],
    redis_client: redis.Redis[Any],
    prefix: str,
    box: SecretBox,
    discord_tenants: DiscordTenants,
) -> Iterator[Callable[..., Api]]:
    clients: list[TestClient] = []

    def build(
        *,
        options: ApiOptions | None = None,
        without_discord: bool = False,
        settings_for: Settings | None = None,
        **kwargs: Any,
    ) -> Api:
        enqueuer = RecordingEnqueuer()
        app = create_app(
            settings_for or settings,
            session_factory=session_factory,
            redis=redis_client,
            enqueuer=enqueuer,
            box=box,
            directory=None if without_discord else discord_tenants.directory,
            options=options or ApiOptions(redis_prefix=prefix),
        )
        client = TestClient(app, **kwargs)
        clients.append(client)
        return Api(
            app, client, enqueuer, session_factory, redis_client, box, prefix, discord_tenants
        )

    yield build
    for client in clients:
        client.close()


@pytest.fixture
def api(make_api: Callable[..., Api]) -> Api:
    return make_api()


def summary_content(
    guild: str, channel: str, *, member: tuple[str, str] = ("111111111111111111", "alice")
) -> dict[str, Any]:
    """A valid ``SummaryContent`` dump in which ``member`` (id, name) took part."""
    from shared.summarize.content import SummaryContent

    user_id, name = member
    stamp = "2026-03-01T10:00:00Z"
    content = {
        "format": "structured",
        "overview": f"{name} and bob discussed the release; {name} will tag it.",
        "topics": [
            {
                "title": "Release",
                "summary": f"{name} proposed Friday",
                "message_ids": ["901", "902"],
            },
            {"title": "Solo", "summary": f"only {name} spoke", "message_ids": ["901"]},
        ],
        "key_points": [{"text": "bob agreed", "message_ids": ["902"]}],
        "decisions": [{"text": f"{name} tags v2", "message_ids": ["901"]}],
        "action_items": [{"task": "tag v2", "owner": name, "message_ids": ["901", "902"]}],
        "contributions": [
            {"participant": name, "points": [{"text": "proposed Friday", "message_ids": ["901"]}]},
            {"participant": "bob", "points": [{"text": "agreed", "message_ids": ["902"]}]},
        ],
        "participants": [
            {"id": user_id, "name": name, "messages": 1},
            {"id": "222222222222222222", "name": "bob", "messages": 1},
        ],
        "citations": {
            "901": {
                "message_id": "901",
                "author": name,
                "timestamp": stamp,
                "jump_url": f"https://discord.com/channels/{guild}/{channel}/901",
            },
            "902": {
                "message_id": "902",
                "author": "bob",
                "timestamp": stamp,
                "jump_url": f"https://discord.com/channels/{guild}/{channel}/902",
            },
        },
        "coverage": {
            "messages_total": 2,
            "messages_used": 2,
            "messages_skipped": 0,
            "start": stamp,
            "end": stamp,
            "channel_id": channel,
            "channel_name": "general",
            "guild_id": guild,
        },
        "backend": "extractive",
    }
    return SummaryContent.model_validate(content).model_dump(mode="json")


def insert_summary(
    session_factory: sessionmaker[Session],
    guild: str,
    *,
    member: tuple[str, str] = ("111111111111111111", "alice"),
    requested_by: str | None = None,
) -> tuple[uuid.UUID, uuid.UUID]:
    """A completed job with its summary in ``guild``; returns (job id, summary id)."""
    from schema.models.jobs import Job, Summary

    channel = snowflake()
    job_id, summary_id = uuid.uuid4(), uuid.uuid4()
    now = datetime.now(UTC)
    with session_factory() as session, session.begin():
        session.add(
            Job(
                id=job_id,
                origin="bot",
                status="completed",
                guild_id=guild,
                channel_id=channel,
                requested_by=requested_by,
                params={"source": {"kind": "discord_channel", "channel_id": channel, "limit": 5}},
                progress={"summary_id": str(summary_id)},
                created_at=now - timedelta(seconds=3),
                finished_at=now,
            )
        )
        session.flush()
        session.add(
            Summary(
                id=summary_id,
                job_id=job_id,
                guild_id=guild,
                channel_id=channel,
                format="structured",
                content=summary_content(guild, channel, member=member),
                backend="extractive",
                prompt_version="test-1",
                message_count=2,
                created_at=now,
            )
        )
    return job_id, summary_id
