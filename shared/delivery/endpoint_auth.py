"""The extra authentication a webhook endpoint sends with each delivery, and its rules.

One rule for a custom header (``Name: value``), used when an endpoint is registered or changed
(a wrong one is refused there, naming the fix) and again when a delivery is sent (a row
written some other way is refused before anything leaves).
"""

from __future__ import annotations

import base64
import re

from schema.models.tenancy import WebhookAuthKind, WebhookEndpoint
from shared.crypto import SecretBox
from shared.errors import ConfigError

__all__ = ["RESERVED_HEADERS", "auth_header", "custom_header"]

#: Headers a custom auth header may not replace.
RESERVED_HEADERS = frozenset(
    {
        "host",
        "content-type",
        "content-length",
        "user-agent",
        "transfer-encoding",
        "connection",
        "webhook-id",
        "webhook-timestamp",
        "webhook-signature",
    }
)
_HEADER_NAME = re.compile(r"^[A-Za-z0-9!#$%&'*+.^_`|~-]{1,100}$")


def custom_header(secret: str) -> tuple[str, str]:
    """``Name: value`` as its name and value; :class:`ValueError` saying what is wrong."""
    name, sep, value = secret.partition(":")
    name, value = name.strip(), value.strip()
    if not sep or not _HEADER_NAME.match(name) or name.lower() in RESERVED_HEADERS:
        raise ValueError(
            "the custom auth header must be 'Name: value' with a header name other than "
            + ", ".join(sorted(RESERVED_HEADERS))
        )
    if any(c in value for c in "\r\n"):
        raise ValueError("the custom header value has a newline")
    return name, value


def auth_header(endpoint: WebhookEndpoint, box: SecretBox) -> dict[str, str]:
    """The extra auth header of ``endpoint`` (bearer, basic or custom), decrypted."""
    kind = endpoint.auth_kind
    if kind == WebhookAuthKind.NONE.value or endpoint.auth_encrypted is None:
        return {}
    secret = box.decrypt(endpoint.auth_encrypted)
    if kind == WebhookAuthKind.BEARER.value:
        return {"Authorization": f"Bearer {secret}"}
    if kind == WebhookAuthKind.BASIC.value:
        if ":" not in secret:
            raise ConfigError(
                f"webhook endpoint {endpoint.id}: basic auth must be stored as user:password"
            )
        return {"Authorization": "Basic " + base64.b64encode(secret.encode()).decode()}
    try:
        name, value = custom_header(secret)
    except ValueError as exc:
        raise ConfigError(f"webhook endpoint {endpoint.id}: {exc}") from None
    return {name: value}
