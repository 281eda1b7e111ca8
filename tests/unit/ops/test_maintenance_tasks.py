"""The maintenance tasks run their functions against the process's resources."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from celery import Celery
from sqlalchemy import select

from schema.models.schedules import ScheduleRun
from shared.db.migrate import upgrade
from shared.discord.config import DiscordSettings
from shared.settings import load_settings
from tests.fakes.enqueuer import RecordingEnqueuer
from tests.support.discord_tenants import DiscordTenants
from tests.unit.ops.helpers import add_schedule
from workers.app import WorkerApp, create_worker_app
from workers.context import build_services
from workers.tasks import maintenance

NOW = datetime(2026, 6, 1, 12, 0, 5, tzinfo=UTC)


@pytest.fixture
def worker(tmp_path: Path, discord_tenants: DiscordTenants) -> Iterator[WorkerApp]:
    url = f"sqlite:///{tmp_path / 'maintenance.db'}"
    upgrade(url)
    settings = load_settings(
        database_url=url,
        discord=DiscordSettings(
            token=discord_tenants.token, api_base=discord_tenants.server.api_base
        ),
    )
    made = create_worker_app(settings)
    built = build_services(settings, made.app)
    built.enqueuer = RecordingEnqueuer()
    built.clock = lambda: NOW
    made.context.install(built)
    yield made
    made.close()
    built.close()


def test_maintenance_tasks(worker: WorkerApp, discord_tenants: DiscordTenants) -> None:
    services = worker.context.services()
    tasks = worker.app.tasks
    guild, channel = discord_tenants.tenant()
    add_schedule(
        services.session_factory,
        "hourly",
        now=NOW - timedelta(hours=1),
        guild=guild,
        channel_id=channel,
    )
    assert tasks[maintenance.DISPATCH_DUE_DIGESTS]() == 1
    assert tasks[maintenance.DISPATCH_DUE_DIGESTS]() == 0
    with services.session_factory() as session:
        assert len(session.scalars(select(ScheduleRun)).all()) == 1
    assert isinstance(services.enqueuer, RecordingEnqueuer)
    assert services.enqueuer.sent[0][0] == "summarybot.fetch"
    purged = tasks[maintenance.PURGE_EXPIRED]()
    assert purged == {"summaries": 0, "jobs": 0, "caches": 0, "guilds": 0, "uploads": 0}
    assert tasks[maintenance.REQUEUE_STALE_JOBS]() == 0
    assert tasks[maintenance.REDRIVE_DELIVERIES]() == 0


def test_an_app_made_later_never_runs_an_earlier_apps_tasks(worker: WorkerApp) -> None:
    """Tasks are registered per app (``shared=False``): a second app in the same process (the
    embedded mode after a test, two tests in a row) gets its own tasks, bound to its own
    context, and a plain Celery app gets none of ours."""
    later = create_worker_app(worker.context.settings)
    try:
        name = maintenance.PURGE_EXPIRED
        assert later.app.tasks[name] is not worker.app.tasks[name]
        with pytest.raises(RuntimeError, match="worker resources were not built"):
            later.app.tasks[name]()
        stranger = Celery("stranger", set_as_current=False)
        stranger.finalize()
        assert name not in stranger.tasks and "summarybot.fetch" not in stranger.tasks
    finally:
        later.close()
