"""Digests of many channels and catch-ups, end to end on the fake Discord's Acme server.

Acme (``tests/fakes/server_world.py``) has 12 message channels, two of them private
(#staff-only, #mods-room, with overwrites), three threads (one in #staff-only) and a forum.
Jobs go through the real services, the real plan → parts → compose pipeline and the deliver
stage, in the embedded mode (SQLite, an in-process worker) against the fake Discord over HTTP.
The confidential markers "Zanzibar" and "Kilimanjaro" live only in the private channels.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select

from schema.models.jobs import Job, Summary
from schema.models.schedules import ScheduleRun, ScheduleScope
from schema.models.tenancy import GuildSettings
from shared.db.migrate import upgrade
from shared.digests.dispatch import dispatch_due_digests
from shared.discord.config import DiscordSettings
from shared.errors import InvalidInputError, NotFoundError
from shared.jobs import (
    AudienceChannel,
    ChannelTarget,
    DirectMessageTarget,
    DiscordChannelSource,
    DiscordServerSource,
    JobParams,
)
from shared.pipeline.plan import part_share
from shared.pipeline.services import Services
from shared.services.core import Actor
from shared.services.digests import catchup_params
from shared.services.jobs import submit_job
from shared.services.members import set_opt_out
from shared.services.schedules import ScheduleRequest, create_schedule
from shared.settings import load_settings
from shared.summarize.content import SummaryContent, SummaryFormat
from tests.fakes.discord_server import FakeDiscordServer
from tests.fakes.server_world import ServerWorld, seed_server
from tests.support.canaries import canaries
from tests.support.digests import MARKERS, make_due, now_of, posted_since, wait_settled
from tests.support.workers import embedded_worker


@pytest.fixture(scope="module")
def acme() -> Iterator[tuple[FakeDiscordServer, ServerWorld]]:
    server = FakeDiscordServer().start()
    world = seed_server(server.fake, messages_per_channel=30)
    yield server, world
    server.stop()


@pytest.fixture(scope="module")
def services(
    acme: tuple[FakeDiscordServer, ServerWorld], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Services]:
    server, world = acme
    settings = load_settings(
        data_dir=tmp_path_factory.mktemp("digests"),
        discord=DiscordSettings(token=world.token, api_base=server.api_base),
        redis_url=None,
        database_url=None,
    )
    upgrade(settings.effective_database_url)
    with embedded_worker(settings) as (_, built):
        yield built


def _digest_params(world: ServerWorld, to: str, **source: Any) -> JobParams:
    channel = str(world.channels[to].id)
    return JobParams(
        source=DiscordServerSource(
            guild_id=str(world.guild.id),
            after=now_of(world) - timedelta(hours=24),
            audience=[AudienceChannel(channel_id=channel)],
            **source,
        ),
        destinations=[ChannelTarget(channel_id=channel)],
    )


def _run(services: Services, world: ServerWorld, params: JobParams) -> Job:
    actor = Actor(origin="api", guild_id=str(world.guild.id))
    submission = submit_job(services.core(), actor, params)
    return wait_settled(services, submission.job_id)


def _summary(services: Services, job_id: uuid.UUID) -> SummaryContent:
    with services.session_factory() as session:
        row = session.query(Summary).filter(Summary.job_id == job_id).one()
        return SummaryContent.model_validate(row.content)


def _cited_channels(content: SummaryContent) -> set[str]:
    return {
        url.split("/")[-2]
        for url in (c.jump_url for c in content.citations.values())
        if url is not None
    }


def test_a_digest_to_general_leaves_the_private_channels_out(
    services: Services, acme: tuple[FakeDiscordServer, ServerWorld]
) -> None:
    server, world = acme
    before = world.general.last_message_id or 0
    job = _run(services, world, _digest_params(world, "general"))
    assert job.status == "completed", job.error
    content = _summary(services, job.id)
    private = {str(world.staff_only.id), str(world.mods_room.id), str(world.staff_thread.id)}
    assert not _cited_channels(content) & private
    assert not {s.channel_id for s in content.channels} & private
    text = content.model_dump_json()
    assert not any(marker in text for marker in MARKERS)
    # What #general's readers see: the posted digest carries nothing private either.
    posted = posted_since(server, world.general.id, before)
    assert "What matters most" in posted and "#dev" in posted
    assert not any(marker in posted for marker in MARKERS)
    assert "staff-only" not in posted and "mods-room" not in posted
    # The person who set it up reads what was left out, and why.
    left_out = {e["name"]: e["reason"] for e in job.progress["plan"]["left_out"]}
    assert set(left_out) == {"staff-only", "mods-room", "Zanzibar evidence"}
    assert "members who can see #general cannot read it" in left_out["staff-only"]
    # The active public channels, the #dev thread and the forum post have sections; the
    # quiet ones are named in one line and were never read.
    names = {s.channel_name for s in content.channels}
    assert {"general", "dev", "random", "help", "4.2 release checklist"} <= names
    assert any(s.parent_name == "ideas" for s in content.channels)
    assert sorted(content.quiet_channels) == ["events", "music"]
    assert content.cited_ids() <= set(content.citations)
    # The job's message limit is for the whole digest, shared by its channels.
    plan = job.progress["plan"]
    share = part_share(None, services.settings.max_messages, len(plan["parts"]))
    assert plan["messages_per_channel"] == share
    with services.session_factory() as session:
        parts = (
            session.query(Job)
            .filter(Job.id.in_([uuid.UUID(p["job_id"]) for p in plan["parts"]]))
            .all()
        )
    assert {part.params["max_messages"] for part in parts} == {share}


def test_the_same_digest_to_the_staff_channel_includes_them(
    services: Services, acme: tuple[FakeDiscordServer, ServerWorld]
) -> None:
    server, world = acme
    before = world.staff_only.last_message_id or 0
    job = _run(services, world, _digest_params(world, "staff-only"))
    assert job.status == "completed", job.error
    content = _summary(services, job.id)
    cited = _cited_channels(content)
    assert str(world.staff_only.id) in cited and str(world.mods_room.id) in cited
    assert "Zanzibar" in content.model_dump_json()
    assert job.progress["plan"]["left_out"] == []
    assert "Zanzibar" in posted_since(server, world.staff_only.id, before)


def test_a_category_digest_covers_only_that_category(
    services: Services, acme: tuple[FakeDiscordServer, ServerWorld]
) -> None:
    _, world = acme
    params = _digest_params(world, "staff-only", category_id=str(world.staff_area.id))
    job = _run(services, world, params)
    assert job.status == "completed", job.error
    content = _summary(services, job.id)
    assert content.coverage.channel_name == "Staff area"
    assert {s.channel_name for s in content.channels} == {
        "staff-only",
        "mods-room",
        "Zanzibar evidence",
    }


def test_the_audience_must_cover_every_discord_destination(
    services: Services, acme: tuple[FakeDiscordServer, ServerWorld]
) -> None:
    _, world = acme
    params = JobParams(
        source=DiscordServerSource(
            guild_id=str(world.guild.id),
            after=now_of(world) - timedelta(hours=24),
            audience=[AudienceChannel(channel_id=str(world.staff_only.id))],
        ),
        destinations=[ChannelTarget(channel_id=str(world.general.id))],
    )
    actor = Actor(origin="api", guild_id=str(world.guild.id))
    with pytest.raises(InvalidInputError, match="audience must include"):
        submit_job(services.core(), actor, params)


def test_another_guild_may_not_digest_this_one(
    services: Services, acme: tuple[FakeDiscordServer, ServerWorld]
) -> None:
    _, world = acme
    params = _digest_params(world, "general")
    with pytest.raises(NotFoundError):
        submit_job(services.core(), Actor(origin="api", guild_id="123456789012345678"), params)


def test_a_catch_up_shows_only_what_the_member_can_read_mentions_first(
    services: Services, acme: tuple[FakeDiscordServer, ServerWorld]
) -> None:
    _, world = acme
    alice = str(world.alice.id)
    # The same parameters /catchup and POST /v1/catchups build; delivered nowhere here.
    params = catchup_params(
        guild_id=str(world.guild.id),
        user_id=alice,
        since=None,
        now=now_of(world),
        format=SummaryFormat.STRUCTURED,
        language=None,
        destinations=[],
    )
    # An opted-out member's messages are left out of a catch-up as of any summary.
    bob = str(world.bob.id)
    set_opt_out(services.core(), user_id=bob, guild_id=str(world.guild.id), opted_out=True)
    job = _run(services, world, params)
    assert job.status == "completed", job.error
    plan = job.progress["plan"]
    # The window starts at alice's last message (6 h before now), not 7 days back.
    since = datetime.fromisoformat(plan["since"])
    assert abs((since - now_of(world)) + timedelta(hours=6)) < timedelta(minutes=1)
    content = _summary(services, job.id)
    text = content.model_dump_json()
    assert not any(marker in text for marker in MARKERS)
    assert str(world.staff_only.id) not in _cited_channels(content)
    # Channels that mention or answer alice come first, and her mentions lead the top points.
    mentioned = {"random", "dev", "help"}
    leading = [s.channel_name for s in content.channels[: len(mentioned)]]
    assert set(leading) == mentioned, leading
    assert all(s.involves_reader > 0 for s in content.channels[:3])
    involved = {str(m.id) for m in world.alice_mentions} | {str(world.help_reply.id)}
    assert set(content.key_points[0].message_ids) & involved
    assert "You were mentioned or answered" in content.overview
    assert bob not in {p.id for p in content.participants}
    assert all(c.author not in ("bob", "Bob") for c in content.citations.values())
    set_opt_out(services.core(), user_id=bob, guild_id=str(world.guild.id), opted_out=False)


def test_channels_the_admins_excluded_are_left_out_with_their_threads(
    services: Services, acme: tuple[FakeDiscordServer, ServerWorld]
) -> None:
    _, world = acme
    guild = str(world.guild.id)
    with services.session_factory() as session, session.begin():
        session.add(GuildSettings(guild_id=guild, excluded_channel_ids=[str(world.dev.id)]))
    try:
        job = _run(services, world, _digest_params(world, "general"))
    finally:
        with services.session_factory() as session, session.begin():
            session.delete(session.get(GuildSettings, guild))
    assert job.status == "completed", job.error
    content = _summary(services, job.id)
    names = {s.channel_name for s in content.channels}
    assert "dev" not in names and "4.2 release checklist" not in names
    reasons = {e["name"]: e["reason"] for e in job.progress["plan"]["left_out"]}
    assert (
        reasons["dev"]
        == reasons["4.2 release checklist"]
        == ("excluded from summaries by the server")
    )


def test_secrets_in_channel_names_are_redacted_like_message_text(
    services: Services, acme: tuple[FakeDiscordServer, ServerWorld]
) -> None:
    server, world = acme
    canary = canaries()["openai_key"]
    random, staff = world.channels["random"], world.channels["staff-only"]
    saved = random.name, staff.name
    # Anyone with Manage Channels writes these; they reach section titles, the quiet line, the
    # plan and left_out, none of which a prompt sees, but all of which are stored or posted.
    random.name = f"random {canary.text}"
    staff.name = f"staff {canary.text}"
    before = world.general.last_message_id or 0
    try:
        job = _run(services, world, _digest_params(world, "general"))
    finally:
        random.name, staff.name = saved
    assert job.status == "completed", job.error
    stored = _summary(services, job.id).model_dump_json() + json.dumps(job.progress)
    posted = posted_since(server, world.general.id, before)
    for text in (stored, posted):
        assert canary.secret not in text
    left_out = [e["name"] for e in job.progress["plan"]["left_out"]]
    assert any(name.startswith("staff") for name in left_out)


def test_a_server_that_never_summarizes_private_channels_leaves_them_out_of_digests(
    services: Services, acme: tuple[FakeDiscordServer, ServerWorld]
) -> None:
    # The "never" policy (/summary-config private_channels) refuses a summary of a private
    # channel to anyone, admins included; a digest or a member's /catchup must not read one
    # either, even for an audience that can.
    _, world = acme
    guild = str(world.guild.id)
    with services.session_factory() as session, session.begin():
        session.add(GuildSettings(guild_id=guild, private_channel_policy="deny"))
    try:
        job = _run(services, world, _digest_params(world, "staff-only"))
    finally:
        with services.session_factory() as session, session.begin():
            session.delete(session.get(GuildSettings, guild))
    assert job.status == "completed", job.error
    content = _summary(services, job.id)
    private = {str(world.staff_only.id), str(world.mods_room.id), str(world.staff_thread.id)}
    assert not _cited_channels(content) & private
    assert not any(marker in content.model_dump_json() for marker in MARKERS)
    reasons = {e["name"]: e["reason"] for e in job.progress["plan"]["left_out"]}
    assert (
        reasons["staff-only"]
        == reasons["mods-room"]
        == "private, and the server never summarizes private channels"
    )


def _one_channel(world: ServerWorld, name: str) -> JobParams:
    return JobParams(
        source=DiscordChannelSource(
            guild_id=str(world.guild.id),
            channel_id=str(world.channels[name].id),
            after=now_of(world) - timedelta(hours=24),
        )
    )


@pytest.mark.parametrize(
    ("settings", "channel"),
    [
        ({"excluded_channel_ids": ["{dev}"]}, "dev"),
        ({"private_channel_policy": "deny"}, "staff-only"),
    ],
    ids=["excluded", "private-never"],
)
def test_a_one_channel_job_from_the_api_obeys_the_servers_rules(
    services: Services,
    acme: tuple[FakeDiscordServer, ServerWorld],
    settings: dict[str, Any],
    channel: str,
) -> None:
    # The bot refuses these requests itself; a job submitted through the API (or any
    # producer) must not read them either: the worker holds the rule.
    _, world = acme
    guild = str(world.guild.id)
    values = {
        k: [c.format(dev=world.dev.id) for c in v] if isinstance(v, list) else v
        for k, v in settings.items()
    }
    with services.session_factory() as session, session.begin():
        session.add(GuildSettings(guild_id=guild, **values))
    try:
        job = _run(services, world, _one_channel(world, channel))
    finally:
        with services.session_factory() as session, session.begin():
            session.delete(session.get(GuildSettings, guild))
    assert job.status == "failed"
    with services.session_factory() as session:
        assert session.query(Summary).filter(Summary.job_id == job.id).count() == 0
    # The same channel is summarized once the rule is lifted.
    assert _run(services, world, _one_channel(world, channel)).status == "completed"


def test_under_server_rules_fetch_reads_the_channel_once(
    services: Services, acme: tuple[FakeDiscordServer, ServerWorld]
) -> None:
    # The rules need the channel's overwrites as they are now, and fetch's guild boundary
    # needs its guild: one fresh read answers both.  (The other read is submit's guild
    # boundary, through the directory.)
    server, world = acme
    guild = str(world.guild.id)
    fresh = server.fake.add_channel(world.guild, "read-once", category=world.community)
    for n in range(3):
        server.fake.add_message(fresh, world.alice, f"note {n} about the release")
    params = JobParams(
        source=DiscordChannelSource(
            guild_id=guild, channel_id=str(fresh.id), after=now_of(world) - timedelta(hours=24)
        )
    )
    with services.session_factory() as session, session.begin():
        session.add(GuildSettings(guild_id=guild, excluded_channel_ids=[str(world.dev.id)]))
    before = len(server.fake.limits.events)
    try:
        job = _run(services, world, params)
    finally:
        with services.session_factory() as session, session.begin():
            session.delete(session.get(GuildSettings, guild))
    assert job.status == "completed"
    reads = [
        event
        for event in server.fake.limits.events[before:]
        if event[1] == "GET /channels/{channel_id}" and event[5] == str(fresh.id)
    ]
    assert len(reads) == 2


def _history_reads(server: FakeDiscordServer, channel_id: int, since: int) -> int:
    return sum(
        1
        for event in server.fake.limits.events[since:]
        if event[1] == "GET /channels/{channel_id}/messages" and event[5] == str(channel_id)
    )


@pytest.mark.parametrize(
    ("requester", "to", "outcome"),
    [
        ("sam", "general", "failed"),  # a member's job: a private channel stays at home
        ("olivia", "general", "completed"),  # the owner: administrators set the policy
        ("sam", "staff-only", "completed"),  # the channel itself
        ("sam", "staff-thread", "completed"),  # one of its threads
        ("sam", "dm", "completed"),  # privately, to whoever asked
    ],
)
def test_a_members_job_shows_a_private_channel_only_where_the_policy_allows(
    services: Services,
    acme: tuple[FakeDiscordServer, ServerWorld],
    requester: str,
    to: str,
    outcome: str,
) -> None:
    # The guild keeps the default policy (same_channel, no settings row).  The bot refuses
    # such a request when it is made; the worker holds the rule for every job a member's
    # request made, whatever produced it and however long ago.
    server, world = acme
    member = world.people[requester]
    destination: Any = (
        DirectMessageTarget(user_id=str(member.id))
        if to == "dm"
        else ChannelTarget(
            channel_id=str(world.staff_thread.id if to == "staff-thread" else world.channels[to].id)
        )
    )
    params = _one_channel(world, "staff-only").model_copy(update={"destinations": [destination]})
    actor = Actor(origin="bot", guild_id=str(world.guild.id), requested_by=str(member.id))
    before_events = len(server.fake.limits.events)
    before_post = world.general.last_message_id or 0
    job = wait_settled(services, submit_job(services.core(), actor, params).job_id)
    assert job.status == outcome, job.error
    if outcome == "failed":
        assert job.error is not None and "is private: under this server's policy" in job.error
        assert _history_reads(server, world.staff_only.id, before_events) == 0
        assert posted_since(server, world.general.id, before_post) == "[]"


def test_a_schedule_stops_posting_a_channel_that_became_private(
    services: Services, acme: tuple[FakeDiscordServer, ServerWorld]
) -> None:
    # Made by a member (not an administrator) while #staff-only was open to everyone, posted
    # in #general; then the admins close the channel.  Each run is a member's job again.
    server, world = acme
    staff = world.staff_only
    closed = list(staff.overwrites)
    staff.overwrites[:] = [o for o in closed if o["id"] != str(world.guild.id)]
    sam = Actor(origin="bot", guild_id=str(world.guild.id), requested_by=str(world.sam.id))
    try:
        schedule = create_schedule(
            services.core(),
            sam,
            ScheduleRequest(
                scope=ScheduleScope.CHANNEL,
                channel_id=str(staff.id),
                text="hourly",
                destination={"kind": "channel", "channel_id": str(world.general.id)},
            ),
        )
    finally:
        staff.overwrites[:] = closed
    now = datetime.now(UTC)
    make_due(services, schedule.id, world, now)
    before_events = len(server.fake.limits.events)
    before_post = world.general.last_message_id or 0
    assert dispatch_due_digests(services.core(), now=now).jobs_submitted == 1
    with services.session_factory() as session:
        run = session.scalars(
            select(ScheduleRun).where(ScheduleRun.schedule_id == schedule.id)
        ).one()
    job = wait_settled(services, run.job_id)
    assert job.status == "failed"
    assert _history_reads(server, staff.id, before_events) == 0
    assert posted_since(server, world.general.id, before_post) == "[]"
