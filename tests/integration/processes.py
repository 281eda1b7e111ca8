"""Start ``summarybot`` processes for integration tests and wait on them."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.support.process_groups import stop_process_group

CLI = [sys.executable, "-m", "producers.cli.main"]


def cli(*args: str, env: dict[str, str], timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """Run ``summarybot ARGS`` to completion."""
    return subprocess.run(
        [*CLI, *args], env=env, capture_output=True, text=True, timeout=timeout, check=False
    )


class Worker:
    """A ``summarybot worker`` process in its own process group, logging to a file."""

    def __init__(self, env: dict[str, str], log: Path, *, name: str, concurrency: int = 1):
        self.log = log
        self._handle = log.open("wb")
        self.process = subprocess.Popen(
            [*CLI, "worker", "--concurrency", str(concurrency), "--hostname", f"{name}@%h"],
            env=env,
            stdout=self._handle,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def wait_ready(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if b" ready" in self.log.read_bytes():
                return
            if self.process.poll() is not None:
                raise RuntimeError(f"worker exited early:\n{self.log.read_text()}")
            time.sleep(0.2)
        raise TimeoutError(f"worker not ready:\n{self.log.read_text()}")

    def kill(self) -> None:
        """SIGKILL the whole worker (main process and pool children), as the OOM killer would."""
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(10)

    def stop(self) -> None:
        """SIGTERM (a warm shutdown), then SIGKILL whatever is left of the process group."""
        stop_process_group(self.process)
        self._handle.close()


@contextmanager
def workers(env: dict[str, str], tmp: Path, count: int) -> Iterator[list[Worker]]:
    """``count`` ready workers, stopped (SIGTERM) at exit."""
    started = [Worker(env, tmp / f"worker{i}.log", name=f"w{i}") for i in range(count)]
    try:
        for worker in started:
            worker.wait_ready()
        yield started
    finally:
        for worker in started:
            worker.stop()
