"""Whole jobs against the OpenAI-compatible servers people run, through the real pipeline.

The fake plays a vLLM, llama.cpp or LiteLLM server without ``json_schema``, a server that
ignores ``response_format`` (an Ollama-like one), a model that writes ``[m22]`` inside its
text, one whose every rung fails, and a proxy that counts tokens its own way and charges
failed calls.  Every summary must cite real messages of the window, with no alias left in
any text a reader sees.
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable
from typing import Any

import pytest

from shared.domain.messages import ChatMessage
from shared.summarize.content import SummaryContent, SummaryFormat
from tests.integration.pipeline_llm.harness import Harness, Run, channel, irc_messages

pytestmark = pytest.mark.integration

#: An alias left in text: "[m22]", "(m3", "【m4", or a bare "m12" the source never wrote.
LEAK = re.compile(r"[\[(【（]\s*[mM]\d|(?<![\w.-])m\d{1,7}(?![\w-])")


def _guild() -> str:
    return str(random.randrange(10**17, 10**18))


def _run(
    harness: Harness, name: str, count: int, fmt: SummaryFormat = SummaryFormat.STRUCTURED
) -> tuple[Run, dict[str, ChatMessage]]:
    guild = _guild()
    where = channel(guild_id=guild)
    messages = list(irc_messages(count, guild_id=guild, channel_id=where.channel_id))
    run = harness.run(harness.export(name, messages, where), fmt=fmt)
    return run, {m.id: m for m in messages}


def texts_of(content: SummaryContent) -> list[str]:
    """Every string of a summary that a reader sees."""
    dumped: dict[str, Any] = content.model_dump(mode="json")
    found: list[str] = [dumped["overview"]]
    for section in ("topics", "key_points", "decisions", "open_questions", "technical"):
        for item in dumped[section]:
            found.extend(str(item.get(k) or "") for k in ("title", "summary", "text"))
    for item in dumped["action_items"]:
        found.extend(str(item.get(k) or "") for k in ("task", "owner", "due"))
    for contribution in dumped["contributions"]:
        found.append(contribution["participant"])
        found.extend(p["text"] for p in contribution["points"])
    return found


def assert_cited_summary(run: Run, by_id: dict[str, ChatMessage]) -> SummaryContent:
    """A completed, non-degraded summary whose every citation is a real message of the window."""
    assert run.job.status == "completed", run.job.error
    content = run.content
    assert not content.degraded and content.backend != "extractive"
    assert content.cited_ids() and set(content.citations) == content.cited_ids()
    for message_id, citation in content.citations.items():
        message = by_id[message_id]
        assert citation.timestamp == message.timestamp
        assert citation.author == message.author_name
        assert citation.jump_url.endswith(f"/{message_id}")
    source = " ".join(m.content for m in by_id.values())
    for text in texts_of(content):
        for leak in LEAK.findall(text):
            assert re.search(rf"(?<![\w.-]){re.escape(leak)}(?![\w-])", source), (leak, text)
    return content


def statuses(harness: Harness) -> dict[str, int]:
    return dict(harness.fake.stats()["statuses"])


@pytest.mark.parametrize("dialect", ["vllm", "vllm-legacy", "llamacpp"])
def test_a_server_without_json_schema_writes_a_cited_summary_and_is_learnt_once(
    dialect: str, make_harness: Callable[..., Harness]
) -> None:
    harness = make_harness()
    harness.fake.configure(supports_json_schema=False, dialect=dialect, answer_style="own_json")
    run, by_id = _run(harness, f"no-schema-{dialect}", 500)
    assert_cited_summary(run, by_id)
    assert run.plan is not None and run.plan.chunk_count >= 3
    # One 400 for the whole job, however many map steps ran at once; no repair round.
    assert statuses(harness) == {"400": 1, "200": run.plan.chunk_count + 1}
    assert run.kinds() == {"map": run.plan.chunk_count, "reduce": 1}
    # A second worker sharing the Redis (a new client, nothing learnt in-process) pays nothing.
    second = Harness(
        settings=harness.settings,
        session_factory=harness.session_factory,
        redis=harness.redis,
        fake=harness.fake,
        worker=harness.worker,
        tmp=harness.tmp,
        prefix=harness.prefix,
        llm_settings=harness.llm_settings,
    )
    rerun, by_id = _run(second, f"no-schema-{dialect}-again", 300)
    assert_cited_summary(rerun, by_id)
    assert statuses(harness)["400"] == 1
    second.llm.close()


@pytest.mark.parametrize("style", ["own_json", "json_in_prose", "markdown"])
def test_a_server_that_ignores_response_format_still_gives_a_cited_summary(
    style: str, make_harness: Callable[..., Harness]
) -> None:
    harness = make_harness()
    harness.fake.configure(answer_style=style)
    run, by_id = _run(harness, f"ignores-{style}", 500, SummaryFormat.DETAILED)
    content = assert_cited_summary(run, by_id)
    assert content.topics and content.key_points and content.contributions
    assert "400" not in statuses(harness)


@pytest.mark.parametrize("fmt", [SummaryFormat.STRUCTURED, SummaryFormat.DETAILED])
def test_inline_aliases_become_citations_and_never_reach_a_reader(
    fmt: SummaryFormat, make_harness: Callable[..., Harness]
) -> None:
    harness = make_harness()
    harness.fake.configure(inline_aliases=True)
    run, by_id = _run(harness, f"inline-{fmt}", 500, fmt)
    content = assert_cited_summary(run, by_id)
    assert content.overview
    assert run.job.progress["llm"]["inline_aliases_removed"] > 0  # m99999 and friends


def test_every_rung_failing_degrades_to_the_offline_summary_when_allowed(
    make_harness: Callable[..., Harness],
) -> None:
    harness = make_harness(degraded_fallback=True, single_call_tokens=6000)
    harness.fake.configure(
        supports_json_schema=False,
        supports_json_object=False,
        dialect="litellm",
        answer_style="uncited_prose",
    )
    run, by_id = _run(harness, "unusable-degraded", 60)
    assert run.job.status == "completed", run.job.error
    content = run.content
    assert content.degraded and content.backend == "extractive"
    assert run.summary is not None and run.summary.degraded
    reason = run.job.progress["degraded_reason"]
    assert reason.startswith("the LLM gave no usable summary in any output format")
    assert "json_schema: rejected by the server" in reason and "text:" in reason
    assert content.cited_ids() and content.cited_ids() <= set(by_id)
    # The two text calls were made and paid for: they are on the ledger, beside the offline row.
    assert run.kinds() == {"single": 1, "repair": 1, "extractive": 1}
    billed = harness.fake.stats()
    assert billed["statuses"] == {"400": 2, "200": 2}
    assert sum(u.prompt_tokens for u in run.usage) == billed["prompt_tokens"]
    assert run.summary is not None and run.summary.prompt_tokens == billed["prompt_tokens"]


def test_every_rung_failing_fails_the_job_with_the_cause_and_the_fix(
    make_harness: Callable[..., Harness],
) -> None:
    harness = make_harness()
    harness.fake.configure(
        supports_json_schema=False,
        supports_json_object=False,
        dialect="litellm",
        answer_style="uncited_prose",
    )
    run, _ = _run(harness, "unusable-fails", 400)
    assert run.job.status == "failed"
    error = run.job.error or ""
    assert error.startswith("The LLM gave no usable summary in any output format (")
    assert "json_object: rejected by the server" in error
    assert "LLM_DEGRADED_FALLBACK=true" in error
    assert run.summary is None


def test_token_accounting_follows_the_server_and_keeps_charged_failures(
    make_harness: Callable[..., Harness],
) -> None:
    harness = make_harness()
    harness.fake.configure(usage_counting="chars4", charge_failures=True)
    harness.fake.inject("server_error", times=1)
    run, by_id = _run(harness, "accounting", 400)
    assert_cited_summary(run, by_id)
    billed = harness.fake.stats()
    assert billed["charged_failures"] == 1
    # The ledger holds what the server billed, the failed call included, in its own counts.
    assert sum(u.prompt_tokens for u in run.usage) == billed["prompt_tokens"]
    assert sum(u.completion_tokens for u in run.usage) == billed["completion_tokens"]
    assert run.plan is not None
    assert len(run.usage) == run.plan.chunk_count + 1 + 1  # maps, the final call, the 500
    summary = run.summary
    assert summary is not None
    assert summary.prompt_tokens == billed["prompt_tokens"]
    assert summary.completion_tokens == billed["completion_tokens"]
