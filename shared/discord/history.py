"""Reading a channel's or thread's history page by page, oldest first, in bounded memory.

Discord pages hold at most 100 messages and come newest first.  Every window is read in one
pass:

* From a start (``after``: a time or a message id) forward with ``after`` cursors: each page
  holds the messages just after the cursor, and the next cursor is the newest id of the page.
  Times become snowflake cursors (a snowflake's top bits are its millisecond), so "between 09:00
  and 10:00" costs no more requests than the messages it holds.
* The latest ``limit`` messages (``newest=True``) backward from the end of the window with
  ``before`` cursors, until ``limit`` messages or the window's start.  The pages are spilled as
  compact JSON to a temporary file (kept in memory up to :data:`SPILL_MEMORY_BYTES`) and read
  back in reverse, so the caller still gets the oldest first with one page in memory.

Either way the next page is requested while the caller works on the current one, so the
channel's bucket stays busy; a walk that knows it is done requests nothing more.
"""

from __future__ import annotations

import contextvars
import json
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import datetime
from tempfile import SpooledTemporaryFile
from typing import TYPE_CHECKING, Any

from shared.discord.convert import to_chat_message
from shared.discord.errors import NotFound
from shared.discord.objects import Channel
from shared.domain.messages import DISCORD_EPOCH_MS, ChatMessage, snowflake_time
from shared.errors import ConfigError, InvalidInputError

if TYPE_CHECKING:
    from shared.discord.client import DiscordClient

__all__ = [
    "PAGE_SIZE",
    "SPILL_MEMORY_BYTES",
    "iter_history",
    "iter_thread_history",
    "threads_in_window",
    "time_snowflake",
]

PAGE_SIZE = 100
#: Spilled pages of a ``newest`` walk stay in memory up to this size, then go to a temp file.
SPILL_MEMORY_BYTES = 8 * 1024 * 1024
_THREAD_STARTER = 21

_Page = list[dict[str, Any]]
_Cursor = dict[str, str]


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
    if not (after.isascii() and after.isdigit()):  # "²" and "١٢٣" are digits to str.isdigit
        raise InvalidInputError(f"after={after!r} is neither a message id nor a datetime")
    return int(after)


def _prefetched(
    fetch: Callable[[_Cursor], _Page], first: _Cursor, follow: Callable[[_Page], _Cursor | None]
) -> Iterator[_Page]:
    """Pages ``fetch(cursor)``, oldest id first; the next one is requested before one is yielded.

    ``follow(page)`` says where the next page starts (``None``: the walk is done); it runs in
    the caller's thread, in page order.  One request is in flight at a time; one that is no
    longer wanted (the caller stopped early) finishes unseen.  The first page is fetched in
    the caller's thread, which waits for it anyway: a window of one page (the usual catch-up)
    starts no thread at all.
    """
    page = fetch(first)
    cursor = follow(page)
    if cursor is None:
        yield page
        return
    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="discord-history")

    def submit(cursor: _Cursor) -> Future[_Page]:
        # The caller's context (log fields such as the job id) goes along with the request.
        return pool.submit(contextvars.copy_context().run, fetch, cursor)

    pending: Future[_Page] | None = submit(cursor)
    try:
        yield page
        while pending is not None:
            page = pending.result()
            cursor = follow(page)
            pending = submit(cursor) if cursor is not None else None
            yield page
    finally:
        pool.shutdown(wait=False, cancel_futures=True)


def _fetcher(client: DiscordClient, channel_id: str) -> Callable[[_Cursor], _Page]:
    def fetch(cursor: _Cursor) -> _Page:
        where = {k: v for k, v in cursor.items() if k != "limit"}
        page = client.get_messages(channel_id, limit=_asked(cursor), **where)
        _check_content_visible(page)
        return sorted(page, key=lambda m: int(m["id"]))

    return fetch


#: Fields of which a user's message has at least one (Discord refuses to create one without).
_SHOWN = (
    "content",
    "embeds",
    "attachments",
    "sticker_items",
    "components",
    "poll",
    "message_snapshots",
    "activity",
)


def _check_content_visible(page: _Page) -> None:
    """Refuse a page whose people's messages all came back empty.

    Without the Message Content intent, Discord sends other users' messages over REST too
    with content, embeds, attachments and components emptied: a summary of them would be a
    summary of nothing, with no error anywhere.  A real message always has one of these
    fields, so two or more people's messages with none of them can only mean that.
    """
    people = [
        m for m in page if m.get("type", 0) in (0, 19) and not (m.get("author") or {}).get("bot")
    ]
    if len(people) >= 2 and not any(any(m.get(f) for f in _SHOWN) for m in people):
        raise ConfigError(
            "Discord sent these messages without their text: the bot's application lacks the "
            "Message Content intent; an operator must enable it in the Discord Developer Portal "
            "(Bot, Privileged Gateway Intents, Message Content Intent)"
        )


def _asked(cursor: _Cursor) -> int:
    """How many messages the page at ``cursor`` asks for (a full page unless it says)."""
    return int(cursor.get("limit", PAGE_SIZE))


def _page_cursor(where: _Cursor, room: int | None) -> _Cursor:
    """``where`` asking for a full page, or only for the ``room`` messages still wanted: the
    last 20 messages of a channel cost Discord, the wire and the parser 20, not 100."""
    if room is None or room >= PAGE_SIZE:
        return where
    return {**where, "limit": str(max(1, room))}


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
    """Messages of a channel or thread, oldest first, one page in memory at a time.

    ``after`` is a time (inclusive) or a message id (exclusive); ``before`` a time
    (exclusive).  ``limit`` caps the count: the oldest ``limit`` in the window, or with
    ``newest=True`` the latest ``limit`` (still yielded oldest first).  Either way the
    history is read in one pass, the next page requested while the caller works on the
    current one (see the module's docstring).  ``on_page`` gets the running count of
    messages read after each page.
    """
    if limit is not None and limit < 1:
        raise InvalidInputError(f"limit must be at least 1, got {limit}")
    floor = _after_cursor(after)
    ceiling = time_snowflake(before) if before is not None else None
    if newest and limit is not None:
        return _latest(client, channel_id, floor, ceiling, limit, on_page)
    return _forward(client, channel_id, floor, ceiling, limit, on_page)


def _forward(
    client: DiscordClient,
    channel_id: str,
    floor: int,
    ceiling: int | None,
    limit: int | None,
    on_page: Callable[[int], None] | None,
) -> Iterator[ChatMessage]:
    """Messages after ``floor`` and below ``ceiling``, oldest first, at most ``limit``."""
    taken = 0
    first = _page_cursor({"after": str(floor)}, limit)
    asked = _asked(first)

    def inside(page: _Page) -> _Page:
        if ceiling is None:
            return page
        return [m for m in page if int(m["id"]) < ceiling]

    def follow(page: _Page) -> _Cursor | None:
        nonlocal taken, asked
        wanted = inside(page)
        taken += len(wanted)
        if len(page) < asked or len(wanted) < len(page):
            return None
        if limit is not None and taken >= limit:
            return None
        cursor = _page_cursor(
            {"after": str(page[-1]["id"])}, None if limit is None else limit - taken
        )
        asked = _asked(cursor)
        return cursor

    yielded = 0
    for page in _prefetched(_fetcher(client, channel_id), first, follow):
        for raw in inside(page):
            if limit is not None and yielded >= limit:
                break
            yield to_chat_message(raw, channel_id=channel_id)
            yielded += 1
        if on_page is not None:
            on_page(yielded)


def _latest(
    client: DiscordClient,
    channel_id: str,
    floor: int,
    ceiling: int | None,
    limit: int,
    on_page: Callable[[int], None] | None,
) -> Iterator[ChatMessage]:
    """The latest ``limit`` messages after ``floor`` and below ``ceiling``, oldest first.

    One backward walk; pages are spilled newest first and read back in reverse.
    """
    kept = 0
    first = _page_cursor({} if ceiling is None else {"before": str(ceiling)}, limit)
    asked = _asked(first)
    # ``kept`` counts pages as the caller reads them; requests run a page ahead of it.
    requested = 0

    def follow(page: _Page) -> _Cursor | None:
        nonlocal asked, requested
        wanted = sum(1 for m in page if int(m["id"]) > floor)
        requested += wanted
        if len(page) < asked or wanted < len(page) or requested >= limit:
            return None
        cursor = _page_cursor({"before": str(page[0]["id"])}, limit - requested)
        asked = _asked(cursor)
        return cursor

    with SpooledTemporaryFile(max_size=SPILL_MEMORY_BYTES, mode="w+b") as spill:
        spans: list[tuple[int, int]] = []
        for page in _prefetched(_fetcher(client, channel_id), first, follow):
            room = limit - kept
            wanted = [m for m in page if int(m["id"]) > floor][-room:] if room > 0 else []
            if not wanted:
                continue
            line = json.dumps(
                [to_chat_message(m, channel_id=channel_id).to_wire() for m in wanted],
                ensure_ascii=False,
                separators=(",", ":"),
            ).encode()
            spans.append((spill.tell(), len(line)))
            spill.write(line)
            kept += len(wanted)
            if on_page is not None:
                on_page(kept)
        for offset, length in reversed(spans):
            spill.seek(offset)
            for data in json.loads(spill.read(length)):
                yield ChatMessage.from_wire(data)


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
