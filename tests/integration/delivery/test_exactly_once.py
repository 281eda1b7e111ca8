"""Exactly-once effect under SIGKILL: 200 summaries fan out while deliver workers are killed.

Real PostgreSQL and Redis, ``summarybot worker -Q deliver`` processes killed outright again and
again, the delivery sweep running like beat, a local webhook receiver that verifies every
signature with the ``standardwebhooks`` package and counts each ``webhook-id``, and the fake
Discord server holding the channel every summary is also posted to.
"""

from __future__ import annotations

import random
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from sqlalchemy import select

from schema.models.jobs import Delivery, Job
from shared.crypto import SecretBox, generate_key
from shared.db.engine import make_engine, make_sessionmaker
from shared.db.migrate import upgrade
from shared.signing import webhook_id_for
from tests.fakes.discord_limits import DEFAULT_LIMITS, FakeConfig, RouteLimit
from tests.fakes.discord_server import FakeDiscordServer, seed_basic
from tests.fakes.webhook_receiver import WebhookReceiver
from tests.integration.delivery.harness import (
    DeliverWorkers,
    Sweeper,
    counts,
    deliver_env,
    publish,
    publisher,
    settings_from,
    wait_until,
)
from tests.unit.delivery.helpers import add_endpoint, add_summary

pytestmark = [pytest.mark.integration, pytest.mark.slow]

SUMMARIES = 200


@pytest.fixture(scope="module")
def migrated(postgres_url: str) -> str:
    upgrade(postgres_url)
    return postgres_url


@pytest.fixture
def clean_redis(redis_url: str) -> Iterator[str]:
    client = redis.Redis.from_url(redis_url)
    client.flushdb()  # this test database holds nothing but this test's queues
    yield redis_url
    client.flushdb()
    client.close()


def test_every_summary_lands_exactly_once_while_workers_are_killed(
    migrated: str, clean_redis: str, tmp_path: Path
) -> None:
    key = generate_key()
    env = deliver_env(migrated, clean_redis, key, tmp_path / "data")
    settings = settings_from(env)
    engine = make_engine(migrated)
    factory = make_sessionmaker(engine)
    box = SecretBox([key])
    rng = random.Random(6)
    limits = dict(DEFAULT_LIMITS)
    limits["POST /channels/{channel_id}/messages"] = RouteLimit("messages-write", 100, 1.0)
    with (
        WebhookReceiver() as receiver,
        FakeDiscordServer(config=FakeConfig(limits=limits)) as discord,
    ):
        world = seed_basic(discord.fake)
        env.update(DISCORD_TOKEN=world.token, DISCORD_API_BASE=discord.api_base)
        guild = str(world.guild.id)
        endpoint_id, secret = add_endpoint(factory, box, f"{receiver.url}/hook", guild_id=guild)
        receiver.secrets = [secret]
        targets = [
            {"kind": "webhook", "endpoint_id": str(endpoint_id)},
            {"kind": "channel", "channel_id": str(world.general.id)},
        ]
        fans = [add_summary(factory, targets, guild_id=guild) for _ in range(SUMMARIES)]
        summary_ids = [f.summary_id for f in fans]
        workers = DeliverWorkers(env, tmp_path, count=2, concurrency=2)
        try:
            with publisher(settings) as app, Sweeper(settings, factory, app, interval=1.0):
                publish(app, [(f.job_id, d) for f in fans for d in f.delivery_ids])
                # Generous: worker start-up is slow on a loaded two-core machine.
                deadline = time.monotonic() + 420
                # Kill a worker whenever some progress was made, until most work is done.
                while workers.kills < 8 and time.monotonic() < deadline:
                    before = counts(factory, summary_ids).get("sent", 0)
                    if before >= 2 * SUMMARIES * 0.9:
                        break
                    wait_until(
                        lambda b=before: counts(factory, summary_ids).get("sent", 0) > b + 5,
                        timeout=30,
                    )
                    victim = rng.randrange(2)
                    workers.kill(victim)
                    workers.start(victim)
                done = wait_until(
                    lambda: counts(factory, summary_ids).get("sent", 0) == 2 * SUMMARIES,
                    timeout=max(120.0, deadline - time.monotonic()),
                    step=0.5,
                )
                final = counts(factory, summary_ids)
                assert done, f"not every delivery was sent: {final}"
        finally:
            workers.stop()

        assert workers.kills >= 4, "the workers must have been killed repeatedly"
        bad = [r for r in receiver.requests if not r.verified]
        assert bad == [], bad[:3]
        expected = {webhook_id_for(f.delivery_ids[0]) for f in fans}
        assert set(receiver.effects) == expected  # every summary arrived ...
        assert receiver.accepted() == SUMMARIES  # ... and had its effect once
        delivered = {body["data"]["summary_id"] for body in receiver.effects.values()}
        assert delivered == {str(s) for s in summary_ids}
        with discord.fake.lock:
            posted = [m for m in discord.fake.messages.values() if m.channel_id == world.general.id]
        print(
            f"kills={workers.kills} arrivals={sum(receiver.arrivals.values())} "
            f"transport_duplicates={receiver.duplicates} discord_messages={len(posted)}"
        )
    with factory() as session:
        statuses = set(
            session.scalars(select(Job.status).where(Job.id.in_([f.job_id for f in fans])))
        )
        remote = set(
            session.scalars(
                select(Delivery.remote_id).where(
                    Delivery.summary_id.in_(summary_ids), Delivery.kind == "webhook"
                )
            )
        )
        channel_ids = list(
            session.scalars(
                select(Delivery.remote_id).where(
                    Delivery.summary_id.in_(summary_ids), Delivery.kind == "channel"
                )
            )
        )
    engine.dispose()
    assert statuses == {"completed"}
    assert remote == expected
    # One message per summary in the channel: no summary missing, none posted twice.
    assert len(posted) == SUMMARIES
    assert sorted(str(c) for c in channel_ids) == sorted(str(m.id) for m in posted)
    engine.dispose()
