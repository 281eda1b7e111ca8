"""Model registry, usage arithmetic and cost estimates."""

from __future__ import annotations

import pytest

from shared.errors import ConfigError
from shared.llm.models import ModelInfo, ModelRegistry, Usage, cost_of, estimate_cost


def test_lookup_by_name_and_snapshot() -> None:
    registry = ModelRegistry()
    mini = registry.get("gpt-4o-mini")
    assert (mini.context_window, mini.max_output_tokens) == (128_000, 16_384)
    snapshot = registry.get("gpt-4o-mini-2024-07-18")
    assert snapshot.name == "gpt-4o-mini-2024-07-18"
    assert snapshot.input_per_mtok == mini.input_per_mtok
    # An older snapshot with its own price is not folded into the family.
    assert registry.get("gpt-4o-2024-05-13").input_per_mtok == 5.0
    assert registry.get("o3-mini").reasoning
    assert mini.max_input_tokens == 128_000 - 16_384
    assert mini.fits(100_000, 16_000) and not mini.fits(120_000, 16_000)


def test_unknown_model_error_says_how_to_fix() -> None:
    with pytest.raises(ConfigError, match="context_window and max_output_tokens"):
        ModelRegistry().get("llama3")
    assert ModelRegistry().find("llama3") is None


def test_extend_adds_and_overrides() -> None:
    registry = ModelRegistry().extend(
        {
            "llama3.1:8b": {
                "context_window": 8192,
                "max_output_tokens": 2048,
                "limit_param": "max_tokens",
            },
            "gpt-4o-mini": {"input_per_mtok": 0.1},
            "custom": ModelInfo(name="x", context_window=4096, max_output_tokens=512),
        }
    )
    assert registry.get("llama3.1:8b").encoding == "o200k_base"
    assert registry.get("gpt-4o-mini").input_per_mtok == 0.1
    assert registry.get("gpt-4o-mini").context_window == 128_000
    assert registry.get("custom").name == "custom"
    assert "llama3.1:8b" in registry.names


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ({"context_window": 8192}, "max_output_tokens"),
        ({"context_window": 4096, "max_output_tokens": 8192}, "must be below"),
        (
            {"context_window": 4096, "max_output_tokens": 512, "encoding": "p50k"},
            "not available offline",
        ),
    ],
)
def test_extend_rejects_bad_entries(entry: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        ModelRegistry().extend({"m": entry})


def test_usage_from_api_and_sum() -> None:
    usage = Usage.from_api(
        {
            "prompt_tokens": 1000,
            "completion_tokens": 200,
            "prompt_tokens_details": {"cached_tokens": 400},
        }
    )
    assert usage.total_tokens == 1200
    assert usage.cached_tokens == 400
    total = usage + Usage(prompt_tokens=10, completion_tokens=5, calls=1)
    assert total.to_dict() == {
        "prompt_tokens": 1010,
        "completion_tokens": 205,
        "cached_tokens": 400,
        "total_tokens": 1215,
        "calls": 2,
    }
    assert Usage.from_api(None).calls == 1


@pytest.mark.parametrize(
    "raw",
    [
        {"prompt_tokens": "many", "completion_tokens": None, "prompt_tokens_details": "x"},
        {"prompt_tokens": float("nan"), "completion_tokens": float("inf")},
        {"prompt_tokens": -5, "completion_tokens": True, "prompt_tokens_details": [1]},
    ],
)
def test_usage_mistyped_counts_read_as_absent(raw: dict[str, object]) -> None:
    usage = Usage.from_api(raw)
    assert (usage.prompt_tokens, usage.completion_tokens, usage.cached_tokens) == (0, 0, 0)
    assert usage.calls == 1


def test_usage_whole_floats_count() -> None:
    assert Usage.from_api({"prompt_tokens": 12.0, "completion_tokens": 3}).total_tokens == 15


def test_cost_uses_cached_rate() -> None:
    model = ModelRegistry().get("gpt-4o")
    usage = Usage(prompt_tokens=1_000_000, completion_tokens=100_000, cached_tokens=200_000)
    assert cost_of(usage, model) == pytest.approx(0.8 * 2.5 + 0.2 * 1.25 + 0.1 * 10.0)
    no_cache_price = ModelRegistry().get("gpt-4")
    assert cost_of(
        Usage(prompt_tokens=1_000_000, cached_tokens=500_000), no_cache_price
    ) == pytest.approx(30.0)


def test_estimate_cost_bounds() -> None:
    model = ModelRegistry().get("gpt-4o-mini")
    estimate = estimate_cost(
        model=model, prompt_tokens=2_000_000, max_completion_tokens=100_000, calls=40
    )
    assert estimate.max_usd == pytest.approx(2 * 0.15 + 0.1 * 0.6)
    assert estimate.expected_usd == pytest.approx(2 * 0.15 + 0.05 * 0.6)
    assert estimate.max_total_tokens == 2_100_000
    with pytest.raises(ValueError, match="negative"):
        estimate_cost(model=model, prompt_tokens=-1, max_completion_tokens=0)
    with pytest.raises(ValueError, match="between 0 and 1"):
        estimate_cost(
            model=model, prompt_tokens=1, max_completion_tokens=0, expected_completion_ratio=2
        )
