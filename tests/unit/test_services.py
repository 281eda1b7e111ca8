"""The use cases of :mod:`shared.services` that the API, the bot and the CLI share."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy.orm import Session, sessionmaker

from schema.models.jobs import Job, JobStatus
from schema.models.tenancy import WebhookEndpoint
from shared.crypto import SecretBox, generate_key
from shared.db.engine import make_engine, make_sessionmaker
from shared.db.migrate import upgrade
from shared.delivery.config import DeliverySettings
from shared.delivery.webhook_target import endpoint_secrets
from shared.errors import ConflictError, InvalidInputError, NotFoundError
from shared.jobs import FETCH, HeldEnqueuer
from shared.services.core import Actor, Core
from shared.services.jobs import publish_held
from shared.services.members import set_opt_out
from shared.services.schedules import ScheduleRequest, create_schedule, find_schedule
from shared.services.webhook_endpoints import (
    MAX_PREVIOUS_SECRETS,
    SECRET_OVERLAP,
    EndpointRequest,
    create_endpoint,
    rotate_secret,
    update_endpoint,
)
from tests.fakes.enqueuer import RecordingEnqueuer
from tests.support.discord_tenants import DiscordTenants
from tests.unit.delivery.helpers import T0, Clock


@pytest.fixture
def factory(tmp_path: Path) -> Iterator[sessionmaker[Session]]:
    url = f"sqlite:///{tmp_path / 'services.db'}"
    upgrade(url)
    engine = make_engine(url)
    yield make_sessionmaker(engine)
    engine.dispose()


def _core(factory: sessionmaker[Session], **kw: object) -> Core:
    return Core(
        session_factory=factory,
        enqueuer=RecordingEnqueuer(),
        box=SecretBox([generate_key()]),
        **kw,  # type: ignore[arg-type]
    )


GUILD = Actor(origin="api", guild_id="111111111111111111", requested_by="api:k")


def test_endpoints_keep_one_url_policy_and_rotate_their_secret(
    factory: sessionmaker[Session],
) -> None:
    clock = Clock(T0)
    core = _core(factory, clock=clock)
    row, secret = create_endpoint(core, GUILD, EndpointRequest(url="https://hooks.example/x"))
    assert core.box.decrypt(row.secret_encrypted) == secret and secret not in row.secret_encrypted
    for url, why in (
        ("http://hooks.example/x", "plain http"),
        ("https://127.0.0.1:9000/hook", "loopback"),
        ("https://localhost/hook", "local or internal host name"),
    ):
        with pytest.raises(InvalidInputError, match=why) as caught:
            create_endpoint(core, GUILD, EndpointRequest(url=url))
        assert caught.value.field == "url"
    with pytest.raises(InvalidInputError, match="unknown or no events"):
        create_endpoint(core, GUILD, EndpointRequest(url="https://h.example/", events=["x"]))
    with pytest.raises(InvalidInputError, match="own fallback"):
        update_endpoint(
            core, GUILD, row.id, {"fallback": {"kind": "webhook", "endpoint_id": str(row.id)}}
        )
    with pytest.raises(NotFoundError):
        rotate_secret(core, Actor(origin="api", guild_id="222222222222222222"), row.id)
    first = rotate_secret(core, GUILD, row.id)
    assert first.previous_valid_until == T0 + SECRET_OVERLAP
    clock.advance(3600)
    second = rotate_secret(core, GUILD, row.id)
    with factory() as session:
        stored = session.get(WebhookEndpoint, row.id)
        assert stored is not None
        box = core.box
        assert endpoint_secrets(stored, box, now=clock.now) == [second.secret, secret, first.secret]
        later = clock.now + SECRET_OVERLAP + timedelta(minutes=1)
        assert endpoint_secrets(stored, box, now=later) == [second.secret]


def test_rotating_again_and_again_keeps_a_bounded_set_of_signing_secrets(
    factory: sessionmaker[Session],
) -> None:
    # Each rotation used to keep every earlier secret for a day: a key rotating in a loop
    # grew the row (rewritten whole each time) and made every delivery decrypt and sign with
    # thousands of secrets into one huge webhook-signature header.
    clock = Clock(T0)
    core = _core(factory, clock=clock)
    row, _ = create_endpoint(core, GUILD, EndpointRequest(url="https://hooks.example/x"))
    rotated = [rotate_secret(core, GUILD, row.id).secret for _ in range(12)]
    with factory() as session:
        stored = session.get(WebhookEndpoint, row.id)
        assert stored is not None
        assert len(stored.previous_secrets) == MAX_PREVIOUS_SECRETS
        signing = endpoint_secrets(stored, core.box, now=clock.now)
    # The newest secret first, then the most recent ones it replaced (oldest first).
    assert signing == [rotated[-1], *rotated[-1 - MAX_PREVIOUS_SECRETS : -1]]


def test_an_operator_allowed_host_registers_and_others_do_not(
    factory: sessionmaker[Session],
) -> None:
    url = "http://127.0.0.1:8123/hook"
    strict = _core(factory)
    with pytest.raises(InvalidInputError, match="WEBHOOK_ALLOWED_HOSTS"):
        create_endpoint(strict, GUILD, EndpointRequest(url=url))
    allowed = _core(
        factory, egress=DeliverySettings(webhook_allowed_hosts=["127.0.0.1"]).egress_policy
    )
    row, _ = create_endpoint(allowed, GUILD, EndpointRequest(url=url))
    assert row.url == url


def test_schedules_have_one_cap_per_guild(
    factory: sessionmaker[Session], discord_tenants: DiscordTenants
) -> None:
    guild, channel = discord_tenants.tenant()
    actor = Actor(origin="bot", guild_id=guild, requested_by="42")
    core = _core(factory, directory=discord_tenants.directory, max_schedules_per_guild=2)
    request = ScheduleRequest(
        channel_id=channel,
        text="daily 09:00",
        destination={"kind": "channel", "channel_id": channel},
    )
    first = create_schedule(core, actor, request)
    create_schedule(core, actor, request)
    with pytest.raises(ConflictError, match="already has 2 digest schedules"):
        create_schedule(core, actor, request)
    assert find_schedule(core, actor, first.id.hex[:8]) == first.id
    with pytest.raises(NotFoundError):
        find_schedule(core, Actor(origin="bot", guild_id="1" * 18), first.id.hex[:8])
    with pytest.raises(InvalidInputError, match="not a digest id"):
        find_schedule(core, actor, "zz")
    with pytest.raises(InvalidInputError) as bad:
        create_schedule(core, actor, ScheduleRequest(**{**request.__dict__, "text": "sometimes"}))
    assert bad.value.field == "schedule"


def test_opt_out_is_idempotent(factory: sessionmaker[Session]) -> None:
    core = _core(factory)
    user = str(uuid.uuid4().int % 10**18)
    assert set_opt_out(core, user_id=user, guild_id="1", opted_out=True)
    assert not set_opt_out(core, user_id=user, guild_id="1", opted_out=True)
    assert set_opt_out(core, user_id=user, guild_id=None, opted_out=True)
    assert set_opt_out(core, user_id=user, guild_id="1", opted_out=False)
    assert not set_opt_out(core, user_id=user, guild_id="1", opted_out=False)


def _queued_job(factory: sessionmaker[Session]) -> uuid.UUID:
    job = Job(
        id=uuid.uuid4(),
        origin="api",
        status=JobStatus.QUEUED.value,
        guild_id=GUILD.guild_id,
        params={},
        progress={},
        redeliveries=0,
    )
    with factory() as session, session.begin():
        session.add(job)
    return job.id


def _heartbeat(factory: sessionmaker[Session], job_id: uuid.UUID) -> datetime | None:
    with factory() as session:
        job = session.get(Job, job_id)
        assert job is not None
        return job.heartbeat_at


def test_a_held_job_whose_publication_fails_goes_to_the_next_sweep(
    factory: sessionmaker[Session],
) -> None:
    def broker_down(task_name: str) -> None:
        raise ConnectionError("Error 111 connecting to redis: Connection refused")

    job_id = _queued_job(factory)
    held = HeldEnqueuer(RecordingEnqueuer(before=broker_down))
    held.enqueue(FETCH, str(job_id))
    with pytest.raises(ConnectionError):
        publish_held(_core(factory), held, along=lambda commands: None)
    stamp = _heartbeat(factory, job_id)
    assert stamp is not None and stamp.year == 1970  # the next sweep publishes it


def test_held_publications_go_first_when_they_cannot_ride_along(
    factory: sessionmaker[Session],
) -> None:
    job_id = _queued_job(factory)
    recorder = RecordingEnqueuer()
    held = HeldEnqueuer(recorder)
    held.enqueue(FETCH, str(job_id))
    seen: list[tuple[object, ...]] = []

    def store_response(commands: tuple[object, ...]) -> None:
        seen.append((tuple(recorder.sent), commands))
        raise ConnectionError("the response could not be stored")

    with pytest.raises(ConnectionError):
        publish_held(_core(factory), held, along=store_response)
    # Published before the round trip, which got no commands; its failure is not the job's.
    assert seen == [(((FETCH, (str(job_id),)),), ())]
    assert held.held == ()
    assert _heartbeat(factory, job_id) is None
