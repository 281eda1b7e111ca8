"""``Idempotency-Key`` records for POST requests, kept in Redis for 24 hours.

Semantics (Stripe and ``draft-ietf-httpapi-idempotency-key-header``), scoped per API key:

* first request with a key: recorded as *in progress* under a short lease, then executed; a
  successful (2xx) response is stored and kept for 24 h;
* same key, same request (method, path and canonical JSON body): the stored response is
  replayed byte for byte;
* same key, different request: refused (422), nothing runs;
* same key while the first is still running: refused (409), nothing runs;
* a request that did not succeed releases the key, so the client may retry with it.

The lease bounds how long a crashed request blocks its key (its record expires instead of
answering 409 for a day).  Records are Redis hashes changed by small Lua scripts, so two API
replicas receiving the same key at once cannot both run it.

Key layout (prefix ``P``; the client's key is hashed, so any printable key is safe)::

    P:{scope}:{sha256(idempotency key)}   HASH state, fp, owner, status, headers, body
"""

from __future__ import annotations

import hashlib
import json
import secrets
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from redis.exceptions import NoScriptError

from shared.errors import InvalidInputError

if TYPE_CHECKING:
    from redis import Redis

__all__ = [
    "MAX_KEY_LENGTH",
    "BeginOutcome",
    "Claim",
    "IdempotencyStore",
    "StoredResponse",
    "begin_script",
    "fingerprint",
    "validate_key",
]

MAX_KEY_LENGTH = 255

# KEYS[1] the record; ARGV: fingerprint, owner, lease (ms).  Returns {'new'} when claimed, else
# the record's state, fp, status, headers and body.
_BEGIN = """
local rec = redis.call('HMGET', KEYS[1], 'state', 'fp', 'status', 'headers', 'body')
if rec[1] then
  return rec
end
redis.call('HSET', KEYS[1], 'state', 'in_progress', 'fp', ARGV[1], 'owner', ARGV[2])
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return {'new'}
"""

_COMPLETE = """
if redis.call('HGET', KEYS[1], 'owner') ~= ARGV[1] then
  return 0
end
redis.call('HSET', KEYS[1], 'state', 'done', 'status', ARGV[2], 'headers', ARGV[3], 'body', ARGV[4])
redis.call('PEXPIRE', KEYS[1], ARGV[5])
return 1
"""

_RELEASE = """
if redis.call('HGET', KEYS[1], 'owner') == ARGV[1]
   and redis.call('HGET', KEYS[1], 'state') == 'in_progress' then
  return redis.call('DEL', KEYS[1])
end
return 0
"""


def begin_script() -> str:
    """The Lua body that claims a record (``KEYS[1]``; ``ARGV``: fingerprint, owner, lease in
    ms), for a script that claims after other checks (:mod:`shared.ratelimit.inbound`); its
    reply is what :meth:`IdempotencyStore.claim_from` reads."""
    return _BEGIN


def validate_key(value: str) -> str:
    """Check an ``Idempotency-Key`` header: 1 to 255 printable ASCII characters."""
    if not value or len(value) > MAX_KEY_LENGTH:
        raise InvalidInputError(
            f"Idempotency-Key must be 1 to {MAX_KEY_LENGTH} characters; a UUID is a good choice"
        )
    if not all(0x20 < ord(ch) < 0x7F for ch in value):
        raise InvalidInputError(
            "Idempotency-Key may only hold printable ASCII without spaces; a UUID is a good choice"
        )
    return value


def fingerprint(method: str, path: str, body: bytes) -> str:
    """SHA-256 of the request: method, path and the body (JSON canonicalised when it parses),
    so the same document with other whitespace or key order counts as the same request."""
    try:
        canonical = json.dumps(
            json.loads(body), sort_keys=True, separators=(",", ":"), ensure_ascii=False
        ).encode("utf-8", "surrogatepass")
    except (ValueError, UnicodeDecodeError, RecursionError):
        canonical = body
    digest = hashlib.sha256()
    for part in (method.upper().encode(), path.encode(), canonical):
        digest.update(len(part).to_bytes(8, "big"))
        digest.update(part)
    return digest.hexdigest()


@dataclass(frozen=True)
class StoredResponse:
    """A response to replay: status code, the headers worth keeping, and the body bytes."""

    status_code: int
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)


class BeginOutcome(StrEnum):
    """What :meth:`IdempotencyStore.begin` found."""

    PROCEED = "proceed"
    REPLAY = "replay"
    IN_FLIGHT = "in_flight"
    MISMATCH = "mismatch"


@dataclass(frozen=True)
class Claim:
    """The result of :meth:`IdempotencyStore.begin`.

    With ``PROCEED`` the caller owns the key (``owner``) and must :meth:`~IdempotencyStore.
    complete` or :meth:`~IdempotencyStore.release` it; with ``REPLAY`` ``response`` is set.
    """

    outcome: BeginOutcome
    record: str
    owner: str = ""
    response: StoredResponse | None = None


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class IdempotencyStore:
    """Idempotency records of one service in one Redis database."""

    def __init__(
        self,
        redis: Redis[Any],
        *,
        prefix: str = "sb:api:idem",
        ttl_seconds: int = 24 * 3600,
        lease_seconds: int = 120,
    ) -> None:
        self._redis = redis
        self._prefix = prefix
        self._ttl_ms = ttl_seconds * 1000
        self._lease_ms = lease_seconds * 1000
        self._begin = redis.register_script(_BEGIN)
        self._complete = redis.register_script(_COMPLETE)
        # What Redis names the script by (EVALSHA), not a security hash.
        self._complete_sha = hashlib.sha1(_COMPLETE.encode(), usedforsecurity=False).hexdigest()
        self._release = redis.register_script(_RELEASE)

    def record_key(self, scope: str, key: str) -> str:
        """The Redis key of ``key`` under ``scope`` (e.g. the API key id)."""
        return f"{self._prefix}:{scope}:{hashlib.sha256(key.encode()).hexdigest()}"

    def begin(self, scope: str, key: str, request_fingerprint: str) -> Claim:
        """Claim ``key`` for a request, or report the replay, mismatch or conflict."""
        record, args = self.begin_args(scope, key, request_fingerprint)
        raw: Any = self._begin(keys=[record], args=args)
        return self.claim_from(record, args, raw)

    def begin_args(
        self, scope: str, key: str, request_fingerprint: str
    ) -> tuple[str, list[str | int]]:
        """The record key and the ``ARGV`` of :func:`begin_script` for a new claim (with a fresh
        owner token)."""
        owner = secrets.token_hex(16)
        return self.record_key(scope, key), [request_fingerprint, owner, self._lease_ms]

    @staticmethod
    def claim_from(record: str, args: list[str | int], raw: Any) -> Claim:
        """The :class:`Claim` for the reply ``raw`` of :func:`begin_script` run with ``args``
        (from :meth:`begin_args`)."""
        request_fingerprint, owner = str(args[0]), str(args[1])
        values = list(raw)
        if len(values) == 1:
            return Claim(BeginOutcome.PROCEED, record, owner=owner)
        state, fp, status, headers, body = values
        if _text(fp) != request_fingerprint:
            return Claim(BeginOutcome.MISMATCH, record)
        if _text(state) != "done":
            return Claim(BeginOutcome.IN_FLIGHT, record)
        body_bytes = body if isinstance(body, bytes) else str(body).encode()
        stored = StoredResponse(
            status_code=int(_text(status)),
            body=body_bytes,
            headers=json.loads(_text(headers)),
        )
        return Claim(BeginOutcome.REPLAY, record, response=stored)

    def complete(
        self,
        claim: Claim,
        response: StoredResponse,
        *,
        along: Sequence[tuple[str | bytes | int, ...]] = (),
    ) -> bool:
        """Store the response of a claimed request for the retention period.

        ``along``: Redis commands to send first, in the same round trip (a job's publication,
        see :meth:`shared.jobs.HeldEnqueuer.release_as_commands`); the first of them that
        fails is raised, after the response is stored.
        """
        args = [
            claim.owner,
            response.status_code,
            json.dumps(response.headers),
            response.body,
            self._ttl_ms,
        ]
        if not along:
            raw: Any = self._complete(keys=[claim.record], args=args)
            return bool(int(raw))
        pipe: Any = self._redis.pipeline(transaction=False)
        for command in along:
            pipe.execute_command(*command)
        # EVALSHA, not the script object: in a pipeline redis-py would first ask whether the
        # script exists, a round trip of its own.
        pipe.evalsha(self._complete_sha, 1, claim.record, *args)
        *sent, raw = pipe.execute(raise_on_error=False)
        if isinstance(raw, NoScriptError):  # the server lost its scripts (restart, flush)
            raw = self._complete(keys=[claim.record], args=args)
        elif isinstance(raw, Exception):
            raise raw
        for result in sent:
            if isinstance(result, Exception):
                raise result
        return bool(int(raw))

    def release(self, claim: Claim) -> bool:
        """Forget a claimed request that did not succeed, so the key can be used again."""
        raw: Any = self._release(keys=[claim.record], args=[claim.owner])
        return bool(int(raw))
