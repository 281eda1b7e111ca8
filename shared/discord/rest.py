"""Sending one Discord request: limiter, HTTP, parsing, retries, metrics and recording.

:class:`RestSession` is the only place that talks HTTP.  For each request it

1. takes the current bot token (so a rotated token applies to the very next request),
2. asks the shared limiter for a slot, sleeping what it says, and raises
   :class:`~shared.discord.errors.RateLimited` instead when the wait would pass the caller's
   deadline (dead tokens, dead webhooks and bans are refused without sending anything),
3. sends, parses the answer, gives the outcome back to the limiter,
4. retries 429s (the limiter now knows how long to wait), 5xx and network errors (``max_retries``
   times, exponential backoff with jitter, or a 5xx's ``Retry-After`` when it has one and it
   ends before the deadline; a POST that is not idempotent is only retried when it certainly
   did not reach Discord), and raises the mapped error otherwise.

Tokens and webhook URLs never reach a log line, an exception or the recording.
"""

from __future__ import annotations

import random
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import httpx
import structlog

from shared.discord.errors import (
    DiscordError,
    InvalidWebhook,
    NetworkError,
    RateLimited,
    ServerError,
    Unauthorized,
)
from shared.discord.metrics import DiscordMetrics
from shared.discord.responses import (
    Answer,
    error_for,
    not_json_error,
    read_answer,
    server_retry_after,
)
from shared.discord.routes import CompiledRoute
from shared.discord.simulation import Recorder, redact_path
from shared.discord.tokens import TokenSource, token_id
from shared.errors import ConfigError
from shared.ratelimit.discord import DiscordRateLimiter, LimitKey, Outcome, Slot

__all__ = ["DEFAULT_USER_AGENT", "RequestPolicy", "RestSession"]

log = structlog.get_logger(__name__)

DEFAULT_USER_AGENT = "DiscordBot (https://github.com/summary-bot-ng/summary-bot-ng, 0.1.0)"

#: Errors raised before the request left this machine: always safe to retry.
_NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)
#: Resources remembered as refused (403) at once, at most.
_FORBIDDEN_ENTRIES = 10_000
_DENIAL_SCOPE = {
    "bucket": "bucket",
    "discovery": "bucket",
    "global": "global-preemptive",
    "global429": "global",
    "shared": "shared",
    "sublimit": "sublimit",
}


@dataclass(frozen=True, slots=True)
class RequestPolicy:
    """Retry and waiting policy of a :class:`RestSession`."""

    max_retries: int = 3
    backoff_base_s: float = 0.5
    backoff_cap_s: float = 8.0
    max_wait_s: float = 30.0
    max_429_retries: int = 5
    max_booking_s: float = 5.0
    user_agent: str = DEFAULT_USER_AGENT
    #: How long a route on a channel that answered 403 is refused locally.
    forbidden_memo_s: float = 120.0


class RestSession:
    """Sends requests through the limiter; see the module docstring for the whole contract."""

    def __init__(
        self,
        *,
        http: httpx.Client,
        api_base: str,
        limiter: DiscordRateLimiter,
        tokens: TokenSource | None,
        policy: RequestPolicy | None = None,
        metrics: DiscordMetrics | None = None,
        recorder: Recorder | None = None,
        sleep: Callable[[float], None] = time.sleep,
        rng: random.Random | None = None,
    ) -> None:
        self.http = http
        self.api_base = api_base.rstrip("/")
        self.limiter = limiter
        self.tokens = tokens
        self.policy = policy or RequestPolicy()
        self.metrics = metrics
        self.recorder = recorder
        self._sleep = sleep
        self._rng = rng or random.Random()  # noqa: S311 - jitter, not cryptography
        # channel (major) -> route key -> (until, the 403 answer): see _remember_forbidden.
        self._forbidden: OrderedDict[str, dict[str, tuple[float, Answer]]] = OrderedDict()
        self._forbidden_lock = threading.Lock()

    def __repr__(self) -> str:
        return f"RestSession(api_base={self.api_base!r}, limiter={self.limiter!r})"

    def request(
        self,
        route: CompiledRoute,
        *,
        json: Any = None,
        params: Mapping[str, str | int | bool] | None = None,
        idempotent: bool | None = None,
        max_wait_s: float | None = None,
        reason: str | None = None,
    ) -> Answer:
        """Send ``route`` and return the 2xx :class:`Answer`; raise a Discord error otherwise.

        ``max_wait_s`` bounds the total time spent waiting for rate limits and for a 5xx's
        ``Retry-After`` (the caller's deadline); ``idempotent`` defaults to True for every
        method but POST.
        """
        authed = not (route.route.webhook or route.route.interaction)
        headers = {"User-Agent": self.policy.user_agent}
        if reason:
            headers["X-Audit-Log-Reason"] = quote(reason, safe="/ ")
        query = {k: _query_value(v) for k, v in (params or {}).items()}
        safe_retry = idempotent if idempotent is not None else route.method != "POST"
        deadline = time.monotonic() + (self.policy.max_wait_s if max_wait_s is None else max_wait_s)
        failures = 0
        rate_limits = 0
        refused = self._recently_forbidden(route) if authed else None
        if refused is not None:
            self._count(route, "403-remembered")
            raise error_for(refused, route, api_base=self.api_base)
        while True:
            key = self._limit_key(route, authed, headers)
            slot, waited, denials = self._acquire(key, route, deadline)
            try:
                response = self.http.request(
                    route.method,
                    self.api_base + route.path,
                    json=json,
                    params=query or None,
                    headers=headers,
                )
                response.read()
            except httpx.TransportError as exc:
                self.limiter.release(slot, Outcome(status=None))
                self._count(route, "error")
                if self.recorder is not None:
                    self.recorder.record(route, query, json, waited, denials, error=exc)
                failures += 1
                if failures <= self.policy.max_retries and (
                    safe_retry or isinstance(exc, _NOT_SENT)
                ):
                    self._count_retry(route, "network")
                    self._backoff(failures)
                    continue
                detail = redact_path(str(exc)) or type(exc).__name__
                lost = NetworkError(
                    f"no answer from Discord after {failures} attempt(s): "
                    f"{type(exc).__name__}: {detail}",
                    route=route.label,
                    user_message="Discord could not be reached.",
                )
                lost.maybe_done = not (safe_retry or isinstance(exc, _NOT_SENT))
                raise lost from None
            answer = read_answer(response, route, authed=authed)
            self.limiter.release(slot, answer.outcome)
            self._count(route, str(answer.status))
            if self.recorder is not None:
                self.recorder.record(
                    route,
                    query,
                    json,
                    waited,
                    denials,
                    status=answer.status,
                    headers=response.headers,
                    response_body=answer.body,
                )
            if answer.ok:
                if isinstance(answer.body, str):
                    raise not_json_error(answer, route, self.api_base)
                self._forget_forbidden(route)
                return answer
            if answer.rate_limited:
                scope = answer.outcome.scope or "user"
                if self.metrics is not None:
                    self.metrics.rate_limited.labels(scope).inc()
                log.warning(
                    "discord.rate_limited",
                    route=route.label,
                    scope=scope,
                    retry_after=answer.outcome.retry_after,
                    code=answer.code,
                )
                rate_limits += 1
                if scope == "cloudflare":
                    log.error("discord.cloudflare_ban", route=route.label)
                    raise RateLimited(
                        "Discord's edge (Cloudflare) is blocking this IP; nothing is sent for "
                        f"{self.limiter.config.ban_s:.0f} s",
                        retry_after=max(
                            answer.outcome.retry_after or 0.0, self.limiter.config.ban_s
                        ),
                        scope="cloudflare",
                        status=answer.status,
                        code=answer.code,
                        route=route.label,
                    )
                if rate_limits <= self.policy.max_429_retries:
                    self._count_retry(route, "429")
                    continue
                raise error_for(answer, route, api_base=self.api_base)
            if answer.status >= 500:
                failures += 1
                self._after_server_error(
                    answer, response.headers, route, failures, safe_retry, deadline
                )
                continue
            if answer.outcome.dead_token:
                log.error("discord.token_rejected", route=route.label, token=key.token_id)
            if answer.outcome.dead_webhook:
                log.warning("discord.webhook_dead", route=route.label, webhook=key.webhook_key)
            if answer.status == 403 and authed:
                self._remember_forbidden(route, answer)
            raise error_for(answer, route, api_base=self.api_base)

    def _remember_forbidden(self, route: CompiledRoute, answer: Answer) -> None:
        """Refuse ``route`` on the same channel locally for a while (see :meth:`request`).

        Every 403 counts toward Discord's invalid-request limit of the whole deployment, and
        callers choose the channels: a channel the bot may read but not write in, named as the
        destination of many summaries, or channels it cannot see, would otherwise cost one
        invalid request each time.  A permission granted meanwhile is noticed within
        ``forbidden_memo_s``; any request that succeeds on the channel (joining a thread)
        forgets its refusals at once.
        """
        if "channel_id" not in route.params or self.policy.forbidden_memo_s <= 0:
            return  # a channel's permissions, not a guild's or a token's
        until = time.monotonic() + self.policy.forbidden_memo_s
        with self._forbidden_lock:
            self._forbidden.setdefault(route.major, {})[route.key] = (until, answer)
            self._forbidden.move_to_end(route.major)
            while len(self._forbidden) > _FORBIDDEN_ENTRIES:
                self._forbidden.popitem(last=False)

    def _recently_forbidden(self, route: CompiledRoute) -> Answer | None:
        if not self._forbidden:
            return None
        with self._forbidden_lock:
            entry = self._forbidden.get(route.major, {}).get(route.key)
            if entry is None:
                return None
            if entry[0] <= time.monotonic():
                del self._forbidden[route.major][route.key]
                return None
            return entry[1]

    def _forget_forbidden(self, route: CompiledRoute) -> None:
        if self._forbidden and "channel_id" in route.params:
            with self._forbidden_lock:
                self._forbidden.pop(route.major, None)

    def _after_server_error(
        self,
        answer: Answer,
        headers: httpx.Headers,
        route: CompiledRoute,
        failures: int,
        safe_retry: bool,
        deadline: float,
    ) -> None:
        """Wait before sending again after a 5xx, or raise when it is not sent again.

        A ``Retry-After`` is waited exactly, unless it passes the caller's deadline (then the
        error says so, with ``retry_after``); without one the usual backoff applies.
        """
        asked = server_retry_after(headers)
        # Discord may have carried out a request it answers 5xx to (the backend finished,
        # the edge lost the answer): only a safe one is sent again here.
        if failures > self.policy.max_retries or not safe_retry:
            maybe_done = "" if safe_retry else " (not repeated: it may have been carried out)"
            error = self._server_error(
                answer, route, f"{failures} time(s){maybe_done}", retry_after=asked
            )
            error.maybe_done = not safe_retry
            raise error
        if asked is None:
            self._count_retry(route, "5xx")
            self._backoff(failures)
            return
        left = deadline - time.monotonic()
        if asked > left:
            raise self._server_error(
                answer,
                route,
                f"with Retry-After {asked:.2f} s, more than the {max(left, 0):.2f} s left "
                "before the caller's deadline",
                retry_after=asked,
            )
        self._count_retry(route, "5xx")
        self._sleep(asked)

    @staticmethod
    def _server_error(
        answer: Answer, route: CompiledRoute, detail: str, *, retry_after: float | None
    ) -> ServerError:
        return ServerError(
            f"Discord answered {answer.status} {detail}",
            status=answer.status,
            code=answer.code,
            route=route.label,
            retry_after=retry_after,
            user_message="Discord is having problems (server errors).",
        )

    def _limit_key(self, route: CompiledRoute, authed: bool, headers: dict[str, str]) -> LimitKey:
        if not authed:
            headers.pop("Authorization", None)
            scope = None if route.route.interaction else "ip"
            return LimitKey(route.key, route.major, None, scope, route.webhook_key)
        token = self.tokens.current() if self.tokens is not None else None
        if token is None:
            raise ConfigError(
                "no Discord bot token is configured; set DiscordSettings.token "
                "(DISCORD_TOKEN) or token_file"
            )
        headers["Authorization"] = f"Bot {token}"
        tid = token_id(token)
        return LimitKey(route.key, route.major, tid, f"t:{tid}", None)

    def _acquire(
        self, key: LimitKey, route: CompiledRoute, deadline: float
    ) -> tuple[Slot, float, list[str]]:
        started = time.monotonic()
        denials: list[str] = []
        while True:
            asked = time.monotonic()
            left = deadline - asked
            verdict = self.limiter.try_acquire(
                key, max_delay_s=max(0.0, min(left, self.policy.max_booking_s))
            )
            if verdict.slot is not None:
                # The slot was booked when the limiter ran, somewhere between asking and the
                # answer: aim at the middle, so a slow answer does not make the send late.
                pause = (asked + time.monotonic()) / 2 + verdict.slot.delay_s - time.monotonic()
                if pause > 0:
                    self._sleep(pause)
                waited = time.monotonic() - started
                if self.metrics is not None:
                    self.metrics.limiter_wait.labels(route.label).observe(waited)
                return verdict.slot, waited, denials
            denial = verdict.denial or "bucket"
            denials.append(denial)
            self._refuse(denial, verdict.wait_s, route, left)
            self._sleep(verdict.wait_s + self._rng.uniform(0, 0.005))

    def _refuse(self, denial: str, wait_s: float, route: CompiledRoute, left: float) -> None:
        """Raise when ``denial`` must not (or cannot, before the deadline) be waited out."""
        reason, error = denial, _refusal(denial, wait_s, route.label)
        if error is None and wait_s > left:
            reason = "deadline"
            error = RateLimited(
                f"rate limit ({denial}) needs {wait_s:.2f} s, more than the {max(left, 0):.2f} s "
                "left before the caller's deadline",
                retry_after=wait_s,
                scope=_DENIAL_SCOPE.get(denial, denial),
                route=route.label,
            )
        if error is not None:
            self._refused(reason)
            raise error

    def _backoff(self, failures: int) -> None:
        ceiling = min(self.policy.backoff_cap_s, self.policy.backoff_base_s * 2 ** (failures - 1))
        self._sleep(self._rng.uniform(ceiling / 2, ceiling))

    def _count(self, route: CompiledRoute, status: str) -> None:
        if self.metrics is not None:
            self.metrics.requests.labels(route.label, status).inc()

    def _count_retry(self, route: CompiledRoute, reason: str) -> None:
        if self.metrics is not None:
            self.metrics.retries.labels(route.label, reason).inc()

    def _refused(self, reason: str) -> None:
        if self.metrics is not None:
            self.metrics.refusals.labels(reason).inc()


#: Denials refused however long the caller could wait: the error's scope and message.
_NEVER_WAITED = {
    "ban": (
        "cloudflare",
        "Discord's edge (Cloudflare) blocked this IP; nothing is sent until the ban ends",
    ),
    "breaker": (
        "breaker",
        "too many invalid requests (401/403/429) in the last 10 minutes; the breaker pauses "
        "Discord traffic to stay far from Discord's IP ban",
    ),
}


def _refusal(denial: str, wait_s: float, label: str) -> DiscordError | None:
    """The error of a denial that is never waited out (a dead token or webhook, an IP ban,
    the invalid-request breaker), or None for one a long enough deadline would wait for."""
    if denial == "dead-token":
        return Unauthorized(
            "the bot token was rejected by Discord (401); every request with it is refused "
            "until the token is rotated",
            status=401,
            route=label,
            user_message="Discord rejected the bot token; set a valid DISCORD_TOKEN.",
        )
    if denial == "dead-webhook":
        return InvalidWebhook(
            "this webhook was rejected by Discord earlier; it is no longer used",
            route=label,
            user_message="The Discord webhook no longer exists; update the target.",
        )
    if denial in _NEVER_WAITED:
        scope, message = _NEVER_WAITED[denial]
        return RateLimited(message, retry_after=wait_s, scope=scope, route=label)
    return None


def _query_value(value: str | int | bool) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)
