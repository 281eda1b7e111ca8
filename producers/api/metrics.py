"""Prometheus metrics of one API app, in a registry of its own (built by the app factory).

A registry per app keeps tests and several apps in one process from sharing counters; ``/metrics``
serves exactly this registry.
"""

from __future__ import annotations

from functools import partial

from prometheus_client import CollectorRegistry, Counter, Histogram

__all__ = ["ApiMetrics"]


class ApiMetrics:
    """The API's counters and histograms."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        counter = partial(Counter, registry=self.registry)
        self.requests = counter(
            "summarybot_api_requests",
            "HTTP requests answered, by method, route template and status code",
            ["method", "route", "status"],
        )
        self.latency = Histogram(
            "summarybot_api_request_duration_seconds",
            "Time from the first byte of a request to the end of its response",
            ["method", "route"],
            buckets=(0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
            registry=self.registry,
        )
        self.summary_requests = counter(
            "summary_requests",
            "Summary jobs requested through the API, by summary format and outcome "
            "(accepted: a new job; duplicate: an idempotent repeat of an earlier one)",
            ["type", "status"],
        )
        self.auth_failures = counter(
            "summarybot_api_auth_failures",
            "Requests refused by authentication, by reason",
            ["reason"],
        )
        self.rate_limited = counter(
            "summarybot_api_rate_limited",
            "Requests refused with 429 by the per-key rate limit or the per-address limit on "
            "failed authentications",
        )
        self.idempotency = counter(
            "summarybot_api_idempotency",
            "Requests with an Idempotency-Key, by outcome (proceed, replay, in_flight, mismatch)",
            ["outcome"],
        )
        self.body_too_large = counter(
            "summarybot_api_body_too_large",
            "Requests refused with 413 because the body exceeded the limit",
        )
