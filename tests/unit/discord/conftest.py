"""Helpers for the adapter's unit tests: a client whose HTTP goes to httpx.MockTransport."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from shared.discord.client import DiscordClient
from shared.discord.rest import RequestPolicy, RestSession
from shared.discord.tokens import StaticToken
from shared.ratelimit.discord import LimiterConfig
from shared.ratelimit.inprocess import InProcessDiscordLimiter

API = "https://discord.test/api/v10"


class Recorder:
    """Requests seen by the mock transport, and the handler that answers them."""

    def __init__(self, answer: Callable[[httpx.Request], httpx.Response]) -> None:
        self.requests: list[httpx.Request] = []
        self._answer = answer

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        return self._answer(request)

    def body(self, index: int = -1) -> Any:
        """JSON body of a recorded request."""
        return json.loads(self.requests[index].content)


@pytest.fixture
def sleeps() -> list[float]:
    """Every sleep the session asked for (nothing really sleeps)."""
    return []


@pytest.fixture
def make_client(sleeps: list[float]) -> Iterator[Callable[..., tuple[DiscordClient, Recorder]]]:
    """Build a client whose HTTP goes to ``answer`` (request -> response)."""
    clients: list[httpx.Client] = []

    def make(
        answer: Callable[[httpx.Request], httpx.Response],
        *,
        token: str | None = "unit-token",
        policy: RequestPolicy | None = None,
        limiter: InProcessDiscordLimiter | None = None,
    ) -> tuple[DiscordClient, Recorder]:
        recorder = Recorder(answer)
        http = httpx.Client(transport=httpx.MockTransport(recorder))
        clients.append(http)
        session = RestSession(
            http=http,
            api_base=API,
            limiter=limiter or InProcessDiscordLimiter(LimiterConfig()),
            tokens=StaticToken(token),
            policy=policy or RequestPolicy(backoff_base_s=0.01),
            sleep=sleeps.append,
        )
        return DiscordClient(session), recorder

    yield make
    for http in clients:
        http.close()
