"""A secret read from a file (a Kubernetes/Docker secret mount), so that rotating it takes
effect without a restart: the file is re-read whenever its modification time or size changes.

The Discord bot token (:class:`shared.discord.tokens.FileToken`) and the LLM API key
(:class:`shared.llm.client.SecretFileKey`) are read this way.
"""

from __future__ import annotations

import threading
from pathlib import Path

from shared.errors import ConfigError

__all__ = ["SecretFile"]


class SecretFile:
    """The stripped text of ``path`` (``""`` when the file is empty), re-read when it changes.

    ``what`` names the file and ``fix`` says what to do in the :class:`ConfigError` raised when
    the file cannot be read: ``"<what> <path> cannot be read (<reason>); <fix>"``.
    """

    def __init__(self, path: Path, *, what: str, fix: str) -> None:
        self.path = path
        self._what = what
        self._fix = fix
        self._lock = threading.Lock()
        self._stamp: tuple[int, int] | None = None
        self._text = ""

    def read(self) -> str:
        """The file's current text, stripped."""
        try:
            stat = self.path.stat()
        except OSError as exc:
            raise ConfigError(
                f"{self._what} {self.path} cannot be read ({exc.strerror}); {self._fix}"
            ) from exc
        stamp = (stat.st_mtime_ns, stat.st_size)
        with self._lock:
            if stamp != self._stamp:
                self._text = self.path.read_text(encoding="utf-8").strip()
                self._stamp = stamp
            return self._text
