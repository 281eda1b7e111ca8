"""The LLM client against the fake OpenAI server: every fault ends as the policy says."""

from __future__ import annotations

import json
import os
import socket
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import httpx2
import pytest
from structlog.testing import capture_logs

from shared.errors import ErrorKind, RateLimitedError, classify
from shared.llm import client as llm
from shared.llm.breaker import CircuitOpenError
from shared.llm.client import LLMClient
from shared.llm.wire import embedded_error
from shared.ratelimit.llm import RequestTooLargeError
from tests.fakes.openai_server import FakeConfig, FakeModel, FakeOpenAIServer
from tests.fakes.openai_usage import chat_prompt_tokens, text_tokens

ASK = [{"role": "user", "content": "Say something about kernels and headers."}]
Make = Callable[..., LLMClient]

SCHEMA = {
    "type": "object",
    "additionalProperties": False,
    "required": ["overview", "key_points"],
    "properties": {
        "overview": {"type": "string"},
        "key_points": {
            "type": "array",
            "items": {
                "type": "object",
                "additionalProperties": False,
                "required": ["text", "message_ids"],
                "properties": {
                    "text": {"type": "string"},
                    "message_ids": {"type": "array", "items": {"type": "string"}},
                },
            },
        },
    },
}
TRANSCRIPT = [
    {"role": "system", "content": "Summarize the conversation as JSON."},
    {
        "role": "user",
        "content": "<transcript>\n--- 2024-11-15 UTC ---\n[m1 14:03 bill] kernel 2.6.8.1 fails\n"
        "[m2 14:04 bob ↩m1] install the headers\n[m3] then reboot\n</transcript>",
    },
]


def test_success_reports_usage_cost_and_sends_one_attempt(
    fake: FakeOpenAIServer, make_client: Make
) -> None:
    client = make_client(organization="org-42", project="proj-7")
    result = client.complete(ASK, max_tokens=100)
    assert result.text
    assert result.model == "gpt-4o-mini-2024-07-18"
    assert result.finish_reason == "stop"
    # framing + role + content + reply primer, as the server counted them
    assert result.usage.prompt_tokens == 3 + 1 + text_tokens(ASK[0]["content"], "o200k_base") + 3
    assert result.usage.completion_tokens > 0
    assert result.cost_usd > 0
    assert result.request_id and result.request_id.startswith("req_")
    headers = fake.headers_seen[-1]
    assert headers["openai-organization"] == "org-42"
    assert headers["openai-project"] == "proj-7"
    assert headers["x-stainless-retry-count"] == "0"
    body = fake.requests_seen[-1]
    assert body["max_completion_tokens"] == 100 and "max_tokens" not in body
    assert body["temperature"] == 0.2
    assert client.list_models()[:2] == ["gpt-3.5-turbo", "gpt-4"]


def test_azure_sends_the_limit_its_registered_model_takes(
    fake: FakeOpenAIServer, make_client: Make
) -> None:
    # Azure's v1 endpoint speaks OpenAI's parameters: a deployment named after a registered
    # model gets max_completion_tokens (required by its o-series), as on OpenAI.
    client = make_client(provider="azure")
    client.complete(ASK, max_tokens=100)
    body = fake.requests_seen[-1]
    assert body["max_completion_tokens"] == 100 and "max_tokens" not in body
    compatible = make_client(provider="compatible")
    compatible.complete(ASK, max_tokens=100)
    assert fake.requests_seen[-1]["max_tokens"] == 100


def test_server_error_is_transient_and_counts_towards_the_breaker(
    fake: FakeOpenAIServer, make_client: Make
) -> None:
    client = make_client(breaker_failure_threshold=2)
    fake.inject("server_error", times=2)
    for _ in range(2):
        with pytest.raises(llm.LLMServerError) as info:
            client.complete(ASK)
        assert classify(info.value) is ErrorKind.TRANSIENT
    assert fake.stats()["requests"] == 2  # the SDK did not retry on its own
    with pytest.raises(CircuitOpenError) as opened:
        client.complete(ASK)
    assert opened.value.reason == "http_500"
    assert classify(opened.value) is ErrorKind.TRANSIENT
    assert fake.stats()["requests"] == 2  # refused without a request


def test_a_success_after_a_failure_forgets_it(fake: FakeOpenAIServer, make_client: Make) -> None:
    client = make_client(breaker_failure_threshold=2)
    fake.inject("server_error")
    with pytest.raises(llm.LLMServerError):
        client.complete(ASK)
    assert client.breaker("gpt-4o-mini").state().failures == 1
    client.complete(ASK)
    assert client.breaker("gpt-4o-mini").state().failures == 0
    fake.inject("server_error")
    with pytest.raises(llm.LLMServerError):
        client.complete(ASK)
    client.complete(ASK)  # still closed: the two failures were not consecutive


def test_overload_falls_back_to_the_other_model(fake: FakeOpenAIServer, make_client: Make) -> None:
    client = make_client(fallback_model="gpt-4o")
    fake.inject("overloaded", model="gpt-4o-mini")
    result = client.complete(ASK)
    assert result.fallback
    assert result.model == "gpt-4o-2024-08-06"
    alone = make_client()
    fake.inject("overloaded")
    with pytest.raises(llm.LLMOverloadedError) as info:
        alone.complete(ASK)
    assert info.value.retry_after == 1


def test_timeout_is_transient(fake: FakeOpenAIServer, make_client: Make) -> None:
    client = make_client(request_timeout=0.3)
    fake.inject("timeout", delay=3.0)
    before = fake.stats()["requests"]
    started = time.monotonic()
    with pytest.raises(llm.LLMTimeoutError):
        client.complete(ASK)
    assert time.monotonic() - started < 2.5  # the client's timeout, not the server's answer
    assert fake.stats()["requests"] - before == 1  # one attempt, no hidden SDK retries
    assert client.breaker("gpt-4o-mini").state().failures == 1


def test_dropped_connection_is_transient(fake: FakeOpenAIServer, make_client: Make) -> None:
    fake.inject("disconnect")
    with pytest.raises(llm.LLMConnectionError) as info:
        make_client().complete(ASK)
    assert classify(info.value) is ErrorKind.TRANSIENT


# What a call that got no answer leaves booked in the limiter: a request that reached the
# server may have been processed and counted there; one that never left was not.

#: A TPM budget that holds one call of ``max_tokens=1000`` but not two.
TIGHT = {"tokens_per_minute": 1_500, "limiter_headroom": 0.0}


def booked(client: LLMClient) -> bool:
    """Whether the failed call's tokens are still booked: 1,000 more do not fit at once."""
    try:
        client.limiter(client.settings.model).reserve(1_000, max_wait=0)
    except RateLimitedError:
        return True
    return False


def unused_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextmanager
def unanswered_port() -> Iterator[int]:
    """A port whose listener never accepts and whose accept queue is full: Linux drops the
    SYNs of further connects, which hang as to a host that does not answer."""
    with socket.socket() as listener, socket.socket() as queued:
        listener.bind(("127.0.0.1", 0))
        listener.listen(0)
        port = int(listener.getsockname()[1])
        queued.connect(("127.0.0.1", port))  # fills the queue of one
        yield port


@pytest.mark.parametrize(
    ("fault", "params", "error"),
    [
        ("disconnect", {}, llm.LLMConnectionError),  # read the request, then closed
        ("timeout", {"delay": 1.0}, llm.LLMTimeoutError),  # read it, answered too late
    ],
)
def test_a_request_the_server_read_keeps_its_tokens_booked(
    fake: FakeOpenAIServer,
    make_client: Make,
    fault: str,
    params: dict[str, float],
    error: type[Exception],
) -> None:
    client = make_client(request_timeout=0.3, **TIGHT)
    fake.inject(fault, **params)
    with pytest.raises(error) as info:
        client.complete(ASK, max_tokens=1_000)
    assert booked(client)
    assert "unreachable" not in str(info.value)  # it was reached: the request went out


def test_a_request_to_a_port_nothing_listens_on_gets_its_tokens_back(make_client: Make) -> None:
    client = make_client(base_url=f"http://127.0.0.1:{unused_port()}/v1", **TIGHT)
    with pytest.raises(llm.LLMConnectionError, match="unreachable"):
        client.complete(ASK, max_tokens=1_000)
    assert not booked(client)


@pytest.mark.skipif(sys.platform != "linux", reason="relies on Linux dropping SYNs")
def test_a_connect_timeout_gets_its_tokens_back(make_client: Make) -> None:
    with unanswered_port() as port:
        client = make_client(base_url=f"http://127.0.0.1:{port}/v1", connect_timeout=0.2, **TIGHT)
        with pytest.raises(llm.LLMTimeoutError, match="did not accept a connection"):
            client.complete(ASK, max_tokens=1_000)
    assert not booked(client)


def test_quota_is_permanent_and_trips_the_breaker_for_everyone(
    fake: FakeOpenAIServer, make_client: Make
) -> None:
    client = make_client(fallback_model="gpt-4o")
    fake.inject("insufficient_quota")
    with pytest.raises(llm.QuotaExceededError) as info:
        client.complete(ASK)
    assert classify(info.value) is ErrorKind.PERMANENT
    assert "billing" in info.value.user_message
    assert fake.stats()["requests"] == 1
    with pytest.raises(CircuitOpenError) as opened:
        client.complete(ASK)  # no fallback: the account, not the model, is out of money
    assert opened.value.reason == "insufficient_quota"


def test_a_quota_error_relayed_by_a_litellm_proxy_is_permanent(
    fake: FakeOpenAIServer, make_client: Make
) -> None:
    fake.inject("insufficient_quota", dialect="litellm")
    error = raw_chat(fake).json()["error"]
    assert (error["type"], error["param"], error["code"]) == ("None", "None", "429")
    assert "You exceeded your current quota" in error["message"]
    fake.configure(dialect="litellm")
    fake.inject("insufficient_quota")
    client = make_client(provider="litellm", max_rate_retries=3)
    before = fake.stats()["requests"]
    with pytest.raises(llm.QuotaExceededError) as info:
        client.complete(ASK)
    assert classify(info.value) is ErrorKind.PERMANENT
    assert fake.stats()["requests"] - before == 1  # not retried as a rate limit
    with pytest.raises(CircuitOpenError) as opened:
        client.complete(ASK)
    assert opened.value.reason == "insufficient_quota"


@pytest.mark.parametrize(
    ("fault", "error", "kind", "reason"),
    [
        ("server_error", llm.LLMServerError, ErrorKind.TRANSIENT, "http_500"),
        ("overloaded", llm.LLMOverloadedError, ErrorKind.TRANSIENT, "http_503"),
        ("insufficient_quota", llm.QuotaExceededError, ErrorKind.PERMANENT, "insufficient_quota"),
    ],
)
def test_an_error_a_gateway_sends_in_a_200_is_that_error(
    fault: str,
    error: type[Exception],
    kind: ErrorKind,
    reason: str,
    fake: FakeOpenAIServer,
    make_client: Make,
) -> None:
    # OpenRouter answers 200 before its provider runs and puts the provider's failure in the
    # body; read as an answer without choices it was an empty summary, and a success.
    fake.configure(errors_in_ok_body=True)
    fake.inject(fault)
    client = make_client(breaker_failure_threshold=1)
    with pytest.raises(error) as info:
        client.complete(ASK)
    assert classify(info.value) is kind
    assert fake.stats()["statuses"] == {"200": 1}
    # The breaker hears of it as of the status the error names.
    assert client.breaker("gpt-4o-mini").state().reason == reason


def test_a_choice_that_ends_in_error_is_the_providers_failure() -> None:
    answer = httpx2.Response(
        200,
        json={
            "choices": [
                {
                    "finish_reason": "error",
                    "message": {"role": "assistant", "content": "Hal"},
                    "error": {"code": 503, "message": "provider went away"},
                }
            ]
        },
    )
    assert embedded_error(answer) == (
        503,
        {"error": {"code": 503, "message": "provider went away"}},
    )
    assert embedded_error(httpx2.Response(200, json={"error": {"code": "boom"}}))[0] == 502
    assert embedded_error(httpx2.Response(200, json={"choices": [{"message": {}}]})) is None


def test_rate_limits_are_absorbed_then_surface(fake: FakeOpenAIServer, make_client: Make) -> None:
    client = make_client(max_rate_retries=2)
    fake.inject("rate_limit", retry_after=0.05)
    fake.inject("slow_down", retry_after=0.05)
    result = client.complete(ASK)
    assert result.attempts == 3
    assert result.waited >= 0.09  # both retry-afters were waited out by the limiter
    fake.inject("rate_limit", times=3, retry_after=0.01)
    with pytest.raises(llm.LLMRateLimitedError) as info:
        client.complete(ASK)
    assert classify(info.value) is ErrorKind.TRANSIENT
    assert info.value.retry_after == pytest.approx(0.01)


def raw_chat(fake: FakeOpenAIServer, url: str | None = None) -> httpx.Response:
    """One chat request sent by hand, to see the fake's answer as a client would."""
    body = {"model": "gpt-4o-mini", "messages": ASK, "max_completion_tokens": 100}
    return httpx.post(
        url or f"{fake.base_url}/chat/completions",
        json=body,
        headers={"Authorization": "Bearer sk-test"},
    )


def test_a_wait_of_minutes_is_written_and_read_as_a_go_duration(
    fake: FakeOpenAIServer, make_client: Make
) -> None:
    fake.configure(retry_after_headers=False)
    fake.inject("rate_limit", retry_after=237.024)
    reply = raw_chat(fake)
    assert reply.status_code == 429
    assert "Please try again in 3m57.024s." in reply.json()["error"]["message"]
    assert "retry-after" not in reply.headers and "retry-after-ms" not in reply.headers
    fake.inject("rate_limit", retry_after=237.024)
    with pytest.raises(llm.LLMRateLimitedError) as info:
        make_client(max_rate_retries=0).complete(ASK)
    assert info.value.retry_after == pytest.approx(237.024)


def test_a_429_without_retry_after_or_hint_waits_for_the_exhausted_limit_to_reset(
    fake: FakeOpenAIServer, make_client: Make
) -> None:
    fake.config = FakeConfig(
        api_keys=frozenset({"sk-test"}), tokens_per_minute=1_000_000, requests_per_minute=10_000
    )
    fake.inject("rate_limit", retry_after=0.3, retry_after_headers=False, hint=False)
    reply = raw_chat(fake)
    assert reply.status_code == 429
    assert "try again" not in reply.json()["error"]["message"]
    assert "retry-after" not in reply.headers and "retry-after-ms" not in reply.headers
    assert reply.headers["x-ratelimit-remaining-tokens"] == "0"
    assert reply.headers["x-ratelimit-reset-tokens"] == "300ms"
    assert reply.headers["x-ratelimit-remaining-requests"] != "0"
    fake.inject("rate_limit", retry_after=0.3, retry_after_headers=False, hint=False)
    result = make_client(max_rate_retries=1).complete(ASK)
    assert result.attempts == 2
    assert 0.29 <= result.waited < 0.9  # the tokens reset, not the 1 s of last resort


def test_content_filter_and_refusal_are_permanent(
    fake: FakeOpenAIServer, make_client: Make
) -> None:
    client = make_client()
    fake.inject("content_filter")
    with pytest.raises(llm.ContentFilterError):
        client.complete(ASK)
    fake.inject("refusal")
    with pytest.raises(llm.ContentFilterError, match="sorry"):
        client.complete(ASK)


def test_context_overflow_is_caught_before_and_after_sending(
    fake: FakeOpenAIServer, make_client: Make
) -> None:
    big = [{"role": "user", "content": "word " * 9000}]
    local = make_client(model="gpt-4")  # 8,192-token window known to the registry
    with pytest.raises(llm.ContextLengthError) as before:
        local.complete(big, max_tokens=100)
    assert before.value.context_window == 8192
    assert fake.stats()["requests"] == 0
    # A registry that believes in a bigger window: the server's 400 says the real numbers.
    lying = make_client(model="gpt-4", models={"gpt-4": {"context_window": 32000}})
    with pytest.raises(llm.ContextLengthError) as after:
        lying.complete(big, max_tokens=100)
    assert after.value.context_window == 8192
    assert after.value.requested and after.value.requested > 8192
    assert classify(after.value) is ErrorKind.PERMANENT


def test_an_alias_is_counted_with_the_encoding_the_registry_gives_it(
    fake: FakeOpenAIServer, make_client: Make
) -> None:
    # A proxy serves gpt-4 as "summarizer" (a LiteLLM model_name alias): the server counts
    # with gpt-4's cl100k_base, which nothing in the name says; the registry entry does.
    fake.config.models["summarizer"] = FakeModel("summarizer", 8_192, 4_096, encoding="cl100k_base")
    line = "[m12 14:03 bill] the 2.6.8.1 kernel won't boot after installing the headers; ideas?\n"
    big = [{"role": "user", "content": line * 220}]
    served = chat_prompt_tokens(big, model="summarizer", encoding="cl100k_base")
    modern = chat_prompt_tokens(big, model="summarizer", encoding="o200k_base")
    allowance = 8_192 - modern  # fits if counted with o200k_base, as the name alone suggests
    assert 0 < allowance <= 4_096 and served > modern
    client = make_client(
        model="summarizer",
        models={
            "summarizer": {
                "context_window": 8_192,
                "max_output_tokens": 4_096,
                "encoding": "cl100k_base",
            }
        },
    )
    with pytest.raises(llm.ContextLengthError) as info:
        client.complete(big, max_tokens=allowance)
    assert info.value.requested == served + allowance  # the server's count, before sending
    assert fake.stats()["requests"] == 0


def test_request_too_large_for_the_tpm_limit_is_permanent(
    fake: FakeOpenAIServer, make_client: Make
) -> None:
    fake.config = FakeConfig(tokens_per_minute=500)
    with pytest.raises(RequestTooLargeError) as info:
        make_client().complete(ASK, max_tokens=600)
    assert classify(info.value) is ErrorKind.PERMANENT
    assert fake.stats()["statuses"] == {"429": 1}


def test_auth_and_model_errors_are_permanent(fake: FakeOpenAIServer, make_client: Make) -> None:
    with pytest.raises(llm.LLMAuthError):
        make_client(api_key="sk-wrong").complete(ASK)
    with pytest.raises(llm.ModelNotFoundError):
        make_client(
            model="gpt-9", models={"gpt-9": {"context_window": 8192, "max_output_tokens": 1024}}
        ).complete(ASK)
    with pytest.raises(llm.LLMInvalidRequestError):
        make_client().complete(ASK, temperature=1.5, response_format={"type": "bogus"})


def test_a_base_url_without_v1_is_blamed_on_the_url_not_the_model(
    fake: FakeOpenAIServer, make_client: Make
) -> None:
    root = fake.base_url.removesuffix("/v1")
    reply = raw_chat(fake, f"{root}/chat/completions")
    assert reply.status_code == 404
    assert reply.json() == {
        "error": {
            "message": "Invalid URL (POST /chat/completions)",
            "type": "invalid_request_error",
            "param": None,
            "code": None,
        }
    }
    client = make_client(base_url=root)
    with pytest.raises(llm.LLMEndpointNotFoundError) as info:
        client.complete(ASK)
    assert classify(info.value) is ErrorKind.PERMANENT
    assert "LLM_BASE_URL" in info.value.user_message and "/v1" in info.value.user_message
    with pytest.raises(llm.LLMEndpointNotFoundError):
        client.list_models()
    # A LiteLLM proxy serves the API at its root as well.
    fake.configure(dialect="litellm")
    proxied = make_client(base_url=root, provider="litellm")
    assert proxied.complete(ASK).text
    assert "gpt-4o-mini" in proxied.list_models()


def test_key_rotation_without_restart(
    fake: FakeOpenAIServer, make_client: Make, tmp_path: Path
) -> None:
    key_file = tmp_path / "openai.key"
    key_file.write_text("sk-test\n")
    client = make_client(api_key=None, api_key_file=key_file)
    client.complete(ASK)
    key_file.write_text("sk-new\n")
    os.utime(key_file, ns=(1, 2_000_000_000_000_000_000))
    client.complete(ASK)
    assert [h["authorization"] for h in fake.headers_seen] == ["Bearer sk-test", "Bearer sk-new"]


def test_limit_parameter_per_backend_and_learnt_from_the_server(
    fake: FakeOpenAIServer, make_client: Make
) -> None:
    make_client(provider="ollama").complete(ASK, max_tokens=20)
    assert fake.requests_seen[-1]["max_tokens"] == 20
    # Forced to the old field on a reasoning model: the 400 teaches the client the other one.
    client = make_client(model="o3-mini", limit_param="auto", provider="compatible")
    result = client.complete(ASK, max_tokens=20)
    assert result.attempts == 2
    assert "max_completion_tokens" in fake.requests_seen[-1]
    assert "temperature" not in fake.requests_seen[-1]  # reasoning models take the default only


def test_a_server_that_cuts_the_prompt_to_fit_is_reported_once(
    fake: FakeOpenAIServer, make_client: Make
) -> None:
    # Ollama's /v1 cuts a prompt longer than num_ctx and answers 200: the summary silently
    # misses most of the chunk, and only usage.prompt_tokens tells.
    fake.configure(context_cut=2048)
    client = make_client(provider="ollama")
    long_ask = [{"role": "user", "content": "the build broke again on arm64. " * 600}]
    with capture_logs() as logs:
        client.complete(long_ask, max_tokens=50)
        client.complete(long_ask, max_tokens=50)
        client.complete(ASK, max_tokens=50)
    cut = [entry for entry in logs if entry["event"] == "llm.prompt_cut"]
    assert len(cut) == 1
    assert cut[0]["counted_tokens"] == 2048 and cut[0]["sent_tokens"] > 3000
    assert "LLM_MODELS" in cut[0]["hint"]


def test_a_reasoning_model_gets_room_to_think_before_it_answers(
    fake: FakeOpenAIServer, make_client: Make
) -> None:
    # max_completion_tokens counts the reasoning tokens too: a map call's 1500 is spent
    # thinking at OpenAI's default effort, leaving an empty answer cut at "length".
    fake.config.models["o4-mini"] = FakeModel("o4-mini", 200_000, 100_000, reasoning=True)
    cramped = make_client(model="o4-mini", reasoning_tokens=0, reasoning_effort="none")
    starved = cramped.complete(ASK, max_tokens=1500)
    assert (starved.text, starved.finish_reason) == ("", "length")
    assert fake.requests_seen[-1]["max_completion_tokens"] == 1500
    client = make_client(model="o4-mini")
    result = client.complete(ASK, max_tokens=1500)
    assert result.text and result.finish_reason == "stop" and result.attempts == 1
    sent = fake.requests_seen[-1]
    assert sent["max_completion_tokens"] == 1500 + 8192
    assert sent["reasoning_effort"] == "low" and "temperature" not in sent
    # The thinking is billed as output: it is in completion_tokens.
    assert result.usage.completion_tokens > 600
    # A model that is no reasoning model is sent neither (OpenAI refuses reasoning_effort).
    make_client().complete(ASK, max_tokens=100)
    assert "reasoning_effort" not in fake.requests_seen[-1]
    assert fake.requests_seen[-1]["max_completion_tokens"] == 100


def test_a_reasoning_model_the_registry_does_not_mark_drops_its_temperature(
    fake: FakeOpenAIServer, make_client: Make
) -> None:
    # A model registered by the operator (LLM_MODELS) without "reasoning": true, which the
    # server serves as one; it refuses any temperature but its default.
    fake.config.models["gpt-5-mini"] = FakeModel("gpt-5-mini", 400_000, 128_000, reasoning=True)
    client = make_client(
        model="gpt-5-mini",
        models={"gpt-5-mini": {"context_window": 400_000, "max_output_tokens": 128_000}},
    )
    result = client.complete(ASK, max_tokens=20)
    assert result.text and result.attempts == 2
    assert [("temperature" in body) for body in fake.requests_seen] == [True, False]
    client.complete(ASK, max_tokens=20)  # learnt: no refused first try again
    assert [("temperature" in body) for body in fake.requests_seen] == [True, False, False]


def test_structured_output_strict_schema(fake: FakeOpenAIServer, make_client: Make) -> None:
    result = make_client().complete_json(TRANSCRIPT, schema=SCHEMA, name="summary")
    assert result.mode == "json_schema" and not result.repaired
    aliases = {a for point in result.data["key_points"] for a in point["message_ids"]}
    assert aliases <= {"m1", "m2", "m3"} and aliases
    sent = fake.requests_seen[-1]["response_format"]
    assert sent["json_schema"]["strict"] is True


def test_a_schema_the_server_refuses_is_warned_and_the_ladder_steps_down(
    fake: FakeOpenAIServer, make_client: Make
) -> None:
    # "uri" is no format strict mode knows: OpenAI refuses the schema, not json_schema itself.
    bad = json.loads(json.dumps(SCHEMA))
    bad["properties"]["overview"]["format"] = "uri"
    with capture_logs() as logs:
        result = make_client().complete_json(TRANSCRIPT, schema=bad, name="summary")
    assert result.mode == "json_object"
    refused = [e for e in logs if e["event"] == "llm.schema_refused"]
    assert len(refused) == 1 and refused[0]["log_level"] == "warning"
    assert "'uri' is not a valid format" in refused[0]["error"]


def test_structured_output_ladder_steps_down(fake: FakeOpenAIServer, make_client: Make) -> None:
    fake.config.supports_json_schema = False
    client = make_client()
    result = client.complete_json(TRANSCRIPT, schema=SCHEMA, name="summary")
    assert result.mode == "json_object"
    # The rung's instructions join the first system message (strict chat templates).
    sent = fake.requests_seen[-1]["messages"]
    assert "<schema>" in sent[0]["content"] and [m["role"] for m in sent].count("system") == 1
    fake.config.supports_json_object = False
    fresh = make_client()
    result = fresh.complete_json(TRANSCRIPT, schema=SCHEMA, name="summary")
    assert result.mode == "text"  # parsed out of prose and a code fence
    assert result.data["key_points"]
    again = fresh.complete_json(TRANSCRIPT, schema=SCHEMA, name="summary")
    assert again.calls == 1  # the downgrade is remembered
    with pytest.raises(llm.LLMInvalidRequestError, match="response_format"):
        fresh.complete(
            ASK, response_format={"type": "json_schema", "json_schema": {"name": "x", "schema": {}}}
        )


def test_structured_output_repairs_broken_json_once(
    fake: FakeOpenAIServer, make_client: Make
) -> None:
    client = make_client()
    fake.inject("invalid_json")
    result = client.complete_json(TRANSCRIPT, schema=SCHEMA, name="summary")
    assert result.repaired and result.calls == 2
    assert result.usage.calls == 2
    repair_prompt = fake.requests_seen[-1]["messages"][-1]["content"]
    assert "not valid JSON" in repair_prompt
    # Broken twice on the strict rung: the server does not enforce json_schema; step down.
    fake.inject("invalid_json", times=2)
    stepped = client.complete_json(TRANSCRIPT, schema=SCHEMA, name="summary")
    assert stepped.mode == "json_object" and stepped.calls == 3
    # Broken on every rung: no usable answer, and the error says what each rung did.
    fake.inject("invalid_json", times=6)
    with pytest.raises(llm.InvalidOutputError) as info:
        make_client().complete_json(TRANSCRIPT, schema=SCHEMA, name="summary")
    assert classify(info.value) is ErrorKind.PERMANENT
    assert [o.mode for o in info.value.outcomes] == ["json_schema", "json_object", "text"]
    assert "not valid JSON" in info.value.user_message


def test_truncated_output_is_retried_with_more_room(
    fake: FakeOpenAIServer, make_client: Make
) -> None:
    fake.inject("length", tokens=5)
    result = make_client().complete_json(TRANSCRIPT, schema=SCHEMA, name="summary", max_tokens=300)
    assert result.repaired
    assert fake.requests_seen[-1]["max_completion_tokens"] == 600
    assert "cut off" in fake.requests_seen[-1]["messages"][-1]["content"]


def test_invented_citations_are_sent_back_by_the_check(
    fake: FakeOpenAIServer, make_client: Make
) -> None:
    def check(data: dict[str, object]) -> list[str]:
        ids = {a for p in data["key_points"] for a in p["message_ids"]}  # type: ignore[attr-defined]
        return [f"{a} is not an alias of the input" for a in sorted(ids - {"m1", "m2", "m3"})]

    fake.inject("bad_citations")
    result = make_client().complete_json(TRANSCRIPT, schema=SCHEMA, name="summary", check=check)
    assert result.repaired
    assert "m99999 is not an alias" in fake.requests_seen[-1]["messages"][-1]["content"]
    with pytest.raises(ValueError, match="schema name"):
        make_client().complete_json(TRANSCRIPT, schema=SCHEMA, name="bad name")


def test_fake_enforces_tpm_with_real_headers_and_the_client_paces_itself(
    fake: FakeOpenAIServer, make_client: Make
) -> None:
    import concurrent.futures

    fake.config = FakeConfig(tokens_per_minute=3000, requests_per_minute=100, latency_base=0.3)
    body = {"model": "gpt-4o-mini", "messages": ASK, "max_completion_tokens": 1400}
    auth = {"Authorization": "Bearer sk-test"}
    with concurrent.futures.ThreadPoolExecutor(3) as pool:
        # Three at once: the first two hold 2 x 1,400 of allowance while they run.
        replies = list(
            pool.map(
                lambda _: httpx.post(f"{fake.base_url}/chat/completions", json=body, headers=auth),
                range(3),
            )
        )
    ok = [r for r in replies if r.status_code == 200]
    limited = next(r for r in replies if r.status_code == 429)
    assert len(ok) == 2
    assert ok[0].headers["x-ratelimit-limit-tokens"] == "3000"
    assert int(ok[0].headers["x-ratelimit-remaining-tokens"]) < 3000
    assert ok[0].headers["x-ratelimit-reset-tokens"].endswith("s")
    error = limited.json()["error"]
    assert error["code"] == "rate_limit_exceeded" and error["type"] == "tokens"
    assert "on tokens per min (TPM): Limit 3000" in error["message"]
    assert "Please try again in" in error["message"]
    assert int(limited.headers["retry-after-ms"]) > 0
    # A client that knows nothing learns the limit from the headers and waits its turn.
    client = make_client(max_rate_wait=60)
    before = fake.stats()["rate_limited"]
    result = client.complete(ASK, max_tokens=1400)
    assert result.attempts <= 2
    client.complete(ASK, max_tokens=1400)
    assert fake.stats()["rate_limited"] - before <= 1
