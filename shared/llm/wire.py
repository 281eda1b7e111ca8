"""A chat completion on the wire: the request through the SDK, the answer read from its JSON.

The request goes through the SDK's documented raw-request path (``client.post`` with
``cast_to=httpx2.Response``): authentication, base URL, timeouts, default headers and the
mapping of error statuses to ``openai.APIStatusError`` and friends are the SDK's, exactly as
for the typed ``chat.completions.create``.  What the typed call adds is work we do not use: it
walked every request's messages and response schema against its TypedDicts (0.43 ms a call,
measured) and built a pydantic model of every answer, of which we read five fields.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import httpx2
import openai

__all__ = [
    "ChatAnswer",
    "UnreadableAnswer",
    "embedded_error",
    "json_or_none",
    "never_sent",
    "post_chat",
]

#: The chat completions endpoint, relative to the client's base URL.
CHAT_COMPLETIONS = "/chat/completions"

#: Transport failures of the connect phase: no byte of the request left this process.
_BEFORE_SENDING: tuple[type[Exception], ...] = (
    httpx2.ConnectError,
    httpx2.ConnectTimeout,
    httpx2.PoolTimeout,
    httpx2.ProxyError,
    httpx2.UnsupportedProtocol,
)


def post_chat(sdk: openai.OpenAI, params: Mapping[str, Any]) -> httpx2.Response:
    """POST ``params`` to the chat completions endpoint; the raw response of a 2xx answer.

    Raises what ``chat.completions.create`` raises: ``openai.APIStatusError`` (and its
    subclasses) for an error status, ``APITimeoutError``, ``APIConnectionError``.
    """
    response = sdk.post(CHAT_COMPLETIONS, cast_to=httpx2.Response, body=dict(params))
    found = embedded_error(response)
    if found is None:
        return response
    status, body = found
    failed = httpx2.Response(
        status, headers=response.headers, content=response.content, request=response.request
    )
    raise openai.APIStatusError(
        f"Error code: {status} (sent in a {response.status_code} answer)",
        response=failed,
        body=body,
    )


def embedded_error(response: httpx2.Response) -> tuple[int, Mapping[str, Any]] | None:
    """The error a 2xx answer carries in its body, as (status, error body); None for an answer.

    A gateway such as OpenRouter answers 200 before its upstream provider has run, then puts
    the provider's failure in ``error`` (or ends a choice with ``finish_reason: "error"``), and
    says to check the body even on a 200.  The status is the error's own ``code`` when it is
    an HTTP status, else 502 (the upstream failed).
    """
    data = json_or_none(response)
    if not isinstance(data, Mapping):
        return None
    error = data.get("error")
    choices = data.get("choices")
    if isinstance(error, Mapping) and not choices:
        return _status_of(error.get("code")), data
    first = choices[0] if isinstance(choices, list) and choices else None
    if isinstance(first, Mapping) and first.get("finish_reason") == "error":
        inner = first.get("error")
        if not isinstance(inner, Mapping):
            inner = {"message": "the provider failed while answering"}
        return _status_of(inner.get("code")), {"error": inner}
    return None


def _status_of(code: Any) -> int:
    if isinstance(code, int) and not isinstance(code, bool) and 400 <= code <= 599:
        return code
    return 502


def never_sent(error: openai.APIConnectionError) -> bool:
    """Whether the request of a call that got no answer certainly never reached the server.

    The SDK raises ``APIConnectionError`` (``APITimeoutError`` for timeouts) from the
    transport's exception.  A refused or unreachable connection, a connect timeout or no free
    pooled connection means nothing was sent.  A read timeout, a reset or a connection closed
    after the request went out (``ReadTimeout``, ``ReadError``, ``RemoteProtocolError``) may
    come after the server processed and counted the request, and so may a failed write or an
    unknown cause.
    """
    cause = error.__cause__
    for _ in range(8):  # the chain is short; the bound guards against a cycle
        if cause is None:
            return False
        if isinstance(cause, _BEFORE_SENDING):
            return True
        cause = cause.__cause__
    return False


def json_or_none(response: httpx2.Response) -> Any:
    """``response``'s body as JSON; None when it is not JSON, or is nested deeper than
    ``json`` reads (RecursionError, not a ValueError)."""
    try:
        return response.json()
    except (ValueError, RecursionError):
        return None


class UnreadableAnswer(ValueError):
    """A 2xx answer whose body is not a JSON object."""


@dataclass(frozen=True, slots=True)
class ChatAnswer:
    """What we read from a chat completion: the first choice, the model, the usage."""

    text: str
    model: str | None
    finish_reason: str | None
    refusal: str | None
    #: The ``usage`` object as sent (None when the server sent none).
    usage: Mapping[str, Any] | None

    @classmethod
    def read(cls, response: httpx2.Response) -> ChatAnswer:
        """The answer in ``response``'s body; :class:`UnreadableAnswer` when it is not JSON.

        Missing or mistyped fields read as absent, as the SDK's lenient model did: an answer
        without choices has empty text, which the structured-output ladder then judges.
        """
        data = json_or_none(response)
        if not isinstance(data, Mapping):
            excerpt = response.text[:200].replace("\n", " ")
            raise UnreadableAnswer(f"the answer is not a JSON object: {excerpt!r}")
        choices = data.get("choices")
        choice = choices[0] if isinstance(choices, list) and choices else None
        choice = choice if isinstance(choice, Mapping) else {}
        message = choice.get("message")
        message = message if isinstance(message, Mapping) else {}
        usage = data.get("usage")
        return cls(
            text=_content(message.get("content")),
            model=_text(data.get("model")) or None,
            finish_reason=_text(choice.get("finish_reason")) or None,
            refusal=_text(message.get("refusal")) or None,
            usage=usage if isinstance(usage, Mapping) else None,
        )


def _text(value: Any) -> str:
    return value if isinstance(value, str) else ""


def _content(value: Any) -> str:
    """The message's text: a string, or the text parts of a list of content parts, joined
    (some OpenAI-compatible servers answer ``[{"type": "text", "text": ...}]``)."""
    if isinstance(value, list):
        return "".join(
            _text(part.get("text"))
            for part in value
            if isinstance(part, Mapping) and part.get("type") in ("text", "output_text")
        )
    return _text(value)
