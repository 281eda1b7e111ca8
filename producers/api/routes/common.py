"""Helpers shared by the route modules: documented error responses, JSON responses, cursors."""

from __future__ import annotations

import base64
import binascii
import json
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Annotated, Any, TypeVar

from fastapi import Depends, Query
from pydantic import BaseModel
from sqlalchemy import Select, select, tuple_
from starlette.responses import Response

from producers.api.auth import Caller, require_scope
from producers.api.problems import PROBLEM_JSON, Problem, ProblemBody
from producers.api.resources import ApiResources, get_resources
from shared.apikeys import Scope

__all__ = [
    "AUTH_ERRORS",
    "JOB_ACCEPTED",
    "Admin",
    "JobWriter",
    "PageCursor",
    "PageSize",
    "Resources",
    "decode_cursor",
    "encode_cursor",
    "errors",
    "guild_page_query",
    "guild_row",
    "json_response",
    "next_cursor",
    "not_found",
]

_DESCRIPTIONS = {
    400: "Bad request: a body that is not valid JSON, or a malformed header (Idempotency-Key)",
    401: "Missing, invalid, revoked or expired API key, or a bad request signature",
    403: "The key lacks the scope, or the request comes from an address the key does not allow",
    404: "Not found (resources of another guild are not found either)",
    409: "Conflict",
    413: "Request body larger than 64 KiB",
    415: "The body is not sent as Content-Type: application/json",
    422: "Invalid input; `errors` lists each invalid field",
    429: "Rate limit of the key exceeded; see Retry-After",
    503: "The database or Redis is not reachable; see Retry-After",
}


def errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` entries for these error statuses, all problem+json."""
    return {
        status: {
            "description": _DESCRIPTIONS.get(status, "Error"),
            "model": ProblemBody,
            "content": {PROBLEM_JSON: {"schema": {"$ref": "#/components/schemas/ProblemBody"}}},
        }
        for status in statuses
    }


#: A caller whose key has the ``admin`` scope (schedules, webhook endpoints).
Admin = Annotated[Caller, Depends(require_scope(Scope.ADMIN))]
#: A caller whose key has the ``jobs:write`` scope (submitting and cancelling jobs).
JobWriter = Annotated[Caller, Depends(require_scope(Scope.JOBS_WRITE))]
#: The API's per-process resources.
Resources = Annotated[ApiResources, Depends(get_resources)]

#: How many rows a list route answers at most (``?limit=``).
PageSize = Annotated[int, Query(ge=1, le=100)]
#: Where a list route's page starts (``?cursor=``, from the previous page's ``next_cursor``).
PageCursor = Annotated[str | None, Query(max_length=200)]

#: The errors every authenticated route can answer.
AUTH_ERRORS = (400, 401, 403, 413, 415, 422, 429, 503)

#: The responses of a route that submits a job: 202 with the job and its ``Location``.
JOB_ACCEPTED: dict[int | str, dict[str, Any]] = {
    202: {
        "description": "Job accepted",
        "headers": {"Location": {"schema": {"type": "string"}}},
    },
    **errors(404, 409, *AUTH_ERRORS),
}


def json_response(
    model: BaseModel | list[Any] | dict[str, Any],
    *,
    status: int = 200,
    headers: dict[str, str] | None = None,
) -> Response:
    """A JSON response of a model (or plain data), serialised once."""
    if isinstance(model, BaseModel):
        content = model.model_dump_json(by_alias=True)
    else:
        content = json.dumps(model, default=str)
    return Response(
        content=content, status_code=status, headers=headers, media_type="application/json"
    )


def not_found(what: str, ident: object) -> Problem:
    """The 404 for a missing resource, or one in another guild (indistinguishable)."""
    return Problem(404, f"no {what} {ident} in this server")


def encode_cursor(created_at: datetime, ident: uuid.UUID) -> str:
    """An opaque cursor pointing after ``(created_at, id)``."""
    raw = json.dumps([created_at.isoformat(), str(ident)]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, uuid.UUID]:
    """Read a cursor made by :func:`encode_cursor` (422 when it is not one).

    A cursor comes back from the client, so it is checked as hostile input: two strings, an
    aware time that UTC can hold, and a UUID; anything else is the same 422.
    """
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        created, ident = json.loads(raw)
        if not isinstance(created, str) or not isinstance(ident, str):
            raise ValueError("not two strings")
        when = datetime.fromisoformat(created)
        if when.tzinfo is None:
            raise ValueError("naive")
        return when.astimezone(UTC), uuid.UUID(ident)
    except (ValueError, TypeError, OverflowError, binascii.Error, UnicodeDecodeError):
        raise Problem(
            422,
            "cursor is not valid; pass the next_cursor value of the previous page unchanged",
        ) from None


Row = TypeVar("Row")


def guild_row(
    resources: ApiResources, model: type[Row], caller: Caller, ident: uuid.UUID, *, what: str
) -> Row:
    """The row ``ident`` of ``model`` in the caller's guild, else a 404.

    A row of another guild is not found either: a key learns nothing about other tenants.
    """
    table: Any = model
    query = select(model).where(table.id == ident, table.guild_id == caller.guild_id)
    with resources.session_factory() as session:
        row = session.scalars(query).one_or_none()
    if row is None:
        raise not_found(what, ident)
    return row


def guild_page_query(
    model: type[Row], guild_id: str, *, limit: int, cursor: str | None
) -> Select[Row]:
    """One more than a page of this guild's rows, oldest first, after ``cursor``.

    The extra row tells :func:`next_cursor` whether another page follows.
    """
    table: Any = model
    query = (
        select(model)
        .where(table.guild_id == guild_id)
        .order_by(table.created_at, table.id)
        .limit(limit + 1)
    )
    if cursor is not None:
        query = query.where(tuple_(table.created_at, table.id) > decode_cursor(cursor))
    return query


def guild_page(
    resources: ApiResources, query: Select[Row], limit: int
) -> tuple[list[Row], str | None]:
    """Run a :func:`guild_page_query`: the page's rows and the cursor of the next page."""
    with resources.session_factory() as session:
        rows = list(session.scalars(query))
    return rows[:limit], next_cursor(rows, limit)


def next_cursor(rows: Sequence[Any], limit: int) -> str | None:
    """The cursor after a page of ``rows`` read by :func:`guild_page_query`, or None at the end."""
    if len(rows) <= limit:
        return None
    last = rows[limit - 1]
    return encode_cursor(last.created_at, last.id)
