"""The short chaos run: workers SIGKILLed every 5 s, Redis restarted empty, Postgres crashed.

``python -m tests.perf.chaos`` is the full run (200 jobs, 3 workers); this one uses its own
Redis and PostgreSQL servers too, so it never touches the shared services, and the same fake
Discord and fake OpenAI: each job reads a channel, calls the LLM and posts to ``#digests``.
"""

from __future__ import annotations

import shutil

import pytest

from tests.perf.chaos import ChaosConfig, PostgresServer, run_chaos

pytestmark = pytest.mark.integration


def test_short_chaos_run_completes_every_job_once() -> None:
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server is not installed")
    try:
        PostgresServer._find_bin()
    except RuntimeError as exc:
        pytest.skip(str(exc))
    config = ChaosConfig(
        jobs=12,
        workers=2,
        concurrency=1,
        messages=80,
        kill_every=5.0,
        redis_at=0.25,
        postgres_at=0.5,
        sweep_every=2.0,
        timeout=240.0,
    )
    # Its own temporary folder: pytest's is private to root, and initdb runs as postgres.
    result = run_chaos(config)
    assert result["redis_restarts"] == 1 and result["postgres_restarts"] == 1, result
    assert result["worker_kills"] >= 1, result
    assert result["llm_calls"] >= 12 and result["discord_requests"] > 0, result
    outcome = ("completed", "stuck", "duplicates", "undelivered")
    assert tuple(result[k] for k in outcome) == (12, 0, 0, 0), result
