"""Submitting a job to a Discord webhook (:func:`shared.services.jobs.submit_job`): the webhook
must post into the caller's guild, and a ``thread_id`` must name a thread of the webhook's own
channel, refused like a missing channel otherwise."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from schema.models.jobs import Job
from shared.crypto import SecretBox, generate_key
from shared.db.engine import make_engine, make_sessionmaker
from shared.db.migrate import upgrade
from shared.errors import NotFoundError
from shared.jobs import FETCH, DiscordChannelSource, DiscordWebhookTarget, JobParams
from shared.services.core import Actor, Core
from shared.services.jobs import submit_job
from tests.fakes.enqueuer import RecordingEnqueuer
from tests.support.discord_tenants import DiscordTenants


@pytest.fixture
def factory(tmp_path: Path) -> Iterator[sessionmaker[Session]]:
    url = f"sqlite:///{tmp_path / 'jobs.db'}"
    upgrade(url)
    engine = make_engine(url)
    yield make_sessionmaker(engine)
    engine.dispose()


def _thread(tenants: DiscordTenants, parent: str) -> str:
    fake = tenants.server.fake
    with fake.lock:
        channel = fake.channels[int(parent)]
        owner = fake.add_user("thread-owner")
        return str(fake.add_thread(channel, "weekly", owner=owner).id)


def _submit(
    factory: sessionmaker[Session], tenants: DiscordTenants, guild: str, channel: str, thread: str
) -> tuple[RecordingEnqueuer, Any]:
    """Submit guild ``guild``'s job to its webhook on ``channel``, into ``thread``."""
    fake = tenants.server.fake
    with fake.lock:
        hook = fake.add_webhook(fake.channels[int(channel)])
    box = SecretBox([generate_key()])
    enqueuer = RecordingEnqueuer()
    core = Core(session_factory=factory, enqueuer=enqueuer, box=box, directory=tenants.directory)
    target = DiscordWebhookTarget.with_token(
        box, webhook_id=str(hook.id), token=hook.token, thread_id=thread
    )
    params = JobParams(
        source=DiscordChannelSource(channel_id=channel, limit=50), destinations=[target]
    )
    try:
        return enqueuer, submit_job(core, Actor(origin="api", guild_id=guild), params)
    except NotFoundError as exc:
        return enqueuer, exc


def test_a_thread_of_the_webhooks_channel_is_accepted(
    factory: sessionmaker[Session], discord_tenants: DiscordTenants
) -> None:
    guild, channel = discord_tenants.tenant()
    enqueuer, submission = _submit(
        factory, discord_tenants, guild, channel, _thread(discord_tenants, channel)
    )
    assert enqueuer.sent == [(FETCH, (str(submission.job_id),))]


@pytest.mark.parametrize("where", ["another guild", "another channel", "nowhere"])
def test_a_thread_elsewhere_is_refused_like_a_missing_channel(
    factory: sessionmaker[Session], discord_tenants: DiscordTenants, where: str
) -> None:
    guild, channel = discord_tenants.tenant()
    if where == "another guild":
        thread = _thread(discord_tenants, discord_tenants.tenant()[1])
    elif where == "another channel":
        thread = _thread(discord_tenants, discord_tenants.channel(guild))
    else:
        thread = "1499999999999999999"
    enqueuer, refused = _submit(factory, discord_tenants, guild, channel, thread)
    assert isinstance(refused, NotFoundError)
    assert refused.user_message == f"no channel {thread} in this server"
    assert enqueuer.sent == []
    with factory() as session:
        assert session.scalar(select(func.count()).select_from(Job)) == 0
