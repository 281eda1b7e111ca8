"""Settings of the LLM client: endpoint, credentials, models, limits and output policy.

One :class:`LLMSettings` describes one OpenAI-compatible endpoint.  ``base_url`` selects it:

========================  ===================================  ==================================
backend                   base_url                             notes
========================  ===================================  ==================================
OpenAI                    (unset) → https://api.openai.com/v1  key required; ``organization`` and
                                                               ``project`` go out as headers;
                                                               sends ``max_completion_tokens``
vLLM (``vllm serve``)     http://HOST:8000/v1                  key only with ``--api-key``;
                                                               model = served name; json_schema
                                                               since 2024 (vllm#7654); no
                                                               rate-limit headers
Ollama                    http://HOST:11434/v1                 any non-empty key; model = tag
                                                               (``llama3.1:8b``); ``max_tokens``;
                                                               ignores formats it does not know
llama.cpp llama-server    http://HOST:8080/v1                  optional ``--api-key``; one model,
                                                               name ignored; older builds refuse
                                                               json_schema
LiteLLM proxy             http://HOST:4000/v1                  key = master or virtual key;
                                                               model = the alias in its config;
                                                               may refuse ``response_format``
Azure OpenAI              https://RESOURCE.openai.azure.com/   key required (the resource's key,
                          openai/v1                            sent as a bearer token); model =
                                                               the deployment's name; the older
                                                               ``/openai/deployments/NAME`` URLs
                                                               (``api-version``, ``api-key``
                                                               header) are refused at start
========================  ===================================  ==================================

Structured output needs no setting per server: the client walks ``json_schema`` → ``json_object``
→ plain text and learns, per base URL and model, which rungs a server rejects or ignores
(shared by every worker through Redis for ``capability_ttl`` seconds, default 6 h; an upgraded
server is probed again after that).  ``structured_output`` only moves the first rung down.
With ``degraded_fallback`` a job whose LLM gives no usable answer on any rung is summarized
offline, flagged degraded.

Local servers use their own tokenizers, so token counts are estimates there; describe their
models under ``models`` (context window and output limit) and leave prices at 0.  The usage
ledger records the server's own ``usage`` counts; ours only size reservations and budgets.

The API key is read from ``api_key_file`` on every request when that is set (a mounted
Kubernetes or Docker secret can be rotated without a restart), else from ``api_key``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal, Self
from urllib.parse import urlsplit

from pydantic import AliasChoices, Field, SecretStr, field_validator, model_validator
from pydantic_settings import SettingsConfigDict

from shared.settings_group import CommaSeparated, JsonEncoded, SettingsGroup

__all__ = ["OPENAI_BASE_URL", "LLMSettings", "Provider"]

OPENAI_BASE_URL = "https://api.openai.com/v1"

Provider = Literal["openai", "azure", "vllm", "ollama", "llamacpp", "litellm", "compatible"]

#: Hosts of Azure OpenAI resources (classic, AI Foundry, multi-service Cognitive Services).
_AZURE_HOSTS = (".openai.azure.com", ".services.ai.azure.com", ".cognitiveservices.azure.com")
#: What a resource's v1 endpoint looks like, for the messages that point to it.
_AZURE_V1 = "https://RESOURCE.openai.azure.com/openai/v1"


class LLMSettings(SettingsGroup):
    """Everything the LLM client reads: the ``llm`` group of the settings root.

    Fields come from ``LLM_<FIELD>`` (``LLM_MODEL``, ``LLM_MAP_INPUT_TOKENS`` ...), except the
    key (``OPENAI_API_KEY``) and the organisation and project (``OPENAI_ORG_ID``,
    ``OPENAI_PROJECT_ID``).  ``LLM_MODELS`` is JSON (``{"llama3.1:8b": {"context_window":
    131072, "max_output_tokens": 4096}}``), ``LLM_DEGRADED_FALLBACK_GUILDS`` comma-separated.
    """

    model_config = SettingsConfigDict(env_prefix="LLM_")

    base_url: str | None = Field(default=None, description="OpenAI-compatible /v1 endpoint")
    provider: Provider | None = Field(
        default=None, description="backend kind; guessed from base_url when unset"
    )
    api_key: SecretStr | None = Field(default=None, validation_alias="OPENAI_API_KEY")
    api_key_file: Path | None = Field(
        default=None, description="file holding the key; re-read when it changes"
    )
    organization: str | None = Field(
        default=None,
        validation_alias=AliasChoices("OPENAI_ORG_ID", "LLM_ORGANIZATION"),
        description="OpenAI-Organization header",
    )
    project: str | None = Field(
        default=None,
        validation_alias=AliasChoices("OPENAI_PROJECT_ID", "LLM_PROJECT"),
        description="OpenAI-Project header",
    )

    model: str = Field(default="gpt-4o-mini", min_length=1)
    fallback_model: str | None = Field(
        default=None, description="used when the main model is overloaded or its budget is booked"
    )
    models: JsonEncoded[dict[str, dict[str, Any]]] = Field(
        default_factory=dict, description="model registry additions/overrides"
    )
    max_output_tokens: int = Field(default=2_000, ge=16, le=200_000)
    temperature: float | None = Field(default=0.2, ge=0, le=2)
    reasoning_effort: Literal["none", "minimal", "low", "medium", "high"] = Field(
        default="low",
        description="reasoning_effort sent to reasoning models (o-series, GPT-5); none = not sent",
    )
    reasoning_tokens: int = Field(
        default=8_192,
        ge=0,
        le=100_000,
        description="output allowance added for a reasoning model's thinking, which counts "
        "against max_completion_tokens",
    )
    structured_output: Literal["auto", "json_schema", "json_object", "text"] = Field(
        default="auto",
        description="first rung of the structured-output ladder; auto = learnt per server",
    )
    capability_ttl: float = Field(
        default=21_600.0,
        ge=60,
        le=2_592_000,
        description="seconds a learnt server capability (no json_schema ...) is trusted; "
        "an upgraded server is probed again after that",
    )
    capability_probe_wait: float = Field(
        default=20.0,
        ge=0,
        le=600,
        description="longest wait for another worker's probe of an unknown capability",
    )
    limit_param: Literal["auto", "max_completion_tokens", "max_tokens"] = "auto"

    request_timeout: float = Field(default=120.0, gt=0, le=3_600)
    connect_timeout: float = Field(default=5.0, gt=0, le=120)

    tokens_per_minute: int | None = Field(
        default=None, ge=1, description="TPM limit; None = learn from x-ratelimit headers"
    )
    requests_per_minute: int | None = Field(
        default=None, ge=1, description="RPM limit; None = learn from x-ratelimit headers"
    )
    limiter_headroom: float = Field(default=0.03, ge=0, lt=0.5)
    max_rate_wait: float = Field(
        default=60.0, ge=0, le=600, description="longest in-call wait for our turn (seconds)"
    )
    max_rate_retries: int = Field(
        default=3, ge=0, le=20, description="429 rate-limit replies absorbed inside one call"
    )
    breaker_failure_threshold: int = Field(default=5, ge=1, le=1_000)
    breaker_open_seconds: float = Field(default=300.0, gt=0, le=86_400)

    # -- the summarization pipeline (map → reduce over notes) ---------------------------------
    map_input_tokens: int = Field(
        default=6_000, ge=200, le=200_000, description="transcript tokens per map call"
    )
    map_output_tokens: int = Field(
        default=1_500, ge=64, le=100_000, description="output allowance of a map call"
    )
    single_call_tokens: int = Field(
        default=6_000,
        ge=0,
        le=200_000,
        description="a window of at most this many transcript tokens is summarized in one call",
    )
    reduce_input_tokens: int = Field(
        default=12_000, ge=500, le=500_000, description="notes tokens per merge or final call"
    )
    max_reduce_levels: int = Field(default=6, ge=1, le=20)
    segment_block_messages: int = Field(
        default=5_000,
        ge=50,
        le=100_000,
        description="messages segmented at once (the planner's memory bound)",
    )
    notes_cache_days: float = Field(
        default=14.0,
        ge=0,
        le=365,
        description="how long map notes and one-call answers are reused; 0 turns it off",
    )
    degraded_fallback: bool = Field(
        default=False,
        description="summarize offline (flagged degraded) when the LLM is unavailable",
    )
    degraded_fallback_guilds: CommaSeparated[frozenset[str]] = Field(
        default=frozenset(), description="guild ids opted in to the degraded fallback"
    )
    over_budget: Literal["fail", "degrade"] = Field(
        default="fail",
        description="a job over its guild's monthly token budget fails, or is summarized offline",
    )

    @field_validator("base_url")
    @classmethod
    def _check_base_url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(
                f"{value!r} is not an http(s) URL; use e.g. http://localhost:11434/v1 for Ollama"
            )
        path = parts.path.rstrip("/")
        # The SDK appends its paths to the base and keeps no query of it (a query ends up in
        # front of "chat/completions"), so these would fail on every call, not at start.
        if "/openai/deployments" in path.lower():
            raise ValueError(
                f"{value!r} is an Azure OpenAI deployment URL, which needs an api-version and "
                f"an api-key header; use the resource's v1 endpoint instead, {_AZURE_V1}, "
                "with LLM_MODEL set to the deployment's name"
            )
        if parts.query or parts.fragment:
            raise ValueError(
                f"{value!r} has a query or fragment, which the client cannot send; give the "
                "endpoint's base URL alone (e.g. http://localhost:11434/v1, or "
                f"{_AZURE_V1} for Azure OpenAI)"
            )
        for operation in ("/chat/completions", "/completions", "/responses"):
            if path.lower().endswith(operation):
                raise ValueError(
                    f"{value!r} names an operation; give the endpoint's base URL, without "
                    f"{operation} (the client adds it): {value[: value.lower().rfind(operation)]}"
                )
        return value.rstrip("/")

    @model_validator(mode="after")
    def _endpoint_for_a_chosen_llm(self) -> Self:
        # Without a key, key file or base URL the workers summarize offline: an operator who
        # chose a provider or model would get offline summaries and no word of why.
        chosen = [name for name in ("provider", "model") if name in self.model_fields_set]
        if chosen and not self.configured:
            named = [f"LLM_{name.upper()}" for name in chosen]
            raise ValueError(
                f"{named[0]}: set, but no LLM endpoint is configured; set OPENAI_API_KEY (or "
                "LLM_API_KEY_FILE), or LLM_BASE_URL for a local server; or unset "
                f"{' and '.join(named)} to summarize offline"
            )
        return self

    @property
    def configured(self) -> bool:
        """True when an LLM endpoint is set up (a key, a key file or a base URL)."""
        return bool(self.api_key or self.api_key_file or self.base_url)

    def degraded_allowed(self, guild_id: str | None) -> bool:
        """True when a job of ``guild_id`` may fall back to the offline summarizer."""
        return self.degraded_fallback or (
            guild_id is not None and guild_id in self.degraded_fallback_guilds
        )

    @property
    def effective_base_url(self) -> str:
        """``base_url``, or OpenAI's endpoint when unset."""
        return self.base_url or OPENAI_BASE_URL

    @property
    def effective_provider(self) -> Provider:
        """``provider``, or a guess from the URL (OpenAI's and Azure's hosts, Ollama's,
        vLLM's, llama.cpp's and LiteLLM's ports)."""
        if self.provider:
            return self.provider
        parts = urlsplit(self.effective_base_url)
        host = parts.hostname or ""
        if host == "api.openai.com" or host.endswith(".openai.com"):
            return "openai"
        if host.endswith(_AZURE_HOSTS):
            return "azure"
        by_port: dict[int, Provider] = {
            11434: "ollama",
            8000: "vllm",
            8080: "llamacpp",
            4000: "litellm",
        }
        return by_port.get(parts.port or 0, "compatible")

    @property
    def requires_key(self) -> bool:
        """OpenAI and Azure OpenAI need a key; local servers accept a placeholder."""
        return self.effective_provider in ("openai", "azure")

    def scope(self, model: str) -> str:
        """Identity of one rate limit and breaker: endpoint, organisation, project, model."""
        host = urlsplit(self.effective_base_url).netloc
        return f"{host}|{self.organization or '-'}|{self.project or '-'}|{model}"
