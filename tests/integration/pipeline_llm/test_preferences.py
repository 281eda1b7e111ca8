"""The summarize stage's first read: the plan check and the guild's preferences in one query."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, event
from sqlalchemy.orm import Session, sessionmaker

from schema.models.chunks import SummaryPlan
from schema.models.jobs import Job
from schema.models.tenancy import ALL_GUILDS, GuildSettings, UserOptOut
from shared.db.engine import make_engine, make_sessionmaker, reading_session
from shared.db.migrate import upgrade
from shared.pipeline.llm.mapreduce import (
    GuildPreferences,
    guild_preferences,
    plan_and_preferences,
)
from shared.services.members import opted_out_ids

pytestmark = pytest.mark.integration


@pytest.fixture(params=["postgresql", "sqlite"])
def factory(request: pytest.FixtureRequest, engine: Engine, tmp_path: Path) -> Iterator[Any]:
    if request.param == "postgresql":
        yield make_sessionmaker(engine)
        return
    url = f"sqlite:///{tmp_path / 'prefs.db'}"
    upgrade(url)
    local = make_engine(url)
    yield make_sessionmaker(local)
    local.dispose()


def _job(factory: sessionmaker[Session], guild: str) -> uuid.UUID:
    now = datetime.now(UTC)
    job = Job(
        id=uuid.uuid4(),
        origin="api",
        status="summarizing",
        guild_id=guild,
        params={},
        progress={},
        created_at=now,
        updated_at=now,
    )
    with factory() as session, session.begin():
        session.add(job)
    return job.id


def _read(factory: sessionmaker[Session], job_id: uuid.UUID, guild: str | None) -> Any:
    statements: list[str] = []
    bind = factory.kw["bind"]
    listener = lambda *args: statements.append(args[2])  # noqa: E731
    event.listen(bind, "before_cursor_execute", listener)
    try:
        with reading_session(factory) as session:
            found = plan_and_preferences(session, job_id, guild)
    finally:
        event.remove(bind, "before_cursor_execute", listener)
    assert len(statements) == 1, statements
    return found


def test_a_guild_without_rows_has_the_defaults(factory: sessionmaker[Session]) -> None:
    guild = str(uuid.uuid4().int % 10**18)
    job_id = _job(factory, guild)
    assert _read(factory, job_id, guild) == (
        False,
        GuildPreferences(opted_out=frozenset(), language=None, instructions=None, budgeted=False),
    )


def test_settings_opt_outs_and_the_plan_in_one_read(factory: sessionmaker[Session]) -> None:
    guild, other = (str(uuid.uuid4().int % 10**18) for _ in range(2))
    everywhere = str(uuid.uuid4().int % 10**18)
    job_id = _job(factory, guild)
    with factory() as session, session.begin():
        session.add(
            GuildSettings(
                guild_id=guild,
                default_language="fr",
                custom_instructions="Keep it short.",
                monthly_token_budget=100,
            )
        )
        session.add_all(
            [
                UserOptOut(guild_id=guild, user_id="101"),
                UserOptOut(guild_id=guild, user_id="102"),
                UserOptOut(guild_id=ALL_GUILDS, user_id=everywhere),
                UserOptOut(guild_id=other, user_id="104"),
            ]
        )
    planned, preferences = _read(factory, job_id, guild)
    assert not planned
    assert preferences == GuildPreferences(
        opted_out=frozenset({"101", "102", everywhere}),
        language="fr",
        instructions="Keep it short.",
        budgeted=True,
    )
    with reading_session(factory) as session:
        assert guild_preferences(session, guild) == preferences
        assert opted_out_ids(session, guild) == preferences.opted_out
    # Another guild's settings stay its own; everyone's opt-outs apply to it as well.
    assert _read(factory, job_id, other)[1] == GuildPreferences(
        opted_out=frozenset({"104", everywhere}), language=None, instructions=None, budgeted=False
    )
    # No guild (a local export): only everyone's opt-outs.
    assert _read(factory, job_id, None)[1].opted_out >= {everywhere}
    with factory() as session, session.begin():
        session.add(SummaryPlan(job_id=job_id, chunk_count=3, model="m"))
    assert _read(factory, job_id, guild) == (True, preferences)
