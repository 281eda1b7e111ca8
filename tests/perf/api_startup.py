"""Start-up footprint of the API process: resident memory and imported modules.

Starts ``summarybot api`` (one server process) on a fresh migrated PostgreSQL database and the
test Redis, and reads the main process's RSS and ``sys.modules`` once it is ready, and again
after one ``POST /v1/jobs``.  ``worker_modules`` counts what only workers need (task modules,
``openai``, ``tiktoken``, the pipeline).

``--tree PATH`` runs another checkout of the project (for a before/after comparison in one
run; its dependencies must be importable from this interpreter).

    python -m tests.perf.api_startup [--tree /path/to/old/checkout]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import uuid
from datetime import UTC, datetime
from pathlib import Path

import httpx

from shared.apikeys import create_api_key
from shared.crypto import generate_key
from shared.db.engine import make_engine, make_sessionmaker
from tests.integration.api.server import api_server, redis_url, temporary_database
from tests.support.discord_tenants import open_tenants
from tests.support.process_groups import stop_on_sigterm

WORKER_ONLY = ("workers", "openai", "tiktoken", "shared.pipeline", "shared.summarize.llm")


def _worker_modules(modules: list[str]) -> int:
    return sum(1 for m in modules if any(m == w or m.startswith(w + ".") for w in WORKER_ONLY))


def main() -> None:
    """Run the measurement and print the figures (last line: JSON)."""
    stop_on_sigterm()
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--tree", type=Path, default=None, help="another checkout to measure")
    args = parser.parse_args()
    tenants = open_tenants()
    try:
        with temporary_database("startup") as url, tempfile.TemporaryDirectory() as tmp:
            guild, channel = tenants.tenant()
            engine = make_engine(url)
            _row, token = create_api_key(
                make_sessionmaker(engine),
                guild_id=guild,
                scopes=["jobs:write"],
                name="startup",
                now=datetime.now(UTC),
            )
            engine.dispose()
            report = Path(tmp) / "modules.json"
            env = {
                **os.environ,
                "DATABASE_URL": url,
                "REDIS_URL": redis_url(),
                "SECRET_KEYS": generate_key(),
                "SUMMARYBOT_DATA_DIR": str(Path(tmp) / "data"),
                "LOG_LEVEL": "WARNING",
                "DISCORD_TOKEN": tenants.token,
                "DISCORD_API_BASE": tenants.server.api_base,
                "SUMMARYBOT_MODULES_REPORT": str(report),
            }
            if args.tree is not None:
                env["PYTHONPATH"] = str(args.tree.resolve())
            with api_server(env, Path(tmp) / "api.log", cwd=args.tree) as running:
                ready_rss = running.rss_mb()
                ready = running.imported_modules(report)
                response = httpx.post(
                    f"{running.url}/v1/jobs",
                    headers={
                        "Authorization": f"Bearer {token}",
                        "Idempotency-Key": uuid.uuid4().hex,
                    },
                    json={"channel_id": channel, "window": {"hours": 2}},
                    timeout=10,
                )
                response.raise_for_status()
                submit_rss = running.rss_mb()
                after_submit = running.imported_modules(report)
    finally:
        tenants.close()
    figures = {
        "tree": str(args.tree or "this checkout"),
        "ready_rss_mb": round(ready_rss, 1),
        "ready_modules": len(ready),
        "submit_rss_mb": round(submit_rss, 1),
        "submit_modules": len(after_submit),
        "worker_modules": _worker_modules(after_submit),
    }
    for name, value in figures.items():
        print(f"{name:>16}: {value}", file=sys.stderr)
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
