"""A worker whose lease ran out may still finish its send: its failure must not undo the claim
of the worker that took the item over (its success is recorded: the target has the item)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from schema.models.delivery_log import DeliveryAttempt
from schema.models.jobs import Delivery, DeliveryStatus
from shared.delivery.config import DeliverySettings
from shared.delivery.outbox import Claim, Outcome, RetryRules, claim_item, record_outcome
from shared.delivery.redrive import redrive_deliveries
from tests.unit.delivery.helpers import add_summary

LEASE = timedelta(seconds=30)
RULES = RetryRules(schedule=[5, 60], jitter=0.0, disable_after=timedelta(days=5))


@pytest.mark.parametrize(
    "late",
    [
        Outcome.failure("the webhook answered HTTP 503", retryable=True),
        Outcome.failure(
            "Missing Access", retryable=False, fallback={"kind": "channel", "channel_id": "42"}
        ),
    ],
    ids=["retryable", "permanent"],
)
def test_a_late_failure_does_not_clobber_the_live_claim(
    session_factory: sessionmaker[Session], late: Outcome
) -> None:
    fan = add_summary(session_factory, [{"kind": "terminal"}])
    item = fan.delivery_ids[0]
    t0 = datetime.now(UTC)
    stale = claim_item(session_factory, item, now=t0, lease=LEASE)
    assert isinstance(stale, Claim)
    # Its worker stalls past the lease; the sweep hands the item to another worker.
    later = t0 + LEASE + timedelta(seconds=1)
    redrive_deliveries(session_factory, DeliverySettings(), now=later)
    live = claim_item(session_factory, item, now=later, lease=LEASE)
    assert isinstance(live, Claim) and live.attempt == stale.attempt + 1

    with session_factory() as session, session.begin():
        result = record_outcome(
            session, stale, late, now=later + timedelta(seconds=2), started_at=t0, rules=RULES
        )
    assert result.fallbacks == []
    with session_factory() as session:
        row = session.get(Delivery, item)
        assert row is not None
        assert (row.status, row.attempts) == (DeliveryStatus.SENDING.value, live.attempt)
        assert row.lease_until is not None
        logged = session.scalars(select(DeliveryAttempt).where(DeliveryAttempt.delivery_id == item))
        assert [a.number for a in logged] == [stale.attempt]

    # The live claim's own outcome is recorded as usual.
    with session_factory() as session, session.begin():
        done = record_outcome(
            session, live, Outcome.sent("ok"), now=later, started_at=later, rules=RULES
        )
    assert done.status == DeliveryStatus.SENT.value


def test_a_late_success_is_recorded(session_factory: sessionmaker[Session]) -> None:
    fan = add_summary(session_factory, [{"kind": "terminal"}])
    item = fan.delivery_ids[0]
    t0 = datetime.now(UTC)
    stale = claim_item(session_factory, item, now=t0, lease=LEASE)
    later = t0 + LEASE + timedelta(seconds=1)
    redrive_deliveries(session_factory, DeliverySettings(), now=later)
    live = claim_item(session_factory, item, now=later, lease=LEASE)
    assert isinstance(stale, Claim) and isinstance(live, Claim)
    with session_factory() as session, session.begin():
        result = record_outcome(
            session, stale, Outcome.sent("late"), now=later, started_at=t0, rules=RULES
        )
    assert result.status == DeliveryStatus.SENT.value
    with session_factory() as session, session.begin():
        after = record_outcome(
            session,
            live,
            Outcome.failure("HTTP 503", retryable=True),
            now=later,
            started_at=later,
            rules=RULES,
        )
    assert after.status == DeliveryStatus.SENT.value
