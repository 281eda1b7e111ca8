"""Where the bot token comes from, so that rotating it takes effect without a restart.

:class:`FileToken` re-reads a secret file (a Kubernetes/Docker secret mount) whenever its
modification time or size changes; :class:`StaticToken` holds a token from settings.  Both
expose :meth:`TokenSource.current`, called before every request, and never show the token in
``repr``.  The rate limiter and the dead-token flag use :func:`token_id`, a fingerprint, so a
rotated token starts with a clean slate while the old one stays marked dead.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

from pydantic import SecretStr

from shared.discord.routes import secret_fingerprint
from shared.secret_file import SecretFile

__all__ = ["FileToken", "StaticToken", "TokenSource", "token_id"]


def token_id(token: str) -> str:
    """Fingerprint naming a token in Redis keys and logs (never the token itself)."""
    return secret_fingerprint(token)


class TokenSource(Protocol):
    """Gives the bot token to use for the next request (``None``: no token configured)."""

    def current(self) -> str | None:
        """The token to send now."""
        ...


class StaticToken:
    """A fixed token (from settings or a test)."""

    __slots__ = ("_token",)

    def __init__(self, token: SecretStr | str | None) -> None:
        self._token = token if isinstance(token, SecretStr) or token is None else SecretStr(token)

    def current(self) -> str | None:
        """The token, or ``None`` when none was given."""
        return None if self._token is None else self._token.get_secret_value().strip() or None

    def __repr__(self) -> str:
        return "StaticToken(**********)"


class FileToken:
    """A token read from a file, re-read whenever the file changes (rotation without restart)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._file = SecretFile(
            path,
            what="Discord token file",
            fix="mount the secret there, or set DISCORD_TOKEN instead of DISCORD_TOKEN_FILE",
        )

    def current(self) -> str | None:
        """The file's token (stripped); raises :class:`ConfigError` if the file is unreadable."""
        return self._file.read() or None

    def __repr__(self) -> str:
        return f"FileToken({str(self.path)!r})"
