"""Fixtures: the fake OpenAI server in a thread and clients pointed at it."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from shared.llm.client import LLMClient
from shared.llm.config import LLMSettings
from tests.fakes.openai_server import FakeConfig, FakeOpenAIServer


@pytest.fixture(scope="module")
def fake_server() -> Iterator[FakeOpenAIServer]:
    with FakeOpenAIServer(FakeConfig(api_keys=frozenset({"sk-test", "sk-new"}))) as server:
        yield server


@pytest.fixture
def fake(fake_server: FakeOpenAIServer) -> Iterator[FakeOpenAIServer]:
    fake_server.reset()
    fake_server.config = FakeConfig(api_keys=frozenset({"sk-test", "sk-new"}))
    yield fake_server
    fake_server.reset()


@pytest.fixture
def make_client(fake: FakeOpenAIServer) -> Iterator[Callable[..., LLMClient]]:
    clients: list[LLMClient] = []

    def make(**overrides: Any) -> LLMClient:
        values: dict[str, Any] = {
            "base_url": fake.base_url,
            "provider": "openai",
            "api_key": "sk-test",
            "model": "gpt-4o-mini",
            "request_timeout": 5.0,
            "max_output_tokens": 800,
        }
        values.update(overrides)
        client = LLMClient.embedded(LLMSettings(**values))
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.close()
