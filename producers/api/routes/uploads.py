"""``POST /v1/jobs/upload``: summarize messages the client sends, not a Discord channel.

The body is the conversation: a DiscordChatExporter JSON export, or a message array in the
API's message model, sent as ``application/json`` or as one file (``file``) of a
``multipart/form-data`` form.  The job's options are query parameters, so they are checked
before the body arrives.  The route streams the body into PostgreSQL chunks
(:class:`shared.uploads.UploadWriter`) as it arrives, reads it back once through the same
streaming reader the fetch stage uses (every message is checked; an error names the message),
then submits the job through :func:`producers.api.routes.jobs.submit` like ``POST /v1/jobs``.

``Idempotency-Key`` works as on every POST: the fingerprint is the request target (path and
query) and a SHA-256 of the file's bytes, computed while streaming, so the multipart boundary a
client picks does not matter.  An upload that did not become a job (refused, replayed, failed)
is deleted at once.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Awaitable, Callable
from typing import Annotated, Any, TypeVar

import anyio
import anyio.to_thread
from fastapi import APIRouter, Depends, Query, Request
from pydantic import AfterValidator, Field, ValidationError
from starlette.responses import Response

from producers.api.auth import Caller, request_target, require_scope
from producers.api.idempotent import IdempotencyKey, idempotency_header, run_idempotent
from producers.api.models import ChannelDestination, Language, WebhookDestination
from producers.api.multipart import FILE_FIELD, MultipartFile, boundary_of
from producers.api.resources import ApiResources
from producers.api.routes.common import JOB_ACCEPTED, Resources, errors
from producers.api.routes.jobs import job_params, submit
from shared.apikeys import Scope
from shared.domain.messages import SNOWFLAKE_DIGITS
from shared.errors import InvalidInputError
from shared.idempotency import fingerprint
from shared.jobs import JobParams
from shared.services.jobs import check_destinations
from shared.summarize.content import SummaryFormat
from shared.uploads import UploadWriter, delete_upload, open_upload

__all__ = ["UPLOAD_PATH", "router"]

router = APIRouter(tags=["jobs"])

#: The route's path (the middleware gives it its own body limit and content types).
UPLOAD_PATH = "/v1/jobs/upload"

_T = TypeVar("_T")

_DESTINATION = (
    r"^(webhook:[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
    rf"|channel:{SNOWFLAKE_DIGITS})$"
)


def _destination(ref: str) -> WebhookDestination | ChannelDestination:
    kind, _, ident = ref.partition(":")
    if kind == "webhook":
        return WebhookDestination(endpoint_id=uuid.UUID(ident))
    return ChannelDestination(channel_id=ident)


def _checked_destination(ref: str) -> str:
    # The pattern cannot bound an id's value (at most 2**63 - 1): the destination model
    # does, and its refusal must be a 422 on the query, not an error while building the job.
    try:
        _destination(ref)
    except ValidationError as exc:
        raise ValueError("; ".join(str(e["msg"]) for e in exc.errors())) from None
    return ref


DestinationRef = Annotated[
    str,
    Field(pattern=_DESTINATION, examples=["webhook:5f0c8e1e-8a7e-4d0b-9a51-0f6a1c2b3d4e"]),
    AfterValidator(_checked_destination),
]

_MESSAGE = {
    "type": "object",
    "description": "One message of the API's message model",
    "required": ["id", "author", "time", "content"],
    "properties": {
        "id": {"type": "string", "maxLength": 100, "description": "Your id; citations use it"},
        "author": {
            "description": "A display name, or an object with the author's id and name",
            "oneOf": [
                {"type": "string", "minLength": 1},
                {
                    "type": "object",
                    "required": ["id"],
                    "properties": {
                        "id": {"type": "string", "minLength": 1},
                        "name": {"type": "string"},
                        "bot": {"type": "boolean"},
                    },
                },
            ],
        },
        "time": {"type": "string", "format": "date-time", "description": "ISO 8601, with offset"},
        "content": {"type": "string"},
        "reply_to": {"type": "string", "description": "The id of the message this one answers"},
        "reactions": {"type": "integer", "minimum": 0, "description": "How many reactions"},
        "attachments": {"type": "array", "items": {"type": "string"}, "description": "Names"},
    },
}
_CONVERSATION = {
    "type": "object",
    "description": (
        "A message array, bare or with a `conversation`: its `name` titles the summary; with "
        "Discord ids for `guild_id` and `channel_id` (and messages) citations get jump links"
    ),
    "required": ["messages"],
    "properties": {
        "conversation": {
            "type": "object",
            "properties": {
                "name": {"type": "string"},
                "guild_id": {"type": "string"},
                "channel_id": {"type": "string"},
            },
        },
        "messages": {"type": "array", "minItems": 1, "items": _MESSAGE},
    },
}
_DCE_EXPORT = {
    "type": "object",
    "description": "A DiscordChatExporter JSON export (`export -f Json`), as the tool wrote it",
    "required": ["channel", "messages"],
    "properties": {
        "guild": {"type": "object"},
        "channel": {"type": "object", "required": ["id"]},
        "messages": {
            "type": "array",
            "minItems": 1,
            "items": {
                "type": "object",
                "required": ["id", "timestamp", "content", "author"],
                "properties": {"author": {"type": "object", "required": ["id"]}},
            },
        },
    },
}
_EXAMPLE_MESSAGES = [
    {
        "id": "t-1001",
        "author": "Ana",
        "time": "2026-03-01T09:00:00Z",
        "content": "The 2.3 upgrade fails on ARM with a missing libssl.",
    },
    {
        "id": "t-1002",
        "author": {"id": "u-7", "name": "Ben"},
        "time": "2026-03-01T09:04:00Z",
        "content": "Installing libssl3 first fixes it; I'll add it to the docs.",
        "reply_to": "t-1001",
        "reactions": 2,
    },
]
_REQUEST_BODY = {
    "required": True,
    "description": (
        "The conversation: a message array (bare, or `{conversation, messages}`) or a "
        "DiscordChatExporter export, as JSON or as the form field `file`; at most 100 MiB"
    ),
    "content": {
        "application/json": {
            "schema": {
                "oneOf": [
                    {"type": "array", "minItems": 1, "items": _MESSAGE},
                    _CONVERSATION,
                    _DCE_EXPORT,
                ]
            },
            "examples": {
                "messages": {"summary": "A message array", "value": _EXAMPLE_MESSAGES},
                "conversation": {
                    "summary": "A named conversation",
                    "value": {
                        "conversation": {"name": "ticket 4711"},
                        "messages": _EXAMPLE_MESSAGES,
                    },
                },
                "export": {
                    "summary": "A DiscordChatExporter export",
                    "value": {
                        "guild": {"id": "1234567890123456780", "name": "Example"},
                        "channel": {"id": "1234567890123456789", "name": "support"},
                        "messages": [
                            {
                                "id": "1234567890123456800",
                                "timestamp": "2026-03-01T09:00:00+00:00",
                                "content": "Is 2.3 out?",
                                "author": {"id": "1234567890123456701", "name": "ana"},
                            }
                        ],
                    },
                },
            },
        },
        "multipart/form-data": {
            "schema": {
                "type": "object",
                "required": [FILE_FIELD],
                "properties": {
                    FILE_FIELD: {
                        "type": "string",
                        "format": "binary",
                        "description": "The JSON file: an export or a message array",
                    }
                },
            },
            "encoding": {FILE_FIELD: {"contentType": "application/json"}},
        },
    },
}


async def _in_thread(function: Callable[..., _T], *args: Any) -> _T:
    result: _T = await anyio.to_thread.run_sync(function, *args)
    return result


async def _shielded(work: Callable[[], Awaitable[None]]) -> None:
    # Clean-up must finish even when the request was cancelled (the client went away).
    with anyio.CancelScope(shield=True):
        await work()


def _validate(resources: ApiResources, upload_id: uuid.UUID, guild_id: str | None) -> int:
    """Read the stored upload once, checking every message; the number of messages."""
    with open_upload(resources.session_factory, upload_id, guild_id=guild_id) as document:
        count = document.check()
    if count == 0:
        raise InvalidInputError(
            "upload: the conversation holds no messages; send at least one", field="messages"
        )
    return count


async def _store(
    request: Request, resources: ApiResources, caller: Caller, upload_id: uuid.UUID
) -> str:
    """Stream the body's conversation into the upload; the SHA-256 of what was stored."""
    content_type = request.headers.get("content-type", "")
    is_form = content_type.split(";", 1)[0].strip().lower() == "multipart/form-data"
    parser = MultipartFile(boundary_of(content_type)) if is_form else None
    writer = await _in_thread(
        lambda: UploadWriter(
            resources.session_factory,
            guild_id=caller.guild_id,
            now=resources.clock(),
            upload_id=upload_id,
            max_guild_bytes=resources.options.max_guild_upload_bytes,
        )
    )
    digest = hashlib.sha256()
    async for chunk in request.stream():
        data = parser.feed(chunk) if parser is not None else chunk
        if data:
            digest.update(data)
            await _in_thread(writer.write, data)
    if parser is not None:
        parser.close()
    if writer.size == 0:
        raise InvalidInputError(
            "the body is empty; send the conversation (a message array or a "
            "DiscordChatExporter export) as the body or as the form field 'file'"
        )
    await _in_thread(writer.finish)
    await _in_thread(_validate, resources, upload_id, caller.guild_id)
    return digest.hexdigest()


def _options(
    format: Annotated[
        SummaryFormat, Query(description="Summary format")
    ] = SummaryFormat.STRUCTURED,
    language: Annotated[Language | None, Query(description="Summary language")] = None,
    max_messages: Annotated[
        int | None, Query(ge=1, le=1_000_000, description="Only the most recent N messages")
    ] = None,
    destination: Annotated[
        list[DestinationRef],
        Query(
            max_length=20,
            description=(
                "Where to deliver the summary besides GET /v1/summaries/{id} (repeat for "
                "several): `webhook:<endpoint id>` or `channel:<channel id of your guild>`"
            ),
        ),
    ] = [],  # noqa: B006 - FastAPI copies defaults per request
) -> Callable[[uuid.UUID], JobParams]:
    """The query's job options, as a builder of the job's parameters for an upload id."""
    targets = [_destination(ref) for ref in destination]

    def build(upload_id: uuid.UUID) -> JobParams:
        return job_params(
            {"kind": "upload", "upload_id": str(upload_id)},
            format=format,
            language=language,
            max_messages=max_messages,
            destinations=targets,
        )

    return build


@router.post(
    UPLOAD_PATH,
    status_code=202,
    response_model=None,
    summary="Submit a summary job for messages you send",
    description=(
        "Summarizes a conversation sent in the body instead of a Discord channel: a message "
        "array in the API's message model (`id`, `author`, `time`, `content`, optional "
        "`reply_to`, `reactions`, `attachments`), or a DiscordChatExporter JSON export, as "
        "`application/json` or as the `file` field of a `multipart/form-data` form, up to "
        "100 MiB.  The body is streamed into storage and every message is checked before the "
        "job is queued: an invalid message answers 422 naming its index and id (`errors` "
        "points at it).  Citations use your message ids; jump links appear only for Discord "
        "ids.  Job options are query parameters.  Answers like `POST /v1/jobs` (202, poll the "
        "job).  Needs `jobs:write`; send an `Idempotency-Key` to retry safely (the same key "
        "and the same file give the same job).  Keys that require signed requests cannot "
        "upload (the body is streamed, not signed)."
    ),
    openapi_extra={"requestBody": _REQUEST_BODY},
    responses={
        **JOB_ACCEPTED,
        202: {
            **JOB_ACCEPTED[202],
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/JobOut"}}},
        },
        413: {**errors(413)[413], "description": "Upload larger than 100 MiB"},
        415: {
            **errors(415)[415],
            "description": "The body is neither application/json nor multipart/form-data",
        },
    },
)
async def upload_job(
    request: Request,
    caller: Annotated[Caller, Depends(require_scope(Scope.JOBS_WRITE, streamed=True))],
    key: Annotated[str | None, Depends(idempotency_header)],
    options: Annotated[Callable[[uuid.UUID], JobParams], Depends(_options)],
    resources: Resources,
) -> Response:
    """Store the uploaded conversation and submit its job (202)."""
    upload_id = uuid.uuid4()
    params = options(upload_id)
    # Before anything is stored: a destination outside the guild fails now, not after 100 MiB.
    await _in_thread(check_destinations, resources.core, caller.actor, params.destinations)
    ran = False
    try:
        digest = await _store(request, resources, caller, upload_id)
        idem = (
            IdempotencyKey(key, fingerprint("POST", request_target(request), digest.encode()))
            if key is not None
            else None
        )

        def work() -> Response:
            nonlocal ran
            ran = True
            return submit(resources, caller, idem, params)

        response = await _in_thread(run_idempotent, resources, caller, idem, work)
    except BaseException:
        await _shielded(lambda: _in_thread(delete_upload, resources.session_factory, upload_id))
        raise
    if not ran:  # replayed: the first request's upload is the job's
        await _in_thread(delete_upload, resources.session_factory, upload_id)
    return response
