"""The whole LLM pipeline for every format: plan → map tasks → barrier → reduce → summary."""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest

from schema.models.chunks import SummaryReduction
from shared.pipeline.llm.mapreduce import MAP_CHUNK
from shared.summarize.content import SummaryFormat
from shared.summarize.llm import prompts
from tests.fakes.enqueuer import RecordingEnqueuer
from tests.integration.pipeline_llm.harness import Harness, channel, irc_messages

pytestmark = pytest.mark.integration

GUILD = "1085131932217520185"
CHANNEL_ID = "1191512658436472873"


def _messages(count: int) -> list:
    return list(irc_messages(count, guild_id=GUILD, channel_id=CHANNEL_ID))


@pytest.mark.parametrize("fmt", list(SummaryFormat))
def test_every_format_through_map_and_reduce(
    fmt: SummaryFormat, make_harness: Callable[..., Harness]
) -> None:
    harness = make_harness()
    messages = _messages(700)
    by_id = {m.id: m for m in messages}
    run = harness.run(harness.export(f"fmt-{fmt}", messages, channel()), fmt=fmt)

    assert run.job.status == "completed", run.job.error
    content = run.content
    summary = run.summary
    assert summary is not None and run.plan is not None
    assert content.format is fmt and content.backend == "openai" and not content.degraded
    assert summary.model == "gpt-4o-mini" and summary.prompt_version == prompts.PROMPT_VERSION
    # Several chunks, one map call each, one final call; usage adds up on the summary.
    assert run.plan.chunk_count >= 4
    assert run.kinds() == {"map": run.plan.chunk_count, "reduce": 1}
    assert summary.prompt_tokens == run.prompt_tokens > 0
    assert summary.completion_tokens == sum(u.completion_tokens for u in run.usage) > 0
    assert summary.cost_usd > 0
    # Every citation is a real message of the window, with its true author and time.
    assert content.cited_ids() and set(content.citations) == content.cited_ids()
    for message_id, citation in content.citations.items():
        message = by_id[message_id]
        assert citation.timestamp == message.timestamp
        assert citation.jump_url.endswith(f"/{GUILD}/{CHANNEL_ID}/{message_id}")
    sections = {
        SummaryFormat.BRIEF: content.key_points,
        SummaryFormat.STRUCTURED: content.topics,
        SummaryFormat.DETAILED: content.contributions,
        SummaryFormat.TECHNICAL: content.technical,
    }
    assert sections[fmt]
    assert content.coverage.messages_total == 700
    first, last = messages[0].timestamp, messages[-1].timestamp
    assert content.coverage.start is not None and content.coverage.end is not None
    assert first <= content.coverage.start < content.coverage.end <= last
    assert content.coverage.end - content.coverage.start > (last - first) / 2  # whole window
    assert content.participants and sum(p.messages for p in content.participants) == (
        content.coverage.messages_used
    )
    # The final call saw notes, never the transcript; the map calls saw transcript chunks.
    final = harness.fake.requests_seen[-1]
    assert "<notes>" in final["messages"][1]["content"]
    assert "<transcript>" not in final["messages"][1]["content"]
    assert final["response_format"]["json_schema"]["name"] == prompts.schema_name("final", fmt)
    # Notes and scratch are gone once the summary is stored.
    assert harness.chunk_rows(run.job.id) == []
    assert harness.keys(f"scratch:{run.job.id}:*") == []
    assert run.job.progress["llm"]["citations_dropped"] == 0


def test_short_window_is_one_call(make_harness: Callable[..., Harness]) -> None:
    harness = make_harness(single_call_tokens=6000)
    run = harness.run(harness.export("short", _messages(60), channel()))
    assert run.job.status == "completed", run.job.error
    assert run.kinds() == {"single": 1}
    assert run.plan is None
    request = harness.fake.requests_seen[-1]
    assert "<transcript>" in request["messages"][1]["content"]
    assert run.content.cited_ids()


def test_notes_are_merged_level_by_level_when_they_do_not_fit(
    make_harness: Callable[..., Harness],
) -> None:
    harness = make_harness(reduce_input_tokens=3000, map_input_tokens=1500)
    run = harness.run(harness.export("deep", _messages(900), channel()))
    assert run.job.status == "completed", run.job.error
    kinds = run.kinds()
    assert run.plan is not None and kinds["map"] == run.plan.chunk_count
    assert kinds["reduce"] >= 3  # at least two merges and the final call
    assert run.job.progress["llm"]["merges"] >= 2
    # Every merge saw notes only.
    merges = [
        r
        for r in harness.fake.requests_seen
        if r["response_format"]["json_schema"]["name"] == "notes"
    ]
    assert all("<notes>" in r["messages"][1]["content"] for r in merges[kinds["map"] :])
    assert run.content.cited_ids()


def test_a_second_run_reuses_every_map_note(make_harness: Callable[..., Harness]) -> None:
    harness = make_harness()
    path = harness.export("twice", _messages(500), channel())
    first = harness.run(path)
    second = harness.run(path, fmt=SummaryFormat.BRIEF)
    assert first.job.status == second.job.status == "completed"
    assert first.plan is not None and second.plan is not None
    assert second.plan.cached_chunks == second.plan.chunk_count == first.plan.chunk_count
    assert second.kinds() == {"reduce": 1}  # only the final call was paid for
    assert second.prompt_tokens < first.prompt_tokens / 3
    assert second.content.format is SummaryFormat.BRIEF and second.content.key_points


def test_one_reduce_even_when_every_map_task_is_delivered_twice(
    make_harness: Callable[..., Harness],
) -> None:
    harness = make_harness()

    harness.services.enqueuer = RecordingEnqueuer(
        target=harness.services.enqueuer,
        duplicate={MAP_CHUNK},  # at-least-once delivery
    )
    run = harness.run(harness.export("dupes", _messages(600), channel()))
    assert run.job.status == "completed", run.job.error
    assert run.plan is not None
    # Leases and the done-check keep duplicates from paying again; one claim, one final call.
    assert run.kinds()["map"] == run.plan.chunk_count
    assert run.kinds()["reduce"] == 1
    with harness.session_factory() as session:
        assert session.get(SummaryReduction, run.job.id) is not None


def test_a_long_reduce_hands_over_to_new_tasks_without_paying_twice(
    make_harness: Callable[..., Harness], monkeypatch: pytest.MonkeyPatch
) -> None:
    from shared.pipeline.llm import mapreduce, reduce_step

    monkeypatch.setattr(reduce_step, "CONTINUE_AFTER", 0.0)  # hand over after every merge
    harness = make_harness(reduce_input_tokens=3000, map_input_tokens=1500)
    recorder = RecordingEnqueuer(target=harness.services.enqueuer)
    harness.services.enqueuer = recorder
    run = harness.run(harness.export("handover", _messages(900), channel()))
    assert run.job.status == "completed", run.job.error
    merges = [
        json.dumps(r["messages"], sort_keys=True)
        for r in harness.fake.requests_seen
        if r["response_format"]["json_schema"]["name"] == "notes"
        and "<notes>" in r["messages"][1]["content"]
    ]
    assert len(merges) >= 2
    assert recorder.names().count(mapreduce.REDUCE) == len(
        merges
    )  # the barrier's, then one hand-over per merge but the last
    assert len(set(merges)) == len(merges)  # no merge was sent (and paid for) twice
    assert run.kinds()["reduce"] == len(merges) + 1
