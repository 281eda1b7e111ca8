"""The embedded mode with an LLM: SQLite, in-process broker, worker, limits and stores.

The LLM comes from the environment (``LLM_BASE_URL``, ``OPENAI_API_KEY``, ``LLM_*``) through
``workers.resources``, exactly as ``summarybot summarize`` would build it.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select

from producers.cli.jobrun import RunOptions, run_summary_job
from schema.models.jobs import Summary
from schema.models.usage import UsageLedger
from shared.db.engine import make_engine, make_sessionmaker
from shared.settings import load_settings
from shared.summarize.content import SummaryFormat
from shared.summarize.llm.prompts import PROMPT_VERSION
from tests.fakes.openai_server import FakeConfig, FakeOpenAIServer
from tests.perf.export_data import build_large_export


@pytest.fixture
def fake() -> Iterator[FakeOpenAIServer]:
    with FakeOpenAIServer(FakeConfig(api_keys=frozenset({"sk-embedded"}))) as server:
        yield server


def test_summarize_command_uses_the_llm_when_configured(
    fake: FakeOpenAIServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    for name, value in {
        "LLM_BASE_URL": fake.base_url,
        "OPENAI_API_KEY": "sk-embedded",
        "LLM_PROVIDER": "openai",
        "LLM_SINGLE_CALL_TOKENS": "0",
        "LLM_MAP_INPUT_TOKENS": "2500",
        "LLM_REQUEST_TIMEOUT": "5",
    }.items():
        monkeypatch.setenv(name, value)
    settings = load_settings(data_dir=tmp_path / "data")
    export = build_large_export(tmp_path / "export.json", 600)
    job = run_summary_job(
        settings, RunOptions(export=export, format=SummaryFormat.DETAILED, as_json=True)
    )
    assert job.status == "completed"
    assert f'"prompt_version": "{PROMPT_VERSION}"' in capsys.readouterr().out
    engine = make_engine(settings.effective_database_url)
    try:
        with make_sessionmaker(engine)() as session:
            summary = session.scalars(select(Summary).where(Summary.job_id == job.id)).one()
            kinds = list(
                session.scalars(select(UsageLedger.kind).where(UsageLedger.job_id == job.id))
            )
    finally:
        engine.dispose()
    assert summary.backend == "openai" and summary.model == "gpt-4o-mini"
    assert summary.format == "detailed" and summary.content["contributions"]
    assert kinds.count("map") == job.progress["chunks"] >= 3 and kinds.count("reduce") == 1
    assert fake.stats()["completions"] == len(kinds)
