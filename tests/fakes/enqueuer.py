"""The one recording :class:`shared.jobs.Enqueuer` of the tests: keeps what would be published.

Thread-safe (embedded workers publish from their threads).  ``fail_first`` makes the first
publications fail like an unreachable broker; ``drop`` names tasks that are recorded but lost
(a publish that never reached a worker); ``duplicate`` names tasks delivered twice (at-least-once
delivery); ``before`` is called with each task name first; ``target`` (another enqueuer) is
given every publication that is not dropped.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable

__all__ = ["RecordingEnqueuer"]


class RecordingEnqueuer:
    """Records ``(task_name, args)`` of every publication instead of sending it."""

    def __init__(
        self,
        *,
        fail_first: int = 0,
        drop: Iterable[str] = (),
        before: Callable[[str], None] | None = None,
        target: object | None = None,
        duplicate: Iterable[str] = (),
    ) -> None:
        self.sent: list[tuple[str, tuple[str, ...]]] = []
        self.dropped: list[tuple[str, tuple[str, ...]]] = []
        self.drop = set(drop)
        self.duplicate = set(duplicate)
        self.before = before
        self._target = target
        self._fail = fail_first
        self._lock = threading.Lock()

    def enqueue(self, task_name: str, *args: str) -> None:
        """Record one publication (or fail, or lose it, as configured)."""
        if self.before is not None:
            self.before(task_name)
        with self._lock:
            if self._fail:
                self._fail -= 1
                raise ConnectionError("broker unreachable")
            if task_name in self.drop:
                self.dropped.append((task_name, args))
                return
            self.sent.append((task_name, args))
        forward = getattr(self._target, "enqueue", None)
        if forward is not None:
            for _ in range(2 if task_name in self.duplicate else 1):
                forward(task_name, *args)

    def dropped_names(self) -> list[str]:
        """The task names dropped so far, in order."""
        with self._lock:
            return [name for name, _ in self.dropped]

    def names(self) -> list[str]:
        """The task names published so far, in order."""
        with self._lock:
            return [name for name, _ in self.sent]

    def take(self) -> list[tuple[str, ...]]:
        """The arguments published so far, clearing the record."""
        with self._lock:
            taken = [args for _, args in self.sent]
            self.sent.clear()
        return taken
