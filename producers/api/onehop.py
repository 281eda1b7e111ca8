"""Routes served in one worker-thread hop, without FastAPI's per-request dependency solving.

``POST /v1/jobs`` is the API's busiest operation.  Declared the usual way, each request costs
FastAPI's dependency resolution (four dependencies) and two hops to a worker thread (the
authentication dependency's, then the route's), each a thread wake-up and a fight for the GIL:
together about a fifth of the CPU of a submission.  A route made with :func:`one_hop_route`
keeps its declaration, from which FastAPI builds the OpenAPI operation, but serves requests
with a handler of its own, which reads the request on the event loop and does every blocking
step in one hop.

The handler answers as the declared route would, in the same order: a body that is not JSON
(400) before authentication, authentication and the rate limit (401/403/429) before the
``Idempotency-Key`` header (400), the header before the body's fields (422).
:func:`json_body` and :func:`validate_body` raise FastAPI's own errors for the first and the last.

:class:`OneHopDispatch` takes such a route's requests before the router: FastAPI's routing of a
request (matching every route in turn, its scope bookkeeping, two exit stacks and the
exception wrappers) costs about as much as the handler itself on the event loop.  It sets the
route in the scope as the router would (the access log and metrics read its template) and
turns exceptions into responses with the app's own handlers, as the router's path would.
"""

from __future__ import annotations

import asyncio
import contextvars
import json
from collections.abc import Callable, Coroutine
from concurrent.futures import Executor
from typing import Any, TypeVar

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from pydantic import BaseModel, ValidationError
from starlette._exception_handler import wrap_app_handling_exceptions
from starlette.exceptions import HTTPException
from starlette.middleware.exceptions import ExceptionMiddleware
from starlette.responses import Response
from starlette.routing import BaseRoute
from starlette.types import ASGIApp, Receive, Scope, Send

__all__ = [
    "MISSING",
    "JsonRoute",
    "OneHopDispatch",
    "decode_json",
    "in_hop",
    "json_body",
    "one_hop_route",
    "validate_body",
]

Model = TypeVar("Model", bound=BaseModel)
Result = TypeVar("Result")

#: The body of a request that sent none.
MISSING: Any = object()


def _is_json(content_type: str) -> bool:
    media = content_type.split(";", 1)[0].strip().lower()
    main, _, sub = media.partition("/")
    return main == "application" and (sub == "json" or sub.endswith("+json"))


class _RepeatedKey(Exception):
    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.name = name


def _unique(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    found = dict(pairs)
    if len(found) != len(pairs):
        seen: set[str] = set()
        for name, _value in pairs:
            if name in seen:
                raise _RepeatedKey(name)
            seen.add(name)
    return found


def _repeated_key_error(raw: bytes | str) -> json.JSONDecodeError:
    """Where the first object holding a repeated key starts, found again by the pure-Python
    scanner (the C one does not tell a hook where it is): only a refused body pays for it."""
    # Decoded as json.loads decodes bytes, so the position counts the same characters.
    text = raw if isinstance(raw, str) else raw.decode(json.detect_encoding(raw), "surrogatepass")
    decoder = json.JSONDecoder(object_pairs_hook=_unique)

    def parse_object(s_and_end: tuple[str, int], *args: Any, **kwargs: Any) -> Any:
        try:
            return json.decoder.JSONObject(s_and_end, *args, **kwargs)  # type: ignore[attr-defined]
        except _RepeatedKey as exc:
            document, end = s_and_end
            raise json.JSONDecodeError(
                f'the key "{exc.name}" appears twice in one object', document, end - 1
            ) from None

    decoder.parse_object = parse_object  # type: ignore[attr-defined]
    decoder.scan_once = json.scanner.py_make_scanner(decoder)  # type: ignore[attr-defined]
    try:
        decoder.decode(text)
    except json.JSONDecodeError as exc:
        return exc
    raise AssertionError("a repeated key was found once and not again")  # pragma: no cover


def decode_json(raw: bytes | str) -> Any:
    """``json.loads`` for a request body, refusing an object that names a key twice.

    Which of two values counts is up to each parser (RFC 8259, section 4): taking the last, as
    ``json.loads`` does, drops the first without a word, and a proxy or a client library that
    read the first would see another request than the one served.  The refusal is a
    :class:`json.JSONDecodeError` at the object's opening brace, like any syntax error.
    """
    try:
        return json.loads(raw, object_pairs_hook=_unique)
    except _RepeatedKey:
        raise _repeated_key_error(raw) from None


async def json_body(request: Request) -> Any:
    """The request's body decoded as FastAPI decodes a JSON body (but by :func:`decode_json`):
    :data:`MISSING` when empty, the raw bytes when not declared JSON, a
    :class:`RequestValidationError` (``json_invalid``) where the JSON breaks, and a 400 for
    anything else that cannot be decoded."""
    raw = await request.body()
    if not raw:
        return MISSING
    if not _is_json(request.headers.get("content-type", "")):
        return raw
    try:
        return decode_json(raw)
    except json.JSONDecodeError as exc:
        raise RequestValidationError(
            [
                {
                    "type": "json_invalid",
                    "loc": ("body", exc.pos),
                    "msg": "JSON decode error",
                    "input": {},
                    "ctx": {"error": exc.msg},
                }
            ],
            body=exc.doc,
        ) from exc
    except Exception as exc:  # what FastAPI answers for a body it cannot decode at all
        raise HTTPException(400, "There was an error parsing the body") from exc


def validate_body(model: type[Model], body: Any) -> Model:
    """``body`` (from :func:`json_body`) as ``model``, or FastAPI's 422 with each error's
    location under ``body``."""
    if body is MISSING:
        raise RequestValidationError(
            [{"type": "missing", "loc": ("body",), "msg": "Field required", "input": None}]
        )
    try:
        return model.model_validate(body, from_attributes=True)
    except ValidationError as exc:
        errors = [
            {**error, "loc": ("body", *error.get("loc", ()))}
            for error in exc.errors(include_url=False)
        ]
        raise RequestValidationError(errors, body=body) from None


async def in_hop(executor: Executor, function: Callable[..., Result], *args: Any) -> Result:
    """``function(*args)`` in a thread of ``executor``, in a copy of the caller's context (its
    log bindings); the hop costs about half of anyio's ``to_thread``, which also books a
    capacity limiter and a cancel scope per call."""
    context = contextvars.copy_context()
    return await asyncio.get_running_loop().run_in_executor(executor, context.run, function, *args)


Handler = Callable[[Request], Coroutine[Any, Any, Response]]


class JsonRoute(APIRoute):
    """A route whose JSON body is decoded by :func:`json_body` (so by :func:`decode_json`),
    with its refusals, before FastAPI reads it: FastAPI then finds the decoded body cached on
    the request (Starlette's ``Request.json`` keeps it in ``_json``) and does not decode it
    again."""

    def get_route_handler(self) -> Handler:
        """FastAPI's handler, after the body is decoded (for a route that reads one)."""
        handler = super().get_route_handler()
        if self.body_field is None:
            return handler  # FastAPI ignores a body this route does not read; so do we

        async def decoded_first(request: Request) -> Response:
            body = await json_body(request)
            if body is not MISSING and not isinstance(body, bytes):
                # Where Request.json() caches its result, so FastAPI decodes nothing again.
                request._json = body
            return await handler(request)

        return decoded_first


def one_hop_route(handler: Handler) -> type[APIRoute]:
    """A route class (``route_class_override``) whose requests ``handler`` serves; the
    endpoint it is declared with makes only the OpenAPI operation."""

    class OneHopRoute(APIRoute):
        one_hop_handler = staticmethod(handler)

        def get_route_handler(self) -> Handler:
            return handler

    return OneHopRoute


def _served(handler: Handler, request: Request) -> ASGIApp:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        response = await handler(request)
        await response(scope, receive, send)

    return app


class OneHopDispatch:
    """ASGI middleware (the innermost): serves the requests of the one-hop routes among
    ``routes`` whose path has no parameters straight from their handler, everything else
    through ``app`` (the router).

    ``handlers`` are the app's exception handlers (``app.exception_handlers``, read when the
    middleware stack is built); as Starlette does, those for 500 and ``Exception`` are left to
    the server-error middleware outside.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        routes: list[BaseRoute],
        handlers: dict[Any, Any],
        debug: bool = False,
    ) -> None:
        self.app = app
        self.served: dict[tuple[str, str], APIRoute] = {}
        for route in routes:
            if isinstance(route, APIRoute) and hasattr(route, "one_hop_handler"):
                if route.param_convertors:
                    continue
                for method in route.methods or ():
                    self.served[(method, route.path)] = route
        kept = {key: value for key, value in handlers.items() if key not in (500, Exception)}
        # Starlette's split of the handlers (by exception class, by status code).
        exceptions = ExceptionMiddleware(self.app, handlers=kept, debug=debug)
        self.handlers = (exceptions._exception_handlers, exceptions._status_handlers)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and not scope.get("root_path"):
            route = self.served.get((scope["method"], scope["path"]))
            if route is not None:
                scope["route"] = route
                scope["endpoint"] = route.endpoint
                scope["path_params"] = {}
                scope["starlette.exception_handlers"] = self.handlers
                # One request object for the handler and the exception handlers (which may
                # read the body again), as a route's own wrapper does.
                request = Request(scope, receive, send)
                handler = route.one_hop_handler  # type: ignore[attr-defined]
                await wrap_app_handling_exceptions(_served(handler, request), request)(
                    scope, receive, send
                )
                return
        await self.app(scope, receive, send)
