"""Benchmark: the adapter's own latency, and how fast it recovers from a global 429.

Against the fake Discord (its own process, no added latency, route limits raised so that only
the adapter's machinery is measured):

* ``webhook_p99_ms`` / ``send_p99_ms``: the 99th percentile of *our overhead* on executing a
  webhook and on sending a message: the duration of the adapter call minus the time spent
  inside the HTTP transport for its one request (measured by a timing transport wrapped around
  httpx's own).  What remains is ours: the Redis-shared limiter's two scripts, limit checks,
  JSON building and parsing, error mapping and metrics.  Calls are paced below the global limit,
  so no limiter wait is counted.  For context, ``*_paired_p99_ms`` also pairs each call with the
  same request sent with bare httpx (random order) and takes the difference; on a busy machine
  that figure mostly measures scheduler noise in two full round trips.
* ``recovery_s``: 10 threads send messages in a loop; the fake then answers every message
  request with a global 429 for 2 s (``retry_after`` counting down from 2).  ``recovery_s`` is the
  time from the first 429 until the last of the 10 threads has had a message accepted again.

``env_*`` figures describe the machine meanwhile (Redis ping latency, load average): on a
shared, busy machine they explain a p99 that the adapter itself does not cause.

Run: ``TEST_REDIS_DB=5 python -m tests.perf.discord_latency`` (needs Redis on 127.0.0.1).
"""

from __future__ import annotations

import json
import os
import random
import statistics
import sys
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

import httpx
import redis
import structlog

from shared.discord.client import DiscordClient
from shared.discord.config import DiscordSettings
from shared.discord.factory import build_discord_client
from shared.discord.models import Message
from shared.discord.objects import WebhookRef
from tests.fakes.discord_server import control, spawn_server

REDIS_URL = f"redis://127.0.0.1:6379/{os.environ.get('TEST_REDIS_DB', '5')}"
TOKEN = "latency-bench"
SAMPLES = 500
WARMUP = 20
PACE_S = 1 / 15
THREADS = 10
SEND_ROUTE = "POST /channels/{channel_id}/messages"


def _p(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


class TimingTransport(httpx.BaseTransport):
    """Wraps httpx's transport and remembers how long the last request spent in it."""

    def __init__(self) -> None:
        self.inner = httpx.HTTPTransport()
        self.last_ms = 0.0

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        """Send, read the body, and time both."""
        start = time.perf_counter()
        response = self.inner.handle_request(request)
        response.read()
        self.last_ms = (time.perf_counter() - start) * 1000
        return response

    def close(self) -> None:
        """Close the wrapped transport."""
        self.inner.close()


def _measure(
    ours: Callable[[], Any], raw: Callable[[], httpx.Response], transport: TimingTransport
) -> dict[str, float]:
    overheads: list[float] = []
    paired: list[float] = []
    ours_ms: list[float] = []
    raw_ms: list[float] = []
    rng = random.Random(7)
    for n in range(WARMUP + SAMPLES):
        began = time.perf_counter()
        timings: dict[str, float] = {}
        order = ["ours", "raw"] if rng.random() < 0.5 else ["raw", "ours"]
        for which in order:
            start = time.perf_counter()
            if which == "ours":
                ours()
                inside = transport.last_ms
            else:
                raw().raise_for_status()
            timings[which] = (time.perf_counter() - start) * 1000
        if n >= WARMUP:
            overheads.append(timings["ours"] - inside)
            paired.append(timings["ours"] - timings["raw"])
            ours_ms.append(timings["ours"])
            raw_ms.append(timings["raw"])
        time.sleep(max(0.0, PACE_S - (time.perf_counter() - began)))
    return {
        "overhead_p50_ms": round(statistics.median(overheads), 3),
        "overhead_p99_ms": round(_p(overheads, 0.99), 3),
        "paired_p99_ms": round(_p(paired, 0.99), 3),
        "ours_p99_ms": round(_p(ours_ms, 0.99), 3),
        "raw_p99_ms": round(_p(raw_ms, 0.99), 3),
    }


def _recovery(url: str, client: DiscordClient, channels: list[str]) -> dict[str, Any]:
    stop = threading.Event()
    failures: list[str] = []

    def loop(channel_id: str) -> None:
        n = 0
        while not stop.is_set():
            try:
                client.send_message(channel_id, Message(content=f"recovery {n}"))
            except Exception as exc:  # a benchmark reports failures instead of dying
                failures.append(repr(exc))
            n += 1

    control(url, "reset", {})
    threads = [threading.Thread(target=loop, args=(c,)) for c in channels]
    for thread in threads:
        thread.start()
    time.sleep(1.0)
    control(url, "fault", {"kind": "global429", "route": SEND_ROUTE, "duration_s": 2.0})
    time.sleep(4.0)
    stop.set()
    for thread in threads:
        thread.join(timeout=30)
    events = control(url, "stats", {"events": True})["events"]
    sends = [e for e in events if e[1] == SEND_ROUTE]
    first_429 = min(t for t, _, status, _, _ in sends if status == 429)
    resumed = {}
    for t, _, status, _, major in sends:
        if status == 200 and t > first_429 and major not in resumed:
            resumed[major] = t
    blocked = {major for t, _, status, _, major in sends if status == 429}
    return {
        "recovery_s": round(max(resumed.values()) - first_429, 3),
        "recovery_threads_resumed": len(resumed),
        "recovery_received_429": len([e for e in sends if e[2] == 429]),
        "recovery_threads_hit_by_429": len(blocked),
        "recovery_failures": len(failures),
    }


class RedisProbe:
    """Pings Redis in the background: how noisy the shared environment is meanwhile."""

    def __init__(self, url: str) -> None:
        self._client = redis.Redis.from_url(url)
        self._stop = threading.Event()
        self.samples: list[float] = []
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(0.02):
            start = time.perf_counter()
            self._client.ping()
            self.samples.append((time.perf_counter() - start) * 1000)

    def __enter__(self) -> RedisProbe:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self._client.close()


def main() -> None:
    """Run the three measurements and print the figures (last line: JSON)."""
    structlog.configure(logger_factory=structlog.PrintLoggerFactory(sys.stderr))
    proc, url = spawn_server()
    prefix = "{dlat-" + uuid.uuid4().hex[:8] + "}"
    try:
        control(
            url,
            "config",
            {
                "latency_s": 0.0,
                "webhook_channel_limit": None,
                "limits": {
                    SEND_ROUTE: ["bench-write", 100_000, 1.0],
                    "POST /webhooks/{webhook_id}/{webhook_token}": ["bench-webhook", 100_000, 1.0],
                },
            },
        )
        seeded = control(
            url,
            "seed",
            {
                "scenario": "bench",
                "token": TOKEN,
                "channels": THREADS,
                "messages": 1,
                "start_ms": int(time.time() * 1000) - 60_000,
                "step_ms": 1,
            },
        )
        api_base = f"{url}/api/v10"
        channel = seeded["channel_ids"][0]
        hook = WebhookRef.from_url(
            f"https://discord.com/api/webhooks/{seeded['webhook_id']}/{seeded['webhook_token']}"
        )
        settings = DiscordSettings(token=TOKEN, api_base=api_base, key_prefix=prefix)
        transport = TimingTransport()
        with (
            httpx.Client(timeout=30, transport=transport) as http,
            redis.Redis.from_url(REDIS_URL) as rds,
            build_discord_client(settings, http, rds, None) as client,
        ):
            message = Message(content="Nightly export finished (2.1 GB).")
            body = message.to_json()
            auth = {"Authorization": f"Bot {TOKEN}"}
            probe = RedisProbe(REDIS_URL).__enter__()
            webhook = _measure(
                lambda: client.execute_webhook(hook, message),
                lambda: http.post(
                    f"{api_base}/webhooks/{hook.id}/{hook.token.get_secret_value()}",
                    params={"wait": "true"},
                    json=body,
                ),
                transport,
            )
            print(f"webhook: {webhook}", file=sys.stderr)
            send = _measure(
                lambda: client.send_message(channel, message),
                lambda: http.post(
                    f"{api_base}/channels/{channel}/messages", json=body, headers=auth
                ),
                transport,
            )
            print(f"send: {send}", file=sys.stderr)
            probe.__exit__()
            recovery = _recovery(url, client, seeded["channel_ids"])
            print(f"recovery: {recovery}", file=sys.stderr)
            keys = list(rds.scan_iter(match=f"{prefix}*", count=500))
            if keys:
                rds.delete(*keys)
    finally:
        if proc.stdin is not None:
            proc.stdin.close()
        proc.wait(timeout=10)
    figures = {
        "webhook_p99_ms": webhook["overhead_p99_ms"],
        "webhook_p50_ms": webhook["overhead_p50_ms"],
        "webhook_paired_p99_ms": webhook["paired_p99_ms"],
        "webhook_total_p99_ms": webhook["ours_p99_ms"],
        "webhook_raw_p99_ms": webhook["raw_p99_ms"],
        "send_p99_ms": send["overhead_p99_ms"],
        "send_p50_ms": send["overhead_p50_ms"],
        "send_paired_p99_ms": send["paired_p99_ms"],
        "send_total_p99_ms": send["ours_p99_ms"],
        "send_raw_p99_ms": send["raw_p99_ms"],
        "samples": SAMPLES,
        "env_redis_ping_p99_ms": round(_p(probe.samples, 0.99), 3),
        "env_redis_ping_max_ms": round(max(probe.samples), 3),
        "env_load_average_1m": round(os.getloadavg()[0], 2),
        **recovery,
    }
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
