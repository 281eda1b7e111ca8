"""Job submissions against the API (uvicorn subprocess) on this machine's PostgreSQL and Redis.

An open-loop load: requests are scheduled at a fixed rate (default 200/s for 20 s) whether or
not earlier ones have answered, and each latency is measured from its *scheduled* time, so a
stalled server shows up in the figures instead of silently slowing the client down.  Requests
go over a pool of keep-alive connections as ``POST /v1/jobs`` with a fresh ``Idempotency-Key``
(what a careful client sends); every one must answer 202.  Each accepted job is a real row in a
temporary database and a real fetch task on the Redis ``fetch`` queue (removed afterwards).

    python -m tests.perf.api_load [--rate 200] [--seconds 20] [--connections 32] [--workers 2]

Last line: ``{"rps": ..., "p99_ms": ..., "errors": ...}`` (plus p50/p90/max and counts).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import gc
import json
import os
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import redis
from sqlalchemy import func, select

from schema.models.jobs import Job
from shared.apikeys import create_api_key
from shared.crypto import generate_key
from shared.db.engine import make_engine, make_sessionmaker
from tests.integration.api.server import api_server, redis_url, temporary_database
from tests.support.discord_tenants import open_tenants
from tests.support.host_speed import python_loop_ms
from tests.support.process_groups import stop_on_sigterm


@dataclass
class Results:
    """Latencies (seconds, from the scheduled send time) and failures."""

    latencies: list[float] = field(default_factory=list)
    errors: int = 0
    statuses: dict[int, int] = field(default_factory=dict)
    job_ids: list[str] = field(default_factory=list)


def _request(token: str, host: str, channel: str) -> bytes:
    body = json.dumps({"channel_id": channel, "window": {"hours": 24}, "format": "brief"}).encode()
    head = (
        f"POST /v1/jobs HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {token}\r\n"
        f"Content-Type: application/json\r\nIdempotency-Key: {uuid.uuid4()}\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode()
    return head + body


async def _exchange(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, request: bytes
) -> tuple[int, bytes]:
    writer.write(request)
    await writer.drain()
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    length = 0
    for line in lines[1:]:
        name, _, value = line.partition(":")
        if name.lower() == "content-length":
            length = int(value.strip())
    return status, await reader.readexactly(length)


async def run_load(
    host: str,
    port: int,
    token: str,
    channel: str,
    *,
    rate: float,
    seconds: float,
    connections: int,
) -> Results:
    """Send ``rate`` requests per second for ``seconds`` over ``connections`` connections."""
    pool: asyncio.Queue[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = asyncio.Queue()
    for _ in range(connections):
        pool.put_nowait(await asyncio.open_connection(host, port))
    results = Results()
    total = int(rate * seconds)

    async def one(scheduled: float) -> None:
        request = _request(token, f"{host}:{port}", channel)
        connection = await pool.get()
        try:
            status, body = await asyncio.wait_for(_exchange(*connection, request), timeout=30)
        except (TimeoutError, OSError, asyncio.IncompleteReadError, ValueError):
            results.errors += 1
            connection[1].close()
            connection = await asyncio.open_connection(host, port)
            return
        finally:
            pool.put_nowait(connection)
        results.latencies.append(time.perf_counter() - scheduled)
        results.statuses[status] = results.statuses.get(status, 0) + 1
        if status == 202:
            results.job_ids.append(json.loads(body)["id"])
        else:
            results.errors += 1

    # The generator releases each request at its time rather than creating every coroutine up
    # front: building thousands of tasks at once, and the full garbage collection it set off
    # (~100 ms over this process's imports), used to hold the client's loop past the first
    # scheduled sends, so the run opened with a burst the server never caused.  Freezing the
    # start-up heap keeps later full collections short for the same reason.
    gc.collect()
    gc.freeze()
    in_flight: set[asyncio.Task[None]] = set()
    start = time.perf_counter() + 0.05
    for index in range(total):
        scheduled = start + index / rate
        delay = scheduled - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        task = asyncio.create_task(one(scheduled))
        in_flight.add(task)
        task.add_done_callback(in_flight.discard)
    while in_flight:
        await asyncio.gather(*in_flight)
    gc.unfreeze()
    while not pool.empty():
        _reader, writer = pool.get_nowait()
        writer.close()
    return results


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def _drain_fetch_queue(client: redis.Redis[Any], job_ids: set[str]) -> int:
    """Remove this run's fetch tasks from the queue (no worker runs them); return how many."""
    removed = 0
    for raw in client.lrange("fetch", 0, -1):
        args = json.loads(base64.b64decode(json.loads(raw)["body"]))[0]
        if args and args[0] in job_ids:
            removed += int(client.lrem("fetch", 1, raw))
    return removed


def main(argv: list[str] | None = None) -> None:
    """Run the load and print the figures (last line JSON)."""
    stop_on_sigterm()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=200.0, help="requests per second")
    parser.add_argument("--seconds", type=float, default=20.0, help="how long to send")
    parser.add_argument("--connections", type=int, default=32, help="keep-alive connections")
    parser.add_argument("--warmup", type=float, default=2.0, help="seconds of warm-up at 50/s")
    parser.add_argument(
        "--workers",
        type=int,
        default=2,
        help="uvicorn worker processes (docs/operations.md, Sizing the API: one per core)",
    )
    args = parser.parse_args(argv)

    url = redis_url()
    client: redis.Redis[Any] = redis.Redis.from_url(url)
    # The guild boundary asks Discord (through the adapter, cached) about the channel.
    tenants = open_tenants()
    guild, channel = tenants.tenant()
    with temporary_database("load") as database, tempfile.TemporaryDirectory() as tmp:
        engine = make_engine(database)
        factory = make_sessionmaker(engine)
        _row, token = create_api_key(
            factory,
            guild_id=guild,
            scopes=["jobs:write"],
            name="load",
            now=datetime.now(UTC),
            rate_limit_per_minute=10_000_000,
        )
        env = {
            **os.environ,
            "DATABASE_URL": database,
            "REDIS_URL": url,
            "SECRET_KEYS": generate_key(),
            "SUMMARYBOT_DATA_DIR": str(Path(tmp) / "data"),
            "LOG_LEVEL": "WARNING",
            "DISCORD_TOKEN": tenants.token,
            "DISCORD_API_BASE": tenants.server.api_base,
        }
        accepted: set[str] = set()
        try:
            with api_server(env, Path(tmp) / "api.log", workers=args.workers) as server:
                port = server.port
                warm = asyncio.run(
                    run_load(
                        "127.0.0.1",
                        port,
                        token,
                        channel,
                        rate=50,
                        seconds=args.warmup,
                        # As many as the run opens: the kernel spreads them over the server
                        # processes, so each has served (and opened its pools) before the run.
                        connections=args.connections,
                    )
                )
                accepted.update(warm.job_ids)
                loop_before = python_loop_ms()
                began = time.perf_counter()
                cpu_before = server.cpu_seconds()
                results = asyncio.run(
                    run_load(
                        "127.0.0.1",
                        port,
                        token,
                        channel,
                        rate=args.rate,
                        seconds=args.seconds,
                        connections=args.connections,
                    )
                )
                elapsed = time.perf_counter() - began
                server_cpu = server.cpu_seconds() - cpu_before
                loop_after = python_loop_ms()
                accepted.update(results.job_ids)
            with factory() as session:
                stored = session.scalar(
                    select(func.count()).select_from(Job).where(Job.status == "queued")
                )
        finally:
            removed = _drain_fetch_queue(client, accepted)
            client.close()
            engine.dispose()
            tenants.close()
    done = len(results.latencies)
    print(
        f"{done} requests in {elapsed:.1f} s, statuses {results.statuses}; "
        f"{stored} queued jobs in PostgreSQL, {removed} fetch tasks found on the Redis queue"
    )
    figures = {
        "rps": round(done / elapsed, 1),
        "p50_ms": round(_percentile(results.latencies, 0.50) * 1000, 2),
        "p90_ms": round(_percentile(results.latencies, 0.90) * 1000, 2),
        "p99_ms": round(_percentile(results.latencies, 0.99) * 1000, 2),
        "max_ms": round(max(results.latencies, default=float("nan")) * 1000, 2),
        "requests": done,
        "server_cpu_ms_per_request": round(server_cpu / max(1, done) * 1000, 2),
        "load_average_1m": round(os.getloadavg()[0], 2),
        # The host's speed just before and after the run (see tests.support.host_speed).
        "host_loop_ms": [loop_before, loop_after],
        "errors": results.errors + (len(accepted) - int(stored or 0)) + (len(accepted) - removed),
    }
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
