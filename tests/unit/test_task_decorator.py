"""The task decorator through a real Celery worker (embedded memory transport, threads pool)."""

from __future__ import annotations

import time
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from celery.exceptions import SoftTimeLimitExceeded
from celery.signals import task_postrun
from sqlalchemy import select

from schema.models.jobs import DeadLetter, Job, JobStatus
from shared.db.migrate import upgrade
from shared.errors import InvalidInputError, RateLimitedError, TransientError
from shared.jobs import ExportFileSource, JobParams, Step
from shared.pipeline.services import Services
from shared.settings import load_settings
from workers.app import create_worker_app
from workers.base import backoff_seconds, pipeline_task
from workers.context import build_services
from workers.embedded import EmbeddedWorker

CALLS: Counter[str] = Counter()


def _mark_done(services: Services, job_id: uuid.UUID) -> None:
    with services.session_factory() as session, session.begin():
        job = session.get(Job, job_id)
        assert job is not None
        job.progress = {"done": True}


def _transient_twice(services: Services, job: Job) -> None:
    CALLS["transient_twice"] += 1
    if CALLS["transient_twice"] <= 2:
        raise TransientError("flaky upstream")
    _mark_done(services, job.id)


def _always_transient(services: Services, job: Job) -> None:
    CALLS["always"] += 1
    raise RateLimitedError("slow down", retry_after=0.2)


def _permanent(services: Services, job: Job) -> None:
    raise InvalidInputError("detail for operators", user_message="the export is empty")


def _bug(services: Services, job: Job) -> None:
    raise KeyError("oops")


def _slow_once(services: Services, job: Job) -> None:
    CALLS["slow_once"] += 1
    if CALLS["slow_once"] == 1:
        raise SoftTimeLimitExceeded()  # what prefork raises in a task past its soft limit
    _mark_done(services, job.id)


def _always_slow(services: Services, job: Job) -> None:
    CALLS["always_slow"] += 1
    raise SoftTimeLimitExceeded()


def _chained(services: Services, job: Job) -> list[Step]:
    CALLS["chained"] += 1
    return [Step("test.chained_next", (str(job.id),))]


def _chained_next(services: Services, job: Job) -> None:
    _mark_done(services, job.id)


def _queued_only(services: Services, job: Job) -> None:
    CALLS["queued_only"] += 1


def _by_id(services: Services, job_id: uuid.UUID) -> None:
    CALLS["by_id"] += 1
    assert isinstance(job_id, uuid.UUID)  # the id, not a row: the stage reads what it needs
    _mark_done(services, job_id)


TEST_TASKS = [
    ("test.transient_twice", _transient_twice, None),
    ("test.always_transient", _always_transient, None),
    ("test.permanent", _permanent, None),
    ("test.bug", _bug, None),
    ("test.slow_once", _slow_once, None),
    ("test.always_slow", _always_slow, None),
    ("test.chained", _chained, None),
    ("test.chained_next", _chained_next, None),
    ("test.queued_only", _queued_only, frozenset({JobStatus.QUEUED})),
]


@pytest.fixture(scope="module")
def services(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Services]:
    data = tmp_path_factory.mktemp("decorator")
    settings = load_settings(
        data_dir=data, visibility_timeout=20, max_task_retries=2, redis_url=None, database_url=None
    )
    upgrade(settings.effective_database_url)
    worker = create_worker_app(settings)
    for name, fn, runs_in in TEST_TASKS:
        pipeline_task(worker.app, worker.context, name, queue="fetch", runs_in=runs_in)(fn)
    pipeline_task(worker.app, worker.context, "test.by_id", queue="fetch", loads_job=False)(_by_id)
    built = build_services(settings, worker.app)
    worker.context.install(built)
    with EmbeddedWorker(worker.app, concurrency=2):
        yield built
    worker.close()
    built.close()


def _job(services: Services) -> uuid.UUID:
    params = JobParams(source=ExportFileSource(path=str(Path("/nonexistent.json").resolve())))
    with services.session_factory() as session, session.begin():
        job = Job(origin="test", params=params.model_dump(mode="json"), progress={})
        session.add(job)
    return job.id


def _run(services: Services, task: str, timeout: float = 20) -> Job:
    job_id = _job(services)
    services.enqueuer.enqueue(task, str(job_id))
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with services.session_factory() as session:
            job = session.get(Job, job_id)
            assert job is not None
            if job.status == "failed" or job.progress.get("done"):
                return job
        time.sleep(0.05)
    raise AssertionError(f"{task} did not settle")


def _dead_letters(services: Services, job_id: uuid.UUID) -> list[DeadLetter]:
    with services.session_factory() as session:
        return list(session.scalars(select(DeadLetter).where(DeadLetter.job_id == job_id)))


def test_transient_errors_are_retried_until_success(services: Services) -> None:
    job = _run(services, "test.transient_twice")
    assert job.status == "queued" and job.progress == {"done": True}
    assert CALLS["transient_twice"] == 3
    assert _dead_letters(services, job.id) == []


def test_exhausted_retries_fail_the_job_and_write_a_dead_letter(services: Services) -> None:
    job = _run(services, "test.always_transient")
    assert job.status == "failed"
    assert job.error == (
        "gave up after 3 attempts: slow down; an operator can run it again with `summarybot replay`"
    )
    assert CALLS["always"] == 3
    (letter,) = _dead_letters(services, job.id)
    assert letter.task_name == "test.always_transient" and letter.retries == 2
    assert letter.args == [str(job.id)]


def test_permanent_errors_fail_once_with_the_user_message(services: Services) -> None:
    job = _run(services, "test.permanent")
    assert job.status == "failed"
    assert job.error == "the export is empty"
    assert job.error_detail == "detail for operators"
    assert _dead_letters(services, job.id) == []


def test_bugs_fail_the_job_and_keep_the_traceback(services: Services) -> None:
    job = _run(services, "test.bug")
    assert job.status == "failed"
    assert job.error is not None and job.error.startswith("internal error while running test.bug")
    (letter,) = _dead_letters(services, job.id)
    assert "KeyError" in letter.error and letter.traceback and "_bug" in letter.traceback


def test_a_stage_past_its_soft_time_limit_gets_one_more_try(services: Services) -> None:
    job = _run(services, "test.slow_once")
    assert job.progress == {"done": True} and CALLS["slow_once"] == 2


def test_a_second_overrun_fails_the_job_with_the_limit_named(services: Services) -> None:
    job = _run(services, "test.always_slow")
    assert job.status == "failed" and CALLS["always_slow"] == 2
    assert job.error is not None
    assert job.error.startswith("the job took longer than the ") and "shorter window" in job.error
    assert _dead_letters(services, job.id) == []


def test_backoff_grows_is_capped_and_respects_retry_after() -> None:
    for retries in range(6):
        delay = backoff_seconds(retries, cap=30)
        ceiling = min(30, 2 ** (retries + 1))
        assert ceiling / 2 <= delay <= ceiling
    assert backoff_seconds(0, cap=30, retry_after=12) >= 12
    assert backoff_seconds(0, cap=5, retry_after=100) <= 5


def test_the_steps_a_stage_returns_are_published(services: Services) -> None:
    job = _run(services, "test.chained")
    assert job.progress == {"done": True} and CALLS["chained"] == 1


def test_a_stage_is_skipped_outside_the_states_it_runs_in(services: Services) -> None:
    job_id = _job(services)
    with services.session_factory() as session, session.begin():
        row = session.get(Job, job_id)
        assert row is not None
        row.status = "completed"
    before = CALLS["queued_only"]
    finished: list[str] = []

    def count(task: Any = None, **_: Any) -> None:
        if getattr(task, "name", None) == "test.queued_only":
            finished.append(str(task.request.id))

    task_postrun.connect(count, weak=False)
    try:
        services.enqueuer.enqueue("test.queued_only", str(job_id))
        ready = _job(services)
        services.enqueuer.enqueue("test.queued_only", str(ready))
        deadline = time.monotonic() + 20
        while len(finished) < 2 and time.monotonic() < deadline:  # both copies have run
            time.sleep(0.02)
    finally:
        task_postrun.disconnect(count)
    assert len(finished) == 2
    assert CALLS["queued_only"] == before + 1


def test_a_stage_that_reads_the_job_itself_gets_its_id_in_any_state(services: Services) -> None:
    job_id = _job(services)
    with services.session_factory() as session, session.begin():
        row = session.get(Job, job_id)
        assert row is not None
        row.status = "completed"  # not loaded, so not checked: the stage decides
    services.enqueuer.enqueue("test.by_id", str(job_id))
    deadline = time.monotonic() + 20
    done = False
    while time.monotonic() < deadline and not done:
        time.sleep(0.02)
        with services.session_factory() as session:
            row = session.get(Job, job_id)
            done = row is not None and row.progress.get("done") is True
    assert done and CALLS["by_id"] == 1
