"""The history walk's read-ahead: the next page is in flight while the caller handles one, and
a window of one page is read without starting a thread."""

from __future__ import annotations

import threading
from typing import Any

from shared.discord.history import _prefetched


class _Pages:
    """``pages`` pages of two messages each; records which thread asked for which page."""

    def __init__(self, pages: int) -> None:
        self.pages = pages
        self.asked: list[tuple[int, str]] = []
        self.second_asked = threading.Event()

    def fetch(self, cursor: dict[str, str]) -> list[dict[str, Any]]:
        number = int(cursor["page"])
        self.asked.append((number, threading.current_thread().name))
        if number == 2:
            self.second_asked.set()
        return [{"id": str(number * 10 + i)} for i in range(2)]

    def follow(self, page: list[dict[str, Any]]) -> dict[str, str] | None:
        number = int(page[0]["id"]) // 10
        return {"page": str(number + 1)} if number < self.pages else None


def test_one_page_is_read_in_the_callers_thread_and_starts_no_thread() -> None:
    pages = _Pages(1)
    before = {t.name for t in threading.enumerate()}
    walk = _prefetched(pages.fetch, {"page": "1"}, pages.follow)
    assert [m["id"] for page in walk for m in page] == ["10", "11"]
    assert pages.asked == [(1, threading.current_thread().name)]
    assert not any(
        t.name.startswith("discord-history") and t.name not in before for t in threading.enumerate()
    )


def test_the_next_page_is_asked_for_before_the_caller_takes_it() -> None:
    pages = _Pages(3)
    walk = _prefetched(pages.fetch, {"page": "1"}, pages.follow)
    first = next(walk)
    assert [m["id"] for m in first] == ["10", "11"]
    # The caller has not asked for page 2, yet it is being read.
    assert pages.second_asked.wait(5)
    rest = [m["id"] for page in walk for m in page]
    assert rest == ["20", "21", "30", "31"]
    assert [number for number, _ in pages.asked] == [1, 2, 3]
    assert pages.asked[0][1] == threading.current_thread().name
    assert all(name.startswith("discord-history") for _, name in pages.asked[1:])
