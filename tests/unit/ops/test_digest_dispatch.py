"""The dispatcher and the empty-window policy on the embedded SQLite database."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from schema.models.jobs import Job
from schema.models.schedules import Schedule, ScheduleRun
from shared.db.engine import make_engine, make_sessionmaker
from shared.db.migrate import upgrade
from shared.digests.dispatch import dispatch_due_digests, plan_run, reset_next_run
from shared.digests.empty import (
    EmptyWindowAction,
    digest_snapshot,
    empty_window_action,
    no_activity_content,
    record_outcome,
)
from shared.digests.spec import parse_schedule
from shared.domain.messages import ChannelInfo
from shared.jobs import ExportFileSource, FileTarget, JobParams, parse_params, submit_job
from shared.summarize.content import SummaryFormat
from tests.unit.ops.helpers import RecordingEnqueuer, add_schedule

START = datetime(2026, 6, 1, 10, 0, 5, tzinfo=UTC)


@pytest.fixture
def factory(tmp_path: Path) -> Iterator[sessionmaker[Session]]:
    url = f"sqlite:///{tmp_path / 'digests.db'}"
    upgrade(url)
    engine = make_engine(url)
    yield make_sessionmaker(engine)
    engine.dispose()


def _only_job(factory: sessionmaker[Session]) -> Job:
    with factory() as session:
        (job,) = session.scalars(select(Job)).all()
        return job


def test_sqlite_dispatch_creates_one_run_per_window(factory: sessionmaker[Session]) -> None:
    add_schedule(factory, "hourly", now=START, format="technical", language="de")
    enqueuer = RecordingEnqueuer()
    due = START + timedelta(hours=1)
    first = dispatch_due_digests(factory, enqueuer, now=due)
    assert (first.claimed, first.runs_created, first.jobs_submitted) == (1, 1, 1)
    again = dispatch_due_digests(factory, enqueuer, now=due)
    assert (again.claimed, again.runs_created) == (0, 0)
    job = _only_job(factory)
    params = parse_params(job.params)
    assert params.format is SummaryFormat.TECHNICAL and params.language == "de"
    assert job.requested_by == "333333333333333333"
    assert len(enqueuer.sent) == 1


def test_a_reset_schedule_does_not_repeat_a_window(factory: sessionmaker[Session]) -> None:
    schedule_id = add_schedule(factory, "hourly", now=START)
    enqueuer = RecordingEnqueuer()
    due = START + timedelta(hours=1)
    dispatch_due_digests(factory, enqueuer, now=due)
    # Someone puts the schedule back to the firing that already ran (a replayed tick).
    with factory() as session, session.begin():
        session.execute(
            update(Schedule)
            .where(Schedule.id == schedule_id)
            .values(next_run_at=datetime(2026, 6, 1, 11, tzinfo=UTC), last_run_at=None)
        )
    replay = dispatch_due_digests(factory, enqueuer, now=due)
    assert (replay.claimed, replay.runs_created) == (1, 0)
    with factory() as session:
        assert len(session.scalars(select(ScheduleRun)).all()) == 1
        schedule = session.get(Schedule, schedule_id)
        assert schedule is not None and schedule.next_run_at is not None
        assert schedule.next_run_at > due  # still advanced


def test_destinations_map_to_targets_or_wait_on_the_job(
    factory: sessionmaker[Session], tmp_path: Path
) -> None:
    out = str(tmp_path / "digest.md")
    add_schedule(factory, "hourly", now=START, destination={"kind": "file", "path": out})
    dispatch_due_digests(factory, RecordingEnqueuer(), now=START + timedelta(hours=1))
    job = _only_job(factory)
    assert parse_params(job.params).destinations == [FileTarget(path=out)]
    assert job.progress["digest"]["destination_pending"] is False
    with factory() as session, session.begin():
        session.execute(update(Schedule).values(destination={"kind": "pigeon", "loft": "north"}))
    dispatch_due_digests(factory, RecordingEnqueuer(), now=START + timedelta(hours=2))
    with factory() as session:
        later = session.scalars(select(Job).order_by(Job.created_at.desc())).first()
    assert later is not None and parse_params(later.params).destinations == []
    digest = later.progress["digest"]
    assert digest["destination"] == {"kind": "pigeon", "loft": "north"}
    assert digest["destination_pending"] is True


def test_unusable_schedules_are_paused_not_retried_forever(factory: sessionmaker[Session]) -> None:
    broken_cron = add_schedule(factory, "hourly", now=START)
    bad_channel = add_schedule(factory, "hourly", now=START, channel_id="not-a-snowflake")
    with factory() as session, session.begin():
        session.execute(update(Schedule).where(Schedule.id == broken_cron).values(cron="0 9 *"))
    result = dispatch_due_digests(factory, RecordingEnqueuer(), now=START + timedelta(hours=1))
    assert (result.disabled, result.runs_created, result.jobs_submitted) == (1, 1, 0)
    with factory() as session:
        for schedule_id in (broken_cron, bad_channel):
            schedule = session.get(Schedule, schedule_id)
            assert schedule is not None
            assert (schedule.enabled, schedule.next_run_at) == (False, None)
        assert session.scalars(select(ScheduleRun)).all() == []  # the unusable run is dropped


def test_plan_run_first_window_and_reset_next_run() -> None:
    weekdays = parse_schedule("every weekday 17:30")
    monday = datetime(2026, 3, 9, 17, 30, tzinfo=UTC)
    plan = plan_run(weekdays, due_at=monday, last_run_at=None, now=monday + timedelta(seconds=9))
    assert plan.window_start == datetime(2026, 3, 6, 17, 30, tzinfo=UTC)  # since Friday
    assert (plan.window_end, plan.missed) == (monday, False)
    assert plan.next_run_at == datetime(2026, 3, 10, 17, 30, tzinfo=UTC)
    odd = datetime(2026, 3, 9, 17, 31, tzinfo=UTC)  # not a firing time (edited by hand)
    plan = plan_run(weekdays, due_at=odd, last_run_at=monday, now=odd + timedelta(minutes=1))
    assert (plan.window_start, plan.window_end) == (monday, odd)
    schedule = Schedule(cron="0 9 * * *", timezone="Europe/Berlin", spec="daily 09:00")
    reset_next_run(schedule, now=datetime(2026, 7, 1, 12, tzinfo=UTC))
    assert schedule.next_run_at == datetime(2026, 7, 2, 7, tzinfo=UTC)


@pytest.mark.parametrize(
    ("policy", "expected"), [("skip", EmptyWindowAction.SKIP), ("notice", EmptyWindowAction.NOTICE)]
)
def test_empty_window_follows_the_schedule_policy(
    factory: sessionmaker[Session], policy: str, expected: EmptyWindowAction
) -> None:
    add_schedule(factory, "hourly", now=START, empty_policy=policy)
    now = START + timedelta(hours=1)
    dispatch_due_digests(factory, RecordingEnqueuer(), now=now)
    job = _only_job(factory)
    assert empty_window_action(factory, job.id, message_count=12) is EmptyWindowAction.SUMMARIZE
    assert empty_window_action(factory, job.id, message_count=0) is expected
    # Without the snapshot (its dispatcher died before writing it) the run still says it.
    with factory() as session, session.begin():
        session.execute(update(Job).values(progress={}))
    assert empty_window_action(factory, job.id, message_count=0) is expected
    record_outcome(factory, job.id, expected, now=now)
    with factory() as session:
        row = session.get(Job, job.id)
        assert row is not None
        assert row.progress["digest"]["outcome"] == f"empty_{policy}"
        assert row.progress["digest"]["empty_policy"] == policy
        assert digest_snapshot(session, row) == row.progress["digest"]


def test_other_jobs_are_always_summarized(factory: sessionmaker[Session]) -> None:
    params = JobParams(source=ExportFileSource(path="/x.json"))
    api = submit_job(factory, RecordingEnqueuer(), params=params, origin="api")
    odd = submit_job(
        factory, RecordingEnqueuer(), params=params, origin="api", idempotency_key="digest:nope"
    )
    gone = submit_job(
        factory,
        RecordingEnqueuer(),
        params=params,
        origin="api",
        idempotency_key="digest:00000000-0000-0000-0000-000000000000",
    )
    for submission in (api, odd, gone):
        action = empty_window_action(factory, submission.job_id, message_count=0)
        assert action is EmptyWindowAction.SUMMARIZE
    missing = uuid.uuid4()
    assert empty_window_action(factory, missing, message_count=0) is EmptyWindowAction.SUMMARIZE
    record_outcome(factory, missing, EmptyWindowAction.SKIP, now=START)  # no row: no error


def test_no_activity_notice_is_a_valid_summary() -> None:
    content = no_activity_content(
        ChannelInfo(channel_id="222222222222222222", channel_name="general", guild_id="1" * 18),
        window_start=START,
        window_end=START + timedelta(days=1),
        format=SummaryFormat.BRIEF,
    )
    assert content.overview.startswith("No activity in #general between 2026-06-01 10:00")
    assert content.coverage.messages_total == 0 and content.cited_ids() == set()
