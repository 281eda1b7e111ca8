"""The extra authentication a webhook endpoint sends with each delivery, and its rules.

One rule for the header an endpoint's auth becomes (:func:`auth_headers`), used when an endpoint
is registered or changed (a wrong one is refused there, naming the fix) and again when a
delivery is sent (a row written some other way is refused before anything leaves).  A header
value holds printable ASCII only, with no whitespace at its ends: a line break would end the
header, edge whitespace is not part of a value on the wire, and other characters have no one
meaning there.  No error of these rules repeats the secret.
"""

from __future__ import annotations

import base64
import re

from schema.models.tenancy import WebhookAuthKind, WebhookEndpoint
from shared.crypto import SecretBox
from shared.errors import ConfigError

__all__ = ["RESERVED_HEADERS", "auth_header", "auth_headers", "custom_header"]

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
# Printable ASCII, spaces and tabs inside only: HTTP trims a value's edges (RFC 9110 5.5).
_HEADER_VALUE = re.compile(r"^[\x21-\x7e](?:[\t\x20-\x7e]*[\x21-\x7e])?$")


def _header_value(value: str, what: str) -> str:
    if not _HEADER_VALUE.match(value):
        raise ValueError(
            f"the {what} must be printable ASCII (letters, digits, punctuation, spaces "
            "between them), with no line break and no space at either end: an HTTP header "
            "carries nothing else"
        )
    return value


def custom_header(secret: str) -> tuple[str, str]:
    """``Name: value`` as its name and value; :class:`ValueError` saying what is wrong."""
    name, sep, value = secret.partition(":")
    name, value = name.strip(), value.strip()
    if not sep or not _HEADER_NAME.match(name) or name.lower() in RESERVED_HEADERS:
        raise ValueError(
            "the custom auth header must be 'Name: value' with a header name other than "
            + ", ".join(sorted(RESERVED_HEADERS))
        )
    return name, _header_value(value, "custom header value")


def auth_headers(kind: str, secret: str) -> dict[str, str]:
    """The header that auth ``kind`` (a :class:`WebhookAuthKind` value) with ``secret`` sends.

    Raises :class:`ValueError` saying what is wrong (never repeating ``secret``).
    """
    if kind == WebhookAuthKind.BEARER.value:
        return {"Authorization": "Bearer " + _header_value(secret, "bearer token")}
    if kind == WebhookAuthKind.BASIC.value:
        if ":" not in secret:
            raise ValueError("basic auth must be stored as user:password")
        # Base64 carries any user name and password, so they need no rule of their own.
        return {"Authorization": "Basic " + base64.b64encode(secret.encode()).decode()}
    name, value = custom_header(secret)
    return {name: value}


def auth_header(endpoint: WebhookEndpoint, box: SecretBox) -> dict[str, str]:
    """The extra auth header of ``endpoint`` (bearer, basic or custom), decrypted.

    Raises :class:`ConfigError` for auth that breaks :func:`auth_headers`' rules.
    """
    kind = endpoint.auth_kind
    if kind == WebhookAuthKind.NONE.value or endpoint.auth_encrypted is None:
        return {}
    try:
        return auth_headers(kind, box.decrypt(endpoint.auth_encrypted))
    except ValueError as exc:
        raise ConfigError(f"webhook endpoint {endpoint.id}: auth: {exc}") from None
