"""The project's exception tree, and the one place that sorts errors into retryable or permanent.

::

    PipelineError
    ├── TransientError        retry with backoff (network, 5xx, 429, timeouts, lost locks)
    │   └── RateLimitedError  retry after ``retry_after`` seconds
    └── PermanentError        fail the job with ``user_message`` (bad input, 401/403/404, quota)
        ├── InvalidInputError a file, payload or parameter a user gave us is wrong
        ├── NotFoundError     no such thing for this caller (another guild's looks the same)
        ├── ConflictError     the thing exists but is in a state that forbids the request
        └── ConfigError       a setting is missing or invalid

Client packages (Discord, LLM, delivery) subclass ``TransientError``/``PermanentError``;
:func:`classify` also understands the third-party exceptions we meet at the boundaries, so a task
never needs its own ``except`` ladder.
"""

from __future__ import annotations

import socket
from enum import StrEnum

__all__ = [
    "ConfigError",
    "ConflictError",
    "ErrorKind",
    "InvalidInputError",
    "NotFoundError",
    "PermanentError",
    "PipelineError",
    "RateLimitedError",
    "SettingsError",
    "TransientError",
    "classify",
]


class PipelineError(Exception):
    """Root of every error the project raises on purpose.

    ``user_message`` is what a user may read (in Discord, the API, the CLI); the exception text
    itself may carry operator detail.
    """

    def __init__(self, message: str, *, user_message: str | None = None) -> None:
        super().__init__(message)
        self.user_message = user_message or message


class TransientError(PipelineError):
    """Worth retrying: the same call may succeed later."""


class RateLimitedError(TransientError):
    """A limit was hit; retry no sooner than ``retry_after`` seconds."""

    def __init__(self, message: str, *, retry_after: float, user_message: str | None = None):
        super().__init__(message, user_message=user_message)
        self.retry_after = retry_after


class PermanentError(PipelineError):
    """Retrying cannot help: the job fails with a reason the user can act on."""


class InvalidInputError(PermanentError):
    """Input a user supplied is wrong; the message says what and how to fix it.

    ``field`` names the request field at fault when there is one (``schedule``, ``url`` …), so
    an API can point at it.
    """

    def __init__(
        self, message: str, *, user_message: str | None = None, field: str | None = None
    ) -> None:
        super().__init__(message, user_message=user_message)
        self.field = field


class NotFoundError(PermanentError):
    """Nothing of that name exists for this caller.

    Used for things of another guild as well, with the same words, so a caller learns nothing
    about other tenants.
    """


class ConflictError(PermanentError):
    """The thing exists, but its state (or a limit) forbids the request; the message says why."""


class ConfigError(PermanentError):
    """A setting is missing or invalid, or this deployment is not set up for the request."""


class SettingsError(ConfigError):
    """Settings failed validation; ``lines`` holds one line per bad variable."""

    def __init__(self, lines: list[str]) -> None:
        super().__init__("\n".join(lines))
        self.lines = lines


class ErrorKind(StrEnum):
    """How the task layer must treat an exception."""

    TRANSIENT = "transient"
    PERMANENT = "permanent"


def classify(exc: BaseException) -> ErrorKind:
    """Sort any exception into transient or permanent.

    Our own tree decides for itself.  Connection-level failures of the libraries we use
    (sockets, httpx transport errors, redis and SQLAlchemy disconnects) and a task's soft time
    limit are transient; anything
    unknown is permanent, so a bug fails loudly once instead of looping through retries.
    """
    if isinstance(exc, TransientError):
        return ErrorKind.TRANSIENT
    if isinstance(exc, PermanentError):
        return ErrorKind.PERMANENT
    if isinstance(exc, ConnectionError | TimeoutError | socket.timeout):
        return ErrorKind.TRANSIENT
    return _classify_third_party(exc)


def _classify_third_party(exc: BaseException) -> ErrorKind:
    import billiard.exceptions
    import httpx
    import redis.exceptions
    import sqlalchemy.exc

    if isinstance(exc, billiard.exceptions.SoftTimeLimitExceeded):
        # A stall (a database failover, a hung connection) as often as too much work; the
        # caller's retry budget bounds the repeats (the task decorator decides for stages).
        return ErrorKind.TRANSIENT
    if isinstance(exc, httpx.TransportError):
        return ErrorKind.TRANSIENT
    if isinstance(exc, redis.exceptions.ConnectionError | redis.exceptions.TimeoutError):
        return ErrorKind.TRANSIENT
    if isinstance(exc, sqlalchemy.exc.OperationalError | sqlalchemy.exc.DisconnectionError):
        return ErrorKind.TRANSIENT
    if isinstance(exc, sqlalchemy.exc.DBAPIError) and exc.connection_invalidated:
        return ErrorKind.TRANSIENT
    return ErrorKind.PERMANENT
