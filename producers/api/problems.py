"""RFC 9457 problem details: every error the API answers is ``application/problem+json``.

A body has ``type`` (a URI naming the kind of problem), ``title`` (the same for every problem of
that type), ``status``, ``detail`` (what went wrong this time and how to fix it) and, for
validation problems, ``errors``: one entry per invalid field with its location and a JSON
pointer.  Unexpected exceptions become a 500 without internal detail; a database or Redis that
cannot be reached becomes a 503 with ``Retry-After``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from http import HTTPStatus
from typing import Any

import kombu.exceptions
import redis.exceptions
import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy.exc import DBAPIError, OperationalError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response

from producers.api.examples import examples
from shared.errors import (
    ConfigError,
    ConflictError,
    InvalidInputError,
    NotFoundError,
    PipelineError,
    TransientError,
)

__all__ = [
    "PROBLEM_BASE",
    "PROBLEM_JSON",
    "FieldError",
    "Problem",
    "ProblemBody",
    "install_problem_handlers",
    "problem_response",
    "validation_errors",
]

PROBLEM_JSON = "application/problem+json"
PROBLEM_BASE = "https://summarybot.dev/problems/"

log = structlog.get_logger("summarybot.api")

# The type slug of each status when no more specific one is given.
_DEFAULT_TYPES = {
    400: "bad-request",
    401: "unauthorized",
    403: "forbidden",
    404: "not-found",
    405: "method-not-allowed",
    406: "not-acceptable",
    409: "conflict",
    413: "payload-too-large",
    415: "unsupported-media-type",
    422: "validation-error",
    429: "rate-limited",
    500: "internal-error",
    503: "unavailable",
}


class FieldError(BaseModel):
    """One invalid input: where it is and what is wrong with it."""

    model_config = ConfigDict(extra="forbid")

    location: str = Field(description="body, query, path or header", examples=["body"])
    pointer: str = Field(
        description="JSON pointer into that location (RFC 6901)", examples=["/channel_id"]
    )
    detail: str = Field(examples=["String should match pattern '^[0-9]{15,19}$'"])


class ProblemBody(BaseModel):
    """An RFC 9457 problem details document."""

    model_config = examples(
        {
            "type": "https://summarybot.dev/problems/not-found",
            "title": "Not Found",
            "status": 404,
            "detail": "no job 0b6a7a8e-2f7c-4a55-9d3e-1d4f2f0c8a11 in this guild",
        },
        extra="allow",
    )

    type: str = Field(description="URI naming the kind of problem")
    title: str = Field(description="Short summary of the kind of problem")
    status: int = Field(ge=400, le=599)
    detail: str = Field(description="What went wrong this time, and how to fix it")
    errors: list[FieldError] | None = Field(
        default=None, description="Invalid fields (validation problems only)"
    )


class Problem(Exception):
    """Raise anywhere in a request to answer with a problem document."""

    def __init__(
        self,
        status: int,
        detail: str,
        *,
        kind: str | None = None,
        headers: Mapping[str, str] | None = None,
        errors: Sequence[FieldError] | None = None,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.kind = kind or _DEFAULT_TYPES.get(status, "error")
        self.headers = dict(headers or {})
        self.errors = list(errors) if errors is not None else None


# RFC 9110 names; Python's HTTPStatus still has the RFC 7231 ones for these.
_TITLES = {413: "Content Too Large", 422: "Unprocessable Content"}


def _title(status: int) -> str:
    if status in _TITLES:
        return _TITLES[status]
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"


def problem_response(
    status: int,
    detail: str,
    *,
    kind: str | None = None,
    headers: Mapping[str, str] | None = None,
    errors: Sequence[FieldError] | None = None,
    extensions: Mapping[str, Any] | None = None,
) -> Response:
    """A ``application/problem+json`` response (``extensions`` are extra members)."""
    body: dict[str, Any] = {
        **(extensions or {}),
        "type": PROBLEM_BASE + (kind or _DEFAULT_TYPES.get(status, "error")),
        "title": _title(status),
        "status": status,
        "detail": detail,
    }
    if errors is not None:
        body["errors"] = [e.model_dump() for e in errors]
    return Response(
        content=json.dumps(body, ensure_ascii=False),
        status_code=status,
        headers=dict(headers or {}),
        media_type=PROBLEM_JSON,
    )


def _pointer(parts: Sequence[Any]) -> str:
    return "".join("/" + str(p).replace("~", "~0").replace("/", "~1") for p in parts)


def validation_errors(raw: Sequence[Any]) -> list[FieldError]:
    """Turn FastAPI/pydantic error dicts into :class:`FieldError` entries."""
    errors = []
    for item in raw:
        loc = list(item.get("loc", ()))
        location = str(loc[0]) if loc else "body"
        message = str(item.get("msg", "invalid value")).removeprefix("Value error, ")
        errors.append(FieldError(location=location, pointer=_pointer(loc[1:]), detail=message))
    return errors


def _summary(errors: Sequence[FieldError]) -> str:
    shown = [f"{e.location}{e.pointer or ''}: {e.detail}" for e in errors[:3]]
    more = len(errors) - len(shown)
    return "; ".join(shown) + (f"; and {more} more" if more > 0 else "")


async def _on_problem(_request: Request, exc: Exception) -> Response:
    assert isinstance(exc, Problem)
    return problem_response(
        exc.status, exc.detail, kind=exc.kind, headers=exc.headers, errors=exc.errors
    )


async def _on_validation(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    broken = next((e for e in exc.errors() if e.get("type") == "json_invalid"), None)
    if broken is not None:
        message = _json_syntax_error(broken, await request.body())
        errors = [FieldError(location="body", pointer="", detail=message)]
        return problem_response(400, message, kind="invalid-json", errors=errors)
    errors = validation_errors(exc.errors())
    return problem_response(
        422, "the request is invalid: " + _summary(errors), kind="validation-error", errors=errors
    )


def _json_syntax_error(error: Mapping[str, Any], body: bytes) -> str:
    """Where the body stops being JSON and why, in the words a person fixing it needs."""
    reason = str((error.get("ctx") or {}).get("error") or "it is not JSON")
    loc = list(error.get("loc", ()))
    at = loc[1] if len(loc) > 1 and isinstance(loc[1], int) else None
    where = ""
    if at is not None:
        before = body[:at].decode("utf-8", "replace")
        line = before.count("\n") + 1
        column = len(before) - (before.rfind("\n") + 1) + 1
        where = f" at line {line}, column {column} (character {at})"
    return f"the body is not valid JSON: {reason}{where}; send one UTF-8 JSON object"


async def _on_http(_request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    detail = exc.detail if isinstance(exc.detail, str) else _title(exc.status_code)
    if exc.status_code == 400 and detail == "There was an error parsing the body":
        # FastAPI's answer to a body it cannot decode: an invalid input like any other.
        message = (
            "the body cannot be read as JSON; send UTF-8 JSON with Content-Type: application/json"
        )
        errors = [FieldError(location="body", pointer="", detail=message)]
        return problem_response(400, message, kind="invalid-json", errors=errors)
    if exc.status_code == 404 and detail == "Not Found":
        detail = "no such resource; see /docs for the API's paths"
    elif exc.status_code == 405:
        detail = "this path does not accept that method; the Allow header lists the ones it does"
    return problem_response(exc.status_code, detail, headers=exc.headers)


async def _on_unavailable(request: Request, exc: Exception) -> Response:
    log.warning("api.dependency_unavailable", path=request.url.path, error=type(exc).__name__)
    return problem_response(
        503,
        "a service the API depends on (database or Redis) is not reachable; retry shortly",
        headers={"Retry-After": "5"},
    )


#: The status of each kind of refusal a use case raises (the most specific class first).
_PIPELINE_STATUS: tuple[tuple[type[PipelineError], int], ...] = (
    (NotFoundError, 404),
    (ConflictError, 409),
    (InvalidInputError, 422),
    (ConfigError, 503),
    (TransientError, 503),
)


async def _on_pipeline_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, PipelineError)
    status = next((code for kind, code in _PIPELINE_STATUS if isinstance(exc, kind)), 422)
    headers = {"Retry-After": "5"} if isinstance(exc, TransientError) else None
    if status == 503:
        log.warning("api.refused_unavailable", path=request.url.path, error=str(exc))
    field = getattr(exc, "field", None)
    errors = (
        [FieldError(location="body", pointer=f"/{field}", detail=exc.user_message)]
        if field
        else None
    )
    return problem_response(status, exc.user_message, headers=headers, errors=errors)


async def _on_unexpected(request: Request, exc: Exception) -> Response:
    log.error("api.unhandled_error", path=request.url.path, method=request.method, exc_info=exc)
    return problem_response(500, "an unexpected error occurred; it has been logged")


def install_problem_handlers(app: FastAPI) -> None:
    """Make every error of ``app`` a problem document."""
    app.add_exception_handler(Problem, _on_problem)
    app.add_exception_handler(RequestValidationError, _on_validation)
    app.add_exception_handler(StarletteHTTPException, _on_http)
    app.add_exception_handler(PipelineError, _on_pipeline_error)
    for exc_type in (
        OperationalError,
        redis.exceptions.ConnectionError,
        redis.exceptions.TimeoutError,
        kombu.exceptions.OperationalError,
    ):
        app.add_exception_handler(exc_type, _on_unavailable)
    app.add_exception_handler(DBAPIError, _on_unexpected)
    app.add_exception_handler(Exception, _on_unexpected)
