"""A test's subprocess together with everything it started: stop it, measure its CPU."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from collections.abc import Iterable
from pathlib import Path
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


def stop_on_sigterm() -> None:
    """Make SIGTERM raise ``SystemExit(143)`` in this process's main thread.

    For a benchmark's ``main``: stopped with ``kill``, ``pkill`` or ``timeout``, it runs its
    ``finally`` blocks, so its workers, servers, Redis and databases are stopped and dropped
    instead of left running under whatever is measured next (the default action ends the
    process at once, and its children, in sessions of their own, live on).  Further SIGTERMs
    are ignored while the clean-up runs.
    """

    def _exit(signum: int, _frame: Any) -> None:
        # A second SIGTERM (an impatient ``kill``, ``timeout`` and a supervisor both) must
        # not interrupt the clean-up the first one started; SIGKILL still ends it.
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, _exit)


def stop_process_group(process: subprocess.Popen[Any], grace: float = 30) -> None:
    """:func:`stop_process_groups` for one process."""
    stop_process_groups([process], grace)


def group_cpu_seconds(pgid: int) -> float:
    """User + system CPU time used so far by the process group ``pgid``.

    Live members count their own time; members that ended and were reaped by a parent in the
    group (a Celery pool child replaced after ``worker_max_tasks_per_child``) count through
    that parent's children's time.
    """
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # the process ended while we looked
        if int(fields[2]) == pgid:  # field 5 of stat: the process group
            # utime, stime, then cutime, cstime: the reaped children's
            total += sum(int(value) for value in fields[11:15])
    return total / ticks
