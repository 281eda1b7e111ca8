"""Creating webhook endpoints and rotating their signing secrets (used by the API and the CLI).

Secrets are generated here, returned once to show the user, and stored only encrypted.  A
rotation keeps the old secret in ``previous_secrets`` until it expires (24 h by default), so the
sender signs with both and receivers can switch without losing a message.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from schema.models.tenancy import WebhookAuthKind, WebhookEndpoint
from shared.crypto import SecretBox
from shared.delivery.events import EVENT_TYPES
from shared.delivery.outbox import parse_destination
from shared.delivery.ssrf import EgressPolicy, parse_webhook_url
from shared.delivery.webhooks import generate_secret
from shared.errors import InvalidInputError

__all__ = ["SECRET_OVERLAP", "new_endpoint", "rotate_endpoint_secret"]

#: How long a replaced signing secret is still used to sign, next to the new one.
SECRET_OVERLAP = timedelta(hours=24)


def new_endpoint(
    box: SecretBox,
    *,
    guild_id: str,
    url: str,
    policy: EgressPolicy,
    events: Sequence[str] = EVENT_TYPES,
    auth_kind: WebhookAuthKind = WebhookAuthKind.NONE,
    auth_secret: str | None = None,
    fallback: dict[str, Any] | None = None,
    description: str | None = None,
    secret: str | None = None,
) -> tuple[WebhookEndpoint, str]:
    """A new (unsaved) endpoint and its plain signing secret, to show the user once.

    The URL is checked against the SSRF rules now (its addresses again at every send).
    """
    parse_webhook_url(url, policy)
    unknown = sorted(set(events) - set(EVENT_TYPES))
    if unknown or not events:
        raise InvalidInputError(
            f"unknown or no events {unknown}; choose from {', '.join(EVENT_TYPES)}"
        )
    if (auth_kind is WebhookAuthKind.NONE) != (auth_secret is None):
        raise InvalidInputError("give auth_secret exactly when auth_kind is not 'none'")
    if fallback is not None:
        try:
            parse_destination(fallback)
        except ValueError as exc:
            raise InvalidInputError(f"the fallback destination is invalid: {exc}") from None
    plain = secret or generate_secret()
    endpoint = WebhookEndpoint(
        id=uuid.uuid4(),
        guild_id=guild_id,
        url=url,
        description=description,
        secret_encrypted=box.encrypt(plain),
        previous_secrets=[],
        auth_kind=auth_kind.value,
        auth_encrypted=box.encrypt(auth_secret) if auth_secret is not None else None,
        events=list(events),
        enabled=True,
        fallback=fallback,
    )
    return endpoint, plain


def rotate_endpoint_secret(
    endpoint: WebhookEndpoint,
    box: SecretBox,
    *,
    now: datetime,
    overlap: timedelta = SECRET_OVERLAP,
    secret: str | None = None,
) -> str:
    """Replace the signing secret; the old one keeps signing until ``now + overlap``."""
    plain = secret or generate_secret()
    kept = []
    for previous in endpoint.previous_secrets or []:
        try:
            expires = datetime.fromisoformat(str(previous.get("expires_at")))
        except ValueError:
            continue
        if expires > now:
            kept.append(previous)
    kept.append(
        {
            "secret_encrypted": endpoint.secret_encrypted,
            "expires_at": (now + overlap).isoformat(),
        }
    )
    endpoint.previous_secrets = kept
    endpoint.secret_encrypted = box.encrypt(plain)
    endpoint.updated_at = now
    return plain
