"""Error classification, JSON repair, secret-file rotation and settings of the LLM client."""

from __future__ import annotations

import os
from pathlib import Path

import httpx2
import openai
import pytest
from pydantic import ValidationError

from shared.errors import ConfigError, ErrorKind, classify
from shared.llm import client as llm
from shared.llm.config import LLMSettings
from shared.llm.structured import strip_reasoning
from shared.llm.wire import never_sent
from shared.ratelimit.llm import RequestTooLargeError


def err(
    message: str,
    type_: str = "invalid_request_error",
    code: str | None = None,
    param: str | None = None,
) -> dict[str, object]:
    return {"error": {"message": message, "type": type_, "code": code, "param": param}}


@pytest.mark.parametrize(
    ("status", "body", "headers", "expected", "kind"),
    [
        (
            429,
            err("You exceeded your current quota", "insufficient_quota", "insufficient_quota"),
            {},
            llm.QuotaExceededError,
            ErrorKind.PERMANENT,
        ),
        (
            429,
            err("Billing", "invalid_request_error", "credit_balance_exhausted"),
            {},
            llm.QuotaExceededError,
            ErrorKind.PERMANENT,
        ),
        (
            429,
            err(
                "Request too large for gpt-4o in organization org-x on tokens per min (TPM): Limit 30000, Requested 34307.",
                "tokens",
                "rate_limit_exceeded",
            ),
            {},
            RequestTooLargeError,
            ErrorKind.PERMANENT,
        ),
        (
            429,
            err(
                "Rate limit reached ... Please try again in 1.146s.",
                "tokens",
                "rate_limit_exceeded",
            ),
            {},
            llm.LLMRateLimitedError,
            ErrorKind.TRANSIENT,
        ),
        (
            429,
            err("slow down", "rate_limit_error", "slow_down"),
            {"retry-after-ms": "250"},
            llm.LLMRateLimitedError,
            ErrorKind.TRANSIENT,
        ),
        (
            400,
            err(
                "This model's maximum context length is 8192 tokens. However, your messages resulted in 8243 tokens.",
                code="context_length_exceeded",
                param="messages",
            ),
            {},
            llm.ContextLengthError,
            ErrorKind.PERMANENT,
        ),
        (
            400,
            {
                "object": "error",
                "message": "This model's maximum context length is 4096 tokens. However, you requested 5000 tokens (4000 in the messages, 1000 in the completion).",
                "type": "BadRequestError",
                "code": 400,
            },
            {},
            llm.ContextLengthError,
            ErrorKind.PERMANENT,
        ),
        (
            400,
            err("bad temperature", code="invalid_value", param="temperature"),
            {},
            llm.LLMInvalidRequestError,
            ErrorKind.PERMANENT,
        ),
        (
            401,
            err("Incorrect API key provided", code="invalid_api_key"),
            {},
            llm.LLMAuthError,
            ErrorKind.PERMANENT,
        ),
        (
            403,
            err(
                "Country, region, or territory not supported",
                "request_forbidden",
                "unsupported_country_region_territory",
            ),
            {},
            llm.LLMAuthError,
            ErrorKind.PERMANENT,
        ),
        (
            404,
            err("The model `x` does not exist", code="model_not_found"),
            {},
            llm.ModelNotFoundError,
            ErrorKind.PERMANENT,
        ),
        (
            500,
            err("The server had an error", "server_error"),
            {},
            llm.LLMServerError,
            ErrorKind.TRANSIENT,
        ),
        (
            503,
            err("overloaded", "service_unavailable_error", "server_is_overloaded"),
            {"retry-after": "7"},
            llm.LLMOverloadedError,
            ErrorKind.TRANSIENT,
        ),
        (
            400,
            err(
                "The response was filtered due to the prompt triggering Azure OpenAI's content "
                "management policy.",
                code="content_filter",
                param="prompt",
            ),
            {},
            llm.ContentFilterError,
            ErrorKind.PERMANENT,
        ),
        (408, "timeout", {}, llm.LLMServerError, ErrorKind.TRANSIENT),
        (418, None, {}, llm.LLMInvalidRequestError, ErrorKind.PERMANENT),
    ],
)
def test_classify_status(
    status: int, body: object, headers: dict[str, str], expected: type[Exception], kind: ErrorKind
) -> None:
    error = llm.classify_status(status, body, headers)
    assert type(error) is expected
    assert classify(error) is kind


@pytest.mark.parametrize(
    ("status", "body", "expected", "window", "requested"),
    [
        # llama.cpp's server (ggml-org/llama.cpp#15780): a 400 with the sizes ...
        (
            400,
            {
                "error": {
                    "code": 400,
                    "type": "exceed_context_size_error",
                    "message": "request (9000 tokens) exceeds the available context size "
                    "(8192 tokens), try increasing it",
                    "n_prompt_tokens": 9000,
                    "n_ctx": 8192,
                }
            },
            llm.ContextLengthError,
            8192,
            9000,
        ),
        # ... or a 500 without them, which must not be retried as a server fault.
        (
            500,
            {
                "error": {
                    "code": 500,
                    "message": "Context size has been exceeded.",
                    "type": "server_error",
                }
            },
            llm.ContextLengthError,
            None,
            None,
        ),
        # Groq says "request too large" with a 413 (continuedev/continue#10218).
        (
            413,
            err(
                "Request too large for model `llama-3.1-8b-instant` in organization `org_x` "
                "service tier `on_demand` on tokens per minute (TPM): Limit 6000, Requested "
                "9000, please reduce your message size and try again.",
                "tokens",
                "rate_limit_exceeded",
            ),
            RequestTooLargeError,
            None,
            None,
        ),
    ],
)
def test_context_overflow_in_other_servers_words(
    status: int, body: object, expected: type[Exception], window: int | None, requested: int | None
) -> None:
    # The pipeline splits a chunk on these two errors; any other would end or retry the job.
    error = llm.classify_status(status, body, {})
    assert type(error) is expected
    assert classify(error) is ErrorKind.PERMANENT
    if isinstance(error, llm.ContextLengthError):
        assert (error.context_window, error.requested) == (window, requested)


VLLM_REJECTION = (
    "[{'type': 'literal_error', 'loc': ('body', 'response_format', 'type'), 'msg': \"Input "
    "should be 'text' or 'json_object'\", 'input': 'json_schema'}]"
)


@pytest.mark.parametrize(
    "body",
    [
        # vLLM >= 0.10.1 and before (top-level): param null, an integer code
        {
            "error": {
                "message": VLLM_REJECTION,
                "type": "BadRequestError",
                "param": None,
                "code": 400,
            }
        },
        {
            "object": "error",
            "message": VLLM_REJECTION,
            "type": "BadRequestError",
            "param": None,
            "code": 400,
        },
        # llama.cpp: no param at all
        {
            "error": {
                "code": 400,
                "message": 'response_format type must be one of "text" or "json_object", but got: json_schema',
                "type": "invalid_request_error",
            }
        },
        # LiteLLM proxy: "None" as a string
        {
            "error": {
                "message": "litellm.UnsupportedParamsError: ollama does not support parameters: ['response_format']",
                "type": "None",
                "param": "None",
                "code": "400",
            }
        },
        # OpenAI itself, and servers that speak of their grammar engine
        err(
            "Invalid parameter: 'response_format' of type 'json_schema' is not supported",
            param="response_format",
        ),
        {"error": "Input validation error: grammar is not supported by this model"},
    ],
)
def test_a_rejected_output_format_steps_down_the_ladder(body: object) -> None:
    assert type(llm.classify_status(400, body, {})).__name__ == "_UnsupportedFormat"


@pytest.mark.parametrize(
    "body",
    [
        # OpenAI, vLLM, Ollama, an Azure deployment
        err(
            "The model `gpt-9` does not exist or you do not have access to it.",
            code="model_not_found",
        ),
        {
            "object": "error",
            "message": "The model `llama3` does not exist.",
            "type": "NotFoundError",
            "param": None,
            "code": 404,
        },
        {"error": 'model "llama3" not found, try pulling it first'},
        {
            "error": {
                "code": "DeploymentNotFound",
                "message": "The API deployment for this resource does not exist.",
            }
        },
    ],
)
def test_a_404_that_names_a_model_blames_the_model(body: object) -> None:
    error = llm.classify_status(404, body, {})
    assert type(error) is llm.ModelNotFoundError
    assert classify(error) is ErrorKind.PERMANENT
    assert "model does not exist" in error.user_message


CLOUDFLARE_404 = (
    "<!DOCTYPE html><html><head><title>404 Not Found</title></head><body><h1>Not Found</h1>"
    "<p>The page you requested does not exist.</p></body></html>"
)


@pytest.mark.parametrize(
    "body",
    [
        # a base URL without /v1: OpenAI (now and before), Ollama, an HTML page, FastAPI
        err("Invalid URL (POST /chat/completions)"),
        err("Unknown request URL: POST /chat/completions. Please check the URL for typos."),
        "404 page not found",
        CLOUDFLARE_404,
        {"detail": "Not Found"},
        None,
    ],
)
def test_a_404_about_the_url_points_at_the_base_url_not_the_model(body: object) -> None:
    error = llm.classify_status(404, body, {})
    assert type(error) is llm.LLMEndpointNotFoundError
    assert classify(error) is ErrorKind.PERMANENT
    assert "LLM_BASE_URL" in error.user_message and "/v1" in error.user_message


def test_a_404_that_mentions_the_requested_model_outside_a_path_blames_it() -> None:
    routed = llm.classify_status(
        404,
        {"error": {"message": "No endpoints found for acme/gpt-9.", "code": 404}},
        {},
        model="acme/gpt-9",
    )
    assert type(routed) is llm.ModelNotFoundError
    in_path = llm.classify_status(
        404, err("Invalid URL (POST /openai/deployments/gpt-9/chat/completions)"), {}, model="gpt-9"
    )
    assert type(in_path) is llm.LLMEndpointNotFoundError


def cloudflare_502() -> str:
    """A Cloudflare "502 Bad gateway" page of 3,580 characters, as a relay answers."""
    head = (
        '<!DOCTYPE html>\n<!--[if lt IE 7]> <html class="no-js ie6 oldie" lang="en-US"> '
        "<![endif]-->\n<head>\n<title>api.example.com | 502: Bad gateway</title>\n"
        '<meta charset="UTF-8" />\n<link rel="stylesheet" href="/cdn-cgi/styles/main.css" />\n'
    )
    filler = '<div class="cf-column"><span class="cf-icon-status">Working</span></div>\n'
    page = head + filler * 60
    return (page + "</html>\n" + " " * 3580)[:3580]


def test_a_long_error_body_is_cut_in_the_error_text() -> None:
    page = cloudflare_502()
    assert len(page) == 3580
    error = llm.classify_status(502, page, {})
    assert isinstance(error, llm.LLMServerError) and classify(error) is ErrorKind.TRANSIENT
    text = str(error)
    assert len(text) < 400
    assert text.endswith("… [cut, 3580 characters in all]")
    assert text.startswith("LLM endpoint returned 502: <!DOCTYPE html> <!--[if lt IE 7]>")
    rejected = llm.classify_status(400, err("json_schema " + "x" * 5000), {})
    assert type(rejected).__name__ == "_UnsupportedFormat" and len(str(rejected)) < 400


def test_a_short_error_body_is_kept_whole() -> None:
    error = llm.classify_status(500, err("The server had an error. Sorry about that!"), {})
    assert str(error) == "LLM endpoint returned 500: The server had an error. Sorry about that!"


def test_the_whole_body_is_read_before_it_is_cut() -> None:
    message = "Rate limit reached. " + "x" * 1000 + " Please try again in 6m0s."
    limited = llm.classify_status(429, err(message, "tokens", "rate_limit_exceeded"), {})
    assert isinstance(limited, llm.LLMRateLimitedError)
    assert limited.retry_after == 360.0 and len(str(limited)) < 400
    quota = llm.classify_status(429, err("x" * 1000 + " insufficient_quota", "None", "429"), {})
    assert type(quota) is llm.QuotaExceededError


def test_retry_after_comes_from_headers_then_message() -> None:
    limited = llm.classify_status(
        429, err("Please try again in 1.146s.", "tokens", "rate_limit_exceeded"), {}
    )
    assert isinstance(limited, llm.LLMRateLimitedError)
    assert limited.retry_after == pytest.approx(1.146)
    limited = llm.classify_status(
        429, err("try again in 84ms", "tokens", "rate_limit_exceeded"), {"retry-after-ms": "20"}
    )
    assert isinstance(limited, llm.LLMRateLimitedError)
    assert limited.retry_after == pytest.approx(0.02)
    overloaded = llm.classify_status(503, err("busy"), {"retry-after": "7"})
    assert isinstance(overloaded, llm.LLMOverloadedError)
    assert overloaded.retry_after == 7
    context = llm.classify_status(
        400,
        err(
            "This model's maximum context length is 8192 tokens. However, your messages resulted in 8243 tokens.",
            code="context_length_exceeded",
        ),
        {},
    )
    assert isinstance(context, llm.ContextLengthError)
    assert (context.context_window, context.requested) == (8192, 8243)


GROQ_TPD = (
    "Rate limit reached for model `llama-3.3-70b-versatile` in organization `org_01` service "
    "tier `on_demand` on tokens per day (TPD): Limit 100000, Used 99654, Requested 1234. "
    "Please try again in 3m57.024s. Need more tokens? Upgrade to Dev Tier today at "
    "https://console.groq.com/settings/billing"
)


LITELLM_QUOTA = {
    "error": {
        "message": "litellm.RateLimitError: RateLimitError: OpenAIException - You exceeded your "
        "current quota, please check your plan and billing details. For more information on "
        "this error, read the docs: https://platform.openai.com/docs/guides/error-codes/api-errors.",
        "type": "None",
        "param": "None",
        "code": "429",
    }
}


@pytest.mark.parametrize(
    "body",
    [
        LITELLM_QUOTA,
        err("Error code: 429 - insufficient_quota", "None", "429"),
        {"error": "You exceeded your current quota."},
        "Please check your plan and billing details.",
    ],
)
def test_a_quota_429_whose_type_and_code_a_proxy_dropped_is_permanent(body: object) -> None:
    error = llm.classify_status(429, body, {"retry-after": "5"})
    assert type(error) is llm.QuotaExceededError
    assert classify(error) is ErrorKind.PERMANENT


@pytest.mark.parametrize(
    "message",
    [
        "Rate limit reached for gpt-4o-mini in organization org-x on tokens per min (TPM): "
        "Limit 200000, Used 195869, Requested 4412. Please try again in 20ms. Visit "
        "https://platform.openai.com/account/rate-limits to learn more.",
        GROQ_TPD,
        "Quota exceeded for aiplatform.googleapis.com/online_prediction_tokens_per_minute.",
    ],
)
def test_rate_limit_wording_is_not_mistaken_for_quota(message: str) -> None:
    for body in (err(message, "tokens", "rate_limit_exceeded"), err(message, "None", "429")):
        error = llm.classify_status(429, body, {})
        assert type(error) is llm.LLMRateLimitedError
        assert classify(error) is ErrorKind.TRANSIENT


@pytest.mark.parametrize(
    ("message", "seconds"),
    [
        (GROQ_TPD, 237.024),
        ("Rate limit reached on requests per day (RPD). Please try again in 1h2m3s.", 3723.0),
        ("Please try again in 6m0s.", 360.0),
        ("Please try again in 1.146s.", 1.146),
        ("Please try again in 20ms.", 0.02),
        ("Try again in 2m", 120.0),
    ],
)
def test_a_429_message_hint_is_read_as_a_whole_go_duration(message: str, seconds: float) -> None:
    limited = llm.classify_status(429, err(message, "tokens", "rate_limit_exceeded"), {})
    assert isinstance(limited, llm.LLMRateLimitedError)
    assert limited.retry_after == pytest.approx(seconds)


def limits(
    requests: tuple[str | None, str], tokens: tuple[str | None, str], **extra: str
) -> dict[str, str]:
    """x-ratelimit-* headers: (remaining, reset) per dimension; None leaves remaining out."""
    headers = {"x-ratelimit-limit-requests": "500", "x-ratelimit-limit-tokens": "30000", **extra}
    for name, (remaining, reset) in (("requests", requests), ("tokens", tokens)):
        if remaining is not None:
            headers[f"x-ratelimit-remaining-{name}"] = remaining
        headers[f"x-ratelimit-reset-{name}"] = reset
    return headers


@pytest.mark.parametrize(
    ("message", "headers", "seconds"),
    [
        # no retry-after and no hint: the reset of the dimension that reads 0
        ("Too many requests", limits(("499", "120ms"), ("0", "6m0s")), 360.0),
        ("Too many requests", limits(("0", "1m30s"), ("12000", "6m0s")), 90.0),
        # none reads 0, or remaining is absent: the later reset
        ("Too many requests", limits(("12", "2s"), ("12000", "1.5s")), 2.0),
        ("Too many requests", limits((None, "2s"), (None, "3m0s")), 180.0),
        ("Too many requests", {"x-ratelimit-reset-tokens": "20ms"}, 0.02),
        # retry-after, then the message's hint, come first
        ("Too many requests", limits(("499", "120ms"), ("0", "6m0s"), **{"retry-after": "3"}), 3),
        ("Please try again in 84ms.", limits(("499", "120ms"), ("0", "6m0s")), 0.084),
        # nothing at all: one second
        ("Too many requests", {}, 1.0),
        ("Too many requests", {"x-ratelimit-reset-tokens": "soon"}, 1.0),
    ],
)
def test_a_429_without_retry_after_or_hint_waits_for_the_exhausted_limit_to_reset(
    message: str, headers: dict[str, str], seconds: float
) -> None:
    limited = llm.classify_status(429, err(message, "requests", "rate_limit_exceeded"), headers)
    assert isinstance(limited, llm.LLMRateLimitedError)
    assert limited.retry_after == pytest.approx(seconds)


def test_a_server_error_does_not_wait_for_rate_limit_resets() -> None:
    # x-ratelimit-* ride on every answer; they say nothing about when a 5xx clears.
    overloaded = llm.classify_status(503, err("busy"), limits(("0", "1s"), ("0", "6m0s")))
    assert isinstance(overloaded, llm.LLMOverloadedError)
    assert overloaded.retry_after is None


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('{"a": 1}', {"a": 1}),
        ('Sure!\n```json\n{"a": [1, 2]}\n```\nanything else?', {"a": [1, 2]}),
        ('The answer is {"a": {"b": 2},} ok', {"a": {"b": 2}}),
        ("[1, 2]", [1, 2]),
        # JSON whose strings quote code fences is JSON as it stands.
        (
            '{"a": "run ```make``` then ```make install```"}',
            {"a": "run ```make``` then ```make install```"},
        ),
        ('{"a": "```json\\n{}\\n```"}', {"a": "```json\n{}\n```"}),
        # Reasoning before the answer, with or without its opening tag.
        ('<think>It wants {"a": ...}.</think>\n{"a": 1}', {"a": 1}),
        ('Let me think {x}.\n</think>\n\n```json\n{"a": 1}\n```', {"a": 1}),
        # A tag inside an answer that is JSON already is the answer's own text.
        ('{"a": "</think> is a tag"}', {"a": "</think> is a tag"}),
        # A fenced block that is not JSON, then JSON in the prose after it.
        ('```bash\nmake\n```\nThe answer: {"a": 2}', {"a": 2}),
    ],
)
def test_parse_json_text(text: str, expected: object) -> None:
    assert llm.parse_json_text(text) == expected


def test_prose_loses_only_a_reasoning_block_that_opens_with_its_tag() -> None:
    assert strip_reasoning("<think>plan</think>\n## topics") == "## topics"
    quoted = "Use </think> to close the block.\n## topics"
    assert strip_reasoning(quoted, opened_only=True) == quoted
    assert strip_reasoning(quoted) == "to close the block.\n## topics"


@pytest.mark.parametrize(
    ("text", "message"), [("no json here", "no JSON object"), ('{"a": [1, }', "not valid JSON")]
)
def test_parse_json_text_errors(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        llm.parse_json_text(text)


def test_secret_file_key_rotates_without_restart(tmp_path: Path) -> None:
    path = tmp_path / "key"
    path.write_text("sk-old\n")
    source = llm.SecretFileKey(path)
    assert source() == "sk-old"
    path.write_text("sk-new-key\n")
    os.utime(path, ns=(1, 2_000_000_000_000_000_000))
    assert source() == "sk-new-key"
    path.write_text("  ")
    os.utime(path, ns=(1, 3_000_000_000_000_000_000))
    with pytest.raises(ConfigError, match="empty"):
        source()
    path.unlink()
    with pytest.raises(ConfigError, match="cannot be read"):
        source()


def test_settings_guess_provider_and_scope() -> None:
    assert LLMSettings().effective_provider == "openai"
    assert LLMSettings().effective_base_url == "https://api.openai.com/v1"
    assert LLMSettings(base_url="http://localhost:11434/v1/").effective_provider == "ollama"
    assert (
        LLMSettings(base_url="http://localhost:11434/v1/").base_url == "http://localhost:11434/v1"
    )
    assert LLMSettings(base_url="http://vllm:8000/v1").effective_provider == "vllm"
    assert LLMSettings(base_url="http://h:8080/v1").effective_provider == "llamacpp"
    assert LLMSettings(base_url="http://h:4000").effective_provider == "litellm"
    assert LLMSettings(base_url="http://h:9999/v1").effective_provider == "compatible"
    assert LLMSettings(base_url="http://h:9999/v1", provider="vllm").effective_provider == "vllm"
    settings = LLMSettings(organization="org-1", project=" ")
    assert settings.project is None
    assert settings.scope("gpt-4o") == "api.openai.com|org-1|-|gpt-4o"
    assert settings.requires_key
    assert not LLMSettings(base_url="http://localhost:11434/v1").requires_key


def test_settings_reject_bad_urls() -> None:
    with pytest.raises(ValidationError, match="not an http"):
        LLMSettings(base_url="localhost:11434")


def test_settings_know_azure_and_need_its_key() -> None:
    for host in ("acme.openai.azure.com", "acme.services.ai.azure.com"):
        settings = LLMSettings(base_url=f"https://{host}/openai/v1/")
        assert settings.effective_provider == "azure"
        assert settings.base_url == f"https://{host}/openai/v1"
        assert settings.requires_key
    with pytest.raises(ConfigError, match=r"^OPENAI_API_KEY: not set; .*Azure OpenAI"):
        llm.LLMClient.embedded(LLMSettings(base_url="https://acme.openai.azure.com/openai/v1"))


@pytest.mark.parametrize(
    ("url", "advice"),
    [
        # The portal's "Target URI": the SDK would keep neither its query nor send api-key.
        (
            "https://acme.openai.azure.com/openai/deployments/sum/chat/completions"
            "?api-version=2024-10-21",
            r"Azure OpenAI deployment URL.*https://RESOURCE\.openai\.azure\.com/openai/v1",
        ),
        ("https://acme.openai.azure.com/openai/deployments/sum", "deployment's name"),
        ("http://h:9999/v1?key=x", "query or fragment.*base URL alone"),
        ("http://h:9999/v1/chat/completions", r"without /chat/completions.*: http://h:9999/v1 "),
        ("http://h:9999/v1/responses/", "without /responses"),
    ],
)
def test_settings_refuse_urls_the_client_cannot_call(url: str, advice: str) -> None:
    with pytest.raises(ValidationError, match=advice):
        LLMSettings(base_url=url)


def test_client_needs_a_key_for_openai(tmp_path: Path) -> None:
    # Operator wording names the variables to set, not "the LLM key-file setting".
    with pytest.raises(ConfigError, match=r"^OPENAI_API_KEY: not set; .*LLM_API_KEY_FILE"):
        llm.LLMClient.embedded(LLMSettings())
    with pytest.raises(ConfigError, match=r"cannot be read.*unset LLM_API_KEY_FILE"):
        llm.LLMClient.embedded(LLMSettings(api_key_file=tmp_path / "missing"))
    local = llm.LLMClient.embedded(LLMSettings(base_url="http://127.0.0.1:9/v1"))
    assert local.model_info("llama3").context_window == 8192
    # An unregistered name is counted with the encoding the name implies, as before.
    assert local.model_info("gpt-4-local").encoding == "cl100k_base"
    with pytest.raises(ConfigError, match="unknown LLM model"):
        llm.LLMClient.embedded(LLMSettings(api_key="sk-x")).model_info("llama3")
    local.close()


@pytest.mark.parametrize(
    ("cause", "unsent"),
    [
        (httpx2.ConnectError("refused"), True),
        (httpx2.ConnectTimeout("no SYN-ACK"), True),
        (httpx2.PoolTimeout("no free connection"), True),
        (httpx2.ReadTimeout("timed out"), False),
        (httpx2.ReadError("reset by peer"), False),
        (httpx2.RemoteProtocolError("Server disconnected"), False),
        (httpx2.WriteError("broken pipe"), False),  # the server may have read it all
        (RuntimeError("unknown"), False),
        (None, False),
    ],
)
def test_only_a_connect_failure_means_the_request_never_left(
    cause: Exception | None, unsent: bool
) -> None:
    request = httpx2.Request("POST", "http://127.0.0.1:9/v1/chat/completions")
    timeout = isinstance(cause, httpx2.TimeoutException)
    error = (openai.APITimeoutError if timeout else openai.APIConnectionError)(request=request)
    error.__cause__ = cause
    assert never_sent(error) is unsent
    wrapped = openai.APIConnectionError(request=request)
    wrapped.__cause__ = RuntimeError("wrapper")
    wrapped.__cause__.__cause__ = cause
    assert never_sent(wrapped) is unsent  # found down the chain too
