"""Lost task messages and expired scratch: the plan in Postgres lets the job finish anyway."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import timedelta

import pytest

from schema.models.jobs import Job
from shared.pipeline.llm.mapreduce import MAP_CHUNK, REDUCE
from shared.pipeline.recovery import requeue_stale_jobs
from tests.integration.pipeline_llm.harness import Harness, channel, irc_messages

pytestmark = pytest.mark.integration

GUILD = "1085131932217520185"


class _Filter:
    """An enqueuer that drops (or intercepts) some task names until told to stop."""

    def __init__(self, inner, drop: set[str], before: Callable[[str], None] | None = None):  # type: ignore[no-untyped-def]
        self.inner = inner
        self.drop = drop
        self.before = before
        self.dropped: list[str] = []

    def enqueue(self, task_name: str, *args: str) -> None:
        if self.before is not None:
            self.before(task_name)
        if task_name in self.drop:
            self.dropped.append(task_name)
            return
        self.inner.enqueue(task_name, *args)


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
    filtered = _Filter(inner, {lost})
    harness.services.enqueuer = filtered
    job_id = harness.submit(_export(harness, f"lost-{lost}"))
    _wait_for(lambda: lost in filtered.dropped)
    time.sleep(1.0)  # whatever was not lost has run by now
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


def test_expired_scratch_replans_instead_of_failing(make_harness: Callable[..., Harness]) -> None:
    harness = make_harness()
    expired: list[bool] = []

    def expire_once(task_name: str) -> None:
        if task_name == MAP_CHUNK and not expired:
            for key in harness.keys("scratch:*"):
                harness.redis.delete(key)
            expired.append(True)

    harness.services.enqueuer = _Filter(harness.services.enqueuer, set(), before=expire_once)
    run = harness.run(_export(harness, "expired"))
    assert run.job.status == "completed", run.job.error
    assert expired
    assert run.plan is not None
    assert run.kinds() == {"map": run.plan.chunk_count, "reduce": 1}
