"""Each LLM fault ends as the policy says: retry, fallback model, re-chunk, degraded, or failure."""

from __future__ import annotations

import random
from collections.abc import Callable

import pytest

from schema.models.tenancy import GuildSettings
from shared.llm.capabilities import server_key
from shared.llm.models import DEFAULT_MODELS
from tests.fakes.openai_server import FakeConfig, FakeModel
from tests.integration.pipeline_llm.conftest import API_KEY
from tests.integration.pipeline_llm.harness import Harness, channel, irc_messages

pytestmark = pytest.mark.integration


def _guild() -> str:
    return str(random.randrange(10**17, 10**18))


def _export(harness: Harness, name: str, count: int = 500, guild: str | None = None):
    guild = guild or _guild()
    where = channel(guild_id=guild)
    messages = irc_messages(count, guild_id=guild, channel_id=where.channel_id)
    return harness.export(name, messages, where), guild


def test_server_error_retries_the_map_task(make_harness: Callable[..., Harness]) -> None:
    harness = make_harness()
    # json_schema is known to work here: a 500 to it is the server's, not the format's (a 500
    # to a format not yet proven steps down the ladder instead of retrying the task).
    server = server_key(harness.fake.base_url, "gpt-4o-mini")
    harness.llm.client.capabilities.record(server, "json_schema", "ok", "worked before")
    harness.fake.inject("server_error", times=1)
    path, _ = _export(harness, "500")
    run = harness.run(path)
    assert run.job.status == "completed", run.job.error
    assert harness.fake.stats()["statuses"].get("500") == 1
    assert run.plan is not None and run.kinds()["map"] == run.plan.chunk_count
    sent = {body["response_format"]["type"] for body in harness.fake.requests_seen}
    assert sent == {"json_schema"}


def test_timeout_retries(make_harness: Callable[..., Harness]) -> None:
    harness = make_harness(request_timeout=1.0)
    harness.fake.inject("timeout", times=1, delay=2.0)
    path, _ = _export(harness, "timeout", 300)
    run = harness.run(path)
    assert run.job.status == "completed", run.job.error
    assert harness.fake.stats()["faults"] == {"timeout": 1}


def test_rate_limits_are_absorbed_inside_the_call(make_harness: Callable[..., Harness]) -> None:
    harness = make_harness()
    harness.fake.inject("rate_limit", times=2, retry_after=0.05)
    path, _ = _export(harness, "429", 300)
    run = harness.run(path)
    assert run.job.status == "completed", run.job.error
    assert harness.fake.stats()["rate_limited"] == 2
    assert run.job.redeliveries == 0


def test_broken_json_is_repaired_by_the_client(make_harness: Callable[..., Harness]) -> None:
    harness = make_harness()
    harness.fake.inject("invalid_json", times=1)
    path, _ = _export(harness, "json", 300)
    run = harness.run(path)
    assert run.job.status == "completed", run.job.error
    assert harness.fake.stats()["faults"] == {"invalid_json": 1}


def test_overload_moves_to_the_fallback_model(make_harness: Callable[..., Harness]) -> None:
    harness = make_harness(fallback_model="gpt-4o")
    harness.fake.inject("overloaded", times=1000, model="gpt-4o-mini")
    path, _ = _export(harness, "503")
    run = harness.run(path)
    assert run.job.status == "completed", run.job.error
    assert run.summary is not None and run.summary.model == "gpt-4o"
    assert {u.model for u in run.usage} == {"gpt-4o-2024-08-06"}
    assert run.content.backend == "openai" and not run.content.degraded


def test_quota_fails_the_job_clearly_without_the_fallback_opt_in(
    make_harness: Callable[..., Harness],
) -> None:
    harness = make_harness()
    harness.fake.inject("insufficient_quota", times=1000)
    path, _ = _export(harness, "quota")
    run = harness.run(path)
    assert run.job.status == "failed"
    assert run.job.error is not None and "out of quota or credit" in run.job.error
    assert run.summary is None


def test_quota_degrades_to_the_offline_summary_when_opted_in(
    make_harness: Callable[..., Harness],
) -> None:
    guild = _guild()
    harness = make_harness(degraded_fallback_guilds=frozenset({guild}))
    harness.fake.inject("insufficient_quota", times=1000)
    path, _ = _export(harness, "quota-degraded", guild=guild)
    run = harness.run(path)
    assert run.job.status == "completed", run.job.error
    content = run.content
    assert content.degraded and content.backend == "extractive"
    assert run.summary is not None and run.summary.degraded
    assert "quota" in run.job.progress["degraded_reason"]
    assert "extractive" in run.kinds()
    assert content.cited_ids()


def test_an_open_circuit_degrades_before_any_call_when_opted_in(
    make_harness: Callable[..., Harness],
) -> None:
    harness = make_harness(degraded_fallback=True)
    harness.llm.client.breaker("gpt-4o-mini").trip("http_500", open_seconds=60)
    path, _ = _export(harness, "open")
    run = harness.run(path)
    assert run.job.status == "completed", run.job.error
    assert run.content.degraded
    assert "keeps failing" in run.job.progress["degraded_reason"]
    assert harness.fake.stats()["requests"] == 0


def test_an_open_circuit_is_waited_out_without_the_opt_in(
    make_harness: Callable[..., Harness],
) -> None:
    harness = make_harness()
    harness.llm.client.breaker("gpt-4o-mini").trip("http_500", open_seconds=1.5)
    path, _ = _export(harness, "wait-open", 300)
    run = harness.run(path)
    assert run.job.status == "completed", run.job.error
    assert not run.content.degraded


def test_content_filter_fails_with_its_reason(make_harness: Callable[..., Harness]) -> None:
    harness = make_harness()
    harness.fake.inject("content_filter", times=1000)
    path, _ = _export(harness, "filter", 300)
    run = harness.run(path)
    assert run.job.status == "failed"
    assert run.job.error == "The LLM provider's content filter blocked this summary."


@pytest.mark.parametrize("dialect", ["openai", "llamacpp"])
def test_context_overflow_from_the_server_rechunks(
    dialect: str, make_harness: Callable[..., Harness]
) -> None:
    # llama.cpp words it its own way (exceed_context_size_error): the same split must follow.
    models = {
        m.name: FakeModel(m.name, m.context_window, m.max_output_tokens) for m in DEFAULT_MODELS
    }
    models["tiny"] = FakeModel("tiny", 6000, 2000)
    harness = make_harness(
        model="tiny",
        # The client believes the model is large: only the server knows better.
        models={"tiny": {"context_window": 200_000, "max_output_tokens": 2000}},
        map_input_tokens=6000,
        max_output_tokens=1500,
    )
    harness.fake.config = FakeConfig(api_keys=frozenset({API_KEY}), models=models, dialect=dialect)
    path, _ = _export(harness, f"overflow-{dialect}", 700)
    run = harness.run(path)
    assert run.job.status == "completed", run.job.error
    assert harness.fake.stats()["statuses"].get("400", 0) >= 1
    assert run.plan is not None and run.kinds()["map"] > run.plan.chunk_count
    assert run.content.cited_ids()


def test_over_budget_fails_before_spending(make_harness: Callable[..., Harness]) -> None:
    harness = make_harness()
    guild = _guild()
    with harness.session_factory() as session, session.begin():
        session.add(GuildSettings(guild_id=guild, monthly_token_budget=5_000))
    path, _ = _export(harness, "budget", guild=guild)
    run = harness.run(path)
    assert run.job.status == "failed"
    assert run.job.error is not None
    assert run.job.error.startswith("this summary needs about ")
    assert "monthly budget of 5,000 tokens" in run.job.error
    assert harness.fake.stats()["requests"] == 0
    assert harness.keys("scratch:*") == []


def test_over_budget_degrades_by_policy(make_harness: Callable[..., Harness]) -> None:
    harness = make_harness(over_budget="degrade")
    guild = _guild()
    with harness.session_factory() as session, session.begin():
        session.add(GuildSettings(guild_id=guild, monthly_token_budget=5_000))
    path, _ = _export(harness, "budget-degrade", guild=guild)
    run = harness.run(path)
    assert run.job.status == "completed", run.job.error
    assert run.content.degraded
    assert "monthly budget" in run.job.progress["degraded_reason"]
    assert harness.fake.stats()["requests"] == 0


def test_within_budget_runs_and_is_recorded_for_the_guild(
    make_harness: Callable[..., Harness],
) -> None:
    harness = make_harness()
    guild = _guild()
    with harness.session_factory() as session, session.begin():
        session.add(GuildSettings(guild_id=guild, monthly_token_budget=10_000_000))
    path, _ = _export(harness, "budget-ok", guild=guild)
    run = harness.run(path)
    assert run.job.status == "completed", run.job.error
    assert {u.guild_id for u in run.usage} == {guild}
    assert run.plan is not None
    spent = sum(u.prompt_tokens + u.completion_tokens for u in run.usage)
    # The estimate that was checked against the budget is in the right range.
    assert 0.5 * spent < run.plan.estimated_tokens < 2 * spent


def test_a_circuit_opened_by_quota_fails_at_once(make_harness: Callable[..., Harness]) -> None:
    harness = make_harness()
    harness.llm.client.breaker("gpt-4o-mini").trip("insufficient_quota", open_seconds=60)
    path, _ = _export(harness, "quota-open", 300)
    run = harness.run(path)
    assert run.job.status == "failed"
    assert run.job.error is not None and "out of quota or credit" in run.job.error
    assert harness.fake.stats()["requests"] == 0
