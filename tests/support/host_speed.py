"""How fast this host runs Python at the moment: a fixed loop's CPU time.

On a shared virtual machine the same code's CPU time per request moves by a quarter between
runs minutes apart (the guest is not told when its cores are taken away).  A benchmark that
reports this figure beside its own lets a reader tell a slower host from slower code.
"""

from __future__ import annotations

import statistics
import time

__all__ = ["python_loop_ms"]


def _loop() -> int:
    total = 0
    for i in range(200_000):
        total += i * i % 7
    return total


def python_loop_ms(repeats: int = 5) -> float:
    """The median CPU time, in ms, of ``repeats`` runs of a fixed pure-Python loop (lower is
    a faster host)."""
    times = []
    for _ in range(repeats):
        started = time.process_time()
        _loop()
        times.append(time.process_time() - started)
    return round(statistics.median(times) * 1000, 2)
