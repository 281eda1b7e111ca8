"""Turn due digest schedules into jobs: once per (schedule, window), whatever beat does.

Beat is only a clock.  Every tick (30 s) runs :func:`dispatch_due_digests`, which

1. claims due schedules (``enabled`` and ``next_run_at <= now``) with ``FOR UPDATE SKIP
   LOCKED``, so two dispatchers running at once never hold the same schedule;
2. inserts one :class:`~schema.models.schedules.ScheduleRun` per ``(schedule, window_start)``
   with ON CONFLICT DO NOTHING, so a replayed tick or a second beat creates nothing twice;
3. advances ``next_run_at`` past ``now`` and ``last_run_at`` to the end of the window, in the
   same transaction;
4. after the commit submits the digest job through :func:`shared.services.jobs.submit_job`
   (which checks the channels and destination against the schedule's guild) with the
   idempotency key ``digest:<run id>`` and links it to the run.  A dispatcher that dies between
   the commit and the submission leaves a run without a job; the next tick (after a short
   grace) submits it, and the idempotency key makes that submission return the same job,
   unless the schedule was paused meanwhile: a paused schedule posts nothing more, and the
   run's window goes back to the schedule for when it is resumed (a job already submitted,
   which will run, is linked instead).  A run the service was down too long to resubmit
   hands its window back the same way, to the catch-up run.

Each run's job is built by :func:`shared.services.digests.digest_params` from the schedule's
:class:`~shared.services.digests.DigestScope` and the run's window.  A schedule of one channel
runs a channel job.  A schedule of several channels (the server, a category, listed channels)
runs a multi-channel job whose audience is the readers of the channel it is posted in: the
digest only contains what all of them may read.

Catch-up policy: when ticks were missed (beat or the workers were down), a schedule fires
**once**, for the latest firing time that has passed, and that one run's window reaches back to
the end of the previous run (``last_run_at``): one digest covering everything missed, never a
burst of one digest per missed tick.  The window is capped at :data:`MAX_CATCH_UP_WINDOW`, or
at the schedule's own period when that is longer (a quarterly digest covers its quarter), and
never reaches back more than :data:`MAX_PERIOD_WINDOW`.
A schedule's first run covers the period since the firing before the first one it was due at
(a daily digest covers the last day, a weekday digest on Monday covers the weekend; one whose
first firings were missed covers them all).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import Enum
from typing import Any

import structlog
from pydantic import TypeAdapter, ValidationError
from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from schema.models.jobs import Job
from schema.models.schedules import Schedule, ScheduleRun
from shared.digests.empty import run_snapshot
from shared.digests.spec import ScheduleSpec, next_run, previous_run
from shared.errors import InvalidInputError, NotFoundError
from shared.jobs import Destination, JobParams
from shared.services.core import Actor, Core
from shared.services.digests import DigestScope, digest_params
from shared.services.jobs import submit_job
from shared.summarize.content import SummaryFormat

__all__ = [
    "DIGEST_ORIGIN",
    "MAX_CATCH_UP_WINDOW",
    "MAX_PERIOD_WINDOW",
    "DispatchResult",
    "RunPlan",
    "digest_idempotency_key",
    "dispatch_due_digests",
    "plan_run",
]

log = structlog.get_logger(__name__)

#: ``jobs.origin`` of digest jobs.
DIGEST_ORIGIN = "digest"
#: The longest window one run covers after an outage (older messages are left out), unless
#: the schedule's own period is longer.
MAX_CATCH_UP_WINDOW = timedelta(days=31)
#: The longest window any run covers, however rarely its schedule fires (a yearly digest
#: covers its year; one on Feb 29 the last year, not the years since the last leap day).
MAX_PERIOD_WINDOW = timedelta(days=366)
#: A run without a job this old is submitted again (its dispatcher died mid-way).
ORPHAN_GRACE = timedelta(seconds=60)
#: Runs older than this are not resubmitted (their job may have been purged since); a
#: schedule's latest such run hands its window back to the schedule (``_expire_orphans``).
ORPHAN_HORIZON = timedelta(hours=6)

_EPSILON = timedelta(microseconds=1)
_DESTINATION: TypeAdapter[Any] = TypeAdapter(Destination)


@dataclass(frozen=True)
class RunPlan:
    """What one firing of a schedule does: its window and when the schedule fires next."""

    window_start: datetime
    window_end: datetime
    next_run_at: datetime
    missed: bool


@dataclass
class DispatchResult:
    """What a dispatch pass did (for logs, metrics and tests)."""

    claimed: int = 0
    runs_created: int = 0
    jobs_submitted: int = 0
    orphans_resubmitted: int = 0
    disabled: int = 0
    #: Schedules paused when their run was submitted (a channel or destination that left the
    #: server, a scope stored by hand that cannot be a job); ``disabled`` counts the cron ones.
    paused: int = 0
    run_ids: list[uuid.UUID] = field(default_factory=list)


def digest_idempotency_key(run_id: uuid.UUID) -> str:
    """The job idempotency key of a run: one job per run, however often it is submitted."""
    return f"digest:{run_id}"


def _spec(schedule: Schedule) -> ScheduleSpec:
    return ScheduleSpec(cron=schedule.cron, timezone=schedule.timezone, description=schedule.spec)


def plan_run(
    spec: ScheduleSpec,
    *,
    due_at: datetime,
    last_run_at: datetime | None,
    now: datetime,
    max_window: timedelta = MAX_CATCH_UP_WINDOW,
) -> RunPlan:
    """Plan the one run a due schedule makes at ``now`` (see the catch-up policy above).

    ``due_at`` is the schedule's ``next_run_at`` (a firing time at or before ``now``).
    """
    # The latest firing at or before now (a row edited by hand may be due at a time that is
    # not a firing; then it fires at that time).
    fire_at = max(previous_run(spec, now + _EPSILON), due_at)
    following = next_run(spec, fire_at)
    missed = fire_at > due_at
    if last_run_at is not None and last_run_at < fire_at:
        start = last_run_at
    else:
        # Never ran: from the firing before the first one it was due at, so a first run that
        # was missed catches up every period it missed, like any other.
        start = previous_run(spec, min(due_at, fire_at))
    # The cap bounds a catch-up, never the schedule's own period: a quarterly digest covers
    # its quarter.
    period = fire_at - previous_run(spec, fire_at)
    start = max(start, fire_at - max(max_window, min(period, MAX_PERIOD_WINDOW)))
    return RunPlan(window_start=start, window_end=fire_at, next_run_at=following, missed=missed)


def _insert_run(session: Session, values: dict[str, Any]) -> uuid.UUID | None:
    """INSERT … ON CONFLICT (schedule_id, window_start) DO NOTHING; the new id or None."""
    dialect = session.get_bind().dialect.name
    if dialect == "postgresql":
        from sqlalchemy.dialects import postgresql

        statement: Any = postgresql.insert(ScheduleRun).on_conflict_do_nothing(
            index_elements=["schedule_id", "window_start"]
        )
    elif dialect == "sqlite":
        from sqlalchemy.dialects import sqlite

        statement = sqlite.insert(ScheduleRun).on_conflict_do_nothing(
            index_elements=["schedule_id", "window_start"]
        )
    else:  # pragma: no cover - the project supports these two
        raise RuntimeError(f"unsupported database {dialect!r}")
    statement = statement.values(**values).returning(ScheduleRun.id)
    inserted: uuid.UUID | None = session.scalar(statement)
    return inserted


def _claim_and_plan(
    session_factory: sessionmaker[Session], *, now: datetime, batch: int, result: DispatchResult
) -> None:
    with session_factory() as session, session.begin():
        schedules = session.scalars(
            select(Schedule)
            .where(Schedule.enabled.is_(True), Schedule.next_run_at <= now)
            .order_by(Schedule.next_run_at)
            .limit(batch)
            .with_for_update(skip_locked=True)
        ).all()
        result.claimed = len(schedules)
        for schedule in schedules:
            due_at = schedule.next_run_at
            assert due_at is not None
            try:
                plan = plan_run(
                    _spec(schedule),
                    due_at=due_at,
                    last_run_at=schedule.last_run_at,
                    now=now,
                )
            except InvalidInputError as exc:
                # A row edited by hand into an unusable cron: stop firing it, loudly.
                log.error("digest.schedule_invalid", schedule_id=str(schedule.id), error=str(exc))
                schedule.enabled = False
                schedule.next_run_at = None
                result.disabled += 1
                continue
            run_id = _insert_run(
                session,
                {
                    "id": uuid.uuid4(),
                    "schedule_id": schedule.id,
                    "window_start": plan.window_start,
                    "window_end": plan.window_end,
                    "created_at": now,
                },
            )
            schedule.next_run_at = plan.next_run_at
            schedule.last_run_at = plan.window_end
            schedule.updated_at = now
            if run_id is not None:
                result.runs_created += 1
                result.run_ids.append(run_id)
                if plan.missed:
                    log.info(
                        "digest.caught_up",
                        schedule_id=str(schedule.id),
                        due_at=due_at.isoformat(),
                        window_start=plan.window_start.isoformat(),
                        window_end=plan.window_end.isoformat(),
                    )


def _destinations(destination: dict[str, Any]) -> tuple[list[Any], bool]:
    """The job targets a schedule's destination maps to, and whether it is still pending.

    Kinds the job contract does not know yet are kept on the job (``progress.digest``) so the
    delivery stage that learns them can deliver later.
    """
    try:
        return [_DESTINATION.validate_python(destination)], False
    except ValidationError:
        return [], True


def _drop_run(session: Session, schedule: Schedule, run: ScheduleRun) -> None:
    """Forget a run that sends nothing, handing its window back to the schedule.

    ``last_run_at`` goes back to where the run began, so the schedule's next run (a paused
    one's once it is resumed) covers the window this one did not send instead of leaving a
    gap.
    """
    if schedule.last_run_at == run.window_end:
        schedule.last_run_at = run.window_start
    session.delete(run)


def _pause(session: Session, schedule: Schedule, run: ScheduleRun, why: str) -> None:
    """Pause a schedule that cannot run, rather than failing it on every tick."""
    log.error("digest.schedule_unusable", schedule_id=str(schedule.id), error=why)
    schedule.enabled = False
    schedule.next_run_at = None
    _drop_run(session, schedule, run)


def _run_params(schedule: Schedule, run: ScheduleRun, targets: list[Any]) -> JobParams:
    """The job of one run: what its schedule covers over the run's window (several channels
    for the readers of the channel it is posted in)."""
    return digest_params(
        DigestScope.of_schedule(schedule),
        after=run.window_start,
        before=run.window_end,
        format=SummaryFormat(schedule.format),
        language=schedule.language,
        destinations=targets,
    )


class _Outcome(Enum):
    """What one submission of a run did."""

    LINKED = "linked"  # this call linked a job to the run
    PAUSED = "paused"  # the schedule cannot run, and was paused
    NOTHING = "nothing"  # another dispatcher has it, or its schedule was paused meanwhile


def _submit_run(core: Core, run_id: uuid.UUID, *, now: datetime) -> _Outcome:
    """Submit the job of a run that has none, or pause a schedule that cannot run.

    The job is submitted between two short transactions, not inside one: the submission writes
    through its own connection, which on SQLite would wait for the write lock a transaction
    around it holds.  Two dispatchers submitting the same run meanwhile get one job (the
    idempotency key) and only one of them links it.
    """
    prepared = _prepare_run(core.session_factory, run_id)
    if isinstance(prepared, _Outcome):
        return prepared
    actor, params, snapshot = prepared
    try:
        submission = submit_job(core, actor, params, idempotency_key=digest_idempotency_key(run_id))
    except (NotFoundError, InvalidInputError) as exc:
        # A channel or destination that left the server, or one of another server.  (A
        # deployment without Discord access raises ConfigError instead: the run then waits
        # for the next tick rather than pausing every schedule.)
        paused = _pause_unlinked(core.session_factory, run_id, exc.user_message)
        return _Outcome.PAUSED if paused else _Outcome.NOTHING
    with core.session_factory() as session, session.begin():
        linked = session.execute(
            update(ScheduleRun)
            .where(ScheduleRun.id == run_id, ScheduleRun.job_id.is_(None))
            .values(job_id=submission.job_id)
        )
    if not getattr(linked, "rowcount", 0):
        return _Outcome.NOTHING
    _annotate(core.session_factory, submission.job_id, snapshot, now=now)
    log.info(
        "digest.submitted",
        schedule_id=snapshot["schedule_id"],
        run_id=snapshot["run_id"],
        job_id=str(submission.job_id),
        created=submission.created,
    )
    return _Outcome.LINKED


def _prepare_run(
    session_factory: sessionmaker[Session], run_id: uuid.UUID
) -> tuple[Actor, JobParams, dict[str, Any]] | _Outcome:
    """The submitter, job and snapshot of a run without a job; else what was done instead
    (an unusable schedule is paused)."""
    with session_factory() as session, session.begin():
        run = session.scalars(
            select(ScheduleRun)
            .where(ScheduleRun.id == run_id, ScheduleRun.job_id.is_(None))
            .with_for_update(skip_locked=True)
        ).first()
        if run is None:
            return _Outcome.NOTHING
        schedule = session.get(Schedule, run.schedule_id)
        if schedule is None:  # pragma: no cover - the run cascades with its schedule
            return _Outcome.NOTHING
        if not schedule.enabled:
            # Paused after this run was claimed (its dispatcher died before linking a job): a
            # paused digest posts nothing more, unless its job was already submitted, which
            # will run; then the run keeps it, so its window is not summarized twice.
            submitted = session.scalar(
                select(Job.id).where(Job.idempotency_key == digest_idempotency_key(run.id))
            )
            if submitted is not None:
                run.job_id = submitted
            else:
                _drop_run(session, schedule, run)
            return _Outcome.NOTHING
        targets, pending = _destinations(schedule.destination)
        try:
            params = _run_params(schedule, run, targets)
        except InvalidInputError as exc:
            _pause(session, schedule, run, exc.user_message)
            return _Outcome.PAUSED
        except (ValidationError, ValueError) as exc:
            # Bad ids, scope or format stored by hand.
            _pause(session, schedule, run, str(exc))
            return _Outcome.PAUSED
        actor = Actor(
            origin=DIGEST_ORIGIN, guild_id=schedule.guild_id, requested_by=schedule.created_by
        )
        return actor, params, {**run_snapshot(schedule, run), "destination_pending": pending}


def _pause_unlinked(session_factory: sessionmaker[Session], run_id: uuid.UUID, why: str) -> bool:
    """Pause the schedule of a run whose job was refused, unless another dispatcher linked one;
    True when this call paused it."""
    with session_factory() as session, session.begin():
        run = session.scalars(
            select(ScheduleRun)
            .where(ScheduleRun.id == run_id, ScheduleRun.job_id.is_(None))
            .with_for_update()
        ).first()
        schedule = session.get(Schedule, run.schedule_id) if run is not None else None
        if run is None or schedule is None:
            return False
        _pause(session, schedule, run, why)
        return True


def _annotate(
    session_factory: sessionmaker[Session],
    job_id: uuid.UUID,
    snapshot: dict[str, Any],
    *,
    now: datetime,
) -> None:
    """Record the run on its job (``progress.digest``), merged under the row lock."""
    with session_factory() as session, session.begin():
        job = session.get(Job, job_id, with_for_update=True)
        if job is not None and "digest" not in job.progress:
            job.progress = {**job.progress, "digest": snapshot}
            job.updated_at = now


def _orphans(
    session_factory: sessionmaker[Session], *, now: datetime, batch: int
) -> list[uuid.UUID]:
    with session_factory() as session:
        return list(
            session.scalars(
                select(ScheduleRun.id)
                .where(
                    ScheduleRun.job_id.is_(None),
                    ScheduleRun.created_at <= now - ORPHAN_GRACE,
                    ScheduleRun.created_at >= now - ORPHAN_HORIZON,
                )
                .order_by(ScheduleRun.created_at)
                .limit(batch)
            )
        )


def _expire_orphans(session_factory: sessionmaker[Session], *, now: datetime, batch: int) -> None:
    """Settle runs left without a job for longer than :data:`ORPHAN_HORIZON` (their dispatcher
    died, and the service stayed down) that are their schedule's latest run.

    They are not submitted any more; a job submitted for one before its dispatcher died is
    linked, otherwise the run is dropped and its window handed back, so the schedule's next
    (catch-up) run covers it instead of leaving a gap.  Runs before (in time) can only be
    settled once the later ones are.
    """
    with session_factory() as session, session.begin():
        rows = session.execute(
            select(ScheduleRun, Schedule)
            .join(Schedule, Schedule.id == ScheduleRun.schedule_id)
            .where(
                ScheduleRun.job_id.is_(None),
                ScheduleRun.created_at < now - ORPHAN_HORIZON,
                Schedule.last_run_at == ScheduleRun.window_end,
            )
            .order_by(ScheduleRun.window_end.desc())
            .limit(batch)
            .with_for_update(skip_locked=True)
        ).all()
        for run, schedule in rows:
            submitted = session.scalar(
                select(Job.id).where(Job.idempotency_key == digest_idempotency_key(run.id))
            )
            if submitted is not None:
                run.job_id = submitted
            else:
                log.warning(
                    "digest.run_expired",
                    schedule_id=str(schedule.id),
                    window_start=run.window_start.isoformat(),
                    window_end=run.window_end.isoformat(),
                )
                _drop_run(session, schedule, run)


def dispatch_due_digests(core: Core, *, now: datetime, batch: int = 100) -> DispatchResult:
    """Create and submit the runs of every due schedule; safe to run any number of times.

    Schedules are taken ``batch`` at a time until none is due, then runs left without a job by
    a dispatcher that died are submitted again.
    """
    session_factory = core.session_factory
    result = DispatchResult()
    # Before planning, so a catch-up run covers the windows of runs that were never sent.
    _expire_orphans(session_factory, now=now, batch=batch)
    while True:
        claimed_before = result.claimed
        step = DispatchResult()
        _claim_and_plan(session_factory, now=now, batch=batch, result=step)
        result.claimed = claimed_before + step.claimed
        result.runs_created += step.runs_created
        result.disabled += step.disabled
        result.run_ids.extend(step.run_ids)
        result.jobs_submitted += _submit_all(core, step.run_ids, now=now, result=result)
        if step.claimed < batch:
            break
    orphans = _orphans(session_factory, now=now, batch=batch)
    result.orphans_resubmitted = _submit_all(core, orphans, now=now, result=result)
    return result


def _submit_all(
    core: Core, run_ids: list[uuid.UUID], *, now: datetime, result: DispatchResult
) -> int:
    """Submit each run; how many got their job (schedules paused are added to ``result``)."""
    submitted = 0
    for run_id in run_ids:
        try:
            outcome = _submit_run(core, run_id, now=now)
        except Exception:  # the run stays without a job; the next tick retries it
            log.exception("digest.submit_failed", run_id=str(run_id))
            continue
        submitted += outcome is _Outcome.LINKED
        result.paused += outcome is _Outcome.PAUSED
    return submitted
