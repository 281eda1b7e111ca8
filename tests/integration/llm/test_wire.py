"""The chat completion on the wire: what the client sends and what it reads back.

Against the fake OpenAI server (the request as the SDK's typed call would send it) and a
stand-in gateway that answers 200 with a page that is not JSON, as a misconfigured proxy does.
"""

from __future__ import annotations

import json
import re
import socket
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx2
import pytest

from shared.errors import ErrorKind, classify
from shared.llm import client as llm
from shared.llm.client import LLMClient
from shared.llm.config import LLMSettings
from shared.llm.wire import ChatAnswer, UnreadableAnswer, json_or_none
from tests.fakes.openai_server import FakeOpenAIServer

ASK = [{"role": "user", "content": "Say something about kernels and headers."}]


def _response(body: Any, *, content: bytes | None = None) -> httpx2.Response:
    raw = content if content is not None else json.dumps(body).encode()
    return httpx2.Response(200, content=raw, headers={"content-type": "application/json"})


def test_an_answer_reads_its_first_choice_model_and_usage() -> None:
    answer = ChatAnswer.read(
        _response(
            {
                "model": "gpt-4o-mini-2024-07-18",
                "choices": [
                    {"message": {"content": "hello", "refusal": None}, "finish_reason": "stop"},
                    {"message": {"content": "ignored"}, "finish_reason": "stop"},
                ],
                "usage": {"prompt_tokens": 12, "completion_tokens": 3, "total_tokens": 15},
            }
        )
    )
    assert answer == ChatAnswer(
        text="hello",
        model="gpt-4o-mini-2024-07-18",
        finish_reason="stop",
        refusal=None,
        usage={"prompt_tokens": 12, "completion_tokens": 3, "total_tokens": 15},
    )


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"choices": []},
        {"choices": None, "usage": "many"},
        {"choices": ["text"]},
        {"choices": [{"message": {"content": ["part"]}, "finish_reason": 7}], "model": 1},
    ],
)
def test_missing_or_mistyped_fields_read_as_absent(body: dict[str, Any]) -> None:
    answer = ChatAnswer.read(_response(body))
    assert answer.text == "" and answer.model is None and answer.finish_reason is None
    assert answer.refusal is None and answer.usage is None


def test_content_given_as_parts_reads_as_their_text() -> None:
    parts = [
        {"type": "text", "text": "Kernel headers "},
        {"type": "image_url", "image_url": {"url": "https://example.com/x.png"}},
        {"type": "output_text", "text": "were missing."},
        "stray",
    ]
    answer = ChatAnswer.read(_response({"choices": [{"message": {"content": parts}}]}))
    assert answer.text == "Kernel headers were missing."


@pytest.mark.parametrize(
    "content",
    [b"<html>Gateway login</html>", b"[1, 2]", b"", b"[" * 100_000 + b"]" * 100_000],
)
def test_a_body_that_is_not_a_json_object_is_refused(content: bytes) -> None:
    with pytest.raises(UnreadableAnswer, match="not a JSON object"):
        ChatAnswer.read(_response(None, content=content))


def test_the_request_carries_the_sdk_headers_and_our_body(
    fake: FakeOpenAIServer, make_client: Callable[..., LLMClient]
) -> None:
    client = make_client()
    result = client.complete(ASK, max_tokens=100, temperature=0.1)
    assert result.text and result.model == "gpt-4o-mini-2024-07-18"
    headers = fake.headers_seen[-1]
    assert headers["authorization"] == "Bearer sk-test"
    assert headers["content-type"] == "application/json"
    assert headers["x-stainless-lang"] == "python"
    assert fake.requests_seen[-1] == {
        "model": "gpt-4o-mini",
        "messages": ASK,
        "max_completion_tokens": 100,
        "temperature": 0.1,
    }


class _HtmlGateway(BaseHTTPRequestHandler):
    """Answers every POST with 200 and an HTML page."""

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("content-length") or 0))
        page = b"<html><body>Please sign in to the proxy</body></html>"
        self.send_response(200)
        self.send_header("content-type", "text/html")
        self.send_header("content-length", str(len(page)))
        self.end_headers()
        self.wfile.write(page)

    def log_message(self, format: str, *args: Any) -> None:
        del format, args


@pytest.fixture
def gateway() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _HtmlGateway)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    finally:
        server.shutdown()
        server.server_close()


def test_a_200_that_is_not_json_is_a_retryable_server_error(gateway: str) -> None:
    settings = LLMSettings(base_url=gateway, provider="openai", api_key="sk-x", model="gpt-4o")
    with (
        LLMClient.embedded(settings) as client,
        pytest.raises(llm.LLMServerError, match="not a JSON object") as caught,
    ):
        client.complete(ASK, max_tokens=50)
    assert caught.value.status == 200
    assert classify(caught.value) is ErrorKind.TRANSIENT


@pytest.mark.parametrize(
    "content", [b"<html>login</html>", b"", b"[" * 100_000 + b"]" * 100_000, b"\xff\xfe"]
)
def test_json_or_none_never_raises_on_a_body_json_cannot_read(content: bytes) -> None:
    assert json_or_none(_response(None, content=content)) is None
    assert json_or_none(_response({"error": {"message": "x"}})) == {"error": {"message": "x"}}


def test_the_fake_answers_a_kept_alive_connection_in_one_write(
    fake_server: FakeOpenAIServer,
) -> None:
    # An answer written in two parts (headers, then body) on a connection with Nagle on waits
    # for the client's delayed ACK, ~40 ms a call that OpenAI never adds and that benchmarks
    # would charge to our pipeline.  Whole answers arrive in one read, call after call.
    host, port = fake_server.base_url.split("//", 1)[1].split("/", 1)[0].split(":")
    body = json.dumps({"model": "gpt-4o-mini", "messages": ASK}).encode()
    request = (
        f"POST /v1/chat/completions HTTP/1.1\r\nHost: {host}\r\n"
        "Authorization: Bearer sk-test\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode() + body
    with socket.create_connection((host, int(port)), timeout=5) as conn:
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for _ in range(5):
            conn.sendall(request)
            first = conn.recv(1 << 16)
            head, _, rest = first.partition(b"\r\n\r\n")
            assert head.startswith(b"HTTP/1.1 200"), head
            length = int(re.search(rb"(?i)content-length: *(\d+)", head).group(1))  # type: ignore[union-attr]
            assert len(rest) == length, "the body came in a later write than the headers"
