"""Signed API requests, Standard Webhooks ``v1`` scheme (HMAC-SHA256 over ``id.timestamp.body``).

A key with a signing secret accepts a request only with the three headers ``webhook-id``,
``webhook-timestamp`` (Unix seconds, within five minutes of our clock either way) and
``webhook-signature`` (space-separated ``v1,<base64>`` entries; one must match, compared in
constant time).  The caller signs the exact body bytes it sends.  Replays inside the tolerance
window are caught by remembering each ``webhook-id`` (see the API's auth dependency).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass

__all__ = [
    "SECRET_PREFIX",
    "TOLERANCE_SECONDS",
    "SignatureError",
    "SignedHeaders",
    "generate_secret",
    "sign",
    "verify",
]

SECRET_PREFIX = "whsec_"  # noqa: S105  # a prefix, not a secret
TOLERANCE_SECONDS = 300

_ID = re.compile(r"^[A-Za-z0-9_-]{1,128}$")
_TIMESTAMP = re.compile(r"^[0-9]{1,12}$")


class SignatureError(Exception):
    """The request's signature headers are missing, malformed, stale or do not match."""


@dataclass(frozen=True)
class SignedHeaders:
    """The three Standard Webhooks headers of one request (None when absent)."""

    msg_id: str | None
    timestamp: str | None
    signature: str | None


def generate_secret(length: int = 32) -> str:
    """A new ``whsec_<base64>`` secret of ``length`` random bytes (24 to 64)."""
    if not 24 <= length <= 64:
        raise ValueError("Standard Webhooks secrets are 24 to 64 bytes")
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(length)).decode()


def _key(secret: str) -> bytes:
    raw = secret.removeprefix(SECRET_PREFIX)
    try:
        return base64.b64decode(raw + "=" * (-len(raw) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("the signing secret is not base64") from None


def sign(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    """The ``webhook-signature`` value (``v1,<base64>``) for ``body``."""
    content = f"{msg_id}.{timestamp}.".encode() + body
    mac = hmac.new(_key(secret), content, hashlib.sha256).digest()
    return "v1," + base64.b64encode(mac).decode()


def verify(secret: str, headers: SignedHeaders, body: bytes, *, now: float) -> str:
    """Check a signed request; return its ``webhook-id`` or raise :class:`SignatureError`
    saying what is wrong and how to fix it."""
    missing = [
        name
        for name, value in (
            ("webhook-id", headers.msg_id),
            ("webhook-timestamp", headers.timestamp),
            ("webhook-signature", headers.signature),
        )
        if not value
    ]
    if missing:
        raise SignatureError(
            f"this API key requires signed requests; missing header {', '.join(missing)}"
        )
    assert headers.msg_id is not None
    assert headers.timestamp is not None
    assert headers.signature is not None
    if not _ID.match(headers.msg_id):
        raise SignatureError("webhook-id must be 1 to 128 letters, digits, '_' or '-'")
    if not _TIMESTAMP.match(headers.timestamp):
        raise SignatureError("webhook-timestamp must be whole Unix seconds")
    timestamp = int(headers.timestamp)
    if abs(now - timestamp) > TOLERANCE_SECONDS:
        raise SignatureError(
            f"webhook-timestamp is more than {TOLERANCE_SECONDS} s away from the server's "
            "clock; sign each request when sending it and keep your clock in sync"
        )
    expected = sign(secret, headers.msg_id, timestamp, body).encode()
    for entry in headers.signature.split():
        version, _, value = entry.partition(",")
        if version == "v1" and value and hmac.compare_digest(f"v1,{value}".encode(), expected):
            return headers.msg_id
    raise SignatureError(
        "webhook-signature does not match; sign f'{webhook-id}.{webhook-timestamp}.{body}' "
        "with HMAC-SHA256 over the exact body bytes sent"
    )
