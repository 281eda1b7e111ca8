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

Discord's API answers every error with JSON (``{"message", "code"}``) and a missing thing with
a specific code (10003 Unknown Channel, ...).  A body that is not JSON (an HTML page, plain
text), or a 404 without a code, is something else answering: usually a wrong
``DISCORD_API_BASE`` or a proxy.  Those become :class:`UnexpectedAnswer` / :class:`UnknownRoute`
saying what was asked, what came back and what to check, and never mark a webhook dead.

One exception: a 403 that is not JSON but is Cloudflare's own (its ``error code: 1020`` page,
or Cloudflare's ``CF-Ray``/``Server`` headers) is Discord's edge blocking this host, after too
many invalid requests or for a User-Agent it refuses (fact sheet 1.5).  The base URL is right
there; it becomes :class:`EdgeBlocked`, worded as that block with what to do about it.
"""

from __future__ import annotations

import json
import math
import re
import time
from dataclasses import dataclass
from datetime import UTC
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import urlsplit

import httpx

from shared.discord.errors import (
    BadRequest,
    DiscordError,
    EdgeBlocked,
    Forbidden,
    InvalidWebhook,
    NotFound,
    RateLimited,
    ServerError,
    Unauthorized,
    UnexpectedAnswer,
    UnknownRoute,
    flatten_form_errors,
)
from shared.discord.routes import CompiledRoute
from shared.discord.simulation import redact_path
from shared.ratelimit.discord import Outcome, Scope

__all__ = ["Answer", "error_for", "not_json_error", "read_answer", "server_retry_after"]

#: Codes meaning "the webhook (or interaction token) behind this URL is gone".
_WEBHOOK_GONE = frozenset({10015, 50027})
_SNIPPET = 160
#: 403 "internal network error": Cloudflare blocks the request, e.g. for a browser User-Agent.
_CLOUDFLARE_BLOCK = 40333
_CHECK_BASE = (
    "check DISCORD_API_BASE (Discord's is https://discord.com/api/v10; a proxy or test server "
    "must serve the same paths under /api/v10)"
)
#: Cloudflare's own error pages name their code as "error code: 1020" (1xxx codes).
_CLOUDFLARE_PAGE = re.compile(r"error code:?\s*(1\d{3})\b", re.IGNORECASE)
_EDGE_FIX = (
    "Cloudflare does this after too many invalid requests (401/403/429: 10,000 in 10 minutes "
    "from one IP, every process on it counting) or for a User-Agent it refuses: check that "
    "DISCORD_USER_AGENT has Discord's form 'DiscordBot (url, version)' and what makes this "
    "IP's requests fail, then wait for the block to lift before sending again"
)
_USER_NOT_DISCORD = (
    "The bot could not read Discord: its Discord address (DISCORD_API_BASE) answers like "
    "something else. An operator must fix the setting."
)


@dataclass(frozen=True, slots=True)
class Answer:
    """A parsed response: JSON body (or text), Discord error code/message, and the outcome.

    ``edge_block`` marks Cloudflare's own 403 page (see the module docstring).
    """

    status: int
    body: Any
    code: int | None
    message: str
    outcome: Outcome
    edge_block: bool = False

    @property
    def ok(self) -> bool:
        """2xx."""
        return 200 <= self.status < 300

    @property
    def rate_limited(self) -> bool:
        """A 429, or any answer carrying ``retry_after``."""
        return self.outcome.scope is not None


def _webhook_gone(status: int, body: Any) -> bool:
    """Unknown webhook / invalid token (a 404 about a *message* of the webhook is not that).

    Only Discord's JSON says so: a plain-text 404 is a wrong base URL, not a dead webhook.
    """
    if not isinstance(body, dict):
        return False
    code = body.get("code")
    if code in _WEBHOOK_GONE:
        return True
    return status == 404 and code in (None, 0)


def _public_base(api_base: str | None) -> str:
    """``api_base`` without any ``user:password@`` part."""
    if not api_base:
        return "the configured base URL"
    parts = urlsplit(api_base)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    return parts._replace(netloc=host).geturl()


def _describe(body: Any) -> str:
    """What came back, in a few words (tokens in echoed paths are redacted)."""
    if body is None or body == "":
        return "an empty body"
    text = " ".join(str(body).split())
    if len(text) > _SNIPPET:
        text = text[: _SNIPPET - 1] + "…"
    return f"the text {redact_path(text)!r}"


def _edge_block(response: httpx.Response, body: Any) -> bool:
    """True for a 403 that Cloudflare wrote itself: not JSON, and Cloudflare's page or headers.

    Every answer from discord.com passes Cloudflare and carries its headers; only the edge's
    own refusals are not JSON, since Discord's API answers every error in JSON.
    """
    if response.status_code != 403 or not isinstance(body, str):
        return False
    server = response.headers.get("server", "").lower()
    return (
        "cf-ray" in response.headers
        or server.startswith("cloudflare")
        or _CLOUDFLARE_PAGE.search(body) is not None
    )


def _edge_blocked(answer: Answer, label: str, what: str) -> EdgeBlocked:
    match = _CLOUDFLARE_PAGE.search(str(answer.body))
    which = f" (Cloudflare error {match.group(1)})" if match else ""
    return EdgeBlocked(
        f"{what}: Discord's edge (Cloudflare) blocked this host{which}, before the request "
        f"reached Discord's API. {_EDGE_FIX}",
        status=answer.status,
        route=label,
        user_message="Discord's edge (Cloudflare) is blocking this server's requests. An "
        "operator must check the bot's User-Agent (DISCORD_USER_AGENT) and its volume of "
        "failed requests, then wait for the block to lift.",
    )


def not_json_error(answer: Answer, route: CompiledRoute, api_base: str | None) -> DiscordError:
    """The error for an answer whose body is not Discord's JSON (any status but 429)."""
    status, label = answer.status, route.label
    base = _public_base(api_base)
    what = f"{label} at {base} answered {status} with {_describe(answer.body)}"
    if answer.edge_block:
        return _edge_blocked(answer, label, what)
    if status >= 500:
        return ServerError(
            f"{what}, not Discord's JSON error",
            status=status,
            route=label,
            user_message="Discord is having problems (server errors).",
        )
    kind = UnknownRoute if status == 404 else UnexpectedAnswer
    return kind(
        f"{what} instead of Discord's JSON: this is not Discord's API answering; {_CHECK_BASE}",
        status=status,
        route=label,
        user_message=_USER_NOT_DISCORD,
    )


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


def server_retry_after(headers: httpx.Headers, *, now: float | None = None) -> float | None:
    """Seconds a 5xx answer's ``Retry-After`` asks to wait, or None without a usable one.

    HTTP allows delta-seconds or a date (RFC 9110 10.2.3); a date already past means now.
    ``now`` (epoch seconds) is for tests.
    """
    value = (headers.get("retry-after") or "").strip()
    if not value:
        return None
    seconds = _float(value)
    if seconds is None:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = max(0.0, when.timestamp() - (time.time() if now is None else now))
    if not math.isfinite(seconds) or seconds < 0:
        return None
    return seconds


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
    webhook_gone = route.route.webhook and _webhook_gone(status, body)
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
        edge_block=_edge_block(response, body),
    )


def error_for(answer: Answer, route: CompiledRoute, *, api_base: str | None = None) -> DiscordError:
    """The exception for a non-2xx answer that will not be retried.

    ``api_base`` (the base URL the request went to) goes into the guidance of answers that are
    not Discord's (see the module docstring).
    """
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
    if not isinstance(answer.body, dict) and (isinstance(answer.body, str) or status == 404):
        return not_json_error(answer, route, api_base)
    if status == 404 and code == 0 and not webhookish:
        return UnknownRoute(
            f"{label} at {_public_base(api_base)} answered 404 {message!r} without a Discord "
            f"error code: Discord's API has no such route there; {_CHECK_BASE}",
            status=status,
            code=code,
            route=label,
            user_message=_USER_NOT_DISCORD,
        )
    if webhookish and _webhook_gone(status, answer.body):
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
    if status == 403 and code == _CLOUDFLARE_BLOCK:
        # The edge's block, not a permission: a caller that reads 403 as "no access" must not
        # take it for one (and cache the bot as shut out of a channel it can read).
        return EdgeBlocked(
            f"Discord's edge (Cloudflare) refused the request ({code} {message!r}); it refuses "
            "browser-like User-Agents: check DISCORD_USER_AGENT (Discord asks for "
            "'DiscordBot (url, version)')",
            status=status,
            code=code,
            route=label,
            user_message="Discord's edge refused the bot's requests; an operator must check "
            "the bot's User-Agent setting.",
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
