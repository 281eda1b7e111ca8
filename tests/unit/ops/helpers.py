"""Builders shared by the operations tests."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import delete
from sqlalchemy.orm import Session, sessionmaker

from schema.models.jobs import Job
from schema.models.schedules import Schedule, ScheduleRun
from shared.crypto import SecretBox, generate_key
from shared.digests.spec import next_run, parse_schedule
from shared.services.core import Core
from shared.tenancy import ChannelDirectory
from tests.fakes.enqueuer import RecordingEnqueuer

GUILD = "111111111111111111"


def digest_core(
    factory: sessionmaker[Session], directory: ChannelDirectory, *, enqueuer: Any = None
) -> Core:
    """A :class:`Core` over ``factory`` whose guild boundary asks ``directory``."""
    return Core(
        session_factory=factory,
        enqueuer=enqueuer if enqueuer is not None else RecordingEnqueuer(),
        box=SecretBox([generate_key()]),
        directory=directory,
    )


def add_schedule(
    factory: sessionmaker[Session],
    text: str,
    *,
    now: datetime,
    guild: str = GUILD,
    channel_id: str | None = None,
    destination: dict[str, Any] | None = None,
    empty_policy: str = "skip",
    **values: Any,
) -> uuid.UUID:
    """Insert an enabled schedule whose first firing is the next one after ``now``.

    It posts into the channel it summarizes unless ``destination`` says otherwise.
    """
    channel_id = channel_id or str(200_000_000_000_000_000 + uuid.uuid4().int % 10**17)
    spec = parse_schedule(text)
    schedule = Schedule(
        id=uuid.uuid4(),
        guild_id=guild,
        channel_id=channel_id,
        created_by="333333333333333333",
        spec=text,
        cron=spec.cron,
        timezone=spec.timezone,
        destination=destination or {"kind": "channel", "channel_id": channel_id},
        empty_policy=empty_policy,
        next_run_at=next_run(spec, now),
        created_at=now,
        updated_at=now,
        **values,
    )
    with factory() as session, session.begin():
        session.add(schedule)
    return schedule.id


def clear(factory: sessionmaker[Session]) -> None:
    """Remove every schedule, run and job (each test starts from nothing)."""
    with factory() as session, session.begin():
        session.execute(delete(ScheduleRun))
        session.execute(delete(Schedule))
        session.execute(delete(Job))
