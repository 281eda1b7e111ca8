"""The LLM client: one OpenAI-compatible endpoint, one retry policy, typed failures.

:class:`LLMClient` wraps the ``openai`` SDK (3.x, on ``httpx2``) with the SDK's own retries
switched off, so exactly one policy decides what happens after a failure:

* Rate limits are paced, not retried blindly: every attempt first reserves
  ``prompt estimate + max_tokens`` in the shared limiter (:mod:`shared.ratelimit.llm`), and a
  429 ``rate_limit_exceeded``/``slow_down`` makes every worker in the scope wait out the
  server's ``retry-after`` (else the "try again in 3m57s" of its message, else the
  ``x-ratelimit-reset-*`` of the exhausted limit) before the call is tried again (at most
  ``max_rate_retries`` times).
* Everything else surfaces at once as a :mod:`shared.errors` type for the task layer:
  transient (:class:`LLMServerError`, :class:`LLMTimeoutError`, :class:`LLMConnectionError`,
  :class:`LLMRateLimitedError`, :class:`~shared.llm.breaker.CircuitOpenError`) with
  ``retry_after`` where the server gave one, or permanent (:class:`QuotaExceededError`,
  :class:`ContextLengthError`, :class:`ContentFilterError`, :class:`LLMAuthError`,
  :class:`ModelNotFoundError`, :class:`LLMEndpointNotFoundError`, ...).
  ``insufficient_quota``, the billing codes and "Request too large" are permanent even though
  they arrive as 429s.
* A circuit breaker per endpoint and model (:mod:`shared.llm.breaker`) stops all workers from
  hammering a failing endpoint; a quota error trips it at once.
* When the main model is overloaded or its budget booked, ``fallback_model`` is used.

:meth:`LLMClient.complete_json` adds structured output with the ladder ``json_schema``
(strict) → ``json_object`` with the schema in the prompt → text (see :mod:`shared.llm.ladder`):
it validates every answer against the schema, asks once for a corrected answer, and steps down
a rung when the server rejects a mode, ignores it, or its answers keep not fitting.  A 500 to a
mode not known to work steps down too (vLLM fails that way on formats it cannot handle); the
mode is marked rejected only when a lower rung then answers, and when none does the first 500
is raised, still transient, with the breaker charged once for the whole call.  What a server
does not do is learnt once per base URL and model and shared by every worker
(:mod:`shared.llm.capabilities`).  When no rung gives a usable answer, :class:`InvalidOutputError`
says what each rung did, so the pipeline can fall back to the offline summarizer.

Accounting: every call the server billed — a success, or a failure whose error body reports
``usage`` (some proxies charge failed calls) — is recorded in the caller's
:class:`~shared.llm.models.Meter` with the server's own token counts; our counts only size the
reservation before a call.  Each result also carries the usage and cost of the calls it took.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import Any, TypeGuard, TypeVar

import httpx2
import openai
import structlog
from redis import Redis

from shared.closing import ClosesOnExit
from shared.errors import ConfigError, PermanentError, RateLimitedError, TransientError
from shared.llm.breaker import (
    QUOTA_REASON,
    CircuitBreaker,
    CircuitOpenError,
    LocalCircuitBreaker,
    Permit,
    RedisCircuitBreaker,
)
from shared.llm.capabilities import (
    CapabilityStore,
    LocalCapabilityStore,
    ModeVerdict,
    RedisCapabilityStore,
    Verdict,
    server_key,
)
from shared.llm.config import LLMSettings
from shared.llm.ladder import (
    RungOutcome,
    await_probe,
    describe_problems,
    learn,
    plan_rungs,
    repair_prompt,
    response_format,
    rung_messages,
    unusable_detail,
)
from shared.llm.models import Meter, ModelInfo, ModelRegistry, Usage, cost_of
from shared.llm.structured import (
    AnswerReader,
    AnswerShape,
    JsonReader,
    Reading,
    SchemaCheck,
    StructuredMode,
    parse_json_text,
    schema_check,
)
from shared.llm.tokens import count_tokens, encoding_for_model, estimate_prompt_tokens
from shared.llm.wire import ChatAnswer, UnreadableAnswer, json_or_none, never_sent, post_chat
from shared.ratelimit.llm import (
    LLMRateLimiter,
    LocalLLMLimiter,
    RateLimitHeaders,
    RedisLLMLimiter,
    RequestTooLargeError,
    Reservation,
    parse_duration,
    parse_retry_after,
)
from shared.secret_file import SecretFile

__all__ = [
    "BILLING_CODES",
    "Completion",
    "ContentFilterError",
    "ContextLengthError",
    "InvalidOutputError",
    "LLMAuthError",
    "LLMClient",
    "LLMConnectionError",
    "LLMEndpointNotFoundError",
    "LLMInvalidRequestError",
    "LLMOverloadedError",
    "LLMRateLimitedError",
    "LLMServerError",
    "LLMTimeoutError",
    "ModelNotFoundError",
    "QuotaExceededError",
    "SecretFileKey",
    "StructuredCompletion",
    "StructuredMode",
    "classify_status",
    "parse_json_text",
]

log = structlog.get_logger(__name__)

_T = TypeVar("_T")

#: 429 codes (and error types) that no retry can fix: the account is out of money or quota.
BILLING_CODES = frozenset(
    {
        "insufficient_quota",
        "credit_balance_exhausted",
        "organization_spend_limit_exceeded",
        "project_spend_limit_exceeded",
        "organization_usage_limit_exceeded",
        "billing_hard_limit_reached",
        "billing_not_active",
    }
)

#: A quota or billing 429 in words, for relays that drop its type and code (a LiteLLM proxy
#: sends ``"type": "None", "code": "429"``, BerriAI/litellm#20867).  Not "quota" alone:
#: per-minute and per-day rate limits (Vertex's "Quota exceeded for ...") are waited out.
_QUOTA_WORDS = re.compile(
    r"insufficient_quota|exceeded your current quota|check your plan and billing", re.IGNORECASE
)
#: A 404 body that blames the model (OpenAI, vLLM, Azure deployments, Ollama's "model
#: \"x\" not found, try pulling it first"); any other 404 is about the URL.
_MODEL_MISSING = re.compile(r"\bmodel\b|does not exist|not found, try pulling", re.IGNORECASE)
#: 404 bodies about the path itself, even when they happen to name the model (a path with a
#: deployment name in it) or "does not exist" (an HTML error page).
_URL_MISSING = re.compile(
    r"invalid url|unknown request url|page not found|cannot (?:post|get) /|<html|<!doctype",
    re.IGNORECASE,
)
_CONTEXT_RE = re.compile(r"maximum context length is (\d+) tokens", re.IGNORECASE)
_REQUESTED_RE = re.compile(r"(?:resulted in|requested) (\d+) tokens", re.IGNORECASE)
_FILTERED = "The LLM provider's content filter blocked this summary."
#: A server counting fewer than this share of a prompt's estimated tokens (of at least
#: _CUT_MIN_TOKENS) has cut it (:meth:`LLMClient._check_prompt_kept`).
_CUT_RATIO = 0.6
_CUT_MIN_TOKENS = 1_000
#: llama.cpp's server: "request (9000 tokens) exceeds the available context size (8192 tokens)".
_LLAMA_CONTEXT_RE = re.compile(
    r"request \((\d+) tokens\) exceeds the available context size \((\d+) tokens\)",
    re.IGNORECASE,
)
_LLAMA_CONTEXT_WORDS = re.compile(
    r"exceeds the available context size|context size has been exceeded", re.IGNORECASE
)
#: "Please try again in 1.146s" / "20ms" / "3m57.024s" / "1h2m3s": a Go duration, compound
#: for waits of a minute or more (OpenAI's per-day limits, Groq).
_TRY_AGAIN_RE = re.compile(r"try again in ((?:\d+(?:\.\d+)?(?:h|ms|m|s))+)(?![a-z])", re.IGNORECASE)
#: Wait after a 429 that says nothing usable about how long to wait.
_DEFAULT_RATE_WAIT = 1.0
#: Characters of an error body kept in exception texts (and so in logs): a proxy's HTML
#: error page runs to kilobytes.
_DETAIL_LIMIT = 300
#: A 400 that names these is about the output format: the ladder steps down a rung.
_FORMAT_HINT = re.compile(
    r"response_format|response format|json_schema|json_object|structured output"
    r"|grammar|guided_json",
    re.I,
)


# ---------------------------------------------------------------------------------------------
# Errors


class LLMRateLimitedError(RateLimitedError):
    """The server throttled us (429 rate_limit_exceeded/slow_down) and our retries ran out."""


class LLMServerError(TransientError):
    """The server failed (5xx, 408, 409); ``retry_after`` when it said how long to wait."""

    def __init__(self, message: str, *, status: int, retry_after: float | None = None) -> None:
        super().__init__(message, user_message="The LLM service failed; retrying shortly.")
        self.status = status
        self.retry_after = retry_after


class LLMOverloadedError(LLMServerError):
    """503: the model has no capacity right now (a reason to use the fallback model)."""


class LLMTimeoutError(TransientError):
    """The request timed out."""


class LLMConnectionError(TransientError):
    """The endpoint could not be reached."""


class LLMPermanentError(PermanentError):
    """Base of LLM failures that retrying cannot fix."""


class QuotaExceededError(LLMPermanentError):
    """insufficient_quota or a billing code: the account must be topped up or its limit raised."""


class LLMAuthError(LLMPermanentError):
    """401/403: the key, organisation, project or region is not allowed.

    ``code`` is the error body's code (OpenAI's ``invalid_api_key`` for a key that does not
    exist, another for a key without the right scopes), empty when the server gave none.
    """

    def __init__(self, message: str, *, code: str = "", user_message: str | None = None) -> None:
        super().__init__(message, user_message=user_message)
        self.code = code


class ModelNotFoundError(LLMPermanentError):
    """404: the model does not exist at this endpoint or the key has no access."""


class LLMEndpointNotFoundError(LLMPermanentError):
    """404 about the URL, not a model: ``base_url`` points nowhere (often a missing ``/v1``)."""


class LLMInvalidRequestError(LLMPermanentError):
    """Another 4xx: the request itself is wrong."""


class ContextLengthError(LLMPermanentError):
    """The prompt plus output allowance exceeds the model's context window: re-chunk.

    ``context_window`` and ``requested`` are filled when known, so the caller can split the
    input to fit.
    """

    def __init__(
        self, message: str, *, context_window: int | None = None, requested: int | None = None
    ) -> None:
        super().__init__(message, user_message="A conversation chunk was too long for the model.")
        self.context_window = context_window
        self.requested = requested


class ContentFilterError(LLMPermanentError):
    """The provider's content filter stopped the output, or the model refused."""


class InvalidOutputError(LLMPermanentError):
    """No rung of the structured-output ladder gave a usable answer.

    ``outcomes`` says what each rung did (rejected by the server, ignored, answers that did not
    fit); ``problems`` are those of the last answer.
    """

    def __init__(
        self,
        message: str,
        *,
        problems: Sequence[str],
        outcomes: Sequence[RungOutcome] = (),
    ) -> None:
        detail = unusable_detail(outcomes) if outcomes else "; ".join(problems[:3])
        super().__init__(
            message,
            user_message=f"The LLM gave no usable answer in any output mode ({detail}).",
        )
        self.problems = list(problems)
        self.outcomes = tuple(outcomes)


#: OpenAI's words for a strict schema that breaks its rules (``Invalid schema for
#: response_format 'name': In context=...``).
_SCHEMA_REFUSED = re.compile(r"invalid schema for response_format", re.IGNORECASE)


class _UnsupportedFormat(Exception):
    """Internal: the server rejected this response_format; step down the ladder."""


class _FailedGeneration(Exception):
    """Internal: the server's JSON mode refused what the model wrote (Groq's 400
    ``json_validate_failed``): this rung's answer did not fit; the ladder steps down without
    learning anything about the server, which does support the mode."""


class _UnsupportedLimitParam(Exception):
    """Internal: the server wants the other max-tokens field."""


class _UnsupportedTemperature(Exception):
    """Internal: the model takes no ``temperature`` but its default (reasoning models)."""


class _FormatServerError(Exception):
    """Internal: a 500 to a ``response_format`` not known to work; the ladder steps down.

    vLLM answers 500 to some formats it cannot handle (vllm-project/vllm#35438).  The breaker
    is not charged for it: the lower rungs go on ``permit`` and charge it if they fail too.
    """

    def __init__(self, error: LLMServerError, permit: Permit) -> None:
        super().__init__(str(error))
        self.error = error
        self.permit = permit


def _body_fields(body: object) -> tuple[str, str, str, str]:
    """(message, type, code, param) of an error body, tolerant of local servers' dialects."""
    data: Any = body
    if isinstance(data, Mapping) and isinstance(data.get("error"), Mapping):
        data = data["error"]
    if not isinstance(data, Mapping):
        return (str(body or ""), "", "", "")
    for key in ("error", "detail"):  # {"error": "..."} (TGI, proxies), {"detail": "..."}
        if "message" not in data and isinstance(data.get(key), str):
            return (str(data[key]), "", "", "")

    def text(name: str) -> str:
        value = data.get(name)
        return "" if value is None else str(value)

    return text("message"), text("type"), text("code"), text("param")


def _clip(text: str, limit: int = _DETAIL_LIMIT) -> str:
    """``text`` on one line, cut to ``limit`` characters with a note saying it was cut."""
    flat = " ".join(text.split())
    if len(flat) <= limit:
        return flat
    return f"{flat[:limit]}… [cut, {len(flat)} characters in all]"


def _retry_after(headers: Mapping[str, str], message: str) -> float | None:
    """Seconds the server asked us to wait: its retry-after headers, else "try again in"."""
    seconds = parse_retry_after(headers)
    if seconds is not None:
        return seconds
    match = _TRY_AGAIN_RE.search(message)
    return parse_duration(match.group(1).lower()) if match else None


def _reset_wait(headers: Mapping[str, str]) -> float | None:
    """Seconds until the exhausted limit resets, from the ``x-ratelimit-reset-*`` headers.

    The dimension (requests or tokens) whose ``x-ratelimit-remaining-*`` reads 0 is the one
    that refused us; when none reads 0 (or they are absent), the later of the two resets.
    """
    seen = RateLimitHeaders.parse(headers)
    dimensions = (
        (seen.remaining_requests, seen.reset_requests),
        (seen.remaining_tokens, seen.reset_tokens),
    )
    resets = [reset for _, reset in dimensions if reset is not None]
    exhausted = [reset for left, reset in dimensions if left == 0 and reset is not None]
    return max(exhausted or resets, default=None)


def _rate_limit_wait(headers: Mapping[str, str], message: str) -> float:
    """How long a 429 asks us to wait: retry-after, the message's hint, the limit's reset."""
    seconds = _retry_after(headers, message)
    if seconds is None:
        seconds = _reset_wait(headers)
    return seconds or _DEFAULT_RATE_WAIT


def _not_found(detail: str, message: str, code: str, model: str | None) -> LLMPermanentError:
    """A 404: the model is missing when the body names one, else the URL is wrong."""
    names_model = bool(_MODEL_MISSING.search(message)) or bool(
        model and model.lower() in message.lower()
    )
    if code == "model_not_found" or (names_model and not _URL_MISSING.search(message)):
        return ModelNotFoundError(
            detail,
            user_message="The configured LLM model does not exist or the key has no access.",
        )
    return LLMEndpointNotFoundError(
        detail,
        user_message="The LLM endpoint URL was not found; an operator must check LLM_BASE_URL "
        "(most OpenAI-compatible servers want it to end in /v1; Azure OpenAI: "
        "https://RESOURCE.openai.azure.com/openai/v1).",
    )


def _context_overflow(
    status: int, detail: str, message: str, kind: str, code: str
) -> ContextLengthError | None:
    """The error of a prompt too long for the model's context, in the words servers use.

    OpenAI and vLLM: ``context_length_exceeded`` / "maximum context length is N tokens".
    llama.cpp: ``exceed_context_size_error``, "request (N tokens) exceeds the available context
    size (M tokens)" with a 400, or "Context size has been exceeded." with a 500
    (ggml-org/llama.cpp#15780), which read as a server fault would be retried for ever.
    """
    if status not in (400, 413, 422, 500):
        return None
    window: int | None = None
    requested: int | None = None
    if code == "context_length_exceeded" or "maximum context length" in message.lower():
        found, asked = _CONTEXT_RE.search(message), _REQUESTED_RE.search(message)
        window = int(found.group(1)) if found else None
        requested = int(asked.group(1)) if asked else None
    elif kind == "exceed_context_size_error" or _LLAMA_CONTEXT_WORDS.search(message):
        sizes = _LLAMA_CONTEXT_RE.search(message)
        if sizes:
            requested, window = int(sizes.group(1)), int(sizes.group(2))
    else:
        return None
    return ContextLengthError(detail, context_window=window, requested=requested)


def classify_status(
    status: int, body: object, headers: Mapping[str, str], *, model: str | None = None
) -> Exception:
    """Map an HTTP error response of an OpenAI-compatible server onto our error types.

    ``model`` is the one the request named, when it named one: a 404 that mentions it is
    about the model, not the URL.
    """
    message, kind, code, param = _body_fields(body)
    detail = f"LLM endpoint returned {status}: {_clip(message or kind or code or 'no detail')}"
    if status in (413, 429) and message.lower().startswith("request too large"):
        # OpenAI says it with a 429, Groq with a 413 (code rate_limit_exceeded): waiting
        # never helps, a smaller chunk does.
        return RequestTooLargeError(
            detail,
            user_message="A conversation chunk is larger than the LLM's tokens-per-minute "
            "limit; lower the chunk size or raise the limit.",
        )
    if status == 429:
        if kind in BILLING_CODES or code in BILLING_CODES or _QUOTA_WORDS.search(message):
            return QuotaExceededError(
                detail,
                user_message="The LLM account is out of quota or credit; "
                "an operator must check its plan and billing.",
            )
        return LLMRateLimitedError(detail, retry_after=_rate_limit_wait(headers, message))
    overflow = _context_overflow(status, detail, message, kind, code)
    if overflow is not None:
        return overflow
    if status in (400, 413, 422):
        if param in ("max_tokens", "max_completion_tokens") and code in (
            "unsupported_parameter",
            "unsupported_value",
        ):
            return _UnsupportedLimitParam(param)
        if param == "temperature" and code in ("unsupported_parameter", "unsupported_value"):
            return _UnsupportedTemperature(_clip(message))
        if code == "json_validate_failed":
            return _FailedGeneration(_clip(message))
        if code == "content_filter":
            # Azure OpenAI refuses a prompt its filter flags with a 400 of this code.
            return ContentFilterError(detail, user_message=_FILTERED)
        if param == "response_format" or _FORMAT_HINT.search(message):
            return _UnsupportedFormat(_clip(message))
        return LLMInvalidRequestError(detail)
    if status in (401, 403):
        return LLMAuthError(
            detail,
            code=code,
            user_message="The LLM endpoint rejected our credentials; an operator must check "
            "the API key, organisation and project.",
        )
    if status == 404:
        return _not_found(detail, message, code, model)
    if status == 503:
        return LLMOverloadedError(detail, status=status, retry_after=_retry_after(headers, message))
    if status >= 500 or status in (408, 409):
        return LLMServerError(detail, status=status, retry_after=_retry_after(headers, message))
    return LLMInvalidRequestError(detail)


def _error_usage(response: httpx2.Response) -> Usage | None:
    """``usage`` an error body reports (beside ``error`` or inside it), if any."""
    body = json_or_none(response)
    if not isinstance(body, Mapping):
        return None
    error = body.get("error")
    raw = body.get("usage")
    if raw is None and isinstance(error, Mapping):
        raw = error.get("usage")
    if not isinstance(raw, Mapping):
        return None
    try:
        return Usage.from_api(raw)
    except (TypeError, ValueError):
        return None


@dataclass(frozen=True, slots=True)
class _Call:
    """Where one logical call's charges go (``repair``: a repair round of the ladder).

    ``format_on_trial``: the ``response_format`` is not known to work, so a 500 is
    :class:`_FormatServerError`; ``permit``: the breaker's leave an earlier rung of the same
    ladder call was given, used instead of asking again.
    """

    meter: Meter | None
    repair: bool = False
    format_on_trial: bool = False
    permit: Permit | None = None

    def charge(self, model: str, usage: Usage, cost: float, *, failed: bool = False) -> None:
        if self.meter is not None:
            self.meter.add(model, usage, cost, repair=self.repair, failed=failed)

    def blames_format(self, error: Exception) -> TypeGuard[LLMServerError]:
        """Whether ``error`` may be the format's fault: a 500 exactly, on a format on trial.

        502/503/504 come from gateways and overload, never from the request's content.
        """
        return self.format_on_trial and isinstance(error, LLMServerError) and error.status == 500


# ---------------------------------------------------------------------------------------------
# Results


@dataclass(frozen=True, slots=True)
class Completion:
    """One successful chat completion."""

    text: str
    model: str
    finish_reason: str
    usage: Usage
    cost_usd: float
    request_id: str | None
    latency: float
    waited: float
    attempts: int
    fallback: bool = False


@dataclass(frozen=True, slots=True)
class StructuredCompletion:
    """A validated JSON answer and the cost of every call it took.

    ``mode`` is the rung that answered; ``shape`` how its answer was read (``json`` as sent,
    ``coerced`` from JSON of another shape, ``prose`` from plain text).
    """

    data: dict[str, Any]
    mode: StructuredMode
    model: str
    usage: Usage
    cost_usd: float
    repaired: bool
    calls: int
    fallback: bool = False
    shape: AnswerShape = "json"


# ---------------------------------------------------------------------------------------------
# Secrets


class SecretFileKey:
    """An API key read from a file, re-read whenever the file changes (rotation, no restart)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._file = SecretFile(
            path,
            what="LLM API key file",
            fix="mount the secret there, or unset LLM_API_KEY_FILE",
        )

    def __call__(self) -> str:
        """The current key; :class:`ConfigError` when the file is missing or empty."""
        key = self._file.read()
        if not key:
            raise ConfigError(f"LLM API key file {self.path} is empty; write the key in it")
        return key


# ---------------------------------------------------------------------------------------------
# Client


class LLMClient(ClosesOnExit):
    """Chat completions against one endpoint with shared limits, a breaker and fallbacks.

    Build one per process (after fork) with :meth:`shared` (limits, breaker and learnt
    capabilities in Redis) or :meth:`embedded` (in-process twins); ``limiter_factory`` and
    ``breaker_factory`` receive a scope string (see :meth:`LLMSettings.scope`) and are called
    once per model.
    """

    def __init__(
        self,
        settings: LLMSettings,
        *,
        limiter_factory: Callable[[str], LLMRateLimiter],
        breaker_factory: Callable[[str], CircuitBreaker],
        registry: ModelRegistry | None = None,
        http_client: httpx2.Client | None = None,
        api_key: str | Callable[[], str] | None = None,
        capabilities: CapabilityStore | None = None,
    ) -> None:
        self.settings = settings
        self.registry = (registry or ModelRegistry()).extend(settings.models)
        self.capabilities: CapabilityStore = capabilities or LocalCapabilityStore(
            ttl=settings.capability_ttl
        )
        self._limiter_factory = limiter_factory
        self._breaker_factory = breaker_factory
        self._limiters: dict[str, LLMRateLimiter] = {}
        self._breakers: dict[str, CircuitBreaker] = {}
        self._limit_params: dict[str, str] = {}
        #: Models whose prompts a server was seen to cut (warned once each).
        self._cut_warned: set[str] = set()
        #: Models that refused a temperature (a reasoning model the registry does not mark).
        self._fixed_temperature: set[str] = set()
        self._lock = threading.Lock()
        self._sdk = openai.OpenAI(
            api_key=api_key if api_key is not None else self._key_source(settings),
            organization=settings.organization,
            project=settings.project,
            base_url=settings.effective_base_url,
            timeout=httpx2.Timeout(settings.request_timeout, connect=settings.connect_timeout),
            max_retries=0,
            http_client=http_client,
        )

    @staticmethod
    def _key_source(settings: LLMSettings) -> str | Callable[[], str]:
        if settings.api_key_file is not None:
            source = SecretFileKey(settings.api_key_file)
            source()  # fail at start, not on the first job, when the file is missing
            return source
        if settings.api_key is not None and settings.api_key.get_secret_value().strip():
            return settings.api_key.get_secret_value().strip()
        if settings.requires_key:
            raise ConfigError(
                "OPENAI_API_KEY: not set; give the key (for Azure OpenAI, the resource's key; "
                "or LLM_API_KEY_FILE naming a file holding it), or set LLM_BASE_URL to a local "
                "OpenAI-compatible server"
            )
        return "not-needed"  # local servers ignore the key but the SDK wants one

    @classmethod
    def shared(
        cls, settings: LLMSettings, redis: Redis[Any], *, prefix: str = "sb", **kwargs: Any
    ) -> LLMClient:
        """A client whose limiter, breaker and learnt capabilities are shared through ``redis``."""
        kwargs.setdefault(
            "capabilities",
            RedisCapabilityStore(redis, ttl=settings.capability_ttl, prefix=f"{prefix}:cap:llm"),
        )
        return cls._configured(
            settings,
            partial(RedisLLMLimiter, redis, prefix=f"{prefix}:rl:llm"),
            partial(RedisCircuitBreaker, redis, prefix=f"{prefix}:cb:llm"),
            **kwargs,
        )

    @classmethod
    def embedded(cls, settings: LLMSettings, **kwargs: Any) -> LLMClient:
        """A client with in-process limiter and breaker (embedded mode, one process)."""
        return cls._configured(settings, LocalLLMLimiter, LocalCircuitBreaker, **kwargs)

    @classmethod
    def _configured(
        cls,
        settings: LLMSettings,
        limiter: Callable[..., LLMRateLimiter],
        breaker: Callable[..., CircuitBreaker],
        **kwargs: Any,
    ) -> LLMClient:
        """A client whose limiters and breakers ``limiter`` and ``breaker`` build per scope
        with the limits and thresholds of ``settings``."""

        def limiter_of(scope: str) -> LLMRateLimiter:
            return limiter(
                scope=scope,
                tokens_per_minute=settings.tokens_per_minute,
                requests_per_minute=settings.requests_per_minute,
                headroom=settings.limiter_headroom,
            )

        def breaker_of(scope: str) -> CircuitBreaker:
            return breaker(
                scope=scope,
                failure_threshold=settings.breaker_failure_threshold,
                open_seconds=settings.breaker_open_seconds,
            )

        return cls(settings, limiter_factory=limiter_of, breaker_factory=breaker_of, **kwargs)

    def close(self) -> None:
        """Close the HTTP connection pool."""
        self._sdk.close()

    # -- lookups ------------------------------------------------------------------------------

    def model_info(self, model: str) -> ModelInfo:
        """Registry entry of ``model``; local backends get a conservative default entry."""
        info = self.registry.find(model)
        if info is not None:
            return info
        if self.settings.effective_provider == "openai":
            return self.registry.get(model)  # raises ConfigError with the fix
        log.warning("llm.model_unregistered", model=model, assumed_context=8192)
        return ModelInfo(
            name=model,
            context_window=8192,
            max_output_tokens=2048,
            encoding=encoding_for_model(model),
        )

    def limiter(self, model: str) -> LLMRateLimiter:
        """The limiter of ``model``'s scope."""
        return self._of_scope(model, self._limiters, self._limiter_factory)

    def breaker(self, model: str) -> CircuitBreaker:
        """The circuit breaker of ``model``'s scope."""
        return self._of_scope(model, self._breakers, self._breaker_factory)

    def _of_scope(self, model: str, made: dict[str, _T], factory: Callable[[str], _T]) -> _T:
        """``model``'s scope's entry of ``made``, built by ``factory`` on first use."""
        scope = self.settings.scope(model)
        with self._lock:
            if scope not in made:
                made[scope] = factory(scope)
            return made[scope]

    def list_models(self) -> list[str]:
        """Model ids the endpoint offers (``GET /models``); a cheap readiness probe."""
        try:
            return sorted(m.id for m in self._sdk.models.list())
        except openai.APIStatusError as exc:
            raise self._convert_status(exc) from None
        except openai.APITimeoutError as exc:
            raise LLMTimeoutError(f"LLM endpoint timed out listing models: {exc}") from None
        except openai.APIConnectionError as exc:
            raise LLMConnectionError(f"LLM endpoint unreachable: {exc}") from None

    # -- plain completions --------------------------------------------------------------------

    def complete(
        self,
        messages: Sequence[Mapping[str, Any]],
        *,
        model: str | None = None,
        max_tokens: int | None = None,
        temperature: float | None = None,
        response_format: Mapping[str, Any] | None = None,
        allow_fallback: bool = True,
        meter: Meter | None = None,
    ) -> Completion:
        """One chat completion; see the module docstring for the failure policy.

        Every call the server charged for (failed ones included) is added to ``meter``.
        """
        try:
            return self._complete(
                messages,
                model=model,
                max_tokens=max_tokens,
                temperature=temperature,
                response_format=response_format,
                allow_fallback=allow_fallback,
                meter=meter,
            )
        except _UnsupportedFormat as exc:
            raise LLMInvalidRequestError(
                f"the endpoint rejected response_format: {exc}",
                user_message="The LLM server does not support the requested output format.",
            ) from None
        except _FailedGeneration as exc:
            raise LLMInvalidRequestError(
                f"the endpoint could not make the model's answer valid JSON: {exc}",
                user_message="The LLM could not produce the requested output format.",
            ) from None

    def _complete(
        self,
        messages: Sequence[Mapping[str, Any]],
        *,
        model: str | None,
        max_tokens: int | None,
        temperature: float | None,
        response_format: Mapping[str, Any] | None,
        allow_fallback: bool,
        meter: Meter | None = None,
        repair: bool = False,
        format_on_trial: bool = False,
        permit: Permit | None = None,
    ) -> Completion:
        primary = model or self.settings.model
        call = _Call(meter, repair, format_on_trial, permit)
        try:
            return self._complete_on(
                primary, messages, max_tokens, temperature, response_format, call
            )
        except (RateLimitedError, LLMOverloadedError) as exc:
            fallback = self.settings.fallback_model
            quota = isinstance(exc, CircuitOpenError) and exc.reason in BILLING_CODES
            if not allow_fallback or not fallback or fallback == primary or quota:
                raise
            log.warning("llm.fallback", model=primary, fallback=fallback, reason=type(exc).__name__)
            # The permit is the primary's breaker's, and the ladder learns nothing from the
            # fallback model: its 500 is an ordinary one.
            on_fallback = replace(call, format_on_trial=False, permit=None)
            result = self._complete_on(
                fallback, messages, max_tokens, temperature, response_format, on_fallback
            )
            return replace(result, fallback=True)

    def _params(
        self,
        model: str,
        info: ModelInfo,
        messages: Sequence[Mapping[str, Any]],
        max_tokens: int,
        temperature: float | None,
        response_format: Mapping[str, Any] | None,
    ) -> dict[str, Any]:
        params: dict[str, Any] = {"model": model, "messages": list(messages)}
        params[self._limit_param(model, info)] = max_tokens
        temp = self.settings.temperature if temperature is None else temperature
        if temp is not None and not info.reasoning and model not in self._fixed_temperature:
            params["temperature"] = temp
        if info.reasoning and self.settings.reasoning_effort != "none":
            params["reasoning_effort"] = self.settings.reasoning_effort
        if response_format is not None:
            params["response_format"] = dict(response_format)
        return params

    def _check_prompt_kept(self, model: str, estimate: int, counted: int) -> None:
        """Warn (once per model) when the server counted far fewer prompt tokens than sent.

        Ollama's OpenAI endpoint cuts a prompt longer than the model's context to fit and
        answers 200 all the same (ollama/ollama#4967): the summary then silently misses most of
        the chunk.  Tokenizers differ, but not by 40 %.
        """
        if estimate < _CUT_MIN_TOKENS or counted >= estimate * _CUT_RATIO:
            return
        if model in self._cut_warned:
            return
        self._cut_warned.add(model)
        log.warning(
            "llm.prompt_cut",
            model=model,
            sent_tokens=estimate,
            counted_tokens=counted,
            hint="the server seems to cut prompts to a context of about "
            f"{counted} tokens; set the model's context_window in LLM_MODELS to what the server "
            "serves (Ollama: the model's num_ctx) so chunks fit",
        )

    def _allowance(self, model: str, info: ModelInfo, max_tokens: int | None) -> int:
        """The output allowance of a call: what was asked, plus room for a reasoning model's
        thinking, which counts against max_completion_tokens (without it the answer comes back
        empty and cut, however often it is asked again).  A model that refused a temperature
        is taken for a reasoning model the registry does not mark."""
        allowance = max_tokens or self.settings.max_output_tokens
        if info.reasoning or model in self._fixed_temperature:
            allowance += self.settings.reasoning_tokens
        return min(allowance, info.max_output_tokens)

    def _limit_param(self, model: str, info: ModelInfo) -> str:
        learnt = self._limit_params.get(model)
        if learnt:
            return learnt
        if self.settings.limit_param != "auto":
            return self.settings.limit_param
        if self.settings.effective_provider == "openai":
            return info.limit_param
        if self.settings.effective_provider == "azure" and self.registry.find(model) is not None:
            # A deployment named after its model; any other name learns it from one refusal.
            return info.limit_param
        return "max_tokens"

    def _complete_on(
        self,
        model: str,
        messages: Sequence[Mapping[str, Any]],
        max_tokens: int | None,
        temperature: float | None,
        response_format: Mapping[str, Any] | None,
        call: _Call,
    ) -> Completion:
        info = self.model_info(model)
        allowance = self._allowance(model, info, max_tokens)
        prompt = estimate_prompt_tokens(
            messages, model=model, encoding=info.encoding, response_format=response_format
        )
        if not info.fits(prompt, allowance):
            raise ContextLengthError(
                f"prompt of {prompt} tokens + {allowance} output tokens exceeds {model}'s "
                f"context window of {info.context_window}",
                context_window=info.context_window,
                requested=prompt + allowance,
            )
        limiter = self.limiter(model)
        breaker = self.breaker(model)
        permit = call.permit if call.permit is not None else breaker.allow()
        waited = 0.0
        attempt = 0
        switched_param = False
        while True:
            attempt += 1
            allowance = self._allowance(model, info, max_tokens)  # it may have learnt meanwhile
            params = self._params(model, info, messages, allowance, temperature, response_format)
            reservation = limiter.reserve(prompt + allowance, max_wait=self.settings.max_rate_wait)
            waited += reservation.waited
            started = time.monotonic()
            try:
                raw = post_chat(self._sdk, params)
            except openai.APIStatusError as exc:
                limiter.calibrate(exc.response.headers)
                self._charge_failure(exc, model, info, reservation, limiter, call)
                error = self._convert_status(exc, model)
                if isinstance(error, LLMRateLimitedError):
                    limiter.penalize(error.retry_after)
                    if attempt <= self.settings.max_rate_retries:
                        log.info("llm.rate_limited", model=model, retry_after=error.retry_after)
                        continue
                    raise error from None
                if isinstance(error, _UnsupportedLimitParam) and not switched_param:
                    other = (
                        "max_tokens"
                        if params.get("max_completion_tokens")
                        else ("max_completion_tokens")
                    )
                    self._limit_params[model] = other
                    switched_param = True
                    limiter.settle(reservation, 0)
                    continue
                if isinstance(error, _UnsupportedTemperature) and "temperature" in params:
                    log.info("llm.fixed_temperature", model=model)
                    self._fixed_temperature.add(model)
                    limiter.settle(reservation, 0)
                    continue
                if call.blames_format(error):
                    raise _FormatServerError(error, permit) from None
                self._record_outcome(breaker, permit, error)
                if isinstance(error, _UnsupportedLimitParam | _UnsupportedTemperature):
                    raise LLMInvalidRequestError(_clip(str(exc))) from None
                raise error from None
            except openai.APIConnectionError as exc:  # APITimeoutError included
                raise self._unanswered(exc, model, reservation, limiter, breaker) from None
            latency = time.monotonic() - started
            try:
                answer = ChatAnswer.read(raw)
            except UnreadableAnswer as exc:
                limiter.settle(reservation, prompt + allowance, raw.headers)
                error = LLMServerError(f"{model}: {exc}", status=raw.status_code)
                self._record_outcome(breaker, permit, error)
                raise error from None
            usage = Usage.from_api(answer.usage)
            text = answer.text
            if usage.total_tokens == 0:
                completion = count_tokens(text, encoding=info.encoding)
                usage = Usage(prompt_tokens=prompt, completion_tokens=completion, calls=1)
            else:
                self._check_prompt_kept(model, prompt, usage.prompt_tokens)
            limiter.settle(reservation, usage.total_tokens, raw.headers)
            if not permit.clean:
                breaker.record_success()
            billed = (self.registry.find(answer.model) if answer.model else None) or info
            cost = cost_of(usage, billed)
            call.charge(answer.model or model, usage, cost)
            finish = answer.finish_reason or "stop"
            refusal = answer.refusal
            if finish == "content_filter" or refusal:
                raise ContentFilterError(
                    f"{model} stopped: {refusal or 'content filter'}", user_message=_FILTERED
                )
            return Completion(
                text=text,
                model=answer.model or model,
                finish_reason=finish,
                usage=usage,
                cost_usd=cost,
                request_id=raw.headers.get("x-request-id"),
                latency=latency,
                waited=waited,
                attempts=attempt,
            )

    def _unanswered(
        self,
        exc: openai.APIConnectionError,
        model: str,
        reservation: Reservation,
        limiter: LLMRateLimiter,
        breaker: CircuitBreaker,
    ) -> TransientError:
        """The error for a call that got no answer, its reservation settled.

        The tokens go back only when the request never left (:func:`never_sent`).  A request
        that was sent and then timed out or lost its connection may have been processed and
        counted by the server all the same.
        """
        unsent = never_sent(exc)
        if unsent:
            limiter.settle(reservation, 0)
        if isinstance(exc, openai.APITimeoutError):
            breaker.record_failure("timeout")
            if unsent:
                return LLMTimeoutError(
                    f"LLM endpoint for {model} did not accept a connection within "
                    f"{self.settings.connect_timeout}s"
                )
            return LLMTimeoutError(
                f"LLM request to {model} timed out after {self.settings.request_timeout}s"
            )
        breaker.record_failure("connection")
        if unsent:
            return LLMConnectionError(f"LLM endpoint unreachable: {exc}")
        return LLMConnectionError(
            f"LLM connection to {model} was lost after the request was sent ({exc}); "
            "the server may have counted it"
        )

    def _charge_failure(
        self,
        exc: openai.APIStatusError,
        model: str,
        info: ModelInfo,
        reservation: Reservation,
        limiter: LLMRateLimiter,
        call: _Call,
    ) -> None:
        """Record a failed call the server says it charged for (``usage`` in its error body).

        The reservation is not refunded (failed calls count against the limit); when the
        server charged more than was reserved, the difference is taken as well.
        """
        usage = _error_usage(exc.response)
        if usage is None or usage.total_tokens <= 0:
            return
        if usage.total_tokens > reservation.tokens:
            limiter.settle(reservation, usage.total_tokens)
        cost = cost_of(usage, info)
        call.charge(model, usage, cost, failed=True)
        log.info(
            "llm.failed_call_charged",
            model=model,
            status=exc.status_code,
            prompt_tokens=usage.prompt_tokens,
            completion_tokens=usage.completion_tokens,
        )

    def _convert_status(self, exc: openai.APIStatusError, model: str | None = None) -> Exception:
        body: object = exc.body
        if body is None:
            body = json_or_none(exc.response)
        if body is None:
            body = exc.response.text
        return classify_status(exc.status_code, body, exc.response.headers, model=model)

    @staticmethod
    def _record_outcome(breaker: CircuitBreaker, permit: Permit, error: Exception) -> None:
        if isinstance(error, QuotaExceededError):
            breaker.trip(QUOTA_REASON)
        elif isinstance(error, LLMServerError):
            breaker.record_failure(f"http_{error.status}")
        elif not permit.clean:
            # The endpoint answered sensibly (4xx about the request): it is healthy.
            breaker.record_success()

    # -- structured output --------------------------------------------------------------------

    def complete_json(
        self,
        messages: Sequence[Mapping[str, Any]],
        *,
        schema: Mapping[str, Any],
        name: str,
        model: str | None = None,
        max_tokens: int | None = None,
        temperature: float | None = None,
        check: Callable[[dict[str, Any]], list[str]] | None = None,
        reader: AnswerReader | None = None,
        meter: Meter | None = None,
    ) -> StructuredCompletion:
        """A JSON object valid against ``schema`` (and ``check``, which lists problems).

        Walks the ladder of :mod:`shared.llm.ladder` from the best rung this server is known
        to keep (``structured_output`` = ``auto``: strict ``json_schema``), reading answers with
        ``reader`` (default: JSON only), repairing once per rung and stepping down when a rung
        is rejected (a 400, or a 500 to a format not known to work), ignored or keeps failing.
        :class:`InvalidOutputError` when no rung works; :class:`LLMServerError` (the first
        500) when the rungs below a 500 fail transiently too.
        """
        if not re.fullmatch(r"[A-Za-z0-9_-]{1,64}", name):
            raise ValueError("schema name must be 1-64 letters, digits, _ or -")
        run = _StructuredRun(
            client=self,
            messages=messages,
            schema=schema,
            name=name,
            model=model or self.settings.model,
            max_tokens=max_tokens,
            temperature=temperature,
            check=check,
            reader=reader or JsonReader(),
            meter=meter,
        )
        return run.run()

    def _rungs(self, model: str, verdicts: Mapping[str, ModeVerdict]) -> tuple[StructuredMode, ...]:
        info = self.registry.find(model)
        return plan_rungs(
            self.settings.structured_output,
            verdicts,
            supports_json_schema=info is None or info.supports_json_schema,
        )


def _learnt(verdict: ModeVerdict) -> str:
    """A skipped rung's line in the final error, from what was learnt about it."""
    said = "rejected by the server" if verdict.verdict == "rejected" else "ignored by the server"
    return f"{said} (learnt earlier: {_short(verdict.reason)})"


# Identity equality as before, and no generated repr: the messages are users' text.
@dataclass(eq=False, repr=False, kw_only=True)
class _StructuredRun:
    """One :meth:`LLMClient.complete_json` call: its rungs, calls and totals."""

    client: LLMClient
    messages: Sequence[Mapping[str, Any]]
    schema: Mapping[str, Any]
    name: str
    model: str
    max_tokens: int | None
    temperature: float | None
    check: Callable[[dict[str, Any]], list[str]] | None
    reader: AnswerReader
    meter: Meter | None
    settings: LLMSettings = field(init=False)
    store: CapabilityStore = field(init=False)
    validator: SchemaCheck = field(init=False)
    server: str = field(init=False)
    known: dict[str, ModeVerdict] = field(init=False, default_factory=dict)
    usage: Usage = field(init=False, default_factory=Usage)
    cost: float = field(init=False, default=0.0)
    calls: int = field(init=False, default=0)
    #: Rungs whose format got a 500 (:class:`_FormatServerError`), first first.
    crashed: list[tuple[StructuredMode, LLMServerError]] = field(init=False, default_factory=list)
    #: The breaker's leave the first of them was given; the lower rungs call on it.
    permit: Permit | None = field(init=False, default=None)

    def __post_init__(self) -> None:
        self.settings = self.client.settings
        self.store = self.client.capabilities
        self.validator = schema_check(self.schema)
        self.server = server_key(self.settings.effective_base_url, self.model)

    # -- the ladder ---------------------------------------------------------------------------

    def run(self) -> StructuredCompletion:
        self.known = self.store.verdicts(self.server)
        rungs = self.client._rungs(self.model, self.known)
        probing = self._gate(rungs[0])
        if probing is None and rungs[0] != "text":
            rungs = self.client._rungs(self.model, self.known)  # another worker's verdict
        # Rungs skipped on a learnt verdict still explain themselves in the final error: the
        # operator reading it may never have seen the call that taught it.
        outcomes = [
            RungOutcome(mode, _learnt(self.known[mode]))
            for mode in self.client._rungs(self.model, {})
            if mode not in rungs and mode in self.known
        ]
        problems: list[str] = []
        try:
            for mode in rungs:
                result = self._step(mode)
                if isinstance(result, StructuredCompletion):
                    self._learn_crashes(result)
                    return result
                outcome, problems = result
                outcomes.append(outcome)
                log.warning("llm.structured_step_down", model=self.model, outcome=str(outcome))
        finally:
            if probing is not None:
                self.store.end_probe(self.server, probing)
        raise InvalidOutputError(
            f"{self.model} at {self.settings.effective_base_url} gave no usable structured "
            f"answer: {unusable_detail(outcomes)}",
            problems=problems or ["no rung gave an answer"],
            outcomes=outcomes,
        )

    def _gate(self, first: StructuredMode) -> StructuredMode | None:
        """Probe an unknown first rung ourselves, or wait for the worker that does."""
        wait = self.settings.capability_probe_wait
        if first == "text" or first in self.known or wait <= 0:
            return None
        prober, verdict = await_probe(
            self.store,
            self.server,
            first,
            lease=self.settings.request_timeout + 5.0,
            wait=wait,
        )
        if verdict is not None:
            self.known = self.store.verdicts(self.server)
        return first if prober else None

    def _step(self, mode: StructuredMode) -> StructuredCompletion | tuple[RungOutcome, list[str]]:
        """One rung; once a format got a 500, a transient failure below ends in that 500."""
        try:
            return self._rung(mode)
        except TransientError as exc:
            if not self.crashed:
                raise
            raise self._server_down(exc) from None

    def _rung(self, mode: StructuredMode) -> StructuredCompletion | tuple[RungOutcome, list[str]]:
        request = rung_messages(self.messages, mode, self.reader, self.schema)
        fmt = response_format(mode, self.name, self.schema)
        try:
            first = self._call(request, fmt, self.max_tokens, repair=False, trial=self._trial(mode))
        except _UnsupportedFormat as exc:
            if _SCHEMA_REFUSED.search(str(exc)):
                # Not a server without json_schema: this schema broke its rules (our bug, or a
                # server stricter than OpenAI), which the capability's info line would bury.
                log.warning(
                    "llm.schema_refused", server=self.server, schema=self.name, error=str(exc)
                )
            self._learn(mode, "rejected", f"the server rejected it: {exc}", fallback=False)
            return RungOutcome(mode, f"rejected by the server ({_short(str(exc))})"), []
        except _FormatServerError as exc:
            return self._crash(mode, exc), []
        except _FailedGeneration as exc:
            return RungOutcome(mode, f"the server's JSON check failed ({_short(str(exc))})"), []
        reading, problems, fits = self._judge(first.text)
        verdict, why = learn(mode, reading, fits=fits, finish=first.finish_reason)
        if verdict is not None:
            self._learn(mode, verdict, why, fallback=first.fallback)
        if not problems:
            return self._done(reading, mode, first, repaired=False)
        if verdict == "ignored":
            return RungOutcome(mode, f"{why}; {describe_problems(problems)}"), problems
        log.info("llm.structured_repair", model=self.model, mode=mode, problems=problems[:5])
        truncated = first.finish_reason == "length"
        allowance = self.max_tokens or self.settings.max_output_tokens
        if truncated:
            allowance = min(allowance * 2, self.client.model_info(first.model).max_output_tokens)
        repair = [
            *request,
            {"role": "assistant", "content": first.text},
            {
                "role": "user",
                "content": repair_prompt(problems, truncated=truncated, mode=mode),
            },
        ]
        try:
            second = self._call(repair, fmt, allowance, repair=True)
        except _UnsupportedFormat as exc:  # the server changed its mind between two calls
            self._learn(mode, "rejected", f"the server rejected it: {exc}", fallback=False)
            return RungOutcome(mode, f"rejected by the server ({_short(str(exc))})"), problems
        except _FailedGeneration as exc:
            why = f"the server's JSON check failed ({_short(str(exc))})"
            return RungOutcome(mode, why), problems
        reading, problems, _ = self._judge(second.text)
        if not problems:
            return self._done(reading, mode, second, repaired=True)
        if mode != "text" and second.finish_reason != "length":
            self._learn(
                mode,
                "ignored",
                f"answers did not fit the schema even after a repair: "
                f"{describe_problems(problems)}",
                fallback=second.fallback,
            )
        return RungOutcome(mode, f"answers did not fit ({describe_problems(problems)})"), problems

    # -- steps --------------------------------------------------------------------------------

    def _call(
        self,
        request: Sequence[Mapping[str, Any]],
        fmt: Mapping[str, Any] | None,
        max_tokens: int | None,
        *,
        repair: bool,
        trial: bool = False,
    ) -> Completion:
        completion = self.client._complete(
            request,
            model=self.model,
            max_tokens=max_tokens,
            temperature=self.temperature,
            response_format=fmt,
            allow_fallback=True,
            meter=self.meter,
            repair=repair,
            format_on_trial=trial,
            permit=self.permit,
        )
        self.usage += completion.usage
        self.cost += completion.cost_usd
        self.calls += 1
        return completion

    def _trial(self, mode: StructuredMode) -> bool:
        """Whether ``mode`` sends a format not known to work here (a 500 may be its fault)."""
        known = self.known.get(mode)
        return mode != "text" and (known is None or not known.usable)

    def _crash(self, mode: StructuredMode, exc: _FormatServerError) -> RungOutcome:
        """Step down past a format that got a 500, under the leave it was given."""
        self.crashed.append((mode, exc.error))
        self.permit = exc.permit
        return RungOutcome(mode, f"the server answered 500 ({_short(str(exc.error))})")

    def _learn_crashes(self, answer: StructuredCompletion) -> None:
        """A lower rung answered, so the server is up: the 500s were the formats' fault."""
        for mode, error in self.crashed:
            why = f"the server answered 500 to {mode} ({_short(str(error))}); {answer.mode} worked"
            self._learn(mode, "rejected", why, fallback=answer.fallback)

    def _server_down(self, exc: TransientError) -> LLMServerError:
        """The first format's 500, once a lower rung failed too: the server is likely down.

        Nothing is learnt, and the error stays transient so the call is tried again.
        """
        mode, first = self.crashed[0]
        log.warning(
            "llm.structured_server_down", model=self.model, first=mode, then=_short(str(exc))
        )
        return first

    def _judge(self, text: str) -> tuple[Reading, list[str], bool]:
        """(reading, problems, fits): ``fits`` is the schema alone, before the caller's check."""
        reading = self.reader.read(text, self.schema)
        if reading.data is None:
            return reading, reading.problems or ["the answer could not be read"], False
        fits_schema = reading.fits_schema or self.validator.fits(reading.data)
        problems = [] if fits_schema else self.validator.problems(reading.data)
        fits = not problems
        if fits:
            problems = list(reading.problems)
        if fits and not problems and self.check is not None:
            problems = self.check(reading.data)
        return reading, problems, fits

    def _learn(self, mode: StructuredMode, verdict: Verdict, why: str, *, fallback: bool) -> None:
        """Record a verdict for every worker (not for an answer the fallback model gave)."""
        if fallback:
            return
        known = self.known.get(mode)
        if known is not None and known.verdict == verdict:
            return
        self.store.record(self.server, mode, verdict, why)
        self.known[mode] = ModeVerdict(verdict, why, float("inf"))
        log.info("llm.capability", server=self.server, mode=mode, verdict=verdict, reason=why)

    def _done(
        self, reading: Reading, mode: StructuredMode, answer: Completion, *, repaired: bool
    ) -> StructuredCompletion:
        assert reading.data is not None
        return StructuredCompletion(
            data=reading.data,
            mode=mode,
            model=answer.model,
            usage=self.usage,
            cost_usd=self.cost,
            repaired=repaired,
            calls=self.calls,
            fallback=answer.fallback,
            shape=reading.shape,
        )


def _short(text: str, limit: int = 160) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"
