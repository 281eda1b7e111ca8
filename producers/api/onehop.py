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
from starlette.exceptions import HTTPException
from starlette.responses import Response

__all__ = ["MISSING", "in_hop", "json_body", "one_hop_route", "validate_body"]

Model = TypeVar("Model", bound=BaseModel)
Result = TypeVar("Result")

#: The body of a request that sent none.
MISSING: Any = object()


def _is_json(content_type: str) -> bool:
    media = content_type.split(";", 1)[0].strip().lower()
    main, _, sub = media.partition("/")
    return main == "application" and (sub == "json" or sub.endswith("+json"))


async def json_body(request: Request) -> Any:
    """The request's body decoded as FastAPI decodes a JSON body: :data:`MISSING` when empty,
    the raw bytes when not declared JSON, a :class:`RequestValidationError` (``json_invalid``)
    where the JSON breaks, and a 400 for anything else that cannot be decoded."""
    raw = await request.body()
    if not raw:
        return MISSING
    if not _is_json(request.headers.get("content-type", "")):
        return raw
    try:
        return json.loads(raw)
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


def one_hop_route(handler: Handler) -> type[APIRoute]:
    """A route class (``route_class_override``) whose requests ``handler`` serves; the
    endpoint it is declared with makes only the OpenAPI operation."""

    class OneHopRoute(APIRoute):
        def get_route_handler(self) -> Handler:
            return handler

    return OneHopRoute
