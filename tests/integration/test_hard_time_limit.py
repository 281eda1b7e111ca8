"""A stage killed at its hard time limit fails its job from the worker's main process.

Celery kills the pool child, acks the message (``task_acks_on_timeout``) and calls the task's
``on_failure`` with ``TimeLimitExceeded`` in the main process
(``celery.worker.request.Request.on_timeout``), which builds no services.  Without the hook
the job stayed unfinished and the recovery sweep ran the stage again, to be killed again, for
ever.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from billiard.exceptions import TimeLimitExceeded
from celery.exceptions import Reject
from sqlalchemy import select

from schema.models.jobs import DeadLetter, Job
from shared.db.engine import make_engine, make_sessionmaker
from shared.db.migrate import upgrade
from shared.jobs import FETCH, SUMMARIZE, ExportFileSource, JobParams
from shared.settings import load_settings
from workers.app import WorkerApp, create_worker_app


@pytest.fixture
def worker(postgres_url: str, tmp_path: Path) -> Iterator[WorkerApp]:
    upgrade(postgres_url)
    settings = load_settings(data_dir=tmp_path, database_url=postgres_url, redis_url=None)
    app = create_worker_app(settings)
    yield app
    app.close()


def _job(url: str, status: str) -> uuid.UUID:
    engine = make_engine(url)
    params = JobParams(source=ExportFileSource(path=str(Path("/nonexistent.json").resolve())))
    with make_sessionmaker(engine)() as session, session.begin():
        job = Job(origin="test", params=params.model_dump(mode="json"), progress={}, status=status)
        session.add(job)
    engine.dispose()
    return job.id


def _connections(url: str, *, at_most: int, wait: float) -> int:
    """Client connections to the test database, after waiting up to ``wait`` seconds for
    them to fall to ``at_most``: a closed connection leaves ``pg_stat_activity`` a moment
    after its client let go (and more than a moment on a loaded machine)."""
    name = url.rsplit("/", 1)[1]
    dsn = url.replace("postgresql+psycopg://", "postgresql://").rsplit("/", 1)[0] + "/postgres"
    deadline = time.monotonic() + wait
    with psycopg.connect(dsn, autocommit=True) as conn:
        while True:
            row = conn.execute(
                "SELECT count(*) FROM pg_stat_activity "
                "WHERE datname = %s AND backend_type = 'client backend'",
                (name,),
            ).fetchone()
            assert row is not None
            if int(row[0]) <= at_most or time.monotonic() > deadline:
                return int(row[0])
            time.sleep(0.05)


@pytest.mark.parametrize(("task_name", "status"), [(FETCH, "fetching"), (SUMMARIZE, "summarizing")])
def test_a_stage_killed_at_its_hard_limit_fails_its_job_with_a_dead_letter(
    worker: WorkerApp, postgres_url: str, task_name: str, status: str
) -> None:
    assert not worker.context.ready  # as in a prefork main process
    job_id = _job(postgres_url, status)
    before = _connections(postgres_url, at_most=0, wait=1.0)
    task = worker.app.tasks[task_name]
    limit = worker.app.conf.task_time_limit
    killed = f"task-killed-{job_id}"
    task.on_failure(TimeLimitExceeded(limit), killed, (str(job_id),), {}, None)

    engine = make_engine(postgres_url)
    with make_sessionmaker(engine)() as session:
        job = session.get(Job, job_id)
        assert job is not None and job.status == "failed"
        assert job.error is not None
        assert f"stopped at the {limit} s hard limit" in job.error
        assert "summarize a shorter window" in job.error
        (letter,) = session.scalars(select(DeadLetter).where(DeadLetter.job_id == job_id)).all()
        assert (letter.task_id, letter.task_name, letter.args) == (
            killed,
            task_name,
            [str(job_id)],
        )
        assert "TimeLimitExceeded" in letter.error
    engine.dispose()
    # The main process kept no connection: its children would inherit the socket.
    assert _connections(postgres_url, at_most=before, wait=5.0) <= before

    # Other failures reported to the main process are not the stage's to handle.
    other = _job(postgres_url, status)
    task.on_failure(RuntimeError("not a time limit"), "task-2", (str(other),), {}, None)
    engine = make_engine(postgres_url)
    with make_sessionmaker(engine)() as session:
        still = session.get(Job, other)
        assert still is not None and still.status == status
    engine.dispose()


def test_a_pool_process_that_could_not_start_hands_its_messages_back(
    worker: WorkerApp, postgres_url: str
) -> None:
    # Its worker is stopping (worker.process_init_failed): the message is requeued for
    # another worker rather than acked and lost.
    job_id = _job(postgres_url, "queued")
    worker.context.failed = "LLM API key file /run/key cannot be read"
    with pytest.raises(Reject) as info:
        worker.app.tasks[FETCH].run(str(job_id))
    assert info.value.requeue is True
    assert "cannot be read" in str(info.value.reason)
