"""The cap on a guild's digest schedules holds on PostgreSQL when creations race."""

from __future__ import annotations

import threading

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from schema.models.schedules import Schedule
from shared.crypto import SecretBox, generate_key
from shared.errors import ConflictError
from shared.services.core import Actor, Core
from shared.services.schedules import ScheduleRequest, create_schedule
from tests.fakes.enqueuer import RecordingEnqueuer
from tests.support.discord_tenants import DiscordTenants

pytestmark = pytest.mark.integration

RACERS = 8


def test_racing_creations_in_a_guild_without_schedules_stop_at_the_cap(
    factory: sessionmaker[Session], discord_tenants: DiscordTenants
) -> None:
    guild, channel = discord_tenants.tenant()
    cap = 3
    core = Core(
        session_factory=factory,
        enqueuer=RecordingEnqueuer(),
        box=SecretBox([generate_key()]),
        directory=discord_tenants.directory,
        max_schedules_per_guild=cap,
    )
    actor = Actor(origin="api", guild_id=guild, requested_by="42")
    request = ScheduleRequest(
        channel_id=channel,
        text="daily 09:00",
        destination={"kind": "channel", "channel_id": channel},
    )
    start = threading.Barrier(RACERS)
    outcomes: list[str] = []

    def create() -> None:
        start.wait()
        try:
            create_schedule(core, actor, request)
            outcomes.append("created")
        except ConflictError:
            outcomes.append("refused")

    racers = [threading.Thread(target=create) for _ in range(RACERS)]
    for racer in racers:
        racer.start()
    for racer in racers:
        racer.join()
    with factory() as session:
        stored = session.scalar(
            select(func.count()).select_from(Schedule).where(Schedule.guild_id == guild)
        )
    assert stored == cap
    assert sorted(outcomes) == ["created"] * cap + ["refused"] * (RACERS - cap)
