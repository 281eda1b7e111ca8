"""Replaying a delivery re-drives what ended badly, and never what was sent or is being sent."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from sqlalchemy.orm import Session, sessionmaker

from schema.models.jobs import DeadLetter, Delivery, DeliveryStatus, Job
from shared.crypto import SecretBox
from shared.delivery.runtime import DeliveryRuntime
from shared.jobs import DELIVER
from shared.services.core import Core
from shared.services.replay import ReplayReport, ReplaySelection, replay
from shared.settings import Settings
from tests.fakes.enqueuer import RecordingEnqueuer
from tests.fakes.webhook_receiver import WebhookReceiver
from tests.unit.delivery.helpers import add_endpoint, add_summary, deliver, make_services


def replay_items(
    factory: sessionmaker[Session], box: SecretBox, enqueuer: RecordingEnqueuer, **selection: object
) -> ReplayReport:
    core = Core(session_factory=factory, enqueuer=enqueuer, box=box)
    return replay(core, ReplaySelection(**selection))  # type: ignore[arg-type]


def dead_letter(factory: sessionmaker[Session], job_id: uuid.UUID, item_id: uuid.UUID) -> int:
    with factory() as session, session.begin():
        letter = DeadLetter(
            task_id=str(uuid.uuid4()),
            task_name=DELIVER,
            job_id=job_id,
            args=[str(job_id), str(item_id)],
            error="OperationalError: the database went away",
        )
        session.add(letter)
        session.flush()
        return letter.id


def test_replaying_a_sent_delivery_does_not_send_it_again(
    settings: Settings,
    session_factory: sessionmaker[Session],
    box: SecretBox,
    runtime: DeliveryRuntime,
    receiver: WebhookReceiver,
) -> None:
    endpoint_id, secret = add_endpoint(session_factory, box, f"{receiver.url}/hook")
    receiver.secrets = [secret]
    fan = add_summary(session_factory, [{"kind": "webhook", "endpoint_id": str(endpoint_id)}])
    services = make_services(settings, session_factory, runtime=runtime)
    item = fan.delivery_ids[0]
    # An earlier copy of the task died in a dead letter; the outbox then sent the item anyway.
    letter = dead_letter(session_factory, fan.job_id, item)
    deliver(services, fan.job_id, item)
    assert len(receiver.requests) == 1

    enqueuer = RecordingEnqueuer()
    report = replay_items(
        session_factory, box, enqueuer, delivery_ids=[str(item)], dead_letter_ids=[letter]
    )
    assert (report.deliveries, report.dead_letters) == (0, 0)
    assert any("already sent" in line for line in report.skipped), report.skipped
    assert enqueuer.sent == []
    for step in enqueuer.take():
        deliver(services, *map(uuid.UUID, step))
    with session_factory() as session:
        row = session.get(Delivery, item)
        job = session.get(Job, fan.job_id)
        assert row is not None and job is not None
        assert row.status == DeliveryStatus.SENT.value
        assert job.status == "completed"
    deliver(services, fan.job_id, item)
    assert len(receiver.requests) == 1


def test_replaying_a_delivery_in_flight_leaves_its_lease_alone(
    session_factory: sessionmaker[Session], box: SecretBox
) -> None:
    fan = add_summary(session_factory, [{"kind": "terminal"}])
    item = fan.delivery_ids[0]
    until = datetime.now(UTC) + timedelta(minutes=2)
    with session_factory() as session, session.begin():
        row = session.get(Delivery, item)
        assert row is not None
        row.status, row.lease_until, row.attempts = DeliveryStatus.SENDING.value, until, 1
    enqueuer = RecordingEnqueuer()
    report = replay_items(session_factory, box, enqueuer, delivery_ids=[str(item)])
    assert report.deliveries == 0 and enqueuer.sent == []
    assert any("being sent" in line for line in report.skipped), report.skipped
    with session_factory() as session:
        row = session.get(Delivery, item)
        assert row is not None
        assert (row.status, row.attempts) == (DeliveryStatus.SENDING.value, 1)
        assert row.lease_until is not None
