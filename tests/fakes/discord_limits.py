"""Rate limits, faults and statistics of the fake Discord.

* Per-route buckets: fixed windows starting at the first request, counted per
  ``(auth, bucket, major parameter)``, announced with all five ``X-RateLimit-*`` headers and a
  stable 32-hex bucket hash per *shared limit* (the same across channels).
* The global limit per token, exempting interaction routes; unauthenticated webhook calls
  count per IP.  Discord does not document the algorithm.  By default it is a fixed window that
  opens with the first request after the previous one ended (as twilight models it), so a
  client cannot learn its phase: no header announces it, only its 429s do.  A client that sends
  exactly 50 in any second still meets 429s when network delays move requests across the
  window's edge, as seen against Discord (discord/discord-api-docs#5144; NAFF sends at most 45
  per second for that reason, NAFTeam/NAFF#679).  ``global_mode="sliding"`` counts the last
  second instead (the strictest reading: no two-window bursts at all).  Only requests the
  limits admit count toward it: a 401 for a bad bot token, and requests refused with a bucket
  or global 429, do not.  Whether Discord counts them is not documented (the fact sheet gives
  "50 requests per second" (1.4) and charges limits to whoever the Authorization header
  identifies (1.1), which a rejected token is not), so the fake does not guess; the adapter
  books its global slot before sending, so it counts them either way.
* Invalid requests (401, 403, and 429 except scope ``shared``) counted per IP; past the
  threshold the IP is banned and gets Cloudflare-shaped 429s (no ``Via``, no headers).
* Faults injected per route: 5xx (optionally with ``Retry-After``), connection resets, latency,
  and 429s of every scope: ``user429`` (bucket exhausted), ``sublimit429`` (a hidden per-bot
  sub-limit: scope ``user`` while the bucket has requests left; invalid), ``shared429`` (scope
  ``shared``, optionally with a ``code`` such as 20028; not invalid), ``global429`` and ``ban``.
"""

from __future__ import annotations

import hashlib
import math
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any, Literal

__all__ = [
    "BAN_MESSAGE",
    "DEFAULT_LIMITS",
    "FALLBACK_LIMIT",
    "FakeConfig",
    "Fault",
    "FaultKind",
    "Limits",
    "Reply",
    "RouteLimit",
    "bucket_hash",
]

FaultKind = Literal[
    "status",
    "status_after",
    "reset",
    "latency",
    "global429",
    "shared429",
    "user429",
    "sublimit429",
    "ban",
]

BAN_MESSAGE = (
    "You are being blocked from accessing our API temporarily due to exceeding our rate limits "
    "frequently. Please read our docs at https://discord.com/developers/docs/topics/rate-limits "
    "to prevent this moving forward."
)


def bucket_hash(name: str) -> str:
    """The stable hash the fake announces for a shared limit called ``name``."""
    return hashlib.md5(name.encode(), usedforsecurity=False).hexdigest()


@dataclass(frozen=True)
class RouteLimit:
    """A bucket: ``limit`` requests per ``window_s`` seconds, shared by routes with one name."""

    bucket: str
    limit: int
    window_s: float


#: Defaults from the fact sheet's observed limits (section 1.9); ``None`` = no bucket headers.
DEFAULT_LIMITS: dict[str, RouteLimit | None] = {
    "GET /users/@me": None,
    "GET /guilds/{guild_id}": RouteLimit("guild", 5, 5.0),
    "GET /guilds/{guild_id}/threads/active": RouteLimit("guild-threads", 10, 10.0),
    "GET /guilds/{guild_id}/channels": RouteLimit("guild-channels", 5, 5.0),
    "GET /guilds/{guild_id}/members": RouteLimit("guild-members", 10, 10.0),
    "GET /channels/{channel_id}": RouteLimit("channel", 5, 5.0),
    "GET /channels/{channel_id}/messages": RouteLimit("messages-read", 5, 1.0),
    "GET /channels/{channel_id}/messages/{message_id}": RouteLimit("message-read", 5, 1.0),
    "POST /channels/{channel_id}/messages": RouteLimit("messages-write", 5, 5.0),
    "PATCH /channels/{channel_id}/messages/{message_id}": RouteLimit("message-edit", 5, 5.0),
    "DELETE /channels/{channel_id}/messages/{message_id}#young": RouteLimit("delete-young", 5, 1.0),
    "DELETE /channels/{channel_id}/messages/{message_id}#old": RouteLimit("delete-old", 3, 1.0),
    "DELETE /channels/{channel_id}/messages/{message_id}#old14d": RouteLimit(
        "delete-old14d", 30, 4.0
    ),
    "REACTIONS /channels/{channel_id}/messages/{message_id}/reactions": RouteLimit(
        "reactions", 1, 0.25
    ),
    "POST /channels/{channel_id}/messages/{message_id}/threads": RouteLimit("threads", 10, 5.0),
    "POST /channels/{channel_id}/threads": RouteLimit("threads", 10, 5.0),
    "GET /channels/{channel_id}/threads/archived/public": RouteLimit("archived", 10, 10.0),
    "PUT /channels/{channel_id}/thread-members/@me": RouteLimit("thread-join", 10, 10.0),
    "POST /users/@me/channels": RouteLimit("dm-open", 5, 5.0),
    "POST /webhooks/{webhook_id}/{webhook_token}": RouteLimit("webhook", 5, 2.0),
    "GET /webhooks/{webhook_id}/{webhook_token}/messages/{message_id}": RouteLimit(
        "webhook-message", 5, 2.0
    ),
    "PATCH /webhooks/{webhook_id}/{webhook_token}/messages/{message_id}": RouteLimit(
        "webhook-message", 5, 2.0
    ),
    "DELETE /webhooks/{webhook_id}/{webhook_token}/messages/{message_id}": RouteLimit(
        "webhook-message", 5, 2.0
    ),
    "POST /interactions/{interaction_id}/{interaction_token}/callback": RouteLimit(
        "interaction-callback", 5, 1.0
    ),
}
#: Any route missing above gets this generous bucket.
FALLBACK_LIMIT = RouteLimit("default", 50, 1.0)


@dataclass
class FakeConfig:
    """Knobs of the fake (all mutable at run time through ``FakeDiscord.configure``)."""

    global_limit: int = 50
    global_window_s: float = 1.0
    global_mode: Literal["fixed", "sliding"] = "fixed"
    limits: dict[str, RouteLimit | None] = field(default_factory=lambda: dict(DEFAULT_LIMITS))
    webhook_channel_limit: tuple[int, float] | None = (30, 60.0)
    invalid_ban_threshold: int = 10_000
    invalid_window_s: float = 600.0
    ban_s: float = 3600.0
    latency_s: float = 0.0
    scope_header: bool = True
    #: Body of the 404 for a path the fake does not serve: ``text`` is a plain-text
    #: ``404: Not Found`` (what a wrong base URL gets from Discord's edge), ``json`` is the
    #: ``{"message": "404: Not Found", "code": 0}`` the API itself answers under ``/api/vN``.
    unknown_route_body: Literal["text", "json"] = "text"
    #: ``GET /guilds/{id}``: ``on``; ``off`` (not served: a plain 404 as for any unknown route);
    #: ``forbidden`` (403/50001 while the guild's channels stay readable).
    guild_route: Literal["on", "off", "forbidden"] = "on"
    #: Whether the application has the privileged Server Members intent; without it
    #: ``GET /guilds/{id}/members`` answers 403/50001 "Missing Access", as Discord does.
    members_intent: bool = True
    #: Whether the application has the privileged Message Content intent; without it other
    #: users' messages come over REST with ``content``, ``embeds``, ``attachments``,
    #: ``components`` and ``poll`` emptied, except in DMs and messages that mention the bot.
    message_content_intent: bool = True
    interaction_ack_s: float = 3.0
    interaction_ttl_s: float = 900.0


@dataclass
class Fault:
    """A misbehaviour for the next ``times`` requests matching ``route`` (``None``: any).

    ``status`` answers ``status`` instead of serving the request; ``status_after`` serves it
    (a message is created, an interaction acknowledged) and then answers ``status``, as
    Discord's edge does when the backend finished but the answer was lost.  Either sends
    ``retry_after_header`` as ``Retry-After`` when set (seconds or an HTTP date, verbatim), as
    an overloaded server may with a 503.
    """

    kind: FaultKind
    route: str | None = None
    times: int = 1
    status: int = 500
    retry_after: float = 1.0
    code: int | None = None
    delay_s: float = 0.0
    #: When > 0 the fault lasts this long from its first match (``times`` is then ignored),
    #: and 429 faults announce the time left as ``retry_after``.
    duration_s: float = 0.0
    until: float = 0.0
    retry_after_header: str | None = None

    def status_headers(self) -> dict[str, str]:
        """The headers of a ``status``/``status_after`` answer."""
        headers = {"Via": "1.1 google", "Content-Type": "application/json"}
        if self.retry_after_header is not None:
            headers["Retry-After"] = self.retry_after_header
        return headers


@dataclass
class Reply:
    """A response the limiter (or a fault) decided instead of the handler."""

    status: int
    body: Any
    headers: dict[str, str]
    scope: str | None = None
    reset: bool = False


@dataclass
class _Window:
    end: float = 0.0
    count: int = 0
    start: float = 0.0
    #: What the window limits: ``global`` or the bucket's name, and the token/IP or major.
    label: tuple[str, str] = ("", "")


def _fmt(value: float) -> str:
    return f"{value:.3f}"


class Limits:
    """The fake's rate-limit engine; thread-safe."""

    def __init__(
        self,
        config: FakeConfig,
        *,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self.config = config
        self._clock = clock
        self._wall = wall
        self._lock = threading.Lock()
        self._windows: dict[tuple[str, str, str], _Window] = {}
        self._global: dict[str, deque[float]] = {}
        self._global_windows: dict[str, _Window] = {}
        #: Every window ever opened (since the last reset), in order: exact window statistics.
        self.window_log: list[_Window] = []
        self._invalid: dict[str, deque[float]] = {}
        self._banned_until: dict[str, float] = {}
        self._faults: list[Fault] = []
        self.events: list[tuple[float, str, int, str | None, str, str]] = []

    # --- faults ------------------------------------------------------------------------------

    def inject(self, fault: Fault) -> None:
        """Queue a fault."""
        with self._lock:
            self._faults.append(replace(fault))

    def clear_faults(self) -> None:
        """Drop every queued fault."""
        with self._lock:
            self._faults.clear()

    def take_fault(self, route_key: str) -> Fault | None:
        """The first queued fault matching ``route_key`` (consumes one of its ``times``)."""
        with self._lock:
            now = self._clock()
            for fault in list(self._faults):
                if fault.route is not None and fault.route != route_key:
                    continue
                if fault.duration_s > 0:
                    if not fault.until:
                        fault.until = now + fault.duration_s
                    if now >= fault.until:
                        self._faults.remove(fault)
                        continue
                    return replace(fault, retry_after=round(fault.until - now, 3))
                fault.times -= 1
                if fault.times <= 0:
                    self._faults.remove(fault)
                return fault
        return None

    def fault_reply(self, fault: Fault, route_key: str, auth: str, major: str) -> Reply | None:
        """The response a fault produces (``None`` for latency, which only delays)."""
        via = {"Via": "1.1 google", "Content-Type": "application/json"}
        ra = fault.retry_after
        retry = {"Retry-After": str(math.ceil(ra))}
        if fault.kind == "status":
            body = {"message": f"{fault.status}: Internal Server Error", "code": 0}
            return Reply(fault.status, body, fault.status_headers())
        if fault.kind == "reset":
            return Reply(0, None, {}, reset=True)
        if fault.kind == "ban":
            return Reply(429, {"message": BAN_MESSAGE, "code": 0}, {}, scope="cloudflare")
        if fault.kind == "global429":
            headers = {**via, **retry, "X-RateLimit-Global": "true", "X-RateLimit-Scope": "global"}
            body = {"message": "You are being rate limited.", "retry_after": ra, "global": True}
            return Reply(429, body, headers, scope="global")
        limit = self.route_limit(route_key) or FALLBACK_LIMIT
        headers = {**via, **retry, **self._bucket_headers(limit, auth, major, peek=True)}
        if fault.kind == "shared429":
            # A per-resource limit shared with others (section 1.3's "shared" example; with
            # ``code`` 20028 it is the illustrative channel-write-limit fixture).  Not an
            # invalid request.
            headers["X-RateLimit-Scope"] = "shared"
            body = {
                "message": "The resource is being rate limited.",
                "retry_after": ra,
                "global": False,
            }
            if fault.code is not None:
                body["code"] = fault.code
            return Reply(429, body, headers, scope="shared")
        if fault.kind == "sublimit429":
            # A hidden sub-limit of this bot's own route (section 1.1: a 429 while the bucket
            # still has ``remaining > 0``, e.g. channel renames): a per-bot limit, so scope
            # ``user``, and like every 429 that is not ``shared`` an invalid request
            # (section 1.5).  The bucket headers keep their real, non-zero remaining.
            headers["X-RateLimit-Scope"] = "user"
            body = {"message": "You are being rate limited.", "retry_after": ra, "global": False}
            if fault.code is not None:
                body["code"] = fault.code
            return Reply(429, body, headers, scope="sublimit")
        if fault.kind == "user429":
            headers["X-RateLimit-Remaining"] = "0"
            headers["X-RateLimit-Scope"] = "user"
            body = {"message": "You are being rate limited.", "retry_after": ra, "global": False}
            return Reply(429, body, headers, scope="user")
        return None

    # --- limits ------------------------------------------------------------------------------

    def route_limit(self, route_key: str) -> RouteLimit | None:
        """The bucket of ``route_key`` (``None``: the route announces no bucket)."""
        if route_key in self.config.limits:
            return self.config.limits[route_key]
        return FALLBACK_LIMIT

    def banned(self, ip: str) -> bool:
        """True while ``ip`` is under a simulated Cloudflare ban."""
        with self._lock:
            return self._banned_until.get(ip, 0.0) > self._clock()

    def ban_reply(self) -> Reply:
        """What a banned IP gets: 429 without Via or rate-limit headers."""
        return Reply(429, {"message": BAN_MESSAGE, "code": 0}, {}, scope="cloudflare")

    def _bucket_headers(
        self, limit: RouteLimit, auth: str, major: str, *, peek: bool = False
    ) -> dict[str, str]:
        now = self._clock()
        window = self._windows.get((auth, limit.bucket, major))
        if window is None or now >= window.end:
            remaining, reset_after = limit.limit - (0 if peek else 1), limit.window_s
        else:
            remaining, reset_after = limit.limit - window.count, window.end - now
        headers = {
            "X-RateLimit-Limit": str(limit.limit),
            "X-RateLimit-Remaining": str(max(0, remaining)),
            "X-RateLimit-Reset": _fmt(self._wall() + reset_after),
            "X-RateLimit-Reset-After": _fmt(reset_after),
            "X-RateLimit-Bucket": bucket_hash(limit.bucket),
        }
        if self.config.scope_header:
            headers["X-RateLimit-Scope"] = "user"
        return headers

    def admit(
        self,
        *,
        route_key: str,
        auth: str,
        major: str,
        global_key: str | None,
        webhook_channel: str | None = None,
    ) -> tuple[Reply | None, dict[str, str]]:
        """Count one request: a 429 :class:`Reply` if a limit is hit, else the bucket headers."""
        cfg = self.config
        via = {"Via": "1.1 google", "Content-Type": "application/json"}
        with self._lock:
            now = self._clock()
            if global_key is not None:
                retry = self._global_retry(global_key, now)
                if retry is not None:
                    headers = {
                        **via,
                        "Retry-After": str(max(1, math.ceil(retry))),
                        "X-RateLimit-Global": "true",
                        "X-RateLimit-Scope": "global",
                    }
                    body = {
                        "message": "You are being rate limited.",
                        "retry_after": round(retry, 3),
                        "global": True,
                    }
                    return Reply(429, body, headers, scope="global"), {}
            limit = self.route_limit(route_key)
            headers: dict[str, str] = {}
            if limit is not None:
                window = self._window(
                    self._windows,
                    (auth, limit.bucket, major),
                    now,
                    limit.window_s,
                    (limit.bucket, major),
                )
                if window.count >= limit.limit:
                    reset_after = window.end - now
                    headers = {
                        **via,
                        **self._bucket_headers(limit, auth, major),
                        "Retry-After": str(max(1, math.ceil(reset_after))),
                        "X-RateLimit-Scope": "user",
                    }
                    body = {
                        "message": "You are being rate limited.",
                        "retry_after": round(reset_after, 3),
                        "global": False,
                    }
                    return Reply(429, body, headers, scope="user"), {}
                window.count += 1
                headers = self._bucket_headers(limit, auth, major)
            if webhook_channel is not None and cfg.webhook_channel_limit is not None:
                count, span = cfg.webhook_channel_limit
                window = self._window(
                    self._windows,
                    ("*", "webhook-channel", webhook_channel),
                    now,
                    span,
                    ("webhook-channel", webhook_channel),
                )
                if window.count >= count:
                    retry = window.end - now
                    reply_headers = {**via, **headers, "Retry-After": str(max(1, math.ceil(retry)))}
                    body = {
                        "message": "You are being rate limited.",
                        "retry_after": round(retry, 3),
                        "global": False,
                    }
                    return Reply(429, body, reply_headers, scope="sublimit"), {}
                window.count += 1
            if global_key is not None:
                self._count_global(global_key, now)
            return None, headers

    def _global_retry(self, global_key: str, now: float) -> float | None:
        """Seconds until ``global_key`` may send again, or None when it may send now."""
        cfg = self.config
        if cfg.global_mode == "sliding":
            log = self._global.setdefault(global_key, deque())
            while log and log[0] <= now - cfg.global_window_s:
                log.popleft()
            return log[0] + cfg.global_window_s - now if len(log) >= cfg.global_limit else None
        window = self._window(
            self._global_windows, global_key, now, cfg.global_window_s, ("global", global_key)
        )
        return window.end - now if window.count >= cfg.global_limit else None

    def _window(
        self,
        table: dict[Any, _Window],
        key: Any,
        now: float,
        span: float,
        label: tuple[str, str],
    ) -> _Window:
        """The window of ``key`` at ``now``: a fresh one (logged) when the last one ended."""
        window = table.get(key)
        if window is None or now >= window.end:
            window = table[key] = _Window(end=now + span, start=now, label=label)
            self.window_log.append(window)
        return window

    def _count_global(self, global_key: str, now: float) -> None:
        if self.config.global_mode == "sliding":
            self._global.setdefault(global_key, deque()).append(now)
        else:
            self._global_windows.setdefault(global_key, _Window()).count += 1

    def note(
        self,
        *,
        ip: str,
        route_key: str,
        status: int,
        scope: str | None,
        auth: str,
        major: str = "-",
    ) -> None:
        """Record a response; count invalid ones and start a ban past the threshold."""
        cfg = self.config
        with self._lock:
            now = self._clock()
            self.events.append((now, route_key, status, scope, auth, major))
            if status in (401, 403) or (status == 429 and scope not in ("shared", "cloudflare")):
                log = self._invalid.setdefault(ip, deque())
                log.append(now)
                while log and log[0] <= now - cfg.invalid_window_s:
                    log.popleft()
                if len(log) >= cfg.invalid_ban_threshold:
                    self._banned_until[ip] = now + cfg.ban_s

    def invalid_count(self, ip: str) -> int:
        """Invalid requests of ``ip`` within the window."""
        with self._lock:
            now = self._clock()
            log = self._invalid.get(ip, deque())
            return sum(1 for t in log if t > now - self.config.invalid_window_s)

    def reset_counters(self) -> None:
        """Forget windows, global logs, invalid counts, bans and events (not the config)."""
        with self._lock:
            self._windows.clear()
            self._global.clear()
            self._global_windows.clear()
            self.window_log.clear()
            self._invalid.clear()
            self._banned_until.clear()
            self.events.clear()

    def windows(self) -> list[list[Any]]:
        """Every window opened since the last reset: ``[name, key, start, count]``.

        ``name`` is ``global`` (``key`` the token or IP) or a bucket's name (``key`` its major
        parameter); ``start`` is on the fake's clock, like the event times.
        """
        with self._lock:
            return [[w.label[0], w.label[1], w.start, w.count] for w in self.window_log]

    def stats(self) -> dict[str, Any]:
        """Counts by status and by 429 scope, and the times of accepted requests per route."""
        with self._lock:
            events = list(self.events)
        by_status: dict[str, int] = {}
        by_scope: dict[str, int] = {}
        for _, _, status, scope, _, _ in events:
            by_status[str(status)] = by_status.get(str(status), 0) + 1
            if status == 429:
                by_scope[scope or "?"] = by_scope.get(scope or "?", 0) + 1
        ok_times = [e[0] for e in events if 200 <= e[2] < 300]
        return {
            "requests": len(events),
            "by_status": by_status,
            "429_by_scope": by_scope,
            "received_429": by_status.get("429", 0),
            "ok": len(ok_times),
            "first_ok": min(ok_times) if ok_times else None,
            "last_ok": max(ok_times) if ok_times else None,
        }
