"""The deliver stage with webhook targets, on a migrated SQLite database and a local receiver."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from prometheus_client import REGISTRY
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from schema.models.delivery_log import DeliveryAttempt, DeliverySchedule, JobNotification
from schema.models.jobs import Delivery, Job
from schema.models.tenancy import WebhookAuthKind, WebhookEndpoint
from shared.crypto import SecretBox
from shared.delivery.events import event_schema_filename
from shared.delivery.runtime import DeliveryRuntime
from shared.errors import InvalidInputError
from shared.services.core import Actor, Core
from shared.services.webhook_endpoints import SECRET_OVERLAP, rotate_secret
from shared.settings import Settings
from shared.signing import verify, webhook_id_for
from tests.fakes.enqueuer import RecordingEnqueuer
from tests.fakes.webhook_receiver import Reply, WebhookReceiver
from tests.unit.delivery.helpers import (
    Clock,
    add_endpoint,
    add_summary,
    deliver,
    make_runtime,
    make_services,
    redrive,
)

SCHEMAS = Path(__file__).parents[3] / "schema" / "json"


def schema(event: str) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((SCHEMAS / event_schema_filename(event)).read_text())
    return loaded


def delivery(factory: sessionmaker[Session], delivery_id: uuid.UUID) -> Delivery:
    with factory() as session:
        row = session.get(Delivery, delivery_id)
        assert row is not None
        return row


def attempts(factory: sessionmaker[Session], delivery_id: uuid.UUID) -> list[DeliveryAttempt]:
    with factory() as session:
        return list(
            session.scalars(
                select(DeliveryAttempt)
                .where(DeliveryAttempt.delivery_id == delivery_id)
                .order_by(DeliveryAttempt.id)
            )
        )


def job_of(factory: sessionmaker[Session], job_id: uuid.UUID) -> Job:
    with factory() as session:
        job = session.get(Job, job_id)
        assert job is not None
        return job


def due_in(factory: sessionmaker[Session], delivery_id: uuid.UUID, now: datetime) -> float:
    """Seconds until the outbox retries the delivery."""
    with factory() as session:
        plan = session.get(DeliverySchedule, delivery_id)
        assert plan is not None and plan.next_attempt_at is not None
        return (plan.next_attempt_at - now).total_seconds()


def endpoint_of(factory: sessionmaker[Session], endpoint_id: uuid.UUID) -> WebhookEndpoint:
    with factory() as session:
        row = session.get(WebhookEndpoint, endpoint_id)
        assert row is not None
        return row


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def enqueuer() -> RecordingEnqueuer:
    return RecordingEnqueuer()


@pytest.fixture
def services(
    settings: Settings,
    session_factory: sessionmaker[Session],
    enqueuer: RecordingEnqueuer,
    clock: Clock,
    runtime: DeliveryRuntime,
) -> Any:
    return make_services(settings, session_factory, enqueuer=enqueuer, clock=clock, runtime=runtime)


def hook(receiver: WebhookReceiver, path: str = "/hook") -> str:
    return f"{receiver.url}{path}"


def ended(status: str) -> float:
    """Webhook deliveries counted as ended with ``status`` so far (the operator's metric)."""
    labels = {"kind": "webhook", "status": status}
    return REGISTRY.get_sample_value("summary_deliveries_total", labels) or 0.0


def test_summary_is_signed_sent_logged_and_the_job_completes(
    services: Any, session_factory: sessionmaker[Session], box: SecretBox, receiver: WebhookReceiver
) -> None:
    endpoint_id, secret = add_endpoint(session_factory, box, hook(receiver))
    receiver.secrets = [secret]
    fan = add_summary(session_factory, [{"kind": "webhook", "endpoint_id": str(endpoint_id)}])
    sent_before = ended("sent")
    deliver(services, fan.job_id, fan.delivery_ids[0])

    assert ended("sent") == sent_before + 1
    assert len(receiver.requests) == 1
    request = receiver.requests[0]
    assert request.verified, request.error
    assert request.path == "/hook"
    assert request.headers["webhook-id"] == webhook_id_for(fan.delivery_ids[0])
    assert request.headers["content-type"] == "application/json"
    body = json.loads(request.body)
    jsonschema.validate(body, schema("summary.completed"))
    assert body["type"] == "summary.completed"
    assert body["data"]["summary_id"] == str(fan.summary_id)
    assert "[[1]](https://discord.com/channels/1/2/11)" in body["data"]["markdown"]
    assert body["data"]["truncated"] is False

    row = delivery(session_factory, fan.delivery_ids[0])
    assert (row.status, row.remote_id, row.attempts) == ("sent", request.headers["webhook-id"], 1)
    [log] = attempts(session_factory, fan.delivery_ids[0])
    assert (log.outcome, log.status_code, log.number, log.endpoint_id) == (
        "sent",
        200,
        1,
        endpoint_id,
    )
    assert log.response_excerpt == "ok"
    assert job_of(session_factory, fan.job_id).status == "completed"
    # A second copy of the task does nothing, and the delivery is not counted again.
    deliver(services, fan.job_id, fan.delivery_ids[0])
    assert len(receiver.requests) == 1
    assert ended("sent") == sent_before + 1


def test_failures_follow_the_schedule_with_a_stable_id(
    services: Any,
    session_factory: sessionmaker[Session],
    box: SecretBox,
    receiver: WebhookReceiver,
    clock: Clock,
    enqueuer: RecordingEnqueuer,
    runtime: DeliveryRuntime,
) -> None:
    endpoint_id, secret = add_endpoint(session_factory, box, hook(receiver))
    receiver.secrets = [secret]
    fan = add_summary(session_factory, [{"kind": "webhook", "endpoint_id": str(endpoint_id)}])
    item = fan.delivery_ids[0]
    receiver.script(Reply(500, body=b"boom"), Reply(503), Reply(302, {"Location": "/x"}))

    # First failure: the outbox records the next attempt, 1 s later; the task ends there.
    assert deliver(services, fan.job_id, item) == []
    assert due_in(session_factory, item, clock.now) == pytest.approx(1.0)
    row = delivery(session_factory, item)
    assert (row.status, row.last_error) == ("pending", "the webhook answered HTTP 500")
    # Not due yet: a copy of the task that arrives early does nothing.
    deliver(services, fan.job_id, item)
    assert len(receiver.requests) == 1
    # The sweep brings it back once due, and only then.
    enqueuer.take()
    assert redrive(services, runtime.settings).enqueued == 0
    clock.advance(1.5)
    assert redrive(services, runtime.settings).enqueued == 1
    assert enqueuer.take() == [(str(fan.job_id), str(item))]

    # Second failure: 60 s.
    deliver(services, fan.job_id, item)
    assert due_in(session_factory, item, clock.now) == pytest.approx(60.0)
    clock.advance(61)
    # Third failure (a redirect): 3600 s.
    deliver(services, fan.job_id, item)
    log = attempts(session_factory, item)
    assert [a.outcome for a in log] == ["retry", "retry", "retry"]
    assert [a.status_code for a in log] == [500, 503, 302]
    assert "redirects are not followed" in (log[2].error or "")
    assert log[0].response_excerpt == "boom"
    with session_factory() as session:
        plan = session.get(DeliverySchedule, item)
        assert plan is not None and plan.failures == 3
        assert plan.next_attempt_at == clock.now + timedelta(seconds=3600)

    enqueuer.take()
    assert redrive(services, runtime.settings).enqueued == 0
    clock.advance(3601)
    report = redrive(services, runtime.settings)
    assert report.enqueued == 1
    assert enqueuer.take() == [(str(fan.job_id), str(item))]
    # Already enqueued: the next pass leaves it alone (within the grace period).
    assert redrive(services, runtime.settings).enqueued == 0

    deliver(services, fan.job_id, item)
    ids = {r.headers["webhook-id"] for r in receiver.requests}
    assert ids == {webhook_id_for(item)}
    stamps = [int(r.headers["webhook-timestamp"]) for r in receiver.requests]
    assert stamps == sorted(stamps) and len(set(stamps)) == 4  # re-signed each attempt
    assert delivery(session_factory, item).status == "sent"
    assert job_of(session_factory, fan.job_id).status == "completed"
    # The test clock ran ahead of the receiver's, so check the last signature at that time.
    last = receiver.requests[-1]
    assert verify(last.headers, last.body, [secret], now=clock.now.timestamp())


def test_a_fresh_delivery_whose_first_message_was_lost_is_redriven_after_the_grace(
    services: Any,
    session_factory: sessionmaker[Session],
    box: SecretBox,
    receiver: WebhookReceiver,
    clock: Clock,
    enqueuer: RecordingEnqueuer,
    runtime: DeliveryRuntime,
) -> None:
    endpoint_id, _ = add_endpoint(session_factory, box, hook(receiver))
    fan = add_summary(
        session_factory, [{"kind": "webhook", "endpoint_id": str(endpoint_id)}], now=clock.now
    )
    [item] = fan.delivery_ids
    grace = runtime.settings.delivery_redrive_grace_seconds
    # Never attempted, no schedule row: its first task message may still be on its way.
    assert redrive(services, runtime.settings).enqueued == 0
    clock.advance(grace + 1)
    assert redrive(services, runtime.settings).enqueued == 1
    assert enqueuer.take() == [(str(fan.job_id), str(item))]
    with session_factory() as session:
        plan = session.get(DeliverySchedule, item)
        assert plan is not None and plan.redriven_at == clock.now and plan.failures == 0
    assert redrive(services, runtime.settings).enqueued == 0
    clock.advance(grace + 1)  # that message was lost too: enqueue once more
    assert redrive(services, runtime.settings).enqueued == 1
    deliver(services, fan.job_id, item)
    assert delivery(session_factory, item).status == "sent"
    assert len(receiver.requests) == 1


def test_retry_after_is_a_floor(
    services: Any, session_factory: sessionmaker[Session], box: SecretBox, receiver: WebhookReceiver
) -> None:
    endpoint_id, _ = add_endpoint(session_factory, box, hook(receiver))
    fan = add_summary(session_factory, [{"kind": "webhook", "endpoint_id": str(endpoint_id)}])
    receiver.script(Reply(429, {"Retry-After": "120"}))
    deliver(services, fan.job_id, fan.delivery_ids[0])
    [first] = attempts(session_factory, fan.delivery_ids[0])
    assert first.next_attempt_at is not None
    assert (first.next_attempt_at - first.started_at).total_seconds() == pytest.approx(120, abs=1)
    receiver.script(Reply(503, {"Retry-After": "Wed, 21 Oct 2099 07:28:00 GMT"}))
    with session_factory() as session, session.begin():
        plan = session.get(DeliverySchedule, fan.delivery_ids[0])
        assert plan is not None
        plan.next_attempt_at = None
    deliver(services, fan.job_id, fan.delivery_ids[0])  # capped at a day
    [_, second] = attempts(session_factory, fan.delivery_ids[0])
    assert second.next_attempt_at is not None
    assert second.next_attempt_at - second.started_at >= timedelta(hours=23)


def test_exhausted_retries_fail_the_delivery_and_the_job(
    services: Any,
    session_factory: sessionmaker[Session],
    box: SecretBox,
    receiver: WebhookReceiver,
    clock: Clock,
) -> None:
    endpoint_id, _ = add_endpoint(session_factory, box, hook(receiver))
    fan = add_summary(session_factory, [{"kind": "webhook", "endpoint_id": str(endpoint_id)}])
    receiver.default = Reply(500)
    failed_before = ended("failed")
    for attempt in range(4):
        deliver(services, fan.job_id, fan.delivery_ids[0])
        clock.advance(4000)
        # Attempts that will be retried end nothing; the last one ends the delivery.
        assert ended("failed") == failed_before + (attempt == 3)
    row = delivery(session_factory, fan.delivery_ids[0])
    assert row.status == "failed"
    assert "gave up after 4 failed attempts" in (row.last_error or "")
    job = job_of(session_factory, fan.job_id)
    assert job.status == "failed"
    assert "HTTP 500" in (job.error or "")
    assert [a.outcome for a in attempts(session_factory, fan.delivery_ids[0])] == [
        "retry",
        "retry",
        "retry",
        "failed",
    ]
    # The endpoint that failed is not told about the failure it caused.
    with session_factory() as session:
        assert session.scalars(select(JobNotification)).all() == []


def test_gone_disables_the_endpoint_and_falls_back(
    services: Any,
    session_factory: sessionmaker[Session],
    box: SecretBox,
    enqueuer: RecordingEnqueuer,
) -> None:
    with WebhookReceiver() as primary, WebhookReceiver() as spare:
        spare_id, spare_secret = add_endpoint(session_factory, box, hook(spare))
        spare.secrets = [spare_secret]
        primary_id, _ = add_endpoint(
            session_factory,
            box,
            hook(primary),
            fallback={"kind": "webhook", "endpoint_id": str(spare_id)},
        )
        fan = add_summary(session_factory, [{"kind": "webhook", "endpoint_id": str(primary_id)}])
        primary.script(Reply(410))
        deliver(services, fan.job_id, fan.delivery_ids[0])

        row = delivery(session_factory, fan.delivery_ids[0])
        assert row.status == "failed" and "410 Gone" in (row.last_error or "")
        endpoint = endpoint_of(session_factory, primary_id)
        assert not endpoint.enabled and "410 Gone" in (endpoint.disabled_reason or "")
        [(job_arg, fallback_arg)] = [a for a in enqueuer.take() if a[0] == str(fan.job_id)]
        fallback = delivery(session_factory, uuid.UUID(fallback_arg))
        assert (fallback.fallback_of, fallback.target, fallback.status) == (
            row.id,
            f"webhook:{spare_id}",
            "pending",
        )
        # The job ended when its summary was stored; its deliveries are still under way.
        assert job_of(session_factory, fan.job_id).status == "completed"

        deliver(services, uuid.UUID(job_arg), fallback.id)
        assert spare.accepted() == 1 and spare.requests[0].verified
        job = job_of(session_factory, fan.job_id)
        assert job.status == "completed"
        assert job.progress["fallbacks"] == 1 and job.progress["deliveries_failed"] == 1

        # Later summaries to the disabled endpoint go straight to the fallback, no request.
        second = add_summary(session_factory, [{"kind": "webhook", "endpoint_id": str(primary_id)}])
        deliver(services, second.job_id, second.delivery_ids[0])
        assert len(primary.requests) == 1
        assert "disabled" in (delivery(session_factory, second.delivery_ids[0]).last_error or "")
        assert len(enqueuer.take()) == 1


def test_an_endpoints_fallback_never_widens_a_digests_audience(
    services: Any,
    session_factory: sessionmaker[Session],
    box: SecretBox,
    enqueuer: RecordingEnqueuer,
) -> None:
    # A digest sent to a webhook names its readers (here one moderator), and holds only what
    # they may all read.  The endpoint's fallback is set on the endpoint, not in the job: an
    # endpoint that answers 410 used to post such a digest into the fallback channel, read by
    # everyone in it.
    with WebhookReceiver() as primary:
        primary_id, _ = add_endpoint(session_factory, box, hook(primary))
        fan = add_summary(session_factory, [{"kind": "webhook", "endpoint_id": str(primary_id)}])
        with session_factory() as session, session.begin():
            endpoint = session.get(WebhookEndpoint, primary_id)
            assert endpoint is not None
            # A public channel of the guild (set later through PATCH, say).
            endpoint.fallback = {"kind": "channel", "channel_id": "900000000000000001"}
            job = session.get(Job, fan.job_id)
            assert job is not None
            job.params = {
                **job.params,
                "source": {
                    "kind": "discord_server",
                    "guild_id": "1",
                    "after": "2026-03-01T00:00:00Z",
                    "audience": [{"kind": "member", "user_id": "800000000000000001"}],
                },
            }
        primary.script(Reply(410))
        deliver(services, fan.job_id, fan.delivery_ids[0])
        row = delivery(session_factory, fan.delivery_ids[0])
        assert row.status == "failed"
        assert [a for a in enqueuer.take() if a[0] == str(fan.job_id)] == []
        with session_factory() as session:
            assert (
                session.scalars(select(Delivery).where(Delivery.fallback_of == row.id)).all() == []
            )


def test_endpoint_failing_for_days_is_disabled(
    services: Any,
    session_factory: sessionmaker[Session],
    box: SecretBox,
    receiver: WebhookReceiver,
    clock: Clock,
) -> None:
    endpoint_id, _ = add_endpoint(session_factory, box, hook(receiver))
    # Six days of deliveries failing, tried twice a day.
    _failing_since(
        session_factory,
        endpoint_id,
        [clock.now - timedelta(hours=hours) for hours in range(144, 0, -12)],
    )
    fan = add_summary(session_factory, [{"kind": "webhook", "endpoint_id": str(endpoint_id)}])
    receiver.script(Reply(502))
    deliver(services, fan.job_id, fan.delivery_ids[0])
    endpoint = endpoint_of(session_factory, endpoint_id)
    assert not endpoint.enabled
    assert "every delivery failed for 6.0 days" in (endpoint.disabled_reason or "")
    row = delivery(session_factory, fan.delivery_ids[0])
    assert row.status == "failed" and "now disabled" in (row.last_error or "")


def test_an_endpoint_idle_since_it_last_failed_is_not_disabled_by_one_more_failure(
    services: Any,
    session_factory: sessionmaker[Session],
    box: SecretBox,
    receiver: WebhookReceiver,
    clock: Clock,
) -> None:
    # It failed six days ago, then nothing was sent to it until now: idle, not failing.
    endpoint_id, _ = add_endpoint(session_factory, box, hook(receiver))
    _failing_since(session_factory, endpoint_id, [clock.now - timedelta(days=6)])
    fan = add_summary(session_factory, [{"kind": "webhook", "endpoint_id": str(endpoint_id)}])
    receiver.script(Reply(502))
    deliver(services, fan.job_id, fan.delivery_ids[0])
    endpoint = endpoint_of(session_factory, endpoint_id)
    assert endpoint.enabled and endpoint.disabled_reason is None
    assert endpoint.failing_since == clock.now  # its failure clock starts again
    assert delivery(session_factory, fan.delivery_ids[0]).status == "pending"


def _failing_since(
    session_factory: sessionmaker[Session], endpoint_id: uuid.UUID, failed_at: list[datetime]
) -> None:
    """Record failed attempts at ``failed_at`` (of an earlier delivery) and the endpoint's
    failure clock started at the first, as the outbox would have."""
    earlier = add_summary(session_factory, [{"kind": "webhook", "endpoint_id": str(endpoint_id)}])
    with session_factory() as session, session.begin():
        endpoint = session.get(WebhookEndpoint, endpoint_id)
        assert endpoint is not None
        endpoint.failing_since = failed_at[0]
        session.add_all(
            DeliveryAttempt(
                delivery_id=earlier.delivery_ids[0],
                number=number,
                target=f"webhook:{endpoint_id}",
                endpoint_id=endpoint_id,
                started_at=when,
                status_code=502,
                outcome="retry",
            )
            for number, when in enumerate(failed_at, start=1)
        )


def test_success_resets_the_failure_clock(
    services: Any, session_factory: sessionmaker[Session], box: SecretBox, receiver: WebhookReceiver
) -> None:
    endpoint_id, _ = add_endpoint(session_factory, box, hook(receiver))
    fan = add_summary(session_factory, [{"kind": "webhook", "endpoint_id": str(endpoint_id)}])
    receiver.script(Reply(500))
    deliver(services, fan.job_id, fan.delivery_ids[0])
    assert endpoint_of(session_factory, endpoint_id).failing_since is not None
    other = add_summary(session_factory, [{"kind": "webhook", "endpoint_id": str(endpoint_id)}])
    deliver(services, other.job_id, other.delivery_ids[0])
    assert endpoint_of(session_factory, endpoint_id).failing_since is None


@pytest.mark.parametrize(
    ("kind", "secret", "header", "value"),
    [
        (WebhookAuthKind.BEARER, "tok-123", "authorization", "Bearer tok-123"),
        (WebhookAuthKind.BASIC, "ann:pw", "authorization", "Basic YW5uOnB3"),
        (WebhookAuthKind.HEADER, "X-Api-Key: k 1", "x-api-key", "k 1"),
    ],
)
def test_auth_headers_are_sent(
    services: Any,
    session_factory: sessionmaker[Session],
    box: SecretBox,
    receiver: WebhookReceiver,
    kind: WebhookAuthKind,
    secret: str,
    header: str,
    value: str,
) -> None:
    endpoint_id, _ = add_endpoint(
        session_factory, box, hook(receiver), auth_kind=kind, auth_secret=secret
    )
    stored = endpoint_of(session_factory, endpoint_id)
    assert secret not in (stored.auth_encrypted or "")
    fan = add_summary(session_factory, [{"kind": "webhook", "endpoint_id": str(endpoint_id)}])
    deliver(services, fan.job_id, fan.delivery_ids[0])
    assert receiver.requests[0].headers[header] == value


def _deliver_with_stored_auth(
    services: Any,
    session_factory: sessionmaker[Session],
    box: SecretBox,
    receiver: WebhookReceiver,
    kind: WebhookAuthKind,
    secret: str,
) -> Delivery:
    """Deliver to an endpoint whose stored auth was written as given (not through
    registration, which refuses what these tests store); the delivery's row afterwards."""
    endpoint_id, _ = add_endpoint(session_factory, box, hook(receiver))
    with session_factory() as session, session.begin():
        row = session.get(WebhookEndpoint, endpoint_id)
        assert row is not None
        row.auth_kind = kind.value
        row.auth_encrypted = box.encrypt(secret)
    fan = add_summary(session_factory, [{"kind": "webhook", "endpoint_id": str(endpoint_id)}])
    deliver(services, fan.job_id, fan.delivery_ids[0])
    return delivery(session_factory, fan.delivery_ids[0])


@pytest.mark.parametrize(
    ("kind", "secret", "error"),
    [
        (WebhookAuthKind.HEADER, "Webhook-Id: forged", "custom auth header"),
        (WebhookAuthKind.HEADER, "no colon", "custom auth header"),
        (WebhookAuthKind.BASIC, "nocolon", "user:password"),
    ],
)
def test_bad_stored_auth_fails_without_sending(
    services: Any,
    session_factory: sessionmaker[Session],
    box: SecretBox,
    receiver: WebhookReceiver,
    kind: WebhookAuthKind,
    secret: str,
    error: str,
) -> None:
    # Registration refuses these (the same rule); a row written some other way must not send.
    row = _deliver_with_stored_auth(services, session_factory, box, receiver, kind, secret)
    assert receiver.requests == []
    assert row.status == "failed" and error in (row.last_error or "")


def test_rotated_secrets_sign_twice_until_the_old_one_expires(
    services: Any,
    session_factory: sessionmaker[Session],
    box: SecretBox,
    receiver: WebhookReceiver,
    clock: Clock,
) -> None:
    endpoint_id, old = add_endpoint(session_factory, box, hook(receiver))
    core = Core(session_factory=session_factory, enqueuer=RecordingEnqueuer(), box=box, clock=clock)
    new = rotate_secret(core, Actor(origin="api", guild_id="1"), endpoint_id).secret
    receiver.secrets = [old]  # a receiver that has not switched yet
    fan = add_summary(session_factory, [{"kind": "webhook", "endpoint_id": str(endpoint_id)}])
    deliver(services, fan.job_id, fan.delivery_ids[0])
    assert receiver.requests[0].verified
    assert len(receiver.requests[0].headers["webhook-signature"].split()) == 2

    # Past the overlap (real time: receivers check the stamp).
    clock.now = datetime.now(UTC) + SECRET_OVERLAP + timedelta(hours=1)
    receiver.secrets = [new]
    later = add_summary(session_factory, [{"kind": "webhook", "endpoint_id": str(endpoint_id)}])
    deliver(services, later.job_id, later.delivery_ids[0])
    assert len(receiver.requests[1].headers["webhook-signature"].split()) == 1


def test_payload_cap_thins_the_event(
    settings: Settings,
    session_factory: sessionmaker[Session],
    box: SecretBox,
    receiver: WebhookReceiver,
) -> None:
    runtime = make_runtime(box, webhook_max_payload_bytes=1500)
    services = make_services(settings, session_factory, runtime=runtime)
    endpoint_id, _ = add_endpoint(session_factory, box, hook(receiver))
    fan = add_summary(session_factory, [{"kind": "webhook", "endpoint_id": str(endpoint_id)}])
    deliver(services, fan.job_id, fan.delivery_ids[0])
    body = json.loads(receiver.requests[0].body)
    assert len(receiver.requests[0].body) <= 1500
    assert body["data"]["truncated"] is True
    assert body["data"]["summary"] is None and body["data"]["markdown"] is None
    jsonschema.validate(body, schema("summary.completed"))


def test_unsubscribed_other_guild_missing_and_refused_endpoints(
    services: Any, session_factory: sessionmaker[Session], box: SecretBox, receiver: WebhookReceiver
) -> None:
    quiet_id, _ = add_endpoint(session_factory, box, hook(receiver), events=["job.failed"])
    foreign_id, _ = add_endpoint(session_factory, box, hook(receiver), guild_id="99")
    internal_id, _ = add_endpoint(
        session_factory, box, hook(receiver), allowed=["127.0.0.1", "10.0.0.1"]
    )
    with session_factory() as session, session.begin():
        row = session.get(WebhookEndpoint, internal_id)
        assert row is not None
        row.url = "https://10.0.0.1/hook"
    gone = uuid.uuid4()
    fan = add_summary(
        session_factory,
        [
            {"kind": "webhook", "endpoint_id": str(quiet_id)},
            {"kind": "webhook", "endpoint_id": str(foreign_id)},
            {"kind": "webhook", "endpoint_id": str(internal_id)},
            {"kind": "webhook", "endpoint_id": str(gone)},
        ],
    )
    for item in fan.delivery_ids:
        deliver(services, fan.job_id, item)
    assert receiver.requests == []
    rows = [delivery(session_factory, i) for i in fan.delivery_ids]
    assert [r.status for r in rows] == ["sent", "failed", "failed", "failed"]
    assert attempts(session_factory, fan.delivery_ids[0])[0].outcome == "skipped"
    assert "no webhook endpoint" in (rows[1].last_error or "")
    assert "private network" in (rows[2].last_error or "")
    assert "no longer exists" in (rows[3].last_error or "")
    # One delivery reached its endpoint, three did not: people and the API can tell.
    job = job_of(session_factory, fan.job_id)
    assert job.status == "completed_with_errors"
    assert job.progress["deliveries_failed"] == 3 and "no longer exists" in (job.error or "")


def test_job_failed_event_reaches_webhooks_of_jobs_that_failed_elsewhere(
    services: Any,
    session_factory: sessionmaker[Session],
    box: SecretBox,
    receiver: WebhookReceiver,
    enqueuer: RecordingEnqueuer,
    runtime: DeliveryRuntime,
    clock: Clock,
) -> None:
    endpoint_id, secret = add_endpoint(session_factory, box, hook(receiver))
    receiver.secrets = [secret]
    fan = add_summary(session_factory, [{"kind": "webhook", "endpoint_id": str(endpoint_id)}])
    with session_factory() as session, session.begin():
        job = session.get(Job, fan.job_id)
        assert job is not None
        job.status, job.error, job.finished_at = "failed", "the channel is empty", clock.now
    enqueuer.take()
    report = redrive(services, runtime.settings)
    assert report.job_failed_created == 1
    [(job_arg, item_arg)] = enqueuer.take()
    assert redrive(services, runtime.settings).job_failed_created == 0

    deliver(services, uuid.UUID(job_arg), uuid.UUID(item_arg))
    body = json.loads(receiver.requests[0].body)
    jsonschema.validate(body, schema("job.failed"))
    assert body["type"] == "job.failed"
    assert body["data"]["error"] == "the channel is empty"
    assert receiver.requests[0].headers["webhook-id"] == webhook_id_for(uuid.UUID(item_arg))
    with session_factory() as session:
        note = session.get(JobNotification, uuid.UUID(item_arg))
        assert note is not None and note.status == "sent"
        [log] = session.scalars(
            select(DeliveryAttempt).where(DeliveryAttempt.notification_id == note.id)
        ).all()
        assert log.outcome == "sent"


def test_leases_protect_a_send_in_progress_and_expire_for_dead_workers(
    services: Any,
    session_factory: sessionmaker[Session],
    box: SecretBox,
    receiver: WebhookReceiver,
    clock: Clock,
    enqueuer: RecordingEnqueuer,
    runtime: DeliveryRuntime,
) -> None:
    from shared.delivery.outbox import Claim, Skip, claim_item

    endpoint_id, _ = add_endpoint(session_factory, box, hook(receiver))
    fan = add_summary(session_factory, [{"kind": "webhook", "endpoint_id": str(endpoint_id)}])
    item = fan.delivery_ids[0]
    lease = timedelta(seconds=runtime.settings.delivery_lease_seconds)
    first = claim_item(session_factory, item, now=clock.now, lease=lease)
    assert isinstance(first, Claim) and first.attempt == 1
    # The worker holding it "dies"; a redelivered copy finds the lease live and does nothing.
    deliver(services, fan.job_id, item)
    assert receiver.requests == []
    assert redrive(services, runtime.settings).expired_leases == 0
    clock.advance(runtime.settings.delivery_lease_seconds + 1)
    enqueuer.take()
    report = redrive(services, runtime.settings)
    assert (report.expired_leases, report.enqueued) == (1, 1)
    assert enqueuer.take() == [(str(fan.job_id), str(item))]
    deliver(services, fan.job_id, item)
    assert receiver.accepted() == 1
    row = delivery(session_factory, item)
    assert (row.status, row.attempts) == ("sent", 2)
    assert isinstance(claim_item(session_factory, item, now=clock.now, lease=lease), Skip)
    assert claim_item(session_factory, uuid.uuid4(), now=clock.now, lease=lease) == Skip("missing")


def test_a_delivery_that_kills_every_worker_is_given_up(
    settings: Settings,
    session_factory: sessionmaker[Session],
    box: SecretBox,
    receiver: WebhookReceiver,
) -> None:
    runtime = make_runtime(box, delivery_max_claims=2, delivery_lease_seconds=5)
    clock = Clock()
    services = make_services(settings, session_factory, clock=clock, runtime=runtime)
    endpoint_id, _ = add_endpoint(session_factory, box, hook(receiver))
    fan = add_summary(session_factory, [{"kind": "webhook", "endpoint_id": str(endpoint_id)}])
    from shared.delivery.outbox import claim_item

    for _ in range(2):
        claim_item(session_factory, fan.delivery_ids[0], now=clock.now, lease=timedelta(seconds=5))
        clock.advance(6)
    deliver(services, fan.job_id, fan.delivery_ids[0])
    row = delivery(session_factory, fan.delivery_ids[0])
    assert row.status == "failed" and "gave up after 2 attempts" in (row.last_error or "")
    assert receiver.requests == []


def test_local_targets_still_deliver(
    services: Any, session_factory: sessionmaker[Session], tmp_path: Path
) -> None:
    out = tmp_path / "out" / "summary.md"
    fan = add_summary(
        session_factory,
        [{"kind": "terminal", "render": "text"}, {"kind": "file", "path": str(out)}],
    )
    for item in fan.delivery_ids:
        deliver(services, fan.job_id, item)
    assert "Summary of #support" in services.console.getvalue()
    assert out.read_text().startswith("# Summary of #support")
    assert job_of(session_factory, fan.job_id).status == "completed"
    blocked = tmp_path / "file-not-dir"
    blocked.write_text("x")
    bad = add_summary(session_factory, [{"kind": "file", "path": str(blocked / "s.md")}])
    deliver(services, bad.job_id, bad.delivery_ids[0])
    assert job_of(session_factory, bad.job_id).status == "failed"


def test_a_failed_attempt_publishes_nothing_and_waits_in_the_outbox(
    services: Any,
    session_factory: sessionmaker[Session],
    box: SecretBox,
    receiver: WebhookReceiver,
    enqueuer: RecordingEnqueuer,
) -> None:
    endpoint_id, _ = add_endpoint(session_factory, box, hook(receiver))
    fan = add_summary(session_factory, [{"kind": "webhook", "endpoint_id": str(endpoint_id)}])
    receiver.script(Reply(500))
    enqueuer.take()
    assert deliver(services, fan.job_id, fan.delivery_ids[0]) == []
    assert enqueuer.sent == []
    assert delivery(session_factory, fan.delivery_ids[0]).status == "pending"


def test_sweep_settles_jobs_whose_last_delivery_ended_without_settling_the_job(
    services: Any,
    session_factory: sessionmaker[Session],
    runtime: DeliveryRuntime,
) -> None:
    # The worker died right after recording each outcome, before settling the job.
    failed = add_summary(session_factory, [{"kind": "terminal"}])
    legacy = add_summary(session_factory, [{"kind": "terminal"}])
    with session_factory() as session, session.begin():
        row = session.get(Delivery, failed.delivery_ids[0])
        assert row is not None
        row.status, row.last_error = "failed", "the disk is full"
        sent = session.get(Delivery, legacy.delivery_ids[0])
        assert sent is not None
        sent.status = "sent"
        old = session.get(Job, legacy.job_id)
        assert old is not None
        old.status = "delivering"  # left waiting by an older version
    report = redrive(services, runtime.settings)
    assert report.jobs_finished == 2
    ended = job_of(session_factory, failed.job_id)
    assert ended.status == "failed" and "the disk is full" in (ended.error or "")
    assert job_of(session_factory, legacy.job_id).status == "completed"
    assert redrive(services, runtime.settings).jobs_finished == 0


def test_sweep_task_runs_on_the_worker_services(
    services: Any, session_factory: sessionmaker[Session], runtime: DeliveryRuntime
) -> None:
    from workers.tasks.maintenance import redrive as redrive_task

    fan = add_summary(session_factory, [{"kind": "terminal"}])
    with session_factory() as session, session.begin():
        row = session.get(Delivery, fan.delivery_ids[0])
        assert row is not None
        row.status, row.lease_until = "sending", services.clock() - timedelta(seconds=1)
    assert redrive_task(services) == 1
    assert services.enqueuer.take() == [(str(fan.job_id), str(fan.delivery_ids[0]))]


def test_a_bug_while_sending_fails_the_delivery_and_reaches_the_task_decorator(
    services: Any, session_factory: sessionmaker[Session]
) -> None:
    fan = add_summary(session_factory, [{"kind": "terminal"}])
    with session_factory() as session, session.begin():
        row = session.get(Delivery, fan.delivery_ids[0])
        assert row is not None
        row.kind, row.params = "file", {"kind": "file", "path": "relative.md"}
    with pytest.raises(ValueError, match="absolute"):
        deliver(services, fan.job_id, fan.delivery_ids[0])
    failed = delivery(session_factory, fan.delivery_ids[0])
    assert failed.status == "failed" and "internal error" in (failed.last_error or "")
    [log] = attempts(session_factory, fan.delivery_ids[0])
    assert log.outcome == "failed"


def test_the_runtime_uses_the_workers_discord_client(tmp_path: Path) -> None:
    from shared.crypto import generate_key
    from shared.delivery.runtime import build_runtime
    from shared.discord.config import DiscordSettings
    from shared.discord.factory import build_discord_client
    from shared.settings import load_settings

    settings = load_settings(
        secret_keys=generate_key(), data_dir=tmp_path, discord=DiscordSettings(token="bot-token")
    )
    client = build_discord_client(settings.discord, None, None, None)
    runtime = build_runtime(settings, discord=client)
    assert runtime.discord() is client and runtime.discord() is client
    bare = build_runtime(load_settings(secret_keys=generate_key(), data_dir=tmp_path))
    with pytest.raises(Exception, match="DISCORD_TOKEN is not set"):
        bare.discord()
    client.close()


# Values a header cannot carry: a line break (which would start a header of its own) and
# characters outside what HTTP/1.1 puts on the wire.
UNSENDABLE_AUTH = [
    (WebhookAuthKind.BEARER, "tok-s3cret\nX-Injected: 1", "s3cret"),
    (WebhookAuthKind.BEARER, "令牌-s3cret", "s3cret"),
    (WebhookAuthKind.HEADER, "X-Api-Key: 値-s3cret", "s3cret"),
    # HTTP trims a value's edges, and h11 refuses a value that has whitespace there.
    (WebhookAuthKind.BEARER, "tok-s3cret ", "s3cret"),
    (WebhookAuthKind.BEARER, "\t", "Bearer \t"),
]


@pytest.mark.parametrize(("kind", "secret", "part"), UNSENDABLE_AUTH)
def test_unsendable_stored_auth_fails_for_good_without_sending_or_showing_it(
    services: Any,
    session_factory: sessionmaker[Session],
    box: SecretBox,
    receiver: WebhookReceiver,
    kind: WebhookAuthKind,
    secret: str,
    part: str,
) -> None:
    row = _deliver_with_stored_auth(services, session_factory, box, receiver, kind, secret)
    assert receiver.requests == []
    assert row.status == "failed", row.last_error
    assert "auth" in (row.last_error or "")
    # The decrypted secret is never written where the delivery's errors are shown.
    assert part not in (row.last_error or "")
    assert all(part not in (a.error or "") for a in attempts(session_factory, row.id))


@pytest.mark.parametrize(("kind", "secret", "part"), UNSENDABLE_AUTH)
def test_unsendable_auth_is_refused_at_registration(
    session_factory: sessionmaker[Session],
    box: SecretBox,
    receiver: WebhookReceiver,
    kind: WebhookAuthKind,
    secret: str,
    part: str,
) -> None:
    with pytest.raises(InvalidInputError) as info:
        add_endpoint(session_factory, box, hook(receiver), auth_kind=kind, auth_secret=secret)
    assert info.value.field == "auth"
    assert part not in str(info.value) and part not in info.value.user_message


@pytest.mark.parametrize("status", [200, 500])
def test_a_binary_answer_is_logged_as_text_and_the_attempt_recorded(
    services: Any,
    session_factory: sessionmaker[Session],
    box: SecretBox,
    receiver: WebhookReceiver,
    status: int,
) -> None:
    # A receiver may answer with any bytes (gzip, an image, a C string with its NUL): the
    # attempt is recorded all the same, with a readable excerpt.
    endpoint_id, secret = add_endpoint(session_factory, box, hook(receiver))
    receiver.secrets = [secret]
    receiver.script(Reply(status, body=b"ok\x00\x1f\x8b\x08\x00\xff\x01 done\x07"))
    fan = add_summary(session_factory, [{"kind": "webhook", "endpoint_id": str(endpoint_id)}])
    deliver(services, fan.job_id, fan.delivery_ids[0])
    row = delivery(session_factory, fan.delivery_ids[0])
    assert row.status == ("sent" if status == 200 else "pending")
    (log,) = attempts(session_factory, row.id)
    excerpt = log.response_excerpt or ""
    assert excerpt.startswith("ok") and "done" in excerpt
    assert not any(ord(c) < 0x20 and c not in "\t\n\r" for c in excerpt), repr(excerpt)


@pytest.mark.parametrize(
    "retry_after",
    [
        "Mon, 01 Jan 99999999999999999999 00:00:00 GMT",  # a year no datetime can hold
        "Mon, 01 Jan 2030 25:61:00 GMT",
        "-5",
        "1.5e300",
    ],
)
def test_a_malformed_retry_after_is_ignored_and_the_delivery_retried(
    services: Any,
    session_factory: sessionmaker[Session],
    box: SecretBox,
    receiver: WebhookReceiver,
    retry_after: str,
) -> None:
    endpoint_id, _ = add_endpoint(session_factory, box, hook(receiver))
    fan = add_summary(session_factory, [{"kind": "webhook", "endpoint_id": str(endpoint_id)}])
    receiver.script(Reply(503, {"Retry-After": retry_after}))
    deliver(services, fan.job_id, fan.delivery_ids[0])
    row = delivery(session_factory, fan.delivery_ids[0])
    assert (row.status, row.last_error) == ("pending", "the webhook answered HTTP 503")
    [attempt] = attempts(session_factory, row.id)
    assert attempt.next_attempt_at is not None
    # The schedule's first delay (1 s in these tests), as if no Retry-After had been given.
    assert (attempt.next_attempt_at - attempt.started_at).total_seconds() == pytest.approx(1, abs=1)


def test_an_event_a_disabled_endpoint_never_subscribed_to_goes_nowhere(
    services: Any,
    session_factory: sessionmaker[Session],
    box: SecretBox,
    enqueuer: RecordingEnqueuer,
    runtime: DeliveryRuntime,
    clock: Clock,
) -> None:
    # The endpoint takes summaries only; disabled, its fallback takes them in its place, but a
    # job.failed event is no more the fallback's to receive than the endpoint's.
    with WebhookReceiver() as primary, WebhookReceiver() as spare:
        spare_id, _ = add_endpoint(session_factory, box, hook(spare))
        primary_id, _ = add_endpoint(
            session_factory,
            box,
            hook(primary),
            events=("summary.completed",),
            fallback={"kind": "webhook", "endpoint_id": str(spare_id)},
        )
        with session_factory() as session, session.begin():
            endpoint = session.get(WebhookEndpoint, primary_id)
            assert endpoint is not None
            endpoint.enabled, endpoint.disabled_reason = False, "the receiver answered 410 Gone"
        fan = add_summary(session_factory, [{"kind": "webhook", "endpoint_id": str(primary_id)}])
        with session_factory() as session, session.begin():
            job = session.get(Job, fan.job_id)
            assert job is not None
            job.status, job.error, job.finished_at = "failed", "the channel is empty", clock.now
        enqueuer.take()
        redrive(services, runtime.settings)
        [(job_arg, note_arg)] = enqueuer.take()
        deliver(services, uuid.UUID(job_arg), uuid.UUID(note_arg))
        with session_factory() as session:
            note = session.get(JobNotification, uuid.UUID(note_arg))
            assert note is not None
            assert (note.status, note.last_error) == ("sent", None)
        assert enqueuer.take() == []  # no fallback notice was created
        assert primary.requests == [] and spare.requests == []
