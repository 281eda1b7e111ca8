"""The job lifecycle as a table: which moves exist, from which states, and what runs next.

Every write of ``jobs.status`` goes through :func:`move` (or :func:`move_in` inside the caller's
transaction, or :func:`move_locked` inside a transaction that already holds the row), and every
move is one entry of :data:`MOVES`: the state it leads to, the states it may start from, and the
task that runs next.  A move is one conditional ``UPDATE … WHERE status IN (…)``, so two copies
of a task (at-least-once delivery) cannot move a job out of an end state or skip a stage, and a
status only ever moves forward through ``queued → fetching → summarizing → completed``.  Once
its summary is stored a job is ``completed``, and only how its deliveries end can still change
that end state (``completed_with_errors``, or ``failed`` when every one failed); an operator's
``summarybot replay`` reopens a failed job (:attr:`Move.REPLAY_FETCH`,
:attr:`Move.REPLAY_DELIVERY`).

:data:`RUNS_IN` says in which states each stage task does its work; the task decorator checks it
before calling the stage, so no stage repeats the "load the job, return if finished" prelude.
A move that ends a job also counts that end (``summary_jobs_finished_total`` and the rest of
:func:`shared.metrics.count_job_end`) once it is committed: the end is counted where it is
written, in whichever process writes it, with no read-back.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from functools import cache, partial
from typing import Any

from sqlalchemy import String, Update, bindparam, func, literal_column, update
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.orm import Session, object_session, sessionmaker
from sqlalchemy.sql.elements import ColumnElement
from sqlalchemy.sql.functions import FunctionElement
from sqlalchemy.types import JSON

from schema.base import table_of
from schema.models.jobs import Job, JobStatus
from shared.db.engine import after_commit, one_statement, reading_session
from shared.jobs import DELIVER, FETCH, SUMMARIZE, Step
from shared.metrics import count_job_end

__all__ = [
    "FINISHED",
    "MOVES",
    "NEVER_SEEN",
    "RESUME",
    "RUNS_IN",
    "UNFINISHED",
    "Move",
    "Transition",
    "hand_to_sweep",
    "heartbeat",
    "load",
    "move",
    "move_in",
    "move_locked",
]

Q, F, S, D = JobStatus.QUEUED, JobStatus.FETCHING, JobStatus.SUMMARIZING, JobStatus.DELIVERING

#: The end states: nothing moves a job out of them except an operator's replay.
FINISHED = frozenset(s for s in JobStatus if s.finished)
#: States of a job some stage still has to work on.
UNFINISHED = frozenset(s for s in JobStatus if not s.finished)


class Move(StrEnum):
    """The moves a job can make (see :data:`MOVES`)."""

    START_FETCH = "start_fetch"
    FETCHED = "fetched"
    SUMMARIZED = "summarized"
    DELIVERED = "delivered"
    DELIVERED_WITH_ERRORS = "delivered_with_errors"
    DELIVERY_FAILED = "delivery_failed"
    FAIL = "fail"
    CANCEL = "cancel"
    REPLAY_FETCH = "replay_fetch"
    REPLAY_DELIVERY = "replay_delivery"


@dataclass(frozen=True)
class Transition:
    """One row of the table: where a move leads, where it may start, and what runs next."""

    to: JobStatus
    sources: frozenset[JobStatus]
    then: str | None = None


C, CWE = JobStatus.COMPLETED, JobStatus.COMPLETED_WITH_ERRORS

MOVES: Mapping[Move, Transition] = {
    Move.START_FETCH: Transition(F, frozenset({Q, F})),
    # From queued: a window that fits one page is fetched without a ``fetching`` write first.
    # From summarizing too: a summarize task that finds its input gone has the fetch task fill
    # the cache again without moving the job backwards.
    Move.FETCHED: Transition(S, frozenset({Q, F, S}), then=SUMMARIZE),
    # A job ends when its summary is stored; its deliveries then carry their own status, and
    # the delivery moves below only tell how they ended (``delivering`` is where an older
    # version left jobs waiting for their deliveries).
    Move.SUMMARIZED: Transition(C, frozenset({S})),
    Move.DELIVERED: Transition(C, frozenset({D, C})),
    Move.DELIVERED_WITH_ERRORS: Transition(CWE, frozenset({D, C})),
    Move.DELIVERY_FAILED: Transition(JobStatus.FAILED, frozenset({D, C, CWE})),
    Move.FAIL: Transition(JobStatus.FAILED, UNFINISHED),
    Move.CANCEL: Transition(JobStatus.CANCELLED, UNFINISHED),
    Move.REPLAY_FETCH: Transition(Q, frozenset({JobStatus.FAILED}), then=FETCH),
    Move.REPLAY_DELIVERY: Transition(C, frozenset({JobStatus.FAILED, CWE})),
}

#: The states in which each stage task works; in any other state the task has nothing to do.
RUNS_IN: Mapping[str, frozenset[JobStatus]] = {
    FETCH: frozenset({Q, F, S}),
    SUMMARIZE: frozenset({S, D}),
}

#: The task that resumes a job stuck in each unfinished state (the recovery sweep's table).
#: ``summarize`` also re-drives the deliveries of a job in ``delivering``.
RESUME: Mapping[JobStatus, str] = {Q: FETCH, F: FETCH, S: SUMMARIZE, D: SUMMARIZE}

# ``DELIVER`` runs in every state: an outbox item has a state of its own, and a failed job
# still sends its ``job.failed`` notifications.
assert DELIVER not in RUNS_IN


class _JsonMerge(FunctionElement[Any]):
    """``column`` with the keys of a JSON object merged in (top level, new values win)."""

    type = JSON()
    inherit_cache = True
    name = "json_merge"


@compiles(_JsonMerge, "postgresql")
def _merge_postgresql(element: _JsonMerge, compiler: Any, **kw: Any) -> str:
    column, patch = list(element.clauses)
    return f"({compiler.process(column, **kw)} || CAST({compiler.process(patch, **kw)} AS jsonb))"


@compiles(_JsonMerge, "sqlite")
def _merge_sqlite(element: _JsonMerge, compiler: Any, **kw: Any) -> str:
    column, patch = list(element.clauses)
    return f"json_patch({compiler.process(column, **kw)}, {compiler.process(patch, **kw)})"


def _merged(patch: Mapping[str, Any]) -> ColumnElement[Any]:
    return _JsonMerge(Job.progress, json.dumps(dict(patch), default=str))


def load(session_factory: sessionmaker[Session], job_id: uuid.UUID) -> Job | None:
    """The job row, detached, or None when it does not exist."""
    with reading_session(session_factory) as session:
        return session.get(Job, job_id)


def _steps(transition: Transition, job_id: uuid.UUID) -> list[Step]:
    return [Step(transition.then, (str(job_id),))] if transition.then else []


def _changes(
    transition: Transition, now: Any, values: Mapping[str, Any], *, finished_at: Any
) -> dict[str, Any]:
    changes: dict[str, Any] = {"status": transition.to.value, "updated_at": now}
    if transition.to.finished:
        # A job that already ended keeps its end time when its deliveries settle it.
        changes["finished_at"] = finished_at
    else:
        changes["heartbeat_at"] = changes["stage_started_at"] = now
        changes["finished_at"] = None
    changes.update(values)
    return changes


def move(
    session_factory: sessionmaker[Session],
    job_id: uuid.UUID,
    which: Move,
    *,
    now: datetime,
    progress: Mapping[str, Any] | None = None,
    **values: Any,
) -> list[Step] | None:
    """Apply move ``which`` to the job if it is in one of the move's source states.

    Returns the steps to publish next (an empty list when none), or None when the job was not
    in a source state (already further, finished, or gone) and nothing was written.
    ``values`` are other columns to set (``error``, ``message_count`` …); ``progress`` keys are
    merged into the job's progress.
    """
    # One statement needs no transaction around it: autocommit spares BEGIN and COMMIT.
    transition = MOVES[which]
    statement = _move_update(which, frozenset(values), merges_progress=bool(progress))
    parameters = _move_parameters(job_id, now, progress, values)
    with one_statement(session_factory) as connection:
        steps, ended = _moved(connection.execute(statement, parameters), transition, job_id, now)
    if ended is not None:
        ended()
    return steps


def move_in(
    session: Session,
    job_id: uuid.UUID,
    which: Move,
    *,
    now: datetime,
    progress: Mapping[str, Any] | None = None,
    **values: Any,
) -> list[Step] | None:
    """:func:`move` inside the caller's transaction (one conditional UPDATE)."""
    transition = MOVES[which]
    statement = _move_update(which, frozenset(values), merges_progress=bool(progress))
    result = session.execute(statement, _move_parameters(job_id, now, progress, values))
    steps, ended = _moved(result, transition, job_id, now)
    if ended is not None:
        after_commit(session, ended)
    return steps


def _moved(
    result: Any, transition: Transition, job_id: uuid.UUID, now: datetime
) -> tuple[list[Step] | None, Callable[[], None] | None]:
    """The steps after a move's UPDATE (None when it changed no row), and, for a move that
    ended the job, how to count that end once it is committed."""
    if not transition.to.finished:
        return (_steps(transition, job_id) if getattr(result, "rowcount", 0) else None), None
    row = result.first()
    if row is None:
        return None, None
    finished_at, created_at, origin, params = row
    # A job that had already ended keeps its end time (a settled delivery): counted once.
    if finished_at != now:
        return _steps(transition, job_id), None
    return _steps(transition, job_id), _end_counter(
        transition.to, origin, params, created_at, finished_at
    )


def _end_counter(
    status: JobStatus, origin: str, params: Any, created_at: datetime, finished_at: datetime
) -> Callable[[], None]:
    """Count a job's end (the metrics of :func:`shared.metrics.count_job_end`) when called."""
    return partial(
        count_job_end,
        origin=origin,
        status=status.value,
        kind=str((params or {}).get("format") or "structured"),
        seconds=(finished_at - created_at).total_seconds(),
    )


_JOBS = table_of(Job)


@cache
def _move_update(which: Move, columns: frozenset[str], *, merges_progress: bool) -> Update:
    """The conditional UPDATE of move ``which`` that also sets ``columns`` (and merges keys
    into the progress when ``merges_progress``): it changes the row only in a source state.

    Built once per shape and run with :func:`_move_parameters`.  A statement built anew for
    each move cost more CPU than the round trip it makes: every run paid for its
    construction and its cache key, where a kept one only binds its values.  It is a Core
    statement on the table, so no ORM bulk-update bookkeeping runs either (no session ever
    holds a job row it would have to synchronize).
    """
    transition = MOVES[which]
    now = bindparam("now", type_=_JOBS.c.updated_at.type)
    finished_at = func.coalesce(_JOBS.c.finished_at, now)
    changes = _changes(
        transition,
        now,
        {name: bindparam(f"set_{name}", type_=_JOBS.c[name].type) for name in sorted(columns)},
        finished_at=finished_at,
    )
    if merges_progress:
        changes["progress"] = _JsonMerge(_JOBS.c.progress, bindparam("progress", type_=String()))
    statement = (
        update(_JOBS)
        .where(
            _JOBS.c.id == bindparam("job_id", type_=_JOBS.c.id.type),
            # The sources are our own status names, written into the SQL once rather than
            # expanded into parameters on every run.
            _JOBS.c.status.in_(
                [literal_column(f"'{s.value}'") for s in sorted(transition.sources)]
            ),
        )
        .values(changes)
    )
    if transition.to.finished:
        # What counting the job's end needs, in the same round trip.
        statement = statement.returning(
            _JOBS.c.finished_at, _JOBS.c.created_at, _JOBS.c.origin, _JOBS.c.params
        )
    return statement


def _move_parameters(
    job_id: uuid.UUID,
    now: datetime,
    progress: Mapping[str, Any] | None,
    values: Mapping[str, Any],
) -> dict[str, Any]:
    """The values :func:`_move_update`'s statement binds for one move."""
    parameters = {"job_id": job_id, "now": now}
    parameters.update((f"set_{name}", value) for name, value in values.items())
    if progress:
        parameters["progress"] = json.dumps(dict(progress), default=str)
    return parameters


def move_locked(
    job: Job,
    which: Move,
    *,
    now: datetime,
    progress: Mapping[str, Any] | None = None,
    **values: Any,
) -> list[Step] | None:
    """:func:`move` for a row the caller holds locked in its own transaction."""
    transition = MOVES[which]
    if JobStatus(job.status) not in transition.sources:
        return None
    session = object_session(job)
    if transition.to.finished and job.finished_at is None and session is not None:
        after_commit(
            session, _end_counter(transition.to, job.origin, job.params, job.created_at, now)
        )
    for key, value in _changes(transition, now, values, finished_at=job.finished_at or now).items():
        setattr(job, key, value)
    if progress:
        job.progress = {**job.progress, **progress}
    return _steps(transition, job.id)


def heartbeat(
    session_factory: sessionmaker[Session],
    job_id: uuid.UUID,
    *,
    now: datetime,
    progress: Mapping[str, Any] | None = None,
) -> bool:
    """Record liveness (and progress) of the running stage; False when the job has ended."""
    changes: dict[str, Any] = {"heartbeat_at": now, "updated_at": now}
    if progress:
        changes["progress"] = _merged(progress)
    statement = (
        update(Job)
        .where(Job.id == job_id, Job.status.in_([s.value for s in UNFINISHED]))
        .values(**changes)
    )
    with one_statement(session_factory) as connection:
        return bool(connection.execute(statement).rowcount)


#: The heartbeat of a job no stage has ever held: older than any stage timeout, so the next
#: recovery sweep takes the job.
NEVER_SEEN = datetime(1970, 1, 1, tzinfo=UTC)


def hand_to_sweep(session_factory: sessionmaker[Session], job_id: uuid.UUID) -> bool:
    """Leave a queued job whose first task could not be published to the next recovery sweep.

    Left alone, such a job looks like one whose fetch just started, and the sweep would wait
    a whole stage timeout before publishing it; with :data:`NEVER_SEEN` it is published by the
    next sweep (every minute) once the broker is back.  False when the job had already moved.
    """
    statement = (
        update(Job)
        .where(Job.id == job_id, Job.status == JobStatus.QUEUED.value)
        .values(heartbeat_at=NEVER_SEEN)
    )
    with one_statement(session_factory) as connection:
        return bool(connection.execute(statement).rowcount)
