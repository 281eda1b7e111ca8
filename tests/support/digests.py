"""Helpers for the digest tests on the fake Discord's Acme server (``tests/fakes/server_world.py``)."""

from __future__ import annotations

import json
import time
import uuid
from datetime import UTC, datetime, timedelta

from schema.models.jobs import Delivery, Job, Summary
from schema.models.schedules import Schedule
from shared.pipeline.services import Services
from tests.fakes.discord_server import FakeDiscordServer
from tests.fakes.server_world import ServerWorld

__all__ = ["MARKERS", "now_of", "posted_since", "wait_settled"]

#: Words that appear only in Acme's private channels.
MARKERS = ("Zanzibar", "Kilimanjaro", "CONFIDENTIAL")


def now_of(world: ServerWorld) -> datetime:
    """Acme's "now" (the end of its seeded day)."""
    return datetime.fromtimestamp(world.now_ms / 1000, UTC)


def wait_settled(services: Services, job_id: uuid.UUID) -> Job:
    """The job once it and its deliveries have ended."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        with services.session_factory() as session:
            job = session.get(Job, job_id)
            assert job is not None
            deliveries = session.query(Delivery).join(Summary).filter(Summary.job_id == job.id)
            settled = all(d.status in ("sent", "failed") for d in deliveries)
            if job.status in ("completed", "failed", "completed_with_errors") and settled:
                return job
        time.sleep(0.05)
    raise AssertionError("the digest did not finish")


def posted_since(server: FakeDiscordServer, channel_id: int, since: int) -> str:
    """Everything the bot posted in a channel after message id ``since``, as JSON text."""
    fake = server.fake
    channel = fake.channels[channel_id]
    posted = [fake.message_json(fake.messages[m], None) for m in channel.message_ids if m > since]
    return json.dumps(posted, ensure_ascii=False)


def make_due(services: Services, schedule_id: uuid.UUID, world: ServerWorld, now: datetime) -> None:
    """Make a schedule due a minute before ``now``, last run a day before the world's clock:
    its run covers the day the world's messages span."""
    with services.session_factory() as session, session.begin():
        stored = session.get(Schedule, schedule_id)
        assert stored is not None
        stored.next_run_at = now - timedelta(minutes=1)
        stored.last_run_at = now_of(world) - timedelta(hours=24)
