"""Secrets at rest: webhook signing secrets, custom auth headers and tokens, encrypted with
MultiFernet so keys can be rotated (new key first; old keys still decrypt until re-encrypted).

Keys come from ``SECRET_KEYS`` (comma-separated Fernet keys, newest first).  Without it, the
embedded mode creates one key in ``SUMMARYBOT_DATA_DIR/secret.key`` (mode 0600) on first use, so
a single-box install works out of the box; a Redis/PostgreSQL deployment must set it.
"""

from __future__ import annotations

import os

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

from shared.errors import ConfigError
from shared.settings import Settings, ensure_data_dir

__all__ = ["SecretBox", "deferred_secret_box", "generate_key", "secret_box"]


def generate_key() -> str:
    """A new random Fernet key (url-safe base64, 32 bytes)."""
    return Fernet.generate_key().decode()


class SecretBox:
    """Encrypts with the first key, decrypts with any; :meth:`rotate` moves to the first."""

    def __init__(self, keys: list[str]) -> None:
        if not keys:
            raise ConfigError(
                "SECRET_KEYS: no key given; generate one with `summarybot rotate-keys --generate`"
            )
        try:
            self._fernet = MultiFernet([Fernet(k.encode()) for k in keys])
        except ValueError:
            raise ConfigError(
                "SECRET_KEYS: a key is not a valid Fernet key (32 url-safe "
                "base64-encoded bytes); generate one with "
                "`summarybot rotate-keys --generate`"
            ) from None

    def encrypt(self, plaintext: str) -> str:
        """Encrypt ``plaintext`` under the newest key."""
        return self._fernet.encrypt(plaintext.encode()).decode()

    def decrypt(self, token: str) -> str:
        """Decrypt a token made with any configured key."""
        try:
            return self._fernet.decrypt(token.encode()).decode()
        except InvalidToken:
            raise ConfigError(
                "a stored secret cannot be decrypted with SECRET_KEYS; was a key "
                "removed before `summarybot rotate-keys` re-encrypted it?"
            ) from None

    def rotate(self, token: str) -> str:
        """Re-encrypt ``token`` under the newest key (no-op in meaning, new ciphertext)."""
        try:
            return self._fernet.rotate(token.encode()).decode()
        except InvalidToken:
            raise ConfigError("a stored secret cannot be decrypted with SECRET_KEYS") from None


def _local_key(settings: Settings) -> str:
    path = settings.data_dir / "secret.key"
    if path.exists():
        return path.read_text().strip()
    ensure_data_dir(settings)
    key = generate_key()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(key + "\n")
    return key


def secret_box(settings: Settings) -> SecretBox:
    """The box for these settings (``SECRET_KEYS``, or the embedded mode's local key file)."""
    keys = [k.get_secret_value() for k in settings.secret_keys]
    if not keys:
        if not settings.embedded:
            raise ConfigError(
                "SECRET_KEYS: required with REDIS_URL set (every process must "
                "share the keys); generate one with "
                "`summarybot rotate-keys --generate`"
            )
        keys = [_local_key(settings)]
    return SecretBox(keys)


class _DeferredBox(SecretBox):
    """A :class:`SecretBox` whose keys are read on first use, not at construction."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._box: SecretBox | None = None

    def _real(self) -> SecretBox:
        if self._box is None:
            self._box = secret_box(self._settings)
        return self._box

    def encrypt(self, plaintext: str) -> str:
        """Encrypt ``plaintext`` under the newest key."""
        return self._real().encrypt(plaintext)

    def decrypt(self, token: str) -> str:
        """Decrypt a token made with any configured key."""
        return self._real().decrypt(token)

    def rotate(self, token: str) -> str:
        """Re-encrypt ``token`` under the newest key."""
        return self._real().rotate(token)


def deferred_secret_box(settings: Settings) -> SecretBox:
    """The box for ``settings``, reading keys only when a secret is first used.

    Worker processes that never touch a stored secret (terminal and file deliveries) then run
    without ``SECRET_KEYS``; the first one that does gets the clear ``ConfigError``.
    """
    return _DeferredBox(settings)
