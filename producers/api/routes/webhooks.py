"""``/v1/webhook-endpoints``: the HTTP endpoints that receive a guild's signed events.

The signing secret (``whsec_<base64>``, 32 random bytes) is made here and shown once, in the
answer to the create or rotate call; it is stored encrypted with the service's secret keys.  A
rotation keeps the old secret signing alongside the new one for 24 hours.
"""

from __future__ import annotations

import ipaddress
import uuid
from datetime import datetime, timedelta
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from fastapi import APIRouter, Depends, Path, Query
from pydantic import AfterValidator, BaseModel, ConfigDict, Field
from sqlalchemy import select
from sqlalchemy.orm import Session
from starlette.responses import Response

from producers.api.auth import Caller
from producers.api.idempotent import IdempotencyKey, idempotency_key, run_idempotent
from producers.api.models import DestinationIn, Page, SafeText, WebhookDestination
from producers.api.problems import Problem
from producers.api.resources import ApiResources
from producers.api.routes.common import (
    AUTH_ERRORS,
    Admin,
    Resources,
    errors,
    guild_page_query,
    guild_row,
    json_response,
    next_cursor,
)
from producers.api.signing import generate_secret
from schema.models.tenancy import WebhookAuthKind, WebhookEndpoint

__all__ = [
    "WebhookEndpointCreate",
    "WebhookEndpointCreated",
    "WebhookEndpointList",
    "WebhookEndpointOut",
    "WebhookEndpointUpdate",
    "WebhookSecret",
    "check_webhook_url",
    "router",
]

router = APIRouter(tags=["webhook endpoints"])

#: How long a rotated-out secret still signs deliveries.
ROTATION_OVERLAP = timedelta(hours=24)

EventName = Literal["summary.completed", "job.failed"]


def check_webhook_url(value: str) -> str:
    """An https URL with a public host name or address, no credentials and no fragment."""
    if len(value) > 2048 or any(ch.isspace() for ch in value):
        raise ValueError("the URL must be at most 2048 characters without spaces")
    parts = urlsplit(value)
    if parts.scheme != "https":
        raise ValueError("the URL must start with https:// (deliveries are only sent over TLS)")
    try:
        host = parts.hostname
        parts.port  # noqa: B018  # raises ValueError for a bad port
    except ValueError:
        raise ValueError("the URL's port is not a number between 0 and 65535") from None
    if not host:
        raise ValueError("the URL has no host name")
    if parts.username is not None or parts.password is not None:
        raise ValueError("the URL must not hold credentials; use the auth field instead")
    if parts.fragment:
        raise ValueError("the URL must not have a #fragment")
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        address = None
    if address is not None and not address.is_global:
        raise ValueError(f"{host} is not a public address; webhooks go to the internet only")
    if address is None:
        if host == "localhost" or host.endswith((".localhost", ".local", ".internal")):
            raise ValueError(f"{host} is not a public host name")
        try:
            host.encode("idna")
        except UnicodeError:
            raise ValueError(f"{host!r} is not a valid host name") from None
    return value


def _all_events() -> list[EventName]:
    return ["summary.completed", "job.failed"]


WebhookUrl = Annotated[
    str,
    AfterValidator(check_webhook_url),
    Field(max_length=2048, examples=["https://hooks.example.com/summarybot"]),
]


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid")


class BearerAuth(_In):
    """Send ``Authorization: Bearer <token>``."""

    kind: Literal["bearer"] = "bearer"
    token: SafeText = Field(min_length=1, max_length=2000)


class BasicAuth(_In):
    """Send HTTP basic authentication."""

    kind: Literal["basic"] = "basic"
    username: SafeText = Field(min_length=1, max_length=200, pattern=r"^[^:\n\t]+$")
    password: SafeText = Field(min_length=1, max_length=1000, pattern=r"^[^\n\t]+$")


class HeaderAuth(_In):
    """Send a custom header ``name: value``."""

    kind: Literal["header"] = "header"
    name: str = Field(pattern=r"^[A-Za-z0-9!#$%&'*+.^_`|~-]{1,100}$", examples=["X-Api-Token"])
    value: SafeText = Field(min_length=1, max_length=2000, pattern=r"^[^\n\t]+$")


WebhookAuthIn = Annotated[BearerAuth | BasicAuth | HeaderAuth, Field(discriminator="kind")]


class WebhookEndpointCreate(_In):
    """A new endpoint for this guild's events."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "url": "https://hooks.example.com/summarybot",
                    "description": "Team wiki importer",
                    "events": ["summary.completed", "job.failed"],
                    "auth": {"kind": "bearer", "token": "wiki-token-123"},
                }
            ]
        },
    )

    url: WebhookUrl
    description: SafeText | None = Field(default=None, max_length=200)
    events: list[EventName] = Field(default_factory=_all_events, min_length=1, max_length=2)
    auth: WebhookAuthIn | None = Field(
        default=None, description="Extra authentication sent with each delivery (stored encrypted)"
    )
    fallback: DestinationIn | None = Field(
        default=None, description="Where deliveries go when this endpoint is dead"
    )
    enabled: bool = True


class WebhookEndpointUpdate(_In):
    """Fields to change; a field left out keeps its value, ``null`` clears an optional one."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"enabled": False}]})

    url: WebhookUrl | None = None
    description: SafeText | None = Field(default=None, max_length=200)
    events: list[EventName] | None = Field(default=None, min_length=1, max_length=2)
    auth: WebhookAuthIn | None = None
    fallback: DestinationIn | None = None
    enabled: bool | None = None


class WebhookEndpointOut(BaseModel):
    """An endpoint (its secrets are never shown again)."""

    id: uuid.UUID
    url: str
    description: str | None
    events: list[str]
    auth_kind: Literal["none", "bearer", "basic", "header"]
    enabled: bool
    disabled_reason: str | None
    failing_since: datetime | None
    fallback: dict[str, Any] | None
    created_at: datetime
    updated_at: datetime


class WebhookEndpointCreated(WebhookEndpointOut):
    """A new endpoint with its signing secret: store it now, it is not shown again."""

    secret: str = Field(
        description="Standard Webhooks signing secret; shown only in this response",
        examples=["whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"],
    )


class WebhookSecret(BaseModel):
    """A rotated secret; the previous one keeps signing until ``previous_valid_until``."""

    id: uuid.UUID
    secret: str
    previous_valid_until: datetime


class WebhookEndpointList(Page):
    """One page of endpoints, oldest first."""

    items: list[WebhookEndpointOut]


def _out(row: WebhookEndpoint) -> WebhookEndpointOut:
    return WebhookEndpointOut(
        id=row.id,
        url=row.url,
        description=row.description,
        events=list(row.events),
        auth_kind=row.auth_kind,
        enabled=row.enabled,
        disabled_reason=row.disabled_reason,
        failing_since=row.failing_since,
        fallback=row.fallback,
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


def _auth_secret(auth: BearerAuth | BasicAuth | HeaderAuth) -> str:
    if isinstance(auth, BearerAuth):
        return auth.token
    if isinstance(auth, BasicAuth):
        return f"{auth.username}:{auth.password}"
    return f"{auth.name}: {auth.value}"


def _check_fallback(
    resources: ApiResources,
    caller: Caller,
    fallback: WebhookDestination | Any,
    *,
    own_id: uuid.UUID | None,
) -> dict[str, Any]:
    if isinstance(fallback, WebhookDestination):
        if fallback.endpoint_id == own_id:
            raise Problem(422, "fallback: an endpoint cannot be its own fallback")
        with resources.session_factory() as session:
            exists = session.scalar(
                select(WebhookEndpoint.id).where(
                    WebhookEndpoint.id == fallback.endpoint_id,
                    WebhookEndpoint.guild_id == caller.guild_id,
                )
            )
        if exists is None:
            raise Problem(
                422, f"fallback: no webhook endpoint {fallback.endpoint_id} in this guild"
            )
    result: dict[str, Any] = fallback.model_dump(mode="json")
    return result


def _still_valid(entry: dict[str, Any], now: datetime) -> bool:
    try:
        until = datetime.fromisoformat(str(entry.get("expires_at")))
    except ValueError:
        return False
    return until.tzinfo is not None and until > now


EndpointId = Annotated[uuid.UUID, Path(description="The endpoint's id")]


@router.post(
    "/v1/webhook-endpoints",
    status_code=201,
    response_model=WebhookEndpointCreated,
    summary="Register a webhook endpoint (its signing secret is shown once)",
    description="Needs `admin`.  Send an `Idempotency-Key` to retry safely.",
    responses=errors(409, *AUTH_ERRORS),
)
def create_endpoint(
    payload: WebhookEndpointCreate,
    caller: Admin,
    idem: Annotated[IdempotencyKey | None, Depends(idempotency_key)],
    resources: Resources,
) -> Response:
    """Create an endpoint and answer its secret once."""

    def work() -> Response:
        fallback = (
            _check_fallback(resources, caller, payload.fallback, own_id=None)
            if payload.fallback is not None
            else None
        )
        secret = generate_secret()
        now = resources.clock()
        row = WebhookEndpoint(
            id=uuid.uuid4(),
            guild_id=caller.guild_id,
            url=payload.url,
            description=payload.description,
            secret_encrypted=resources.secret_box.encrypt(secret),
            previous_secrets=[],
            auth_kind=payload.auth.kind if payload.auth else WebhookAuthKind.NONE.value,
            auth_encrypted=(
                resources.secret_box.encrypt(_auth_secret(payload.auth)) if payload.auth else None
            ),
            events=list(dict.fromkeys(payload.events)),
            enabled=payload.enabled,
            fallback=fallback,
            created_at=now,
            updated_at=now,
        )
        with resources.session_factory() as session, session.begin():
            session.add(row)
        created = WebhookEndpointCreated(**_out(row).model_dump(), secret=secret)
        return json_response(
            created, status=201, headers={"Location": f"/v1/webhook-endpoints/{row.id}"}
        )

    return run_idempotent(resources, caller, idem, work, sensitive=True)


@router.get(
    "/v1/webhook-endpoints",
    response_model=WebhookEndpointList,
    summary="List this guild's webhook endpoints",
    description="Needs `admin`.",
    responses=errors(*AUTH_ERRORS),
)
def list_endpoints(
    caller: Admin,
    resources: Resources,
    limit: Annotated[int, Query(ge=1, le=100)] = 50,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
) -> Response:
    """A page of endpoints, oldest first."""
    query = guild_page_query(WebhookEndpoint, caller.guild_id, limit=limit, cursor=cursor)
    with resources.session_factory() as session:
        rows = list(session.scalars(query))
    items = [_out(r) for r in rows[:limit]]
    return json_response(WebhookEndpointList(items=items, next_cursor=next_cursor(rows, limit)))


def _get(
    session: Session, caller: Caller, endpoint_id: uuid.UUID, *, lock: bool
) -> WebhookEndpoint:
    return guild_row(
        session, WebhookEndpoint, caller.guild_id, endpoint_id, lock=lock, what="webhook endpoint"
    )


@router.get(
    "/v1/webhook-endpoints/{endpoint_id}",
    response_model=WebhookEndpointOut,
    summary="Read a webhook endpoint",
    description="Needs `admin`.",
    responses=errors(404, *AUTH_ERRORS),
)
def get_endpoint(endpoint_id: EndpointId, caller: Admin, resources: Resources) -> Response:
    """One endpoint of this guild."""
    with resources.session_factory() as session:
        return json_response(_out(_get(session, caller, endpoint_id, lock=False)))


@router.patch(
    "/v1/webhook-endpoints/{endpoint_id}",
    response_model=WebhookEndpointOut,
    summary="Change a webhook endpoint",
    description=(
        "Needs `admin`.  Setting `enabled` to true also clears `disabled_reason` and "
        "`failing_since` (the endpoint gets a fresh start)."
    ),
    responses=errors(404, *AUTH_ERRORS),
)
def update_endpoint(
    endpoint_id: EndpointId,
    payload: WebhookEndpointUpdate,
    caller: Admin,
    resources: Resources,
) -> Response:
    """Apply the fields that were sent."""
    fields = payload.model_fields_set
    for name in ("url", "events", "enabled"):
        if name in fields and getattr(payload, name) is None:
            raise Problem(422, f"{name} cannot be null; leave it out to keep its value")
    with resources.session_factory() as session, session.begin():
        row = _get(session, caller, endpoint_id, lock=True)
        fallback = None
        if "fallback" in fields and payload.fallback is not None:
            fallback = _check_fallback(resources, caller, payload.fallback, own_id=endpoint_id)
        if payload.url is not None:
            row.url = payload.url
        if "description" in fields:
            row.description = payload.description
        if payload.events is not None:
            row.events = list(dict.fromkeys(payload.events))
        if "auth" in fields:
            row.auth_kind = payload.auth.kind if payload.auth else WebhookAuthKind.NONE.value
            row.auth_encrypted = (
                resources.secret_box.encrypt(_auth_secret(payload.auth)) if payload.auth else None
            )
        if "fallback" in fields:
            row.fallback = fallback
        if payload.enabled is not None:
            if payload.enabled and not row.enabled:
                row.disabled_reason = None
                row.failing_since = None
            row.enabled = payload.enabled
        row.updated_at = resources.clock()
    return json_response(_out(row))


@router.post(
    "/v1/webhook-endpoints/{endpoint_id}/rotate-secret",
    response_model=WebhookSecret,
    summary="Rotate an endpoint's signing secret (the new one is shown once)",
    description=(
        "The previous secret keeps signing alongside the new one for 24 hours, so receivers "
        "can switch without losing events.  Needs `admin`."
    ),
    responses=errors(404, 409, *AUTH_ERRORS),
)
def rotate_secret(
    endpoint_id: EndpointId,
    caller: Admin,
    idem: Annotated[IdempotencyKey | None, Depends(idempotency_key)],
    resources: Resources,
) -> Response:
    """Make a new secret; keep the old one valid for a day."""

    def work() -> Response:
        now = resources.clock()
        secret = generate_secret()
        until = now + ROTATION_OVERLAP
        with resources.session_factory() as session, session.begin():
            row = _get(session, caller, endpoint_id, lock=True)
            kept = [entry for entry in row.previous_secrets if _still_valid(entry, now)]
            kept.append({"secret_encrypted": row.secret_encrypted, "expires_at": until.isoformat()})
            row.previous_secrets = kept
            row.secret_encrypted = resources.secret_box.encrypt(secret)
            row.updated_at = now
        return json_response(
            WebhookSecret(id=endpoint_id, secret=secret, previous_valid_until=until)
        )

    return run_idempotent(resources, caller, idem, work, sensitive=True)


@router.delete(
    "/v1/webhook-endpoints/{endpoint_id}",
    status_code=204,
    summary="Delete a webhook endpoint",
    description="Needs `admin`.",
    responses=errors(404, *AUTH_ERRORS),
)
def delete_endpoint(endpoint_id: EndpointId, caller: Admin, resources: Resources) -> Response:
    """Remove the endpoint (deliveries already recorded keep their history)."""
    with resources.session_factory() as session, session.begin():
        session.delete(_get(session, caller, endpoint_id, lock=True))
    return Response(status_code=204)
