"""Reading a channel's or thread's history page by page, oldest first, in bounded memory.

Discord pages hold at most 100 messages and come newest first.  Walking forward uses ``after``
cursors: each page holds the messages just after the cursor, and the next cursor is the newest
id of the page.  Times become snowflake cursors (a snowflake's top bits are its millisecond),
so "between 09:00 and 10:00" costs no more requests than the messages it holds.

With ``newest=True`` and a ``limit`` the latest ``limit`` messages are wanted: a first pass walks
backwards with ``before`` cursors counting messages (keeping only ids), then the forward walk
starts from the oldest of them.  Memory stays at one page either way.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import datetime
from typing import TYPE_CHECKING, Any

from shared.discord.convert import to_chat_message
from shared.discord.errors import NotFound
from shared.discord.objects import Channel
from shared.domain.messages import DISCORD_EPOCH_MS, ChatMessage, snowflake_time
from shared.errors import InvalidInputError

if TYPE_CHECKING:
    from shared.discord.client import DiscordClient

__all__ = [
    "PAGE_SIZE",
    "iter_history",
    "iter_thread_history",
    "threads_in_window",
    "time_snowflake",
]

PAGE_SIZE = 100
_THREAD_STARTER = 21


def time_snowflake(when: datetime) -> int:
    """The lowest snowflake of ``when``'s millisecond (``when`` must be timezone-aware)."""
    if when.tzinfo is None:
        raise InvalidInputError(
            f"{when.isoformat()} has no timezone; pass an aware datetime (e.g. tzinfo=UTC)"
        )
    ms = int(when.timestamp() * 1000) - DISCORD_EPOCH_MS
    return max(0, ms) << 22


def _after_cursor(after: datetime | str | None) -> int:
    if after is None:
        return 0
    if isinstance(after, datetime):
        return max(0, time_snowflake(after) - 1)
    if not after.isdigit():
        raise InvalidInputError(f"after={after!r} is neither a message id nor a datetime")
    return int(after)


def _page(client: DiscordClient, channel_id: str, **cursor: str) -> list[dict[str, Any]]:
    page = client.get_messages(channel_id, limit=PAGE_SIZE, **cursor)
    return sorted(page, key=lambda m: int(m["id"]))


def _start_for_newest(
    client: DiscordClient, channel_id: str, *, floor: int, ceiling: int | None, limit: int
) -> int:
    """The ``after`` cursor from which exactly the latest ``limit`` messages follow."""
    counted = 0
    cursor = str(ceiling) if ceiling is not None else None
    while True:
        page = (
            _page(client, channel_id, before=cursor)
            if cursor is not None
            else _page(client, channel_id)
        )
        ids = [int(m["id"]) for m in page if int(m["id"]) > floor]
        if not ids:
            return floor
        for message_id in reversed(ids):
            counted += 1
            if counted == limit:
                return message_id - 1
        if len(page) < PAGE_SIZE or len(ids) < len(page):
            return floor
        cursor = str(ids[0])


def iter_history(
    client: DiscordClient,
    channel_id: str,
    *,
    after: datetime | str | None = None,
    before: datetime | None = None,
    limit: int | None = None,
    newest: bool = False,
    on_page: Callable[[int], None] | None = None,
) -> Iterator[ChatMessage]:
    """See :meth:`shared.discord.client.DiscordClient.iter_history`."""
    if limit is not None and limit < 1:
        raise InvalidInputError(f"limit must be at least 1, got {limit}")
    cursor = _after_cursor(after)
    ceiling = time_snowflake(before) if before is not None else None
    if newest and limit is not None:
        cursor = _start_for_newest(client, channel_id, floor=cursor, ceiling=ceiling, limit=limit)
    yielded = 0
    while True:
        page = _page(client, channel_id, after=str(cursor))
        done = len(page) < PAGE_SIZE
        for raw in page:
            if ceiling is not None and int(raw["id"]) >= ceiling:
                done = True
                break
            yield to_chat_message(raw, channel_id=channel_id)
            yielded += 1
            if limit is not None and yielded >= limit:
                done = True
                break
        if on_page is not None:
            on_page(yielded)
        if done or not page:
            return
        cursor = int(page[-1]["id"])


def iter_thread_history(
    client: DiscordClient,
    thread_id: str,
    *,
    after: datetime | str | None = None,
    before: datetime | None = None,
    limit: int | None = None,
    on_page: Callable[[int], None] | None = None,
) -> Iterator[ChatMessage]:
    """A thread's history led by its starter message (which lives in the parent channel).

    The starter is yielded when it falls inside the window; the thread's own "thread starter"
    notice (type 21) is then skipped, since it only points at it.  Forum posts keep their first
    message in the thread itself, so it simply comes first.
    """
    thread = client.get_channel(thread_id)
    starter: dict[str, Any] | None = None
    if thread.parent_id:
        try:
            starter = client.get_message(thread.parent_id, thread_id).raw
        except NotFound:
            starter = None
    count = 0
    if starter is not None:
        low = _after_cursor(after)
        high = time_snowflake(before) if before is not None else None
        if int(starter["id"]) > low and (high is None or int(starter["id"]) < high):
            yield to_chat_message(starter, channel_id=str(starter.get("channel_id") or thread_id))
            count = 1
            if limit is not None and count >= limit:
                return
    remaining = None if limit is None else limit - count
    for message in iter_history(
        client,
        thread_id,
        after=after,
        before=before,
        limit=None,
        on_page=None if on_page is None else (lambda n: on_page(n + count)),
    ):
        if starter is not None and message.kind == "ThreadStarterMessage":
            continue
        yield message
        if remaining is not None:
            remaining -= 1
            if remaining <= 0:
                return


def _active_between(thread: Channel, since: datetime, until: datetime | None) -> bool:
    if until is not None and thread.created_at >= until:
        return False
    last = thread.last_message_id
    last_activity = snowflake_time(last) if last else thread.created_at
    if thread.archive_timestamp is not None and thread.archived:
        last_activity = max(last_activity, thread.archive_timestamp)
    return last_activity >= since


def threads_in_window(
    client: DiscordClient,
    channel_id: str,
    *,
    since: datetime,
    until: datetime | None = None,
    include_archived: bool = True,
) -> Iterator[Channel]:
    """Threads and forum posts of a channel created before ``until`` and active since ``since``.

    Active threads come first, then public archived ones page by page (newest archive first),
    stopping at the first page that was archived before ``since``.
    """
    if since.tzinfo is None:
        raise InvalidInputError("since must be timezone-aware (e.g. tzinfo=UTC)")
    seen: set[str] = set()
    for thread in client.active_threads(channel_id):
        seen.add(thread.id)
        if _active_between(thread, since, until):
            yield thread
    if not include_archived:
        return
    before: datetime | None = None
    while True:
        threads, more = client.list_archived_threads(channel_id, before=before)
        for thread in threads:
            if thread.id not in seen and _active_between(thread, since, until):
                seen.add(thread.id)
                yield thread
        stamps = [t.archive_timestamp for t in threads if t.archive_timestamp is not None]
        if not more or not stamps or min(stamps) < since:
            return
        before = min(stamps)
