"""Benchmark: 4 processes sharing one bot token fetch 20,000 messages through the shared limiter.

The fake Discord runs in its own process with Discord's default shapes: ``GET
/channels/{id}/messages`` allows 5 requests per second per channel, and the token may make 50
requests per second in total (a sliding one-second window, the strictest reading).  40 channels
hold 500 messages each (40 x 5/s of route capacity, so the global limit binds: the allowed rate
is 50/s).  Each of the 4 worker processes reads one quarter (by time) of every channel with 20
threads, each worker starting at another channel, so every channel's bucket and the global
limit are contended by all four processes at once.

Then the peer: the same work by 4 processes using discord.py's own HTTP client
(``discord.http.HTTPClient.logs_from`` with ``Route.BASE`` pointed at the fake), whose limiter
lives inside each process.

Figures (the last line is JSON): ``rate_ratio`` = achieved successful request rate / allowed
rate, measured by the fake between its first and last successful history request;
``received_429`` = 429s the fake sent; ``surfaced_429`` = rate-limit errors the callers saw;
the same with the ``peer_`` prefix for discord.py.

Run: ``TEST_REDIS_DB=5 python -m tests.perf.discord_ratelimit`` (needs Redis on 127.0.0.1).
"""

from __future__ import annotations

import asyncio
import json
import multiprocessing as mp
import os
import sys
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any

PROCESSES = 4
CHANNELS = 40
MESSAGES_PER_CHANNEL = 500
ROUTE_LIMIT = 5
GLOBAL_LIMIT = 50
STEP_MS = 60_000
#: Threads per worker process (each reads one channel's slice at a time).
THREADS = 20
HISTORY_ROUTE = "GET /channels/{channel_id}/messages"
REDIS_URL = f"redis://127.0.0.1:6379/{os.environ.get('TEST_REDIS_DB', '5')}"


def _slices(start_ms: int) -> list[tuple[int, int]]:
    span = MESSAGES_PER_CHANNEL * STEP_MS
    return [
        (start_ms + p * span // PROCESSES, start_ms + (p + 1) * span // PROCESSES)
        for p in range(PROCESSES)
    ]


def _ours(args: dict[str, Any]) -> dict[str, Any]:
    """One worker process of the adapter: its time slice of every channel, 20 threads."""
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

    with (
        httpx.Client(timeout=30, limits=httpx.Limits(max_connections=64)) as http,
        redis.Redis.from_url(REDIS_URL) as rds,
    ):
        client = build_discord_client(settings, http, rds, None)
        time.sleep(max(0.0, args["start_at"] - time.time()))
        with ThreadPoolExecutor(max_workers=THREADS) as pool:
            counts = list(pool.map(fetch, args["channels"]))
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


def _measure(url: str) -> dict[str, Any]:
    from tests.fakes.discord_server import control

    stats = control(url, "stats", {"events": True})
    times = [
        t for t, route, status, _, _ in stats["events"] if route == HISTORY_ROUTE and status == 200
    ]
    elapsed = max(times) - min(times) if len(times) > 1 else float("nan")
    if times:
        first = min(times)
        per_half_second = [0] * (int(elapsed * 2) + 1)
        for t in times:
            per_half_second[int((t - first) * 2)] += 1
        print(f"successes per 0.5 s: {per_half_second}", file=sys.stderr)
    achieved = (len(times) - 1) / elapsed if len(times) > 1 else 0.0
    return {
        "requests": len(times),
        "achieved_rps": round(achieved, 2),
        "elapsed_s": round(elapsed, 2),
        "received_429": stats["received_429"],
        "received_429_by_scope": stats["429_by_scope"],
    }


def _run(
    url: str,
    worker: Any,
    token: str,
    channels: list[str],
    slices: list[tuple[int, int]],
    api_base: str,
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    from tests.fakes.discord_server import control

    control(url, "reset", {})
    prefix = "{dperf-" + uuid.uuid4().hex[:8] + "}"
    start_at = time.time() + 3.0
    jobs = [
        {
            "token": token,
            "api_base": api_base,
            "prefix": prefix,
            # Each worker starts at another channel, as workers serving different jobs would.
            "channels": channels[p * len(channels) // PROCESSES :]
            + channels[: p * len(channels) // PROCESSES],
            "slice": slices[p],
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
    return _measure(url), results


def main() -> None:
    """Run both sides and print the figures (last line: JSON)."""
    from tests.fakes.discord_server import control, spawn_server

    proc, url = spawn_server()
    try:
        control(
            url,
            "config",
            {
                "global_limit": GLOBAL_LIMIT,
                "latency_s": 0.0,
                "limits": {HISTORY_ROUTE: ["messages-read", ROUTE_LIMIT, 1.0]},
            },
        )
        start_ms = int(time.time() * 1000) - MESSAGES_PER_CHANNEL * STEP_MS - 3_600_000
        seed = {
            "scenario": "bench",
            "channels": CHANNELS,
            "messages": MESSAGES_PER_CHANNEL,
            "start_ms": start_ms,
            "step_ms": STEP_MS,
        }
        ours_channels = control(url, "seed", {**seed, "token": "bench-ours"})["channel_ids"]
        peer_channels = control(url, "seed", {**seed, "token": "bench-peer"})["channel_ids"]
        slices = _slices(start_ms)
        allowed = min(GLOBAL_LIMIT, CHANNELS * ROUTE_LIMIT)
        api_base = f"{url}/api/v10"
        print(
            f"fake Discord at {url}; {CHANNELS} channels x {MESSAGES_PER_CHANNEL} messages, "
            f"{PROCESSES} processes, allowed {allowed} req/s",
            file=sys.stderr,
        )
        ours, ours_workers = _run(url, _ours, "bench-ours", ours_channels, slices, api_base)
        print(f"ours: {ours} workers={ours_workers}", file=sys.stderr)
        peer, peer_workers = _run(url, _peer, "bench-peer", peer_channels, slices, api_base)
        print(f"peer: {peer} workers={peer_workers}", file=sys.stderr)
    finally:
        if proc.stdin is not None:
            proc.stdin.close()
        proc.wait(timeout=10)
    figures = {
        "processes": PROCESSES,
        "channels": CHANNELS,
        "allowed_rps": allowed,
        "messages": sum(w["messages"] for w in ours_workers),
        "requests": ours["requests"],
        "achieved_rps": ours["achieved_rps"],
        "rate_ratio": round(ours["achieved_rps"] / allowed, 3),
        "elapsed_s": ours["elapsed_s"],
        "surfaced_429": sum(w["surfaced_429"] for w in ours_workers),
        "received_429": ours["received_429"],
        "received_429_by_scope": ours["received_429_by_scope"],
        "errors": sum(len(w["errors"]) for w in ours_workers),
        "peer_messages": sum(w["messages"] for w in peer_workers),
        "peer_requests": peer["requests"],
        "peer_achieved_rps": peer["achieved_rps"],
        "peer_rate_ratio": round(peer["achieved_rps"] / allowed, 3),
        "peer_elapsed_s": peer["elapsed_s"],
        "peer_surfaced_429": sum(w["surfaced_429"] for w in peer_workers),
        "peer_received_429": peer["received_429"],
        "peer_received_429_by_scope": peer["received_429_by_scope"],
        "peer_errors": sum(len(w["errors"]) for w in peer_workers),
    }
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
