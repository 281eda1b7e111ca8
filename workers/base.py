"""The one task decorator: loads the job, binds log context, caps redeliveries, sorts errors.

Stage functions stay plain: ``fn(services, job, *ids) -> steps``.  This wrapper is the only place
that

- loads the job row and skips the task when the job is gone, finished, or in a state the stage
  does not work in (:data:`shared.lifecycle.RUNS_IN`), so no stage repeats that prelude;
- publishes the steps a stage returns (the next tasks), after the stage's own writes committed;
- decides what an exception means for the job:

  - transient (``shared.errors.classify``): retried with exponential backoff and full jitter,
    capped below the visibility timeout; when retries run out the job fails and a dead letter
    is written;
  - permanent: the job fails with the error's ``user_message``; nothing is retried;
  - anything unexpected (a bug): the job fails with a generic reason, a dead letter keeps the
    traceback for ``summarybot replay`` after the fix.
"""

from __future__ import annotations

import random
import traceback
import uuid
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import Any, ParamSpec

import structlog
from celery import Celery, Task
from celery.exceptions import Reject, Retry, SoftTimeLimitExceeded, TimeLimitExceeded
from sqlalchemy import update
from sqlalchemy.orm import Session, sessionmaker

import celeryconfig
from schema.models.jobs import Job, JobStatus
from shared import lifecycle
from shared.db.engine import make_engine, make_sessionmaker
from shared.errors import (
    ErrorKind,
    PermanentError,
    PipelineError,
    RateLimitedError,
    TransientError,
    classify,
)
from shared.jobs import SUMMARIZE, Step
from shared.pipeline.deadletters import record_dead_letter
from shared.pipeline.services import Services
from workers.context import WorkerContext

__all__ = ["backoff_seconds", "pipeline_task"]

log = structlog.get_logger(__name__)
P = ParamSpec("P")

StageFn = Callable[..., Iterable[Step] | None]


def backoff_seconds(retries: int, *, cap: float, retry_after: float | None = None) -> float:
    """Exponential backoff with full jitter (2, 4, 8 … s), never beyond ``cap``.

    A server's ``retry_after`` is a floor: retrying sooner would only be refused again.
    """
    ceiling = min(cap, 2.0 ** (retries + 1))
    delay = random.uniform(ceiling / 2, ceiling)  # noqa: S311 - jitter, not security
    if retry_after is not None:
        delay = max(delay, min(cap, retry_after))
    return delay


def _count_redelivery(services: Services, job_id: uuid.UUID) -> int:
    with services.session_factory() as session, session.begin():
        session.execute(
            update(Job).where(Job.id == job_id).values(redeliveries=Job.redeliveries + 1)
        )
        job = session.get(Job, job_id)
        return job.redeliveries if job else 0


def _dead_end(
    session_factory: sessionmaker[Session],
    now: datetime,
    *,
    task_id: str,
    task_name: str,
    args: list[str],
    retries: int,
    reason: str,
    exc: BaseException | None,
) -> None:
    """Fail the job ``args[0]`` with ``reason`` and keep a dead letter for ``summarybot replay``."""
    job_id = uuid.UUID(args[0])
    record_dead_letter(
        session_factory,
        task_id=task_id,
        task_name=task_name,
        job_id=job_id,
        args=args,
        error=repr(exc) if exc else reason,
        traceback="".join(traceback.format_exception(exc)) if exc else None,
        retries=retries,
        now=now,
    )
    lifecycle.move(
        session_factory,
        job_id,
        lifecycle.Move.FAIL,
        now=now,
        error=reason,
        error_detail=repr(exc) if exc else None,
    )


def _give_up(
    services: Services,
    task: Task,
    job_id: uuid.UUID,
    args: tuple[str, ...],
    *,
    reason: str,
    exc: BaseException | None,
) -> None:
    _dead_end(
        services.session_factory,
        services.clock(),
        task_id=str(task.request.id),
        task_name=str(task.name),
        args=[str(job_id), *args],
        retries=int(task.request.retries or 0),
        reason=reason,
        exc=exc,
    )
    services.cache.delete(str(job_id))


def _fail_overrun(
    context: WorkerContext, task: Task, task_id: str, args: list[str], exc: TimeLimitExceeded
) -> None:
    """A stage killed at its hard time limit fails its job, from the worker's main process.

    The pool kills the child, so the task's own error handling never runs; Celery acks the
    message (``task_acks_on_timeout``) and calls the task's ``on_failure`` in the main process
    (``celery.worker.request.Request.on_timeout``).  Without this the job would stay unfinished
    and the recovery sweep would run the stage again, to be killed again, for ever.  A stage
    that ignored its soft limit is stuck, so there is no second try.  The prefork main process
    builds no services (its children would inherit their sockets), so it opens one connection
    for these two writes and closes it.
    """
    limit = task.app.conf.task_time_limit
    reason = (
        f"the job's {task.name} stage did not stop at its soft time limit and was stopped at "
        f"the {limit} s hard limit; summarize a shorter window, or an operator can run it "
        "again with `summarybot replay` after looking into it"
    )
    log.error("task.hard_time_limit", task=task.name, task_id=task_id, job_id=args[0])
    fields: dict[str, Any] = {
        "task_id": task_id,
        "task_name": str(task.name),
        "args": [str(a) for a in args],
        "retries": 0,
        "reason": reason,
        "exc": exc,
    }
    if context.ready:  # a solo or threads pool: this process has its services
        services = context.services()
        _dead_end(services.session_factory, services.clock(), **fields)
        return
    engine = make_engine(context.settings.effective_database_url, pool_size=1, max_overflow=0)
    try:
        _dead_end(make_sessionmaker(engine), datetime.now(UTC), **fields)
    finally:
        engine.dispose()


def _handle_failure(
    task: Task, services: Services, job_id: uuid.UUID, args: tuple[str, ...], exc: Exception
) -> None:
    retries = int(task.request.retries or 0)
    if isinstance(exc, SoftTimeLimitExceeded):
        limit = task.app.conf.task_soft_time_limit
        message = f"{task.name} exceeded its {limit} s soft time limit"
        user_message = (
            f"the job took longer than the {limit} s limit for one stage; "
            "summarize a shorter window"
        )
        # A stage can stall on a database failover or a hung connection as well as on too much
        # work: one more try tells the two apart, a second overrun is the window's size.
        slow: type[PipelineError] = TransientError if retries == 0 else PermanentError
        exc = slow(message, user_message=user_message)
    kind = classify(exc)
    max_retries = services.settings.max_task_retries
    if kind is ErrorKind.TRANSIENT and retries < max_retries:
        countdown = backoff_seconds(
            retries,
            cap=float(celeryconfig.retry_backoff_cap(services.settings.visibility_timeout)),
            retry_after=exc.retry_after if isinstance(exc, RateLimitedError) else None,
        )
        log.warning("task.retry", error=str(exc), retries=retries, countdown=round(countdown, 2))
        raise task.retry(exc=exc, countdown=countdown, max_retries=max_retries)
    if kind is ErrorKind.TRANSIENT:
        log.error("task.gave_up", error=str(exc), retries=retries)
        reason = (
            f"gave up after {retries + 1} attempts: "
            + (exc.user_message if isinstance(exc, PipelineError) else str(exc)).rstrip(".")
            + "; an operator can run it again with `summarybot replay`"
        )
    elif isinstance(exc, PipelineError):
        log.warning("task.failed", error=str(exc))
        lifecycle.move(
            services.session_factory,
            job_id,
            lifecycle.Move.FAIL,
            now=services.clock(),
            error=exc.user_message,
            error_detail=str(exc),
        )
        services.cache.delete(str(job_id))
        return
    else:
        log.exception("task.bug", error=repr(exc))
        reason = (
            f"internal error while running {task.name}; operators were notified "
            f"(task {task.request.id})"
        )
    _give_up(services, task, job_id, args, exc=exc, reason=reason)


def _wake_parent(services: Services, job: Job | None) -> None:
    """A part of a multi-channel job that has ended wakes its parent, which composes the
    summary once every part has ended (:mod:`shared.pipeline.compose`)."""
    part_of = job.params.get("part_of") if job is not None else None
    if not isinstance(part_of, dict) or job is None:
        return
    current = lifecycle.load(services.session_factory, job.id)
    if current is not None and JobStatus(current.status).finished:
        services.enqueuer.enqueue(SUMMARIZE, str(part_of["job_id"]))


def _should_run(job: Job | None, runs_in: frozenset[JobStatus] | None) -> bool:
    if job is None:
        log.info("task.skipped", reason="job missing")
        return False
    if runs_in is not None and JobStatus(job.status) not in runs_in:
        log.info("task.skipped", reason=f"job is {job.status}")
        return False
    return True


def pipeline_task(
    app: Celery,
    context: WorkerContext,
    name: str,
    *,
    queue: str,
    runs_in: frozenset[JobStatus] | None = None,
    loads_job: bool = True,
) -> Callable[[StageFn], Task]:
    """Register ``fn(services, job, *ids)`` as Celery task ``name`` on ``queue`` of ``app``.

    ``services`` are ``context``'s.
    The task takes string ids only (JSON).  The stage runs only while the job is in one of the
    ``runs_in`` states (None: in any state, for tasks with a state of their own such as an
    outbox item); the steps it returns are published once it returns.  Every log line the task
    emits carries ``job_id``/``task_id``, and redeliveries of a poison message are capped at
    ``MAX_REDELIVERIES``.  ``loads_job=False`` is for a stage that reads the job itself, with
    what it works on (the deliver stage, with its outbox item): it is called with the job's id
    instead of its row, and whatever the job's state.
    """

    def decorate(fn: StageFn) -> Task:
        def on_failure(
            self: Task, exc: BaseException, task_id: str, args: Any, _kwargs: Any, _einfo: Any
        ) -> None:
            if isinstance(exc, TimeLimitExceeded) and args:
                _fail_overrun(context, self, task_id, list(args), exc)

        # ``shared=False``: a shared task would also be registered, with this context, on every
        # app made later in the process (tests, the embedded mode), running the wrong context.
        @app.task(  # type: ignore[untyped-decorator]
            name=name,
            bind=True,
            queue=queue,
            acks_late=True,
            shared=False,
            on_failure=on_failure,
        )
        def task(self: Task, job_id: str, *args: str) -> None:
            if context.failed is not None:
                # This pool process could not start (logged; the worker is stopping): the
                # message goes back to the queue, for another worker.
                raise Reject(context.failed, requeue=True)
            services = context.services()
            job = uuid.UUID(job_id)
            row: Job | None = None
            structlog.contextvars.clear_contextvars()
            structlog.contextvars.bind_contextvars(
                job_id=job_id,
                task_id=self.request.id,
                task=name,
                retries=self.request.retries or 0,
            )
            try:
                delivery_info: dict[str, Any] = self.request.delivery_info or {}
                if delivery_info.get("redelivered"):
                    count = _count_redelivery(services, job)
                    if count > services.settings.max_redeliveries:
                        log.error("task.poison", redeliveries=count)
                        _give_up(
                            services,
                            self,
                            job,
                            args,
                            exc=None,
                            reason=f"stopped after {count} redeliveries (a worker died "
                            "each time it ran this job)",
                        )
                        return
                ids = (uuid.UUID(a) for a in args)
                if loads_job:
                    row = lifecycle.load(services.session_factory, job)
                    if not _should_run(row, runs_in):
                        return
                    steps = fn(services, row, *ids)
                else:
                    steps = fn(services, job, *ids)
                for step in steps or ():
                    services.enqueuer.enqueue(step.task, *step.args)
            except Retry:
                raise
            except Exception as exc:  # noqa: BLE001 - sorted by the one classifier
                _handle_failure(self, services, job, args, exc)
                _wake_parent(services, row)
            else:
                _wake_parent(services, row)
            finally:
                structlog.contextvars.clear_contextvars()

        return task

    return decorate
