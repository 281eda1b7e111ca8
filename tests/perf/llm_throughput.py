"""Benchmark: 8 worker processes share one 200,000 TPM budget through the Redis limiter.

Setup: the fake OpenAI server runs as its own process with a 200,000 tokens/min and
5,000 requests/min limit (continuously refilling buckets, full at start, admission = prompt +
``max_tokens``, unused allowance returned when the reply is done; 429s with the real body and
headers), 50 ms + 1 ms per output token of latency and about 200-token replies.  Eight worker
processes each build an :class:`~shared.llm.client.LLMClient` with the Redis-shared limiter and
breaker and send chunks of the irc-dev transcript (300-1,500 prompt tokens, ``max_tokens``
400) as fast as the limiter lets them, for ``--seconds`` (default 60).

Figures (last line, JSON):

* ``tpm_ratio``: tokens the server served (``usage.total_tokens``, counted when each reply
  completed) per minute during the measured window, divided by the limit.  The window starts
  after ``--warmup`` seconds (default 15), once the bucket's initial full capacity has been
  spent (the workers ask for far more than the limit, so that takes a few seconds), so the
  figure is the sustained rate, not the first burst.  ``whole_run_ratio`` divides everything
  served by everything the limit allowed over the run (initial capacity + refill);
* ``received_429_pct``: 429 responses the server sent, as a share of all requests;
* ``surfaced_429``: rate-limit errors that reached the worker loop after the client's policy.

The clock starts when every worker has built its client (a barrier), so slow imports on a
busy machine cannot move the first burst into the measured window.

Run ``python -m tests.perf.llm_throughput`` (Redis on 127.0.0.1:6379, DB ``TEST_REDIS_DB``,
default 7, unique key prefix, removed afterwards).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from redis import Redis

from tests.support.process_groups import stop_on_sigterm

TPM = 200_000
RPM = 5_000
WORKERS = 8
MAX_TOKENS = 400
MODEL = "gpt-4o-mini"


def _prompts(path: Path) -> None:
    """Chunks of the irc-dev transcript, 300-1,500 tokens each, written as JSON."""
    from shared.llm.tokens import count_tokens
    from shared.summarize.transcript import build_transcript
    from tests.perf.token_efficiency import CHANNEL, parse_logs

    transcript = build_transcript(parse_logs(), CHANNEL)
    aliases = transcript.aliases
    chunks: list[str] = []
    start = 0
    sizes = [300, 700, 1100, 1500, 500, 900, 1300]
    while start < len(aliases) and len(chunks) < 200:
        target = sizes[len(chunks) % len(sizes)]
        end = start + max(5, target // 22)
        text = transcript.render(aliases[start:end])
        while count_tokens(text, model=MODEL) < target and end < len(aliases):
            end += 5
            text = transcript.render(aliases[start:end])
        chunks.append(text)
        start = end
    path.write_text(json.dumps(chunks), encoding="utf-8")


def _worker(
    index: int,
    base_url: str,
    redis_url: str,
    prefix: str,
    seconds: float,
    prompts_path: str,
    ready: Any,
    results: Any,
) -> None:
    from shared.errors import RateLimitedError
    from shared.llm.client import LLMClient, LLMRateLimitedError
    from shared.llm.config import LLMSettings

    chunks = json.loads(Path(prompts_path).read_text(encoding="utf-8"))
    settings = LLMSettings(
        base_url=base_url,
        provider="openai",
        api_key="sk-bench",
        model=MODEL,
        tokens_per_minute=TPM,
        requests_per_minute=RPM,
        max_output_tokens=MAX_TOKENS,
        max_rate_wait=15.0,
    )
    redis = Redis.from_url(redis_url)
    client = LLMClient.shared(settings, redis, prefix=prefix)
    # Every worker starts sending at once, when all have imported and built their client: on
    # a busy machine that can take far longer than any fixed head start.
    ready.wait()
    deadline = time.time() + seconds
    done: list[tuple[float, int]] = []
    surfaced = refused = errors = 0
    turn = index
    try:
        while time.time() < deadline:
            text = chunks[turn % len(chunks)]
            turn += WORKERS
            messages = [
                {"role": "system", "content": "Summarize the conversation in a few sentences."},
                {"role": "user", "content": f"<transcript>\n{text}\n</transcript>"},
            ]
            try:
                result = client.complete(messages, max_tokens=MAX_TOKENS)
            except LLMRateLimitedError:
                surfaced += 1
                continue
            except RateLimitedError:
                refused += 1  # our own limiter said "not within max_rate_wait": not a 429
                continue
            except Exception:
                errors += 1
                continue
            done.append((time.time(), result.usage.total_tokens))
    finally:
        client.close()
        redis.close()
    results.put({"done": done, "surfaced": surfaced, "refused": refused, "errors": errors})


def _start_fake() -> tuple[subprocess.Popen[str], str]:
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tests.fakes.openai_server",
            "--port",
            "0",
            "--tpm",
            str(TPM),
            "--rpm",
            str(RPM),
            "--latency-base",
            "0.05",
            "--latency-per-token",
            "0.001",
            "--reply-tokens",
            "200",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    line = process.stdout.readline().strip()
    if not line.startswith("READY "):
        process.kill()
        raise RuntimeError(f"fake OpenAI server did not start: {line!r}")
    return process, line.split(" ", 1)[1]


def run(seconds: float, warmup: float) -> dict[str, Any]:
    """Run the benchmark; return its figures."""
    db = os.environ.get("TEST_REDIS_DB", "7")
    redis_url = os.environ.get("BENCH_REDIS_URL", f"redis://127.0.0.1:6379/{db}")
    prefix = f"bench:{uuid.uuid4().hex[:8]}"
    with tempfile.TemporaryDirectory() as folder:
        prompts_path = Path(folder) / "prompts.json"
        _prompts(prompts_path)
        fake, base_url = _start_fake()
        try:
            context = mp.get_context("spawn")
            results = context.Queue()
            ready = context.Barrier(WORKERS + 1)
            workers = [
                context.Process(
                    target=_worker,
                    args=(
                        i,
                        base_url,
                        redis_url,
                        prefix,
                        seconds,
                        str(prompts_path),
                        ready,
                        results,
                    ),
                )
                for i in range(WORKERS)
            ]
            for worker in workers:
                worker.start()
            ready.wait(timeout=300)
            started = time.time()
            collected = [results.get(timeout=seconds + 120) for _ in workers]
            for worker in workers:
                worker.join(timeout=30)
            import httpx

            stats = httpx.get(base_url.rsplit("/v1", 1)[0] + "/_fake/stats", timeout=10).json()
        finally:
            fake.terminate()
            fake.wait(timeout=10)
            cleanup = Redis.from_url(redis_url)
            for key in cleanup.scan_iter(f"{prefix}:*"):
                cleanup.delete(key)
            cleanup.close()
    done = sorted(item for c in collected for item in c["done"])
    window_start = started + warmup
    window_end = started + seconds
    in_window = sum(tokens for at, tokens in done if window_start <= at < window_end)
    window_minutes = (window_end - window_start) / 60
    requests = int(stats["requests"])
    received = int(stats["rate_limited"])
    return {
        "workers": WORKERS,
        "tpm_limit": TPM,
        "seconds": seconds,
        "warmup_seconds": warmup,
        "achieved_tpm": round(in_window / window_minutes),
        "tpm_ratio": round(in_window / window_minutes / TPM, 4),
        "requests": requests,
        "completed": len(done),
        "received_429": received,
        "received_429_pct": round(100 * received / max(1, requests), 3),
        "surfaced_429": sum(c["surfaced"] for c in collected),
        "limiter_refusals": sum(c["refused"] for c in collected),
        "other_errors": sum(c["errors"] for c in collected),
        "server_total_tokens": stats["total_tokens"],
        "whole_run_ratio": round(
            sum(tokens for at, tokens in done if at < window_end) / (TPM + TPM * seconds / 60), 4
        ),
    }


def main() -> None:
    """Parse arguments, run, print the JSON figures last."""
    stop_on_sigterm()
    parser = argparse.ArgumentParser(description="LLM throughput under a shared TPM limit")
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--warmup", type=float, default=15.0)
    args = parser.parse_args()
    if not 0 <= args.warmup < args.seconds <= 600:
        parser.error("need 0 <= warmup < seconds <= 600")
    figures = run(args.seconds, args.warmup)
    sys.stdout.write(
        f"achieved {figures['achieved_tpm']} tokens/min of {TPM} with {WORKERS} workers\n"
    )
    sys.stdout.write(json.dumps(figures) + "\n")


if __name__ == "__main__":
    main()
