from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import func, select

from schema.models.jobs import Job
from shared.crypto import SecretBox, generate_key
from shared.db.engine import make_engine, make_sessionmaker
from shared.db.migrate import upgrade
from shared.errors import ConflictError, InvalidInputError, NotFoundError
from shared.jobs import (
    FETCH,
    DiscordChannelSource,
    ExportFileSource,
    FileTarget,
    JobParams,
    TerminalTarget,
    parse_params,
)
from shared.services.core import OPERATOR, Actor, Core
from shared.services.jobs import cancel_job, submit_job
from tests.fakes.enqueuer import RecordingEnqueuer


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


def _core(tmp_path: Path, enqueuer: RecordingEnqueuer) -> Core:
    url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    upgrade(url)
    return Core(
        session_factory=make_sessionmaker(make_engine(url)),
        enqueuer=enqueuer,
        box=SecretBox([generate_key()]),
    )


def test_submit_records_then_enqueues_and_honours_idempotency(tmp_path: Path) -> None:
    enqueuer = RecordingEnqueuer()
    core = _core(tmp_path, enqueuer)
    params = JobParams(source=ExportFileSource(path="/x.json"))
    first = submit_job(core, OPERATOR, params, idempotency_key="k1")
    again = submit_job(core, OPERATOR, params, idempotency_key="k1")
    other = submit_job(core, OPERATOR, params)
    assert first.created and not again.created and again.job_id == first.job_id
    assert other.created and other.job_id != first.job_id
    assert enqueuer.sent == [(FETCH, (str(first.job_id),)), (FETCH, (str(other.job_id),))]
    with core.session_factory() as session:
        assert session.scalar(select(func.count()).select_from(Job)) == 2
        job = session.get(Job, first.job_id)
        assert job is not None and job.status == "queued" and job.params["format"] == "structured"
        assert job.origin == "cli" and job.requested_by == "cli" and job.guild_id is None


def test_only_the_operator_reads_files_or_writes_to_this_machine(tmp_path: Path) -> None:
    enqueuer = RecordingEnqueuer()
    core = _core(tmp_path, enqueuer)
    guild = Actor(origin="api", guild_id="123456789012345678", requested_by="api:k")
    with pytest.raises(InvalidInputError, match="only the operator"):
        submit_job(core, guild, JobParams(source=ExportFileSource(path="/etc/passwd.json")))
    channel_job = JobParams(
        source=DiscordChannelSource(channel_id="223456789012345678", limit=5),
        destinations=[FileTarget(path="/tmp/out.md")],
    )
    with pytest.raises(InvalidInputError, match="operator's command line"):
        submit_job(core, guild, channel_job)
    with pytest.raises(InvalidInputError, match="belongs to a Discord server"):
        submit_job(
            core,
            OPERATOR,
            JobParams(
                source=ExportFileSource(path="/x.json"),
                destinations=[{"kind": "channel", "channel_id": "323456789012345678"}],
            ),
        )
    with core.session_factory() as session:
        assert session.scalar(select(func.count()).select_from(Job)) == 0
    assert enqueuer.sent == []


def test_a_discord_job_needs_discord_access_before_anything_is_written(tmp_path: Path) -> None:
    enqueuer = RecordingEnqueuer()
    core = _core(tmp_path, enqueuer)
    guild = Actor(origin="api", guild_id="123456789012345678", requested_by="api:k")
    params = JobParams(source=DiscordChannelSource(channel_id="223456789012345678", limit=5))
    with pytest.raises(Exception, match="DISCORD_TOKEN") as caught:
        submit_job(core, guild, params)
    assert caught.type.__name__ == "ConfigError"
    with core.session_factory() as session:
        assert session.scalar(select(func.count()).select_from(Job)) == 0
    assert enqueuer.sent == []


def test_cancel_keeps_to_the_guild_and_to_unfinished_jobs(tmp_path: Path) -> None:
    core = _core(tmp_path, RecordingEnqueuer())
    job = submit_job(core, OPERATOR, JobParams(source=ExportFileSource(path="/x.json"))).job_id
    guild = Actor(origin="api", guild_id="123456789012345678")
    with pytest.raises(NotFoundError):
        cancel_job(core, guild, job)
    assert cancel_job(core, OPERATOR, job).status == "cancelled"
    assert cancel_job(core, OPERATOR, job).error == "cancelled by the operator"
    done = submit_job(core, OPERATOR, JobParams(source=ExportFileSource(path="/y.json"))).job_id
    with core.session_factory() as session, session.begin():
        row = session.get(Job, done)
        assert row is not None
        row.status = "completed"
    with pytest.raises(ConflictError, match="already ended as completed"):
        cancel_job(core, OPERATOR, done)
