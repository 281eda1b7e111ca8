"""Webhook endpoints: register, change, rotate the signing secret of, and delete them.

An endpoint's URL is checked by the same function the delivery guard uses at every send
(:func:`shared.delivery.ssrf.parse_webhook_url`, with the operator's ``WEBHOOK_ALLOWED_HOSTS``),
so what registration accepts is what delivery will try, and an internal receiver the operator
allowed can be registered.  The signing secret (``whsec_…``) is made here, returned once to show
the caller, and stored only encrypted; a rotation keeps the old secret signing alongside the new
one for :data:`SECRET_OVERLAP`, so receivers can switch without losing an event.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.orm import Session

from schema.models.tenancy import WebhookAuthKind, WebhookEndpoint
from shared.delivery.endpoint_auth import auth_headers
from shared.delivery.events import EVENT_TYPES
from shared.delivery.ssrf import AddressRefused, parse_webhook_url
from shared.errors import InvalidInputError, NotFoundError
from shared.services.core import Actor, Core, locked_guild_row
from shared.services.jobs import check_destination
from shared.signing import generate_secret

__all__ = [
    "MAX_PREVIOUS_SECRETS",
    "SECRET_OVERLAP",
    "EndpointAuth",
    "EndpointRequest",
    "RotatedSecret",
    "check_url",
    "create_endpoint",
    "delete_endpoint",
    "rotate_secret",
    "update_endpoint",
]

#: How long a replaced signing secret still signs, next to the new one.
SECRET_OVERLAP = timedelta(hours=24)

#: How many replaced secrets still sign at most: rotating again within the overlap drops the
#: oldest, so a loop of rotations cannot grow the row and every delivery's signature header.
MAX_PREVIOUS_SECRETS = 3

_CHANGEABLE = frozenset({"url", "description", "events", "auth", "fallback", "enabled"})


@dataclass(frozen=True)
class EndpointAuth:
    """Extra authentication sent with each delivery: its kind and its secret text.

    The secret is the bearer token, ``user:password``, or ``Name: value`` of a custom header.
    """

    kind: WebhookAuthKind
    secret: str


@dataclass(frozen=True)
class EndpointRequest:
    """A new endpoint for the actor's guild."""

    url: str
    events: Sequence[str] = EVENT_TYPES
    description: str | None = None
    auth: EndpointAuth | None = None
    fallback: Mapping[str, Any] | None = None
    enabled: bool = True


@dataclass(frozen=True)
class RotatedSecret:
    """A new signing secret (shown once) and until when the previous one still signs."""

    endpoint_id: uuid.UUID
    secret: str
    previous_valid_until: datetime


def check_url(core: Core, url: str) -> str:
    """``url`` when deliveries may go there under this deployment's policy.

    Raises :class:`InvalidInputError` (field ``url``) saying what is wrong and how to fix it.
    """
    try:
        parse_webhook_url(url, core.egress)
    except (InvalidInputError, AddressRefused) as exc:
        raise InvalidInputError(str(exc), user_message=exc.user_message, field="url") from None
    return url


def _guild(actor: Actor) -> str:
    if actor.guild_id is None:
        raise InvalidInputError("a webhook endpoint belongs to a server; give its guild id")
    return actor.guild_id


def _events(events: Sequence[str]) -> list[str]:
    unknown = sorted(set(events) - set(EVENT_TYPES))
    if unknown or not events:
        raise InvalidInputError(
            f"unknown or no events {unknown}; choose from {', '.join(EVENT_TYPES)}",
            field="events",
        )
    return list(dict.fromkeys(events))


def _fallback(
    core: Core, actor: Actor, fallback: Mapping[str, Any], own_id: uuid.UUID | None
) -> dict[str, Any]:
    if fallback.get("kind") == "webhook" and str(fallback.get("endpoint_id")) == str(own_id):
        raise InvalidInputError(
            "fallback: an endpoint cannot be its own fallback", field="fallback"
        )
    try:
        check_destination(core, actor, fallback, "fallback")
    except NotFoundError as exc:
        raise InvalidInputError(exc.user_message, field="fallback") from None
    return dict(fallback)


def _set_auth(core: Core, row: WebhookEndpoint, auth: EndpointAuth | None) -> None:
    if auth is not None and auth.kind is not WebhookAuthKind.NONE:
        try:
            auth_headers(auth.kind.value, auth.secret)
        except ValueError as exc:
            raise InvalidInputError(str(exc), field="auth") from None
    row.auth_kind = auth.kind.value if auth else WebhookAuthKind.NONE.value
    row.auth_encrypted = core.box.encrypt(auth.secret) if auth else None


def _locked(session: Session, guild_id: str, endpoint_id: uuid.UUID) -> WebhookEndpoint:
    return locked_guild_row(
        session, WebhookEndpoint, guild_id, endpoint_id, what="webhook endpoint"
    )


def create_endpoint(
    core: Core, actor: Actor, request: EndpointRequest
) -> tuple[WebhookEndpoint, str]:
    """Store a new endpoint; returns it and its plain signing secret, to show once."""
    guild = _guild(actor)
    url = check_url(core, request.url)
    events = _events(request.events)
    fallback = _fallback(core, actor, request.fallback, None) if request.fallback else None
    secret = generate_secret()
    now = core.clock()
    row = WebhookEndpoint(
        id=uuid.uuid4(),
        guild_id=guild,
        url=url,
        description=request.description,
        secret_encrypted=core.box.encrypt(secret),
        previous_secrets=[],
        events=events,
        enabled=request.enabled,
        fallback=fallback,
        created_at=now,
        updated_at=now,
    )
    _set_auth(core, row, request.auth)
    with core.session_factory() as session, session.begin():
        session.add(row)
    return row, secret


def update_endpoint(
    core: Core, actor: Actor, endpoint_id: uuid.UUID, changes: Mapping[str, Any]
) -> WebhookEndpoint:
    """Apply ``changes`` (fields of :class:`EndpointRequest`); ``None`` clears
    ``description``, ``auth`` and ``fallback``.  Enabling a disabled endpoint gives it a fresh
    start (its failure clock and reason are cleared)."""
    guild = _guild(actor)
    unknown = set(changes) - _CHANGEABLE
    if unknown:
        raise InvalidInputError(f"these endpoint fields cannot be changed: {sorted(unknown)}")
    for name in ("url", "events", "enabled"):
        if name in changes and changes[name] is None:
            raise InvalidInputError(
                f"{name} cannot be null; leave it out to keep its value", field=name
            )
    url = check_url(core, changes["url"]) if "url" in changes else None
    events = _events(changes["events"]) if "events" in changes else None
    fallback = changes.get("fallback")
    if fallback is not None:
        fallback = _fallback(core, actor, fallback, endpoint_id)
    with core.session_factory() as session, session.begin():
        row = _locked(session, guild, endpoint_id)
        if url is not None:
            row.url = url
        if "description" in changes:
            row.description = changes["description"]
        if events is not None:
            row.events = events
        if "auth" in changes:
            _set_auth(core, row, changes["auth"])
        if "fallback" in changes:
            row.fallback = fallback
        if "enabled" in changes:
            enabled = bool(changes["enabled"])
            if enabled and not row.enabled:
                row.disabled_reason = None
                row.failing_since = None
            row.enabled = enabled
        row.updated_at = core.clock()
    return row


def _still_valid(entry: Mapping[str, Any], now: datetime) -> bool:
    try:
        until = datetime.fromisoformat(str(entry.get("expires_at")))
    except ValueError:
        return False
    return until.tzinfo is not None and until > now


def rotate_secret(core: Core, actor: Actor, endpoint_id: uuid.UUID) -> RotatedSecret:
    """Replace the signing secret; the old one keeps signing for :data:`SECRET_OVERLAP`."""
    guild = _guild(actor)
    secret = generate_secret()
    now = core.clock()
    until = now + SECRET_OVERLAP
    with core.session_factory() as session, session.begin():
        row = _locked(session, guild, endpoint_id)
        kept = [entry for entry in row.previous_secrets or [] if _still_valid(entry, now)]
        kept.append({"secret_encrypted": row.secret_encrypted, "expires_at": until.isoformat()})
        row.previous_secrets = kept[-MAX_PREVIOUS_SECRETS:]
        row.secret_encrypted = core.box.encrypt(secret)
        row.updated_at = now
    return RotatedSecret(endpoint_id=endpoint_id, secret=secret, previous_valid_until=until)


def delete_endpoint(core: Core, actor: Actor, endpoint_id: uuid.UUID) -> None:
    """Remove the endpoint (deliveries already recorded keep their history)."""
    guild = _guild(actor)
    with core.session_factory() as session, session.begin():
        session.delete(_locked(session, guild, endpoint_id))
