from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import func, select

from schema.models.jobs import Job
from shared.db.engine import make_engine, make_sessionmaker
from shared.db.migrate import upgrade
from shared.errors import InvalidInputError
from shared.jobs import (
    FETCH,
    ExportFileSource,
    FileTarget,
    JobParams,
    TerminalTarget,
    parse_params,
    submit_job,
)


class RecordingEnqueuer:
    def __init__(self) -> None:
        self.sent: list[tuple[str, tuple[str, ...]]] = []

    def enqueue(self, task_name: str, *args: str) -> None:
        self.sent.append((task_name, args))


def test_params_need_absolute_paths_and_unique_targets() -> None:
    with pytest.raises(InvalidInputError, match=r"source\.export_file\.path"):
        parse_params({"source": {"kind": "export_file", "path": "rel.json"}})
    with pytest.raises(InvalidInputError, match="listed twice"):
        parse_params(
            {
                "source": {"kind": "export_file", "path": "/a.json"},
                "destinations": [{"kind": "terminal"}, {"kind": "terminal"}],
            }
        )
    with pytest.raises(InvalidInputError, match="format"):
        parse_params({"source": {"kind": "export_file", "path": "/a.json"}, "format": "poem"})
    params = parse_params(
        {
            "source": {"kind": "export_file", "path": "/a.json"},
            "destinations": [{"kind": "file", "path": "/o.md"}],
        }
    )
    assert params.destinations == [FileTarget(path="/o.md")]
    assert TerminalTarget().key == "terminal" and FileTarget(path="/o.md").key == "file:/o.md"


@pytest.mark.parametrize("field", ["after", "before"])
def test_window_times_out_of_range_are_refused(field: str) -> None:
    source = {
        "kind": "discord_channel",
        "channel_id": "123456789012345678",
        "after": "2026-01-01T00:00:00Z",
        field: "9999-12-31T00:00:00Z",
    }
    with pytest.raises(InvalidInputError, match=rf"source.discord_channel.{field}: .* outside"):
        parse_params({"source": source})


def test_submit_records_then_enqueues_and_honours_idempotency(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    upgrade(url)
    engine = make_engine(url)
    factory = make_sessionmaker(engine)
    enqueuer = RecordingEnqueuer()
    params = JobParams(source=ExportFileSource(path="/x.json"))
    first = submit_job(factory, enqueuer, params=params, origin="api", idempotency_key="k1")
    again = submit_job(factory, enqueuer, params=params, origin="api", idempotency_key="k1")
    other = submit_job(factory, enqueuer, params=params, origin="api")
    assert first.created and not again.created and again.job_id == first.job_id
    assert other.created and other.job_id != first.job_id
    assert enqueuer.sent == [(FETCH, (str(first.job_id),)), (FETCH, (str(other.job_id),))]
    with factory() as session:
        assert session.scalar(select(func.count()).select_from(Job)) == 2
        job = session.get(Job, first.job_id)
        assert job is not None and job.status == "queued" and job.params["format"] == "structured"
    engine.dispose()
