"""Stop a test's subprocess together with everything it started."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from collections.abc import Iterable
from typing import Any


def stop_process_groups(
    processes: Iterable[subprocess.Popen[Any] | None], grace: float = 30
) -> None:
    """SIGTERM each process's group, wait up to ``grace`` s, then SIGKILL what is left of it.

    Each process must have been started with ``start_new_session=True``.  The final SIGKILL goes
    to the group even when its leader has exited: a celery pool child outliving its main process
    would keep burning CPU under the tests that come after (and slowed their stages past their
    time limits on a loaded CI machine).
    """
    started = [p for p in processes if p is not None]
    for process in started:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
    for process in started:
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(grace)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        if process.poll() is None:
            process.wait(10)


def stop_process_group(process: subprocess.Popen[Any], grace: float = 30) -> None:
    """:func:`stop_process_groups` for one process."""
    stop_process_groups([process], grace)
