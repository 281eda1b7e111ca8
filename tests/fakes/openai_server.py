"""A faithful fake of OpenAI's Chat Completions API: a real HTTP server on 127.0.0.1.

Routes: ``POST /v1/chat/completions``, ``GET /v1/models`` (and ``/v1/models/{id}``), plus
control routes for a server running in another process: ``POST /_fake/faults``,
``GET /_fake/stats``, ``POST /_fake/reset``.  Any other path gets OpenAI's 404 ``Invalid URL
(POST /chat/completions)``, a base URL without ``/v1`` included (the ``litellm`` dialect
serves the API at the root as well, as the proxy does).

What it does like the real service:

* validates requests: authentication, model (404 ``model_not_found``), messages, sampling
  parameters, ``max_tokens`` against the model's output limit (``invalid_value``) and on
  reasoning models (``unsupported_parameter``), the context window
  (``context_length_exceeded``), ``response_format`` (strict-schema rules, the ``json``
  word rule of JSON mode);
* counts usage as the API does and independently of the product's own counting
  (:mod:`tests.fakes.openai_usage`: tiktoken itself, the cookbook's per-message framing, the
  fake's own tables of model encodings and context windows);
* enforces RPM and TPM with continuously refilling buckets: admission charges the prompt plus
  the ``max_tokens`` allowance, the unused allowance is returned when the reply is done, and a
  request over the limit gets the real 429 body ("Rate limit reached ... Please try again in
  1.146s", Go durations such as "1m0s" from a minute on), ``retry-after``/``retry-after-ms``
  (unless ``retry_after_headers`` is off) and the six ``x-ratelimit-*`` headers;
* models latency (a base plus a time per output token);
* injects faults on demand (:meth:`FakeOpenAIServer.inject`): 500 (``server_error``; another
  5xx with ``status=``), 503, timeouts, dropped connections, 401, ``insufficient_quota`` (as a
  LiteLLM proxy relays it with the ``litellm`` dialect or ``dialect="litellm"``), forced 429
  and ``slow_down`` (any wait, with or without retry-after headers and the message's hint),
  ``content_filter``, refusals, truncated (``length``) replies, broken JSON, invented
  citations (``bad_citations``; ``forged=`` sets the value cited), and Groq's
  ``json_validate_failed`` 400 (its JSON mode refusing what the model wrote);
* answers structured requests with output valid against the requested schema (strict
  ``json_schema``, or a schema found between ``<schema>`` tags for JSON mode and text mode),
  built from the input: items quote and cite real aliases of the ``<transcript>`` (or of the
  ``<notes>``) it was sent, owners are real authors.  A request for plain text with headings
  and bullet templates ("## key_points" / "- <text> [m12, m15]") is answered in that format.
  Plain requests get a short extract of the input.  Nothing is canned.

Less faithful servers, switchable per test through :class:`FakeConfig` (or ``POST
/_fake/config`` for a server in another process) — the way self-hosted servers and proxies
behave, see :func:`_format_unsupported`:

* ``supports_json_schema``/``supports_json_object`` off, refused with the 400 body of a
  ``dialect``: ``openai``, ``vllm`` (``BadRequestError``, ``param: null``, integer ``code``),
  ``vllm-legacy`` (the same at the top level, before vLLM 0.10.1), ``llamacpp``, ``litellm``
  (which refuses ``response_format`` altogether; the proxy also serves the API without
  ``/v1`` and relays a quota 429 without its type and code);
* ``unsupported_status = 500`` (vLLM dialects only): the unsupported mode fails with vLLM's
  ``InternalServerError`` 500 instead of a 400, as vLLM does for ``response_format`` shapes it
  cannot handle (vllm-project/vllm#35438);
* ``answer_style``: the model ignores ``response_format`` and any schema in the prompt and
  writes ``own_json`` (JSON of its own shape), ``json_in_prose``, ``markdown`` (its own
  headings and bullets, aliases inline) or ``uncited_prose``;
* ``reasoning_in_content``: the model writes its reasoning first, in ``content`` inside
  ``<think>…</think>`` (braces and all), then its answer: a reasoning model on llama.cpp with
  ``--reasoning-format none``, on vLLM without a reasoning parser, or in LM Studio
  (ggml-org/llama.cpp#12276); the reasoning counts against ``max_tokens``;
* ``system_first_template``: the model's chat template takes system messages only at the
  start (Qwen3, Gemma, Mistral): a system message after a user turn is a 400 in vLLM's words
  (vllm-project/vllm#41114);
* ``errors_in_ok_body``: a gateway such as OpenRouter, which answers 200 before its
  provider has run: a provider failure (429, 5xx, timeout) comes as a 200 whose body holds
  ``error`` with the status as its ``code``;
* ``context_cut``: Ollama's OpenAI endpoint, which cuts a prompt longer than the model's
  context (its ``num_ctx``) to fit and answers 200, counting only what it kept in ``usage``
  (ollama/ollama#4967);
* ``inline_aliases``: structured answers also write ``[m22]``-style aliases inside text fields
  (and sometimes only there, or an alias of no message);
* ``usage_counting = "chars4"``: ``usage`` (and the rate limits) count characters / 4, not
  the tokenizer;
* ``charge_failures``: a 500 still reports and charges ``usage`` (beside ``error``).

Run it in-thread (``with FakeOpenAIServer() as fake: fake.base_url``) for tests, or as a
process for benchmarks: ``python -m tests.fakes.openai_server --port 0 --tpm 200000``
prints ``READY <base_url>`` and serves until terminated.
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import json
import math
import random
import re
import secrets
import signal
import socket
import string
import sys
import threading
import time
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import jsonschema_rs
from jsonschema import Draft202012Validator

from tests.fakes.openai_usage import (
    MODEL_LIMITS,
    chat_prompt_tokens,
    encoding_name,
    load,
    text_tokens,
    truncate,
)

__all__ = ["FAULT_KINDS", "FakeConfig", "FakeModel", "FakeOpenAIServer", "main"]

FAULT_KINDS = frozenset(
    {
        "server_error",
        "overloaded",
        "timeout",
        "disconnect",
        "invalid_api_key",
        "insufficient_quota",
        "rate_limit",
        "slow_down",
        "content_filter",
        "refusal",
        "length",
        "invalid_json",
        "bad_citations",
        "json_validate_failed",
    }
)

_SNAPSHOTS = {
    "gpt-4o": "gpt-4o-2024-08-06",
    "gpt-4o-mini": "gpt-4o-mini-2024-07-18",
    "gpt-4.1": "gpt-4.1-2025-04-14",
    "gpt-4.1-mini": "gpt-4.1-mini-2025-04-14",
}
_ROLES = {"system", "developer", "user", "assistant", "tool", "function"}
_HEADER = re.compile(r"^\[(m\d+)((?: [^\]]*)?)\] ?(.*)$")
_TIME = re.compile(r"^\d{1,2}:\d{2}$")
_SCHEMA_TAG = re.compile(r"<schema>\s*(.*?)\s*</schema>", re.DOTALL)
_TRANSCRIPT_TAG = re.compile(r"<transcript>\n?(.*?)\n?</transcript>", re.DOTALL)
_NOTES_TAG = re.compile(r"<notes>\n?(.*?)\n?</notes>", re.DOTALL)
_ALIAS = re.compile(r"^m\d+$")


@functools.lru_cache(maxsize=64)
def _compiled(schema_json: str) -> jsonschema_rs.Draft202012Validator:
    return jsonschema_rs.Draft202012Validator(json.loads(schema_json))


def _fits(schema: dict[str, Any], data: Any) -> bool:
    """Whether ``data`` validates against ``schema`` (compiled once per schema: the check
    runs on every answer, and the pure-Python validator took milliseconds per call)."""
    return _compiled(json.dumps(schema, sort_keys=True)).is_valid(data)


@dataclass(frozen=True, slots=True)
class FakeModel:
    """A model the fake serves.

    ``encoding`` is the tokenizer behind the name when the name does not say it (a proxy's
    alias such as ``summarizer`` for gpt-4); by default the one tiktoken maps the name to.
    """

    name: str
    context_window: int
    max_output_tokens: int
    reasoning: bool = False
    encoding: str | None = None

    @property
    def snapshot(self) -> str:
        """The dated name echoed in responses, as the API does."""
        return _SNAPSHOTS.get(self.name, self.name)

    @property
    def tokenizer(self) -> str:
        """The encoding this model's requests and replies are counted with."""
        return self.encoding or encoding_name(self.name)


def _default_models() -> dict[str, FakeModel]:
    return {
        name: FakeModel(name, context, output, reasoning)
        for name, (context, output, reasoning) in MODEL_LIMITS.items()
    }


@dataclass(slots=True)
class FakeConfig:
    """Behaviour of a fake server; every limit can be None (not enforced)."""

    tokens_per_minute: int | None = None
    requests_per_minute: int | None = None
    api_keys: frozenset[str] | None = None
    #: Restricted keys without the models scope: they summarize, but ``GET /models`` is 401.
    keys_without_models: frozenset[str] = frozenset()
    models: dict[str, FakeModel] = field(default_factory=_default_models)
    latency_base: float = 0.0
    latency_per_token: float = 0.0
    reply_tokens: int = 60
    supports_json_schema: bool = True
    supports_json_object: bool = True
    retry_after_headers: bool = True
    organization: str = "org-fake"
    timeout_delay: float = 30.0
    dialect: str = "openai"
    answer_style: str | None = None
    inline_aliases: bool = False
    reasoning_in_content: bool = False
    system_first_template: bool = False
    errors_in_ok_body: bool = False
    context_cut: int | None = None
    usage_counting: str = "tokenizer"
    charge_failures: bool = False
    unsupported_status: int = 400

    def __post_init__(self) -> None:
        _check_modes(self)


@dataclass(slots=True)
class _Fault:
    kind: str
    times: int
    model: str | None
    params: dict[str, Any]


class _ApiError(Exception):
    def __init__(
        self,
        status: int,
        message: str,
        *,
        type_: str = "invalid_request_error",
        code: str | None = None,
        param: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.body = {"error": {"message": message, "type": type_, "param": param, "code": code}}
        self.headers = dict(headers or {})


class _Bucket:
    """Continuously refilling bucket, full at start, as OpenAI's limits behave."""

    def __init__(self, limit: int, now: float) -> None:
        self.limit = float(limit)
        self.level = float(limit)
        self.ts = now

    def refill(self, now: float) -> None:
        self.level = min(self.limit, self.level + self.limit * (now - self.ts) / 60.0)
        self.ts = now

    def reset_after(self) -> float:
        return max(0.0, (self.limit - self.level) * 60.0 / self.limit)


def _go_duration(seconds: float) -> str:
    """``seconds`` as OpenAI writes a wait, Go's ``Duration.String`` rounded to milliseconds:
    ``0s``, ``20ms``, ``1.146s``, ``1m0s``, ``3m57.024s``, ``1h2m3s``."""
    millis = max(0, round(seconds * 1000))
    if millis == 0:
        return "0s"
    if millis < 1000:
        return f"{millis}ms"
    hours, millis = divmod(millis, 3_600_000)
    minutes, millis = divmod(millis, 60_000)
    whole, fraction = divmod(millis, 1000)
    text = f"{whole}.{fraction:03d}".rstrip("0").rstrip(".") + "s"
    if hours:
        return f"{hours}h{minutes}m{text}"
    return f"{minutes}m{text}" if minutes else text


def _wait_text(seconds: float) -> str:
    """The wait a 429 message names: never "0s", the request may not go at once."""
    return _go_duration(max(seconds, 0.001))


@dataclass(slots=True)
class _Source:
    alias: str
    author: str
    text: str


@dataclass(slots=True)
class _Stats:
    requests: int = 0
    completions: int = 0
    statuses: Counter[int] = field(default_factory=Counter)
    rate_limited: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    faults: Counter[str] = field(default_factory=Counter)
    headers_seen: list[dict[str, str]] = field(default_factory=list)
    bodies_seen: list[dict[str, Any]] = field(default_factory=list)
    charged_failures: int = 0


class FakeOpenAIServer:
    """The fake, runnable in a thread (context manager) or as a process (:func:`main`)."""

    def __init__(
        self, config: FakeConfig | None = None, *, host: str = "127.0.0.1", port: int = 0
    ) -> None:
        self.config = config or FakeConfig()
        self._lock = threading.Lock()
        self._faults: list[_Fault] = []
        self._stats = _Stats()
        self._buckets: dict[str, _Bucket] = {}
        self._started = time.monotonic()
        self._httpd = ThreadingHTTPServer((host, port), _make_handler(self))
        self._httpd.daemon_threads = True
        self._thread: threading.Thread | None = None

    # -- lifecycle --------------------------------------------------------------------------

    @property
    def port(self) -> int:
        """The TCP port the server listens on."""
        return int(self._httpd.server_address[1])

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:PORT/v1``, for the client's ``base_url``."""
        return f"http://127.0.0.1:{self.port}/v1"

    def start(self) -> FakeOpenAIServer:
        """Serve in a daemon thread."""
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close the socket."""
        self._httpd.shutdown()
        self._httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def serve_forever(self) -> None:
        """Serve in the calling thread until :meth:`stop` (process mode)."""
        self._httpd.serve_forever()

    def __enter__(self) -> FakeOpenAIServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- control ----------------------------------------------------------------------------

    def inject(self, kind: str, *, times: int = 1, model: str | None = None, **params: Any) -> None:
        """Make the next ``times`` matching requests fail (or misbehave) as ``kind``."""
        if kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault {kind!r}; choose from {sorted(FAULT_KINDS)}")
        with self._lock:
            self._faults.append(_Fault(kind, times, model, params))

    def reset(self) -> None:
        """Forget faults, statistics and rate-limit state."""
        with self._lock:
            self._faults.clear()
            self._stats = _Stats()
            self._buckets.clear()
            self._started = time.monotonic()

    def stats(self) -> dict[str, Any]:
        """Counters since start or :meth:`reset`."""
        with self._lock:
            s = self._stats
            return {
                "requests": s.requests,
                "completions": s.completions,
                "statuses": {str(k): v for k, v in s.statuses.items()},
                "rate_limited": s.rate_limited,
                "prompt_tokens": s.prompt_tokens,
                "completion_tokens": s.completion_tokens,
                "total_tokens": s.prompt_tokens + s.completion_tokens,
                "faults": dict(s.faults),
                "charged_failures": s.charged_failures,
                "seconds": time.monotonic() - self._started,
            }

    @property
    def requests_seen(self) -> list[dict[str, Any]]:
        """Bodies of every chat request received (most recent last)."""
        with self._lock:
            return list(self._stats.bodies_seen)

    @property
    def headers_seen(self) -> list[dict[str, str]]:
        """Headers of every chat request received (lower-cased names)."""
        with self._lock:
            return list(self._stats.headers_seen)

    def _take_fault(self, model: str | None) -> _Fault | None:
        with self._lock:
            for fault in self._faults:
                if fault.model is None or fault.model == model:
                    fault.times -= 1
                    if fault.times <= 0:
                        self._faults.remove(fault)
                    self._stats.faults[fault.kind] += 1
                    return fault
        return None

    # -- rate limits ------------------------------------------------------------------------

    def _rate_headers(self, model: str) -> dict[str, str]:
        headers: dict[str, str] = {}
        now = time.monotonic()
        for kind, limit in (
            ("requests", self.config.requests_per_minute),
            ("tokens", self.config.tokens_per_minute),
        ):
            if limit is None:
                continue
            bucket = self._buckets.setdefault(f"{model}:{kind}", _Bucket(limit, now))
            bucket.refill(now)
            headers[f"x-ratelimit-limit-{kind}"] = str(limit)
            headers[f"x-ratelimit-remaining-{kind}"] = str(max(0, math.floor(bucket.level)))
            headers[f"x-ratelimit-reset-{kind}"] = _go_duration(bucket.reset_after())
        return headers

    def _admit(self, model: str, cost: int) -> None:
        """Charge one request and ``cost`` tokens, or raise the 429 OpenAI would send."""
        config = self.config
        with self._lock:
            now = time.monotonic()
            requests = tokens = None
            if config.requests_per_minute is not None:
                requests = self._buckets.setdefault(
                    f"{model}:requests", _Bucket(config.requests_per_minute, now)
                )
                requests.refill(now)
            if config.tokens_per_minute is not None:
                tokens = self._buckets.setdefault(
                    f"{model}:tokens", _Bucket(config.tokens_per_minute, now)
                )
                tokens.refill(now)
                if cost > tokens.limit:
                    raise _ApiError(
                        429,
                        f"Request too large for {model} in organization {config.organization} "
                        f"on tokens per min (TPM): Limit {int(tokens.limit)}, Requested {cost}. "
                        "The input or output tokens must be reduced in order to run "
                        "successfully. Visit https://platform.openai.com/account/rate-limits "
                        "to learn more.",
                        type_="tokens",
                        code="rate_limit_exceeded",
                        headers=self._rate_headers(model),
                    )
            if requests is not None and requests.level < 1:
                wait = (1 - requests.level) * 60.0 / requests.limit
                raise self._limited(model, "requests", "RPM", requests, 1, wait)
            if tokens is not None and tokens.level < cost:
                wait = (cost - tokens.level) * 60.0 / tokens.limit
                raise self._limited(model, "tokens", "TPM", tokens, cost, wait)
            if requests is not None:
                requests.level -= 1
            if tokens is not None:
                tokens.level -= cost

    def _limited(
        self, model: str, kind: str, unit: str, bucket: _Bucket, requested: int, wait: float
    ) -> _ApiError:
        used = int(bucket.limit - max(0.0, bucket.level))
        headers = self._rate_headers(model)
        if self.config.retry_after_headers:
            headers["retry-after-ms"] = str(max(1, math.ceil(wait * 1000)))
            headers["retry-after"] = str(max(1, math.ceil(wait)))
        return _ApiError(
            429,
            f"Rate limit reached for {model} in organization {self.config.organization} on "
            f"{kind} per min ({unit}): Limit {int(bucket.limit)}, Used {used}, Requested "
            f"{requested}. Please try again in {_wait_text(wait)}. Visit "
            "https://platform.openai.com/account/rate-limits to learn more.",
            type_=kind,
            code="rate_limit_exceeded",
            headers=headers,
        )

    def _refund(self, model: str, tokens: int) -> None:
        if self.config.tokens_per_minute is None or tokens <= 0:
            return
        with self._lock:
            bucket = self._buckets.get(f"{model}:tokens")
            if bucket is not None:
                bucket.refill(time.monotonic())
                bucket.level = min(bucket.limit, bucket.level + tokens)

    # -- request handling -------------------------------------------------------------------

    def _authorize(self, headers: Mapping[str, str]) -> None:
        auth = headers.get("authorization", "")
        if not auth.startswith("Bearer ") or not auth[7:].strip():
            raise _ApiError(
                401,
                "You didn't provide an API key. You need to provide your API key in an "
                "Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY).",
                code=None,
            )
        key = auth[7:].strip()
        if self.config.api_keys is not None and key not in self.config.api_keys:
            shown = key[:3] + "*" * 4 + key[-4:] if len(key) > 8 else "****"
            raise _ApiError(
                401,
                f"Incorrect API key provided: {shown}. You can find your API key at "
                "https://platform.openai.com/account/api-keys.",
                code="invalid_api_key",
            )

    def _may_list_models(self, headers: Mapping[str, str]) -> None:
        """OpenAI's answer to a restricted key without the models scope (401, not 403)."""
        key = headers.get("authorization", "")[7:].strip()
        if key in self.config.keys_without_models:
            raise _ApiError(
                401,
                "You have insufficient permissions for this operation. Missing scopes: "
                "api.model.read. Check that you have the correct role in your organization "
                "(Reader, Writer, Owner) and project (Member, Owner), and if you're using a "
                "restricted API key, that it has the necessary scopes.",
                code=None,
            )

    def handle_chat(
        self, headers: Mapping[str, str], raw: bytes
    ) -> tuple[int, dict[str, str], Any]:
        """Process one chat request; returns (status, headers, JSON body or SSE text)."""
        with self._lock:
            stats = self._stats
            stats.requests += 1
            stats.headers_seen.append(dict(headers))
        try:
            body = json.loads(raw or b"{}")
        except ValueError:
            raise _ApiError(
                400,
                "We could not parse the JSON body of your request. (HINT: This likely means "
                "you aren't using your HTTP library correctly.)",
            ) from None
        if not isinstance(body, dict):
            raise _ApiError(400, "The request body must be a JSON object.")
        with self._lock:
            stats.bodies_seen.append(body)
        fault = self._take_fault(body.get("model") if isinstance(body.get("model"), str) else None)
        if fault is not None and fault.kind == "invalid_api_key":
            raise _ApiError(
                401,
                "Incorrect API key provided: sk-****. You can find your API key at "
                "https://platform.openai.com/account/api-keys.",
                code="invalid_api_key",
            )
        self._authorize(headers)
        request = _validate(body, self.config)
        model: FakeModel = request["model"]
        prompt_tokens = _prompt_usage(body, model, self.config)
        allowance = request["max_tokens"]
        if self.config.context_cut is not None and prompt_tokens > self.config.context_cut:
            prompt_tokens = self.config.context_cut  # Ollama keeps the end, and says nothing
        if prompt_tokens + allowance > model.context_window:
            if self.config.dialect == "llamacpp":
                raise _llamacpp_context_error(prompt_tokens + allowance, model.context_window)
            raise _ApiError(
                400,
                f"This model's maximum context length is {model.context_window} tokens. "
                f"However, you requested {prompt_tokens + allowance} tokens ({prompt_tokens} "
                f"in the messages, {allowance} in the completion). Please reduce the length "
                "of the messages or completion.",
                code="context_length_exceeded",
                param="messages",
            )
        if fault is not None:
            self._pre_admission_fault(fault, model.name)
        self._admit(model.name, prompt_tokens + allowance * request["n"])
        started = time.monotonic()
        if fault is not None and fault.kind in ("server_error", "overloaded", "timeout"):
            try:
                self._server_fault(fault, model.name)
            except _ApiError as error:
                self._charge_failure(error, model.name, prompt_tokens, request)
                raise
        # A reasoning model thinks first, out of the same max_completion_tokens.
        thinking = (
            _REASONING_SPEND[body.get("reasoning_effort") or "medium"] if model.reasoning else 0
        )
        if thinking >= allowance:
            content, finish, refusal = "", "length", None
            thinking = allowance
        else:
            answering = {**request, "max_tokens": allowance - thinking}
            content, finish, refusal = _respond(body, answering, fault, prompt_tokens, self.config)
        completion_tokens = thinking + _completion_usage(
            content or refusal or "", model, self.config
        )
        delay = self.config.latency_base + self.config.latency_per_token * completion_tokens
        if delay > 0:
            time.sleep(delay)
        self._refund(model.name, (allowance - completion_tokens) * request["n"])
        with self._lock:
            stats.completions += 1
            stats.prompt_tokens += prompt_tokens
            stats.completion_tokens += completion_tokens * request["n"]
            rate_headers = self._rate_headers(model.name)
        response_headers = {
            **rate_headers,
            "openai-organization": self.config.organization,
            "openai-processing-ms": str(round((time.monotonic() - started) * 1000)),
            "openai-version": "2020-10-01",
        }
        completion_id = "chatcmpl-" + "".join(
            secrets.choice(string.ascii_letters + string.digits) for _ in range(29)
        )
        usage = {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens * request["n"],
            "total_tokens": prompt_tokens + completion_tokens * request["n"],
            "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
            "completion_tokens_details": {
                "reasoning_tokens": thinking * request["n"],
                "audio_tokens": 0,
                "accepted_prediction_tokens": 0,
                "rejected_prediction_tokens": 0,
            },
        }
        if body.get("stream"):
            return (
                200,
                response_headers,
                _sse(
                    completion_id,
                    model.snapshot,
                    content,
                    finish,
                    usage,
                    request["n"],
                    bool((body.get("stream_options") or {}).get("include_usage")),
                ),
            )
        choices: list[dict[str, Any]] = [
            {
                "index": index,
                "message": {
                    "role": "assistant",
                    "content": None if refusal else content,
                    "refusal": refusal,
                    "annotations": [],
                },
                "logprobs": None,
                "finish_reason": finish,
            }
            for index in range(request["n"])
        ]
        return (
            200,
            response_headers,
            {
                "id": completion_id,
                "object": "chat.completion",
                "created": int(time.time()),
                "model": model.snapshot,
                "choices": choices,
                "usage": usage,
                "service_tier": "default",
                "system_fingerprint": "fp_fake0000",
            },
        )

    def _pre_admission_fault(self, fault: _Fault, model: str) -> None:
        if fault.kind == "json_validate_failed":
            # Groq's JSON mode checks what the model wrote and refuses it with a 400, the
            # text in failed_generation (build-with-groq/g1#23).
            message = (
                "Failed to generate JSON. Please adjust your prompt. See 'failed_generation' "
                "for more details."
            )
            error = _ApiError(400, message)
            error.body = {
                "error": {
                    "message": message,
                    "type": "invalid_request_error",
                    "code": "json_validate_failed",
                    "failed_generation": '{"topics": ["the build"], "key_points": [',
                }
            }
            raise error
        if fault.kind == "insufficient_quota":
            raise _quota_error(str(fault.params.get("dialect", self.config.dialect)))
        if fault.kind in ("rate_limit", "slow_down"):
            raise self._forced_429(fault, model)

    def _forced_429(self, fault: _Fault, model: str) -> _ApiError:
        """A ``rate_limit`` or ``slow_down`` fault's 429, asking for ``retry_after`` seconds.

        Fault options: ``retry_after_headers`` (default: the config's) sends the wait as
        ``retry-after-ms`` and ``retry-after``; ``hint`` (default True) says it in the
        message too ("Please try again in 3m57.024s").  The token limit, when the config has
        one, reads exhausted until then (``x-ratelimit-remaining-tokens: 0``, the reset in
        ``x-ratelimit-reset-tokens``), so with neither option the reset is all that is left.
        """
        wait = float(fault.params.get("retry_after", 0.05))
        headers = self._rate_headers(model)
        if "x-ratelimit-remaining-tokens" in headers:
            headers["x-ratelimit-remaining-tokens"] = "0"
            headers["x-ratelimit-reset-tokens"] = _go_duration(wait)
        if fault.params.get("retry_after_headers", self.config.retry_after_headers):
            headers["retry-after-ms"] = str(max(1, round(wait * 1000)))
            headers["retry-after"] = str(max(1, math.ceil(wait)))
        if fault.kind == "slow_down":
            return _ApiError(
                429,
                "Please reduce the rate at which you send requests; traffic ramped up too quickly.",
                type_="rate_limit_error",
                code="slow_down",
                headers=headers,
            )
        hint = f" Please try again in {_wait_text(wait)}." if fault.params.get("hint", True) else ""
        return _ApiError(
            429,
            f"Rate limit reached for {model} in organization {self.config.organization} on "
            f"tokens per min (TPM): Limit 1000, Used 1000, Requested 1.{hint}",
            type_="tokens",
            code="rate_limit_exceeded",
            headers=headers,
        )

    def _server_fault(self, fault: _Fault, model: str) -> None:
        if fault.kind == "timeout":
            time.sleep(float(fault.params.get("delay", self.config.timeout_delay)))
        if fault.kind in ("server_error", "timeout"):
            raise _ApiError(
                int(fault.params.get("status", 500)),
                "The server had an error while processing your request. Sorry about that!",
                type_="server_error",
                headers=self._rate_headers(model),
            )
        raise _ApiError(
            503,
            "The model is overloaded with other requests. Please try again later.",
            type_="service_unavailable_error",
            code="server_is_overloaded",
            headers={**self._rate_headers(model), "retry-after": "1"},
        )

    def _charge_failure(
        self, error: _ApiError, model: str, prompt_tokens: int, request: dict[str, Any]
    ) -> None:
        """With ``charge_failures``, a failed call reports and keeps the tokens it used."""
        if not self.config.charge_failures or error.status < 500:
            return
        partial = min(_FAILED_COMPLETION_TOKENS, request["max_tokens"]) * request["n"]
        usage = {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": partial,
            "total_tokens": prompt_tokens + partial,
        }
        error.body["usage"] = usage
        self._refund(model, request["max_tokens"] * request["n"] - partial)
        with self._lock:
            self._stats.charged_failures += 1
            self._stats.prompt_tokens += prompt_tokens
            self._stats.completion_tokens += partial

    def configure(self, **fields: Any) -> None:
        """Change :class:`FakeConfig` fields of a running server (the modes of a test)."""
        with self._lock:
            for name, value in fields.items():
                if name not in _SWITCHABLE:
                    raise ValueError(
                        f"{name!r} cannot be switched; use one of {sorted(_SWITCHABLE)}"
                    )
                setattr(self.config, name, value)
            _check_modes(self.config)

    def api_route(self, path: str) -> str | None:
        """The API route ``path`` names (``/chat/completions``), or None when it names none.

        OpenAI serves its API under ``/v1`` only; a LiteLLM proxy serves it at the root too.
        """
        if path.startswith("/v1/"):
            return path[len("/v1") :]
        return path if self.config.dialect == "litellm" else None

    def models_body(self) -> dict[str, Any]:
        """The ``GET /v1/models`` list."""
        return {
            "object": "list",
            "data": [
                {"id": name, "object": "model", "created": 1_700_000_000, "owned_by": "system"}
                for name in sorted(self.config.models)
            ],
        }

    def record_status(self, status: int, stats: _Stats | None = None) -> None:
        """Count a response status (and 429s) in ``stats``: the counters of when it arrived.

        A reply that outlives a :meth:`reset` (a slow "timeout" fault) is counted in the old
        counters, so it never leaks into the next test's figures.
        """
        with self._lock:
            target = stats or self._stats
            target.statuses[status] += 1
            if status == 429:
                target.rate_limited += 1


# -- validation ---------------------------------------------------------------------------------


def _check_system_first(messages: list[Any]) -> None:
    """A chat template that takes system messages only at the start (Qwen3, Gemma, Mistral):
    vLLM answers its error as a 400 ``BadRequestError`` (vllm-project/vllm#41114)."""
    roles = [m.get("role") for m in messages]
    first_other = next((i for i, r in enumerate(roles) if r not in ("system", "developer")), None)
    if first_other is None or all(r not in ("system", "developer") for r in roles[first_other:]):
        return
    message = "System message must be at the beginning."
    error = _ApiError(400, message, type_="BadRequestError")
    error.body = {
        "error": {"message": message, "type": "BadRequestError", "param": None, "code": 400}
    }
    raise error


#: Tokens a reasoning model spends thinking at each ``reasoning_effort`` (medium is OpenAI's
#: default), before it writes a word of the answer.
_REASONING_SPEND = {"minimal": 64, "low": 600, "medium": 2400, "high": 6000}


def _validate(body: dict[str, Any], config: FakeConfig) -> dict[str, Any]:
    name = body.get("model")
    if not isinstance(name, str) or not name:
        raise _ApiError(400, "you must provide a model parameter", param="model")
    model = config.models.get(name)
    if model is None:
        raise _ApiError(
            404,
            f"The model `{name}` does not exist or you do not have access to it.",
            code="model_not_found",
        )
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise _ApiError(
            400,
            "[] is too short - 'messages'",
            code="invalid_value" if messages == [] else None,
            param="messages",
        )
    for index, message in enumerate(messages):
        if not isinstance(message, dict) or message.get("role") not in _ROLES:
            raise _ApiError(
                400,
                f"Invalid value for 'messages[{index}].role': expected one of system, "
                "developer, user, assistant, tool.",
                code="invalid_value",
                param=f"messages[{index}].role",
            )
        content = message.get("content")
        if message["role"] != "assistant" and not isinstance(content, str | list):
            raise _ApiError(
                400,
                f"Invalid type for 'messages[{index}].content': expected a string or an "
                "array of content parts.",
                code="invalid_type",
                param=f"messages[{index}].content",
            )
    if config.system_first_template:
        _check_system_first(messages)
    for param in ("max_tokens", "max_completion_tokens"):
        value = body.get(param)
        if value is None:
            continue
        if model.reasoning and param == "max_tokens":
            raise _ApiError(
                400,
                "Unsupported parameter: 'max_tokens' is not supported with this model. Use "
                "'max_completion_tokens' instead.",
                code="unsupported_parameter",
                param="max_tokens",
            )
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise _ApiError(
                400,
                f"Invalid '{param}': integer below minimum value.",
                code="integer_below_min_value",
                param=param,
            )
        if value > model.max_output_tokens:
            raise _ApiError(
                400,
                f"max_tokens is too large: {value}. This model supports at most "
                f"{model.max_output_tokens} completion tokens, whereas you provided {value}.",
                code="invalid_value",
                param=param,
            )
    allowance = body.get("max_completion_tokens") or body.get("max_tokens")
    effort = body.get("reasoning_effort")
    if effort is not None:
        if not model.reasoning:
            raise _ApiError(
                400,
                "Unsupported parameter: 'reasoning_effort' is not supported with this model.",
                code="unsupported_parameter",
                param="reasoning_effort",
            )
        if effort not in _REASONING_SPEND:
            raise _ApiError(
                400,
                f"Invalid value: '{effort}'. Supported values are: 'minimal', 'low', 'medium', and 'high'.",
                code="invalid_value",
                param="reasoning_effort",
            )
    temperature = body.get("temperature")
    if temperature is not None:
        if not isinstance(temperature, int | float) or not 0 <= temperature <= 2:
            raise _ApiError(
                400,
                f"Invalid 'temperature': {temperature} is not between 0 and 2.",
                code="decimal_above_max_value",
                param="temperature",
            )
        if model.reasoning and temperature != 1:
            raise _ApiError(
                400,
                "Unsupported value: 'temperature' does not support "
                f"{temperature} with this model. Only the default (1) value is supported.",
                code="unsupported_value",
                param="temperature",
            )
    n = body.get("n", 1)
    if not isinstance(n, int) or not 1 <= n <= 128:
        raise _ApiError(400, f"Invalid 'n': {n}.", code="invalid_value", param="n")
    schema = _check_response_format(body, config)
    return {
        "model": model,
        "max_tokens": int(allowance or model.max_output_tokens),
        "n": n,
        "schema": schema,
    }


def _check_response_format(body: dict[str, Any], config: FakeConfig) -> dict[str, Any] | None:
    response_format = body.get("response_format")
    if response_format is None:
        return None
    kind = response_format.get("type") if isinstance(response_format, dict) else None
    if kind == "text":
        return None
    if kind == "json_object":
        if not config.supports_json_object:
            raise _format_unsupported("json_object", body, config)
        if config.dialect != "openai" or config.answer_style is not None:
            return None  # the "json" word rule is OpenAI's own
        text = json.dumps(body.get("messages"))
        if "json" not in text.lower():
            raise _ApiError(
                400,
                "'messages' must contain the word 'json' in some form, to use "
                "'response_format' of type 'json_object'.",
                param="messages",
            )
        return None
    if kind != "json_schema":
        raise _ApiError(
            400,
            f"Invalid value: '{kind}'. Supported values are: 'json_object', 'json_schema', "
            "and 'text'.",
            code="invalid_value",
            param="response_format.type",
        )
    if not config.supports_json_schema:
        raise _format_unsupported("json_schema", body, config)
    if config.answer_style is not None:
        return None  # accepted and ignored, as Ollama does with what it does not understand
    spec = response_format.get("json_schema")
    if not isinstance(spec, dict) or "name" not in spec:
        raise _ApiError(
            400,
            "Missing required parameter: 'response_format.json_schema.name'.",
            code="missing_required_parameter",
            param="response_format.json_schema.name",
        )
    if not re.fullmatch(r"[A-Za-z0-9_-]{1,64}", str(spec["name"])):
        raise _ApiError(
            400,
            "Invalid 'response_format.json_schema.name': string does not match pattern.",
            code="invalid_value",
            param="response_format.json_schema.name",
        )
    schema = spec.get("schema")
    if not isinstance(schema, dict):
        raise _ApiError(
            400,
            "Invalid schema for response_format: schema must be an object.",
            param="response_format",
        )
    if spec.get("strict"):
        problem = _StrictCheck(schema).problem()
        if problem:
            # Chat Completions sends no code with this error (the Responses API's is
            # "invalid_json_schema"): clients can go by ``param`` and the message only.
            raise _ApiError(
                400,
                f"Invalid schema for response_format '{spec['name']}': {problem}",
                param="response_format",
            )
    return schema


#: Keywords strict Structured Outputs refuse ("'allOf' is not permitted."); the guide lists
#: the composition ones, uniqueItems and oneOf are refused in practice.
_STRICT_NOT_PERMITTED = (
    "allOf",
    "oneOf",
    "not",
    "if",
    "then",
    "else",
    "dependentRequired",
    "dependentSchemas",
    "uniqueItems",
)
#: The string formats strict mode accepts (Structured Outputs guide, "Supported properties").
_STRICT_FORMATS = frozenset(
    {"date-time", "time", "date", "duration", "email", "hostname", "ipv4", "ipv6", "uuid"}
)
_STRICT_MAX_DEPTH = 10
_STRICT_MAX_PROPERTIES = 5000
_STRICT_MAX_ENUM_VALUES = 1000
_STRICT_MAX_NAME_CHARS = 120_000
_STRICT_LARGE_ENUM = 250
_STRICT_LARGE_ENUM_CHARS = 15_000

Context = tuple[str, ...]


class _StrictCheck:
    """OpenAI's strict-schema rules, each answered in its words ("In context=('properties',
    'x'), ..."): a root object, ``additionalProperties: false`` and every property required on
    every object (``anyOf`` branches included), no unsupported keyword, a type on every node,
    and the size limits (5000 properties, 10 levels, 1000 enum values, 120,000 characters of
    names and enum values, 15,000 characters for an enum of more than 250 values)."""

    def __init__(self, root: dict[str, Any]) -> None:
        self.root = root
        self.properties = 0
        self.enum_values = 0
        self.chars = 0

    def problem(self) -> str | None:
        root = self.root
        if "anyOf" in root or root.get("type") != "object":
            got = "anyOf" if "anyOf" in root else root.get("type")
            return f"schema must be a JSON Schema of 'type: \"object\"', got 'type: \"{got}\"'."
        return self.node(root, (), 0) or self.totals()

    def totals(self) -> str | None:
        if self.properties > _STRICT_MAX_PROPERTIES:
            return (
                f"the schema has {self.properties} object properties in total, above the "
                f"limit of {_STRICT_MAX_PROPERTIES}."
            )
        if self.enum_values > _STRICT_MAX_ENUM_VALUES:
            return (
                f"the schema has {self.enum_values} enum values in total, above the limit "
                f"of {_STRICT_MAX_ENUM_VALUES}."
            )
        if self.chars > _STRICT_MAX_NAME_CHARS:
            return (
                f"the total string length of property names, definition names, enum values "
                f"and const values is {self.chars}, above the limit of {_STRICT_MAX_NAME_CHARS}."
            )
        return None

    def node(self, node: Any, where: Context, depth: int) -> str | None:
        if not isinstance(node, dict):
            return f"In context={where!r}, schema must be an object."
        for keyword in _STRICT_NOT_PERMITTED:
            if keyword in node:
                return f"In context={where!r}, '{keyword}' is not permitted."
        if "$ref" in node:
            ref = node["$ref"]
            if _resolve_ref(self.root, ref) is None:
                return f"In context={where!r}, reference to component '{ref}' was not found."
            return None
        if "anyOf" in node:
            for index, branch in enumerate(node["anyOf"]):
                problem = self.node(branch, (*where, "anyOf", str(index)), depth)
                if problem:
                    return problem
            return None
        return self.typed(node, where, depth) or self.defs(node, depth)

    def typed(self, node: dict[str, Any], where: Context, depth: int) -> str | None:
        if "enum" in node or "const" in node:
            values = node.get("enum", [node.get("const")])
            texts = [str(v) for v in values if isinstance(v, str)]
            self.enum_values += len(values)
            self.chars += sum(map(len, texts))
            if len(values) > _STRICT_LARGE_ENUM and sum(map(len, texts)) > _STRICT_LARGE_ENUM_CHARS:
                return (
                    f"In context={where!r}, an enum of more than {_STRICT_LARGE_ENUM} values "
                    f"may have at most {_STRICT_LARGE_ENUM_CHARS} characters in all."
                )
        types = node.get("type")
        if types is None:
            if "enum" in node or "const" in node:
                return None
            return f"In context={where!r}, schema must have a 'type' key."
        type_list = types if isinstance(types, list) else [types]
        fmt = node.get("format")
        if fmt is not None and fmt not in _STRICT_FORMATS:
            return f"In context={where!r}, '{fmt}' is not a valid format."
        if "object" in type_list:
            problem = self.obj(node, where, depth)
            if problem:
                return problem
        if "array" in type_list and "items" in node:
            return self.node(node["items"], (*where, "items"), depth)
        return None

    def obj(self, node: dict[str, Any], where: Context, depth: int) -> str | None:
        if depth >= _STRICT_MAX_DEPTH:
            return (
                f"In context={where!r}, the schema nests objects more than "
                f"{_STRICT_MAX_DEPTH} levels deep."
            )
        if node.get("additionalProperties") is not False:
            return (
                f"In context={where!r}, 'additionalProperties' is required to be supplied and "
                "to be false."
            )
        props: dict[str, Any] = node.get("properties", {})
        missing = [key for key in props if key not in node.get("required", [])]
        if missing:
            return (
                f"In context={where!r}, 'required' is required to be supplied and to be an "
                f"array including every key in properties. Missing '{missing[0]}'."
            )
        self.properties += len(props)
        for key, value in props.items():
            self.chars += len(key)
            problem = self.node(value, (*where, "properties", key), depth + 1)
            if problem:
                return problem
        return None

    def defs(self, node: dict[str, Any], depth: int) -> str | None:
        for name, sub in (node.get("$defs") or {}).items():
            self.chars += len(name)
            problem = self.node(sub, ("$defs", name), depth)
            if problem:
                return problem
        return None


def _resolve_ref(root: dict[str, Any], ref: str) -> dict[str, Any] | None:
    if ref == "#":
        return root  # recursion, which strict schemas may use
    if not ref.startswith("#/"):
        return None
    node: Any = root
    for part in ref[2:].split("/"):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node if isinstance(node, dict) else None


# -- output -------------------------------------------------------------------------------------


def _text_of(message: Mapping[str, Any]) -> str:
    content = message.get("content")
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(p.get("text", "") for p in content if isinstance(p, dict))
    return ""


def _sources(messages: list[dict[str, Any]]) -> list[_Source]:
    """Messages the request is about: transcript lines, else note items, else input lines."""
    data = "\n".join(_text_of(m) for m in messages if m.get("role") in ("user", "developer"))
    sources: list[_Source] = []
    for block in _TRANSCRIPT_TAG.findall(data):
        author = "someone"
        for line in block.split("\n"):
            match = _HEADER.match(line)
            if match is None:
                if line.startswith("  ") and sources:
                    sources[-1].text += " " + line.strip()
                continue
            alias, meta, text = match.groups()
            # Authors may contain spaces: every word that is neither the time nor a reply mark.
            words = [p for p in meta.split() if not _TIME.match(p) and not p.startswith("↩")]
            if words:
                author = " ".join(words)
            sources.append(_Source(alias, author, text))
    if sources:
        return sources
    for block in _NOTES_TAG.findall(data):
        for line in block.split("\n"):
            try:
                notes = json.loads(line)
            except ValueError:
                continue
            _collect_note_items(notes, sources, owner=None)
    if sources:
        return sources
    lines = [ln.strip() for ln in data.split("\n") if ln.strip()]
    return [_Source("", "someone", ln) for ln in lines] or [_Source("", "someone", "nothing")]


def _collect_note_items(node: Any, sink: list[_Source], owner: str | None) -> None:
    if isinstance(node, dict):
        person = node.get("participant") or node.get("owner") or owner
        ids = node.get("message_ids")
        text = node.get("text") or node.get("summary") or node.get("task") or node.get("title")
        if isinstance(ids, list) and isinstance(text, str):
            for alias in ids:
                if isinstance(alias, str) and _ALIAS.match(alias):
                    sink.append(_Source(alias, str(person or "someone"), text))
        for value in node.values():
            _collect_note_items(value, sink, person if isinstance(person, str) else owner)
    elif isinstance(node, list):
        for value in node:
            _collect_note_items(value, sink, owner)


def _words(text: str, count: int) -> str:
    words = text.split()
    return " ".join(words[:count]) if words else "(no text)"


#: A valid value of each string format strict schemas accept.
_FORMAT_EXAMPLES = {
    "date-time": "2026-03-14T15:09:26Z",
    "time": "15:09:26Z",
    "date": "2026-03-14",
    "duration": "PT1H30M",
    "email": "someone@example.com",
    "hostname": "example.com",
    "ipv4": "192.0.2.1",
    "ipv6": "2001:db8::1",
    "uuid": "123e4567-e89b-42d3-a456-426614174000",
}


def _number_within(schema: dict[str, Any], *, integer: bool) -> float | int:
    """The smallest allowed number (0 when it may be), inside ``schema``'s bounds."""
    low = schema.get("minimum", schema.get("exclusiveMinimum"))
    high = schema.get("maximum", schema.get("exclusiveMaximum"))
    value: float = 0 if low is None else low
    if "exclusiveMinimum" in schema and value <= schema["exclusiveMinimum"]:
        value = schema["exclusiveMinimum"] + (1 if integer else 0.5)
    if high is not None and value > high:
        value = high
    step = schema.get("multipleOf")
    if step:
        value = math.ceil(value / step) * step
    return math.ceil(value) if integer else value


class _Generator:
    """Builds a value valid against a JSON schema from the request's own messages."""

    def __init__(
        self,
        root: dict[str, Any],
        sources: list[_Source],
        seed: int,
        bad_citations: str | None,
    ) -> None:
        self.root = root
        self.sources = sources
        self.cited = [s for s in sources if s.alias] or sources
        self.random = random.Random(seed)
        self.cursor = 0
        self.bad = bad_citations
        self.authors = sorted({s.author for s in self.cited}) or ["someone"]
        self.depth = 0  # objects being built, so a recursive schema ends

    def _next(self, author: str | None = None) -> _Source:
        pool = [s for s in self.cited if s.author == author] if author else self.cited
        pool = pool or self.cited
        source = pool[self.cursor % len(pool)]
        self.cursor += 1 + self.random.randrange(3)
        return source

    def value(self, schema: Any, name: str, focus: _Source, author: str | None) -> Any:
        if not isinstance(schema, dict):
            return None
        if "$ref" in schema:
            return self.value(_resolve_ref(self.root, schema["$ref"]), name, focus, author)
        if "anyOf" in schema:
            branches = schema["anyOf"]
            # Deep in a recursive schema, the branch that does not recurse.
            plain = [b for b in branches if "$ref" not in b and b.get("type") != "object"]
            branch = plain[0] if self.depth > 2 and plain else branches[0]
            return self.value(branch, name, focus, author)
        if "const" in schema:
            return schema["const"]
        if "enum" in schema:
            return schema["enum"][self.random.randrange(len(schema["enum"]))]
        types = schema.get("type")
        type_list = types if isinstance(types, list) else [types]
        if "object" in type_list and not (self.depth > 2 and "null" in type_list):
            return self.obj(schema, author)
        if "array" in type_list:
            return self.array(schema, name, focus, author)
        if "string" in type_list:
            if name == "due" and "null" in type_list:
                return None
            if schema.get("format") in _FORMAT_EXAMPLES:
                return _FORMAT_EXAMPLES[schema["format"]]
            return self.string(name, focus)
        if "integer" in type_list or "number" in type_list:
            return _number_within(schema, integer="number" not in type_list)
        if "boolean" in type_list:
            return False
        return None

    def obj(self, schema: dict[str, Any], author: str | None) -> dict[str, Any]:
        props: dict[str, Any] = schema.get("properties", {})
        if "participant" in props:
            author = self.authors[self.cursor % len(self.authors)]
            self.cursor += 1
        focus = self._next(author)
        self.depth += 1
        try:
            return {key: self.value(sub, key, focus, author) for key, sub in props.items()}
        finally:
            self.depth -= 1

    def array(self, schema: dict[str, Any], name: str, focus: _Source, author: str | None) -> Any:
        if name == "message_ids":
            if self.bad is not None:
                return [self.bad, focus.alias or "m1"]
            ids = [focus.alias] if focus.alias else []
            extra = self._next(author)
            if extra.alias and extra.alias not in ids and self.random.random() < 0.5:
                ids.append(extra.alias)
            return ids
        count = max(1, min(4, len(self.cited) // 6 + 1))
        if name in ("open_questions", "decisions", "action_items"):
            count = max(0, count - 1)
        if name == "contributions":
            count = min(len(self.authors), 3)
        if self.depth > 2:
            count = 0
        count = max(schema.get("minItems", 0), min(count, schema.get("maxItems", count)))
        return [self.value(schema.get("items"), name, focus, author) for _ in range(count)]

    def string(self, name: str, focus: _Source) -> str:
        if name in ("owner", "participant"):
            return focus.author
        if name == "title":
            return _words(focus.text, 6)
        if name == "overview":
            return " ".join(_words(s.text, 12) for s in self.cited[:3])
        return _words(focus.text, 24)


def _respond(
    body: dict[str, Any],
    request: dict[str, Any],
    fault: _Fault | None,
    prompt_tokens: int,
    config: FakeConfig,
) -> tuple[str, str, str | None]:
    """(content, finish_reason, refusal) of the reply."""
    kind = fault.kind if fault else None
    if kind == "refusal":
        return "", "stop", "I'm sorry, I can't help with that."
    if kind == "content_filter":
        return "", "content_filter", None
    messages = body["messages"]
    digest = hashlib.sha256(json.dumps(messages, sort_keys=True).encode()).digest()
    seed = int.from_bytes(digest[:8], "big")
    sources = _sources(messages)
    model: FakeModel = request["model"]
    styled = _unfaithful_answer(body, request, sources, seed, config)
    if styled is not None:
        return _limit(_reasoned(styled, config), fault, request, model)
    schema = request["schema"]
    response_format = body.get("response_format") or {}
    if schema is None and response_format.get("type") != "text":
        found = _SCHEMA_TAG.search("\n".join(_text_of(m) for m in messages))
        if found:
            try:
                schema = json.loads(found.group(1))
            except ValueError:
                schema = None
    if schema is not None:
        forged = (
            str(fault.params.get("forged", "m99999"))
            if fault is not None and kind == "bad_citations"
            else None
        )
        generator = _Generator(schema, sources, seed, bad_citations=forged)
        data = generator.value(schema, "root", generator._next(), None)
        # A bug in the generator must fail loudly, not produce invalid output.
        if not _fits(schema, data):
            errors = [e.message for e in Draft202012Validator(schema).iter_errors(data)]
            raise _ApiError(
                500,
                f"fake generator produced invalid output: {(errors or ['(no message)'])[0]}",
                type_="server_error",
            )
        if config.inline_aliases:
            data = _with_inline_aliases(data, random.Random(seed))
        content = json.dumps(data, ensure_ascii=False)
        if kind == "invalid_json":
            content = content[: len(content) // 2] + ", }"
        elif response_format.get("type") not in ("json_schema", "json_object"):
            content = f"Here is the summary you asked for:\n```json\n{content}\n```"
    elif response_format.get("type") == "json_object":
        content = json.dumps({"summary": " ".join(_words(s.text, 12) for s in sources[:3])})
    elif (asked := _text_format_answer(messages, sources, seed)) is not None:
        content = asked
    else:
        pieces: list[str] = []
        budget = config.reply_tokens
        for source in sources * max(1, budget // max(1, len(sources))):
            pieces.append(_words(source.text, 30))
            if text_tokens(" ".join(pieces), model.tokenizer) >= budget:
                break
        content = truncate(" ".join(pieces), budget, model.tokenizer)
    return _limit(_reasoned(content, config), fault, request, model)


def _reasoned(content: str, config: FakeConfig) -> str:
    """``content`` after the reasoning a model writes first (``reasoning_in_content``)."""
    if not config.reasoning_in_content:
        return content
    return (
        '<think>\nThe user wants the summary as JSON like {"topics": [...]}. Let me read the '
        "transcript and pick what matters.\n</think>\n\n" + content
    )


def _limit(
    content: str, fault: _Fault | None, request: dict[str, Any], model: FakeModel
) -> tuple[str, str, str | None]:
    """The reply cut at its ``max_tokens`` (or the ``length`` fault's) limit."""
    kind = fault.kind if fault else None
    limit = (
        int(fault.params.get("tokens", 8)) if fault and kind == "length" else request["max_tokens"]
    )
    if text_tokens(content, model.tokenizer) > limit:
        return truncate(content, limit, model.tokenizer), "length", None
    return content, "stop", None


def _sse(
    completion_id: str,
    model: str,
    content: str,
    finish: str,
    usage: dict[str, Any],
    n: int,
    include_usage: bool,
) -> str:
    created = int(time.time())

    def chunk(choices: list[dict[str, Any]], with_usage: bool = False) -> str:
        data: dict[str, Any] = {
            "id": completion_id,
            "object": "chat.completion.chunk",
            "created": created,
            "model": model,
            "system_fingerprint": "fp_fake0000",
            "choices": choices,
        }
        if include_usage:
            data["usage"] = usage if with_usage else None
        return "data: " + json.dumps(data) + "\n\n"

    events = []
    for index in range(n):
        events.append(
            chunk(
                [
                    {
                        "index": index,
                        "delta": {"role": "assistant", "content": ""},
                        "logprobs": None,
                        "finish_reason": None,
                    }
                ]
            )
        )
        words = re.findall(r"\S+\s*", content)
        for start in range(0, len(words), 8):
            events.append(
                chunk(
                    [
                        {
                            "index": index,
                            "delta": {"content": "".join(words[start : start + 8])},
                            "logprobs": None,
                            "finish_reason": None,
                        }
                    ]
                )
            )
        events.append(
            chunk([{"index": index, "delta": {}, "logprobs": None, "finish_reason": finish}])
        )
    if include_usage:
        events.append(chunk([], with_usage=True))
    events.append("data: [DONE]\n\n")
    return "".join(events)


# -- servers less faithful than OpenAI ----------------------------------------------------------

FORMAT_DIALECTS = frozenset({"openai", "vllm", "vllm-legacy", "llamacpp", "litellm"})
ANSWER_STYLES = frozenset({"own_json", "json_in_prose", "markdown", "uncited_prose"})
USAGE_COUNTINGS = frozenset({"tokenizer", "chars4"})
_SWITCHABLE = frozenset(
    {
        "retry_after_headers",
        "supports_json_schema",
        "supports_json_object",
        "dialect",
        "answer_style",
        "inline_aliases",
        "reasoning_in_content",
        "system_first_template",
        "errors_in_ok_body",
        "context_cut",
        "usage_counting",
        "charge_failures",
        "unsupported_status",
    }
)
#: Tokens a failed call had produced when it failed (charged with ``charge_failures``).
_FAILED_COMPLETION_TOKENS = 12
_TEMPLATE_HEADING = re.compile(r"^## (\w+)\s*$")
_TASK_SECTION = re.compile(r"^- (\w+): ", re.MULTILINE)
_PLACEHOLDER = re.compile(r"<([^<>]+)>")


def _check_modes(config: FakeConfig) -> None:
    if config.dialect not in FORMAT_DIALECTS:
        raise ValueError(
            f"unknown dialect {config.dialect!r}; use one of {sorted(FORMAT_DIALECTS)}"
        )
    if config.answer_style is not None and config.answer_style not in ANSWER_STYLES:
        raise ValueError(
            f"unknown answer_style {config.answer_style!r}; use one of {sorted(ANSWER_STYLES)}"
        )
    if config.usage_counting not in USAGE_COUNTINGS:
        raise ValueError(
            f"unknown usage_counting {config.usage_counting!r}; use one of "
            f"{sorted(USAGE_COUNTINGS)}"
        )
    if config.unsupported_status not in (400, 500):
        raise ValueError("unsupported_status must be 400 or 500")
    if config.unsupported_status == 500 and not config.dialect.startswith("vllm"):
        raise ValueError("only vLLM answers 500 to a response_format it cannot handle")


def _llamacpp_context_error(requested: int, window: int) -> _ApiError:
    """llama.cpp's server on a prompt longer than its context (ggml-org/llama.cpp#15780)."""
    message = (
        f"request ({requested} tokens) exceeds the available context size ({window} tokens), "
        "try increasing it"
    )
    error = _ApiError(400, message)
    error.body = {
        "error": {
            "code": 400,
            "message": message,
            "type": "exceed_context_size_error",
            "n_prompt_tokens": requested,
            "n_ctx": window,
        }
    }
    return error


def _format_unsupported(kind: str, body: dict[str, Any], config: FakeConfig) -> _ApiError:
    """The 400 a server without ``kind`` support sends, in its own words and body shape.

    vLLM (before json_schema support, vllm-project/vllm#7654) rejects the request in pydantic
    validation: ``BadRequestError``, ``param: null``, an integer ``code``, the error at the top
    level before v0.10.1 (vllm#12886) and under ``error`` after (PR #22099).  llama.cpp's server
    throws "response_format type must be one of ..." (no ``param`` key at all).  A LiteLLM proxy
    in front of a backend without the parameter raises ``UnsupportedParamsError`` for any
    ``response_format`` (its ProxyException turns None into the string "None").
    """
    dialect = config.dialect
    if config.unsupported_status == 500:
        return _vllm_internal_error(dialect)
    if dialect == "openai":
        return _ApiError(
            400,
            f"Invalid parameter: 'response_format' of type '{kind}' is not supported with this "
            "model.",
            param="response_format",
        )
    if dialect in ("vllm", "vllm-legacy"):
        allowed = "'text'" if not config.supports_json_object else "'text' or 'json_object'"
        message = (
            "[{'type': 'literal_error', 'loc': ('body', 'response_format', 'type'), 'msg': "
            f"\"Input should be {allowed}\", 'input': '{kind}', 'ctx': {{'expected': "
            f'"{allowed}"}}}}]'
        )
        error = _ApiError(400, message, type_="BadRequestError")
        inner = {"message": message, "type": "BadRequestError", "param": None, "code": 400}
        error.body = {"object": "error", **inner} if dialect == "vllm-legacy" else {"error": inner}
        return error
    if dialect == "llamacpp":
        message = 'response_format type must be one of "text" or "json_object", but got: ' + kind
        error = _ApiError(400, message)
        error.body = {"error": {"code": 400, "message": message, "type": "invalid_request_error"}}
        return error
    model = body.get("model")
    message = (
        "litellm.UnsupportedParamsError: ollama does not support parameters: "
        f"['response_format'], for model={model}. To drop these, set `litellm.drop_params=True` "
        "or for proxy:\n\n`litellm_settings:\n drop_params: true`\n"
    )
    error = _ApiError(400, message)
    error.body = {"error": {"message": message, "type": "None", "param": "None", "code": "400"}}
    return error


def _quota_error(dialect: str) -> _ApiError:
    """OpenAI's out-of-quota 429, or as a LiteLLM proxy relays it.

    LiteLLM's ProxyException keeps only the message (prefixed with its exception names) and
    writes None as the string "None" and the status as the code (BerriAI/litellm#20867), so
    nothing but the words says it is about billing.
    """
    message = (
        "You exceeded your current quota, please check your plan and billing details. For "
        "more information on this error, read the docs: "
        "https://platform.openai.com/docs/guides/error-codes/api-errors."
    )
    if dialect != "litellm":
        return _ApiError(429, message, type_="insufficient_quota", code="insufficient_quota")
    relayed = f"litellm.RateLimitError: RateLimitError: OpenAIException - {message}"
    error = _ApiError(429, relayed)
    error.body = {"error": {"message": relayed, "type": "None", "param": "None", "code": "429"}}
    return error


def _vllm_internal_error(dialect: str) -> _ApiError:
    """vLLM's 500 for a ``response_format`` it fails on (vllm#35438): an empty message."""
    error = _ApiError(500, "", type_="InternalServerError")
    inner = {"message": "", "type": "InternalServerError", "param": None, "code": 500}
    error.body = {"object": "error", **inner} if dialect == "vllm-legacy" else {"error": inner}
    return error


def _chars4(text: str) -> int:
    return math.ceil(len(text) / 4)


def _prompt_usage(body: dict[str, Any], model: FakeModel, config: FakeConfig) -> int:
    """Prompt tokens as this server counts them (its tokenizer, or characters / 4)."""
    if config.usage_counting == "chars4":
        return _chars4("".join(_text_of(m) for m in body["messages"]))
    return chat_prompt_tokens(
        body["messages"],
        model=model.name,
        encoding=model.tokenizer,
        response_format=body.get("response_format"),
    )


def _completion_usage(text: str, model: FakeModel, config: FakeConfig) -> int:
    """Completion tokens as this server counts them."""
    if config.usage_counting == "chars4":
        return _chars4(text)
    return text_tokens(text, model.tokenizer)


def _cited_sources(sources: list[_Source]) -> list[_Source]:
    return [s for s in sources if s.alias] or sources


def _requested_sections(body: dict[str, Any], request: dict[str, Any]) -> list[str]:
    """The sections the request asks for, as a model reading it would find them."""
    schema = request.get("schema")
    response_format = body.get("response_format") or {}
    if schema is None and isinstance(response_format, dict):
        spec = response_format.get("json_schema")
        if isinstance(spec, dict) and isinstance(spec.get("schema"), dict):
            schema = spec["schema"]
    text = "\n".join(_text_of(m) for m in body["messages"])
    if schema is None:
        found = _SCHEMA_TAG.search(text)
        if found:
            try:
                schema = json.loads(found.group(1))
            except ValueError:
                schema = None
    if isinstance(schema, dict) and isinstance(schema.get("properties"), dict):
        return list(schema["properties"])
    templated = [m.group(1) for line in text.splitlines() if (m := _TEMPLATE_HEADING.match(line))]
    if templated:
        return templated
    system = "\n".join(_text_of(m) for m in body["messages"] if m.get("role") == "system")
    return list(dict.fromkeys(_TASK_SECTION.findall(system))) or ["overview", "key_points"]


def _unfaithful_answer(
    body: dict[str, Any],
    request: dict[str, Any],
    sources: list[_Source],
    seed: int,
    config: FakeConfig,
) -> str | None:
    """The answer of a model that ignores ``response_format``, or None (a faithful model)."""
    style = config.answer_style
    if style is None:
        return None
    rnd = random.Random(seed)
    cited = _cited_sources(sources)
    if style == "uncited_prose":
        return "The conversation covered a few things. " + " ".join(
            _words(s.text, 14).rstrip(".") + "." for s in cited[:4]
        )
    sections = _requested_sections(body, request)
    if style == "markdown":
        return _own_markdown(sections, cited, rnd)
    own = json.dumps(_own_json(sections, cited, rnd), ensure_ascii=False, indent=1)
    if style == "json_in_prose":
        return f"Sure! Here is the summary as JSON:\n```json\n{own}\n```\nAnything else?"
    return own


def _pick(sources: list[_Source], rnd: random.Random, count: int) -> list[_Source]:
    return [sources[rnd.randrange(len(sources))] for _ in range(count)]


def _people(sources: list[_Source]) -> list[_Source]:
    """Sources whose author is known (note items of other sections have none)."""
    return [s for s in sources if s.author != "someone"] or sources


def _own_json(sections: list[str], sources: list[_Source], rnd: random.Random) -> dict[str, Any]:
    """JSON as a model that was told the sections but not the schema writes it."""
    out: dict[str, Any] = {}
    for section in sections:
        picks = _pick(sources, rnd, 2)
        a, b = picks
        if section == "overview":
            out["summary"] = f"{_words(a.text, 14)} ({a.alias})"
        elif section == "topics":
            out["topics"] = [
                {
                    "name": _words(s.text, 5),
                    "description": _words(s.text, 20),
                    "messages": [s.alias],
                }
                for s in picks
            ]
        elif section == "key_points":
            out["Key Points"] = [f"{_words(s.text, 16)} ({s.alias}, {b.alias})" for s in picks]
        elif section == "decisions":
            out["decisions"] = [f"{_words(a.text, 12)} [{a.alias}]"]
        elif section == "action_items":
            out["actionItems"] = [
                {
                    "task": _words(a.text, 10),
                    "assignee": a.author,
                    "deadline": None,
                    "source": a.alias,
                }
            ]
        elif section == "open_questions":
            out["questions"] = [f"{_words(b.text, 10)}? ({b.alias})"]
        elif section == "technical":
            out["technical_notes"] = [
                {"type": "bug", "detail": _words(a.text, 16), "refs": f"{a.alias}, {b.alias}"}
            ]
        elif section == "contributions":
            people: dict[str, list[str]] = {}
            for s in _pick(_people(sources), rnd, 4):
                people.setdefault(s.author, []).append(f"{_words(s.text, 10)} ({s.alias})")
            out["contributions"] = people
        else:
            out[section] = [f"{_words(a.text, 12)} ({a.alias})"]
    return out


_MD_NAMES = {
    "overview": ("Summary", "Overview"),
    "topics": ("Topics", "Discussion topics"),
    "key_points": ("Key Points", "Highlights"),
    "decisions": ("Decisions", "Decisions made"),
    "action_items": ("Action Items", "Next steps"),
    "open_questions": ("Open Questions", "Unanswered questions"),
    "technical": ("Technical Notes", "Technical details"),
    "contributions": ("Contributions", "Participants"),
}


def _own_markdown(sections: list[str], sources: list[_Source], rnd: random.Random) -> str:
    """Markdown as a model that ignores the requested format writes it: its own headings."""
    lines = ["Here is a summary of the conversation:", ""]
    style = rnd.randrange(3)
    for section in sections:
        names = _MD_NAMES.get(section, (section.replace("_", " ").title(),))
        name = names[rnd.randrange(len(names))]
        lines.append({0: f"## {name}", 1: f"**{name}:**", 2: f"{name}:"}[style])
        a, b = _pick(sources, rnd, 2)
        if section == "overview":
            lines.append(f"{_words(a.text, 16)} [{a.alias}]. {_words(b.text, 10)}.")
        elif section == "topics":
            for s in (a, b):
                if style == 0:
                    lines.extend([f"### {_words(s.text, 4)}", f"{_words(s.text, 18)} [{s.alias}]"])
                else:
                    lines.append(f"- **{_words(s.text, 4)}**: {_words(s.text, 18)} [{s.alias}]")
        elif section == "action_items":
            lines.append(f"* {a.author} will {_words(a.text, 8)} (owner: {a.author}) [{a.alias}]")
        elif section == "technical":
            lines.append(f"1. Bug: {_words(a.text, 14)} ({a.alias}, {b.alias})")
        elif section == "contributions":
            for s in _pick(_people(sources), rnd, 2):
                lines.extend([f"- {s.author}:", f"  - {_words(s.text, 10)} [{s.alias}]"])
        else:
            lines.extend(f"- {_words(s.text, 14)} ({s.alias})" for s in (a, b))
        lines.append("")
    return "\n".join(lines).rstrip()


def _text_format_answer(
    messages: list[dict[str, Any]], sources: list[_Source], seed: int
) -> str | None:
    """A plain-text answer in the heading-and-bullet format the prompt asks for, if any.

    The prompt shows each section as ``## name`` followed by a template line (``- <title>:
    <summary> [m12, m15]``, ``<one paragraph>``); the fake fills the placeholders from the
    input, as an instruction-following model would.
    """
    text = "\n".join(_text_of(m) for m in messages if m.get("role") in ("system", "developer"))
    lines = text.splitlines()
    if not any(_TEMPLATE_HEADING.match(line) for line in lines):
        return None
    rnd = random.Random(seed)
    cited = _cited_sources(sources)
    out: list[str] = []
    for index, line in enumerate(lines):
        heading = _TEMPLATE_HEADING.match(line)
        if heading is None:
            continue
        template = lines[index + 1] if index + 1 < len(lines) else "<one paragraph>"
        enum = re.search(
            r"is one of: ([\w, ]+)\)", lines[index + 2] if index + 2 < len(lines) else ""
        )
        out.append(line)
        for source in _pick(cited, rnd, 1 if template.startswith("<") else 2):
            out.append(_fill(template, source, enum.group(1).split(", ")[0] if enum else "problem"))
    return "\n".join(out)


def _fill(template: str, source: _Source, category: str) -> str:
    def value(match: re.Match[str]) -> str:
        name = match.group(1)
        if name in ("owner or none", "participant", "name"):
            return source.author
        if name.endswith("or none"):
            return "none"
        if name == "category":
            return category
        if name in ("title",):
            return _words(source.text, 5)
        return _words(source.text, 18)

    filled = _PLACEHOLDER.sub(value, template)
    return filled.replace("[m12, m15]", f"[{source.alias}]") if source.alias else filled


def _with_inline_aliases(data: Any, rnd: random.Random) -> Any:
    """Structured output whose text fields also cite inline, as many models do.

    Most items get their first alias appended as ``[m22]``; some lose ``message_ids`` so the
    inline alias is their only citation; some also name an alias of no message.  The
    overview mentions an alias in parentheses and one bare.
    """
    if isinstance(data, list):
        return [_with_inline_aliases(v, rnd) for v in data]
    if not isinstance(data, dict):
        return data
    out = {k: _with_inline_aliases(v, rnd) for k, v in data.items()}
    ids = out.get("message_ids")
    if isinstance(ids, list) and ids:
        field_name = next(
            (f for f in ("text", "summary", "task") if isinstance(out.get(f), str)), None
        )
        if field_name is not None:
            roll = rnd.random()
            out[field_name] = f"{out[field_name]} [{ids[0]}]"
            if roll < 0.3:
                out["message_ids"] = []
            elif roll < 0.45:
                out[field_name] += " (see m99999)"
        if isinstance(out.get("title"), str) and rnd.random() < 0.3:
            out["title"] = f"{out['title']} ({ids[-1]})"
    if isinstance(out.get("overview"), str):
        first = _first_alias(data)
        if first:
            out["overview"] = f"{out['overview']} ({first}); as {first} put it."
    return out


def _first_alias(data: Any) -> str | None:
    if isinstance(data, dict):
        ids = data.get("message_ids")
        if isinstance(ids, list) and ids:
            return str(ids[0])
        data = list(data.values())
    if isinstance(data, list):
        for value in data:
            found = _first_alias(value)
            if found:
                return found
    return None


# -- HTTP plumbing ------------------------------------------------------------------------------


def _invalid_url(method: str, path: str) -> _ApiError:
    """OpenAI's 404 for a path it does not serve (a base URL without ``/v1``, a typo)."""
    return _ApiError(404, f"Invalid URL ({method} {path})")


def _make_handler(server: FakeOpenAIServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        server_version = "fake-openai/1"
        # An answer leaves in one write with Nagle off (headers and body are buffered and
        # flushed together after each request): written in two, the body waited for the
        # client's delayed ACK of the headers, up to 40 ms a call that OpenAI never adds.
        disable_nagle_algorithm = True
        wbufsize = 1 << 16
        stats: _Stats | None = None

        def log_message(self, format: str, *args: Any) -> None:
            return  # keep test output quiet

        def _send(self, status: int, headers: Mapping[str, str], payload: Any) -> None:
            server.record_status(status, self.stats)
            if isinstance(payload, str):
                data = payload.encode()
                content_type = "text/event-stream"
            else:
                data = json.dumps(payload).encode()
                content_type = "application/json"
            try:
                self.send_response(status)
                self.send_header("content-type", content_type)
                self.send_header("content-length", str(len(data)))
                self.send_header("x-request-id", "req_" + secrets.token_hex(16))
                for name, value in headers.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(data)
            except (BrokenPipeError, ConnectionResetError):
                # The client gave up (a timeout test): nothing left to answer.
                self.close_connection = True

        def _body(self) -> bytes:
            length = int(self.headers.get("content-length") or 0)
            return self.rfile.read(length) if length else b""

        def do_GET(self) -> None:
            self.stats = server._stats
            path = self.path.split("?", 1)[0].rstrip("/")
            route = server.api_route(path)
            if route == "/models":
                try:
                    headers = {k.lower(): v for k, v in self.headers.items()}
                    server._authorize(headers)
                    server._may_list_models(headers)
                except _ApiError as exc:
                    self._send(exc.status, exc.headers, exc.body)
                    return
                self._send(200, {}, server.models_body())
            elif route is not None and route.startswith("/models/"):
                name = route[len("/models/") :]
                if name in server.config.models:
                    self._send(
                        200,
                        {},
                        {
                            "id": name,
                            "object": "model",
                            "created": 1_700_000_000,
                            "owned_by": "system",
                        },
                    )
                else:
                    error = _ApiError(
                        404,
                        f"The model '{name}' does not exist",
                        code="model_not_found",
                        param="model",
                    )
                    self._send(404, {}, error.body)
            elif path == "/_fake/stats":
                self._send(200, {}, server.stats())
            else:
                self._send(404, {}, _invalid_url("GET", path).body)

        def do_POST(self) -> None:
            self.stats = server._stats
            path = self.path.split("?", 1)[0].rstrip("/")
            raw = self._body()
            if path == "/_fake/faults":
                spec = json.loads(raw or b"{}")
                server.inject(spec.pop("kind"), **spec)
                self._send(200, {}, {"ok": True})
                return
            if path == "/_fake/config":
                try:
                    server.configure(**json.loads(raw or b"{}"))
                except (TypeError, ValueError) as exc:
                    self._send(400, {}, _ApiError(400, str(exc)).body)
                    return
                self._send(200, {}, {"ok": True})
                return
            if path == "/_fake/reset":
                server.reset()
                self._send(200, {}, {"ok": True})
                return
            if server.api_route(path) != "/chat/completions":
                self._send(404, {}, _invalid_url("POST", path).body)
                return
            headers = {k.lower(): v for k, v in self.headers.items()}
            peek = server._faults[0].kind if server._faults else None
            if peek == "disconnect":
                server._take_fault(None)
                self.close_connection = True
                self.connection.shutdown(socket.SHUT_RDWR)
                return
            try:
                status, response_headers, payload = server.handle_chat(headers, raw)
            except _ApiError as exc:
                if server.config.errors_in_ok_body and exc.status not in (400, 401, 404):
                    # A gateway that answered before its provider ran: 200, the error inside.
                    inner = dict(exc.body.get("error") or {"message": str(exc.body)})
                    self._send(200, exc.headers, {"error": {**inner, "code": exc.status}})
                    return
                self._send(exc.status, exc.headers, exc.body)
                return
            self._send(status, response_headers, payload)

    return Handler


def main(argv: list[str] | None = None) -> None:
    """Run the fake as a process; prints ``READY <base_url>`` once listening."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--tpm", type=int, default=None, help="tokens per minute limit")
    parser.add_argument("--rpm", type=int, default=None, help="requests per minute limit")
    parser.add_argument("--latency-base", type=float, default=0.0, help="seconds per reply")
    parser.add_argument("--latency-per-token", type=float, default=0.0, help="seconds/token")
    parser.add_argument("--reply-tokens", type=int, default=60)
    args = parser.parse_args(argv)
    config = FakeConfig(
        tokens_per_minute=args.tpm,
        requests_per_minute=args.rpm,
        latency_base=args.latency_base,
        latency_per_token=args.latency_per_token,
        reply_tokens=args.reply_tokens,
    )
    fake = FakeOpenAIServer(config, port=args.port)
    load("o200k_base")  # load the tokenizer before the first request is timed

    def stop(*_: object) -> None:
        threading.Thread(target=fake.stop, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    sys.stdout.write(f"READY {fake.base_url}\n")
    sys.stdout.flush()
    fake.serve_forever()


if __name__ == "__main__":
    main()
