"""The maintenance tasks run their functions against the process's resources."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from celery import Celery
from sqlalchemy import select

from schema.models.schedules import ScheduleRun
from shared.db.migrate import upgrade
from shared.settings import load_settings
from tests.fakes.enqueuer import RecordingEnqueuer
from tests.support.discord_tenants import DiscordTenants
from tests.unit.ops.helpers import add_schedule
from workers import resources
from workers.tasks import maintenance

NOW = datetime(2026, 6, 1, 12, 0, 5, tzinfo=UTC)


@pytest.fixture
def services(tmp_path: Path, discord_tenants: DiscordTenants) -> Iterator[Any]:
    url = f"sqlite:///{tmp_path / 'maintenance.db'}"
    upgrade(url)
    settings = load_settings(
        database_url=url,
        discord_token=discord_tenants.token,
        discord_api_base=discord_tenants.server.api_base,
    )
    built, engine = resources.build_services(settings, Celery("t", set_as_current=False))
    built.enqueuer = RecordingEnqueuer()
    built.clock = lambda: NOW
    resources.install(built)
    yield built
    resources.close_services()
    engine.dispose()


def test_maintenance_tasks(services: Any, discord_tenants: DiscordTenants) -> None:
    guild, channel = discord_tenants.tenant()
    add_schedule(
        services.session_factory,
        "hourly",
        now=NOW - timedelta(hours=1),
        guild=guild,
        channel_id=channel,
    )
    assert maintenance.dispatch_due_digests_task() == 1
    assert maintenance.dispatch_due_digests_task() == 0
    with services.session_factory() as session:
        assert len(session.scalars(select(ScheduleRun)).all()) == 1
    assert services.enqueuer.sent[0][0] == "summarybot.fetch"
    purged = maintenance.purge_expired_task()
    assert purged == {"summaries": 0, "jobs": 0, "caches": 0, "guilds": 0}
    assert maintenance.requeue_stale_jobs_task() == 0
    assert maintenance.PURGE_EXPIRED == "summarybot.maintenance.purge_expired"
