"""Discord endpoints as typed route templates, and how a concrete request maps to rate limits.

A :class:`Route` is a method plus a path template (``/channels/{channel_id}/messages``).
Compiling it with parameters gives a :class:`CompiledRoute` holding what the rate limiter needs:

* ``key``: the *route key*, ``METHOD template``, shared by every request of the same shape.  The
  five reaction-modifying routes collapse to one key (Discord counts them in one bucket per
  channel), and a message delete gets a suffix for the age-dependent buckets (``#lt10s`` for
  messages younger than 10 s, ``#gt14d`` for older than 14 days), as discord.py does.
* ``major``: the top-level resource (``channel_id``, ``guild_id``, or ``webhook_id`` plus a hash of
  the webhook token), which Discord counts separately under one bucket hash.
* ``global_scope``: which global limit the request spends (the bot token's, the IP's for
  unauthenticated webhook calls, or none for interaction routes, which are exempt).

The compiled path carries secrets (webhook and interaction tokens) and is only ever sent;
``label`` (the template) is what logs, errors, recordings and metrics see.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass, field
from typing import Final
from urllib.parse import quote

from shared.domain.messages import DISCORD_EPOCH_MS

__all__ = [
    "ADD_REACTION",
    "CREATE_DM",
    "CREATE_FOLLOWUP",
    "CREATE_INTERACTION_RESPONSE",
    "CREATE_MESSAGE",
    "DELETE_MESSAGE",
    "DELETE_ORIGINAL_RESPONSE",
    "DELETE_OWN_REACTION",
    "DELETE_WEBHOOK_MESSAGE",
    "EDIT_MESSAGE",
    "EDIT_ORIGINAL_RESPONSE",
    "EDIT_WEBHOOK_MESSAGE",
    "EXECUTE_WEBHOOK",
    "GET_CHANNEL",
    "GET_CURRENT_USER",
    "GET_GUILD",
    "GET_GUILD_MEMBER",
    "GET_MESSAGE",
    "GET_MESSAGES",
    "GET_ORIGINAL_RESPONSE",
    "GET_WEBHOOK",
    "GET_WEBHOOK_MESSAGE",
    "JOIN_THREAD",
    "LIST_ACTIVE_THREADS",
    "LIST_GUILD_CHANNELS",
    "LIST_GUILD_MEMBERS",
    "LIST_PUBLIC_ARCHIVED_THREADS",
    "START_THREAD",
    "START_THREAD_FROM_MESSAGE",
    "CompiledRoute",
    "Route",
    "secret_fingerprint",
]

_MAJOR_PARAMS: Final = ("channel_id", "guild_id", "webhook_id")
_SECRET_PARAMS: Final = frozenset({"webhook_token", "interaction_token"})
_TEN_SECONDS_MS: Final = 10_000
_FOURTEEN_DAYS_MS: Final = 14 * 24 * 3600 * 1000


def secret_fingerprint(secret: str) -> str:
    """A short, stable, non-reversible name for a secret (16 hex chars of SHA-256)."""
    return hashlib.sha256(secret.encode()).hexdigest()[:16]


@dataclass(frozen=True, slots=True)
class Route:
    """One Discord endpoint: HTTP method and path template with ``{name}`` placeholders."""

    method: str
    template: str
    #: Interaction callbacks, followups and @original edits are exempt from the global limit.
    interaction: bool = False
    #: Token-authenticated webhook routes: sent without the bot's Authorization header.
    webhook: bool = False

    @property
    def label(self) -> str:
        """``METHOD template``: safe for logs, metrics labels and recordings."""
        return f"{self.method} {self.template}"

    def compile(self, **params: str | int) -> CompiledRoute:
        """Fill the template; every value is percent-encoded (``safe=''``) as Discord expects."""
        values = {name: str(value) for name, value in params.items()}
        try:
            path = self.template.format_map({k: quote(v, safe="") for k, v in values.items()})
        except KeyError as exc:
            raise ValueError(f"route {self.label} needs parameter {exc.args[0]!r}") from exc
        return CompiledRoute(route=self, path=path, params=values)


@dataclass(frozen=True, slots=True)
class CompiledRoute:
    """A route with its parameters: the path to send and the keys the rate limiter uses."""

    route: Route
    path: str = field(repr=False)
    params: dict[str, str] = field(repr=False)

    def __repr__(self) -> str:
        return f"CompiledRoute({self.route.label!r}, major={self.major!r})"

    @property
    def label(self) -> str:
        """The route template (no ids, no secrets)."""
        return self.route.label

    @property
    def method(self) -> str:
        """HTTP method."""
        return self.route.method

    @property
    def major(self) -> str:
        """Top-level resource: ``channel_id``/``guild_id``/``webhook_id:token-hash`` or ``-``."""
        parts: list[str] = []
        for name in _MAJOR_PARAMS:
            if name in self.params:
                parts.append(self.params[name])
        token = self.params.get("webhook_token") or self.params.get("interaction_token")
        if token is not None:
            parts.append(secret_fingerprint(token))
        return ":".join(parts) or "-"

    @property
    def key(self) -> str:
        """Route key for the limiter's route → bucket-hash map (see module docstring)."""
        template = self.route.template
        if "/reactions" in template and self.method in ("PUT", "DELETE"):
            return f"PUT|DELETE {template.split('/reactions')[0]}/reactions/{{emoji}}"
        if self.method == "DELETE" and template == "/channels/{channel_id}/messages/{message_id}":
            return f"{self.route.label}{_delete_age_suffix(self.params['message_id'])}"
        return self.route.label

    @property
    def webhook_key(self) -> str | None:
        """``webhook_id:token-hash`` for token-authenticated webhook routes (dead-webhook key)."""
        if not self.route.webhook or "webhook_id" not in self.params:
            return None
        return f"{self.params['webhook_id']}:{secret_fingerprint(self.params['webhook_token'])}"

    @property
    def redacted_path(self) -> str:
        """The path with every token replaced by ``<redacted:fingerprint>`` (for recordings)."""
        redacted = {
            name: f"<redacted:{secret_fingerprint(value)}>" if name in _SECRET_PARAMS else value
            for name, value in self.params.items()
        }
        return self.route.template.format_map(redacted)


def _delete_age_suffix(message_id: str, *, now_ms: float | None = None) -> str:
    """``#lt10s``/``#gt14d`` for messages in Discord's special delete buckets, else ``''``."""
    try:
        created_ms = (int(message_id) >> 22) + DISCORD_EPOCH_MS
    except ValueError:
        return ""
    age = (time.time() * 1000 if now_ms is None else now_ms) - created_ms
    if age < _TEN_SECONDS_MS:
        return "#lt10s"
    if age > _FOURTEEN_DAYS_MS:
        return "#gt14d"
    return ""


def _webhook(method: str, below: str = "") -> Route:
    """A route of a webhook, authenticated by the token in its path."""
    return Route(method, "/webhooks/{webhook_id}/{webhook_token}" + below, webhook=True)


def _followup(method: str, below: str = "") -> Route:
    """A route of an interaction's followup webhook (the application's, with its token)."""
    return Route(method, "/webhooks/{application_id}/{interaction_token}" + below, interaction=True)


GET_CURRENT_USER: Final = Route("GET", "/users/@me")
GET_GUILD: Final = Route("GET", "/guilds/{guild_id}")
GET_GUILD_MEMBER: Final = Route("GET", "/guilds/{guild_id}/members/{user_id}")
LIST_GUILD_CHANNELS: Final = Route("GET", "/guilds/{guild_id}/channels")
#: Needs the privileged Server Members intent (403/50001 without it).
LIST_GUILD_MEMBERS: Final = Route("GET", "/guilds/{guild_id}/members")
GET_CHANNEL: Final = Route("GET", "/channels/{channel_id}")
GET_MESSAGES: Final = Route("GET", "/channels/{channel_id}/messages")
GET_MESSAGE: Final = Route("GET", "/channels/{channel_id}/messages/{message_id}")
CREATE_MESSAGE: Final = Route("POST", "/channels/{channel_id}/messages")
EDIT_MESSAGE: Final = Route("PATCH", "/channels/{channel_id}/messages/{message_id}")
DELETE_MESSAGE: Final = Route("DELETE", "/channels/{channel_id}/messages/{message_id}")
ADD_REACTION: Final = Route(
    "PUT", "/channels/{channel_id}/messages/{message_id}/reactions/{emoji}/@me"
)
DELETE_OWN_REACTION: Final = Route(
    "DELETE", "/channels/{channel_id}/messages/{message_id}/reactions/{emoji}/@me"
)
START_THREAD_FROM_MESSAGE: Final = Route(
    "POST", "/channels/{channel_id}/messages/{message_id}/threads"
)
START_THREAD: Final = Route("POST", "/channels/{channel_id}/threads")
JOIN_THREAD: Final = Route("PUT", "/channels/{channel_id}/thread-members/@me")
LIST_ACTIVE_THREADS: Final = Route("GET", "/guilds/{guild_id}/threads/active")
LIST_PUBLIC_ARCHIVED_THREADS: Final = Route("GET", "/channels/{channel_id}/threads/archived/public")
CREATE_DM: Final = Route("POST", "/users/@me/channels")
GET_WEBHOOK: Final = _webhook("GET")
EXECUTE_WEBHOOK: Final = _webhook("POST")
GET_WEBHOOK_MESSAGE: Final = _webhook("GET", "/messages/{message_id}")
EDIT_WEBHOOK_MESSAGE: Final = _webhook("PATCH", "/messages/{message_id}")
DELETE_WEBHOOK_MESSAGE: Final = _webhook("DELETE", "/messages/{message_id}")
CREATE_INTERACTION_RESPONSE: Final = Route(
    "POST", "/interactions/{interaction_id}/{interaction_token}/callback", interaction=True
)
CREATE_FOLLOWUP: Final = _followup("POST")
GET_ORIGINAL_RESPONSE: Final = _followup("GET", "/messages/@original")
EDIT_ORIGINAL_RESPONSE: Final = _followup("PATCH", "/messages/@original")
DELETE_ORIGINAL_RESPONSE: Final = _followup("DELETE", "/messages/@original")
