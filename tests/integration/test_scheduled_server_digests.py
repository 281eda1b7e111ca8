"""A scheduled server digest end to end: beat's dispatcher, the plan → parts → compose pipeline
and the deliver stage against the fake Discord's Acme server (``tests/fakes/server_world.py``),
on PostgreSQL with an in-process worker, and the schedule's view in the API.

The digest is posted in #general: it leaves the private channels out, and only the admins who
read the schedule through the API learn which ones, and why.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
import redis
from fastapi.testclient import TestClient
from sqlalchemy import select

from producers.api.app import create_app
from producers.api.resources import ApiOptions
from schema.models.schedules import ScheduleRun, ScheduleScope
from shared.apikeys import create_api_key
from shared.crypto import SecretBox, generate_key
from shared.db.migrate import upgrade
from shared.digests.dispatch import dispatch_due_digests
from shared.discord.config import DiscordSettings
from shared.pipeline.services import Services
from shared.services.core import Actor
from shared.services.schedules import ScheduleRequest, create_schedule
from shared.settings import load_settings
from tests.fakes.discord_server import FakeDiscordServer
from tests.fakes.enqueuer import RecordingEnqueuer
from tests.fakes.server_world import ServerWorld, seed_server
from tests.support.digests import MARKERS, make_due, posted_since, wait_settled
from tests.support.workers import embedded_worker

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def acme() -> Iterator[tuple[FakeDiscordServer, ServerWorld]]:
    server = FakeDiscordServer().start()
    world = seed_server(server.fake, messages_per_channel=30)
    yield server, world
    server.stop()


@pytest.fixture(scope="module")
def services(
    acme: tuple[FakeDiscordServer, ServerWorld],
    postgres_url: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Services]:
    server, world = acme
    settings = load_settings(
        data_dir=tmp_path_factory.mktemp("scheduled"),
        discord=DiscordSettings(token=world.token, api_base=server.api_base),
        redis_url=None,
        database_url=postgres_url,
    )
    upgrade(postgres_url)
    with embedded_worker(settings) as (_, built):
        yield built


def test_a_scheduled_server_digest_posts_to_general_and_tells_its_admins_what_it_left_out(
    services: Services, acme: tuple[FakeDiscordServer, ServerWorld], redis_url: str
) -> None:
    server, world = acme
    guild, general = str(world.guild.id), str(world.general.id)
    actor = Actor(origin="api", guild_id=guild, requested_by="api:test")
    row = create_schedule(
        services.core(),
        actor,
        ScheduleRequest(
            scope=ScheduleScope.SERVER,
            text="hourly",
            destination={"kind": "channel", "channel_id": general},
        ),
    )
    assert (row.scope, row.channel_id) == ("server", general)
    # Due a minute ago, last run a day ago: the run covers the day the Acme messages span.
    now = datetime.now(UTC)
    make_due(services, row.id, world, now)
    before = world.general.last_message_id or 0
    result = dispatch_due_digests(services.core(), now=now)
    assert result.jobs_submitted == 1
    with services.session_factory() as session:
        run = session.scalars(select(ScheduleRun).where(ScheduleRun.schedule_id == row.id)).one()
    assert run.job_id is not None
    job = wait_settled(services, run.job_id)
    assert job.status == "completed", job.error
    posted = posted_since(server, world.general.id, before)
    assert "What matters most" in posted and "#dev" in posted
    assert not any(marker in posted for marker in MARKERS)
    assert "staff-only" not in posted and "mods-room" not in posted

    # The admins read, in the schedule's view, which channels the digest left out and why.
    client: redis.Redis[Any] = redis.Redis.from_url(redis_url)
    app = create_app(
        load_settings(database_url=services.settings.database_url, redis_url=redis_url),
        session_factory=services.session_factory,
        redis=client,
        enqueuer=RecordingEnqueuer(),
        box=SecretBox([generate_key()]),
        directory=None,
        options=ApiOptions(redis_prefix=f"sbtest:scheduled:{uuid.uuid4().hex[:8]}"),
    )
    _key, token = create_api_key(
        services.session_factory, guild_id=guild, scopes=["admin"], name="t", now=now
    )
    try:
        with TestClient(app) as api:
            response = api.get(
                f"/v1/schedules/{row.id}", headers={"Authorization": f"Bearer {token}"}
            )
    finally:
        client.close()
    assert response.status_code == 200, response.text
    view = response.json()
    assert view["scope"] == "server" and view["channel_id"] == general
    last = view["last_run"]
    assert (last["job_id"], last["status"]) == (str(run.job_id), "completed")
    left_out = {e["name"]: e["reason"] for e in last["left_out"]}
    assert set(left_out) == {"staff-only", "mods-room", "Zanzibar evidence"}
    assert "members who can see #general cannot read it" in left_out["staff-only"]
