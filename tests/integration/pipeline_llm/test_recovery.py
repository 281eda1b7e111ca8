"""Lost task messages and expired scratch: the plan in Postgres lets the job finish anyway."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from datetime import timedelta

import pytest
from kombu.exceptions import OperationalError
from sqlalchemy import select

from schema.models.jobs import Job
from schema.models.usage import UsageLedger
from shared.jobs import FETCH
from shared.pipeline.llm.mapreduce import MAP_CHUNK, REDUCE
from shared.pipeline.recovery import requeue_stale_jobs
from tests.fakes.enqueuer import RecordingEnqueuer
from tests.integration.pipeline_llm.harness import Harness, channel, irc_messages

pytestmark = pytest.mark.integration

GUILD = "1085131932217520185"


def _calls(harness: Harness, job_id: uuid.UUID, kind: str) -> int:
    with harness.session_factory() as session:
        return len(
            session.scalars(
                select(UsageLedger).where(UsageLedger.job_id == job_id, UsageLedger.kind == kind)
            ).all()
        )


def _chunks(harness: Harness, job_id: uuid.UUID) -> int | None:
    with harness.session_factory() as session:
        job = session.get(Job, job_id)
        return None if job is None else (job.progress or {}).get("chunks")


def _wait_for(predicate: Callable[[], bool], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.05)


def _export(harness: Harness, name: str):  # type: ignore[no-untyped-def]
    return harness.export(
        name, irc_messages(400, guild_id=GUILD, channel_id="77"), channel(channel_id="77")
    )


@pytest.mark.parametrize("lost", [MAP_CHUNK, REDUCE])
def test_the_recovery_sweep_redrives_lost_steps(
    lost: str, make_harness: Callable[..., Harness]
) -> None:
    harness = make_harness()
    inner = harness.services.enqueuer
    filtered = RecordingEnqueuer(target=inner, drop={lost})
    harness.services.enqueuer = filtered
    job_id = harness.submit(_export(harness, f"lost-{lost}"))
    _wait_for(lambda: lost in filtered.dropped_names())
    # What was not lost has run to its end: no map at all (every map message is lost), or
    # every map and no reduce.
    maps_expected = (lambda n: 0) if lost == MAP_CHUNK else (lambda n: n)
    _wait_for(
        lambda: (
            (chunks := _chunks(harness, job_id)) is not None
            and _calls(harness, job_id, "map") == maps_expected(chunks)
        )
    )
    with harness.session_factory() as session:
        job = session.get(Job, job_id)
        assert job is not None and job.status == "summarizing"
    # Later, the stale-job sweep finds the job and re-drives exactly what is missing.
    filtered.drop = set()
    real_clock = harness.services.clock
    harness.services.clock = lambda: real_clock() + timedelta(hours=1)
    assert requeue_stale_jobs(harness.services) >= 1
    harness.services.clock = real_clock
    run = harness.wait(job_id)
    assert run.job.status == "completed", run.job.error
    assert run.plan is not None
    assert run.kinds() == {"map": run.plan.chunk_count, "reduce": 1}  # nothing paid twice


def test_a_job_whose_first_publish_failed_goes_to_the_next_sweep(
    make_harness: Callable[..., Harness],
) -> None:
    harness = make_harness()
    refused: list[str] = []

    def broker_down(task_name: str) -> None:
        if task_name == FETCH and not refused:
            refused.append(task_name)
            raise OperationalError("Error 111 connecting to redis: Connection refused")

    recorder = RecordingEnqueuer(target=harness.services.enqueuer, before=broker_down)
    harness.services.enqueuer = recorder
    with harness.session_factory() as session:
        before = set(session.scalars(select(Job.id)))
    with pytest.raises(OperationalError):
        harness.submit(_export(harness, "unpublished"))
    with harness.session_factory() as session:
        [job] = [j for j in session.scalars(select(Job)) if j.id not in before]
    # Committed, and marked for the next sweep rather than after a whole stage timeout.
    assert job.status == "queued"
    assert job.heartbeat_at is not None and job.heartbeat_at.year == 1970
    assert requeue_stale_jobs(harness.services) >= 1  # at the real clock: no time travel
    assert (FETCH, (str(job.id),)) in recorder.sent
    run = harness.wait(job.id)
    assert run.job.status == "completed", run.job.error


def test_expired_scratch_replans_instead_of_failing(make_harness: Callable[..., Harness]) -> None:
    harness = make_harness()
    expired: list[bool] = []

    def expire_once(task_name: str) -> None:
        if task_name == MAP_CHUNK and not expired:
            for key in harness.keys("scratch:*"):
                harness.redis.delete(key)
            expired.append(True)

    harness.services.enqueuer = RecordingEnqueuer(
        target=harness.services.enqueuer, before=expire_once
    )
    run = harness.run(_export(harness, "expired"))
    assert run.job.status == "completed", run.job.error
    assert expired
    assert run.plan is not None
    assert run.kinds() == {"map": run.plan.chunk_count, "reduce": 1}
