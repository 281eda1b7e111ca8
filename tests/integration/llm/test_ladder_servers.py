"""The structured-output ladder against servers less faithful than OpenAI (the stricter fake).

Each case is a server people run: vLLM, llama.cpp or a LiteLLM proxy without ``json_schema``
(a 400 with ``param: null``), a vLLM that answers 500 to a ``response_format`` it cannot handle,
a server that ignores ``response_format``, one that rejects every format and whose model writes
uncited prose.  What the client learns is shared through Redis.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterator

import pytest
from redis import Redis

from shared.domain.messages import ChannelInfo
from shared.errors import ErrorKind, classify
from shared.llm.capabilities import RedisCapabilityStore, server_key
from shared.llm.client import InvalidOutputError, LLMClient, LLMServerError
from shared.llm.config import LLMSettings
from shared.llm.models import Meter
from shared.summarize.content import SummaryFormat
from shared.summarize.llm import prompts
from shared.summarize.llm.answers import SummaryReader
from tests.fakes.openai_server import FakeOpenAIServer

pytestmark = pytest.mark.integration

Make = Callable[..., LLMClient]
SCHEMA = prompts.final_schema(SummaryFormat.STRUCTURED)


def structured_ask(transcript_text: str) -> list[dict[str, str]]:
    """The final-summary request of #support for ``transcript_text``."""
    return prompts.final_messages(
        channel=ChannelInfo(channel_id="1", channel_name="support"),
        options=prompts.PromptOptions(format=SummaryFormat.STRUCTURED),
        transcript_text=transcript_text,
    )


ASK = structured_ask(
    "--- 2024-11-15 UTC ---\n[m1 14:03 bill] kernel 2.6.8.1 fails to build\n"
    "[m2 14:04 bob ↩m1] install linux-headers-2.6.8.1 first\n[m3] then reboot\n"
    "[m4 14:06 carol] we decided to document it in the wiki\n"
    "[m5 14:07 dave] is arm64 affected too?",
)
ALIASES = {"m1", "m2", "m3", "m4", "m5"}


@pytest.fixture
def redis(redis_url: str) -> Iterator[Redis]:  # type: ignore[type-arg]
    client: Redis = Redis.from_url(redis_url)  # type: ignore[type-arg]
    yield client
    client.close()


@pytest.fixture
def prefix(redis: Redis) -> Iterator[str]:  # type: ignore[type-arg]
    value = f"sbtest:ladder:{uuid.uuid4().hex[:8]}"
    yield value
    for key in redis.scan_iter(f"{value}:*"):
        redis.delete(key)


def shared_client(
    fake: FakeOpenAIServer, redis: Redis, prefix: str, **overrides: object
) -> LLMClient:  # type: ignore[type-arg]
    values: dict[str, object] = {
        "base_url": fake.base_url,
        "provider": "vllm",
        "api_key": "sk-test",
        "model": "gpt-4o-mini",
        "request_timeout": 5.0,
        "max_output_tokens": 800,
    }
    values.update(overrides)
    return LLMClient.shared(LLMSettings(**values), redis, prefix=prefix)  # type: ignore[arg-type]


def cited(data: dict[str, object]) -> set[str]:
    found: set[str] = set()

    def walk(node: object) -> None:
        if isinstance(node, dict):
            ids = node.get("message_ids")
            if isinstance(ids, list):
                found.update(str(i) for i in ids)
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(data)
    return found


def four_hundreds(fake: FakeOpenAIServer) -> int:
    return int(fake.stats()["statuses"].get("400", 0))


@pytest.mark.parametrize("dialect", ["vllm", "vllm-legacy", "llamacpp"])
def test_without_json_schema_one_400_then_json_object_for_everyone(
    dialect: str, fake: FakeOpenAIServer, make_client: Make
) -> None:
    fake.configure(supports_json_schema=False, dialect=dialect, answer_style="own_json")
    client = make_client(provider="vllm")
    first = client.complete_json(ASK, schema=SCHEMA, name="summary", reader=SummaryReader())
    assert first.mode == "json_object" and first.shape == "coerced"
    assert first.calls == 1  # the 400 was not billed, the model's own JSON shape was read
    assert cited(first.data) and cited(first.data) <= ALIASES
    assert four_hundreds(fake) == 1
    again = client.complete_json(ASK, schema=SCHEMA, name="summary", reader=SummaryReader())
    assert again.mode == "json_object"
    assert four_hundreds(fake) == 1  # learnt: no second 400
    assert fake.requests_seen[0]["response_format"]["type"] == "json_schema"
    assert fake.requests_seen[-1]["response_format"] == {"type": "json_object"}


def test_a_second_client_sharing_redis_does_not_pay_the_400(
    fake: FakeOpenAIServer,
    redis: Redis,
    prefix: str,  # type: ignore[type-arg]
) -> None:
    fake.configure(supports_json_schema=False, dialect="vllm")
    first = shared_client(fake, redis, prefix)
    second = shared_client(fake, redis, prefix)  # another worker process, same Redis
    try:
        assert first.complete_json(ASK, schema=SCHEMA, name="summary").mode == "json_object"
        assert four_hundreds(fake) == 1
        assert second.complete_json(ASK, schema=SCHEMA, name="summary").mode == "json_object"
        assert four_hundreds(fake) == 1
        record = RedisCapabilityStore(redis, ttl=60, prefix=f"{prefix}:cap:llm").verdicts(
            server_key(fake.base_url, "gpt-4o-mini")
        )
        assert record["json_schema"].verdict == "rejected"
        assert "Input should be" in record["json_schema"].reason
        assert record["json_object"].verdict == "ok"
        assert redis.pttl(f"{prefix}:cap:llm:{server_key(fake.base_url, 'gpt-4o-mini')}") > 0
    finally:
        first.close()
        second.close()


def test_workers_starting_together_wait_for_one_probe(
    fake: FakeOpenAIServer,
    redis: Redis,
    prefix: str,  # type: ignore[type-arg]
) -> None:
    fake.configure(supports_json_schema=False, dialect="llamacpp")
    fake.config.latency_base = 0.3  # every call takes a while: the others arrive meanwhile
    clients = [shared_client(fake, redis, prefix) for _ in range(4)]
    barrier = threading.Barrier(len(clients))
    modes: list[str] = []

    def work(client: LLMClient) -> None:
        barrier.wait()
        modes.append(client.complete_json(ASK, schema=SCHEMA, name="summary").mode)

    threads = [threading.Thread(target=work, args=(c,)) for c in clients]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    for client in clients:
        client.close()
    assert modes == ["json_object"] * 4
    assert four_hundreds(fake) == 1


def test_an_upgraded_server_is_probed_again_after_the_ttl(
    fake: FakeOpenAIServer,
    redis: Redis,
    prefix: str,  # type: ignore[type-arg]
) -> None:
    fake.configure(supports_json_schema=False, dialect="vllm")
    settings = LLMSettings(
        base_url=fake.base_url, provider="vllm", api_key="sk-test", request_timeout=5.0
    )
    # Long enough for the calls before the wait on a loaded machine.
    store = RedisCapabilityStore(redis, ttl=2.0, prefix=f"{prefix}:cap:llm")
    client = LLMClient.shared(settings, redis, prefix=prefix, capabilities=store)
    try:
        assert client.complete_json(ASK, schema=SCHEMA, name="summary").mode == "json_object"
        fake.configure(supports_json_schema=True)  # the operator upgraded vLLM
        assert client.complete_json(ASK, schema=SCHEMA, name="summary").mode == "json_object"
        time.sleep(2.1)
        assert client.complete_json(ASK, schema=SCHEMA, name="summary").mode == "json_schema"
        assert four_hundreds(fake) == 1
    finally:
        client.close()


@pytest.mark.parametrize("style", ["own_json", "json_in_prose", "markdown"])
def test_a_server_that_ignores_response_format(
    style: str, fake: FakeOpenAIServer, make_client: Make
) -> None:
    fake.configure(answer_style=style)
    client = make_client(provider="ollama")
    reader = SummaryReader()
    result = client.complete_json(ASK, schema=SCHEMA, name="summary", reader=reader)
    assert result.shape == ("prose" if style == "markdown" else "coerced")
    assert result.calls == 1  # read as it came, no repair round
    assert cited(result.data) and cited(result.data) <= ALIASES
    # A strict json_schema answer of another shape: the server ignores json_schema.
    verdicts = client.capabilities.verdicts(server_key(fake.base_url, "gpt-4o-mini"))
    assert verdicts["json_schema"].verdict == "ignored"
    client.complete_json(ASK, schema=SCHEMA, name="summary", reader=reader)
    third = client.complete_json(ASK, schema=SCHEMA, name="summary", reader=reader)
    expected = "text" if style == "markdown" else "json_object"
    assert third.mode == expected  # a prose answer to JSON mode: text from then on
    assert fake.stats()["statuses"] == {"200": 3}


FENCED_ASK = structured_ask(
    "--- 2024-11-15 UTC ---\n[m1 14:03 bill] the arm64 build fails\n"
    "[m2 14:04 bob ↩m1] run ```make clean && make ARCH=arm64``` then retry\n"
    "[m3 14:06 bill] ```make ARCH=arm64``` worked, we decided to document it\n"
    "[m4 14:07 dave] ```uname -m``` says aarch64 here, is it affected too?",
)


def strings(node: object) -> list[str]:
    if isinstance(node, dict):
        return [s for value in node.values() for s in strings(value)]
    if isinstance(node, list):
        return [s for value in node for s in strings(value)]
    return [node] if isinstance(node, str) else []


def test_a_strict_answer_quoting_a_code_fence_is_read_as_the_json_it_is(
    fake: FakeOpenAIServer, make_client: Make
) -> None:
    # The prompt asks to copy commands exactly, so ``` lands inside JSON strings; reading
    # the text between two of them as "the fenced JSON" made prose of a faithful answer and
    # taught every worker that the server ignores json_schema.
    client = make_client()
    result = client.complete_json(FENCED_ASK, schema=SCHEMA, name="summary", reader=SummaryReader())
    assert (result.mode, result.shape, result.calls) == ("json_schema", "json", 1)
    assert any("```" in text for text in strings(result.data))
    verdicts = client.capabilities.verdicts(server_key(fake.base_url, "gpt-4o-mini"))
    assert verdicts["json_schema"].verdict == "ok"


@pytest.mark.parametrize("style", [None, "json_in_prose", "markdown"])
def test_reasoning_written_before_the_answer_is_left_out(
    style: str | None, fake: FakeOpenAIServer, make_client: Make
) -> None:
    fake.configure(reasoning_in_content=True, answer_style=style)
    client = make_client(provider="vllm")
    result = client.complete_json(ASK, schema=SCHEMA, name="summary", reader=SummaryReader())
    assert result.calls == 1
    assert result.shape == {None: "json", "json_in_prose": "coerced", "markdown": "prose"}[style]
    assert cited(result.data) and cited(result.data) <= ALIASES
    assert not any("think" in text or "transcript" in text for text in strings(result.data))
    if style is None:
        verdicts = client.capabilities.verdicts(server_key(fake.base_url, "gpt-4o-mini"))
        assert verdicts["json_schema"].verdict == "ok"


@pytest.mark.parametrize("style", [None, "own_json"])
def test_a_template_that_takes_system_messages_only_first_gets_every_rung(
    style: str | None, fake: FakeOpenAIServer, make_client: Make
) -> None:
    # Qwen3's, Gemma's and Mistral's chat templates refuse a system message after a user
    # turn: the lower rungs' instructions must not come as one.
    fake.configure(
        supports_json_schema=False, dialect="vllm", system_first_template=True, answer_style=style
    )
    client = make_client(provider="vllm")
    result = client.complete_json(ASK, schema=SCHEMA, name="summary", reader=SummaryReader())
    assert result.mode == "json_object"
    assert cited(result.data) and cited(result.data) <= ALIASES
    assert fake.stats()["statuses"] == {"400": 1, "200": 1}  # only json_schema's refusal


def test_a_json_mode_that_refuses_the_models_output_steps_down_and_learns_nothing(
    fake: FakeOpenAIServer, make_client: Make
) -> None:
    # Groq checks what the model wrote in JSON mode and answers 400 json_validate_failed:
    # the server supports the mode, this answer did not fit it.
    fake.inject("json_validate_failed")
    client = make_client(provider="compatible")
    result = client.complete_json(ASK, schema=SCHEMA, name="summary", reader=SummaryReader())
    assert result.mode == "json_object"
    assert cited(result.data) and cited(result.data) <= ALIASES
    verdicts = client.capabilities.verdicts(server_key(fake.base_url, "gpt-4o-mini"))
    assert "json_schema" not in verdicts
    again = client.complete_json(ASK, schema=SCHEMA, name="summary", reader=SummaryReader())
    assert again.mode == "json_schema"


def test_every_rung_failing_says_what_each_did(fake: FakeOpenAIServer, make_client: Make) -> None:
    fake.configure(
        supports_json_schema=False,
        supports_json_object=False,
        dialect="litellm",
        answer_style="uncited_prose",
    )
    meter = Meter("single")
    with pytest.raises(InvalidOutputError) as info:
        make_client(provider="litellm").complete_json(
            ASK, schema=SCHEMA, name="summary", reader=SummaryReader(), meter=meter
        )
    error = info.value
    assert classify(error) is ErrorKind.PERMANENT
    assert [o.mode for o in error.outcomes] == ["json_schema", "json_object", "text"]
    assert "rejected by the server" in str(error.outcomes[0])
    assert "UnsupportedParamsError" in str(error.outcomes[1])
    assert "no points" in str(error.outcomes[2])
    # Two billed text calls (answer and repair), both on the meter; the 400s cost nothing.
    assert [c.kind for c in meter.charges] == ["single", "repair"]
    assert sum(c.usage.total_tokens for c in meter.charges) == fake.stats()["total_tokens"]


def test_rungs_skipped_on_a_learnt_verdict_still_say_why(
    fake: FakeOpenAIServer, make_client: Make
) -> None:
    fake.configure(
        supports_json_schema=False,
        supports_json_object=False,
        dialect="litellm",
        answer_style="uncited_prose",
    )
    client = make_client(provider="litellm")
    for _ in range(2):  # the second call skips both rungs the first one learnt about
        with pytest.raises(InvalidOutputError) as info:
            client.complete_json(ASK, schema=SCHEMA, name="summary", reader=SummaryReader())
    assert four_hundreds(fake) == 2, "the learnt rungs were not tried again"
    outcomes = [str(o) for o in info.value.outcomes]
    assert [o.split(":", 1)[0] for o in outcomes] == ["json_schema", "json_object", "text"]
    assert outcomes[0].startswith("json_schema: rejected by the server (learnt earlier: ")
    assert outcomes[1].startswith("json_object: rejected by the server (learnt earlier: ")


def test_the_text_rung_of_a_faithful_model_gives_a_cited_answer(
    fake: FakeOpenAIServer, make_client: Make
) -> None:
    fake.configure(supports_json_schema=False, supports_json_object=False, dialect="litellm")
    result = make_client(provider="litellm").complete_json(
        ASK, schema=SCHEMA, name="summary", reader=SummaryReader()
    )
    assert result.mode == "text" and result.shape == "prose" and not result.repaired
    assert cited(result.data) <= ALIASES and result.data["topics"] and result.data["key_points"]
    sent = fake.requests_seen[-1]["messages"]
    assert "## key_points" in sent[0]["content"] and [m["role"] for m in sent].count("system") == 1


def test_server_usage_is_what_the_meter_records(fake: FakeOpenAIServer, make_client: Make) -> None:
    fake.configure(usage_counting="chars4", charge_failures=True)
    client = make_client()
    meter = Meter("map")
    fake.inject("server_error")
    with pytest.raises(Exception, match="500"):
        client.complete(ASK, max_tokens=200, meter=meter)
    client.complete(ASK, max_tokens=200, meter=meter)
    failed, ok = meter.charges
    assert failed.failed and not ok.failed
    body = fake.requests_seen[-1]
    chars = sum(len(m["content"]) for m in body["messages"])
    assert ok.usage.prompt_tokens == -(-chars // 4)  # the server's count, not ours
    assert failed.usage.prompt_tokens == ok.usage.prompt_tokens
    assert failed.usage.completion_tokens == 12 and failed.cost_usd > 0
    stats = fake.stats()
    assert stats["charged_failures"] == 1
    assert sum(c.usage.prompt_tokens for c in meter.charges) == stats["prompt_tokens"]
    assert sum(c.usage.completion_tokens for c in meter.charges) == stats["completion_tokens"]


# -- a 500 to a response_format (vllm-project/vllm#35438) ---------------------------------------


def formats_sent(fake: FakeOpenAIServer) -> list[str | None]:
    return [(body.get("response_format") or {}).get("type") for body in fake.requests_seen]


@pytest.mark.parametrize("dialect", ["vllm", "vllm-legacy"])
def test_a_500_to_json_schema_steps_down_and_is_learnt(
    dialect: str, fake: FakeOpenAIServer, make_client: Make
) -> None:
    fake.configure(supports_json_schema=False, dialect=dialect, unsupported_status=500)
    client = make_client(provider="vllm")
    meter = Meter("single")
    first = client.complete_json(
        ASK, schema=SCHEMA, name="summary", reader=SummaryReader(), meter=meter
    )
    assert first.mode == "json_object" and first.calls == 1
    assert cited(first.data) and cited(first.data) <= ALIASES
    assert fake.stats()["statuses"] == {"500": 1, "200": 1}
    assert [c.failed for c in meter.charges] == [False]  # the 500 billed nothing
    verdicts = client.capabilities.verdicts(server_key(fake.base_url, "gpt-4o-mini"))
    assert verdicts["json_schema"].verdict == "rejected"
    assert verdicts["json_schema"].reason.startswith("the server answered 500 to json_schema")
    assert verdicts["json_object"].verdict == "ok"
    assert client.breaker("gpt-4o-mini").state().failures == 0
    again = client.complete_json(ASK, schema=SCHEMA, name="summary", reader=SummaryReader())
    assert again.mode == "json_object"
    assert formats_sent(fake) == ["json_schema", "json_object", "json_object"]


def test_a_500_to_both_formats_ends_at_text(fake: FakeOpenAIServer, make_client: Make) -> None:
    fake.configure(
        supports_json_schema=False,
        supports_json_object=False,
        dialect="vllm",
        unsupported_status=500,
    )
    client = make_client(provider="vllm")
    first = client.complete_json(ASK, schema=SCHEMA, name="summary", reader=SummaryReader())
    assert first.mode == "text" and cited(first.data) <= ALIASES and first.data["key_points"]
    verdicts = client.capabilities.verdicts(server_key(fake.base_url, "gpt-4o-mini"))
    assert verdicts["json_schema"].verdict == verdicts["json_object"].verdict == "rejected"
    assert "500 to json_object" in verdicts["json_object"].reason
    assert client.complete_json(ASK, schema=SCHEMA, name="summary").mode == "text"
    assert formats_sent(fake) == ["json_schema", "json_object", None, None]


def test_workers_share_the_500_verdict_until_it_expires(
    fake: FakeOpenAIServer,
    redis: Redis,
    prefix: str,  # type: ignore[type-arg]
) -> None:
    fake.configure(supports_json_schema=False, dialect="vllm", unsupported_status=500)
    settings = LLMSettings(
        base_url=fake.base_url, provider="vllm", api_key="sk-test", request_timeout=5.0
    )
    # Long enough for the calls before the wait on a loaded machine.
    store = RedisCapabilityStore(redis, ttl=2.0, prefix=f"{prefix}:cap:llm")
    first = LLMClient.shared(settings, redis, prefix=prefix, capabilities=store)
    second = LLMClient.shared(settings, redis, prefix=prefix, capabilities=store)
    try:
        assert first.complete_json(ASK, schema=SCHEMA, name="summary").mode == "json_object"
        assert second.complete_json(ASK, schema=SCHEMA, name="summary").mode == "json_object"
        assert fake.stats()["statuses"] == {"500": 1, "200": 2}  # the second worker paid none
        fake.configure(supports_json_schema=True)  # the operator upgraded vLLM
        time.sleep(2.1)
        assert second.complete_json(ASK, schema=SCHEMA, name="summary").mode == "json_schema"
    finally:
        first.close()
        second.close()


@pytest.mark.parametrize(
    ("lower", "sent"),
    [
        (500, ["json_schema", "json_object", None]),
        (502, ["json_schema", "json_object"]),  # a gateway's error is no format's fault
    ],
)
def test_a_server_failing_every_rung_stays_retryable_and_teaches_nothing(
    lower: int, sent: list[str | None], fake: FakeOpenAIServer, make_client: Make
) -> None:
    fake.configure(charge_failures=True)
    fake.inject("server_error")  # json_schema
    fake.inject("server_error", times=len(sent) - 1, status=lower)
    client = make_client(provider="vllm")
    meter = Meter("single")
    with pytest.raises(LLMServerError) as info:
        client.complete_json(ASK, schema=SCHEMA, name="summary", meter=meter)
    assert info.value.status == 500  # the first rung's error: the server is down
    assert classify(info.value) is ErrorKind.TRANSIENT
    assert formats_sent(fake) == sent
    assert client.capabilities.verdicts(server_key(fake.base_url, "gpt-4o-mini")) == {}
    assert client.breaker("gpt-4o-mini").state().failures == 1  # one call, one failure
    # Every billed failure is on the meter once, in the server's own counts.
    assert [c.failed for c in meter.charges] == [True] * len(sent)
    assert sum(c.usage.total_tokens for c in meter.charges) == fake.stats()["total_tokens"]


def test_a_500_to_a_mode_known_to_work_is_a_plain_transient_error(
    fake: FakeOpenAIServer, make_client: Make
) -> None:
    client = make_client(provider="vllm")
    assert client.complete_json(ASK, schema=SCHEMA, name="summary").mode == "json_schema"
    fake.inject("server_error")
    with pytest.raises(LLMServerError) as info:
        client.complete_json(ASK, schema=SCHEMA, name="summary")
    assert info.value.status == 500
    assert formats_sent(fake) == ["json_schema", "json_schema"]
    verdicts = client.capabilities.verdicts(server_key(fake.base_url, "gpt-4o-mini"))
    assert verdicts["json_schema"].verdict == "ok"
    assert client.breaker("gpt-4o-mini").state().failures == 1


@pytest.mark.parametrize("status", [502, 503, 504])
def test_gateway_and_overload_errors_do_not_step_down(
    status: int, fake: FakeOpenAIServer, make_client: Make
) -> None:
    if status == 503:
        fake.inject("overloaded")
    else:
        fake.inject("server_error", status=status)
    client = make_client(provider="vllm")
    with pytest.raises(LLMServerError) as info:
        client.complete_json(ASK, schema=SCHEMA, name="summary")
    assert info.value.status == status
    assert formats_sent(fake) == ["json_schema"]
    assert client.capabilities.verdicts(server_key(fake.base_url, "gpt-4o-mini")) == {}


def test_a_billed_500_is_charged_once_when_a_lower_rung_answers(
    fake: FakeOpenAIServer, make_client: Make
) -> None:
    fake.configure(usage_counting="chars4", charge_failures=True)
    fake.inject("server_error")
    meter = Meter("single")
    result = make_client(provider="vllm").complete_json(
        ASK, schema=SCHEMA, name="summary", meter=meter
    )
    assert result.mode == "json_object" and result.calls == 1
    failed, answered = meter.charges
    assert failed.failed and not answered.failed
    assert result.usage == answered.usage and result.cost_usd == answered.cost_usd
    assert sum(c.usage.total_tokens for c in meter.charges) == fake.stats()["total_tokens"]


def test_an_open_breaker_closes_when_its_probe_steps_down(
    fake: FakeOpenAIServer, make_client: Make
) -> None:
    fake.configure(supports_json_schema=False, dialect="vllm", unsupported_status=500)
    client = make_client(provider="vllm", breaker_failure_threshold=1, breaker_open_seconds=0.2)
    client.breaker("gpt-4o-mini").record_failure("http_500")  # opened by earlier failures
    time.sleep(0.3)
    result = client.complete_json(ASK, schema=SCHEMA, name="summary")
    assert result.mode == "json_object"
    assert formats_sent(fake) == ["json_schema", "json_object"]  # both on the probe's leave
    assert client.breaker("gpt-4o-mini").state().state == "closed"
