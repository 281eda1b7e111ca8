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
    marker.write_text("cleaning up")
    # The clean-up lasts until the test says so (a file appears), however slow the machine.
    go = sys.argv[2]
    while go and not Path(go).exists():
        time.sleep(0.01)
    marker.write_text("cleaned up")
"""


def _start(marker: Path, go: Path | None) -> subprocess.Popen[bytes]:
    """Run PROGRAM; its clean-up waits for ``go`` to exist (None: it does not wait)."""
    root = Path(__file__).resolve().parents[3]
    process = subprocess.Popen(
        [sys.executable, "-c", PROGRAM, str(marker), str(go or "")],
        cwd=root,
        env={**os.environ, "PYTHONPATH": str(root)},
    )
    _wait_for(marker, "running")
    return process


def _wait_for(marker: Path, text: str) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if marker.exists() and marker.read_text() == text:
            return
        time.sleep(0.02)
    raise AssertionError(f"the program never wrote {text!r}")


def test_sigterm_runs_the_finally_blocks_and_exits_143(tmp_path: Path) -> None:
    marker = tmp_path / "marker"
    process = _start(marker, go=None)
    process.send_signal(signal.SIGTERM)
    assert process.wait(30) == 143
    assert marker.read_text() == "cleaned up"


def test_a_second_sigterm_does_not_cut_the_clean_up_short(tmp_path: Path) -> None:
    marker = tmp_path / "marker"
    go = tmp_path / "go"
    process = _start(marker, go=go)
    process.send_signal(signal.SIGTERM)
    _wait_for(marker, "cleaning up")
    process.send_signal(signal.SIGTERM)
    time.sleep(0.3)  # time for the second signal's handler to run inside the clean-up
    go.touch()
    assert process.wait(30) == 143
    assert marker.read_text() == "cleaned up"
