"""ASGI middleware: the request body limit, JSON-only bodies, and the metrics and access log.

The body limit counts the bytes as they arrive instead of trusting ``Content-Length`` (a client
may send more than it announced, or use chunked encoding).  A declared length over the limit is
refused before reading anything; otherwise the body is read up to the limit and handed on in
one piece, so nothing past the limit is ever buffered.
"""

from __future__ import annotations

import time
from typing import Any

import structlog
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from producers.api.auth import rate_limit_headers
from producers.api.metrics import ApiMetrics
from producers.api.problems import problem_response
from shared.ratelimit.inbound import Decision

__all__ = [
    "BodySizeLimitMiddleware",
    "BodyTooLarge",
    "JsonBodyMiddleware",
    "MetricsMiddleware",
]

log = structlog.get_logger("api.access")


class BodyTooLarge(Exception):
    """The body passed its limit (raised from ``receive`` of a streamed upload route)."""


_TooLarge = BodyTooLarge


class BodySizeLimitMiddleware:
    """Answer 413 (problem+json) to any request whose body exceeds ``max_bytes``.

    ``streamed`` maps the paths of upload routes to their own, larger limit: their body is not
    buffered here but counted as the route reads it, and passing the limit raises
    :class:`BodyTooLarge` out of ``receive``, which ends in the same 413.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        max_bytes: int,
        metrics: ApiMetrics,
        streamed: dict[str, int] | None = None,
    ) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.metrics = metrics
        self.streamed = streamed or {}

    def _too_large(self, limit: int) -> Any:
        self.metrics.body_too_large.inc()
        return problem_response(
            413,
            f"the request body is larger than {limit} bytes; send less "
            "(e.g. fewer destinations, or fewer messages) or split the request",
            headers={"Connection": "close"},
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.streamed.get(scope.get("path", ""))
        if limit is not None and scope.get("method") == "POST":
            await self._counted(scope, receive, send, limit)
            return
        try:
            self._check_declared(scope, self.max_bytes)
            body, trailing = await self._read(receive)
        except _TooLarge:
            await self._too_large(self.max_bytes)(scope, receive, send)
            return
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            if trailing is not None:
                return trailing
            return await receive()

        await self.app(scope, replay, send)

    async def _counted(self, scope: Scope, receive: Receive, send: Send, limit: int) -> None:
        started = False
        total = 0

        async def counting() -> Message:
            nonlocal total
            message = await receive()
            if message["type"] == "http.request":
                total += len(message.get("body", b""))
                if total > limit:
                    raise BodyTooLarge
            return message

        async def watch(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            self._check_declared(scope, limit)
            await self.app(scope, counting, watch)
        except BodyTooLarge:
            if started:  # pragma: no cover - routes read the whole body before answering
                raise
            await self._too_large(limit)(scope, receive, send)

    @staticmethod
    def _check_declared(scope: Scope, limit: int) -> None:
        for name, value in scope.get("headers", ()):
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    continue
                if declared > limit:
                    raise _TooLarge

    async def _read(self, receive: Receive) -> tuple[bytes, Message | None]:
        chunks: list[bytes] = []
        total = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                # The client went away: let the app see the disconnect after an empty body.
                return b"".join(chunks), message
            chunk = message.get("body", b"")
            total += len(chunk)
            if total > self.max_bytes:
                raise _TooLarge
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks), None


class JsonBodyMiddleware:
    """Answer 415 to a body declared as anything but JSON (a form, plain text, ...).

    Every operation takes JSON, except the ``uploads`` paths, which also take one file as
    ``multipart/form-data``; without this a form body, or one without ``Content-Type`` (which
    FastAPI does not parse), reaches validation and gets a 422 about dictionaries that does not
    say what to change.
    """

    def __init__(self, app: ASGIApp, *, uploads: frozenset[str] = frozenset()) -> None:
        self.app = app
        self.uploads = uploads

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            declared = _header(scope, b"content-type")
            length = _header(scope, b"content-length")
            media = declared.split(";", 1)[0].strip().lower()
            has_body = length not in ("", "0") or _header(scope, b"transfer-encoding") != ""
            upload = scope.get("path") in self.uploads
            if has_body and not (_is_json(media) or (upload and media == "multipart/form-data")):
                what = f"the body is {media}" if media else "the body has no Content-Type"
                takes = (
                    "JSON or one file as multipart/form-data; send Content-Type: "
                    "application/json or multipart/form-data"
                    if upload
                    else "only JSON; send it as Content-Type: application/json"
                )
                response = problem_response(415, f"{what}, but this API reads {takes}")
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


def _with_rate_limit(message: Message, decision: Decision) -> Message:
    """The response start ``message`` with the admitting key's ``RateLimit-*`` headers, unless
    the response set its own (a 429 does)."""
    headers = list(message.get("headers", ()))
    if any(name.lower() == b"ratelimit-limit" for name, _ in headers):
        return message
    headers += [
        (name.lower().encode("latin-1"), value.encode("latin-1"))
        for name, value in rate_limit_headers(decision).items()
    ]
    return {**message, "headers": headers}


def _header(scope: Scope, name: bytes) -> str:
    for key, value in scope.get("headers", ()):
        if key == name:
            return bytes(value).decode("latin-1")
    return ""


def _is_json(media: str) -> bool:
    return media == "application/json" or (
        media.startswith("application/") and media.endswith("+json")
    )


class MetricsMiddleware:
    """Count and time requests by route template (never by raw path, which has ids), and
    write one access-log line each: ``api.request`` with method, route, status, duration and
    the API key's id (bound by authentication; the key itself is never logged).

    A request its key's rate limit admitted answers with the ``RateLimit-*`` headers
    (:func:`producers.api.auth.admitted` leaves the limit's answer in the request's state),
    whatever the route answers, so a client can pace itself before it meets a 429."""

    def __init__(self, app: ASGIApp, *, metrics: ApiMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
                decision = scope.get("state", {}).get("rate_limit")
                if decision is not None:
                    message = _with_rate_limit(message, decision)
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            route: Any = scope.get("route")
            template = getattr(route, "path", None) or "unmatched"
            method = str(scope.get("method", "GET"))
            elapsed = time.perf_counter() - started
            self.metrics.requests.labels(method, template, str(status)).inc()
            self.metrics.latency.labels(method, template).observe(elapsed)
            log.info(
                "api.request",
                method=method,
                route=template,
                status=status,
                duration_ms=round(elapsed * 1000, 2),
                api_key_id=structlog.contextvars.get_contextvars().get("api_key_id"),
            )
