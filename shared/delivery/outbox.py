"""The outbox state machine shared by summary deliveries and job notifications.

An item (a ``deliveries`` row, or a ``job_notifications`` row) is *claimed* with a lease
(``pending → sending``), sent by whoever knows its target kind, and the :class:`Outcome` is
*recorded* in one transaction together with its attempt-log row, the retry schedule, the webhook
endpoint's health and any fallback item:

- success → ``sent``;
- a retryable failure → back to ``pending`` with ``next_attempt_at`` from the retry schedule
  (with jitter; a server's ``Retry-After`` is a floor), until the schedule is exhausted;
- a permanent failure, an exhausted schedule, or a dead endpoint → ``failed``, and the target's
  fallback (if configured and this item is not itself a fallback) is created as a new item with
  ``fallback_of`` pointing here.

A copy of a task that finds the item sent, failed, leased by a live worker, or not yet due does
nothing: the item's row decides, so a task that runs twice has its effect once.

What a receiver answered is written as text anyone can read and any database can store: control
characters in an error or a response excerpt (a binary body's NUL, which PostgreSQL refuses in
text) are shown as U+FFFD, so no answer can keep an attempt from being recorded.
"""

from __future__ import annotations

import random
import re
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field, fields
from datetime import datetime, timedelta
from typing import Any, Literal, TypeAlias

import structlog
from pydantic import TypeAdapter, ValidationError
from sqlalchemy import Row, Select, Table, bindparam, func, insert, select, update
from sqlalchemy.orm import Session, sessionmaker

from schema.base import table_of
from schema.models.delivery_log import (
    AttemptOutcome,
    DeliveryAttempt,
    DeliverySchedule,
    JobNotification,
)
from schema.models.jobs import Delivery, DeliveryStatus, Job, Summary
from schema.models.tenancy import WebhookEndpoint
from shared.db.rows import add_unless_present
from shared.delivery.events import SUMMARY_COMPLETED
from shared.job_view import JobView
from shared.jobs import Destination
from shared.tenancy import DESTINATION_CHANNEL_KINDS, destination_chain

__all__ = [
    "DONE",
    "MAX_RETRY_AFTER",
    "Claim",
    "ItemKind",
    "Outcome",
    "RecordResult",
    "RetryRules",
    "Skip",
    "SummarySnapshot",
    "claim_item",
    "next_delay",
    "parse_destination",
    "record_outcome",
    "save_progress",
]

log = structlog.get_logger(__name__)

DONE = (DeliveryStatus.SENT.value, DeliveryStatus.FAILED.value)
#: The longest ``Retry-After`` honoured; a server asking for more gets this.
MAX_RETRY_AFTER = 86400.0
# A task published with a countdown may start a moment before the row's due time.
_DUE_SLACK = timedelta(milliseconds=200)
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")

ItemKind = Literal["delivery", "notification"]
_Row: TypeAlias = Row[*tuple[Any, ...]]
_destinations: TypeAdapter[Any] = TypeAdapter(Destination)


def parse_destination(data: dict[str, Any]) -> Any:
    """A stored target (``params`` of an item, or an endpoint's ``fallback``) as its model."""
    return _destinations.validate_python(data)


@dataclass(frozen=True)
class SummarySnapshot:
    """The stored summary a delivery sends (read with the delivery's claim)."""

    id: uuid.UUID
    content: dict[str, Any]
    created_at: datetime
    model: str | None
    prompt_version: str
    language: str | None


@dataclass(frozen=True)
class Claim:
    """An item this worker holds the lease of, with everything needed to send it."""

    item: ItemKind
    id: uuid.UUID
    kind: str
    target: str
    params: dict[str, Any]
    event: str
    attempt: int
    failures: int
    fallback_of: uuid.UUID | None
    job: JobView
    summary: SummarySnapshot | None
    progress: dict[str, Any] = field(default_factory=dict)
    #: Whether a ``delivery_schedules`` row existed when the delivery was claimed.
    scheduled: bool = True


@dataclass(frozen=True)
class Skip:
    """Nothing to do now, and why (``missing``, ``done``, ``leased``, ``not_due``)."""

    reason: str
    job_id: uuid.UUID | None = None


@dataclass(frozen=True)
class Outcome:
    """How one send ended.  ``retryable`` failures go back on the schedule."""

    ok: bool
    remote_id: str | None = None
    skipped: bool = False
    error: str | None = None
    retryable: bool = False
    retry_after: float | None = None
    status_code: int | None = None
    excerpt: str | None = None
    duration_ms: float = 0.0
    endpoint_id: uuid.UUID | None = None
    disable_endpoint: str | None = None
    fallback: dict[str, Any] | None = None
    lease_lost: bool = False

    @classmethod
    def sent(cls, remote_id: str | None, **kw: Any) -> Outcome:
        """A success."""
        return cls(ok=True, remote_id=remote_id, **kw)

    @classmethod
    def failure(cls, error: str, *, retryable: bool, **kw: Any) -> Outcome:
        """A failure; ``retryable`` decides between the schedule and ``failed``."""
        return cls(ok=False, error=error, retryable=retryable, **kw)


@dataclass(frozen=True)
class RetryRules:
    """The retry schedule and the endpoint health rules, from the delivery settings."""

    schedule: Sequence[float]
    jitter: float
    disable_after: timedelta
    rng: random.Random = field(default_factory=random.Random)


@dataclass
class RecordResult:
    """What :func:`record_outcome` decided."""

    status: str
    retry_at: datetime | None = None
    retry_in: float | None = None
    failures: int = 0
    fallbacks: list[tuple[ItemKind, uuid.UUID]] = field(default_factory=list)
    endpoint_disabled: str | None = None


def next_delay(
    failures: int,
    schedule: Sequence[float],
    *,
    jitter: float,
    rng: random.Random,
    retry_after: float | None = None,
) -> float | None:
    """Seconds to wait after the ``failures``-th failure, or None when retries are exhausted."""
    if failures < 1 or failures > len(schedule):
        return None
    delay = schedule[failures - 1] * rng.uniform(1 - jitter, 1 + jitter)
    if retry_after is not None:
        delay = max(delay, min(max(retry_after, 0.0), MAX_RETRY_AFTER))
    return delay


# --- claiming -----------------------------------------------------------------------------------


def _lease_problem(
    status: str, lease_until: datetime | None, due: datetime | None, now: datetime
) -> str | None:
    if status in DONE:
        return "done"
    if status == DeliveryStatus.SENDING.value and lease_until is not None and lease_until > now:
        return "leased"
    if status == DeliveryStatus.PENDING.value and due is not None and due > now + _DUE_SLACK:
        return "not_due"
    return None


def _take_lease(
    row: JobNotification, due: datetime | None, *, now: datetime, lease: timedelta
) -> str | None:
    """Why ``row`` cannot be claimed now, or None once it is leased to this attempt."""
    problem = _lease_problem(row.status, row.lease_until, due, now)
    if problem is None:
        row.status = DeliveryStatus.SENDING.value
        row.lease_until = now + lease
        row.attempts += 1
    return problem


def _claim(
    row: _Row | JobNotification,
    job: JobView,
    *,
    attempt: int,
    event: str,
    failures: int,
    progress: dict[str, Any] | None,
    summary: SummarySnapshot | None,
    scheduled: bool = True,
) -> Claim:
    """The claim of a leased item: its own columns, its job, and what its kind adds (a
    delivery has a summary, a notification none)."""
    return Claim(
        item="notification" if summary is None else "delivery",
        id=row.id,
        kind=row.kind,
        target=row.target,
        params=dict(row.params),
        event=event,
        attempt=attempt,
        failures=failures,
        fallback_of=row.fallback_of,
        progress=dict(progress or {}),
        job=job,
        summary=summary,
        scheduled=scheduled,
    )


_DELIVERIES = table_of(Delivery)
_SCHEDULES = table_of(DeliverySchedule)
_SUMMARIES = table_of(Summary)
_JOBS = table_of(Job)

#: A delivery with its retry schedule (if any), its summary and its job, in the one statement
#: that locks the delivery row (only that row: every writer of a schedule row holds its
#: delivery's lock first).  Core on the tables, built once: the claim runs for every delivery,
#: and the ORM's per-row bookkeeping cost more than the round trip.
_CLAIM_DELIVERY = (
    select(
        _DELIVERIES.c.id,
        _DELIVERIES.c.kind,
        _DELIVERIES.c.target,
        _DELIVERIES.c.params,
        _DELIVERIES.c.status,
        _DELIVERIES.c.attempts,
        _DELIVERIES.c.lease_until,
        _DELIVERIES.c.fallback_of,
        _SCHEDULES.c.delivery_id.label("scheduled"),
        _SCHEDULES.c.next_attempt_at,
        _SCHEDULES.c.failures,
        _SCHEDULES.c.progress,
        *(_SUMMARIES.c[f.name].label(f"summary_{f.name}") for f in fields(SummarySnapshot)),
        *(_JOBS.c[name].label(f"job_{name}") for name in JobView.model_fields),
    )
    .select_from(
        _DELIVERIES.join(_SUMMARIES, _SUMMARIES.c.id == _DELIVERIES.c.summary_id)
        .join(_JOBS, _JOBS.c.id == _SUMMARIES.c.job_id)
        .outerjoin(_SCHEDULES, _SCHEDULES.c.delivery_id == _DELIVERIES.c.id)
    )
    .where(_DELIVERIES.c.id == bindparam("item_id"))
    .with_for_update(of=_DELIVERIES)
)
_LEASE_DELIVERY = (
    update(_DELIVERIES)
    .where(_DELIVERIES.c.id == bindparam("item_id"))
    .values(
        status=DeliveryStatus.SENDING.value,
        lease_until=bindparam("lease_until"),
        attempts=_DELIVERIES.c.attempts + 1,
    )
)


def _prefixed(row: _Row, prefix: str) -> dict[str, Any]:
    return {
        key.removeprefix(prefix): value
        for key, value in row._mapping.items()
        if key.startswith(prefix)
    }


def _claim_delivery(
    session: Session, row: _Row, *, now: datetime, lease: timedelta
) -> Claim | Skip:
    scheduled = row.scheduled is not None
    problem = _lease_problem(
        row.status, row.lease_until, row.next_attempt_at if scheduled else None, now
    )
    if problem is not None:
        return Skip(problem, row.job_id)
    session.execute(_LEASE_DELIVERY, {"item_id": row.id, "lease_until": now + lease})
    return _claim(
        row,
        JobView.model_validate(_prefixed(row, "job_")),
        attempt=row.attempts + 1,
        event=SUMMARY_COMPLETED,
        failures=row.failures if scheduled else 0,
        progress=row.progress if scheduled else None,
        summary=SummarySnapshot(**_prefixed(row, "summary_")),
        scheduled=scheduled,
    )


def _claim_notification(
    session: Session, row: JobNotification, *, now: datetime, lease: timedelta
) -> Claim | Skip:
    job = session.get(Job, row.job_id)
    assert job is not None  # the foreign key cascades
    problem = _take_lease(row, row.next_attempt_at, now=now, lease=lease)
    if problem is not None:
        return Skip(problem, job.id)
    return _claim(
        row,
        JobView.of(job),
        attempt=row.attempts,
        event=row.event,
        failures=row.failures,
        progress=row.progress,
        summary=None,
    )


def claim_item(
    session_factory: sessionmaker[Session],
    item_id: uuid.UUID,
    *,
    now: datetime,
    lease: timedelta,
) -> Claim | Skip:
    """Lease the delivery or notification ``item_id`` to this worker, or say why not.

    A delivery is read with its summary, job and retry schedule in one statement that locks
    the delivery row; every writer of a schedule row holds its delivery's lock first.
    """
    with session_factory() as session, session.begin():
        found = session.execute(_CLAIM_DELIVERY, {"item_id": item_id}).first()
        if found is not None:
            return _claim_delivery(session, found, now=now, lease=lease)
        notification = session.get(JobNotification, item_id, with_for_update=True)
        if notification is not None:
            return _claim_notification(session, notification, now=now, lease=lease)
    return Skip("missing")


def save_progress(
    session_factory: sessionmaker[Session],
    claim: Claim,
    progress: dict[str, Any],
    *,
    now: datetime,
    lease: timedelta,
) -> bool:
    """Record how far a multi-part send got, and extend the lease; False if the lease was lost."""
    with session_factory() as session, session.begin():
        row = _lock_item(session, claim)
        if row is None or row.status != DeliveryStatus.SENDING.value:
            return False
        if row.attempts != claim.attempt:
            return False
        row.lease_until = now + lease
        if isinstance(row, Delivery):
            schedule = session.get(DeliverySchedule, row.id, with_for_update=True)
            if schedule is None:
                schedule = DeliverySchedule(delivery_id=row.id, failures=0)
                session.add(schedule)
            schedule.progress = dict(progress)
        else:
            row.progress = dict(progress)
    return True


# --- recording ----------------------------------------------------------------------------------


def _fallback_target(claim: Claim, outcome: Outcome) -> tuple[str, str, dict[str, Any]] | None:
    """(key, kind, params) of the fallback to create, if any and if valid."""
    if claim.fallback_of is not None or not outcome.fallback:
        return None
    try:
        target = parse_destination(outcome.fallback)
    except ValidationError as exc:
        log.error("deliver.fallback_invalid", error=str(exc).splitlines()[0], target=claim.target)
        return None
    params = target.model_dump(mode="json")
    outside = _outside_audience(claim.job, params)
    if outside:
        # The endpoint's fallback is the endpoint's, not the job's: it was never checked
        # against the readers this summary was made for.
        log.warning(
            "deliver.fallback_outside_audience", target=claim.target, fallback=str(target.key)
        )
        return None
    return str(target.key), str(target.kind), params


def _outside_audience(job: JobView, fallback: dict[str, Any]) -> list[str]:
    """Who ``fallback`` (and its own fallbacks) would show a multi-channel summary to that
    the job's audience does not hold; empty for any other job.

    A summary of several channels holds only what every member of its audience may read,
    so it may go nowhere that reaches anyone else.
    """
    source = (job.params or {}).get("source") or {}
    if source.get("kind") != "discord_server":
        return []
    audience = {
        ("channel", str(a.get("channel_id")))
        if a.get("kind") == "channel"
        else ("member", str(a.get("user_id")))
        for a in source.get("audience") or []
    }
    outside: list[str] = []
    for link in destination_chain(fallback):
        kind = link.get("kind")
        if kind in DESTINATION_CHANNEL_KINDS:
            reader = ("channel", str(link.get("channel_id")))
        elif kind == "dm":
            reader = ("member", str(link.get("user_id")))
        elif kind == "webhook":
            continue  # outside Discord: its readers are the audience the job named
        else:
            outside.append(str(kind))  # a Discord webhook's readers are unknown
            continue
        if reader not in audience:
            outside.append(f"{reader[0]} {reader[1]}")
    return outside


def _add_fallback(
    session: Session, claim: Claim, spec: tuple[str, str, dict[str, Any]], now: datetime
) -> tuple[ItemKind, uuid.UUID] | None:
    key, kind, params = spec
    new_id = uuid.uuid4()
    row: Delivery | JobNotification
    if claim.item == "delivery":
        assert claim.summary is not None
        row = Delivery(
            id=new_id,
            summary_id=claim.summary.id,
            target=key,
            kind=kind,
            params=params,
            status=DeliveryStatus.PENDING.value,
            attempts=0,
            fallback_of=claim.id,
            created_at=now,
        )
    else:
        row = JobNotification(
            id=new_id,
            job_id=claim.job.id,
            event=claim.event,
            target=key,
            kind=kind,
            params=params,
            status=DeliveryStatus.PENDING.value,
            attempts=0,
            failures=0,
            fallback_of=claim.id,
            next_attempt_at=now,
            redriven_at=now,
            created_at=now,
        )
    if not add_unless_present(session, row):
        # The fallback target already receives this summary (or event): nothing to add.
        log.info("deliver.fallback_exists", target=key)
        return None
    log.warning("deliver.fallback", target=claim.target, fallback=key)
    return claim.item, new_id


def _endpoint_health(
    session: Session, outcome: Outcome, *, now: datetime, rules: RetryRules
) -> str | None:
    """Update the endpoint's failure clock; return why it was disabled now, if it was."""
    if outcome.endpoint_id is None:
        return None
    endpoint = session.get(WebhookEndpoint, outcome.endpoint_id, with_for_update=True)
    if endpoint is None:
        return None
    if outcome.ok:
        if endpoint.failing_since is not None:
            endpoint.failing_since = None
        return None
    if not endpoint.enabled:
        return None
    if endpoint.failing_since is not None and _quiet_before(session, endpoint.id, now, rules):
        # Nothing was tried for longer than any retry waits: the endpoint was not failing
        # all that time, it was idle.  Its failure clock starts again with this failure.
        endpoint.failing_since = None
    endpoint.failing_since = endpoint.failing_since or now
    reason = outcome.disable_endpoint
    if reason is None and now - endpoint.failing_since >= rules.disable_after:
        days = (now - endpoint.failing_since).total_seconds() / 86400
        reason = (
            f"every delivery failed for {days:.1f} days (since "
            f"{endpoint.failing_since:%Y-%m-%d %H:%M} UTC); last error: {outcome.error}"
        )
    if reason is None:
        return None
    endpoint.enabled = False
    endpoint.disabled_reason = reason
    endpoint.updated_at = now
    # The notice operators and the guild's admins see (the row keeps it for the API/CLI too).
    log.error(
        "webhook.endpoint_disabled",
        endpoint_id=str(endpoint.id),
        guild_id=endpoint.guild_id,
        reason=reason,
    )
    return reason


def _quiet_before(
    session: Session, endpoint_id: uuid.UUID, now: datetime, rules: RetryRules
) -> bool:
    """Whether nothing was sent to the endpoint for longer than any retry waits (the longest
    step of the schedule with its jitter, or the longest ``Retry-After`` honoured) before
    ``now``: then its earlier failures and this one are not one failing stretch."""
    longest = max((*rules.schedule, 0.0)) * (1 + rules.jitter)
    quiet = timedelta(seconds=max(longest, MAX_RETRY_AFTER))
    last = session.scalar(
        select(func.max(DeliveryAttempt.started_at)).where(
            DeliveryAttempt.endpoint_id == endpoint_id, DeliveryAttempt.started_at < now
        )
    )
    return last is None or now - last > quiet


def _readable(text: str | None) -> str | None:
    """``text`` with its control characters (but tabs and line breaks) shown as U+FFFD."""
    return None if text is None else _CONTROL.sub("\ufffd", text)


def _lock_item(session: Session, claim: Claim) -> Delivery | JobNotification | None:
    if claim.item == "delivery":
        return session.get(Delivery, claim.id, with_for_update=True)
    return session.get(JobNotification, claim.id, with_for_update=True)


_ATTEMPTS = table_of(DeliveryAttempt)
_NOTIFICATIONS = table_of(JobNotification)
_ITEMS: dict[ItemKind, Table] = {"delivery": _DELIVERIES, "notification": _NOTIFICATIONS}
#: The columns of an item's retry schedule: a ``delivery_schedules`` row of a delivery, the
#: notification's own row for a notification.
_SCHEDULE_READ = ("failures", "first_failure_at")


def _lock_statement(item: ItemKind) -> Select[Any]:
    table = _ITEMS[item]
    read = ("status", "attempts", *(_SCHEDULE_READ if item == "notification" else ()))
    return (
        select(*(table.c[name] for name in read))
        .where(table.c.id == bindparam("item_id"))
        .with_for_update()
    )


# Built once, run with bound values (an UPDATE's SET holds the columns its parameters name):
# recording runs for every attempt, and building its statements cost more than running them.
#: Lock an item's row and read its status (a notification's schedule with it).
_LOCK_ITEM = {item: _lock_statement(item) for item in _ITEMS}
_UPDATE_ITEM = {item: update(t).where(t.c.id == bindparam("item_id")) for item, t in _ITEMS.items()}
_LOCK_SCHEDULE = (
    select(*(_SCHEDULES.c[name] for name in _SCHEDULE_READ))
    .where(_SCHEDULES.c.delivery_id == bindparam("item_id"))
    .with_for_update()
)
_UPDATE_SCHEDULE = update(_SCHEDULES).where(_SCHEDULES.c.delivery_id == bindparam("item_id"))
_INSERT_SCHEDULE = insert(_SCHEDULES)
_INSERT_ATTEMPT = insert(_ATTEMPTS)


@dataclass
class _Writes:
    """What recording an outcome writes: the item's columns and its schedule's."""

    claim: Claim
    item: dict[str, Any] = field(default_factory=dict)
    schedule: dict[str, Any] = field(default_factory=dict)
    #: Whether a ``delivery_schedules`` row exists (always true of a notification).
    scheduled: bool = True

    def apply(self, session: Session, attempt: dict[str, Any]) -> None:
        """Write the item, its schedule and the attempt-log row ``attempt``, in ``session``."""
        claim = self.claim
        key = {"item_id": claim.id}
        if claim.item == "notification":
            session.execute(_UPDATE_ITEM[claim.item], self.item | self.schedule | key)
        else:
            session.execute(_UPDATE_ITEM[claim.item], self.item | key)
            if self.schedule and self.scheduled:
                session.execute(_UPDATE_SCHEDULE, self.schedule | key)
            elif self.schedule.get("failures"):
                # A delivery's first failure creates its schedule; a success needs none.
                session.execute(_INSERT_SCHEDULE, self.schedule | {"delivery_id": claim.id})
        _log_attempt(session, attempt)


def _log_attempt(session: Session, attempt: dict[str, Any]) -> None:
    session.execute(_INSERT_ATTEMPT, attempt)


def _schedule_of(
    session: Session, claim: Claim, locked: _Row, outcome: Outcome
) -> tuple[int, datetime | None, bool]:
    """(failures, first failure, whether a schedule row exists) of the locked item."""
    if claim.item == "notification":
        return locked.failures or 0, locked.first_failure_at, True
    # A first attempt that succeeds has no schedule to read: none existed at the claim, and
    # one a multi-part send created holds no due time.
    if outcome.ok and not claim.scheduled:
        return 0, None, False
    found = session.execute(_LOCK_SCHEDULE, {"item_id": claim.id}).first()
    if found is None:
        return 0, None, False
    return found.failures or 0, found.first_failure_at, True


def record_outcome(
    session: Session,
    claim: Claim,
    outcome: Outcome,
    *,
    now: datetime,
    started_at: datetime,
    rules: RetryRules,
) -> RecordResult:
    """Write the attempt log and the item's next state (see module docstring).

    Runs in the caller's transaction, so the job's settlement can be written with it.
    Core statements on the tables: this runs once for every attempt.
    """
    locked = session.execute(_LOCK_ITEM[claim.item], {"item_id": claim.id}).first()
    attempt: dict[str, Any] = {
        "delivery_id": claim.id if claim.item == "delivery" else None,
        "notification_id": claim.id if claim.item == "notification" else None,
        "number": claim.attempt,
        "target": claim.target,
        "endpoint_id": outcome.endpoint_id,
        "started_at": started_at,
        "duration_ms": round(outcome.duration_ms),
        "status_code": outcome.status_code,
        "error": _readable(outcome.error),
        "response_excerpt": _readable(outcome.excerpt),
    }
    # A worker whose lease ran out may finish after another claimed the item: its success is
    # news (the target has it), but its failure must not undo the live claim (set the item
    # pending for a third worker to send alongside, or fail it and fire its fallback).
    superseded = locked is not None and locked.attempts != claim.attempt and not outcome.ok
    if locked is None or locked.status in DONE or outcome.lease_lost or superseded:
        # The item ended meanwhile (its lease ran out and another worker finished it), or
        # another worker holds it now.
        ended = AttemptOutcome.SKIPPED if outcome.ok else AttemptOutcome.FAILED
        _log_attempt(session, attempt | {"outcome": ended.value})
        return RecordResult(status=locked.status if locked is not None else "missing")
    disabled = _endpoint_health(session, outcome, now=now, rules=rules)
    failures, first_failure_at, scheduled = _schedule_of(session, claim, locked, outcome)
    writes = _Writes(claim, item={"lease_until": None}, scheduled=scheduled)
    if outcome.ok:
        writes.item |= {
            "status": DeliveryStatus.SENT.value,
            "remote_id": outcome.remote_id,
            "sent_at": now,
            "last_error": None,
        }
        if scheduled:
            writes.schedule["next_attempt_at"] = None
        ended = AttemptOutcome.SKIPPED if outcome.skipped else AttemptOutcome.SENT
        writes.apply(session, attempt | {"outcome": ended.value})
        return RecordResult(status=DeliveryStatus.SENT.value, endpoint_disabled=disabled)
    failures += 1
    writes.schedule |= {"failures": failures, "first_failure_at": first_failure_at or now}
    delay = None
    if outcome.retryable and disabled is None:
        delay = next_delay(
            failures,
            rules.schedule,
            jitter=rules.jitter,
            rng=rules.rng,
            retry_after=outcome.retry_after,
        )
    if delay is not None:
        retry_at = now + timedelta(seconds=delay)
        writes.item |= {
            "status": DeliveryStatus.PENDING.value,
            "last_error": _readable(outcome.error),
        }
        writes.schedule |= {"next_attempt_at": retry_at, "redriven_at": None}
        writes.apply(
            session,
            attempt | {"outcome": AttemptOutcome.RETRY.value, "next_attempt_at": retry_at},
        )
        return RecordResult(
            status=DeliveryStatus.PENDING.value,
            retry_at=retry_at,
            retry_in=delay,
            failures=failures,
            endpoint_disabled=disabled,
        )
    reason = outcome.error or "delivery failed"
    if disabled is not None:
        reason = f"{reason} (the endpoint is now disabled: {disabled})"
    elif outcome.retryable:
        reason = f"{reason} (gave up after {failures} failed attempts)"
    writes.item |= {"status": DeliveryStatus.FAILED.value, "last_error": _readable(reason)}
    writes.schedule["next_attempt_at"] = None
    writes.apply(session, attempt | {"outcome": AttemptOutcome.FAILED.value})
    result = RecordResult(
        status=DeliveryStatus.FAILED.value, failures=failures, endpoint_disabled=disabled
    )
    spec = _fallback_target(claim, outcome)
    if spec is not None:
        added = _add_fallback(session, claim, spec, now)
        if added is not None:
            result.fallbacks.append(added)
    return result
