"""``/v1/webhook-endpoints``: the HTTP endpoints that receive a guild's signed events.

The rules live in :mod:`shared.services.webhook_endpoints`: the URL policy the delivery guard
uses (``WEBHOOK_ALLOWED_HOSTS`` honoured), the signing secret (``whsec_<base64>``) shown once in
the answer to the create or rotate call and stored encrypted, a rotation that keeps the old
secret signing for 24 hours.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path
from pydantic import BaseModel, Field
from starlette.responses import Response

from producers.api.examples import examples
from producers.api.idempotent import Idempotency, run_idempotent
from producers.api.models import DestinationIn, InputModel, Page, SafeText
from producers.api.onehop import JsonRoute
from producers.api.routes.common import (
    AUTH_ERRORS,
    Admin,
    PageCursor,
    PageSize,
    Resources,
    errors,
    guild_page,
    guild_page_query,
    guild_row,
    json_response,
)
from schema.models.tenancy import WebhookAuthKind, WebhookEndpoint
from shared.services import webhook_endpoints as endpoint_service
from shared.services.webhook_endpoints import EndpointAuth, EndpointRequest

__all__ = [
    "WebhookEndpointCreate",
    "WebhookEndpointCreated",
    "WebhookEndpointList",
    "WebhookEndpointOut",
    "WebhookEndpointUpdate",
    "WebhookSecret",
    "router",
]

router = APIRouter(tags=["webhook endpoints"], route_class=JsonRoute)

EventName = Literal["summary.completed", "job.failed"]


def _all_events() -> list[EventName]:
    return ["summary.completed", "job.failed"]


WebhookUrl = Annotated[
    str,
    Field(min_length=1, max_length=2048, examples=["https://hooks.example.com/summarybot"]),
]


class BearerAuth(InputModel):
    """Send ``Authorization: Bearer <token>``."""

    kind: Literal["bearer"] = "bearer"
    token: SafeText = Field(min_length=1, max_length=2000)


class BasicAuth(InputModel):
    """Send HTTP basic authentication."""

    kind: Literal["basic"] = "basic"
    username: SafeText = Field(min_length=1, max_length=200, pattern=r"^[^:\n\t]+$")
    password: SafeText = Field(min_length=1, max_length=1000, pattern=r"^[^\n\t]+$")


class HeaderAuth(InputModel):
    """Send a custom header ``name: value``; not one each delivery sets itself (``Host``,
    ``Content-Type``, ``Content-Length``, ``User-Agent``, ``Transfer-Encoding``,
    ``Connection``, ``webhook-id``, ``webhook-timestamp``, ``webhook-signature``: 422)."""

    kind: Literal["header"] = "header"
    name: str = Field(pattern=r"^[A-Za-z0-9!#$%&'*+.^_`|~-]{1,100}$", examples=["X-Api-Token"])
    value: SafeText = Field(min_length=1, max_length=2000, pattern=r"^[^\n\t]+$")


WebhookAuthIn = Annotated[BearerAuth | BasicAuth | HeaderAuth, Field(discriminator="kind")]


class WebhookEndpointCreate(InputModel):
    """A new endpoint for this guild's events."""

    model_config = examples(
        {
            "url": "https://hooks.example.com/summarybot",
            "description": "Team wiki importer",
            "events": ["summary.completed", "job.failed"],
            "auth": {"kind": "bearer", "token": "wiki-token-123"},
        },
        extra="forbid",
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


class WebhookEndpointUpdate(InputModel):
    """Fields to change; a field left out keeps its value, ``null`` clears an optional one."""

    model_config = examples({"enabled": False}, extra="forbid")

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
    return WebhookEndpointOut.model_validate(row, from_attributes=True)


def _auth(auth: BearerAuth | BasicAuth | HeaderAuth | None) -> EndpointAuth | None:
    if auth is None:
        return None
    if isinstance(auth, BearerAuth):
        return EndpointAuth(WebhookAuthKind.BEARER, auth.token)
    if isinstance(auth, BasicAuth):
        return EndpointAuth(WebhookAuthKind.BASIC, f"{auth.username}:{auth.password}")
    return EndpointAuth(WebhookAuthKind.HEADER, f"{auth.name}: {auth.value}")


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
    idem: Idempotency,
    resources: Resources,
) -> Response:
    """Create an endpoint and answer its secret once."""

    def work() -> Response:
        row, secret = endpoint_service.create_endpoint(
            resources.core,
            caller.actor,
            EndpointRequest(
                url=payload.url,
                events=payload.events,
                description=payload.description,
                auth=_auth(payload.auth),
                fallback=payload.fallback.model_dump(mode="json") if payload.fallback else None,
                enabled=payload.enabled,
            ),
        )
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
    limit: PageSize = 50,
    cursor: PageCursor = None,
) -> Response:
    """A page of endpoints, oldest first."""
    query = guild_page_query(WebhookEndpoint, caller.guild_id, limit=limit, cursor=cursor)
    rows, following = guild_page(resources, query, limit)
    return json_response(WebhookEndpointList(items=[_out(r) for r in rows], next_cursor=following))


@router.get(
    "/v1/webhook-endpoints/{endpoint_id}",
    response_model=WebhookEndpointOut,
    summary="Read a webhook endpoint",
    description="Needs `admin`.",
    responses=errors(404, *AUTH_ERRORS),
)
def get_endpoint(endpoint_id: EndpointId, caller: Admin, resources: Resources) -> Response:
    """One endpoint of this guild."""
    row = guild_row(resources, WebhookEndpoint, caller, endpoint_id, what="webhook endpoint")
    return json_response(_out(row))


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
    changes: dict[str, Any] = {name: getattr(payload, name) for name in payload.model_fields_set}
    if "auth" in changes:
        changes["auth"] = _auth(payload.auth)
    if changes.get("fallback") is not None:
        changes["fallback"] = changes["fallback"].model_dump(mode="json")
    row = endpoint_service.update_endpoint(resources.core, caller.actor, endpoint_id, changes)
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
    idem: Idempotency,
    resources: Resources,
) -> Response:
    """Make a new secret; keep the old one valid for a day."""

    def work() -> Response:
        rotated = endpoint_service.rotate_secret(resources.core, caller.actor, endpoint_id)
        return json_response(
            WebhookSecret(
                id=endpoint_id,
                secret=rotated.secret,
                previous_valid_until=rotated.previous_valid_until,
            )
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
    endpoint_service.delete_endpoint(resources.core, caller.actor, endpoint_id)
    return Response(status_code=204)
