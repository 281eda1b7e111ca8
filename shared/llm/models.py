"""Model registry: context window, output limit, token field and prices of each model.

The built-in table holds list prices in USD per 1M tokens as published for the OpenAI models
(re-verify before billing: prices change and are kept in configuration for that reason).
:meth:`ModelRegistry.extend` adds or overrides entries from settings, which is how local models
(vLLM, Ollama, llama.cpp) and new snapshots are described.  A dated snapshot such as
``gpt-4o-mini-2024-07-18`` resolves to its family entry unless it has one of its own.

:func:`cost_of` prices a finished call from its :class:`Usage`; :func:`estimate_cost` gives the
bounds of a job before it runs, so a budget can be enforced before any token is spent.
:class:`Meter` collects one :class:`Charge` per call the server billed, failed calls included,
so a step can write every one of them to the usage ledger whatever happens next.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from shared.errors import ConfigError
from shared.llm.tokens import ENCODINGS, encoding_for_model

__all__ = [
    "DEFAULT_MODELS",
    "Charge",
    "CostEstimate",
    "Meter",
    "ModelInfo",
    "ModelRegistry",
    "Usage",
    "cost_of",
    "estimate_cost",
]

_SNAPSHOT = re.compile(r"-(?:\d{4}-\d{2}-\d{2}|\d{4})$")


class ModelInfo(BaseModel):
    """What the pipeline needs to know about one model."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1)
    context_window: int = Field(ge=256, description="prompt + completion tokens")
    max_output_tokens: int = Field(ge=16)
    input_per_mtok: float = Field(default=0.0, ge=0, description="USD per 1M uncached input")
    cached_input_per_mtok: float | None = Field(default=None, ge=0)
    output_per_mtok: float = Field(default=0.0, ge=0)
    encoding: str = Field(default="o200k_base")
    limit_param: Literal["max_completion_tokens", "max_tokens"] = "max_completion_tokens"
    reasoning: bool = Field(default=False, description="o-series/GPT-5: fixed temperature")
    supports_json_schema: bool = True

    @model_validator(mode="after")
    def _check_limits(self) -> ModelInfo:
        """Reject limits that cannot work together and encodings we cannot count offline."""
        if self.max_output_tokens >= self.context_window:
            raise ValueError(
                f"model {self.name}: max_output_tokens {self.max_output_tokens} must be below "
                f"context_window {self.context_window}"
            )
        if self.encoding not in ENCODINGS:
            raise ValueError(
                f"model {self.name}: encoding {self.encoding!r} is not available offline; "
                f"use one of {', '.join(ENCODINGS)}"
            )
        return self

    @property
    def max_input_tokens(self) -> int:
        """Largest prompt that still leaves room for the full output allowance."""
        return self.context_window - self.max_output_tokens

    def fits(self, prompt_tokens: int, max_tokens: int) -> bool:
        """True when a prompt of that size plus ``max_tokens`` fits the context window."""
        return prompt_tokens + max_tokens <= self.context_window


def _openai(
    name: str,
    context: int,
    output: int,
    price_in: float,
    price_cached: float | None,
    price_out: float,
    **extra: Any,
) -> ModelInfo:
    return ModelInfo(
        name=name,
        context_window=context,
        max_output_tokens=output,
        input_per_mtok=price_in,
        cached_input_per_mtok=price_cached,
        output_per_mtok=price_out,
        encoding=encoding_for_model(name),
        **extra,
    )


#: List prices (USD / 1M tokens) as of 2025-2026 public pricing pages; see the module docstring.
DEFAULT_MODELS: tuple[ModelInfo, ...] = (
    _openai("gpt-4o", 128_000, 16_384, 2.50, 1.25, 10.00),
    _openai("gpt-4o-2024-05-13", 128_000, 4_096, 5.00, None, 15.00),
    _openai("gpt-4o-mini", 128_000, 16_384, 0.15, 0.075, 0.60),
    _openai("gpt-4.1", 1_047_576, 32_768, 2.00, 0.50, 8.00),
    _openai("gpt-4.1-mini", 1_047_576, 32_768, 0.40, 0.10, 1.60),
    _openai("gpt-4.1-nano", 1_047_576, 32_768, 0.10, 0.025, 0.40),
    _openai("gpt-4-turbo", 128_000, 4_096, 10.00, None, 30.00),
    _openai("gpt-4", 8_192, 4_096, 30.00, None, 60.00),
    _openai("gpt-3.5-turbo", 16_385, 4_096, 0.50, None, 1.50),
    _openai("o3-mini", 200_000, 100_000, 1.10, 0.55, 4.40, reasoning=True),
    _openai("o4-mini", 200_000, 100_000, 1.10, 0.275, 4.40, reasoning=True),
)


def _token_count(value: Any) -> int:
    """A token count as a server sent it; anything but a finite non-negative number (a
    string, NaN, null, a negative) reads as absent (0): the caller then counts the tokens."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return 0
    if not math.isfinite(value) or value < 0:
        return 0
    return int(value)


@dataclass(frozen=True, slots=True)
class Usage:
    """Tokens one call (or a sum of calls) consumed, as the server reported them."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0
    calls: int = 0

    @property
    def total_tokens(self) -> int:
        """Prompt plus completion tokens."""
        return self.prompt_tokens + self.completion_tokens

    def __add__(self, other: Usage) -> Usage:
        return Usage(
            prompt_tokens=self.prompt_tokens + other.prompt_tokens,
            completion_tokens=self.completion_tokens + other.completion_tokens,
            cached_tokens=self.cached_tokens + other.cached_tokens,
            calls=self.calls + other.calls,
        )

    @classmethod
    def from_api(cls, usage: Any) -> Usage:
        """Read the ``usage`` object (SDK model or dict) of a chat completion response."""
        if usage is None:
            return cls(calls=1)
        data = usage if isinstance(usage, Mapping) else usage.model_dump()
        details = data.get("prompt_tokens_details")
        details = details if isinstance(details, Mapping) else {}
        return cls(
            prompt_tokens=_token_count(data.get("prompt_tokens")),
            completion_tokens=_token_count(data.get("completion_tokens")),
            cached_tokens=_token_count(details.get("cached_tokens")),
            calls=1,
        )

    def to_dict(self) -> dict[str, int]:
        """JSON-safe form for job rows and metrics."""
        return {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "cached_tokens": self.cached_tokens,
            "total_tokens": self.total_tokens,
            "calls": self.calls,
        }


@dataclass(frozen=True, slots=True)
class Charge:
    """One call the server billed: what it counted (``usage``), at what price, for which step.

    ``kind`` is a usage-ledger kind (``map``, ``reduce``, ``single``, ``repair`` ...);
    ``failed`` marks a call that failed although the server charged for it.
    """

    kind: str
    model: str
    usage: Usage
    cost_usd: float
    failed: bool = False


class Meter:
    """Every charged call of one step, in order (one per process step; not thread-safe).

    ``kind`` labels the calls recorded from now on; the LLM client labels the repair rounds
    of its structured-output ladder ``repair`` itself.
    """

    def __init__(self, kind: str = "call") -> None:
        self.kind = kind
        self._charges: list[Charge] = []

    def __len__(self) -> int:
        return len(self._charges)

    def add(
        self,
        model: str,
        usage: Usage,
        cost_usd: float,
        *,
        repair: bool = False,
        failed: bool = False,
    ) -> Charge:
        """Record one charged call and return it."""
        charge = Charge(
            kind="repair" if repair else self.kind,
            model=model,
            usage=usage,
            cost_usd=cost_usd,
            failed=failed,
        )
        self._charges.append(charge)
        return charge

    @property
    def charges(self) -> tuple[Charge, ...]:
        """Every charge so far."""
        return tuple(self._charges)

    def since(self, index: int) -> tuple[Charge, ...]:
        """The charges recorded after the first ``index`` ones."""
        return tuple(self._charges[index:])


class ModelRegistry:
    """Looks models up by exact name, then by family (dated snapshot suffix removed)."""

    def __init__(self, models: Iterable[ModelInfo] = DEFAULT_MODELS) -> None:
        self._models: dict[str, ModelInfo] = {m.name: m for m in models}

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and self.find(name) is not None

    @property
    def names(self) -> list[str]:
        """Every registered model name, sorted."""
        return sorted(self._models)

    def extend(self, entries: Mapping[str, Mapping[str, Any] | ModelInfo]) -> ModelRegistry:
        """A new registry with ``entries`` added or overriding (name → fields or ModelInfo).

        A field mapping for a known model only needs the fields that change; a new model needs
        at least ``context_window`` and ``max_output_tokens``.
        """
        models = dict(self._models)
        for name, entry in entries.items():
            if isinstance(entry, ModelInfo):
                models[name] = entry.model_copy(update={"name": name})
                continue
            base = self.find(name)
            fields: dict[str, Any] = base.model_dump() if base else {}
            if base is None and "encoding" not in entry:
                fields["encoding"] = encoding_for_model(name)
            fields.update(entry)
            fields["name"] = name
            try:
                models[name] = ModelInfo(**fields)
            except ValidationError as exc:
                problems = "; ".join(
                    f"{'.'.join(str(p) for p in e['loc']) or 'model'}: {e['msg']}"
                    for e in exc.errors()
                )
                raise ConfigError(
                    f"LLM model {name!r} is misconfigured: {problems}. Give context_window and "
                    "max_output_tokens (tokens) and prices in USD per 1M tokens."
                ) from None
        return ModelRegistry(models.values())

    def find(self, name: str) -> ModelInfo | None:
        """The entry for ``name`` or its family, or None."""
        if name in self._models:
            return self._models[name]
        base = _SNAPSHOT.sub("", name)
        if base != name and base in self._models:
            return self._models[base].model_copy(update={"name": name})
        return None

    def get(self, name: str) -> ModelInfo:
        """The entry for ``name``; :class:`ConfigError` says how to register an unknown one."""
        info = self.find(name)
        if info is None:
            raise ConfigError(
                f"unknown LLM model {name!r}: add it to the LLM models setting with its "
                "context_window and max_output_tokens (known: " + ", ".join(self.names) + ")"
            )
        return info


def cost_of(usage: Usage, model: ModelInfo) -> float:
    """USD cost of ``usage`` at ``model``'s prices (cached input at its own rate)."""
    cached_rate = (
        model.cached_input_per_mtok
        if model.cached_input_per_mtok is not None
        else model.input_per_mtok
    )
    uncached = max(0, usage.prompt_tokens - usage.cached_tokens)
    return (
        uncached * model.input_per_mtok
        + usage.cached_tokens * cached_rate
        + usage.completion_tokens * model.output_per_mtok
    ) / 1_000_000


@dataclass(frozen=True, slots=True)
class CostEstimate:
    """What a job will cost: tokens and USD, expected and worst case."""

    model: str
    calls: int
    prompt_tokens: int
    max_completion_tokens: int
    expected_completion_tokens: int
    expected_usd: float
    max_usd: float

    @property
    def max_total_tokens(self) -> int:
        """Upper bound of tokens the job can consume (for budgets)."""
        return self.prompt_tokens + self.max_completion_tokens


def estimate_cost(
    *,
    model: ModelInfo,
    prompt_tokens: int,
    max_completion_tokens: int,
    calls: int = 1,
    expected_completion_ratio: float = 0.5,
) -> CostEstimate:
    """Bounds of a job's cost before it runs.

    ``prompt_tokens`` and ``max_completion_tokens`` are totals over all ``calls`` (map and
    reduce); the expected figure assumes completions use ``expected_completion_ratio`` of
    their allowance, the maximum that every completion runs to its limit.
    """
    if prompt_tokens < 0 or max_completion_tokens < 0 or calls < 0:
        raise ValueError("token counts and calls must not be negative")
    if not 0 <= expected_completion_ratio <= 1:
        raise ValueError("expected_completion_ratio must be between 0 and 1")
    expected_out = round(max_completion_tokens * expected_completion_ratio)
    return CostEstimate(
        model=model.name,
        calls=calls,
        prompt_tokens=prompt_tokens,
        max_completion_tokens=max_completion_tokens,
        expected_completion_tokens=expected_out,
        expected_usd=cost_of(
            Usage(prompt_tokens=prompt_tokens, completion_tokens=expected_out), model
        ),
        max_usd=cost_of(
            Usage(prompt_tokens=prompt_tokens, completion_tokens=max_completion_tokens), model
        ),
    )
