"""Every error the Discord adapter raises, in one tree that the pipeline's classifier understands.

::

    DiscordError (PipelineError)          status, code, message, retry_after, is_retryable, route
    ├── DiscordTransientError (TransientError)
    │   ├── RateLimited (RateLimitedError)  a 429 we could not wait out, the breaker, a ban
    │   ├── ServerError                     5xx after every retry
    │   └── NetworkError                    connection/timeout after every retry
    └── DiscordPermanentError (PermanentError)
        ├── BadRequest                      400/405/413 (and 50035 with the ``errors`` tree)
        ├── Unauthorized                    401: the bot token is dead, all traffic with it stops
        ├── Forbidden                       403: missing access/permissions, closed DMs
        ├── NotFound                        404: unknown channel/message/interaction
        │   └── UnknownRoute                404 for a route Discord serves (wrong base URL?)
        ├── InvalidWebhook                  a webhook URL Discord rejected (404 or 401/50027)
        ├── EdgeBlocked                     Cloudflare's own 403 page: the edge blocks this host
        ├── UnexpectedAnswer                an answer that is not Discord's JSON (HTML, text)
        └── TooManyMembers                  a member list longer than the caller's cap (local)

    MessageLimitsError (InvalidInputError)  a message broke Discord's limits before any request

``route`` is always a template such as ``POST /webhooks/{webhook_id}/{webhook_token}``: no error
text, repr or attribute ever holds a bot token, webhook token or interaction token.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from shared.errors import (
    InvalidInputError,
    PermanentError,
    PipelineError,
    RateLimitedError,
    TransientError,
)

__all__ = [
    "BadRequest",
    "DiscordError",
    "DiscordPermanentError",
    "DiscordTransientError",
    "EdgeBlocked",
    "Forbidden",
    "InvalidWebhook",
    "MessageLimitsError",
    "NetworkError",
    "NotFound",
    "RateLimited",
    "ServerError",
    "TooManyMembers",
    "Unauthorized",
    "UnexpectedAnswer",
    "UnknownRoute",
    "flatten_form_errors",
]


class DiscordError(PipelineError):
    """Root of the adapter's errors: what Discord (or the adapter) said, and whether to retry.

    ``code`` is Discord's JSON error code (``0`` for generic HTTP errors, ``None`` when there was
    no response), ``status`` the HTTP status (``None`` for network errors and local refusals).
    """

    retryable: bool = False

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        code: int | None = None,
        route: str | None = None,
        retry_after: float | None = None,
        user_message: str | None = None,
    ) -> None:
        text = message if route is None else f"{message} [{route}]"
        if status is not None or code is not None:
            text = f"{text} (status={status}, code={code})"
        PipelineError.__init__(self, text, user_message=user_message or message)
        self.message = message
        self.status = status
        self.code = code
        self.route = route
        self.retry_after = retry_after

    @property
    def is_retryable(self) -> bool:
        """True when the same call may succeed later (the pipeline retries it)."""
        return self.retryable

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(message={self.message!r}, status={self.status}, "
            f"code={self.code}, route={self.route!r}, retry_after={self.retry_after})"
        )


class DiscordTransientError(DiscordError, TransientError):
    """A Discord failure worth retrying later."""

    retryable = True


class DiscordPermanentError(DiscordError, PermanentError):
    """A Discord refusal that retrying cannot fix."""


class RateLimited(DiscordTransientError, RateLimitedError):
    """A rate limit the adapter would not wait out: retry after ``retry_after`` seconds.

    ``scope`` says which limit: ``user``/``shared``/``global``/``sublimit`` (Discord's 429
    scopes), ``bucket``/``global-preemptive`` (our own limiter said the wait exceeds the
    caller's deadline), ``breaker`` (too many invalid requests recently) or ``cloudflare``
    (Discord's edge blocked this IP; nothing may be sent until ``retry_after`` has passed).
    """

    def __init__(
        self,
        message: str,
        *,
        retry_after: float,
        scope: str,
        status: int | None = None,
        code: int | None = None,
        route: str | None = None,
        user_message: str | None = None,
    ) -> None:
        DiscordError.__init__(
            self,
            message,
            status=status,
            code=code,
            route=route,
            retry_after=retry_after,
            user_message=user_message
            or f"Discord is rate limiting us; try again in {max(1, round(retry_after))} s.",
        )
        self.retry_after: float = retry_after
        self.scope = scope


class _MaybeDone:
    """``maybe_done``: the request was not safe to repeat and reached Discord, which may have
    carried it out (a message may exist though no answer said so)."""

    maybe_done: bool = False


class ServerError(_MaybeDone, DiscordTransientError):
    """Discord answered 5xx on every attempt."""


class NetworkError(_MaybeDone, DiscordTransientError):
    """No answer from Discord (connection refused/reset, timeout) on every attempt."""


class BadRequest(DiscordPermanentError):
    """Discord rejected the request's content; ``errors`` lists each field problem (50035)."""

    def __init__(
        self,
        message: str,
        *,
        status: int | None = 400,
        code: int | None = None,
        route: str | None = None,
        errors: Sequence[str] = (),
        user_message: str | None = None,
    ) -> None:
        detail = message if not errors else f"{message}: {'; '.join(errors)}"
        super().__init__(detail, status=status, code=code, route=route, user_message=user_message)
        self.errors = tuple(errors)


class Unauthorized(DiscordPermanentError):
    """The bot token was rejected; every request with it is refused until the token changes."""


class Forbidden(DiscordPermanentError):
    """The bot lacks access or a permission (50001, 50013), or the user's DMs are closed."""


class NotFound(DiscordPermanentError):
    """The channel, message, user or interaction does not exist (or is invisible to the bot)."""


class InvalidWebhook(DiscordPermanentError):
    """A webhook URL that Discord rejected; the adapter stops using it (Discord asks for that)."""


class EdgeBlocked(DiscordPermanentError):
    """Discord's edge (Cloudflare) answered 403 with its own page instead of passing the request
    on: it blocks this host, e.g. after too many invalid requests or for its User-Agent.

    Not a :class:`Forbidden`: no permission of the bot is involved, and callers that treat a
    403 as "no access to this channel or guild" must not swallow it.
    """


class UnexpectedAnswer(DiscordPermanentError):
    """An answer Discord's API would not give: a body that is not its JSON (an HTML page, plain
    text), usually from a wrong ``DISCORD_API_BASE`` or a proxy in between.

    The message says what was asked, what came back, and what to check.
    """


class UnknownRoute(UnexpectedAnswer, NotFound):
    """404 for a route Discord serves: no such route at the configured base URL.

    Discord's own 404s for missing things carry a JSON code (10003 Unknown Channel, ...); a plain
    ``404: Not Found`` means the path itself is unknown there (e.g. a base URL without
    ``/api/v10``).
    """


class TooManyMembers(DiscordPermanentError):
    """A guild has more members than the caller agreed to list (``max_members``).

    Raised by the adapter itself (no status, no code) once the list passes the cap, so a huge
    guild costs at most ``max_members / 1000 + 1`` requests.
    """

    def __init__(self, guild_id: str, max_members: int, *, route: str | None = None) -> None:
        super().__init__(
            f"guild {guild_id} has more than {max_members} members",
            route=route,
            user_message=f"The server has more than {max_members} members; too many to list.",
        )
        self.guild_id = guild_id
        self.max_members = max_members


class MessageLimitsError(InvalidInputError):
    """A message breaks Discord's limits; ``violations`` lists every problem, one per line."""

    def __init__(self, violations: Sequence[str]) -> None:
        self.violations = tuple(violations)
        lines = "\n".join(f"- {v}" for v in self.violations)
        super().__init__(
            f"message breaks {len(self.violations)} Discord limit(s):\n{lines}",
            user_message=f"The message is too large for Discord:\n{lines}",
        )


def flatten_form_errors(tree: Mapping[str, Any], prefix: str = "") -> list[str]:
    """Flatten Discord's 50035 ``errors`` tree into ``path: CODE message`` lines.

    >>> flatten_form_errors({"content": {"_errors": [{"code": "X", "message": "bad"}]}})
    ['content: X bad']
    """
    out: list[str] = []
    for key, value in tree.items():
        if key == "_errors" and isinstance(value, list):
            where = prefix or "(request)"
            for item in value:
                if isinstance(item, Mapping):
                    out.append(f"{where}: {item.get('code', '?')} {item.get('message', '')}")
        elif isinstance(value, Mapping):
            out.extend(flatten_form_errors(value, f"{prefix}.{key}" if prefix else str(key)))
    return out
