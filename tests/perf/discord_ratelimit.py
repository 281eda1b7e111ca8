"""Benchmark: 4 processes sharing one bot token read channel history through the shared limiter.

The fake Discord runs in its own process with Discord's shapes and fixed windows: ``GET
/channels/{id}/messages`` allows 5 requests per 1 s window per channel, and the token may make
50 requests per 1 s window in total (each window opens with the first request after the last one
ended, so no client can learn its phase).  Each of 4 worker processes reads one quarter (by
time) of every channel, one thread per channel, each worker starting at another channel, so
every channel's bucket and the global limit are contended by all four processes at once.

Two scenarios for the adapter, each with its own token:

* ``route`` (the headline ``rate_ratio``): 4 channels x 5,000 messages; the channel buckets bind
  (4 x 5 = 20 requests/s allowed).
* ``global`` (``rate_ratio_global``): 16 channels x 2,500 messages; the global limit binds
  (16 x 5 = 80 > 50 requests/s).

Then the peer: the ``route`` scenario read by 4 processes using discord.py's own HTTP client
(``discord.http.HTTPClient.logs_from`` with ``Route.BASE`` pointed at the fake), whose limiter
lives inside each process.

Figures (the last line is JSON):

* ``rate_ratio``: the share of the binding windows' capacity used, from the windows the fake
  opened (exact, no sampling): per channel (``route``) or for the token (``global``),
  requests admitted in every window but the last, divided by the time from the first window's
  start to the last one's, over the allowed rate.  Time between a window's end and the next
  window's first request counts as lost.
* ``span_ratio``: (successful history requests - 1) / (last success - first success) over the
  allowed rate: the figure earlier runs reported; with fixed windows a client that spends each
  window in one burst scores up to one window too many on it.
* ``received_429``: 429s the fake sent; ``surfaced_429``: rate-limit errors the callers saw;
  ``errors``: any other failure.  The same with ``_global`` and ``peer_`` for the other runs.

Run: ``TEST_REDIS_DB=5 python -m tests.perf.discord_ratelimit`` (needs Redis on 127.0.0.1).
"""

from __future__ import annotations

import asyncio
import json
import math
import multiprocessing as mp
import os
import statistics
import sys
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

PROCESSES = 4
ROUTE_LIMIT = 5
ROUTE_WINDOW_S = 1.0
GLOBAL_LIMIT = 50
STEP_MS = 60_000
HISTORY_ROUTE = "GET /channels/{channel_id}/messages"
HISTORY_BUCKET = "messages-read"
REDIS_URL = f"redis://127.0.0.1:6379/{os.environ.get('TEST_REDIS_DB', '5')}"


@dataclass(frozen=True)
class Scenario:
    """``channels`` channels of ``messages`` messages each, read by every process."""

    name: str
    channels: int
    messages: int

    @property
    def allowed_rps(self) -> float:
        """The binding limit: all channel buckets together, or the global limit."""
        return min(GLOBAL_LIMIT, self.channels * ROUTE_LIMIT / ROUTE_WINDOW_S)

    @property
    def global_bound(self) -> bool:
        """True when the global limit binds before the channel buckets do."""
        return self.channels * ROUTE_LIMIT / ROUTE_WINDOW_S > GLOBAL_LIMIT


ROUTE = Scenario("route", channels=4, messages=5_000)
GLOBAL = Scenario("global", channels=16, messages=2_500)


def _slices(start_ms: int, messages: int) -> list[tuple[int, int]]:
    span = messages * STEP_MS
    return [
        (start_ms + p * span // PROCESSES, start_ms + (p + 1) * span // PROCESSES)
        for p in range(PROCESSES)
    ]


def _ours(args: dict[str, Any]) -> dict[str, Any]:
    """One worker process of the adapter: its time slice of every channel, a thread each."""
    import httpx
    import redis
    import structlog

    from shared.discord.config import DiscordSettings
    from shared.discord.errors import RateLimited
    from shared.discord.factory import build_discord_client

    structlog.configure(logger_factory=structlog.PrintLoggerFactory(sys.stderr))
    settings = DiscordSettings(
        token=args["token"], api_base=args["api_base"], key_prefix=args["prefix"], max_wait_s=60
    )
    low, high = (datetime.fromtimestamp(ms / 1000, tz=UTC) for ms in args["slice"])
    surfaced = 0
    errors: list[str] = []

    def fetch(channel_id: str) -> int:
        nonlocal surfaced
        try:
            return sum(1 for _ in client.iter_history(channel_id, after=low, before=high))
        except RateLimited:
            surfaced += 1
        except Exception as exc:  # a benchmark reports every failure instead of dying
            errors.append(repr(exc))
        return 0

    channels = args["channels"]
    with (
        httpx.Client(timeout=30, limits=httpx.Limits(max_connections=64)) as http,
        redis.Redis.from_url(REDIS_URL) as rds,
    ):
        client = build_discord_client(settings, http, rds, None)
        time.sleep(max(0.0, args["start_at"] - time.time()))
        with ThreadPoolExecutor(max_workers=len(channels)) as pool:
            counts = list(pool.map(fetch, channels))
    return {"messages": sum(counts), "surfaced_429": surfaced, "errors": errors[:5]}


def _peer(args: dict[str, Any]) -> dict[str, Any]:
    """One worker process of the peer: discord.py's HTTPClient, one task per channel."""
    import discord
    from discord.http import HTTPClient, Route

    Route.BASE = args["api_base"]
    low, high = args["slice"]
    epoch = 1420070400000
    low_id, high_id = ((low - epoch) << 22) - 1, (high - epoch) << 22
    surfaced = 0
    errors: list[str] = []

    async def fetch(http: HTTPClient, channel_id: str) -> int:
        nonlocal surfaced
        cursor, count = low_id, 0
        try:
            while True:
                page = await http.logs_from(channel_id, 100, after=cursor)
                ids = sorted(int(m["id"]) for m in page)
                inside = [i for i in ids if i < high_id]
                count += len(inside)
                if len(page) < 100 or len(inside) < len(ids):
                    return count
                cursor = ids[-1]
        except discord.RateLimited:
            surfaced += 1
        except discord.HTTPException as exc:
            if exc.status == 429:
                surfaced += 1
            else:
                errors.append(repr(exc))
        except Exception as exc:  # connection resets and the like: the peer's errors
            errors.append(repr(exc))
        return count

    async def run() -> int:
        http = HTTPClient(asyncio.get_running_loop())
        await http.static_login(args["token"])
        await asyncio.sleep(max(0.0, args["start_at"] - time.time()))
        try:
            counts = await asyncio.gather(*(fetch(http, c) for c in args["channels"]))
        finally:
            await http.close()
        return sum(counts)

    messages = asyncio.run(run())
    return {"messages": messages, "surfaced_429": surfaced, "errors": errors[:5]}


def _window_rate(windows: list[list[Any]]) -> float | None:
    """Admitted requests per second over complete windows (``None`` with fewer than two)."""
    ordered = sorted(windows, key=lambda w: w[2])
    if len(ordered) < 2:
        return None
    span = ordered[-1][2] - ordered[0][2]
    return sum(w[3] for w in ordered[:-1]) / span if span > 0 else None


def _measure(url: str, scenario: Scenario, token: str) -> dict[str, Any]:
    from tests.fakes.discord_server import control

    stats = control(url, "stats", {"events": True, "windows": True})
    times = [
        t for t, route, status, _, _ in stats["events"] if route == HISTORY_ROUTE and status == 200
    ]
    elapsed = max(times) - min(times) if len(times) > 1 else math.nan
    if times:
        first = min(times)
        per_half_second = [0] * (int(elapsed * 2) + 1)
        for t in times:
            per_half_second[int((t - first) * 2)] += 1
        print(f"successes per 0.5 s: {per_half_second}", file=sys.stderr)
    span_rps = (len(times) - 1) / elapsed if len(times) > 1 else 0.0
    if scenario.global_bound:
        rate = _window_rate([w for w in stats["windows"] if w[:2] == ["global", f"token:{token}"]])
        window_ratio = (rate or 0.0) / GLOBAL_LIMIT
        worst = window_ratio
    else:
        per_channel: dict[str, list[list[Any]]] = {}
        for window in stats["windows"]:
            if window[0] == HISTORY_BUCKET:
                per_channel.setdefault(window[1], []).append(window)
        ratios = [
            (_window_rate(ws) or 0.0) / (ROUTE_LIMIT / ROUTE_WINDOW_S)
            for ws in per_channel.values()
        ]
        window_ratio = statistics.fmean(ratios) if ratios else 0.0
        worst = min(ratios, default=0.0)
    return {
        "requests": len(times),
        "rate_ratio": round(window_ratio, 3),
        "worst_ratio": round(worst, 3),
        "span_ratio": round(span_rps / scenario.allowed_rps, 3),
        "achieved_rps": round(span_rps, 2),
        "elapsed_s": round(elapsed, 2),
        "received_429": stats["received_429"],
        "received_429_by_scope": stats["429_by_scope"],
    }


def _run(
    url: str, worker: Any, scenario: Scenario, token: str, seeded: dict[str, Any]
) -> dict[str, Any]:
    from tests.fakes.discord_server import control

    control(url, "reset", {})
    prefix = "{dperf-" + uuid.uuid4().hex[:8] + "}"
    start_at = time.time() + 3.0
    channels = seeded["channel_ids"]
    jobs = [
        {
            "token": token,
            "api_base": f"{url}/api/v10",
            "prefix": prefix,
            # Each worker starts at another channel, as workers serving different jobs would.
            "channels": channels[p * len(channels) // PROCESSES :]
            + channels[: p * len(channels) // PROCESSES],
            "slice": seeded["slices"][p],
            "start_at": start_at,
        }
        for p in range(PROCESSES)
    ]
    ctx = mp.get_context("spawn")
    with ctx.Pool(PROCESSES) as pool:
        results = pool.map(worker, jobs)
    if worker is _ours:
        import redis

        with redis.Redis.from_url(REDIS_URL) as rds:
            keys = list(rds.scan_iter(match=f"{prefix}*", count=500))
            if keys:
                rds.delete(*keys)
    figures = _measure(url, scenario, token)
    figures["messages"] = sum(w["messages"] for w in results)
    figures["expected_messages"] = scenario.channels * scenario.messages
    figures["surfaced_429"] = sum(w["surfaced_429"] for w in results)
    figures["errors"] = sum(len(w["errors"]) for w in results)
    label = "peer" if worker is _peer else f"ours/{scenario.name}"
    print(f"{label}: {figures} workers={results}", file=sys.stderr)
    return figures


def _seed(url: str, scenario: Scenario, token: str) -> dict[str, Any]:
    from tests.fakes.discord_server import control

    start_ms = int(time.time() * 1000) - scenario.messages * STEP_MS - 3_600_000
    seeded: dict[str, Any] = control(
        url,
        "seed",
        {
            "scenario": "bench",
            "token": token,
            "channels": scenario.channels,
            "messages": scenario.messages,
            "start_ms": start_ms,
            "step_ms": STEP_MS,
        },
    )
    seeded["slices"] = _slices(start_ms, scenario.messages)
    return seeded


def main() -> None:
    """Run the scenarios and the peer, and print the figures (last line: JSON)."""
    from tests.fakes.discord_server import control, spawn_server

    proc, url = spawn_server()
    try:
        control(
            url,
            "config",
            {
                "global_limit": GLOBAL_LIMIT,
                "global_window_s": 1.0,
                "global_mode": "fixed",
                "latency_s": 0.0,
                "limits": {HISTORY_ROUTE: [HISTORY_BUCKET, ROUTE_LIMIT, ROUTE_WINDOW_S]},
            },
        )
        tokens = {"route": "bench-ours", "global": "bench-ours-global", "peer": "bench-peer"}
        seeds = {
            "route": _seed(url, ROUTE, tokens["route"]),
            "global": _seed(url, GLOBAL, tokens["global"]),
            "peer": _seed(url, ROUTE, tokens["peer"]),
        }
        print(
            f"fake Discord at {url}; {PROCESSES} processes; route: {ROUTE.channels} channels x "
            f"{ROUTE.messages} messages, {ROUTE.allowed_rps:g} req/s allowed; global: "
            f"{GLOBAL.channels} x {GLOBAL.messages}, {GLOBAL.allowed_rps:g} req/s allowed",
            file=sys.stderr,
        )
        ours = _run(url, _ours, ROUTE, tokens["route"], seeds["route"])
        ours_global = _run(url, _ours, GLOBAL, tokens["global"], seeds["global"])
        peer = _run(url, _peer, ROUTE, tokens["peer"], seeds["peer"])
    finally:
        if proc.stdin is not None:
            proc.stdin.close()
        proc.wait(timeout=10)
    figures: dict[str, Any] = {"processes": PROCESSES, "allowed_rps": ROUTE.allowed_rps}
    figures.update(ours)
    figures.update({f"{k}_global": v for k, v in ours_global.items()})
    figures["allowed_rps_global"] = GLOBAL.allowed_rps
    figures.update({f"peer_{k}": v for k, v in peer.items()})
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
