"""Inbound API keys ``sb_<id>_<secret>``: generation, hashing, verification, scopes, lifecycle.

A key is shown once, when it is created; the database keeps its public ``id``, its guild, scopes,
expiry and revocation, and a SHA-256 hash of the whole token.  A fast hash is the right tool
here: the secret is 256 random bits (``secrets.token_urlsafe(32)``), so the slow key-derivation
functions meant for guessable passwords (argon2, bcrypt) would add latency to every request and
nothing against a 2^256 search.  The id is part of the hashed text, so a hash copied onto another
row does not verify there.

Verification looks the row up by id and compares hashes with :func:`hmac.compare_digest`; an
unknown id still costs one hash and one comparison, so timing does not tell whether an id exists.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import re
import secrets
import string
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from sqlalchemy import Engine, bindparam, select, update
from sqlalchemy.orm import Session, sessionmaker

from schema.models.tenancy import ApiKey
from shared.domain.messages import is_snowflake
from shared.errors import InvalidInputError

__all__ = [
    "KEY_PREFIX",
    "ApiKeyError",
    "GeneratedKey",
    "KeyCache",
    "KeyRecord",
    "ParsedToken",
    "Scope",
    "authenticate",
    "create_api_key",
    "generate_key",
    "get_api_key",
    "has_scope",
    "hash_token",
    "key_state",
    "list_api_keys",
    "normalize_allowlist",
    "parse_scopes",
    "parse_token",
    "record_use",
    "revoke_api_key",
    "verify_token",
]

#: Every token starts with this, so secret scanners and log redaction recognise it.
KEY_PREFIX = "sb_"

_ID_ALPHABET = string.ascii_lowercase + string.digits
_ID_LENGTH = 12
_TOKEN = re.compile(r"^sb_([a-z0-9]{8,32})_([A-Za-z0-9_-]{20,128})$")
# Compared against when the id is unknown, so that path costs the same as a wrong secret.
_DUMMY_HASH = hashlib.sha256(b"summarybot unknown key").hexdigest()


class Scope(StrEnum):
    """What a key may do; ``admin`` implies every other scope."""

    JOBS_WRITE = "jobs:write"
    SUMMARIES_READ = "summaries:read"
    ADMIN = "admin"


class ApiKeyError(Exception):
    """Authentication failed.  ``reason`` is for logs and metrics; clients see one message."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class ParsedToken:
    """The two parts of a presented token."""

    key_id: str
    secret: str


@dataclass(frozen=True)
class GeneratedKey:
    """A fresh key: ``token`` is shown once, ``secret_hash`` is what gets stored."""

    key_id: str
    token: str
    secret_hash: str


@dataclass(frozen=True)
class KeyRecord:
    """What a request needs of a stored key (read without the ORM: it is on every request)."""

    id: str
    guild_id: str
    secret_hash: str
    scopes: list[str]
    ip_allowlist: list[str] | None
    signing_secret_encrypted: str | None
    rate_limit_per_minute: int | None
    expires_at: datetime | None
    revoked_at: datetime | None


# Built once: constructing a statement costs more than running it on a warm connection.
_LOAD_RECORD = select(*[getattr(ApiKey, name) for name in KeyRecord.__dataclass_fields__]).where(
    ApiKey.id == bindparam("key_id")
)


class KeyCache:
    """Verified key records kept for ``ttl`` seconds, so a busy key is not read from the
    database on every request.

    Entries are found by the SHA-256 of the whole token (the stored hash), so only a token that
    verified before can hit.  Expiry is still checked on every use; a revocation takes effect
    within ``ttl`` seconds.  ``ttl`` 0 turns the cache off.  ``clock`` gives seconds (tests pass
    their own).
    """

    def __init__(
        self,
        ttl: float,
        *,
        max_entries: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.ttl = ttl
        self._max = max_entries
        self._clock = clock
        self._entries: dict[str, tuple[float, KeyRecord]] = {}

    def get(self, token: str) -> KeyRecord | None:
        """The record cached for ``token``, or None."""
        if self.ttl <= 0:
            return None
        entry = self._entries.get(hash_token(token))
        if entry is None or self._clock() - entry[0] > self.ttl:
            return None
        return entry[1]

    def put(self, token: str, record: KeyRecord) -> None:
        """Remember a verified record."""
        if self.ttl <= 0:
            return
        if len(self._entries) >= self._max:
            self._entries.clear()  # rare; bounded memory matters more than a few misses
        self._entries[hash_token(token)] = (self._clock(), record)


def generate_key() -> GeneratedKey:
    """A new random key id and secret (256 bits), the token, and its hash."""
    key_id = "".join(secrets.choice(_ID_ALPHABET) for _ in range(_ID_LENGTH))
    token = f"{KEY_PREFIX}{key_id}_{secrets.token_urlsafe(32)}"
    return GeneratedKey(key_id=key_id, token=token, secret_hash=hash_token(token))


def parse_token(token: str) -> ParsedToken:
    """Split ``sb_<id>_<secret>``; :class:`ApiKeyError` when it does not have that shape."""
    match = _TOKEN.match(token)
    if match is None:
        raise ApiKeyError("malformed")
    return ParsedToken(key_id=match.group(1), secret=match.group(2))


def hash_token(token: str) -> str:
    """Hex SHA-256 of the whole token (id included)."""
    return hashlib.sha256(token.encode()).hexdigest()


def verify_token(token: str, stored_hash: str) -> bool:
    """True when ``token`` hashes to ``stored_hash``; compared in constant time."""
    return hmac.compare_digest(hash_token(token), stored_hash)


def has_scope(granted: Iterable[str], wanted: Scope) -> bool:
    """True when ``granted`` includes ``wanted`` or ``admin``."""
    scopes = set(granted)
    return wanted.value in scopes or Scope.ADMIN.value in scopes


def parse_scopes(values: Sequence[str]) -> list[str]:
    """Validate scope names, keep their order, drop repeats; at least one is needed."""
    known = {s.value for s in Scope}
    unknown = [v for v in values if v not in known]
    if unknown:
        raise InvalidInputError(
            f"unknown scope {unknown[0]!r}; use one or more of {', '.join(sorted(known))}"
        )
    if not values:
        raise InvalidInputError(f"give at least one scope: {', '.join(sorted(known))}")
    return list(dict.fromkeys(values))


def normalize_allowlist(values: Sequence[str]) -> list[str]:
    """Validate IP addresses or CIDR ranges and return them in canonical form."""
    networks = []
    for value in values:
        try:
            networks.append(str(ipaddress.ip_network(value.strip(), strict=False)))
        except ValueError:
            raise InvalidInputError(
                f"{value!r} is not an IP address or CIDR range; use e.g. 203.0.113.0/24"
            ) from None
    return list(dict.fromkeys(networks))


def key_state(key: ApiKey | KeyRecord, *, now: datetime) -> str:
    """``active``, ``revoked`` or ``expired``."""
    if key.revoked_at is not None:
        return "revoked"
    if key.expires_at is not None and key.expires_at <= now:
        return "expired"
    return "active"


def create_api_key(
    session_factory: sessionmaker[Session],
    *,
    guild_id: str,
    scopes: Sequence[str],
    name: str,
    now: datetime,
    expires_in: timedelta | None = None,
    ip_allowlist: Sequence[str] | None = None,
    signing_secret_encrypted: str | None = None,
    rate_limit_per_minute: int | None = None,
    created_by: str | None = None,
) -> tuple[ApiKey, str]:
    """Store a new key for ``guild_id`` and return the row and the token (shown once)."""
    if not is_snowflake(guild_id):
        raise InvalidInputError(f"guild {guild_id!r} is not a Discord id (15 to 21 digits)")
    name = name.strip()
    if not name or len(name) > 100 or not name.isprintable():
        raise InvalidInputError("the key name must be 1 to 100 printable characters")
    if expires_in is not None and expires_in <= timedelta(0):
        raise InvalidInputError("the expiry must be in the future (a positive number of days)")
    if rate_limit_per_minute is not None and rate_limit_per_minute < 1:
        raise InvalidInputError("the rate limit must be at least 1 request per minute")
    generated = generate_key()
    row = ApiKey(
        id=generated.key_id,
        guild_id=guild_id,
        name=name,
        secret_hash=generated.secret_hash,
        scopes=parse_scopes(scopes),
        ip_allowlist=normalize_allowlist(ip_allowlist) if ip_allowlist else None,
        signing_secret_encrypted=signing_secret_encrypted,
        rate_limit_per_minute=rate_limit_per_minute,
        created_by=created_by,
        created_at=now,
        expires_at=now + expires_in if expires_in is not None else None,
    )
    with session_factory() as session, session.begin():
        session.add(row)
    return row, generated.token


def get_api_key(session_factory: sessionmaker[Session], key_id: str) -> ApiKey | None:
    """The key row (detached), or None."""
    with session_factory() as session:
        return session.get(ApiKey, key_id)


def _load_record(session_factory: sessionmaker[Session], key_id: str) -> KeyRecord | None:
    bind = session_factory.kw.get("bind")
    if isinstance(bind, Engine):
        with bind.connect() as connection:
            row = connection.execute(_LOAD_RECORD, {"key_id": key_id}).one_or_none()
    else:
        with session_factory() as session:
            row = session.execute(_LOAD_RECORD, {"key_id": key_id}).one_or_none()
    return KeyRecord(*row) if row is not None else None


def authenticate(
    session_factory: sessionmaker[Session],
    token: str,
    *,
    now: datetime,
    cache: KeyCache | None = None,
) -> KeyRecord:
    """The usable key for ``token``; :class:`ApiKeyError` for malformed, unknown, wrong,
    revoked or expired keys (``reason`` says which, for logs only)."""
    parsed = parse_token(token)
    key = cache.get(token) if cache is not None else None
    if key is None:
        key = _load_record(session_factory, parsed.key_id)
        if key is None:
            verify_token(token, _DUMMY_HASH)
            raise ApiKeyError("unknown")
        if not verify_token(token, key.secret_hash):
            raise ApiKeyError("wrong_secret")
        if cache is not None and key.revoked_at is None:
            cache.put(token, key)
    state = key_state(key, now=now)
    if state != "active":
        raise ApiKeyError(state)
    return key


def list_api_keys(
    session_factory: sessionmaker[Session], *, guild_id: str | None = None
) -> list[ApiKey]:
    """Every key (of one guild when given), oldest first."""
    query = select(ApiKey).order_by(ApiKey.created_at, ApiKey.id)
    if guild_id is not None:
        query = query.where(ApiKey.guild_id == guild_id)
    with session_factory() as session:
        return list(session.scalars(query))


def revoke_api_key(session_factory: sessionmaker[Session], key_id: str, *, now: datetime) -> bool:
    """Revoke a key; False when no such key exists or it was revoked already."""
    with session_factory() as session, session.begin():
        result = session.execute(
            update(ApiKey)
            .where(ApiKey.id == key_id, ApiKey.revoked_at.is_(None))
            .values(revoked_at=now)
        )
    return bool(getattr(result, "rowcount", 0))


def record_use(
    session_factory: sessionmaker[Session],
    key_id: str,
    *,
    now: datetime,
    interval: timedelta = timedelta(minutes=1),
) -> bool:
    """Set ``last_used_at`` unless it was set less than ``interval`` ago (one write a minute
    per key at most, however busy it is).  True when the row was written."""
    with session_factory() as session, session.begin():
        result = session.execute(
            update(ApiKey)
            .where(
                ApiKey.id == key_id,
                (ApiKey.last_used_at.is_(None)) | (ApiKey.last_used_at <= now - interval),
            )
            .values(last_used_at=now)
        )
    return bool(getattr(result, "rowcount", 0))
