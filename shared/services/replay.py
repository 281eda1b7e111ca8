"""Re-driving what ended badly: dead letters and failed deliveries, after the cause is fixed.

Each item is reset in the database first — a failed (or still pending) delivery or
notification to ``pending`` and due now, its job reopened by the lifecycle's replay moves
(:attr:`shared.lifecycle.Move.REPLAY_FETCH` when no summary was stored,
:attr:`~shared.lifecycle.Move.REPLAY_DELIVERY` when one was) — and then published.  The stages
are idempotent and re-check the guild boundary themselves, so a replayed job that should never
have run is refused by its worker, and replaying something twice still has its effect once.  An
item that was sent is never reset (its target has it: a replay would post it again), nor one
that is being sent (its lease, and the redrive sweep's handling of a lease that runs out,
decide what happens to it).
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from schema.models.delivery_log import DeliverySchedule, JobNotification
from schema.models.jobs import DeadLetter, Delivery, DeliveryStatus, Job, Summary
from shared import lifecycle
from shared.delivery.settle import pending_deliver_steps
from shared.errors import InvalidInputError
from shared.jobs import DELIVER, FETCH, SUMMARIZE, Step
from shared.services.core import Core

__all__ = ["ReplayReport", "ReplaySelection", "replay"]


@dataclass
class ReplayReport:
    """What a replay did (or, with ``dry_run``, would do)."""

    dead_letters: int = 0
    deliveries: int = 0
    jobs: int = 0
    skipped: list[str] = field(default_factory=list)


def _uuid(text: str, what: str) -> uuid.UUID:
    try:
        return uuid.UUID(str(text))
    except ValueError:
        raise InvalidInputError(
            f"{what} {text!r} is not an id; give the UUID shown by the API or the logs"
        ) from None


def _reopen(job: Job, which: lifecycle.Move, now: datetime) -> list[Step]:
    # The redelivery count starts again: a job failed by the poison cap would otherwise give
    # up at its first redelivery after the fix (a Redis blip's restore, say).
    steps = lifecycle.move_locked(
        job, which, now=now, error=None, error_detail=None, redeliveries=0
    )
    return steps or []


#: Why an item in this state is not replayed.
_NOT_REPLAYED = {
    DeliveryStatus.SENT.value: "was already sent",
    DeliveryStatus.SENDING.value: "is being sent (a worker holds it, or the redrive sweep "
    "will retry it once that worker's lease runs out)",
}


def _reset_item(session: Session, item_id: uuid.UUID, now: datetime) -> uuid.UUID | str:
    """Make a failed or pending delivery or notification pending and due now; returns its
    job id, or why it is not replayed."""
    delivery = session.get(Delivery, item_id, with_for_update=True)
    item: Delivery | JobNotification | None = delivery or session.get(
        JobNotification, item_id, with_for_update=True
    )
    if item is None:
        return "not found"
    if item.status in _NOT_REPLAYED:
        return _NOT_REPLAYED[item.status]
    if delivery is not None:
        delivery.status = DeliveryStatus.PENDING.value
        delivery.lease_until = None
        delivery.attempts = 0
        schedule = session.get(DeliverySchedule, item_id)
        if schedule is not None:
            schedule.failures, schedule.next_attempt_at, schedule.redriven_at = 0, None, None
        summary = session.get(Summary, delivery.summary_id)
        assert summary is not None
        job = session.get(Job, summary.job_id, with_for_update=True)
        assert job is not None
        _reopen(job, lifecycle.Move.REPLAY_DELIVERY, now)
        return job.id
    assert isinstance(item, JobNotification)
    item.status = DeliveryStatus.PENDING.value
    item.lease_until = None
    item.attempts = item.failures = 0
    item.next_attempt_at, item.redriven_at = now, now
    return item.job_id


def _replay_letter(session: Session, letter: DeadLetter, now: datetime) -> list[Step] | str:
    """The steps that re-drive a dead letter, or why it cannot be replayed."""
    args = [str(a) for a in letter.args or []]
    if letter.task_name == DELIVER and len(args) >= 2:
        job_id = _reset_item(session, _uuid(args[1], "delivery"), now)
        if isinstance(job_id, str):
            return f"dead letter {letter.id}: its delivery {job_id}"
        return [Step(DELIVER, (str(job_id), args[1]))]
    if letter.task_name in (FETCH, SUMMARIZE) and letter.job_id is not None:
        job = session.get(Job, letter.job_id, with_for_update=True)
        if job is None:
            return f"dead letter {letter.id}: its job no longer exists"
        if session.scalar(select(Summary.id).where(Summary.job_id == job.id)) is not None:
            _reopen(job, lifecycle.Move.REPLAY_DELIVERY, now)
            return pending_deliver_steps(session, job.id)
        return _reopen(job, lifecycle.Move.REPLAY_FETCH, now) or [Step(FETCH, (str(job.id),))]
    return f"dead letter {letter.id}: task {letter.task_name} cannot be replayed by this version"


@dataclass(frozen=True, kw_only=True)
class ReplaySelection:
    """What :func:`replay` re-drives: dead letters by id (or all of them), and failed
    deliveries by id or failed since a time; a ``dry_run`` only reports what it would do."""

    dead_letter_ids: Sequence[int] = ()
    all_dead_letters: bool = False
    delivery_ids: Sequence[str] = ()
    failed_since: datetime | None = None
    dry_run: bool = False

    @property
    def empty(self) -> bool:
        """True when it selects nothing."""
        return not (
            self.dead_letter_ids or self.all_dead_letters or self.delivery_ids or self.failed_since
        )


def replay(core: Core, selection: ReplaySelection) -> ReplayReport:
    """Reset and publish the selected dead letters and failed deliveries (operator only)."""
    if selection.empty:
        raise InvalidInputError(
            "nothing selected; give --dead-letter ID, --all-dead-letters, --delivery ID or "
            "--failed-since TIME"
        )
    if selection.failed_since is not None and selection.failed_since.tzinfo is None:
        raise InvalidInputError("--failed-since needs a time zone, e.g. 2026-01-01T00:00:00Z")
    now = core.clock()
    report = ReplayReport()
    steps: list[Step] = []
    wanted = [_uuid(d, "delivery") for d in selection.delivery_ids]
    with core.session_factory() as session, session.begin():
        query = select(DeadLetter).where(DeadLetter.replayed_at.is_(None))
        if not selection.all_dead_letters:
            query = query.where(DeadLetter.id.in_(list(selection.dead_letter_ids)))
        seen: set[int] = set()
        for letter in session.scalars(query.order_by(DeadLetter.id).with_for_update()):
            seen.add(letter.id)
            outcome = _replay_letter(session, letter, now)
            if isinstance(outcome, str):
                report.skipped.append(outcome)
                continue
            letter.replayed_at = now
            steps += outcome
            report.dead_letters += 1
        for missing in sorted(set(selection.dead_letter_ids) - seen):
            report.skipped.append(f"dead letter {missing}: not found or already replayed")
        if selection.failed_since is not None:
            wanted += list(
                session.scalars(
                    select(Delivery.id).where(
                        Delivery.status == DeliveryStatus.FAILED.value,
                        Delivery.created_at >= selection.failed_since,
                    )
                )
            )
        for item_id in dict.fromkeys(wanted):
            job_id = _reset_item(session, item_id, now)
            if isinstance(job_id, str):
                report.skipped.append(f"delivery {item_id}: {job_id}")
                continue
            steps.append(Step(DELIVER, (str(job_id), str(item_id))))
            report.deliveries += 1
        report.jobs = len({step.args[0] for step in steps})
        if selection.dry_run:
            session.rollback()
            return report
    for step in dict.fromkeys(steps):
        core.enqueuer.enqueue(step.task, *step.args)
    return report
