"""Cost and time estimates of the first reply."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from producers.bot.estimates import (
    DEFAULT_OVERHEAD_S,
    DEFAULT_PER_MESSAGE_S,
    EtaModel,
    estimate_summary_cost,
    fit_eta,
)
from shared.llm.models import ModelRegistry, Usage, cost_of


def test_offline_summaries_are_free() -> None:
    line = estimate_summary_cost(
        messages=10_000, model=None, max_output_tokens=2000, tokens_per_message=45
    )
    assert line.text == "offline summarizer: free"
    assert line.max_tokens == 0 and line.estimate is None


def test_unknown_count_is_priced_later() -> None:
    model = ModelRegistry().get("gpt-4o-mini")
    line = estimate_summary_cost(
        messages=None, model=model, max_output_tokens=2000, tokens_per_message=45
    )
    assert "estimated once the messages are counted" in line.text
    assert line.max_tokens == 0


def test_one_call_fits_a_small_window() -> None:
    model = ModelRegistry().get("gpt-4o-mini")
    line = estimate_summary_cost(
        messages=200, model=model, max_output_tokens=2000, tokens_per_message=45
    )
    assert line.estimate is not None
    assert line.estimate.calls == 1
    assert line.estimate.prompt_tokens == 200 * 45 + 900
    assert line.estimate.max_completion_tokens == 2000
    expected = cost_of(Usage(prompt_tokens=9900, completion_tokens=1000), model)
    assert line.estimate.expected_usd == pytest.approx(expected)
    assert "gpt-4o-mini" in line.text and "$" in line.text
    assert line.max_tokens == 9900 + 2000


def test_big_windows_are_split_into_map_calls_plus_a_reduce() -> None:
    model = ModelRegistry().get("gpt-4")  # 8k context: a small window splits
    line = estimate_summary_cost(
        messages=1000, model=model, max_output_tokens=1000, tokens_per_message=45
    )
    assert line.estimate is not None
    assert line.estimate.calls > 2
    single = estimate_summary_cost(
        messages=10, model=model, max_output_tokens=1000, tokens_per_message=45
    )
    assert single.estimate is not None and single.estimate.calls == 1
    assert line.estimate.max_usd > single.estimate.max_usd


def test_eta_defaults_until_enough_jobs() -> None:
    model = fit_eta([(100, 3.0), (200, 4.0)])
    assert model == EtaModel()
    assert model.seconds(None) == DEFAULT_OVERHEAD_S + 200 * DEFAULT_PER_MESSAGE_S
    start = datetime(2026, 1, 1, tzinfo=UTC)
    assert model.ready_at(start, 0) == start + timedelta(seconds=DEFAULT_OVERHEAD_S)


def test_eta_fits_a_line_through_recent_jobs() -> None:
    samples = [(n, 2.0 + 0.01 * n) for n in (100, 500, 1000, 5000)]
    model = fit_eta(samples)
    assert model.samples == 4
    assert model.overhead_s == pytest.approx(2.0)
    assert model.per_message_s == pytest.approx(0.01)
    assert model.seconds(2000) == pytest.approx(22.0)


def test_eta_is_never_negative_or_instant() -> None:
    falling = fit_eta([(100, 50.0), (200, 30.0), (300, 10.0)])
    assert falling.per_message_s == 0.0
    assert falling.overhead_s >= 1.0
    same = fit_eta([(100, 5.0), (100, 7.0), (100, 9.0), (-1, 1.0)])
    assert same.per_message_s == 0.0 and same.overhead_s == pytest.approx(7.0)
