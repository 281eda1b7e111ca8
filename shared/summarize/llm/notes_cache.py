"""Where notes and the transcript lines behind them wait: across jobs, and within one job.

**Notes reuse** (:class:`NotesCache`).  The notes of a chunk of transcript do not depend on the
summary format, language or guild instructions, so they are cached by channel, chunk content
hash, prompt version and model (:func:`notes_key`) for days: a weekly digest after the dailies,
or a second ``/summarize`` a minute after the first, spends tokens only on what is new.  Cached
notes cite Discord message ids, never aliases (aliases are local to one prompt), and hold no
message text beyond what the model wrote.  Merge results are cached the same way, keyed by
the notes they merged, so a retried reduce step does not pay twice; and a window short enough
for one call has its summary cached by its chunks and the options that shape it, so the same
window summarized again (a server digest after the channel's own digest) costs nothing.

**Job scratch** (:class:`ScratchStore`).  The planner cuts a job's transcript into chunks and
the map tasks, on any worker, read them back; the reduce step needs the transcript lines its
notes cite, to validate and to build citations.  Both live here with the message cache's TTL
and are deleted when the summary is stored: redacted transcript lines, never in Postgres.

Redis classes serve deployments with Redis; the memory twins serve the embedded mode.
"""

from __future__ import annotations

import json
import threading
import time
import zlib
from collections import OrderedDict
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any, Protocol

import redis

from shared.summarize.transcript import TranscriptLine

__all__ = [
    "MemoryNotesCache",
    "MemoryScratchStore",
    "NotesCache",
    "RedisNotesCache",
    "RedisScratchStore",
    "ScratchStore",
    "line_from_wire",
    "line_to_wire",
    "notes_key",
]


def notes_key(
    *, kind: str, channel_id: str, content_hash: str, prompt_version: str, model: str
) -> str:
    """Cache key of notes: what was summarized (channel, content), how, and by which model."""
    return f"{kind}:{channel_id}:{model}:{prompt_version}:{content_hash}"


def _encode(value: Mapping[str, Any]) -> bytes:
    raw = json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode()
    return zlib.compress(raw, 6)


def _decode(raw: bytes) -> dict[str, Any]:
    data = json.loads(zlib.decompress(raw))
    if not isinstance(data, dict):
        raise ValueError("cached notes are not a JSON object")
    return data


class NotesCache(Protocol):
    """Notes shared across jobs, by :func:`notes_key`."""

    def get_many(self, keys: Sequence[str]) -> list[dict[str, Any] | None]:
        """The notes of each key, or None where there are none (or they expired)."""

    def put(self, key: str, notes: Mapping[str, Any]) -> None:
        """Remember ``notes`` under ``key`` for the cache's TTL."""


class RedisNotesCache:
    """Notes as compressed JSON strings under ``{prefix}:{key}`` with a TTL."""

    def __init__(self, client: redis.Redis[bytes], *, ttl: int, prefix: str = "sb:notes") -> None:
        self._redis = client
        self._ttl = ttl
        self._prefix = prefix

    def get_many(self, keys: Sequence[str]) -> list[dict[str, Any] | None]:
        """The notes of each key, or None where there are none (or they expired)."""
        if not keys or self._ttl <= 0:
            return [None] * len(keys)
        raws = self._redis.mget([f"{self._prefix}:{k}" for k in keys])
        out: list[dict[str, Any] | None] = []
        for raw in raws:
            try:
                out.append(_decode(raw) if raw is not None else None)
            except (ValueError, zlib.error):
                out.append(None)  # a corrupt entry is a miss, not a failure
        return out

    def put(self, key: str, notes: Mapping[str, Any]) -> None:
        """Remember ``notes`` under ``key`` for the cache's TTL."""
        if self._ttl > 0:
            self._redis.set(f"{self._prefix}:{key}", _encode(notes), ex=self._ttl)


class MemoryNotesCache:
    """In-process twin of :class:`RedisNotesCache`, bounded to ``max_entries`` (LRU)."""

    def __init__(self, *, ttl: int, max_entries: int = 10_000) -> None:
        self._ttl = ttl
        self._max = max_entries
        self._entries: OrderedDict[str, tuple[float, bytes]] = OrderedDict()
        self._lock = threading.Lock()

    def get_many(self, keys: Sequence[str]) -> list[dict[str, Any] | None]:
        """The notes of each key, or None where there are none (or they expired)."""
        now = time.monotonic()
        out: list[dict[str, Any] | None] = []
        with self._lock:
            for key in keys:
                entry = self._entries.get(key)
                if entry is None or entry[0] < now:
                    self._entries.pop(key, None)
                    out.append(None)
                    continue
                self._entries.move_to_end(key)
                out.append(_decode(entry[1]))
        return out

    def put(self, key: str, notes: Mapping[str, Any]) -> None:
        """Remember ``notes`` under ``key`` for the cache's TTL."""
        if self._ttl <= 0:
            return
        with self._lock:
            self._entries[key] = (time.monotonic() + self._ttl, _encode(notes))
            self._entries.move_to_end(key)
            while len(self._entries) > self._max:
                self._entries.popitem(last=False)


# -- job scratch ------------------------------------------------------------------------------


def line_to_wire(line: TranscriptLine) -> dict[str, Any]:
    """JSON-safe form of a transcript line (short keys, empty fields left out)."""
    data: dict[str, Any] = {
        "a": line.alias,
        "i": line.message_id,
        "t": line.timestamp.isoformat(),
        "u": line.author_id,
        "n": line.author,
        "x": line.text,
    }
    if line.source_text != line.text:
        data["s"] = line.source_text
    if line.reply_alias:
        data["r"] = line.reply_alias
    if line.reactions:
        data["re"] = line.reactions
    if line.is_pinned:
        data["p"] = 1
    if line.mentions:
        data["me"] = list(line.mentions)
    return data


def line_from_wire(data: Mapping[str, Any]) -> TranscriptLine:
    """Inverse of :func:`line_to_wire`."""
    return TranscriptLine(
        alias=data["a"],
        message_id=data["i"],
        timestamp=datetime.fromisoformat(data["t"]),
        author_id=data["u"],
        author=data["n"],
        reply_alias=data.get("r"),
        text=data["x"],
        source_text=data.get("s", data["x"]),
        reactions=int(data.get("re", 0)),
        is_pinned=bool(data.get("p")),
        mentions=tuple(data.get("me", ())),
    )


def _lines_blob(lines: Iterable[TranscriptLine]) -> bytes:
    payload = [line_to_wire(line) for line in lines]
    return zlib.compress(json.dumps(payload, ensure_ascii=False).encode(), 6)


def _lines_from_blob(raw: bytes) -> list[TranscriptLine]:
    return [line_from_wire(item) for item in json.loads(zlib.decompress(raw))]


def _line_blob(line: TranscriptLine) -> bytes:
    return json.dumps(line_to_wire(line), ensure_ascii=False).encode()


class ScratchStore(Protocol):
    """A job's chunks of transcript and the lines its notes cite, until the summary exists."""

    def put_chunk(self, job_id: str, index: int, lines: Sequence[TranscriptLine]) -> None:
        """Store the lines of chunk ``index`` (with their chunk-local aliases)."""

    def get_chunk(self, job_id: str, index: int) -> list[TranscriptLine] | None:
        """The lines of chunk ``index``, or None when they are gone (expired)."""

    def put_cited(self, job_id: str, lines: Iterable[TranscriptLine]) -> None:
        """Remember lines that notes cite, by message id."""

    def get_cited(self, job_id: str, message_ids: Sequence[str]) -> dict[str, TranscriptLine]:
        """The remembered lines of ``message_ids`` (missing ids are left out)."""

    def delete(self, job_id: str) -> None:
        """Drop everything of the job."""


class RedisScratchStore:
    """Two Redis hashes per job: ``{prefix}:{job}:chunks`` and ``{prefix}:{job}:cited``."""

    BATCH = 1000

    def __init__(self, client: redis.Redis[bytes], *, ttl: int, prefix: str = "sb:scratch"):
        self._redis = client
        self._ttl = ttl
        self._prefix = prefix

    def _keys(self, job_id: str) -> tuple[str, str]:
        return f"{self._prefix}:{job_id}:chunks", f"{self._prefix}:{job_id}:cited"

    def put_chunk(self, job_id: str, index: int, lines: Sequence[TranscriptLine]) -> None:
        """Store the lines of chunk ``index`` (with their chunk-local aliases)."""
        key, _ = self._keys(job_id)
        pipe = self._redis.pipeline(transaction=False)
        pipe.hset(key, str(index), _lines_blob(lines))
        pipe.expire(key, self._ttl)
        pipe.execute()

    def get_chunk(self, job_id: str, index: int) -> list[TranscriptLine] | None:
        """The lines of chunk ``index``, or None when they are gone (expired)."""
        key, _ = self._keys(job_id)
        raw = self._redis.hget(key, str(index))
        return _lines_from_blob(raw) if raw is not None else None

    def put_cited(self, job_id: str, lines: Iterable[TranscriptLine]) -> None:
        """Remember lines that notes cite, by message id."""
        mapping = {line.message_id: _line_blob(line) for line in lines}
        if not mapping:
            return
        _, key = self._keys(job_id)
        pipe = self._redis.pipeline(transaction=False)
        pipe.hset(key, mapping=mapping)  # type: ignore[arg-type]
        pipe.expire(key, self._ttl)
        pipe.execute()

    def get_cited(self, job_id: str, message_ids: Sequence[str]) -> dict[str, TranscriptLine]:
        """The remembered lines of ``message_ids`` (missing ids are left out)."""
        _, key = self._keys(job_id)
        found: dict[str, TranscriptLine] = {}
        for start in range(0, len(message_ids), self.BATCH):
            batch = list(message_ids[start : start + self.BATCH])
            for message_id, raw in zip(batch, self._redis.hmget(key, batch), strict=True):
                if raw is not None:
                    found[message_id] = line_from_wire(json.loads(raw))
        return found

    def delete(self, job_id: str) -> None:
        """Drop everything of the job."""
        self._redis.delete(*self._keys(job_id))


class MemoryScratchStore:
    """In-process twin of :class:`RedisScratchStore` (no expiry: the process ends first)."""

    def __init__(self) -> None:
        self._chunks: dict[str, dict[int, bytes]] = {}
        self._cited: dict[str, dict[str, bytes]] = {}
        self._lock = threading.Lock()

    def put_chunk(self, job_id: str, index: int, lines: Sequence[TranscriptLine]) -> None:
        """Store the lines of chunk ``index`` (with their chunk-local aliases)."""
        with self._lock:
            self._chunks.setdefault(job_id, {})[index] = _lines_blob(lines)

    def get_chunk(self, job_id: str, index: int) -> list[TranscriptLine] | None:
        """The lines of chunk ``index``, or None when they are gone."""
        with self._lock:
            raw = self._chunks.get(job_id, {}).get(index)
        return _lines_from_blob(raw) if raw is not None else None

    def put_cited(self, job_id: str, lines: Iterable[TranscriptLine]) -> None:
        """Remember lines that notes cite, by message id."""
        blobs = {line.message_id: _line_blob(line) for line in lines}
        with self._lock:
            self._cited.setdefault(job_id, {}).update(blobs)

    def get_cited(self, job_id: str, message_ids: Sequence[str]) -> dict[str, TranscriptLine]:
        """The remembered lines of ``message_ids`` (missing ids are left out)."""
        with self._lock:
            cited = self._cited.get(job_id, {})
            raws = {m: cited[m] for m in message_ids if m in cited}
        return {m: line_from_wire(json.loads(raw)) for m, raw in raws.items()}

    def delete(self, job_id: str) -> None:
        """Drop everything of the job."""
        with self._lock:
            self._chunks.pop(job_id, None)
            self._cited.pop(job_id, None)
