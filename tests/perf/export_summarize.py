"""Benchmark: ``summarybot summarize`` on a large export in the embedded mode.

Generates the export from the irc-dev logs, runs the real CLI in a child process (embedded
SQLite + in-process Celery worker + extractive backend) and reports its wall time and peak
RSS.  Usage: ``python -m tests.perf.export_summarize [--messages N]`` (default 20,000; the
target, ``peak_rss_mb`` < 300, holds at 100,000).  Last line: JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tests.perf.export_data import build_large_export

TARGET_RSS_MB = 300


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="summarybot summarize on a large export")
    parser.add_argument("count", nargs="?", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--messages", type=int, default=20_000, help="export size")
    args = parser.parse_args(argv)
    count = args.count or args.messages
    with tempfile.TemporaryDirectory() as tmp:
        export = build_large_export(Path(tmp) / "export.json", count)
        env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")}
        env["SUMMARYBOT_DATA_DIR"] = str(Path(tmp) / "data")
        env["LOG_LEVEL"] = "WARNING"
        started = time.perf_counter()
        result = subprocess.run(
            [sys.executable, "-m", "producers.cli.main", "summarize", str(export), "--json"],
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )
        seconds = time.perf_counter() - started
    # ru_maxrss of waited-for children, in KiB on Linux.
    peak_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    if result.returncode != 0:
        print(result.stderr, file=sys.stderr)
        return 1
    document = json.loads(result.stdout)
    figures = {
        "messages": document["summary"]["coverage"]["messages_total"],
        "seconds": round(seconds, 2),
        "peak_rss_mb": round(peak_mb, 1),
        "rss_target_mb": TARGET_RSS_MB,
        "citations": len(document["summary"]["citations"]),
        "mode": "embedded",
    }
    print(
        f"summarized {figures['messages']} messages in {figures['seconds']} s, "
        f"peak RSS {figures['peak_rss_mb']} MB"
    )
    print(json.dumps(figures))
    return 0 if peak_mb < TARGET_RSS_MB else 1


if __name__ == "__main__":
    sys.exit(main())
