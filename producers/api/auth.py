"""Authentication dependencies: API key, IP allowlist, signed requests, rate limit, scopes.

Every ``/v1`` route depends on :func:`require_scope`, which runs, in order:

1. the bearer token ``sb_<id>_<secret>``: looked up by id, hash compared in constant time;
   a malformed, unknown or wrong key gets the same 401; a revoked or expired one (whose caller
   proved they hold the secret) is told which.  A verified key is trusted for
   ``ApiOptions.key_cache_seconds`` (1 s) before it is read again;
2. the key's IP allowlist, when it has one (403);
3. the Standard Webhooks signature, when the key has a signing secret (401), over method,
   path and query as well as the body (:func:`shared.signing.request_content`), with each
   ``webhook-id`` accepted once within the tolerance window;
4. the key's rate limit (429 with ``Retry-After``);
5. ``last_used_at``, written at most once a minute per key (a Redis mark gates the write);
6. the scope the route needs (403).

The blocking part runs in one worker-thread hop.
"""

from __future__ import annotations

import ipaddress
import math
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import timedelta

import structlog
from fastapi import Request
from starlette.concurrency import run_in_threadpool

from producers.api.problems import Problem
from producers.api.resources import ApiResources, get_resources
from shared import signing
from shared.apikeys import ApiKeyError, KeyRecord, Scope, authenticate, has_scope, record_use
from shared.errors import ConfigError
from shared.idempotency import Claim
from shared.ratelimit.inbound import Decision, Limit, default_burst
from shared.services.core import Actor

__all__ = [
    "SECURITY_SCHEME",
    "Caller",
    "Credentials",
    "admit",
    "admit_with_claim",
    "admitted",
    "authenticate_credentials",
    "authenticate_request",
    "caller_of",
    "check_scope",
    "rate_limit_headers",
    "request_credentials",
    "require_scope",
    "verify_credentials",
]

log = structlog.get_logger("summarybot.api")

#: The OpenAPI security scheme every ``/v1`` operation requires.
SECURITY_SCHEME = {
    "type": "http",
    "scheme": "bearer",
    "bearerFormat": "sb_<id>_<secret>",
    "description": "An API key from `summarybot keys create`, sent as `Authorization: Bearer ...`.",
}

_INVALID = 'Bearer realm="summarybot", error="invalid_token"'


@dataclass(frozen=True)
class Caller:
    """The authenticated key behind a request: its id, its one guild, its scopes, and the
    rate limit's answer that admitted the request (None before admission)."""

    key_id: str
    guild_id: str
    scopes: frozenset[str]
    rate: Decision | None = field(default=None, compare=False)

    @property
    def actor(self) -> Actor:
        """Who the application services see acting: this key, inside its one guild."""
        return Actor(origin="api", guild_id=self.guild_id, requested_by=f"api:{self.key_id}")


#: Failures that a caller without a key of its own makes; they count against its address.
_GUESSES = frozenset({"malformed", "unknown", "wrong_secret"})


def _unauthorized(detail: str) -> Problem:
    return Problem(401, detail, headers={"WWW-Authenticate": _INVALID})


def _check_ip(key: KeyRecord, client_host: str | None) -> None:
    if not key.ip_allowlist:
        return
    try:
        address = ipaddress.ip_address(client_host or "")
    except ValueError:
        address = None
    if address is not None:
        for network in key.ip_allowlist:
            if address in ipaddress.ip_network(network, strict=False):
                return
    raise Problem(
        403,
        f"this API key only accepts requests from its allowed addresses, not from {client_host}",
        kind="ip-not-allowed",
    )


@dataclass(frozen=True)
class SignedParts:
    """What a signed request's signature covers: its headers, method, target and body."""

    headers: Mapping[str, str]
    method: str
    target: str
    body: bytes


def _check_signature(resources: ApiResources, key: KeyRecord, signed: SignedParts | None) -> None:
    if key.signing_secret_encrypted is None:
        return
    if signed is None:
        resources.metrics.auth_failures.labels("bad_signature").inc()
        raise _unauthorized(
            "this API key requires signed requests, and an upload's body is streamed, not "
            "signed; upload with a key made without --sign-requests"
        )
    try:
        secret = resources.secret_box.decrypt(key.signing_secret_encrypted)
    except ConfigError:
        log.error("api.signing_secret_unreadable", key_id=key.id)
        raise Problem(
            500, "this key's signing secret cannot be read; ask the operator to re-issue the key"
        ) from None
    now = resources.clock()
    try:
        msg_id = signing.verify_request(
            signed.headers,
            signed.method,
            signed.target,
            signed.body,
            [secret],
            now=now.timestamp(),
        )
    except signing.WebhookVerificationError as exc:
        resources.metrics.auth_failures.labels("bad_signature").inc()
        raise _unauthorized(f"this API key requires signed requests: {exc}") from None
    seen = f"{resources.options.redis_prefix}:sig:{key.id}:{msg_id}"
    if not resources.redis.set(seen, 1, nx=True, ex=2 * signing.TOLERANCE_SECONDS):
        resources.metrics.auth_failures.labels("replayed_signature").inc()
        raise _unauthorized("this webhook-id was used already; give every request a new id")


def _limit(resources: ApiResources, key: KeyRecord) -> Limit:
    per_minute = key.rate_limit_per_minute or resources.options.default_rate_limit_per_minute
    return Limit(per_minute, default_burst(per_minute))


def rate_limit_headers(decision: Decision) -> dict[str, str]:
    """The ``RateLimit-*`` headers of a request the key's limit decided: requests a minute,
    how many more fit right now, and in how many seconds the burst is whole again."""
    return {
        "RateLimit-Limit": str(decision.limit.per_minute),
        "RateLimit-Remaining": str(decision.remaining),
        "RateLimit-Reset": str(math.ceil(decision.reset_after)),
    }


def _refuse_rate(resources: ApiResources, decision: Decision) -> None:
    if decision.allowed:
        return
    per_minute = decision.limit.per_minute
    resources.metrics.rate_limited.inc()
    raise Problem(
        429,
        f"this API key is limited to {per_minute} requests per minute; "
        f"retry after {decision.retry_after_header} s",
        headers={"Retry-After": decision.retry_after_header, **rate_limit_headers(decision)},
    )


def admit_with_claim(
    resources: ApiResources, key: KeyRecord, idempotency_key: str, request_fingerprint: str
) -> tuple[Claim, Decision]:
    """Steps 4 and 5 for a verified ``key`` (:func:`verify_credentials`), claiming the
    request's ``Idempotency-Key`` in the rate limit's round trip; 429 as a :class:`Problem`
    (and nothing claimed).  The claim, and the rate limit's answer."""
    decision, claim = resources.limiter.hit_and_begin(
        key.id, _limit(resources, key), resources.idempotency, idempotency_key, request_fingerprint
    )
    _refuse_rate(resources, decision)
    assert claim is not None  # allowed
    _touch(resources, key)
    return claim, decision


def caller_of(key: KeyRecord, rate: Decision | None = None) -> Caller:
    """The :class:`Caller` a verified key makes (``rate``: the answer that admitted it)."""
    return Caller(key_id=key.id, guild_id=key.guild_id, scopes=frozenset(key.scopes), rate=rate)


def _touch(resources: ApiResources, key: KeyRecord) -> None:
    interval = timedelta(seconds=resources.options.last_used_interval_seconds)
    now = resources.clock()
    known = resources.used_marks.get(key.id)
    if known is not None and now < known:
        return
    resources.used_marks[key.id] = now + interval
    mark = f"{resources.options.redis_prefix}:used:{key.id}"
    if resources.redis.set(mark, 1, nx=True, ex=interval):
        record_use(resources.session_factory, key.id, now=now, interval=interval)


@dataclass(frozen=True)
class Credentials:
    """What a request presents to authenticate: its bearer token, the client's address, and
    what its signature covers (None for a streamed upload, whose body is not read first)."""

    token: str
    client_host: str | None
    signed: SignedParts | None


def authenticate_credentials(resources: ApiResources, credentials: Credentials) -> Caller:
    """Steps 1 to 5 of the module docstring for ``credentials`` (blocking: run it in a worker
    thread); 401/403/429 as a :class:`Problem`."""
    key = verify_credentials(resources, credentials)
    return caller_of(key, admit(resources, key))


def verify_credentials(resources: ApiResources, credentials: Credentials) -> KeyRecord:
    """Steps 1 to 3 of the module docstring (blocking); 401/403 as a :class:`Problem`.  The
    key is not yet admitted: :func:`admit` or :func:`admit_with_claim` must follow."""
    token = credentials.token
    blocked = resources.auth_failures.blocked_for(credentials.client_host)
    if blocked is not None:
        resources.metrics.rate_limited.inc()
        raise Problem(
            429,
            "too many requests with an invalid API key came from this address; retry after "
            f"{blocked} s with a valid key",
            headers={"Retry-After": str(blocked)},
        )
    try:
        key = authenticate(
            resources.session_factory, token, now=resources.clock(), cache=resources.key_cache
        )
    except ApiKeyError as exc:
        resources.metrics.auth_failures.labels(exc.reason).inc()
        if exc.reason in _GUESSES:
            resources.auth_failures.failed(credentials.client_host)
        if exc.reason == "revoked":
            raise _unauthorized(
                "this API key was revoked; create a new one with `summarybot keys create`"
            ) from None
        if exc.reason == "expired":
            raise _unauthorized(
                "this API key has expired; create a new one with `summarybot keys create`"
            ) from None
        raise _unauthorized(
            "invalid API key; send Authorization: Bearer sb_<id>_<secret>"
        ) from None
    _check_ip(key, credentials.client_host)
    _check_signature(resources, key, credentials.signed)
    return key


def admit(resources: ApiResources, key: KeyRecord) -> Decision:
    """Steps 4 and 5 for a verified ``key`` (blocking); 429 as a :class:`Problem`.  The rate
    limit's answer."""
    decision = resources.limiter.hit(key.id, _limit(resources, key))
    _refuse_rate(resources, decision)
    _touch(resources, key)
    return decision


def check_scope(caller: Caller, scopes: tuple[Scope, ...]) -> None:
    """Step 6: 403 unless ``caller`` has one of ``scopes``."""
    if not any(has_scope(caller.scopes, scope) for scope in scopes):
        raise Problem(
            403,
            f"this API key lacks the {' or '.join(s.value for s in scopes)} scope; create a "
            f"key with `summarybot keys create --scope {scopes[0].value}`",
            kind="insufficient-scope",
        )


def request_target(request: Request) -> str:
    """The path and query as the client sent them on the request line (percent-escapes kept)."""
    raw = request.scope.get("raw_path") or request.url.path.encode()
    target = bytes(raw).decode("latin-1")
    query = bytes(request.scope.get("query_string") or b"").decode("latin-1")
    return f"{target}?{query}" if query else target


def _bearer_token(request: Request) -> str | None:
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    token = token.strip()
    return token if scheme.lower() == "bearer" and token else None


async def request_credentials(
    request: Request, resources: ApiResources, *, streamed: bool = False
) -> Credentials:
    """The request's :class:`Credentials` (401 without a bearer token); reads the body unless
    ``streamed``."""
    token = _bearer_token(request)
    if token is None:
        resources.metrics.auth_failures.labels("missing").inc()
        raise Problem(
            401,
            "this endpoint needs an API key: send Authorization: Bearer sb_<id>_<secret>",
            headers={"WWW-Authenticate": 'Bearer realm="summarybot"'},
        )
    headers = {
        name: request.headers.get(name, "")
        for name in ("webhook-id", "webhook-timestamp", "webhook-signature")
    }
    signed = (
        None
        if streamed
        else SignedParts(headers, request.method, request_target(request), await request.body())
    )
    client_host = request.client.host if request.client else None
    return Credentials(token, client_host, signed)


async def authenticate_request(request: Request, *, streamed: bool = False) -> Caller:
    """The caller of an authenticated request (401/403/429 otherwise).

    ``streamed``: the route reads the body itself, as it arrives (an upload); it is not read
    here, so a key that requires signed requests is refused.
    """
    resources = await get_resources(request)
    credentials = await request_credentials(request, resources, streamed=streamed)
    caller = await run_in_threadpool(authenticate_credentials, resources, credentials)
    admitted(request, caller)
    return caller


def admitted(request: Request, caller: Caller) -> None:
    """Record the admitted ``caller`` on ``request``: its key id for the access log, and the
    rate limit's answer for the ``RateLimit-*`` headers of whatever the request answers
    (:class:`producers.api.middleware.MetricsMiddleware` adds them)."""
    structlog.contextvars.bind_contextvars(api_key_id=caller.key_id)
    if caller.rate is not None:
        request.state.rate_limit = caller.rate


def require_scope(*scopes: Scope, streamed: bool = False) -> Callable[[Request], Awaitable[Caller]]:
    """A dependency that authenticates and then requires one of ``scopes``.

    One flat dependency taking only the request: FastAPI's dependency resolution costs time on
    every call, and this runs on every request.  The OpenAPI security scheme is declared by the
    app factory instead of by a ``Security`` parameter.
    """

    async def dependency(request: Request) -> Caller:
        caller = await authenticate_request(request, streamed=streamed)
        check_scope(caller, scopes)
        return caller

    return dependency
