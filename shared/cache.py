"""Where fetched messages wait between the fetch and summarize stages.

Messages are cached per job as compact JSON lines with a TTL, never stored in Postgres (keep
content no longer than needed).  A cache entry is usable only once the fetch stage marked it
complete; a half-written entry (a worker died mid-fetch) is simply rewritten by the next try.

:class:`RedisMessageCache` serves every deployment with Redis; :class:`MemoryMessageCache` is its
twin for the embedded mode, where broker and worker share one process.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import redis

from shared.domain.messages import ChannelInfo, ChatMessage

__all__ = ["CachedFetch", "MemoryMessageCache", "MessageCache", "RedisMessageCache"]

PAGE = 1000


@dataclass(frozen=True)
class CachedFetch:
    """Metadata of a completed fetch: where the messages came from and how many there are."""

    channel: ChannelInfo
    count: int
    skipped: int


class MessageCache(Protocol):
    """Per-job storage of fetched messages."""

    def begin(self, job_id: str) -> None:
        """Discard whatever a previous attempt left for ``job_id``."""

    def append(self, job_id: str, messages: Iterable[ChatMessage]) -> int:
        """Add a page of messages; returns the number added."""

    def complete(self, job_id: str, fetch: CachedFetch) -> None:
        """Mark the entry complete, so the summarize stage may read it."""

    def store(self, job_id: str, messages: Sequence[ChatMessage], fetch: CachedFetch) -> None:
        """:meth:`begin`, :meth:`append` and :meth:`complete` at once, for a fetch that
        read everything in one page (the usual catch-up)."""

    def get(self, job_id: str) -> CachedFetch | None:
        """The completed fetch's metadata, or None when absent, expired or incomplete."""

    def iter_messages(self, job_id: str) -> Iterator[ChatMessage]:
        """The cached messages in fetch order, read page by page."""

    def delete(self, job_id: str) -> None:
        """Drop the entry (job finished or failed)."""


def _meta_to_json(fetch: CachedFetch) -> str:
    return json.dumps(
        {"channel": fetch.channel.to_wire(), "count": fetch.count, "skipped": fetch.skipped}
    )


def _meta_from_json(raw: str | bytes) -> CachedFetch:
    data = json.loads(raw)
    return CachedFetch(ChannelInfo.from_wire(data["channel"]), data["count"], data["skipped"])


def _dump(message: ChatMessage) -> str:
    return json.dumps(message.to_wire(), ensure_ascii=False, separators=(",", ":"))


class RedisMessageCache:
    """Messages in a Redis list per job (``{prefix}:{job}:m``) plus a completion record."""

    def __init__(self, client: redis.Redis[bytes], *, ttl: int, prefix: str = "sb:fetch") -> None:
        self._redis = client
        self._ttl = ttl
        self._prefix = prefix

    def _keys(self, job_id: str) -> tuple[str, str]:
        return f"{self._prefix}:{job_id}:m", f"{self._prefix}:{job_id}:meta"

    def begin(self, job_id: str) -> None:
        """Discard whatever a previous attempt left for ``job_id``."""
        self._redis.delete(*self._keys(job_id))

    def append(self, job_id: str, messages: Iterable[ChatMessage]) -> int:
        """Add a page of messages; returns the number added."""
        lines = [_dump(m) for m in messages]
        if not lines:
            return 0
        key, _ = self._keys(job_id)
        pipe = self._redis.pipeline(transaction=False)
        pipe.rpush(key, *lines)
        pipe.expire(key, self._ttl)
        pipe.execute()
        return len(lines)

    def complete(self, job_id: str, fetch: CachedFetch) -> None:
        """Mark the entry complete, so the summarize stage may read it."""
        key, meta = self._keys(job_id)
        pipe = self._redis.pipeline(transaction=True)
        pipe.set(meta, _meta_to_json(fetch), ex=self._ttl)
        pipe.expire(key, self._ttl)
        pipe.execute()

    def store(self, job_id: str, messages: Sequence[ChatMessage], fetch: CachedFetch) -> None:
        """Replace the entry with ``messages``, complete, in one round trip (one MULTI)."""
        key, meta = self._keys(job_id)
        pipe = self._redis.pipeline(transaction=True)
        pipe.delete(key, meta)
        if messages:
            pipe.rpush(key, *(_dump(m) for m in messages))
            pipe.expire(key, self._ttl)
        pipe.set(meta, _meta_to_json(fetch), ex=self._ttl)
        pipe.execute()

    def get(self, job_id: str) -> CachedFetch | None:
        """The completed fetch's metadata, or None when absent, expired or incomplete."""
        key, meta = self._keys(job_id)
        # Both in one round trip: the length is only needed when the record is there, but
        # asking for it anyway costs nothing extra on the wire.
        pipe = self._redis.pipeline(transaction=False)
        pipe.get(meta)
        pipe.llen(key)
        raw, length = pipe.execute()
        if raw is None:
            return None
        fetch = _meta_from_json(raw)
        # A list shorter than promised means it expired or was evicted under us.
        if fetch.count and length != fetch.count:
            return None
        return fetch

    def iter_messages(self, job_id: str) -> Iterator[ChatMessage]:
        """The cached messages in fetch order, read page by page."""
        key, _ = self._keys(job_id)
        start = 0
        while True:
            page = self._redis.lrange(key, start, start + PAGE - 1)
            for raw in page:
                yield ChatMessage.from_wire(json.loads(raw))
            if len(page) < PAGE:
                return
            start += PAGE

    def delete(self, job_id: str) -> None:
        """Drop the entry (job finished or failed)."""
        self._redis.delete(*self._keys(job_id))


@dataclass
class _Entry:
    lines: list[str] = field(default_factory=list)
    meta: str | None = None
    expires: float = 0.0


class MemoryMessageCache:
    """In-process twin of :class:`RedisMessageCache` with the same TTL semantics."""

    def __init__(self, *, ttl: int) -> None:
        self._ttl = ttl
        self._entries: dict[str, _Entry] = {}
        self._lock = threading.Lock()

    def _live(self, job_id: str) -> _Entry | None:
        entry = self._entries.get(job_id)
        if entry is not None and entry.expires < time.monotonic():
            del self._entries[job_id]
            return None
        return entry

    def begin(self, job_id: str) -> None:
        """Discard whatever a previous attempt left for ``job_id``."""
        with self._lock:
            self._entries[job_id] = _Entry(expires=time.monotonic() + self._ttl)

    def append(self, job_id: str, messages: Iterable[ChatMessage]) -> int:
        """Add a page of messages; returns the number added."""
        lines = [_dump(m) for m in messages]
        with self._lock:
            entry = self._live(job_id)
            if entry is None:
                entry = self._entries[job_id] = _Entry()
            entry.lines.extend(lines)
            entry.expires = time.monotonic() + self._ttl
        return len(lines)

    def complete(self, job_id: str, fetch: CachedFetch) -> None:
        """Mark the entry complete, so the summarize stage may read it."""
        with self._lock:
            entry = self._live(job_id)
            if entry is None:
                entry = self._entries[job_id] = _Entry()
            entry.meta = _meta_to_json(fetch)
            entry.expires = time.monotonic() + self._ttl

    def store(self, job_id: str, messages: Sequence[ChatMessage], fetch: CachedFetch) -> None:
        """Replace the entry with ``messages``, complete."""
        entry = _Entry([_dump(m) for m in messages], _meta_to_json(fetch))
        entry.expires = time.monotonic() + self._ttl
        with self._lock:
            self._entries[job_id] = entry

    def get(self, job_id: str) -> CachedFetch | None:
        """The completed fetch's metadata, or None when absent, expired or incomplete."""
        with self._lock:
            entry = self._live(job_id)
            if entry is None or entry.meta is None:
                return None
            fetch = _meta_from_json(entry.meta)
            return fetch if len(entry.lines) == fetch.count else None

    def iter_messages(self, job_id: str) -> Iterator[ChatMessage]:
        """The cached messages in fetch order, read page by page."""
        with self._lock:
            entry = self._live(job_id)
            lines = list(entry.lines) if entry else []
        for raw in lines:
            yield ChatMessage.from_wire(json.loads(raw))

    def delete(self, job_id: str) -> None:
        """Drop the entry (job finished or failed)."""
        with self._lock:
            self._entries.pop(job_id, None)
