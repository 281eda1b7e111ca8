"""The scope of a digest schedule (:mod:`shared.services.schedules`): which combinations make a
schedule, where its digest is posted, and the last run's left-out channels for its managers."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.orm import Session, sessionmaker

from schema.models.jobs import Job
from schema.models.schedules import Schedule, ScheduleRun, ScheduleScope
from shared.crypto import SecretBox, generate_key
from shared.db.engine import make_engine, make_sessionmaker
from shared.db.migrate import upgrade
from shared.errors import InvalidInputError, NotFoundError
from shared.job_view import LeftOutChannel
from shared.jobs import MAX_LISTED_CHANNELS
from shared.services.core import Actor, Core
from shared.services.schedules import (
    ScheduleRequest,
    create_schedule,
    last_runs,
    update_schedule,
)
from tests.fakes.enqueuer import RecordingEnqueuer
from tests.support.discord_tenants import DiscordTenants


@pytest.fixture
def factory(tmp_path: Path) -> Iterator[sessionmaker[Session]]:
    url = f"sqlite:///{tmp_path / 'scopes.db'}"
    upgrade(url)
    engine = make_engine(url)
    yield make_sessionmaker(engine)
    engine.dispose()


@dataclass
class Guild:
    """A tenant guild with #general, a second channel and a category of two channels."""

    core: Core
    actor: Actor
    guild: str
    general: str
    other: str
    category: str
    inside: list[str]

    def request(self, **values: Any) -> ScheduleRequest:
        values.setdefault("destination", {"kind": "channel", "channel_id": self.general})
        return ScheduleRequest(text="daily 09:00", **values)

    def create(self, **values: Any) -> Schedule:
        return create_schedule(self.core, self.actor, self.request(**values))


@pytest.fixture
def g(factory: sessionmaker[Session], discord_tenants: DiscordTenants) -> Guild:
    guild, general = discord_tenants.tenant()
    other = discord_tenants.channel(guild, "other")
    category, inside = discord_tenants.category(guild, "Team", channels=2)
    core = Core(
        session_factory=factory,
        enqueuer=RecordingEnqueuer(),
        box=SecretBox([generate_key()]),
        directory=discord_tenants.directory,
    )
    actor = Actor(origin="bot", guild_id=guild, requested_by="42")
    return Guild(core, actor, guild, general, other, category, inside)


def _refused(g: Guild, field: str, words: str, **values: Any) -> None:
    with pytest.raises(InvalidInputError, match=words) as caught:
        g.create(**values)
    assert caught.value.field == field


def test_a_channel_schedule_is_what_it_was(g: Guild) -> None:
    row = g.create(channel_id=g.other)
    assert (row.scope, row.channel_id, row.scope_category_id, row.scope_channel_ids) == (
        "channel",
        g.other,
        None,
        [],
    )
    _refused(g, "channel_id", "give channel_id")
    _refused(
        g,
        "category_id",
        "with scope 'category', not 'channel'",
        channel_id=g.other,
        category_id=g.category,
    )
    _refused(
        g,
        "channel_ids",
        "with scope 'channels', not 'channel'",
        channel_id=g.other,
        channel_ids=[g.other],
    )


def test_a_server_digest_is_posted_in_its_destination_channel(g: Guild) -> None:
    row = g.create(scope=ScheduleScope.SERVER)
    assert (row.scope, row.channel_id) == ("server", g.general)
    assert g.create(scope=ScheduleScope.SERVER, channel_id=g.general).channel_id == g.general
    _refused(
        g,
        "channel_id",
        "the channel it is posted in",
        scope=ScheduleScope.SERVER,
        channel_id=g.other,
    )
    _refused(g, "category_id", "not 'server'", scope=ScheduleScope.SERVER, category_id=g.category)
    _refused(g, "channel_ids", "not 'server'", scope=ScheduleScope.SERVER, channel_ids=[g.other])
    _refused(
        g,
        "destination",
        "posted in a channel or thread",
        scope=ScheduleScope.SERVER,
        destination={"kind": "webhook", "endpoint_id": str(uuid.uuid4())},
    )


def test_a_category_digest_needs_a_category_of_the_guild(g: Guild) -> None:
    row = g.create(scope=ScheduleScope.CATEGORY, category_id=g.category)
    assert (row.scope, row.scope_category_id, row.channel_id) == ("category", g.category, g.general)
    _refused(g, "category_id", "needs category_id", scope=ScheduleScope.CATEGORY)
    _refused(
        g, "category_id", "is not a category", scope=ScheduleScope.CATEGORY, category_id=g.other
    )
    foreign = "1" * 18
    with pytest.raises(NotFoundError) as missing:
        g.create(scope=ScheduleScope.CATEGORY, category_id=foreign)
    assert missing.value.user_message == f"no category {foreign} in this server"
    _refused(
        g,
        "channel_ids",
        "not 'category'",
        scope=ScheduleScope.CATEGORY,
        category_id=g.category,
        channel_ids=[g.other],
    )


def test_a_digest_of_listed_channels_takes_up_to_fifty_of_the_guild(
    g: Guild, discord_tenants: DiscordTenants
) -> None:
    row = g.create(scope=ScheduleScope.CHANNELS, channel_ids=[g.other, *g.inside])
    assert row.scope_channel_ids == [g.other, *g.inside] and row.channel_id == g.general
    _refused(g, "channel_ids", "needs channel_ids", scope=ScheduleScope.CHANNELS)
    _refused(
        g,
        "channel_ids",
        "listed twice",
        scope=ScheduleScope.CHANNELS,
        channel_ids=[g.other, g.other],
    )
    too_many = [str(10**17 + i) for i in range(MAX_LISTED_CHANNELS + 1)]
    _refused(
        g,
        "channel_ids",
        f"at most {MAX_LISTED_CHANNELS}",
        scope=ScheduleScope.CHANNELS,
        channel_ids=too_many,
    )
    _, foreign = discord_tenants.tenant()
    with pytest.raises(NotFoundError) as missing:
        g.create(scope=ScheduleScope.CHANNELS, channel_ids=[g.other, foreign])
    assert missing.value.user_message == f"no channel {foreign} in this server"


def test_changing_the_scope_checks_it_again_and_drops_the_old_channels(g: Guild) -> None:
    row = g.create(channel_id=g.other, destination={"kind": "channel", "channel_id": g.other})
    change = update_schedule
    widened = change(g.core, g.actor, row.id, {"scope": "category", "category_id": g.category})
    assert (widened.scope, widened.scope_category_id, widened.channel_id) == (
        "category",
        g.category,
        g.other,
    )
    moved = change(
        g.core, g.actor, row.id, {"destination": {"kind": "channel", "channel_id": g.general}}
    )
    assert (moved.channel_id, moved.scope_category_id) == (g.general, g.category)
    listed = change(g.core, g.actor, row.id, {"scope": "channels", "channel_ids": g.inside})
    assert (listed.scope_category_id, listed.scope_channel_ids) == (None, g.inside)
    with pytest.raises(InvalidInputError, match="not 'channels'") as caught:
        change(g.core, g.actor, row.id, {"category_id": g.category})
    assert caught.value.field == "category_id"
    with pytest.raises(InvalidInputError, match="needs category_id"):
        change(g.core, g.actor, row.id, {"scope": "category"})
    with pytest.raises(InvalidInputError, match="posted in a channel or thread"):
        change(
            g.core,
            g.actor,
            row.id,
            {"destination": {"kind": "webhook", "endpoint_id": str(uuid.uuid4())}},
        )
    # Back to one channel: it summarizes the channel its digest was posted in.
    narrowed = change(g.core, g.actor, row.id, {"scope": "channel"})
    assert (narrowed.scope, narrowed.channel_id, narrowed.scope_channel_ids) == (
        "channel",
        g.general,
        [],
    )
    with pytest.raises(InvalidInputError, match="unknown scope 'planet'"):
        change(g.core, g.actor, row.id, {"scope": "planet"})


def test_the_last_run_names_what_its_digest_left_out(
    g: Guild, factory: sessionmaker[Session]
) -> None:
    scoped = g.create(scope=ScheduleScope.SERVER)
    single = g.create(channel_id=g.general)
    never = g.create(channel_id=g.other)
    start = datetime(2026, 6, 1, tzinfo=UTC)
    left_out = {"channel_id": g.other, "name": "other", "reason": "3 of 4 members cannot read it"}
    with factory() as session, session.begin():
        for schedule, days, job_id in (
            (scoped, 0, uuid.uuid4()),
            (scoped, 1, uuid.uuid4()),
            (single, 0, uuid.uuid4()),
        ):
            plan = {"plan": {"left_out": [left_out] if days else []}}
            session.add(
                Job(
                    id=job_id,
                    origin="digest",
                    status="completed",
                    guild_id=g.guild,
                    params={},
                    progress=plan if schedule is scoped else {},
                    redeliveries=0,
                )
            )
            session.add(
                ScheduleRun(
                    schedule_id=schedule.id,
                    window_start=start + timedelta(days=days),
                    window_end=start + timedelta(days=days + 1),
                    job_id=job_id,
                )
            )
        session.add(
            ScheduleRun(
                schedule_id=never.id,
                window_start=start,
                window_end=start + timedelta(days=1),
            )
        )
    found = last_runs(factory, [scoped.id, single.id, never.id, uuid.uuid4()])
    assert set(found) == {scoped.id, single.id, never.id}
    latest = found[scoped.id]
    assert latest.window_start == start + timedelta(days=1) and latest.status == "completed"
    assert latest.left_out == [LeftOutChannel(g.other, "other", "3 of 4 members cannot read it")]
    assert found[single.id].left_out == []
    assert (found[never.id].job_id, found[never.id].status) == (None, None)
    assert last_runs(factory, []) == {}
