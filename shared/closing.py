"""A mixin for objects that are used in a ``with`` block and closed when it ends."""

from __future__ import annotations

from typing import Self

__all__ = ["ClosesOnExit"]


class ClosesOnExit:
    """``with obj:`` gives ``obj`` and calls its :meth:`close` when the block is left."""

    def close(self) -> None:
        """Release what the object holds; subclasses say what that is."""
        raise NotImplementedError

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
