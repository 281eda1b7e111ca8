"""The one view of a ``jobs`` row (:mod:`shared.job_view`): what its progress means."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from schema.models.jobs import Job, JobStatus
from shared.job_view import JobView, LeftOutChannel

NOW = datetime(2026, 3, 14, 15, 0, tzinfo=UTC)


def _view(status: str = "queued", **columns: Any) -> JobView:
    row = Job(
        id=uuid.uuid4(),
        origin="api",
        status=status,
        guild_id="1",
        channel_id=None,
        requested_by="u",
        params=columns.pop("params", {}),
        progress=columns.pop("progress", {}),
        created_at=NOW,
        updated_at=NOW,
        **columns,
    )
    return JobView.of(row)


def test_a_new_job_has_no_summary_plan_or_stage() -> None:
    view = _view()
    assert view.status is JobStatus.QUEUED and view.stage is None
    assert view.summary_id is None and view.format is None
    assert view.channels is None and view.part_ids == [] and view.left_out == []
    assert (view.message_count, view.error, view.finished_at) == (None, None, None)


def test_the_view_reads_the_stage_summary_and_format() -> None:
    summary = uuid.uuid4()
    view = _view("delivering", params={"format": "brief"}, progress={"summary_id": str(summary)})
    assert view.stage == "deliver"
    assert view.summary_id == summary
    assert view.format == "brief"
    assert _view(progress={"summary_id": "not an id"}).summary_id is None


def test_a_multi_channel_job_counts_its_channels_and_names_its_parts_and_left_out() -> None:
    parts = [uuid.uuid4(), uuid.uuid4()]
    plan = {
        "parts": [{"job_id": str(p), "channel_id": "5"} for p in parts] + [{"channel_id": "6"}],
        "quiet": [{"channel_id": "7"}],
        "left_out": [{"channel_id": "8", "reason": "not readable"}, "junk"],
    }
    view = _view("summarizing", progress={"plan": plan})
    assert view.channels == 4
    assert view.part_ids == parts
    assert view.left_out == [LeftOutChannel("8", "8", "not readable")]


def test_the_view_shares_no_json_with_the_row() -> None:
    row = Job(
        id=uuid.uuid4(),
        origin="bot",
        status="fetching",
        params={"format": "brief"},
        progress={"messages_fetched": 3},
        created_at=NOW,
        updated_at=NOW,
    )
    view = JobView.of(row)
    row.progress["messages_fetched"] = 9
    row.params["format"] = "structured"
    assert view.progress == {"messages_fetched": 3} and view.format == "brief"


def test_the_view_of_an_inserted_row_is_the_view_of_the_same_row_read_back() -> None:
    values: dict[str, Any] = {
        "id": uuid.uuid4(),
        "origin": "api",
        "status": "queued",
        "guild_id": "1",
        "channel_id": "2",
        "requested_by": "api:k",
        "params": {"format": "brief", "source": {"kind": "discord_channel"}},
        "progress": {},
        "idempotency_key": "api:k:0",
        "redeliveries": 0,
        "created_at": NOW,
        "updated_at": NOW,
    }
    assert JobView.of_new_row(values) == JobView.of(Job(**values))
