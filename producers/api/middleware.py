"""ASGI middleware: the request body limit and the request metrics.

The body limit counts the bytes as they arrive instead of trusting ``Content-Length`` (a client
may send more than it announced, or use chunked encoding).  A declared length over the limit is
refused before reading anything; otherwise the body is read up to the limit and handed on in
one piece, so nothing past the limit is ever buffered.
"""

from __future__ import annotations

import time
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from producers.api.metrics import ApiMetrics
from producers.api.problems import problem_response

__all__ = ["BodySizeLimitMiddleware", "MetricsMiddleware"]


class _TooLarge(Exception):
    pass


class BodySizeLimitMiddleware:
    """Answer 413 (problem+json) to any request whose body exceeds ``max_bytes``."""

    def __init__(self, app: ASGIApp, *, max_bytes: int, metrics: ApiMetrics) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        try:
            self._check_declared(scope)
            body, trailing = await self._read(receive)
        except _TooLarge:
            self.metrics.body_too_large.inc()
            response = problem_response(
                413,
                f"the request body is larger than {self.max_bytes} bytes; send less "
                "(e.g. fewer destinations) or split the request",
                headers={"Connection": "close"},
            )
            await response(scope, receive, send)
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

    def _check_declared(self, scope: Scope) -> None:
        for name, value in scope.get("headers", ()):
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    continue
                if declared > self.max_bytes:
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


class MetricsMiddleware:
    """Count requests and time them by route template (never by raw path, which has ids)."""

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
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            route: Any = scope.get("route")
            template = getattr(route, "path", None) or "unmatched"
            method = str(scope.get("method", "GET"))
            self.metrics.requests.labels(method, template, str(status)).inc()
            self.metrics.latency.labels(method, template).observe(time.perf_counter() - started)
