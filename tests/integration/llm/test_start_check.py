"""A summarizing worker asks the LLM endpoint for its models once at start
(:func:`shared.dependencies.check_llm_at_start`): it stops only on a key the endpoint says does
not exist, and says what else it saw."""

from __future__ import annotations

import socket
from typing import Any

import pytest

from shared.dependencies import check_llm_at_start
from shared.errors import ConfigError
from shared.llm.config import LLMSettings
from tests.fakes.openai_server import FakeConfig, FakeOpenAIServer


def _settings(base_url: str, **overrides: Any) -> LLMSettings:
    values: dict[str, Any] = {
        "base_url": base_url,
        "provider": "openai",
        "api_key": "sk-test",
        "model": "gpt-4o-mini",
    }
    values.update(overrides)
    return LLMSettings(**values)


def test_an_endpoint_that_lists_the_model_passes_quietly(fake: FakeOpenAIServer) -> None:
    assert check_llm_at_start(_settings(fake.base_url)) is None


def test_a_key_the_endpoint_does_not_know_stops_the_worker(fake: FakeOpenAIServer) -> None:
    with pytest.raises(ConfigError) as caught:
        check_llm_at_start(_settings(fake.base_url, api_key="sk-typo-in-the-key"))
    line = caught.value.user_message
    assert line.startswith(f"OPENAI_API_KEY: {fake.base_url} refused the key")
    assert "Incorrect API key provided" in line
    assert "sk-typo-in-the-key" not in line  # the server shows a masked key; so do we


def test_a_restricted_key_that_cannot_list_models_may_still_summarize(
    fake: FakeOpenAIServer,
) -> None:
    fake.config = FakeConfig(
        api_keys=frozenset({"sk-test", "sk-restricted"}),
        keys_without_models=frozenset({"sk-restricted"}),
    )
    problem = check_llm_at_start(_settings(fake.base_url, api_key="sk-restricted"))
    assert problem is not None and "would not list its models" in problem
    assert "Missing scopes" in problem


def test_an_endpoint_down_now_is_a_warning(fake: FakeOpenAIServer) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # nobody listens here once the probe is closed
    problem = check_llm_at_start(_settings(f"http://127.0.0.1:{port}/v1", provider="vllm"))
    assert problem is not None
    assert problem.startswith(f"LLM_BASE_URL: http://127.0.0.1:{port}/v1 cannot be reached now")


def test_a_base_url_without_v1_and_an_unlisted_model_are_named(fake: FakeOpenAIServer) -> None:
    bare = fake.base_url.removesuffix("/v1")
    problem = check_llm_at_start(_settings(bare))
    assert problem is not None and "usually ends in /v1" in problem
    problem = check_llm_at_start(_settings(fake.base_url, model="gpt-9-imaginary"))
    assert problem is not None
    assert problem.startswith("LLM_MODEL: 'gpt-9-imaginary' is not among the models")
