"""Standard Webhooks (v1, symmetric): secrets, signatures, headers and verification.

One implementation for both directions: the delivery stage signs the events it sends to
webhook endpoints, and the API verifies requests signed with an API key's signing secret.

A message is signed as ``HMAC-SHA256(key, f"{id}.{timestamp}.{body}")`` where ``key`` is the
base64-decoded ``whsec_`` secret; the ``webhook-signature`` header lists ``v1,<base64 mac>``
entries separated by spaces, one per secret in use (several during a rotation).  The body that
is signed is the exact byte string that is sent.

:func:`verify` is the receiver's side (used by our tests and offered to integrators): it checks
the timestamp tolerance, accepts the message when any ``v1`` entry matches in constant time, and
turns every malformed header into :class:`WebhookVerificationError`.

Signed API *requests* must not be replayable on another operation, so what they sign is the
request, not only its body: ``f"{METHOD} {target}\n".encode() + body``, where ``target`` is the
path and query exactly as sent on the request line (:func:`request_content`,
:func:`sign_request`, :func:`verify_request`).  A signature made for ``GET /v1/x`` therefore
fails on ``DELETE /v1/x`` or on ``GET /v1/x?all=true``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from secrets import token_bytes

from shared.errors import InvalidInputError

__all__ = [
    "SECRET_PREFIX",
    "TOLERANCE_SECONDS",
    "SignedHeaders",
    "WebhookVerificationError",
    "decode_secret",
    "generate_secret",
    "request_content",
    "sign",
    "sign_request",
    "signed_headers",
    "verify",
    "verify_request",
    "webhook_id_for",
]

SECRET_PREFIX = "whsec_"  # noqa: S105 - a prefix, not a secret
#: How far a receiver accepts ``webhook-timestamp`` from its own clock, both ways.
TOLERANCE_SECONDS = 300
_MIN_KEY_BYTES, _MAX_KEY_BYTES = 24, 64
# Ids and timestamps are joined with "." before signing, so neither may contain one.
_MESSAGE_ID = re.compile(r"^[A-Za-z0-9_\-]{1,128}$")


class WebhookVerificationError(Exception):
    """A signed message is not authentic, malformed, or outside the time tolerance."""


def generate_secret(*, nbytes: int = 32) -> str:
    """A new random signing secret, ``whsec_`` + base64 of ``nbytes`` (24-64) random bytes."""
    if not _MIN_KEY_BYTES <= nbytes <= _MAX_KEY_BYTES:
        raise ValueError(f"a signing secret has 24-64 random bytes, not {nbytes}")
    return SECRET_PREFIX + base64.b64encode(token_bytes(nbytes)).decode()


def decode_secret(secret: str) -> bytes:
    """The HMAC key of ``secret`` (with or without ``whsec_``, with or without padding)."""
    body = secret.removeprefix(SECRET_PREFIX).strip()
    if not body:
        raise InvalidInputError(
            "the webhook signing secret is empty; use a whsec_ secret (generate one with "
            "shared.signing.generate_secret)"
        )
    try:
        # Secrets are often copied without their padding; restore it before decoding.
        unpadded = body.rstrip("=")
        key = base64.b64decode(unpadded + "=" * (-len(unpadded) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise InvalidInputError(
            "the webhook signing secret is not base64; it must look like whsec_<base64>"
        ) from None
    if not key:
        raise InvalidInputError("the webhook signing secret decodes to no bytes")
    return key


def webhook_id_for(delivery_id: object) -> str:
    """The stable ``webhook-id`` of a delivery: the same on every retry, never containing ``.``."""
    text = getattr(delivery_id, "hex", None) or str(delivery_id).replace("-", "")
    return f"msg_{text}"


def _mac(key: bytes, message_id: str, timestamp: int, body: bytes) -> str:
    content = f"{message_id}.{timestamp}.".encode() + body
    return base64.b64encode(hmac.new(key, content, hashlib.sha256).digest()).decode()


def _check_id_and_time(message_id: str, timestamp: int) -> None:
    if not _MESSAGE_ID.match(message_id):
        raise ValueError(
            f"webhook id {message_id!r} must be 1-128 letters, digits, '_' or '-' (no '.')"
        )
    if isinstance(timestamp, bool) or not isinstance(timestamp, int) or timestamp < 0:
        raise ValueError(f"webhook timestamp must be whole non-negative seconds, not {timestamp!r}")


def sign(message_id: str, timestamp: int, body: bytes, secrets: Sequence[str]) -> str:
    """The ``webhook-signature`` value: one ``v1,<mac>`` entry per secret, space-separated."""
    _check_id_and_time(message_id, timestamp)
    if not secrets:
        raise InvalidInputError("no signing secret: a webhook endpoint needs at least one")
    entries = [f"v1,{_mac(decode_secret(s), message_id, timestamp, body)}" for s in secrets]
    return " ".join(dict.fromkeys(entries))


@dataclass(frozen=True)
class SignedHeaders:
    """The three Standard Webhooks headers of one attempt."""

    webhook_id: str
    webhook_timestamp: int
    webhook_signature: str

    def as_dict(self) -> dict[str, str]:
        """Header name → value, with the spec's lower-case names."""
        return {
            "webhook-id": self.webhook_id,
            "webhook-timestamp": str(self.webhook_timestamp),
            "webhook-signature": self.webhook_signature,
        }


def signed_headers(
    message_id: str, timestamp: int, body: bytes, secrets: Sequence[str]
) -> SignedHeaders:
    """Headers for sending ``body`` as message ``message_id`` at ``timestamp`` (Unix seconds)."""
    return SignedHeaders(message_id, timestamp, sign(message_id, timestamp, body, secrets))


def verify(
    headers: Mapping[str, str],
    body: bytes,
    secrets: Sequence[str],
    *,
    now: float,
    tolerance: int = TOLERANCE_SECONDS,
    signed_as: str = "{body}",
) -> str:
    """Check a signed message; return its ``webhook-id`` or raise WebhookVerificationError.

    ``secrets`` are the accepted secrets (several while they rotate); ``now`` is the checker's
    clock in Unix seconds.  Every error says what is wrong and how to fix it.
    """
    lowered = {k.lower(): v for k, v in headers.items()}
    message_id = lowered.get("webhook-id", "")
    stamp = lowered.get("webhook-timestamp", "")
    header = lowered.get("webhook-signature", "")
    missing = [
        name
        for name, value in (
            ("webhook-id", message_id),
            ("webhook-timestamp", stamp),
            ("webhook-signature", header),
        )
        if not value
    ]
    if missing:
        raise WebhookVerificationError(f"signed requests need the header {', '.join(missing)}")
    if not (stamp.isascii() and stamp.isdigit() and len(stamp) <= 12):
        raise WebhookVerificationError(
            f"webhook-timestamp {stamp[:20]!r} is not whole Unix seconds"
        )
    timestamp = int(stamp)
    if abs(now - timestamp) > tolerance:
        raise WebhookVerificationError(
            f"webhook-timestamp is more than {tolerance} s away from the receiver's clock; sign "
            "each message when sending it and keep your clock in sync"
        )
    if not _MESSAGE_ID.match(message_id):
        raise WebhookVerificationError("webhook-id must be 1 to 128 letters, digits, '_' or '-'")
    offered: list[bytes] = []
    for entry in header.split(" "):
        version, _, encoded = entry.partition(",")
        if version != "v1" or not encoded:
            continue
        try:
            offered.append(base64.b64decode(encoded, validate=True))
        except (binascii.Error, ValueError):
            continue
    if not offered:
        raise WebhookVerificationError("webhook-signature holds no v1,<base64> entry")
    for secret in secrets:
        try:
            key = decode_secret(secret)
        except InvalidInputError as exc:
            raise WebhookVerificationError(str(exc)) from None
        expected = base64.b64decode(_mac(key, message_id, timestamp, body))
        # Compare against every entry (no early exit on the secret loop's account).
        if any(hmac.compare_digest(expected, candidate) for candidate in offered):
            return message_id
    raise WebhookVerificationError(
        f"webhook-signature does not match; sign f'{{webhook-id}}.{{webhook-timestamp}}."
        f"{signed_as}' with HMAC-SHA256 over the exact bytes sent"
    )


def request_content(method: str, target: str, body: bytes) -> bytes:
    """What a signed API request signs: method, request target (path?query as sent) and body."""
    if not method or not method.isascii() or not method.isalpha():
        raise ValueError(f"an HTTP method is letters only, not {method!r}")
    if not target.startswith("/") or any(c in target for c in " \r\n"):
        raise ValueError(f"the request target is the path and query as sent, not {target!r}")
    return f"{method.upper()} {target}\n".encode() + body


def sign_request(
    message_id: str,
    timestamp: int,
    method: str,
    target: str,
    body: bytes,
    secrets: Sequence[str],
) -> str:
    """The ``webhook-signature`` of an API request (see :func:`request_content`)."""
    return sign(message_id, timestamp, request_content(method, target, body), secrets)


def verify_request(
    headers: Mapping[str, str],
    method: str,
    target: str,
    body: bytes,
    secrets: Sequence[str],
    *,
    now: float,
    tolerance: int = TOLERANCE_SECONDS,
) -> str:
    """Check a signed API request; return its ``webhook-id`` or raise WebhookVerificationError."""
    try:
        content = request_content(method, target, body)
    except ValueError as exc:
        raise WebhookVerificationError(str(exc)) from None
    return verify(
        headers,
        content,
        secrets,
        now=now,
        tolerance=tolerance,
        signed_as="{METHOD} {path?query}\\n{body}",
    )
