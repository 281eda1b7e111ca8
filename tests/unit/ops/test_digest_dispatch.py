"""The dispatcher and the empty-window policy on the embedded SQLite database."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, cast

import pytest
from prometheus_client import REGISTRY
from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker
from structlog.testing import capture_logs

from schema.models.jobs import Job
from schema.models.schedules import Schedule, ScheduleRun
from shared.db.engine import make_engine, make_sessionmaker
from shared.db.migrate import upgrade
from shared.digests.dispatch import (
    MAX_PERIOD_WINDOW,
    ORPHAN_GRACE,
    _destinations,
    _run_params,
    digest_idempotency_key,
    dispatch_due_digests,
    plan_run,
)
from shared.digests.empty import (
    EmptyWindowAction,
    digest_snapshot,
    empty_window_action,
    no_activity_content,
    record_outcome,
)
from shared.digests.spec import next_run, parse_schedule, previous_run
from shared.domain.messages import ChannelInfo
from shared.errors import NotFoundError
from shared.jobs import (
    AudienceChannel,
    ChannelTarget,
    DiscordServerSource,
    ExportFileSource,
    JobParams,
    parse_params,
)
from shared.services.core import OPERATOR, Actor, Core
from shared.services.jobs import submit_job
from shared.services.schedules import set_schedule_enabled
from shared.summarize.content import SummaryFormat
from tests.fakes.enqueuer import RecordingEnqueuer
from tests.support.discord_tenants import DiscordTenants
from tests.unit.ops.helpers import add_schedule, digest_core
from workers.tasks import maintenance

START = datetime(2026, 6, 1, 10, 0, 5, tzinfo=UTC)


@pytest.fixture
def factory(tmp_path: Path) -> Iterator[sessionmaker[Session]]:
    url = f"sqlite:///{tmp_path / 'digests.db'}"
    upgrade(url)
    engine = make_engine(url)
    yield make_sessionmaker(engine)
    engine.dispose()


@dataclass
class Digests:
    """A tenant guild with a channel on the fake Discord, and the dispatcher's core."""

    factory: sessionmaker[Session]
    tenants: DiscordTenants
    guild: str
    channel: str

    def core(self, enqueuer: RecordingEnqueuer | None = None) -> Core:
        return digest_core(self.factory, self.tenants.directory, enqueuer=enqueuer)

    def add(self, text: str, **values: Any) -> uuid.UUID:
        values.setdefault("channel_id", self.channel)
        return add_schedule(self.factory, text, guild=self.guild, **values)


@pytest.fixture
def digests(factory: sessionmaker[Session], discord_tenants: DiscordTenants) -> Digests:
    guild, channel = discord_tenants.tenant()
    return Digests(factory, discord_tenants, guild, channel)


def _only_job(factory: sessionmaker[Session]) -> Job:
    with factory() as session:
        (job,) = session.scalars(select(Job)).all()
        return job


def test_sqlite_dispatch_creates_one_run_per_window(digests: Digests) -> None:
    digests.add("hourly", now=START, format="technical", language="de")
    enqueuer = RecordingEnqueuer()
    due = START + timedelta(hours=1)
    first = dispatch_due_digests(digests.core(enqueuer), now=due)
    assert (first.claimed, first.runs_created, first.jobs_submitted) == (1, 1, 1)
    again = dispatch_due_digests(digests.core(enqueuer), now=due)
    assert (again.claimed, again.runs_created) == (0, 0)
    job = _only_job(digests.factory)
    params = parse_params(job.params)
    assert params.format is SummaryFormat.TECHNICAL and params.language == "de"
    assert job.requested_by == "333333333333333333"
    assert len(enqueuer.sent) == 1


def test_a_reset_schedule_does_not_repeat_a_window(digests: Digests) -> None:
    factory = digests.factory
    schedule_id = digests.add("hourly", now=START)
    enqueuer = RecordingEnqueuer()
    due = START + timedelta(hours=1)
    dispatch_due_digests(digests.core(enqueuer), now=due)
    # Someone puts the schedule back to the firing that already ran (a replayed tick).
    with factory() as session, session.begin():
        session.execute(
            update(Schedule)
            .where(Schedule.id == schedule_id)
            .values(next_run_at=datetime(2026, 6, 1, 11, tzinfo=UTC), last_run_at=None)
        )
    replay = dispatch_due_digests(digests.core(enqueuer), now=due)
    assert (replay.claimed, replay.runs_created) == (1, 0)
    with factory() as session:
        assert len(session.scalars(select(ScheduleRun)).all()) == 1
        schedule = session.get(Schedule, schedule_id)
        assert schedule is not None and schedule.next_run_at is not None
        assert schedule.next_run_at > due  # still advanced


def test_destinations_map_to_targets_or_wait_on_the_job(digests: Digests) -> None:
    factory = digests.factory
    elsewhere = digests.tenants.channel(digests.guild, "digests")
    digests.add("hourly", now=START, destination={"kind": "channel", "channel_id": elsewhere})
    dispatch_due_digests(digests.core(), now=START + timedelta(hours=1))
    job = _only_job(factory)
    assert parse_params(job.params).destinations == [ChannelTarget(channel_id=elsewhere)]
    assert job.progress["digest"]["destination_pending"] is False
    with factory() as session, session.begin():
        session.execute(update(Schedule).values(destination={"kind": "pigeon", "loft": "north"}))
    dispatch_due_digests(digests.core(), now=START + timedelta(hours=2))
    with factory() as session:
        later = session.scalars(select(Job).order_by(Job.created_at.desc())).first()
    assert later is not None and parse_params(later.params).destinations == []
    digest = later.progress["digest"]
    assert digest["destination"] == {"kind": "pigeon", "loft": "north"}
    assert digest["destination_pending"] is True


def test_schedules_that_cross_the_guild_boundary_are_paused_without_a_job(
    digests: Digests,
) -> None:
    other_guild, other_channel = digests.tenants.tenant()
    reads_other = digests.add("hourly", now=START, channel_id=other_channel)
    posts_other = digests.add(
        "hourly", now=START, destination={"kind": "channel", "channel_id": other_channel}
    )
    local_only = digests.add(
        "hourly", now=START, destination={"kind": "file", "path": "/tmp/digest.md"}
    )
    enqueuer = RecordingEnqueuer()
    history_before = len(digests.tenants.history_requests())
    result = dispatch_due_digests(digests.core(enqueuer), now=START + timedelta(hours=1))
    assert result.jobs_submitted == 0 and enqueuer.sent == []
    with digests.factory() as session:
        assert session.scalars(select(Job)).all() == []
        for schedule_id in (reads_other, posts_other, local_only):
            schedule = session.get(Schedule, schedule_id)
            assert schedule is not None and (schedule.enabled, schedule.next_run_at) == (
                False,
                None,
            )
    assert len(digests.tenants.history_requests()) == history_before
    assert other_guild != digests.guild


def test_unusable_schedules_are_paused_not_retried_forever(digests: Digests) -> None:
    factory = digests.factory
    broken_cron = digests.add("hourly", now=START)
    bad_channel = digests.add("hourly", now=START, channel_id="not-a-snowflake")
    with factory() as session, session.begin():
        session.execute(update(Schedule).where(Schedule.id == broken_cron).values(cron="0 9 *"))
    result = dispatch_due_digests(digests.core(RecordingEnqueuer()), now=START + timedelta(hours=1))
    assert (result.disabled, result.runs_created, result.jobs_submitted) == (1, 1, 0)
    with factory() as session:
        for schedule_id in (broken_cron, bad_channel):
            schedule = session.get(Schedule, schedule_id)
            assert schedule is not None
            assert (schedule.enabled, schedule.next_run_at) == (False, None)
        assert session.scalars(select(ScheduleRun)).all() == []  # the unusable run is dropped


def test_a_scoped_schedule_runs_a_digest_for_the_readers_of_its_channel(
    digests: Digests,
) -> None:
    category, inside = digests.tenants.category(digests.guild, "Team")
    server = digests.add("hourly", now=START, scope="server", format="brief")
    of_category = digests.add("hourly", now=START, scope="category", scope_category_id=category)
    listed = digests.add("hourly", now=START, scope="channels", scope_channel_ids=inside)
    due = START + timedelta(hours=1)
    result = dispatch_due_digests(digests.core(RecordingEnqueuer()), now=due)
    assert result.jobs_submitted == 3
    with digests.factory() as session:
        runs = {r.schedule_id: r for r in session.scalars(select(ScheduleRun))}
        jobs = {j.id: j for j in session.scalars(select(Job))}
    sources: dict[uuid.UUID, DiscordServerSource] = {}
    for schedule_id in (server, of_category, listed):
        run = runs[schedule_id]
        assert run.job_id is not None
        job = jobs[run.job_id]
        params = parse_params(job.params)
        source = params.source
        assert isinstance(source, DiscordServerSource)
        # The run's window, read by whoever can see the channel it is posted in.
        assert (source.after, source.before) == (run.window_start, run.window_end)
        assert source.audience == [AudienceChannel(channel_id=digests.channel)]
        assert params.destinations == [ChannelTarget(channel_id=digests.channel)]
        assert job.guild_id == digests.guild and job.channel_id is None
        assert job.progress["digest"]["schedule_id"] == str(schedule_id)
        sources[schedule_id] = source
    assert (sources[server].category_id, sources[server].channel_ids) == (None, [])
    assert parse_params(jobs[runs[server].job_id].params).format is SummaryFormat.BRIEF
    assert sources[of_category].category_id == category
    assert sources[listed].channel_ids == inside


def test_a_scoped_schedule_that_cannot_run_is_paused(digests: Digests) -> None:
    _, foreign = digests.tenants.tenant()
    crossing = digests.add("hourly", now=START, scope="channels", scope_channel_ids=[foreign])
    to_webhook = digests.add(
        "hourly",
        now=START,
        scope="server",
        destination={"kind": "webhook", "endpoint_id": str(uuid.uuid4())},
    )
    result = dispatch_due_digests(digests.core(RecordingEnqueuer()), now=START + timedelta(hours=1))
    assert result.jobs_submitted == 0
    with digests.factory() as session:
        assert session.scalars(select(Job)).all() == []
        for schedule_id in (crossing, to_webhook):
            schedule = session.get(Schedule, schedule_id)
            assert schedule is not None
            assert (schedule.enabled, schedule.next_run_at) == (False, None)


def test_plan_run_first_window() -> None:
    weekdays = parse_schedule("every weekday 17:30")
    monday = datetime(2026, 3, 9, 17, 30, tzinfo=UTC)
    plan = plan_run(weekdays, due_at=monday, last_run_at=None, now=monday + timedelta(seconds=9))
    assert plan.window_start == datetime(2026, 3, 6, 17, 30, tzinfo=UTC)  # since Friday
    assert (plan.window_end, plan.missed) == (monday, False)
    assert plan.next_run_at == datetime(2026, 3, 10, 17, 30, tzinfo=UTC)
    odd = datetime(2026, 3, 9, 17, 31, tzinfo=UTC)  # not a firing time (edited by hand)
    plan = plan_run(weekdays, due_at=odd, last_run_at=monday, now=odd + timedelta(minutes=1))
    assert (plan.window_start, plan.window_end) == (monday, odd)


@pytest.mark.parametrize(
    ("policy", "expected"), [("skip", EmptyWindowAction.SKIP), ("notice", EmptyWindowAction.NOTICE)]
)
def test_empty_window_follows_the_schedule_policy(
    digests: Digests, policy: str, expected: EmptyWindowAction
) -> None:
    factory = digests.factory
    digests.add("hourly", now=START, empty_policy=policy)
    now = START + timedelta(hours=1)
    dispatch_due_digests(digests.core(RecordingEnqueuer()), now=now)
    job = _only_job(digests.factory)
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


def test_other_jobs_are_always_summarized(digests: Digests) -> None:
    factory = digests.factory
    params = JobParams(source=ExportFileSource(path="/x.json"))
    core = digests.core()
    api = submit_job(core, OPERATOR, params)
    odd = submit_job(core, OPERATOR, params, idempotency_key="digest:nope")
    gone = submit_job(
        core, OPERATOR, params, idempotency_key="digest:00000000-0000-0000-0000-000000000000"
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


def _orphan_run(digests: Digests, schedule_id: uuid.UUID, due: datetime) -> uuid.UUID:
    """A run as a dispatcher that died right after committing its claim leaves it: no job."""
    with digests.factory() as session, session.begin():
        schedule = session.get(Schedule, schedule_id)
        assert schedule is not None and schedule.next_run_at is not None
        plan = plan_run(
            parse_schedule(schedule.spec),
            due_at=schedule.next_run_at,
            last_run_at=schedule.last_run_at,
            now=due,
        )
        run = ScheduleRun(
            id=uuid.uuid4(),
            schedule_id=schedule_id,
            window_start=plan.window_start,
            window_end=plan.window_end,
            created_at=due,
        )
        session.add(run)
        schedule.next_run_at = plan.next_run_at
        schedule.last_run_at = plan.window_end
    return run.id


def test_a_paused_schedule_posts_nothing_more_not_even_a_run_left_without_its_job(
    digests: Digests,
) -> None:
    schedule_id = digests.add("hourly", now=START)
    due = START + timedelta(hours=1, seconds=5)
    orphan = _orphan_run(digests, schedule_id, due)
    with digests.factory() as session:
        run = session.get(ScheduleRun, orphan)
        assert run is not None
        window_start = run.window_start
    actor = Actor(origin="bot", guild_id=digests.guild, requested_by="42")
    set_schedule_enabled(digests.core(), actor, schedule_id, enabled=False)
    enqueuer = RecordingEnqueuer()
    later = dispatch_due_digests(
        digests.core(enqueuer), now=due + ORPHAN_GRACE + timedelta(seconds=1)
    )
    assert (later.orphans_resubmitted, enqueuer.sent) == (0, [])
    with digests.factory() as session:
        assert session.scalars(select(Job)).all() == []
        # The window it did not send is not lost: resumed, the schedule covers it again.
        assert session.scalars(select(ScheduleRun)).all() == []
        schedule = session.get(Schedule, schedule_id)
        assert schedule is not None and schedule.last_run_at == window_start


@pytest.mark.parametrize(
    ("text", "previous", "firing"),
    [
        # Quarterly: each digest covers its quarter, not only the quarter's last 31 days.
        (
            "cron 0 9 1 */3 *",
            datetime(2026, 4, 1, 9, tzinfo=UTC),
            datetime(2026, 7, 1, 9, tzinfo=UTC),
        ),
        # Yearly, on the first working day's morning.
        (
            "cron 0 8 2 1 *",
            datetime(2026, 1, 2, 8, tzinfo=UTC),
            datetime(2027, 1, 2, 8, tzinfo=UTC),
        ),
        # The 31st: two months apart from January to March.
        (
            "cron 0 9 31 * *",
            datetime(2026, 1, 31, 9, tzinfo=UTC),
            datetime(2026, 3, 31, 9, tzinfo=UTC),
        ),
    ],
)
def test_a_schedule_firing_less_often_than_monthly_covers_its_whole_period(
    text: str, previous: datetime, firing: datetime
) -> None:
    spec = parse_schedule(text)
    now = firing + timedelta(seconds=20)
    plan = plan_run(spec, due_at=firing, last_run_at=previous, now=now)
    assert (plan.window_start, plan.window_end) == (previous, firing)
    first = plan_run(spec, due_at=firing, last_run_at=None, now=now)
    assert (first.window_start, first.window_end) == (previous, firing)
    # An outage longer than the period still makes one run, of one period.
    later = next_run(spec, firing)
    caught_up = plan_run(spec, due_at=firing, last_run_at=previous, now=later + timedelta(days=1))
    assert caught_up.window_end == later
    assert caught_up.window_start == previous_run(spec, later)


def test_a_window_never_reaches_back_more_than_a_year() -> None:
    """A leap-day digest fires every 4 (or, over 2100, 8) years: it covers the last year, not
    every message of the server since the last leap day."""
    spec = parse_schedule("cron 0 9 29 2 *")
    previous = datetime(2096, 2, 29, 9, tzinfo=UTC)
    firing = datetime(2104, 2, 29, 9, tzinfo=UTC)
    now = firing + timedelta(seconds=20)
    for last_run_at in (previous, None):
        plan = plan_run(spec, due_at=firing, last_run_at=last_run_at, now=now)
        assert plan.window_end == firing
        assert plan.window_start == firing - MAX_PERIOD_WINDOW


def test_a_caught_up_run_logs_when_it_was_due_and_what_it_covers(digests: Digests) -> None:
    digests.add("hourly", now=START)
    core = digests.core(RecordingEnqueuer())
    dispatch_due_digests(core, now=START + timedelta(hours=1))  # the 11:00 run
    later = START + timedelta(hours=6, minutes=20)  # beat was down from 12:00 to 16:00
    with capture_logs() as logs:
        dispatch_due_digests(core, now=later)
    (caught_up,) = [entry for entry in logs if entry["event"] == "digest.caught_up"]
    assert caught_up["due_at"] == datetime(2026, 6, 1, 12, tzinfo=UTC).isoformat()
    assert caught_up["window_start"] == datetime(2026, 6, 1, 11, tzinfo=UTC).isoformat()
    assert caught_up["window_end"] == datetime(2026, 6, 1, 16, tzinfo=UTC).isoformat()


def test_a_schedule_that_missed_its_first_firings_catches_all_of_them_up() -> None:
    """Created at 10:00, due hourly from 11:00, beat down until 15:20: the one catch-up run
    covers 10:00-15:00, all four missed hours and this one, not only 14:00-15:00."""
    hourly = parse_schedule("hourly")
    first_due = datetime(2026, 6, 1, 11, tzinfo=UTC)
    plan = plan_run(
        hourly,
        due_at=first_due,
        last_run_at=None,
        now=datetime(2026, 6, 1, 15, 20, tzinfo=UTC),
    )
    assert (plan.window_start, plan.window_end) == (
        datetime(2026, 6, 1, 10, tzinfo=UTC),
        datetime(2026, 6, 1, 15, tzinfo=UTC),
    )
    assert plan.missed
    # Nothing missed: the period before the firing, as before.
    on_time = plan_run(hourly, due_at=first_due, last_run_at=None, now=first_due)
    assert (on_time.window_start, on_time.window_end) == (
        datetime(2026, 6, 1, 10, tzinfo=UTC),
        first_due,
    )


def test_every_schedule_the_dispatcher_pauses_is_counted(digests: Digests) -> None:
    """docs/operations.md: ``summary_digest_runs_total{outcome="paused"}`` counts schedules
    paused because they cannot run: a channel gone from the server or a broken stored scope
    pauses as surely as a broken cron, and is counted as surely."""
    _, foreign = digests.tenants.tenant()
    digests.add("hourly", now=START, channel_id=foreign)  # refused by the guild boundary
    digests.add("hourly", now=START, channel_id="not-a-snowflake")  # unusable stored id
    broken_cron = digests.add("hourly", now=START)
    with digests.factory() as session, session.begin():
        session.execute(update(Schedule).where(Schedule.id == broken_cron).values(cron="0 9 *"))

    class Services:
        def core(self) -> Core:
            return digests.core(RecordingEnqueuer())

        def clock(self) -> datetime:
            return START + timedelta(hours=1)

    def paused() -> float:
        value = REGISTRY.get_sample_value("summary_digest_runs_total", {"outcome": "paused"})
        return value or 0.0

    before = paused()
    maintenance.dispatch_digests(cast(Any, Services()))
    assert paused() - before == 3
    with digests.factory() as session:
        assert not any(s.enabled for s in session.scalars(select(Schedule)))


def test_a_paused_schedule_keeps_the_window_of_a_job_already_submitted(digests: Digests) -> None:
    """The dispatcher died after submitting the run's job but before linking it: that job
    runs (the stale-job sweep publishes it), so pausing links it rather than handing its
    window back to be summarized a second time."""
    schedule_id = digests.add("hourly", now=START)
    due = START + timedelta(hours=1, seconds=5)
    orphan = _orphan_run(digests, schedule_id, due)
    with digests.factory() as session:
        run = session.get(ScheduleRun, orphan)
        schedule = session.get(Schedule, schedule_id)
        assert run is not None and schedule is not None
        window_end = run.window_end
        # The job the dispatcher submits for this run.
        params = _run_params(schedule, run, _destinations(schedule.destination)[0])
    actor = Actor(origin="digest", guild_id=digests.guild, requested_by="333333333333333333")
    job = submit_job(digests.core(), actor, params, idempotency_key=digest_idempotency_key(orphan))
    pauser = Actor(origin="bot", guild_id=digests.guild, requested_by="42")
    set_schedule_enabled(digests.core(), pauser, schedule_id, enabled=False)
    dispatch_due_digests(digests.core(), now=due + ORPHAN_GRACE + timedelta(seconds=1))
    with digests.factory() as session:
        linked = session.get(ScheduleRun, orphan)
        assert linked is not None and linked.job_id == job.job_id
        schedule = session.get(Schedule, schedule_id)
        assert schedule is not None and schedule.last_run_at == window_end


def test_resuming_a_schedule_that_cannot_run_says_why_instead_of_pausing_again(
    digests: Digests,
) -> None:
    """The dispatcher paused it (its channel is not in the server): resuming it answered
    "resumed" and the next tick paused it again, without a word to the admin."""
    _, foreign = digests.tenants.tenant()
    crossing = digests.add("hourly", now=START, channel_id=foreign)
    fine = digests.add("hourly", now=START)
    actor = Actor(origin="bot", guild_id=digests.guild, requested_by="42")
    set_schedule_enabled(digests.core(), actor, fine, enabled=False)
    dispatch_due_digests(digests.core(RecordingEnqueuer()), now=START + timedelta(hours=1))
    with pytest.raises(NotFoundError, match=f"channel {foreign} is not in this server"):
        set_schedule_enabled(digests.core(), actor, crossing, enabled=True)
    with digests.factory() as session:
        schedule = session.get(Schedule, crossing)
        assert schedule is not None and (schedule.enabled, schedule.next_run_at) == (False, None)
    assert set_schedule_enabled(digests.core(), actor, fine, enabled=True).enabled


def test_a_run_left_without_its_job_through_a_long_outage_is_caught_up_not_lost(
    digests: Digests,
) -> None:
    """The dispatcher died between committing the 11:00 run and submitting its job, and the
    service stayed down for a day: too old to resubmit, that run's window must still be
    summarized, by the one catch-up run, rather than fall between two runs."""
    schedule_id = digests.add("hourly", now=START)
    due = START + timedelta(hours=1)
    orphan = _orphan_run(digests, schedule_id, due)
    back = START + timedelta(days=1, minutes=20)
    result = dispatch_due_digests(digests.core(RecordingEnqueuer()), now=back)
    assert (result.runs_created, result.jobs_submitted, result.orphans_resubmitted) == (1, 1, 0)
    with digests.factory() as session:
        runs = session.scalars(select(ScheduleRun)).all()
        assert orphan not in {r.id for r in runs}
        (run,) = runs
        assert (run.window_start, run.window_end) == (
            datetime(2026, 6, 1, 10, tzinfo=UTC),
            datetime(2026, 6, 2, 10, tzinfo=UTC),
        )
