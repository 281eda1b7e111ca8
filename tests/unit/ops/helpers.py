"""Builders shared by the operations tests."""

from __future__ import annotations

import threading
import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import delete
from sqlalchemy.orm import Session, sessionmaker

from schema.models.jobs import Job
from schema.models.schedules import Schedule, ScheduleRun
from shared.digests.spec import next_run, parse_schedule

GUILD = "111111111111111111"


class RecordingEnqueuer:
    """An Enqueuer that records what was sent (thread-safe), optionally failing first."""

    def __init__(self, *, fail_first: int = 0) -> None:
        self.sent: list[tuple[str, tuple[str, ...]]] = []
        self._fail = fail_first
        self._lock = threading.Lock()

    def enqueue(self, task_name: str, *args: str) -> None:
        with self._lock:
            if self._fail:
                self._fail -= 1
                raise ConnectionError("broker unreachable")
            self.sent.append((task_name, args))


def add_schedule(
    factory: sessionmaker[Session],
    text: str,
    *,
    now: datetime,
    channel_id: str | None = None,
    destination: dict[str, Any] | None = None,
    empty_policy: str = "skip",
    **values: Any,
) -> uuid.UUID:
    """Insert an enabled schedule whose first firing is the next one after ``now``."""
    spec = parse_schedule(text)
    schedule = Schedule(
        id=uuid.uuid4(),
        guild_id=GUILD,
        channel_id=channel_id or str(200_000_000_000_000_000 + uuid.uuid4().int % 10**17),
        created_by="333333333333333333",
        spec=text,
        cron=spec.cron,
        timezone=spec.timezone,
        destination=destination or {"kind": "terminal"},
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
