"""The LLM client: one OpenAI-compatible endpoint, one retry policy, typed failures.

:class:`LLMClient` wraps the ``openai`` SDK (3.x, on ``httpx2``) with the SDK's own retries
switched off, so exactly one policy decides what happens after a failure:

* Rate limits are paced, not retried blindly: every attempt first reserves
  ``prompt estimate + max_tokens`` in the shared limiter (:mod:`shared.ratelimit.llm`), and a
  429 ``rate_limit_exceeded``/``slow_down`` makes every worker in the scope wait out the
  server's ``retry-after`` before the call is tried again (at most ``max_rate_retries`` times).
* Everything else surfaces at once as a :mod:`shared.errors` type for the task layer:
  transient (:class:`LLMServerError`, :class:`LLMTimeoutError`, :class:`LLMConnectionError`,
  :class:`LLMRateLimitedError`, :class:`~shared.llm.breaker.CircuitOpenError`) with
  ``retry_after`` where the server gave one, or permanent (:class:`QuotaExceededError`,
  :class:`ContextLengthError`, :class:`ContentFilterError`, :class:`LLMAuthError`, ...).
  ``insufficient_quota``, the billing codes and "Request too large" are permanent even though
  they arrive as 429s.
* A circuit breaker per endpoint and model (:mod:`shared.llm.breaker`) stops all workers from
  hammering a failing endpoint; a quota error trips it at once.
* When the main model is overloaded or its budget booked, ``fallback_model`` is used.

:meth:`LLMClient.complete_json` adds structured output with the fallback ladder
``json_schema`` (strict) → ``json_object`` with the schema in the prompt → plain text parsed and
repaired, validates against the schema, and asks once for a corrected answer when it is invalid.
Each result carries the :class:`~shared.llm.models.Usage` and cost of the calls it took.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal, cast

import httpx2
import openai
import structlog
from jsonschema import Draft202012Validator
from redis import Redis

from shared.errors import ConfigError, PermanentError, RateLimitedError, TransientError
from shared.llm.breaker import (
    QUOTA_REASON,
    CircuitBreaker,
    CircuitOpenError,
    LocalCircuitBreaker,
    RedisCircuitBreaker,
)
from shared.llm.config import LLMSettings
from shared.llm.models import ModelInfo, ModelRegistry, Usage, cost_of
from shared.llm.tokens import count_tokens, estimate_prompt_tokens
from shared.ratelimit.llm import (
    LLMRateLimiter,
    LocalLLMLimiter,
    RedisLLMLimiter,
    RequestTooLargeError,
    parse_retry_after,
)

__all__ = [
    "BILLING_CODES",
    "Completion",
    "ContentFilterError",
    "ContextLengthError",
    "InvalidOutputError",
    "LLMAuthError",
    "LLMClient",
    "LLMConnectionError",
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

StructuredMode = Literal["json_schema", "json_object", "text"]
_LADDER: tuple[StructuredMode, ...] = ("json_schema", "json_object", "text")

_CONTEXT_RE = re.compile(r"maximum context length is (\d+) tokens", re.IGNORECASE)
_REQUESTED_RE = re.compile(r"(?:resulted in|requested) (\d+) tokens", re.IGNORECASE)
_TRY_AGAIN_RE = re.compile(r"try again in (\d+(?:\.\d+)?)(ms|s|m)\b", re.IGNORECASE)
_FORMAT_HINT = re.compile(r"response_format|json_schema|json_object|structured output", re.I)


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
    """401/403: the key, organisation, project or region is not allowed."""


class ModelNotFoundError(LLMPermanentError):
    """404: the model does not exist at this endpoint or the key has no access."""


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
    """Structured output stayed invalid after the fallback ladder and one repair round."""

    def __init__(self, message: str, *, problems: Sequence[str]) -> None:
        super().__init__(message, user_message="The LLM returned an unusable summary.")
        self.problems = list(problems)


class _UnsupportedFormat(Exception):
    """Internal: the server rejected this response_format; step down the ladder."""


class _UnsupportedLimitParam(Exception):
    """Internal: the server wants the other max-tokens field."""


def _body_fields(body: object) -> tuple[str, str, str, str]:
    """(message, type, code, param) of an error body, tolerant of local servers' dialects."""
    data: Any = body
    if isinstance(data, Mapping) and isinstance(data.get("error"), Mapping):
        data = data["error"]
    if not isinstance(data, Mapping):
        return (str(body or ""), "", "", "")

    def text(name: str) -> str:
        value = data.get(name)
        return "" if value is None else str(value)

    return text("message"), text("type"), text("code"), text("param")


def _retry_after(headers: Mapping[str, str], message: str) -> float | None:
    seconds = parse_retry_after(headers)
    if seconds is not None:
        return seconds
    match = _TRY_AGAIN_RE.search(message)
    if match:
        value = float(match.group(1))
        return {"ms": value / 1000, "s": value, "m": value * 60}[match.group(2).lower()]
    return None


def classify_status(status: int, body: object, headers: Mapping[str, str]) -> Exception:
    """Map an HTTP error response of an OpenAI-compatible server onto our error types."""
    message, kind, code, param = _body_fields(body)
    detail = f"LLM endpoint returned {status}: {message or kind or code or 'no detail'}"
    if status == 429:
        if kind in BILLING_CODES or code in BILLING_CODES:
            return QuotaExceededError(
                detail,
                user_message="The LLM account is out of quota or credit; "
                "an operator must check its plan and billing.",
            )
        if message.lower().startswith("request too large"):
            return RequestTooLargeError(
                detail,
                user_message="A conversation chunk is larger than the LLM's tokens-per-minute "
                "limit; lower the chunk size or raise the limit.",
            )
        return LLMRateLimitedError(detail, retry_after=_retry_after(headers, message) or 1.0)
    if status in (400, 413, 422):
        lowered = message.lower()
        if code == "context_length_exceeded" or "maximum context length" in lowered:
            window = _CONTEXT_RE.search(message)
            requested = _REQUESTED_RE.search(message)
            return ContextLengthError(
                detail,
                context_window=int(window.group(1)) if window else None,
                requested=int(requested.group(1)) if requested else None,
            )
        if param in ("max_tokens", "max_completion_tokens") and code in (
            "unsupported_parameter",
            "unsupported_value",
        ):
            return _UnsupportedLimitParam(param)
        if param == "response_format" or _FORMAT_HINT.search(message):
            return _UnsupportedFormat(message)
        return LLMInvalidRequestError(detail)
    if status in (401, 403):
        return LLMAuthError(
            detail,
            user_message="The LLM endpoint rejected our credentials; an operator must check "
            "the API key, organisation and project.",
        )
    if status == 404:
        return ModelNotFoundError(
            detail,
            user_message="The configured LLM model does not exist or the key has no access.",
        )
    if status == 503:
        return LLMOverloadedError(detail, status=status, retry_after=_retry_after(headers, message))
    if status >= 500 or status in (408, 409):
        return LLMServerError(detail, status=status, retry_after=_retry_after(headers, message))
    return LLMInvalidRequestError(detail)


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
    """A validated JSON answer and the cost of every call it took."""

    data: dict[str, Any]
    mode: StructuredMode
    model: str
    usage: Usage
    cost_usd: float
    repaired: bool
    calls: int
    fallback: bool = False


# ---------------------------------------------------------------------------------------------
# Secrets


class SecretFileKey:
    """An API key read from a file, re-read whenever the file changes (rotation, no restart)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._stamp: tuple[int, int] | None = None
        self._key = ""
        self._lock = threading.Lock()

    def __call__(self) -> str:
        """The current key; :class:`ConfigError` when the file is missing or empty."""
        try:
            stat = self.path.stat()
        except OSError as exc:
            raise ConfigError(
                f"LLM API key file {self.path} cannot be read ({exc.strerror}); mount the "
                "secret there or unset the key-file setting"
            ) from None
        stamp = (stat.st_mtime_ns, stat.st_size)
        with self._lock:
            if stamp != self._stamp:
                key = self.path.read_text(encoding="utf-8").strip()
                if not key:
                    raise ConfigError(f"LLM API key file {self.path} is empty; write the key in it")
                self._key, self._stamp = key, stamp
            return self._key


# ---------------------------------------------------------------------------------------------
# JSON output


def parse_json_text(text: str) -> Any:
    """Parse a model's JSON answer, tolerating code fences, prose around it, trailing commas."""
    stripped = text.strip()
    fenced = re.search(r"```(?:json)?\s*\n?(.*?)```", stripped, re.DOTALL)
    if fenced:
        stripped = fenced.group(1).strip()
    try:
        return json.loads(stripped)
    except json.JSONDecodeError:
        pass
    start = stripped.find("{")
    end = stripped.rfind("}")
    if start == -1 or end <= start:
        raise ValueError("the answer contains no JSON object")
    candidate = stripped[start : end + 1]
    try:
        return json.loads(candidate)
    except json.JSONDecodeError:
        repaired = re.sub(r",\s*([}\]])", r"\1", candidate)
        try:
            return json.loads(repaired)
        except json.JSONDecodeError as exc:
            raise ValueError(
                f"the answer is not valid JSON ({exc.msg} at char {exc.pos})"
            ) from None


def _schema_problems(validator: Draft202012Validator, data: Any) -> list[str]:
    problems = []
    for error in sorted(validator.iter_errors(data), key=lambda e: list(e.absolute_path)):
        where = "/".join(str(p) for p in error.absolute_path) or "(root)"
        problems.append(f"{where}: {error.message}")
        if len(problems) >= 20:
            break
    return problems


def _schema_instruction(schema: Mapping[str, Any]) -> str:
    return (
        "Reply with one JSON object and nothing else. It must validate against this JSON "
        "Schema:\n<schema>\n" + json.dumps(schema, separators=(",", ":")) + "\n</schema>"
    )


# ---------------------------------------------------------------------------------------------
# Client


class LLMClient:
    """Chat completions against one endpoint with shared limits, a breaker and fallbacks.

    Build one per process (after fork) with :meth:`shared` (limits and breaker in Redis) or
    :meth:`embedded` (in-process twins); ``limiter_factory`` and ``breaker_factory`` receive a
    scope string (see :meth:`LLMSettings.scope`) and are called once per model.
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
    ) -> None:
        self.settings = settings
        self.registry = (registry or ModelRegistry()).extend(settings.models)
        self._limiter_factory = limiter_factory
        self._breaker_factory = breaker_factory
        self._limiters: dict[str, LLMRateLimiter] = {}
        self._breakers: dict[str, CircuitBreaker] = {}
        self._modes: dict[str, StructuredMode] = {}
        self._limit_params: dict[str, str] = {}
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
                "no OpenAI API key: set OPENAI_API_KEY (or the LLM key-file setting), or set "
                "LLM_BASE_URL to a local OpenAI-compatible server"
            )
        return "not-needed"  # local servers ignore the key but the SDK wants one

    @classmethod
    def shared(
        cls, settings: LLMSettings, redis: Redis[Any], *, prefix: str = "sb", **kwargs: Any
    ) -> LLMClient:
        """A client whose limiter and breaker state is shared through ``redis``."""

        def limiter(scope: str) -> LLMRateLimiter:
            return RedisLLMLimiter(
                redis,
                scope=scope,
                tokens_per_minute=settings.tokens_per_minute,
                requests_per_minute=settings.requests_per_minute,
                headroom=settings.limiter_headroom,
                prefix=f"{prefix}:rl:llm",
            )

        def breaker(scope: str) -> CircuitBreaker:
            return RedisCircuitBreaker(
                redis,
                scope=scope,
                failure_threshold=settings.breaker_failure_threshold,
                open_seconds=settings.breaker_open_seconds,
                prefix=f"{prefix}:cb:llm",
            )

        return cls(settings, limiter_factory=limiter, breaker_factory=breaker, **kwargs)

    @classmethod
    def embedded(cls, settings: LLMSettings, **kwargs: Any) -> LLMClient:
        """A client with in-process limiter and breaker (embedded mode, one process)."""

        def limiter(scope: str) -> LLMRateLimiter:
            return LocalLLMLimiter(
                scope=scope,
                tokens_per_minute=settings.tokens_per_minute,
                requests_per_minute=settings.requests_per_minute,
                headroom=settings.limiter_headroom,
            )

        def breaker(scope: str) -> CircuitBreaker:
            return LocalCircuitBreaker(
                scope=scope,
                failure_threshold=settings.breaker_failure_threshold,
                open_seconds=settings.breaker_open_seconds,
            )

        return cls(settings, limiter_factory=limiter, breaker_factory=breaker, **kwargs)

    def close(self) -> None:
        """Close the HTTP connection pool."""
        self._sdk.close()

    def __enter__(self) -> LLMClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- lookups ------------------------------------------------------------------------------

    def model_info(self, model: str) -> ModelInfo:
        """Registry entry of ``model``; local backends get a conservative default entry."""
        info = self.registry.find(model)
        if info is not None:
            return info
        if self.settings.effective_provider == "openai":
            return self.registry.get(model)  # raises ConfigError with the fix
        log.warning("llm.model_unregistered", model=model, assumed_context=8192)
        return ModelInfo(name=model, context_window=8192, max_output_tokens=2048)

    def limiter(self, model: str) -> LLMRateLimiter:
        """The limiter of ``model``'s scope."""
        scope = self.settings.scope(model)
        with self._lock:
            if scope not in self._limiters:
                self._limiters[scope] = self._limiter_factory(scope)
            return self._limiters[scope]

    def breaker(self, model: str) -> CircuitBreaker:
        """The circuit breaker of ``model``'s scope."""
        scope = self.settings.scope(model)
        with self._lock:
            if scope not in self._breakers:
                self._breakers[scope] = self._breaker_factory(scope)
            return self._breakers[scope]

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
    ) -> Completion:
        """One chat completion; see the module docstring for the failure policy."""
        try:
            return self._complete(
                messages,
                model=model,
                max_tokens=max_tokens,
                temperature=temperature,
                response_format=response_format,
                allow_fallback=allow_fallback,
            )
        except _UnsupportedFormat as exc:
            raise LLMInvalidRequestError(
                f"the endpoint rejected response_format: {exc}",
                user_message="The LLM server does not support the requested output format.",
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
    ) -> Completion:
        primary = model or self.settings.model
        try:
            return self._complete_on(primary, messages, max_tokens, temperature, response_format)
        except (RateLimitedError, LLMOverloadedError) as exc:
            fallback = self.settings.fallback_model
            quota = isinstance(exc, CircuitOpenError) and exc.reason in BILLING_CODES
            if not allow_fallback or not fallback or fallback == primary or quota:
                raise
            log.warning("llm.fallback", model=primary, fallback=fallback, reason=type(exc).__name__)
            result = self._complete_on(fallback, messages, max_tokens, temperature, response_format)
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
        if temp is not None and not info.reasoning:
            params["temperature"] = temp
        if response_format is not None:
            params["response_format"] = dict(response_format)
        return params

    def _limit_param(self, model: str, info: ModelInfo) -> str:
        learnt = self._limit_params.get(model)
        if learnt:
            return learnt
        if self.settings.limit_param != "auto":
            return self.settings.limit_param
        if self.settings.effective_provider == "openai":
            return info.limit_param
        return "max_tokens"

    def _complete_on(
        self,
        model: str,
        messages: Sequence[Mapping[str, Any]],
        max_tokens: int | None,
        temperature: float | None,
        response_format: Mapping[str, Any] | None,
    ) -> Completion:
        info = self.model_info(model)
        allowance = min(max_tokens or self.settings.max_output_tokens, info.max_output_tokens)
        prompt = estimate_prompt_tokens(messages, model=model, response_format=response_format)
        if not info.fits(prompt, allowance):
            raise ContextLengthError(
                f"prompt of {prompt} tokens + {allowance} output tokens exceeds {model}'s "
                f"context window of {info.context_window}",
                context_window=info.context_window,
                requested=prompt + allowance,
            )
        limiter = self.limiter(model)
        breaker = self.breaker(model)
        breaker.allow()
        waited = 0.0
        attempt = 0
        switched_param = False
        while True:
            attempt += 1
            params = self._params(model, info, messages, allowance, temperature, response_format)
            reservation = limiter.reserve(prompt + allowance, max_wait=self.settings.max_rate_wait)
            waited += reservation.waited
            started = time.monotonic()
            try:
                raw = self._sdk.chat.completions.with_raw_response.create(**params)
            except openai.APIStatusError as exc:
                limiter.calibrate(exc.response.headers)
                error = self._convert_status(exc)
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
                self._record_outcome(breaker, error)
                if isinstance(error, _UnsupportedLimitParam):
                    raise LLMInvalidRequestError(str(exc)) from None
                raise error from None
            except openai.APITimeoutError:
                breaker.record_failure("timeout")
                raise LLMTimeoutError(
                    f"LLM request to {model} timed out after {self.settings.request_timeout}s"
                ) from None
            except openai.APIConnectionError as exc:
                breaker.record_failure("connection")
                limiter.settle(reservation, 0)
                raise LLMConnectionError(f"LLM endpoint unreachable: {exc}") from None
            latency = time.monotonic() - started
            limiter.calibrate(raw.headers)
            completion = raw.parse()
            usage = Usage.from_api(completion.usage)
            choice = completion.choices[0] if completion.choices else None
            text = (choice.message.content if choice else None) or ""
            if usage.total_tokens == 0:
                usage = Usage(prompt_tokens=prompt, completion_tokens=count_tokens(text), calls=1)
            limiter.settle(reservation, usage.total_tokens)
            breaker.record_success()
            finish = (choice.finish_reason if choice else None) or "stop"
            refusal = choice.message.refusal if choice else None
            if finish == "content_filter" or refusal:
                raise ContentFilterError(
                    f"{model} stopped: {refusal or 'content filter'}",
                    user_message="The LLM provider's content filter blocked this summary.",
                )
            billed = self.registry.find(completion.model) or info
            return Completion(
                text=text,
                model=completion.model or model,
                finish_reason=finish,
                usage=usage,
                cost_usd=cost_of(usage, billed),
                request_id=raw.headers.get("x-request-id"),
                latency=latency,
                waited=waited,
                attempts=attempt,
            )

    def _convert_status(self, exc: openai.APIStatusError) -> Exception:
        body: object = exc.body
        if body is None:
            try:
                body = exc.response.json()
            except ValueError:
                body = exc.response.text
        return classify_status(exc.status_code, body, exc.response.headers)

    @staticmethod
    def _record_outcome(breaker: CircuitBreaker, error: Exception) -> None:
        if isinstance(error, QuotaExceededError):
            breaker.trip(QUOTA_REASON)
        elif isinstance(error, LLMServerError):
            breaker.record_failure(f"http_{error.status}")
        else:
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
    ) -> StructuredCompletion:
        """A JSON object valid against ``schema`` (and ``check``, which lists problems).

        Tries the configured rung of the ladder first (``auto`` = strict ``json_schema``),
        steps down when the server rejects that response format (remembered per model), and
        sends the problems back once for a corrected answer.
        """
        if not re.fullmatch(r"[A-Za-z0-9_-]{1,64}", name):
            raise ValueError("schema name must be 1-64 letters, digits, _ or -")
        validator = Draft202012Validator(dict(schema))
        target = model or self.settings.model
        usage = Usage()
        cost = 0.0
        calls = 0
        for mode in self._ladder(target):
            request = self._structured_messages(messages, schema, mode)
            response_format = _response_format(mode, name, schema)
            try:
                first = self._complete(
                    request,
                    model=target,
                    max_tokens=max_tokens,
                    temperature=temperature,
                    response_format=response_format,
                    allow_fallback=True,
                )
            except _UnsupportedFormat as exc:
                log.warning("llm.structured_downgrade", model=target, mode=mode, reason=str(exc))
                self._modes[target] = _next_mode(mode)
                continue
            usage, cost, calls = usage + first.usage, cost + first.cost_usd, calls + 1
            data, problems = _check_answer(first.text, validator, check)
            if data is not None and not problems:
                return StructuredCompletion(
                    data=data,
                    mode=mode,
                    model=first.model,
                    usage=usage,
                    cost_usd=cost,
                    repaired=False,
                    calls=calls,
                    fallback=first.fallback,
                )
            log.info("llm.structured_repair", model=target, mode=mode, problems=problems[:5])
            allowance = max_tokens or self.settings.max_output_tokens
            if first.finish_reason == "length":
                allowance = min(allowance * 2, self.model_info(first.model).max_output_tokens)
            repair = [
                *request,
                {"role": "assistant", "content": first.text},
                {
                    "role": "user",
                    "content": _repair_prompt(problems, truncated=first.finish_reason == "length"),
                },
            ]
            second = self.complete(
                repair,
                model=target,
                max_tokens=allowance,
                temperature=temperature,
                response_format=response_format,
            )
            usage, cost, calls = usage + second.usage, cost + second.cost_usd, calls + 1
            data, problems = _check_answer(second.text, validator, check)
            if data is not None and not problems:
                return StructuredCompletion(
                    data=data,
                    mode=mode,
                    model=second.model,
                    usage=usage,
                    cost_usd=cost,
                    repaired=True,
                    calls=calls,
                    fallback=second.fallback,
                )
            raise InvalidOutputError(
                f"{target} returned invalid structured output twice: {'; '.join(problems[:5])}",
                problems=problems,
            )
        raise InvalidOutputError(
            f"{self.settings.effective_base_url} supports no structured output mode for {target}",
            problems=["no response_format accepted"],
        )

    def _ladder(self, model: str) -> tuple[StructuredMode, ...]:
        configured = self.settings.structured_output
        if configured != "auto":
            return (configured,)
        start = self._modes.get(model)
        if start is None:
            info = self.registry.find(model)
            start = "json_schema" if info is None or info.supports_json_schema else "json_object"
        return _LADDER[_LADDER.index(start) :]

    @staticmethod
    def _structured_messages(
        messages: Sequence[Mapping[str, Any]], schema: Mapping[str, Any], mode: StructuredMode
    ) -> list[Mapping[str, Any]]:
        if mode == "json_schema":
            return list(messages)
        return [*messages, {"role": "system", "content": _schema_instruction(schema)}]


def _next_mode(mode: StructuredMode) -> StructuredMode:
    index = _LADDER.index(mode)
    return _LADDER[min(index + 1, len(_LADDER) - 1)]


def _response_format(
    mode: StructuredMode, name: str, schema: Mapping[str, Any]
) -> dict[str, Any] | None:
    if mode == "json_schema":
        return {
            "type": "json_schema",
            "json_schema": {"name": name, "schema": dict(schema), "strict": True},
        }
    if mode == "json_object":
        return {"type": "json_object"}
    return None


def _check_answer(
    text: str,
    validator: Draft202012Validator,
    check: Callable[[dict[str, Any]], list[str]] | None,
) -> tuple[dict[str, Any] | None, list[str]]:
    try:
        data = parse_json_text(text)
    except ValueError as exc:
        return None, [str(exc)]
    if not isinstance(data, dict):
        return None, ["the answer must be a JSON object"]
    problems = _schema_problems(validator, data)
    if not problems and check is not None:
        problems = check(data)
    return cast(dict[str, Any], data), problems


def _repair_prompt(problems: Sequence[str], *, truncated: bool) -> str:
    lines = ["Your previous answer cannot be used:"]
    if truncated:
        lines.append("- it was cut off before the JSON ended; be more concise")
    lines.extend(f"- {p}" for p in problems[:20])
    lines.append("Reply again with the complete corrected JSON object only.")
    return "\n".join(lines)
