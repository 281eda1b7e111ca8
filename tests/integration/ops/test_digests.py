"""Digest dispatch on PostgreSQL: two beats, replayed ticks, catch-up, DST, empty windows."""

from __future__ import annotations

import itertools
import multiprocessing
import uuid
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from schema.models.jobs import Job
from schema.models.schedules import Schedule, ScheduleRun
from shared.db.engine import make_engine, make_sessionmaker
from shared.digests.dispatch import (
    ORPHAN_GRACE,
    digest_idempotency_key,
    dispatch_due_digests,
)
from shared.digests.spec import next_run, parse_schedule
from shared.jobs import FETCH, parse_params
from shared.tenancy import ChannelDirectory
from tests.fakes.enqueuer import RecordingEnqueuer
from tests.support.discord_tenants import DiscordTenants, open_directory
from tests.unit.ops.helpers import add_schedule, clear, digest_core

pytestmark = pytest.mark.integration

TICK = timedelta(seconds=30)


@pytest.fixture(autouse=True)
def _empty(factory: sessionmaker[Session]) -> Iterator[None]:
    clear(factory)
    yield
    clear(factory)


@pytest.fixture
def tenant(discord_tenants: DiscordTenants) -> tuple[str, str]:
    """The guild (and a channel of it) every schedule of a test summarizes and posts to."""
    return discord_tenants.tenant()


def _add(factory: sessionmaker[Session], tenant: tuple[str, str], text: str, **kw: Any) -> Any:
    return add_schedule(factory, text, guild=tenant[0], channel_id=tenant[1], **kw)


def _dispatch(
    factory: sessionmaker[Session], directory: ChannelDirectory, enqueuer: Any, now: datetime
) -> Any:
    return dispatch_due_digests(digest_core(factory, directory, enqueuer=enqueuer), now=now)


def _runs(factory: sessionmaker[Session]) -> list[ScheduleRun]:
    with factory() as session:
        return list(session.scalars(select(ScheduleRun).order_by(ScheduleRun.window_end)))


def _expected(text: str, start: datetime, end: datetime) -> list[datetime]:
    spec, fired, moment = parse_schedule(text), [], start
    while (moment := next_run(spec, moment)) <= end:
        fired.append(moment)
    return fired


def _beat(
    url: str,
    start: datetime,
    end: datetime,
    replay: bool,
    barrier: Any,
    results: Any,
    discord: tuple[str, str],
) -> None:
    """One beat process: dispatch every tick from ``start`` to ``end``; report what it sent."""
    engine = make_engine(url)
    enqueuer = RecordingEnqueuer()
    error = None
    directory, close = open_directory(*discord)
    try:
        core = digest_core(make_sessionmaker(engine), directory, enqueuer=enqueuer)
        now = start
        while now <= end:
            barrier.wait()
            dispatch_due_digests(core, now=now)
            if replay:
                dispatch_due_digests(core, now=now)
            now += TICK
    except BaseException as exc:  # reported to the test, which fails on it
        error = repr(exc)
        barrier.abort()
    finally:
        close()
        engine.dispose()
    results.put((error, list(enqueuer.sent)))


def test_two_beats_for_an_hour_create_each_run_once(
    ops_db: str,
    factory: sessionmaker[Session],
    discord_tenants: DiscordTenants,
    tenant: tuple[str, str],
) -> None:
    start = datetime(2026, 3, 2, 8, 0, 10, tzinfo=UTC)
    end = start + timedelta(hours=1)
    texts = [
        "cron */5 * * * *",
        "cron */10 * * * *",
        "hourly",
        "hourly :30",
        "cron 7,37 * * * *",
        "daily 09:15 Europe/Berlin",  # 08:15 UTC in winter: inside the hour
        "every weekday 08:40",
        "weekly tue 08:00",  # not inside the hour (Monday)
    ] * 3
    ids = {_add(factory, tenant, text, now=start): text for text in texts}
    # Two beat processes on the same simulated clock, in lockstep tick by tick so that they
    # really race; the second also replays every tick (a late, duplicated beat message).
    spawn = multiprocessing.get_context("spawn")
    barrier = spawn.Barrier(2, timeout=60)
    discord = (discord_tenants.server.api_base, discord_tenants.token)
    results = spawn.Queue()
    beats = [
        spawn.Process(
            target=_beat,
            args=(ops_db, start, end, replay, barrier, results, discord),
        )
        for replay in (False, True)
    ]
    for process in beats:
        process.start()
    outcomes = [results.get(timeout=240) for _ in beats]
    for process in beats:
        process.join(30)
    assert [p.exitcode for p in beats] == [0, 0]
    assert [error for error, _ in outcomes if error] == []
    sent = [call for _, calls in outcomes for call in calls]

    runs = _runs(factory)
    by_schedule: dict[uuid.UUID, list[ScheduleRun]] = {}
    for run in runs:
        by_schedule.setdefault(run.schedule_id, []).append(run)
    for schedule_id, text in ids.items():
        expected = _expected(text, start, end)
        got = by_schedule.get(schedule_id, [])
        assert [r.window_end for r in got] == expected, text
        # Windows tile: each starts where the previous one ended.
        for before, after in itertools.pairwise(got):
            assert after.window_start == before.window_end
    assert len(runs) == sum(len(_expected(t, start, end)) for t in texts) > 60

    with factory() as session:
        jobs = session.scalars(select(Job)).all()
    assert len(jobs) == len(runs)
    assert {r.job_id for r in runs} == {j.id for j in jobs}
    fetches = Counter(args[0] for name, args in sent if name == FETCH)
    assert set(fetches) == {str(j.id) for j in jobs} and set(fetches.values()) == {1}
    for job in jobs:
        run = next(r for r in runs if r.job_id == job.id)
        params = parse_params(job.params)
        assert params.source.kind == "discord_channel"
        assert (params.source.after, params.source.before) == (run.window_start, run.window_end)
        assert job.origin == "digest" and job.idempotency_key == digest_idempotency_key(run.id)
        assert job.progress["digest"]["run_id"] == str(run.id)


def test_missed_ticks_are_caught_up_once(
    factory: sessionmaker[Session], discord_tenants: DiscordTenants, tenant: tuple[str, str]
) -> None:
    start = datetime(2026, 6, 1, 10, 0, 5, tzinfo=UTC)
    schedule_id = _add(factory, tenant, "hourly", now=start)
    enqueuer = RecordingEnqueuer()
    first = _dispatch(factory, discord_tenants.directory, enqueuer, now=start + timedelta(hours=1))
    assert first.runs_created == 1
    # Beat (or every worker) is down for five hours; then one tick comes.
    later = start + timedelta(hours=6, minutes=20)
    caught_up = _dispatch(factory, discord_tenants.directory, enqueuer, now=later)
    assert caught_up.runs_created == 1
    assert (
        _dispatch(factory, discord_tenants.directory, enqueuer, now=later + TICK).runs_created == 0
    )
    runs = _runs(factory)
    assert [(r.window_start, r.window_end) for r in runs] == [
        (datetime(2026, 6, 1, 10, tzinfo=UTC), datetime(2026, 6, 1, 11, tzinfo=UTC)),
        (datetime(2026, 6, 1, 11, tzinfo=UTC), datetime(2026, 6, 1, 16, tzinfo=UTC)),
    ]
    with factory() as session:
        schedule = session.get(Schedule, schedule_id)
        assert schedule is not None
        assert schedule.next_run_at == datetime(2026, 6, 1, 17, tzinfo=UTC)
        assert schedule.last_run_at == datetime(2026, 6, 1, 16, tzinfo=UTC)
    assert len(enqueuer.sent) == 2


def test_a_long_outage_is_one_run_capped_at_the_catch_up_window(
    factory: sessionmaker[Session], discord_tenants: DiscordTenants, tenant: tuple[str, str]
) -> None:
    start = datetime(2026, 1, 1, 0, 0, 5, tzinfo=UTC)
    _add(factory, tenant, "cron */5 * * * *", now=start)
    enqueuer = RecordingEnqueuer()
    _dispatch(factory, discord_tenants.directory, enqueuer, now=start + timedelta(minutes=5))
    now = start + timedelta(days=90, seconds=7)
    assert _dispatch(factory, discord_tenants.directory, enqueuer, now=now).runs_created == 1
    last = _runs(factory)[-1]
    assert last.window_end == datetime(2026, 4, 1, 0, 0, tzinfo=UTC)
    assert last.window_end - last.window_start == timedelta(days=31)


def _simulate(
    factory: sessionmaker[Session],
    tenants: DiscordTenants,
    tenant: tuple[str, str],
    texts: list[str],
    start: datetime,
    end: datetime,
) -> list[list[datetime]]:
    """Tick every minute from ``start`` to ``end``; the firing times of each schedule."""
    clear(factory)
    ids = [_add(factory, tenant, text, now=start) for text in texts]
    enqueuer, now = RecordingEnqueuer(), start
    while now < end:
        _dispatch(factory, tenants.directory, enqueuer, now=now)
        now += 2 * TICK
    fired: dict[uuid.UUID, list[datetime]] = {}
    for run in _runs(factory):
        fired.setdefault(run.schedule_id, []).append(run.window_end)
    return [fired.get(i, []) for i in ids]


def test_dst_changes_fire_at_the_right_local_time(
    factory: sessionmaker[Session], discord_tenants: DiscordTenants, tenant: tuple[str, str]
) -> None:
    texts = ["daily 02:30 Europe/Berlin", "daily 09:00 Europe/Berlin", "hourly Europe/Berlin"]
    gap, nine, hourly = _simulate(
        factory,
        discord_tenants,
        tenant,
        texts,
        datetime(2026, 3, 28, 23, 0, 3, tzinfo=UTC),
        datetime(2026, 3, 29, 9, tzinfo=UTC),
    )
    # 02:30 does not exist on 29 March: it runs when the clocks reach 03:00 CEST.
    assert gap == [datetime(2026, 3, 29, 1, 0, tzinfo=UTC)]
    assert nine == [datetime(2026, 3, 29, 7, 0, tzinfo=UTC)]  # 09:00 CEST
    assert hourly == [datetime(2026, 3, 29, h, tzinfo=UTC) for h in range(9)]
    fall, nine, hourly = _simulate(
        factory,
        discord_tenants,
        tenant,
        texts,
        datetime(2026, 10, 24, 23, 0, 3, tzinfo=UTC),
        datetime(2026, 10, 25, 9, tzinfo=UTC),
    )
    # 02:30 happens twice on 25 October: it runs once, at the first (CEST) one.
    assert fall == [datetime(2026, 10, 25, 0, 30, tzinfo=UTC)]
    assert nine == [datetime(2026, 10, 25, 8, 0, tzinfo=UTC)]  # 09:00 CET
    # The repeated 02:00 local hour fires once: 00:00 UTC (CEST), then 03:00 CET = 02:00 UTC.
    assert hourly == [datetime(2026, 10, 25, h, tzinfo=UTC) for h in (0, 2, 3, 4, 5, 6, 7, 8)]


def test_a_dispatcher_dying_after_the_commit_loses_no_digest(
    factory: sessionmaker[Session], discord_tenants: DiscordTenants, tenant: tuple[str, str]
) -> None:
    start = datetime(2026, 6, 1, 10, 0, 5, tzinfo=UTC)
    _add(factory, tenant, "hourly", now=start)
    broken = RecordingEnqueuer(fail_first=1)  # the broker is down when the job is published
    due = start + timedelta(hours=1)
    result = _dispatch(factory, discord_tenants.directory, broken, now=due)
    assert (result.runs_created, result.jobs_submitted) == (1, 0)
    (run,) = _runs(factory)
    assert run.job_id is None  # the run is the outbox: it waits for its job
    # Within the grace period nothing is resubmitted; after it, the run gets its job.
    assert (
        _dispatch(factory, discord_tenants.directory, broken, now=due + TICK).orphans_resubmitted
        == 0
    )
    retry = _dispatch(factory, discord_tenants.directory, broken, now=due + ORPHAN_GRACE + TICK)
    assert retry.orphans_resubmitted == 1
    with factory() as session:
        jobs = session.scalars(select(Job)).all()
        (run,) = session.scalars(select(ScheduleRun)).all()
    assert len(jobs) == 1 and run.job_id == jobs[0].id
    # The job row was committed before the failed publish; the stale-job sweep enqueues it.
    assert broken.sent == []
    assert jobs[0].progress["digest"]["run_id"] == str(run.id)
