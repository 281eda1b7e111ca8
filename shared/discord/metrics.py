"""Prometheus metrics of the Discord adapter, registered on a registry the caller owns.

Labels are route *templates* (``POST /channels/{channel_id}/messages``), statuses and scopes:
never ids, tokens or webhook URLs, so cardinality stays small and no secret leaks.
"""

from __future__ import annotations

import threading
import weakref
from functools import partial
from typing import ClassVar

from prometheus_client import CollectorRegistry, Counter, Histogram

__all__ = ["DiscordMetrics"]

_WAIT_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)


class DiscordMetrics:
    """Requests by route and status, 429s by scope, limiter waits, retries.

    Use :meth:`on`: a registry holds each metric once, so every client of a process that
    reports to the same registry shares one set.
    """

    _made: ClassVar[weakref.WeakKeyDictionary[CollectorRegistry, DiscordMetrics]] = (
        weakref.WeakKeyDictionary()
    )
    _lock: ClassVar[threading.Lock] = threading.Lock()

    @classmethod
    def on(cls, registry: CollectorRegistry) -> DiscordMetrics:
        """The adapter's metrics on ``registry``, registered the first time they are asked for."""
        with cls._lock:
            metrics = cls._made.get(registry)
            if metrics is None:
                metrics = cls._made[registry] = cls(registry)
            return metrics

    def __init__(self, registry: CollectorRegistry, *, namespace: str = "summarybot") -> None:
        counter = partial(Counter, namespace=namespace, registry=registry)
        self.requests = counter(
            "discord_requests",
            "Discord REST requests sent, by route template and HTTP status ('error' = no answer)",
            ["route", "status"],
        )
        self.rate_limited = counter(
            "discord_429", "Rate-limited answers received from Discord, by scope", ["scope"]
        )
        self.limiter_wait = Histogram(
            "discord_limiter_wait_seconds",
            "Time a request waited for the shared rate limiter before being sent",
            ["route"],
            buckets=_WAIT_BUCKETS,
            namespace=namespace,
            registry=registry,
        )
        self.retries = counter(
            "discord_retries",
            "Requests retried after a 5xx, a network error or a 429",
            ["route", "reason"],
        )
        self.refusals = counter(
            "discord_refused",
            "Requests the adapter refused without sending (dead token/webhook, ban, breaker, "
            "deadline)",
            ["reason"],
        )
