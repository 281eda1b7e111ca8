"""A benchmark stopped with SIGTERM runs its clean-up (``stop_on_sigterm``)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

PROGRAM = """
import sys, time
from pathlib import Path
from tests.support.process_groups import stop_on_sigterm

stop_on_sigterm()
marker = Path(sys.argv[1])
try:
    marker.write_text("running")
    time.sleep(60)
finally:
    marker.write_text("cleaned up")
"""


def test_sigterm_runs_the_finally_blocks_and_exits_143(tmp_path: Path) -> None:
    marker = tmp_path / "marker"
    root = Path(__file__).resolve().parents[3]
    process = subprocess.Popen(
        [sys.executable, "-c", PROGRAM, str(marker)],
        cwd=root,
        env={**os.environ, "PYTHONPATH": str(root)},
    )
    deadline = time.monotonic() + 30
    while not marker.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert marker.read_text() == "running"
    process.send_signal(signal.SIGTERM)
    assert process.wait(30) == 143
    assert marker.read_text() == "cleaned up"
