"""``Idempotency-Key`` for POST routes: the header dependency and the wrapper that replays.

The dependency reads the header and fingerprints the request (method, path, canonical body)
before the route runs; :func:`run_idempotent` claims the key, runs the route's work and stores a
successful response, or answers from the store without running anything.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated

import structlog
from fastapi import Depends, Header, Request
from starlette.responses import Response

from producers.api.auth import Caller
from producers.api.problems import Problem
from producers.api.resources import ApiResources
from shared.errors import InvalidInputError
from shared.idempotency import BeginOutcome, Claim, StoredResponse, fingerprint, validate_key
from shared.jobs import HeldEnqueuer
from shared.services.jobs import publish_held

__all__ = [
    "Idempotency",
    "IdempotencyKey",
    "checked_key",
    "idempotency_header",
    "idempotency_key",
    "run_claimed",
    "run_idempotent",
]

log = structlog.get_logger(__name__)

# Headers worth replaying with a stored response.
_KEPT_HEADERS = ("content-type", "location")
# Marks a stored body that is encrypted (it holds a secret shown once, e.g. a signing secret).
_SEALED = "x-summarybot-sealed"


@dataclass(frozen=True)
class IdempotencyKey:
    """A validated ``Idempotency-Key`` and the fingerprint of the request that carried it."""

    key: str
    fingerprint: str


async def idempotency_header(
    value: Annotated[
        str | None,
        Header(
            alias="Idempotency-Key",
            description=(
                "Makes the POST safe to retry: the same key with the same body returns the "
                "first response (kept 24 h); with another body 422; while the first is still "
                "running 409.  Scoped to your API key."
            ),
            examples=["5f0c8e1e-8a7e-4d0b-9a51-0f6a1c2b3d4e"],
        ),
    ] = None,
) -> str | None:
    """FastAPI dependency: the validated ``Idempotency-Key`` header (400 when malformed), or
    None; for a route that fingerprints its body itself (a streamed upload)."""
    return checked_key(value)


def checked_key(value: str | None) -> str | None:
    """An ``Idempotency-Key`` header value, validated (400 when malformed), or None."""
    if value is None:
        return None
    try:
        return validate_key(value)
    except InvalidInputError as exc:
        raise Problem(400, exc.user_message, kind="invalid-idempotency-key") from None


async def idempotency_key(
    request: Request, key: Annotated[str | None, Depends(idempotency_header)]
) -> IdempotencyKey | None:
    """FastAPI dependency: the request's idempotency key, or None without the header."""
    if key is None:
        return None
    body = await request.body()
    return IdempotencyKey(key, fingerprint(request.method, request.url.path, body))


#: A route parameter: the request's idempotency key (None without the header).
Idempotency = Annotated[IdempotencyKey | None, Depends(idempotency_key)]


def run_idempotent(
    resources: ApiResources,
    caller: Caller,
    key: IdempotencyKey | None,
    work: Callable[[], Response],
    *,
    sensitive: bool = False,
) -> Response:
    """Run ``work`` at most once per key: replay, refuse, or run and remember a 2xx.

    A ``sensitive`` response (one that shows a secret) is stored encrypted with the app's
    secret box, so Redis never holds the secret in the clear.
    """
    if key is None:
        return work()
    claim = resources.idempotency.begin(caller.key_id, key.key, key.fingerprint)
    return run_claimed(resources, claim, work, sensitive=sensitive)


def run_claimed(
    resources: ApiResources,
    claim: Claim,
    work: Callable[[], Response],
    *,
    sensitive: bool = False,
    held: HeldEnqueuer | None = None,
) -> Response:
    """:func:`run_idempotent` past the claim: answer from ``claim`` (a replay, 409 or 422),
    or run ``work`` as its owner, then store a 2xx or release the key.

    ``held``: the publications ``work`` left held (a submitted job's first stage), sent in the
    same Redis round trip as the stored response where the broker allows it.
    """
    resources.metrics.idempotency.labels(claim.outcome.value).inc()
    if claim.outcome is BeginOutcome.MISMATCH:
        raise Problem(
            422,
            "this Idempotency-Key was used with a different request; use a new key for a "
            "new request",
            kind="idempotency-key-reused",
        )
    if claim.outcome is BeginOutcome.IN_FLIGHT:
        raise Problem(
            409,
            "a request with this Idempotency-Key is still being processed; retry shortly",
            kind="idempotency-key-in-use",
            headers={"Retry-After": "1"},
        )
    if claim.outcome is BeginOutcome.REPLAY:
        assert claim.response is not None
        stored = claim.response
        headers = {**stored.headers, "Idempotent-Replayed": "true"}
        body = stored.body
        if headers.pop(_SEALED, None) is not None:
            body = resources.secret_box.decrypt(body.decode()).encode()
        return Response(content=body, status_code=stored.status_code, headers=headers)
    try:
        response = work()
    except BaseException:
        resources.idempotency.release(claim)
        if held is not None:
            _publish_anyway(resources, held)
        raise
    if 200 <= response.status_code < 300:
        kept = {name: response.headers[name] for name in _KEPT_HEADERS if name in response.headers}
        body = bytes(response.body)
        if sensitive:
            body = resources.secret_box.encrypt(body.decode()).encode()
            kept[_SEALED] = "1"
        stored = StoredResponse(response.status_code, body, kept)
        if held is None:
            resources.idempotency.complete(claim, stored)
        else:
            publish_held(
                resources.core,
                held,
                client=resources.redis,
                along=lambda commands: resources.idempotency.complete(
                    claim, stored, along=commands
                ),
            )
    else:
        resources.idempotency.release(claim)
        if held is not None:
            publish_held(resources.core, held)
    return response


def _publish_anyway(resources: ApiResources, held: HeldEnqueuer) -> None:
    """Publish a job the failed work recorded before it failed (a retry answers that job)."""
    try:
        publish_held(resources.core, held)
    except Exception as exc:  # noqa: BLE001 - handed to the sweep; the work's error is the answer
        log.warning("idempotency.publish_failed", error=type(exc).__name__)
