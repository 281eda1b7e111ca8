"""The fetch stage reading a Discord channel through the adapter, against the fake Discord.

Embedded mode (SQLite, in-process worker) keeps this about the fetch stage itself; the bot's
end-to-end test covers the same path on PostgreSQL and Redis with worker processes.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from schema.models.jobs import DeadLetter, Job, Summary
from shared.db.migrate import upgrade
from shared.discord.config import DiscordSettings
from shared.errors import NotFoundError
from shared.jobs import FETCH, DiscordChannelSource, JobParams
from shared.pipeline.services import Services
from shared.services.core import Actor
from shared.services.jobs import submit_job
from shared.services.replay import ReplaySelection, replay
from shared.settings import load_settings
from shared.summarize.content import SummaryContent
from tests.fakes.discord_limits import FakeConfig, Fault, RouteLimit
from tests.fakes.discord_server import FakeDiscordServer, World, seed_basic
from tests.fakes.discord_state import DEFAULT_BOT_PERMISSIONS, VIEW_CHANNEL
from tests.support.workers import embedded_worker

START = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)


READ = "GET /channels/{channel_id}/messages"


@pytest.fixture(scope="module")
def discord() -> Iterator[tuple[FakeDiscordServer, World]]:
    config = FakeConfig()
    # Discord's shapes with a roomier history bucket, so a 5,000-message window takes about a
    # second (the global limit, 50 per second, binds instead).
    config.limits[READ] = RouteLimit("messages-read", 50, 1.0)
    server = FakeDiscordServer(config=config).start()
    world = seed_basic(server.fake)
    people = [world.alice, world.bob]
    server.fake.add_history(
        world.general, people, 250, start_ms=int(START.timestamp() * 1000), step_ms=60_000
    )
    yield server, world
    server.stop()


@pytest.fixture(scope="module")
def services(
    discord: tuple[FakeDiscordServer, World], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Services]:
    server, world = discord
    settings = load_settings(
        data_dir=tmp_path_factory.mktemp("dfetch"),
        discord=DiscordSettings(token=world.token, api_base=server.api_base),
        redis_url=None,
        database_url=None,
    )
    upgrade(settings.effective_database_url)
    with embedded_worker(settings) as (_, built):
        assert built.discord is not None
        yield built


def _run(services: Services, source: DiscordChannelSource) -> Job:
    actor = Actor(origin="test", guild_id=source.guild_id)
    submission = submit_job(services.core(), actor, JobParams(source=source))
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        with services.session_factory() as session:
            job = session.get(Job, submission.job_id)
            assert job is not None
            if job.status in ("completed", "failed"):
                return job
        time.sleep(0.05)
    raise AssertionError("job did not finish")


def _summary(services: Services, job_id: uuid.UUID) -> SummaryContent:
    with services.session_factory() as session:
        row = session.query(Summary).filter(Summary.job_id == job_id).one()
        return SummaryContent.model_validate(row.content)


def test_time_window_reads_exactly_the_window(
    services: Services, discord: tuple[FakeDiscordServer, World]
) -> None:
    _, world = discord
    source = DiscordChannelSource(
        guild_id=str(world.guild.id),
        channel_id=str(world.general.id),
        after=START + timedelta(minutes=100),
        before=START + timedelta(minutes=160),
    )
    job = _run(services, source)
    assert job.status == "completed", job.error
    assert job.message_count == 60
    content = _summary(services, job.id)
    cov = content.coverage
    assert cov.channel_name == "release-eng" and cov.guild_id == str(world.guild.id)
    assert cov.start == START + timedelta(minutes=100)
    assert cov.end == START + timedelta(minutes=159)
    assert content.citations
    for cite in content.citations.values():
        assert cite.jump_url.startswith(
            f"https://discord.com/channels/{world.guild.id}/{world.general.id}/"
        )


def test_count_window_takes_the_latest_messages(
    services: Services, discord: tuple[FakeDiscordServer, World]
) -> None:
    _, world = discord
    job = _run(
        services,
        DiscordChannelSource(
            guild_id=str(world.guild.id), channel_id=str(world.general.id), limit=30
        ),
    )
    assert job.status == "completed", job.error
    assert job.message_count == 30
    assert _summary(services, job.id).coverage.end == START + timedelta(minutes=249)


def test_from_a_message_on(services: Services, discord: tuple[FakeDiscordServer, World]) -> None:
    _, world = discord
    ids = world.general.message_ids
    # "Summarize from here" on the tenth message from the end: after is exclusive.
    job = _run(
        services,
        DiscordChannelSource(
            guild_id=str(world.guild.id),
            channel_id=str(world.general.id),
            after_message_id=str(ids[-10] - 1),
        ),
    )
    assert job.status == "completed", job.error
    assert job.message_count == 10


def test_a_channel_the_bot_cannot_see_is_refused_like_a_missing_one(
    services: Services, discord: tuple[FakeDiscordServer, World]
) -> None:
    _, world = discord
    with pytest.raises(NotFoundError) as refused:
        _run(
            services,
            DiscordChannelSource(
                guild_id=str(world.guild.id), channel_id=str(world.hidden.id), limit=10
            ),
        )
    assert refused.value.user_message == f"no channel {world.hidden.id} in this server"


def _foreign_channel(server: FakeDiscordServer, world: World) -> str:
    """A readable channel, with history, of another guild the same bot is in."""
    fake = server.fake
    with fake.lock:
        other = fake.add_guild("Elsewhere", owner=world.bob, everyone_permissions=VIEW_CHANNEL)
        role = fake.add_role(other, "bot", DEFAULT_BOT_PERMISSIONS)
        fake.add_member(other, world.bot, roles=(role,))
        channel = fake.add_channel(other, "secrets")
        fake.add_history(
            channel, [world.bob], 5, start_ms=int(START.timestamp() * 1000), step_ms=60_000
        )
    return str(channel.id)


def _forge(services: Services, guild: str, channel: str) -> uuid.UUID:
    """A job row written straight into the database: guild A's, for a channel of guild B."""
    params = JobParams(source=DiscordChannelSource(guild_id=guild, channel_id=channel, limit=5))
    with services.session_factory() as session, session.begin():
        job = Job(
            origin="api",
            status="queued",
            guild_id=guild,
            channel_id=channel,
            params=params.model_dump(mode="json"),
            progress={},
        )
        session.add(job)
    return job.id


def _wait_ended(services: Services, job_id: uuid.UUID) -> Job:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        with services.session_factory() as session:
            job = session.get(Job, job_id)
            assert job is not None
            if job.status in ("completed", "failed"):
                return job
        time.sleep(0.05)
    raise AssertionError("job did not finish")


def _history_of(server: FakeDiscordServer, channel: str) -> list[str]:
    return [
        e[5] for e in server.fake.limits.events if e[1].endswith("/messages") and e[5] == channel
    ]


def test_fetch_refuses_a_forged_cross_guild_row_without_reading_history(
    services: Services, discord: tuple[FakeDiscordServer, World]
) -> None:
    server, world = discord
    foreign = _foreign_channel(server, world)
    job_id = _forge(services, str(world.guild.id), foreign)
    services.enqueuer.enqueue(FETCH, str(job_id))
    job = _wait_ended(services, job_id)
    assert (job.status, job.error) == ("failed", "channel is not in this server")
    assert job.guild_id == str(world.guild.id)  # never rewritten
    assert _history_of(server, foreign) == []


def test_replay_of_a_forged_row_is_refused_by_the_worker_again(
    services: Services, discord: tuple[FakeDiscordServer, World]
) -> None:
    server, world = discord
    foreign = _foreign_channel(server, world)
    job_id = _forge(services, str(world.guild.id), foreign)
    with services.session_factory() as session, session.begin():
        session.add(
            DeadLetter(
                task_id=str(uuid.uuid4()),
                task_name=FETCH,
                job_id=job_id,
                args=[str(job_id)],
                error="boom",
            )
        )
        job = session.get(Job, job_id)
        assert job is not None
        job.status = "failed"
    report = replay(services.core(), ReplaySelection(all_dead_letters=True))
    assert report.dead_letters == 1
    job = _wait_ended(services, job_id)
    assert (job.status, job.error) == ("failed", "channel is not in this server")
    assert _history_of(server, foreign) == []


@pytest.fixture
def guild_route(discord: tuple[FakeDiscordServer, World]) -> Iterator[FakeConfig]:
    """The fake's config, with the guild route restored afterwards."""
    server, _ = discord
    yield server.fake.config
    server.fake.config.guild_route = "on"


@pytest.mark.parametrize("mode", ["off", "forbidden"])
def test_a_job_completes_without_the_guild_route(
    services: Services,
    discord: tuple[FakeDiscordServer, World],
    guild_route: FakeConfig,
    mode: str,
) -> None:
    server, world = discord
    fake = server.fake
    # A guild of its own: the worker remembers guild names, and an earlier test's job
    # looked up the seeded guild's.
    with fake.lock:
        guild = fake.add_guild(
            f"Quiet {mode}", owner=world.alice, everyone_permissions=VIEW_CHANNEL
        )
        role = fake.add_role(guild, "bot", DEFAULT_BOT_PERMISSIONS)
        fake.add_member(guild, world.bot, roles=(role,))
        channel = fake.add_channel(guild, "release-eng")
        fake.add_history(
            channel,
            [world.alice, world.bob],
            30,
            start_ms=int(START.timestamp() * 1000),
            step_ms=60_000,
        )
    guild_route.guild_route = mode  # type: ignore[assignment]
    fake.limits.events.clear()
    job = _run(
        services,
        DiscordChannelSource(guild_id=str(guild.id), channel_id=str(channel.id), limit=20),
    )
    assert job.status == "completed", job.error
    assert job.message_count == 20
    guild_calls = [e[2] for e in fake.limits.events if e[1] == "GET /guilds/{guild_id}"]
    assert guild_calls == [404 if mode == "off" else 403]
    content = _summary(services, job.id)
    assert content.coverage.guild_id == str(guild.id)
    assert content.coverage.channel_name == "release-eng"
    for cite in content.citations.values():
        assert cite.jump_url.startswith(f"https://discord.com/channels/{guild.id}/")


def test_latest_5000_messages_in_one_pass(
    services: Services, discord: tuple[FakeDiscordServer, World]
) -> None:
    server, world = discord
    fake = server.fake
    busy = fake.add_channel(world.guild, "busy")
    start = int(START.timestamp() * 1000)
    fake.add_history(busy, [world.alice, world.bob], 6000, start_ms=start, step_ms=1000)
    fake.limits.events.clear()
    job = _run(
        services,
        DiscordChannelSource(guild_id=str(world.guild.id), channel_id=str(busy.id), limit=5000),
    )
    assert job.status == "completed", job.error
    assert job.message_count == 5000
    history = [e[2] for e in fake.limits.events if e[1] == READ and e[5] == str(busy.id)]
    assert history == [200] * 50  # at most 51; the old counting pass made 100
    coverage = _summary(services, job.id).coverage
    assert coverage.start == START + timedelta(seconds=1000)
    assert coverage.end == START + timedelta(seconds=5999)


def test_global_429s_while_fetching_never_fail_the_job(
    services: Services, discord: tuple[FakeDiscordServer, World]
) -> None:
    server, world = discord
    server.fake.limits.events.clear()
    server.fake.inject(Fault("global429", route=READ, times=3, retry_after=0.3))
    job = _run(
        services,
        DiscordChannelSource(
            guild_id=str(world.guild.id), channel_id=str(world.general.id), limit=250
        ),
    )
    assert job.status == "completed", job.error
    assert job.message_count == 250
    scopes = [e[3] for e in server.fake.limits.events if e[1] == READ and e[2] == 429]
    assert scopes == ["global", "global", "global"]
