"""What a summary will cost and when it will be ready, shown in the first reply.

Cost: the prompt is estimated from the message count (an average of tokens per message plus the
fixed instructions of each call), split into as many map calls as the model's context needs, plus
one reduce call when there is more than one; :func:`shared.llm.models.estimate_cost` prices it.
Without an LLM the offline summarizer runs, which is free.

Time: a straight line ``seconds = overhead + per_message × messages`` fitted (least squares) to
the most recent finished jobs, so the estimate follows what this deployment actually does; with
too few jobs a conservative default applies.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from shared.llm.models import CostEstimate, ModelInfo, estimate_cost

__all__ = [
    "DEFAULT_OVERHEAD_S",
    "DEFAULT_PER_MESSAGE_S",
    "CostLine",
    "EtaModel",
    "estimate_summary_cost",
    "fit_eta",
]

#: Instructions, format description and schema sent with every call (tokens).
PROMPT_OVERHEAD_TOKENS = 900
#: Defaults until enough jobs have finished to fit the line.
DEFAULT_OVERHEAD_S = 8.0
DEFAULT_PER_MESSAGE_S = 0.01
_MIN_SAMPLES = 3


@dataclass(frozen=True)
class CostLine:
    """The cost part of the first reply."""

    text: str
    estimate: CostEstimate | None = None

    @property
    def max_tokens(self) -> int:
        """Tokens the job may consume at most (0 offline)."""
        return self.estimate.max_total_tokens if self.estimate else 0


def estimate_summary_cost(
    *,
    messages: int | None,
    model: ModelInfo | None,
    max_output_tokens: int,
    tokens_per_message: int,
) -> CostLine:
    """The cost of summarizing ``messages`` messages with ``model`` (None: offline, free)."""
    if model is None:
        return CostLine("offline summarizer: free")
    if messages is None:
        return CostLine(f"{model.name}: estimated once the messages are counted")
    content = max(1, messages) * tokens_per_message
    room = max(1_000, int(model.max_input_tokens * 0.8) - PROMPT_OVERHEAD_TOKENS)
    maps = max(1, math.ceil(content / room))
    calls = maps + (1 if maps > 1 else 0)
    prompt = content + calls * PROMPT_OVERHEAD_TOKENS
    if maps > 1:
        prompt += maps * max_output_tokens // 2  # the reduce call reads the map outputs
    output = min(max_output_tokens, model.max_output_tokens)
    estimate = estimate_cost(
        model=model, prompt_tokens=prompt, max_completion_tokens=calls * output, calls=calls
    )
    tokens = estimate.prompt_tokens + estimate.expected_completion_tokens
    return CostLine(
        f"≈ {tokens:,} tokens on {model.name}: ≈ ${estimate.expected_usd:.4f} "
        f"(at most ${estimate.max_usd:.4f})",
        estimate,
    )


@dataclass(frozen=True)
class EtaModel:
    """``seconds = overhead + per_message × messages``."""

    overhead_s: float = DEFAULT_OVERHEAD_S
    per_message_s: float = DEFAULT_PER_MESSAGE_S
    samples: int = 0

    def seconds(self, messages: int | None) -> float:
        """Expected run time of a job over ``messages`` messages (unknown: 200)."""
        return self.overhead_s + self.per_message_s * (200 if messages is None else messages)

    def ready_at(self, start: datetime, messages: int | None) -> datetime:
        """When a job started at ``start`` should be done."""
        return start + timedelta(seconds=self.seconds(messages))


def fit_eta(samples: Sequence[tuple[int, float]]) -> EtaModel:
    """Fit the line to ``(messages, seconds)`` of finished jobs; defaults when too few."""
    points = [(float(m), s) for m, s in samples if m >= 0 and s >= 0]
    if len(points) < _MIN_SAMPLES:
        return EtaModel()
    n = len(points)
    mean_x = sum(x for x, _ in points) / n
    mean_y = sum(y for _, y in points) / n
    var = sum((x - mean_x) ** 2 for x, _ in points)
    if var == 0:
        return EtaModel(overhead_s=max(1.0, mean_y), per_message_s=0.0, samples=n)
    slope = sum((x - mean_x) * (y - mean_y) for x, y in points) / var
    slope = max(0.0, slope)
    intercept = max(1.0, mean_y - slope * mean_x)
    return EtaModel(overhead_s=intercept, per_message_s=slope, samples=n)
