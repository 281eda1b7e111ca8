"""Metrics helpers, signal hooks and the logging processors, in one process."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import structlog
from celery import Celery
from prometheus_client import REGISTRY
from sqlalchemy import event

from schema.models.jobs import Job
from shared import lifecycle
from shared.db.migrate import upgrade
from shared.jobs import DELIVER, FETCH
from shared.metrics import (
    clean_multiprocess_dir,
    exposition_registry,
    observe_rate_limit_wait,
    record_rate_limited,
    render_metrics,
)
from shared.metrics_logging import (
    TRACE_HEADER,
    add_trace_context,
    current_trace_id,
    pseudonym,
    pseudonym_key,
    pseudonymizer,
)
from shared.pipeline.services import Services
from shared.settings import load_settings
from workers import signals_metrics
from workers.app import WorkerApp, create_worker_app
from workers.context import build_services

USER = "412345678901234567"


def _sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def test_pseudonymizer_replaces_user_ids_and_mentions_only() -> None:
    key = pseudonym_key(["k1"])
    process = pseudonymizer(key)
    event = process(
        None,
        "info",
        {
            "event": f"asked by <@{USER}> and <@!{USER}>",
            "user_id": USER,
            "requested_by": int(USER),
            "participant_ids": [USER, "cli"],
            "channel_id": "222222222222222222",
            "nested": {"author_id": USER, "note": "n"},
            "count": 3,
        },
    )
    hashed = pseudonym(key, USER)
    assert hashed.startswith("u:") and len(hashed) == 18
    assert event["user_id"] == event["requested_by"] == hashed
    assert event["participant_ids"] == [hashed, "cli"]
    assert event["event"] == f"asked by <@{hashed}> and <@{hashed}>"
    assert event["channel_id"] == "222222222222222222"  # not a user id
    assert event["nested"] == {"author_id": hashed, "note": "n"}
    assert USER not in str(event)
    # Same key, same pseudonym (follow one member across processes); another key, another.
    assert pseudonym(pseudonym_key(["k1", "old"]), USER) == hashed
    assert pseudonym(pseudonym_key(["k2"]), USER) != hashed
    assert pseudonym_key([]) != pseudonym_key([])  # no key configured: random per process


def test_trace_id_from_context_or_the_celery_message() -> None:
    structlog.contextvars.clear_contextvars()
    assert add_trace_context(None, "info", {"event": "x"}) == {"event": "x"}
    structlog.contextvars.bind_contextvars(trace_id="t-bound")
    try:
        assert add_trace_context(None, "info", {"event": "x"})["trace_id"] == "t-bound"
        assert add_trace_context(None, "info", {"trace_id": "own"})["trace_id"] == "own"
        headers: dict[str, Any] = {}
        signals_metrics._on_publish(headers=headers)
        assert headers[TRACE_HEADER] == "t-bound"
    finally:
        structlog.contextvars.clear_contextvars()
    fresh: dict[str, Any] = {}
    signals_metrics._on_publish(headers=fresh)
    assert len(fresh[TRACE_HEADER]) == 32
    kept = {TRACE_HEADER: "upstream"}
    signals_metrics._on_publish(headers=kept)
    assert kept[TRACE_HEADER] == "upstream"

    app = Celery("trace-test", set_as_current=False)

    @app.task(name="trace.echo")  # type: ignore[untyped-decorator]
    def echo() -> str | None:
        return current_trace_id()

    assert echo.apply(headers={TRACE_HEADER: "from-header"}).get() == "from-header"
    assert echo.apply().get() is None


def test_render_metrics_single_process(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR", raising=False)
    record_rate_limited("discord", "user")
    observe_rate_limit_wait("llm", 0.2)
    body, content_type = render_metrics()
    text = body.decode()
    assert content_type.startswith("text/plain")
    assert 'summary_rate_limited_responses_total{scope="user",service="discord"}' in text
    assert 'summary_rate_limit_wait_seconds_count{limiter="llm"}' in text
    assert "summary_processing_seconds" in text and "summary_requests_total" in text


def test_multiprocess_registry_and_stale_file_cleanup(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
    mine = tmp_path / f"counter_{os.getpid()}.db"
    for path in (mine, tmp_path / "counter_1.db", tmp_path / "histogram_2.db", tmp_path / "x.db"):
        path.write_bytes(b"")
    assert clean_multiprocess_dir(keep_pids=[2]) == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([mine.name, "histogram_2.db"])
    mine.unlink()
    (tmp_path / "histogram_2.db").unlink()
    assert list(exposition_registry().collect()) == []  # nothing written yet: no samples
    monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR")
    assert clean_multiprocess_dir() == 0


@pytest.fixture
def worker(tmp_path: Path) -> Iterator[WorkerApp]:
    url = f"sqlite:///{tmp_path / 'm.db'}"
    upgrade(url)
    made = create_worker_app(load_settings(database_url=url))
    built = build_services(made.context.settings, made.app)
    made.context.install(built)
    yield made
    made.close()
    built.close()


@pytest.fixture
def services(worker: WorkerApp) -> Services:
    return worker.context.services()


@pytest.fixture
def hooks(worker: WorkerApp) -> Any:
    return signals_metrics._Hooks(worker.context)


def _job(services: Services, status: str, *, created: datetime) -> uuid.UUID:
    job = Job(
        id=uuid.uuid4(),
        origin="bot",
        status=status,
        params={"format": "detailed"},
        progress={},
        created_at=created,
        updated_at=created,
    )
    with services.session_factory() as session, session.begin():
        session.add(job)
    return job.id


def _ends(status: str) -> tuple[float, float, float]:
    return (
        _sample("summary_requests_total", type="detailed", status=status),
        _sample("summary_jobs_finished_total", origin="bot", status=status),
        _sample("summary_processing_seconds_count", type="detailed"),
    )


def test_a_job_end_is_counted_once_where_the_move_commits(services: Services) -> None:
    now = datetime.now(UTC)
    job_id = _job(services, "summarizing", created=now - timedelta(seconds=12))
    before = _ends("completed")
    # Moved, but the transaction rolls back: nothing ended, nothing counted.
    with services.session_factory() as session, session.begin():
        assert lifecycle.move_in(session, job_id, lifecycle.Move.SUMMARIZED, now=now) == []
        assert _ends("completed") == before  # not before the commit either
        session.rollback()
    assert _ends("completed") == before
    with services.session_factory() as session, session.begin():
        assert lifecycle.move_in(session, job_id, lifecycle.Move.SUMMARIZED, now=now) == []
    requests, finished, processing = _ends("completed")
    assert (requests, finished, processing) == (before[0] + 1, before[1] + 1, before[2] + 1)
    # Its deliveries settle it later: the job keeps its end time and is not counted again.
    later = now + timedelta(seconds=3)
    failed = _ends("failed")
    delivered = lifecycle.move(
        services.session_factory, job_id, lifecycle.Move.DELIVERED, now=later
    )
    assert delivered is not None
    assert (
        lifecycle.move(services.session_factory, job_id, lifecycle.Move.DELIVERY_FAILED, now=later)
        is not None
    )
    assert _ends("completed") == (requests, finished, processing)
    assert _ends("failed") == failed


def test_a_failed_job_is_counted_by_the_move_that_failed_it(services: Services) -> None:
    now = datetime.now(UTC)
    job_id = _job(services, "fetching", created=now - timedelta(seconds=5))
    before = _ends("failed")
    assert lifecycle.move(services.session_factory, job_id, lifecycle.Move.FAIL, now=now) == []
    # A second copy of the failing task finds the job already failed.
    assert lifecycle.move(services.session_factory, job_id, lifecycle.Move.FAIL, now=now) is None
    assert _ends("failed") == (before[0] + 1, before[1] + 1, before[2] + 1)


def test_hooks_time_tasks_without_reading_the_job(
    services: Services, hooks: Any, worker: WorkerApp
) -> None:
    job_id = _job(services, "summarizing", created=datetime.now(UTC))
    engine = services.session_factory.kw["bind"]
    statements: list[str] = []
    event.listen(engine, "before_cursor_execute", lambda *a: statements.append(a[2]))
    stage = _sample("summary_stage_seconds_count", stage="deliver")
    succeeded = _sample("summary_celery_tasks_total", task=DELIVER, state="succeeded")
    deliver = SimpleNamespace(name=DELIVER, app=worker.app)
    for task_id in ("d1", "d2"):
        hooks.on_prerun(task_id=task_id, task=deliver, args=[str(job_id), str(uuid.uuid4())])
        hooks.on_postrun(task_id=task_id, task=deliver, state="SUCCESS")
    assert _sample("summary_stage_seconds_count", stage="deliver") == stage + 2
    assert _sample("summary_celery_tasks_total", task=DELIVER, state="succeeded") == succeeded + 2
    assert statements == []  # what the task did is counted where it was written
    assert hooks.started == {}


def test_hooks_tolerate_unknown_tasks_and_missing_resources(
    services: Services, hooks: Any, worker: WorkerApp
) -> None:
    other = SimpleNamespace(name="summarybot.maintenance.purge_expired", app=worker.app)
    failures = _sample("summary_celery_tasks_total", task=other.name, state="failed")
    hooks.on_prerun(task_id="m1", task=other, args=[])
    hooks.on_failure(sender=other)
    hooks.on_retry(sender=other)
    hooks.on_postrun(task_id="m1", task=other, args=[], state="FAILURE")
    assert _sample("summary_celery_tasks_total", task=other.name, state="failed") == failures + 1
    fetch = SimpleNamespace(name=FETCH, app=worker.app)
    hooks.on_prerun(task_id="f1", task=fetch, args=["not-a-uuid"])
    hooks.on_postrun(task_id="f1", task=fetch, args=["not-a-uuid"], state="SUCCESS")
    hooks.on_postrun(task_id="never-started", task=fetch, args=[], state="SUCCESS")
    worker.context.install(None)
    hooks.on_prerun(task_id="f2", task=fetch, args=[str(uuid.uuid4())])
    hooks.on_postrun(task_id="f2", task=fetch, args=[str(uuid.uuid4())], state="SUCCESS")


def test_hooks_ignore_tasks_of_another_app(hooks: Any, worker: WorkerApp) -> None:
    stranger = SimpleNamespace(name="summarybot.maintenance.purge_expired", app=object())
    failures = _sample("summary_celery_tasks_total", task=stranger.name, state="failed")
    hooks.on_prerun(task_id="x1", task=stranger, args=[])
    hooks.on_failure(sender=stranger)
    assert "x1" not in hooks.started
    assert _sample("summary_celery_tasks_total", task=stranger.name, state="failed") == failures
