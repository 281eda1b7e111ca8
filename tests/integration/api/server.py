"""Support for the API's integration tests and benchmarks: a real uvicorn process on 127.0.0.1,
and a throw-away migrated PostgreSQL database."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

from tests.conftest import PG_HOST, PG_PORT, PG_USER, REDIS_DB, REDIS_HOST, REDIS_PORT
from tests.support.databases import fresh_database
from tests.support.process_groups import group_cpu_seconds, stop_process_group

_LAUNCH = (
    "import json, os, signal, sys\n"
    # SIGUSR1 writes the names of every module this process has imported (tests and the
    # start-up benchmark read it; the product has no such hook).
    "def _report(*_):\n"
    "    with open(os.environ['SUMMARYBOT_MODULES_REPORT'], 'w') as out:\n"
    "        json.dump(sorted(sys.modules), out)\n"
    "if os.environ.get('SUMMARYBOT_MODULES_REPORT'):\n"
    "    signal.signal(signal.SIGUSR1, _report)\n"
    "from producers.cli.api_commands import run_api\n"
    "from shared.logging import configure_logging\n"
    "from shared.settings import ApiSettings, load_settings\n"
    "api = ApiSettings.load(host='127.0.0.1', port=int(sys.argv[1]), workers=int(sys.argv[2]))\n"
    "settings = load_settings(api=api)\n"
    "configure_logging(level=settings.log_level, fmt='json')\n"
    "run_api(settings)\n"
)


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass(frozen=True)
class ApiServer:
    """A running API: its base URL and the process group of its server processes."""

    url: str
    pgid: int

    @property
    def port(self) -> int:
        """The TCP port it listens on."""
        return int(self.url.rsplit(":", 1)[1])

    def rss_mb(self) -> float:
        """Resident memory of the server's main process, in MiB."""
        for line in Path(f"/proc/{self.pgid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        raise RuntimeError("no VmRSS line: the server process is gone")

    def imported_modules(self, report: Path, timeout: float = 10) -> list[str]:
        """Every module the main process has imported (started with
        ``SUMMARYBOT_MODULES_REPORT`` = ``report`` in its environment)."""
        report.unlink(missing_ok=True)
        os.kill(self.pgid, signal.SIGUSR1)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                names: list[str] = json.loads(report.read_text())
                return names
            except (OSError, ValueError):
                time.sleep(0.05)  # not written yet, or half written
        raise TimeoutError("the server did not report its modules")

    def cpu_seconds(self) -> float:
        """User + system CPU time used so far by every process of the server."""
        return group_cpu_seconds(self.pgid)


@contextmanager
def api_server(
    env: dict[str, str],
    log: Path,
    *,
    workers: int = 1,
    timeout: float = 60,
    cwd: Path | None = None,
) -> Iterator[ApiServer]:
    """Start the API with ``env`` (DATABASE_URL, REDIS_URL, SECRET_KEYS) and ``workers``
    server processes; yield it once it is ready.  ``cwd``: run another checkout's code."""
    port = free_port()
    with log.open("wb") as handle:
        process = subprocess.Popen(
            [sys.executable, "-c", _LAUNCH, str(port), str(workers)],
            env=env,
            cwd=cwd,
            stdout=handle,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        base = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + timeout
            while True:
                if process.poll() is not None:
                    raise RuntimeError(f"the API exited early:\n{log.read_text()}")
                try:
                    if httpx.get(base + "/readyz", timeout=1).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                if time.monotonic() > deadline:
                    raise TimeoutError(f"the API did not become ready:\n{log.read_text()}")
                time.sleep(0.1)
            yield ApiServer(url=base, pgid=process.pid)
        finally:
            stop_process_group(process)


def redis_url() -> str:
    """The test Redis database (``TEST_REDIS_DB``), as the test suite uses it."""
    return f"redis://{REDIS_HOST}:{REDIS_PORT}/{REDIS_DB}"


@contextmanager
def temporary_database(label: str) -> Iterator[str]:
    """A fresh, migrated PostgreSQL database, dropped afterwards; yields its URL."""
    server = f"postgresql+psycopg://{PG_USER}@{PG_HOST}:{PG_PORT}/postgres"
    with fresh_database(server, prefix=f"sb_{label}") as url:
        yield url
