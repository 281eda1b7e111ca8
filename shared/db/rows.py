"""Row helpers shared by every package that writes through a session."""

from __future__ import annotations

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

__all__ = ["add_unless_present"]


def add_unless_present(session: Session, row: object) -> bool:
    """Insert ``row`` in a savepoint; False (and nothing added) when a unique key already has it.

    The savepoint keeps the caller's transaction usable after the conflict.
    """
    try:
        with session.begin_nested():
            session.add(row)
    except IntegrityError:
        return False
    return True
