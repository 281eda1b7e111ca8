"""Reading Discord's answers: rate-limit headers, 429 scopes, and status → error mapping.

Headers are read whenever ``X-RateLimit-Bucket``/``Remaining`` are present, whatever the scope.
A 429 is classified once, here:

* ``cloudflare``: no ``Via`` header, a body that is not JSON, or no ``retry_after``: Discord's
  edge is blocking the IP.  Nothing is retried.
* ``global``: ``global: true``, ``X-RateLimit-Global`` or scope ``global``.
* ``shared``: scope ``shared`` (a per-resource limit shared with others; not an invalid request).
* ``sublimit``: a body ``code`` (20028, 40062, ...) or ``remaining > 0``: a hidden limit of this
  route; obey ``retry_after`` for the route only.
* ``user``: everything else.

Any answer with a ``retry_after`` field is treated like a 429 (Discord attaches a few
rate-limit-flavoured codes to other statuses).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import httpx

from shared.discord.errors import (
    BadRequest,
    DiscordError,
    Forbidden,
    InvalidWebhook,
    NotFound,
    RateLimited,
    ServerError,
    Unauthorized,
    flatten_form_errors,
)
from shared.discord.routes import CompiledRoute
from shared.ratelimit.discord import Outcome, Scope

__all__ = ["Answer", "error_for", "read_answer"]

#: Codes meaning "the webhook (or interaction token) behind this URL is gone".
_WEBHOOK_GONE = frozenset({10015, 50027})


@dataclass(frozen=True, slots=True)
class Answer:
    """A parsed response: JSON body (or text), Discord error code/message, and the outcome."""

    status: int
    body: Any
    code: int | None
    message: str
    outcome: Outcome

    @property
    def ok(self) -> bool:
        """2xx."""
        return 200 <= self.status < 300

    @property
    def rate_limited(self) -> bool:
        """A 429, or any answer carrying ``retry_after``."""
        return self.outcome.scope is not None


def _webhook_gone(status: int, code: Any) -> bool:
    """Unknown webhook / invalid token (a 404 about a *message* of the webhook is not that)."""
    if code in _WEBHOOK_GONE:
        return True
    return status == 404 and code in (None, 0)


def _int(value: str | None) -> int | None:
    try:
        return None if value is None else int(float(value))
    except ValueError:
        return None


def _float(value: str | None) -> float | None:
    try:
        return None if value is None else float(value)
    except ValueError:
        return None


def _scope_of(response: httpx.Response, body: Any, remaining: int | None) -> Scope | None:
    has_retry = isinstance(body, dict) and "retry_after" in body
    if response.status_code != 429 and not has_retry:
        return None
    if response.status_code == 429 and (
        not response.headers.get("via") or not isinstance(body, dict) or not has_retry
    ):
        return "cloudflare"
    header_scope = (response.headers.get("x-ratelimit-scope") or "").lower()
    if (
        body.get("global") is True
        or response.headers.get("x-ratelimit-global", "").lower() == "true"
        or header_scope == "global"
    ):
        return "global"
    if header_scope == "shared":
        return "shared"
    if body.get("code") or (remaining is not None and remaining > 0):
        return "sublimit"
    return "user"


def read_answer(response: httpx.Response, route: CompiledRoute, *, authed: bool) -> Answer:
    """Parse ``response`` (already read) into an :class:`Answer` with its limiter outcome."""
    status = response.status_code
    body: Any = None
    if response.content:
        try:
            body = response.json()
        except (json.JSONDecodeError, UnicodeDecodeError):
            body = response.text
    headers = response.headers
    remaining = _int(headers.get("x-ratelimit-remaining"))
    scope = _scope_of(response, body, remaining)
    retry_after: float | None = None
    if scope == "cloudflare":
        retry_after = _float(headers.get("retry-after"))
    elif scope is not None:
        retry_after = float(body["retry_after"])
    code = body.get("code") if isinstance(body, dict) else None
    message = str(body.get("message", "")) if isinstance(body, dict) else ""
    webhookish = route.route.webhook or route.route.interaction
    webhook_gone = route.route.webhook and _webhook_gone(status, code)
    outcome = Outcome(
        status=status,
        bucket=headers.get("x-ratelimit-bucket"),
        limit=_int(headers.get("x-ratelimit-limit")),
        remaining=remaining,
        reset_after=_float(headers.get("x-ratelimit-reset-after")),
        scope=scope,
        retry_after=retry_after,
        invalid=status in (401, 403) or (status == 429 and scope != "shared"),
        dead_token=status == 401 and authed and not webhookish,
        dead_webhook=bool(webhook_gone),
    )
    return Answer(
        status=status,
        body=body,
        code=code if isinstance(code, int) else None,
        message=message,
        outcome=outcome,
    )


def error_for(answer: Answer, route: CompiledRoute) -> DiscordError:
    """The exception for a non-2xx answer that will not be retried."""
    status, code, label = answer.status, answer.code, route.label
    message = answer.message or f"HTTP {status}"
    if answer.rate_limited:
        scope = answer.outcome.scope or "user"
        wait = answer.outcome.retry_after or 0.0
        if scope == "cloudflare":
            message = "Discord's edge (Cloudflare) is blocking this IP; no request is sent"
        return RateLimited(
            message, retry_after=wait, scope=scope, status=status, code=code, route=label
        )
    webhookish = route.route.webhook or route.route.interaction
    if webhookish and _webhook_gone(status, code):
        return InvalidWebhook(
            message,
            status=status,
            code=code,
            route=label,
            user_message="The Discord webhook no longer exists or its URL is wrong; "
            "create a new webhook and update the target.",
        )
    if status == 401:
        return Unauthorized(
            message,
            status=status,
            code=code,
            route=label,
            user_message="Discord rejected the bot token; set a valid DISCORD_TOKEN.",
        )
    if status == 403:
        return Forbidden(
            message,
            status=status,
            code=code,
            route=label,
            user_message=f"Discord refused: {message}. Check the bot's permissions.",
        )
    if status == 404:
        return NotFound(message, status=status, code=code, route=label)
    if status >= 500:
        return ServerError(message, status=status, code=code, route=label)
    errors: list[str] = []
    if isinstance(answer.body, dict) and isinstance(answer.body.get("errors"), dict):
        errors = flatten_form_errors(answer.body["errors"])
    return BadRequest(message, status=status, code=code, route=label, errors=errors)
