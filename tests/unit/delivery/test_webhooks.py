"""Standard Webhooks signing: official vectors, and the reference package verifying our output."""

from __future__ import annotations

import base64
import json
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from standardwebhooks.webhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError as RefError

from shared.errors import InvalidInputError
from shared.signing import (
    WebhookVerificationError,
    decode_secret,
    generate_secret,
    sign,
    signed_headers,
    verify,
    webhook_id_for,
)

VECTORS: dict[str, Any] = json.loads(
    (Path(__file__).parents[2] / "fixtures" / "standard_webhooks_vectors.json").read_text()
)
SIGNED = VECTORS["official_vectors"] + VECTORS["derived_vectors_not_upstream_constants"]


@pytest.mark.parametrize("vector", SIGNED, ids=lambda v: v["name"])
def test_official_and_derived_vectors(vector: dict[str, Any]) -> None:
    secret = vector.get("whsec_form", vector["secret"])
    body = vector["payload"].encode()
    assert (
        sign(vector["msg_id"], vector["timestamp"], body, [secret])
        == (vector["expected_signature"])
    )
    # Without the prefix the secret is the same key.
    assert (
        sign(vector["msg_id"], vector["timestamp"], body, [vector["secret"]])
        == (vector["expected_signature"])
    )
    headers = {
        "webhook-id": vector["msg_id"],
        "webhook-timestamp": str(vector["timestamp"]),
        "webhook-signature": vector["expected_signature"],
    }
    assert verify(headers, body, [secret], now=vector["timestamp"]) == vector["msg_id"]


@pytest.mark.parametrize(
    "case",
    [c for c in VECTORS["negative_cases"] if "webhook_signature_header" in c and "secret" in c],
    ids=lambda c: c["name"],
)
def test_negative_vectors_are_rejected(case: dict[str, Any]) -> None:
    headers = {
        "webhook-id": case["msg_id"],
        "webhook-timestamp": "1614265330",
        "webhook-signature": case["webhook_signature_header"],
    }
    with pytest.raises(WebhookVerificationError):
        verify(headers, case["payload"].encode(), [case["secret"]], now=1614265330)


@pytest.mark.parametrize(
    "header",
    ["v1,", "garbage", "v1,a,b", "v1,!!!", "v2,Ceo5qEr07ixe2NLpvHk3FH9bwy/WavXrAFQ/9tdO6mc=", ""],
)
def test_malformed_headers_raise_our_error_only(header: str) -> None:
    vector = VECTORS["official_vectors"][0]
    headers = {
        "webhook-id": vector["msg_id"],
        "webhook-timestamp": str(vector["timestamp"]),
        "webhook-signature": header,
    }
    with pytest.raises(WebhookVerificationError):
        verify(headers, vector["payload"].encode(), [vector["secret"]], now=vector["timestamp"])


def test_multi_signature_header_with_decoys_verifies() -> None:
    vector = VECTORS["official_vectors"][0]
    decoys = VECTORS["multi_signature"]["decoys"]
    header = " ".join([*decoys, vector["expected_signature"]])
    headers = {
        "webhook-id": vector["msg_id"],
        "webhook-timestamp": str(vector["timestamp"]),
        "webhook-signature": header,
    }
    assert verify(headers, vector["payload"].encode(), [vector["secret"]], now=vector["timestamp"])


def test_timestamp_tolerance_both_ways() -> None:
    secret = generate_secret()
    headers = signed_headers("msg_1", 1_000_000, b"{}", [secret]).as_dict()
    assert verify(headers, b"{}", [secret], now=1_000_000 + 300) == "msg_1"
    assert verify(headers, b"{}", [secret], now=1_000_000 - 300) == "msg_1"
    with pytest.raises(WebhookVerificationError, match="more than 300 s away"):
        verify(headers, b"{}", [secret], now=1_000_000 + 301)
    with pytest.raises(WebhookVerificationError, match="more than 300 s away"):
        verify(headers, b"{}", [secret], now=1_000_000 - 301)
    bad = {**headers, "webhook-timestamp": "161426533.0"}
    with pytest.raises(WebhookVerificationError, match="whole Unix seconds"):
        verify(bad, b"{}", [secret], now=1_000_000)


def test_missing_headers_and_tampering() -> None:
    secret = generate_secret()
    headers = signed_headers("msg_1", 5, b'{"a":1}', [secret]).as_dict()
    with pytest.raises(WebhookVerificationError, match="need the header webhook-timestamp"):
        verify({"webhook-id": "msg_1"}, b'{"a":1}', [secret], now=5)
    with pytest.raises(WebhookVerificationError, match="does not match"):
        verify(headers, b'{"a":2}', [secret], now=5)
    with pytest.raises(WebhookVerificationError, match="does not match"):
        verify({**headers, "webhook-id": "msg_2"}, b'{"a":1}', [secret], now=5)
    with pytest.raises(WebhookVerificationError, match="does not match"):
        verify(headers, b'{"a":1}', [generate_secret()], now=5)
    with pytest.raises(WebhookVerificationError, match="webhook-id must be"):
        verify({**headers, "webhook-id": "msg.1"}, b'{"a":1}', [secret], now=5)
    with pytest.raises(WebhookVerificationError, match="empty"):
        verify(headers, b'{"a":1}', ["whsec_"], now=5)


def test_reference_package_verifies_what_we_send_with_rotated_secrets() -> None:
    old, new = generate_secret(), generate_secret()
    body = json.dumps({"type": "summary.completed", "data": {"é": "ü"}}, ensure_ascii=False)
    now = int(time.time())
    headers = signed_headers("msg_abc", now, body.encode(), [new, old]).as_dict()
    assert len(headers["webhook-signature"].split(" ")) == 2
    # Receivers on either secret accept the message during the rotation window.
    for secret in (old, new):
        assert Webhook(secret).verify(body.encode(), headers) == json.loads(body)
    with pytest.raises(RefError):
        Webhook(generate_secret()).verify(body.encode(), headers)


def test_reference_package_signs_like_us() -> None:
    secret = generate_secret(nbytes=64)
    when = datetime(2026, 1, 1, tzinfo=UTC)
    ours = sign("msg_x", int(when.timestamp()), b'{"k":"v"}', [secret])
    assert ours == Webhook(secret).sign("msg_x", when, '{"k":"v"}')


def test_secrets_and_ids() -> None:
    secret = generate_secret()
    assert secret.startswith("whsec_")
    assert len(decode_secret(secret)) == 32
    assert len(decode_secret(generate_secret(nbytes=24))) == 24
    with pytest.raises(ValueError, match="24-64"):
        generate_secret(nbytes=8)
    for empty in ("", "whsec_", "   "):
        with pytest.raises(InvalidInputError, match="empty"):
            decode_secret(empty)
    with pytest.raises(InvalidInputError, match="not base64"):
        decode_secret("whsec_***")
    with pytest.raises(InvalidInputError, match="no signing secret"):
        sign("msg_1", 1, b"", [])
    for bad_ts in (-161426533, 1.5, True):
        with pytest.raises(ValueError, match="whole non-negative"):
            sign("msg_1", bad_ts, b"", [secret])  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"no '\.'"):
        sign("msg.1", 1, b"", [secret])
    import uuid

    delivery = uuid.UUID("12345678-1234-5678-1234-567812345678")
    assert webhook_id_for(delivery) == "msg_12345678123456781234567812345678"
    assert webhook_id_for(str(delivery)) == webhook_id_for(delivery)
    # Identical secrets produce one entry, not two.
    assert sign("msg_1", 1, b"", [secret, secret]).count("v1,") == 1
    assert base64.b64decode(sign("msg_1", 1, b"", [secret])[3:])
