"""API keys, the inbound GCRA limiter, the idempotency store, request signing and content
erasure, each on its own (Redis and PostgreSQL are the real ones)."""

from __future__ import annotations

import json
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry
from sqlalchemy.orm import Session, sessionmaker

from shared.apikeys import (
    ApiKeyError,
    Scope,
    authenticate,
    create_api_key,
    generate_key,
    get_api_key,
    has_scope,
    hash_token,
    list_api_keys,
    normalize_allowlist,
    parse_scopes,
    parse_token,
    record_use,
    revoke_api_key,
    verify_token,
)
from shared.erasure import ERASED_NAME, erase_from_content
from shared.errors import InvalidInputError
from shared.idempotency import (
    BeginOutcome,
    IdempotencyStore,
    StoredResponse,
    fingerprint,
    validate_key,
)
from shared.ratelimit.auth_failures import AuthFailureLimit
from shared.ratelimit.inbound import InboundRateLimiter, Limit, default_burst
from shared.signing import WebhookVerificationError, generate_secret, verify
from tests.unit.api.conftest import snowflake, summary_content

# --- API keys ---------------------------------------------------------------------------------


def test_generated_keys_have_the_documented_shape() -> None:
    first, second = generate_key(), generate_key()
    assert first.token.startswith(f"sb_{first.key_id}_")
    assert first.key_id != second.key_id and first.token != second.token
    assert 8 <= len(first.key_id) <= 32 and first.key_id.isalnum()
    parsed = parse_token(first.token)
    assert parsed.key_id == first.key_id
    assert len(parsed.secret) >= 43  # 32 random bytes
    assert first.secret_hash == hash_token(first.token) and len(first.secret_hash) == 64
    assert first.token not in first.secret_hash
    assert verify_token(first.token, first.secret_hash)
    assert not verify_token(second.token, first.secret_hash)


@pytest.mark.parametrize(
    "token",
    [
        "",
        "sb_",
        "sb_abc_def",
        "xx_abcdefgh_" + "a" * 43,
        "sb_ABCDEFGH_" + "a" * 43,
        "sb_abcdefgh_short",
    ],
)
def test_malformed_tokens(token: str) -> None:
    with pytest.raises(ApiKeyError) as info:
        parse_token(token)
    assert info.value.reason == "malformed"


def test_scopes() -> None:
    assert has_scope(["admin"], Scope.JOBS_WRITE)
    assert has_scope(["jobs:write"], Scope.JOBS_WRITE)
    assert not has_scope(["summaries:read"], Scope.ADMIN)
    assert parse_scopes(["jobs:write", "jobs:write", "admin"]) == ["jobs:write", "admin"]
    with pytest.raises(InvalidInputError, match="unknown scope 'root'"):
        parse_scopes(["root"])
    with pytest.raises(InvalidInputError, match="at least one scope"):
        parse_scopes([])
    assert normalize_allowlist(["10.1.2.3/8", " 2001:db8::1 ", "10.0.0.0/8"]) == [
        "10.0.0.0/8",
        "2001:db8::1/128",
    ]


@pytest.mark.integration
def test_key_lifecycle(session_factory: sessionmaker[Session]) -> None:
    guild = snowflake()
    now = datetime.now(UTC)
    row, token = create_api_key(
        session_factory,
        guild_id=guild,
        scopes=["jobs:write"],
        name=" ci ",
        now=now,
        expires_in=timedelta(days=1),
    )
    assert row.name == "ci"
    assert authenticate(session_factory, token, now=now).id == row.id
    for bad, reason in (
        ("sb_unknown00_" + "x" * 43, "unknown"),
        (token[:-1] + ("a" if token[-1] != "a" else "b"), "wrong_secret"),
    ):
        with pytest.raises(ApiKeyError) as info:
            authenticate(session_factory, bad, now=now)
        assert info.value.reason == reason
    with pytest.raises(ApiKeyError, match="expired"):
        authenticate(session_factory, token, now=now + timedelta(days=2))
    assert record_use(session_factory, row.id, now=now)
    assert not record_use(session_factory, row.id, now=now + timedelta(seconds=30))
    assert record_use(session_factory, row.id, now=now + timedelta(seconds=61))
    stored = get_api_key(session_factory, row.id)
    assert stored is not None and stored.last_used_at == now + timedelta(seconds=61)
    assert [k.id for k in list_api_keys(session_factory, guild_id=guild)] == [row.id]
    assert row.id in {k.id for k in list_api_keys(session_factory)}
    assert revoke_api_key(session_factory, row.id, now=now)
    assert not revoke_api_key(session_factory, row.id, now=now)
    with pytest.raises(ApiKeyError, match="revoked"):
        authenticate(session_factory, token, now=now)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"guild_id": "1"}, "not a Discord id"),
        ({"name": ""}, "name"),
        ({"name": "a\nb"}, "name"),
        ({"expires_in": timedelta(0)}, "future"),
        ({"rate_limit_per_minute": 0}, "at least 1"),
        ({"scopes": ["nope"]}, "unknown scope"),
        ({"ip_allowlist": ["300.1.1.1"]}, "not an IP"),
    ],
)
def test_create_key_validation(kwargs: dict[str, Any], message: str) -> None:
    args: dict[str, Any] = {
        "guild_id": "123456789012345678",
        "scopes": ["admin"],
        "name": "ok",
        "now": datetime.now(UTC),
    } | kwargs

    def unused() -> Session:
        raise AssertionError("validation must fail before the database is used")

    with pytest.raises(InvalidInputError, match=message):
        create_api_key(unused, **args)  # type: ignore[arg-type]


# --- GCRA limiter -----------------------------------------------------------------------------


@pytest.fixture
def rclient(redis_url: str) -> Any:
    client: redis.Redis[Any] = redis.Redis.from_url(redis_url)
    prefix = f"sbtest:bb:{uuid.uuid4().hex[:8]}"
    yield client, prefix
    keys = list(client.scan_iter(match=f"{prefix}:*"))
    if keys:
        client.delete(*keys)
    client.close()


@pytest.mark.integration
def test_gcra_burst_then_steady_rate(rclient: Any) -> None:
    client, prefix = rclient
    limiter = InboundRateLimiter(client, prefix=f"{prefix}:rl")
    # One a second after a burst of 3: a loaded machine's pauses stay well inside a second.
    limit = Limit(per_minute=60, burst=3)
    started = time.monotonic()
    decisions = [limiter.hit("k", limit) for _ in range(4)]
    took = time.monotonic() - started
    assert [d.allowed for d in decisions] == [True, True, True, False]
    assert [d.remaining for d in decisions[:3]] == [2, 1, 0]
    refused = decisions[3]
    assert 1.0 - took - 0.01 < refused.retry_after <= 1.0
    assert refused.retry_after_header == "1"
    assert 3.0 - took - 0.01 < refused.reset_after <= 3.0
    time.sleep(refused.retry_after + 0.01)
    assert limiter.hit("k", limit).allowed
    assert not limiter.hit("k", limit).allowed
    assert limiter.hit("other", limit).allowed
    ttl = client.pttl(f"{prefix}:rl:k")
    assert 0 < ttl <= 4000


def test_failed_authentications_block_an_address_for_a_while(rclient: Any) -> None:
    client, prefix = rclient
    now = [600.0]
    limit = AuthFailureLimit(
        client, prefix=prefix, per_minute=2, block_seconds=30, clock=lambda: now[0], max_blocked=2
    )
    for _ in range(2):
        limit.failed("192.0.2.1")
    assert limit.blocked_for("192.0.2.1") is None  # two a minute are allowed
    limit.failed("192.0.2.1")
    assert limit.blocked_for("192.0.2.1") == 30
    assert limit.blocked_for("192.0.2.2") is None
    now[0] += 29.5
    assert limit.blocked_for("192.0.2.1") == 1
    now[0] += 1
    assert limit.blocked_for("192.0.2.1") is None  # the block ended
    # A new minute counts afresh: one failure there does not block again.
    now[0] = 660.0
    limit.failed("192.0.2.1")
    assert limit.blocked_for("192.0.2.1") is None
    # Memory holds the most recent blocks only.
    for address in ("192.0.2.3", "192.0.2.4", "192.0.2.5"):
        for _ in range(3):
            limit.failed(address)
    assert [limit.blocked_for(a) is not None for a in ("192.0.2.3", "192.0.2.4", "192.0.2.5")] == [
        False,
        True,
        True,
    ]
    # No address (a socket without one) is never counted or blocked; 0 turns the limit off.
    limit.failed(None)
    assert limit.blocked_for(None) is None
    off = AuthFailureLimit(client, prefix=prefix + ":off", per_minute=0, block_seconds=30)
    for _ in range(5):
        off.failed("192.0.2.9")
    assert off.blocked_for("192.0.2.9") is None
    assert list(client.scan_iter(match=f"{prefix}:off:*")) == []


def test_a_redis_outage_leaves_failed_authentications_uncounted() -> None:
    dead: redis.Redis[Any] = redis.Redis(
        host="127.0.0.1", port=1, socket_connect_timeout=0.2, retry=Retry(NoBackoff(), 0)
    )
    limit = AuthFailureLimit(dead, prefix="sbtest:dead", per_minute=1, block_seconds=30)
    for _ in range(3):
        limit.failed("192.0.2.1")  # logged, not raised: the request is a 401 either way
    assert limit.blocked_for("192.0.2.1") is None
    with pytest.raises(ValueError, match="per_minute"):
        AuthFailureLimit(dead, prefix="x", per_minute=-1, block_seconds=30)


def test_limits() -> None:
    assert default_burst(1) == 1
    assert default_burst(600) == 100
    with pytest.raises(ValueError, match="per_minute"):
        Limit(per_minute=0, burst=1)


# --- idempotency store ------------------------------------------------------------------------


def test_fingerprint_and_key_validation() -> None:
    a = fingerprint("post", "/v1/jobs", b'{"a": 1, "b": [1, 2]}')
    assert a == fingerprint("POST", "/v1/jobs", b'{"b":[1,2],"a":1}')
    assert a != fingerprint("POST", "/v1/jobs", b'{"a": 2, "b": [1, 2]}')
    assert a != fingerprint("POST", "/v1/schedules", b'{"a": 1, "b": [1, 2]}')
    assert fingerprint("POST", "/p", b"\xff not json") != fingerprint(
        "POST", "/p", b"\xfe not json"
    )
    assert validate_key("abc-123") == "abc-123"
    for bad in ("", "a b", "x" * 256, "é"):
        with pytest.raises(InvalidInputError, match="Idempotency-Key"):
            validate_key(bad)


@pytest.mark.integration
def test_store_claims_replays_and_releases(rclient: Any) -> None:
    client, prefix = rclient
    store = IdempotencyStore(client, prefix=f"{prefix}:idem", ttl_seconds=60, lease_seconds=5)
    claim = store.begin("key1", "k", "fp1")
    assert claim.outcome is BeginOutcome.PROCEED
    assert 0 < client.pttl(claim.record) <= 5000
    assert store.begin("key1", "k", "fp1").outcome is BeginOutcome.IN_FLIGHT
    assert store.begin("key1", "k", "fp2").outcome is BeginOutcome.MISMATCH
    assert store.begin("key2", "k", "fp1").outcome is BeginOutcome.PROCEED  # scoped per API key
    stranger = store.begin("key1", "k", "fp1")
    assert not store.release(stranger)  # only the owner may release
    assert store.complete(claim, StoredResponse(202, b'{"id": 1}', {"location": "/x"}))
    assert 55_000 < client.pttl(claim.record) <= 60_000
    replay = store.begin("key1", "k", "fp1")
    assert replay.outcome is BeginOutcome.REPLAY
    assert replay.response == StoredResponse(202, b'{"id": 1}', {"location": "/x"})
    assert not store.release(claim)  # a completed record is kept
    other = store.begin("key1", "other", "fp")
    assert store.release(other)
    assert store.begin("key1", "other", "fp").outcome is BeginOutcome.PROCEED
    assert not store.complete(stranger, StoredResponse(200, b""))


@pytest.mark.integration
def test_commands_ride_in_the_round_trip_that_stores_the_response(rclient: Any) -> None:
    client, prefix = rclient
    store = IdempotencyStore(client, prefix=f"{prefix}:idem", ttl_seconds=60, lease_seconds=5)
    queue = f"{prefix}:queue"
    stored = StoredResponse(202, b'{"id": 1}', {"location": "/x"})
    claim = store.begin("key1", "first", "fp")
    assert store.complete(claim, stored, along=[("LPUSH", queue, "one")])
    assert client.lrange(queue, 0, -1) == [b"one"]
    assert store.begin("key1", "first", "fp").response == stored
    # A server that lost its scripts (a restart) still stores the response, once.
    client.script_flush()
    claim = store.begin("key1", "second", "fp")
    assert store.complete(claim, stored, along=[("LPUSH", queue, "two")])
    assert client.lrange(queue, 0, -1) == [b"two", b"one"]
    assert store.begin("key1", "second", "fp").outcome is BeginOutcome.REPLAY
    # A command that fails is raised; the response is stored all the same.
    client.set(f"{prefix}:text", "not a list")
    claim = store.begin("key1", "third", "fp")
    with pytest.raises(redis.ResponseError, match="WRONGTYPE"):
        store.complete(claim, stored, along=[("LPUSH", f"{prefix}:text", "three")])
    assert store.begin("key1", "third", "fp").outcome is BeginOutcome.REPLAY


@pytest.mark.integration
def test_the_limit_and_the_claim_share_one_script(rclient: Any) -> None:
    client, prefix = rclient
    limiter = InboundRateLimiter(client, prefix=f"{prefix}:rl")
    store = IdempotencyStore(client, prefix=f"{prefix}:idem", ttl_seconds=60, lease_seconds=5)
    limit = Limit(per_minute=600, burst=2)
    decision, claim = limiter.hit_and_begin("key1", limit, store, "k", "fp1")
    assert decision.allowed and decision.remaining == 1
    assert claim is not None and claim.outcome is BeginOutcome.PROCEED
    assert claim.record == store.record_key("key1", "k")
    assert 0 < client.pttl(claim.record) <= 5000
    decision, again = limiter.hit_and_begin("key1", limit, store, "k", "fp2")
    assert decision.allowed and again is not None and again.outcome is BeginOutcome.MISMATCH
    # Refused by the limit: nothing is claimed, and the record of another key stays unborn.
    refused, none = limiter.hit_and_begin("key1", limit, store, "fresh", "fp1")
    assert not refused.allowed and none is None
    assert refused.retry_after > 0
    assert not client.exists(store.record_key("key1", "fresh"))
    assert store.complete(claim, StoredResponse(202, b"{}", {"location": "/x"}))
    time.sleep(refused.retry_after + 0.01)
    _decision, replay = limiter.hit_and_begin("key1", limit, store, "k", "fp1")
    assert replay is not None and replay.outcome is BeginOutcome.REPLAY
    assert replay.response == StoredResponse(202, b"{}", {"location": "/x"})


# --- request signing (the shared implementation; vectors in tests/unit/delivery) ----------------


def _headers(msg_id: str | None, stamp: str | None, signature: str | None) -> dict[str, str]:
    values = {"webhook-id": msg_id, "webhook-timestamp": stamp, "webhook-signature": signature}
    return {name: value for name, value in values.items() if value is not None}


@pytest.mark.parametrize(
    ("headers", "message"),
    [
        (_headers(None, "1", "v1,x"), "need the header webhook-id"),
        (_headers("a", None, None), "webhook-timestamp, webhook-signature"),
        (_headers("a b", "1000", "v1,x"), "webhook-id must be"),
        (_headers("a", "1.5", "v1,x"), "whole Unix seconds"),
        (_headers("a", "-5", "v1,x"), "whole Unix seconds"),
        (_headers("a", "1", "v1,x"), "away from the receiver's clock"),
        (_headers("a", "1000", "garbage"), "no v1,<base64> entry"),
        (_headers("a", "1000", "v1,"), "no v1,<base64> entry"),
        (_headers("a", "1000", "v1,ü!!"), "no v1,<base64> entry"),
        (_headers("a", "1000", "v1,AAAA"), "does not match"),
    ],
)
def test_signature_errors_say_what_to_fix(headers: dict[str, str], message: str) -> None:
    with pytest.raises(WebhookVerificationError, match=message):
        verify(headers, b"{}", [generate_secret()], now=1000)


# --- content erasure --------------------------------------------------------------------------


def test_erase_from_content_removes_the_member_everywhere() -> None:
    content = summary_content(
        "123456789012345678", "123456789012345679", member=("555555555555555555", "eve")
    )
    erased = erase_from_content(content, "555555555555555555")
    assert erased is not None
    assert "eve" not in json.dumps({k: v for k, v in erased.items() if k != "coverage"}).replace(
        ERASED_NAME, ""
    )
    assert erased["overview"].startswith(ERASED_NAME)
    assert erased["topics"] == [
        {"title": "Release", "summary": f"{ERASED_NAME} proposed Friday", "message_ids": ["902"]}
    ]
    assert erased["coverage"] == content["coverage"]
    assert erase_from_content(content, "999999999999999999") is None


def test_erase_by_author_id_and_short_names() -> None:
    content = {
        "overview": "x met y",
        "participants": [{"id": "1", "name": "x", "messages": 1}],
        "citations": {"7": {"author": "someone", "author_id": "1"}, "8": {"author": "y"}},
        "key_points": [{"text": "x said", "message_ids": ["7", "8"]}],
        "coverage": {"messages_total": 2},
    }
    erased = erase_from_content(content, "1")
    assert erased is not None
    assert erased["overview"] == "x met y"  # one-letter names are not scrubbed from prose
    assert list(erased["citations"]) == ["8"]
    assert erased["key_points"] == [{"text": "x said", "message_ids": ["8"]}]


def test_key_cache() -> None:
    from shared.apikeys import KeyCache, KeyRecord

    record = KeyRecord("abcdefgh", "1" * 18, "h", ["admin"], None, None, None, None, None)
    off = KeyCache(0)
    off.put("t", record)
    assert off.get("t") is None
    clock = [100.0]
    cache = KeyCache(0.05, max_entries=2, clock=lambda: clock[0])
    cache.put("a", record)
    assert cache.get("a") is record
    assert cache.get("b") is None
    cache.put("b", record)
    cache.put("c", record)  # over the bound: starts afresh
    assert cache.get("a") is None and cache.get("c") is record
    clock[0] += 0.05
    assert cache.get("c") is record
    clock[0] += 0.001
    assert cache.get("c") is None
