"""Cut a job's messages into map chunks while streaming them, one block at a time.

The planner never holds a whole channel: it reads the cached messages in order and cuts them
into *blocks* at content-defined points — a silence longer than any segment may span
(:data:`~shared.summarize.segment.MAX_GAP_SECONDS`), a new day in the transcript's time zone,
or :attr:`Planner.block_messages` messages.  Each block is prepared
(:func:`~shared.summarize.transcript.build_transcript`: opt-outs, redaction, aliases),
segmented into conversations (:func:`~shared.summarize.segment.segment_messages`), and its
segments are packed, in order, into chunks of at most ``chunk_tokens`` transcript tokens (a
segment larger than that is split).  Only the window's statistics outlive a block.

Because blocks start at points that depend only on the messages themselves, the same day of a
channel yields the same chunks whether it is summarized alone or inside a week, so the notes of
a chunk (cached by :func:`chunk_hash`) are found again: a weekly digest after the dailies
re-reads its notes instead of paying for them.

Each chunk carries its own aliases (``m1`` … in chunk order) so its rendering — and its hash —
do not depend on what came before it in the window.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, tzinfo
from typing import Any
from zoneinfo import ZoneInfo

from shared.domain.messages import ChannelInfo, ChatMessage
from shared.llm.tokens import count_tokens
from shared.summarize.content import Participant
from shared.summarize.segment import MAX_GAP_SECONDS, segment_messages
from shared.summarize.transcript import (
    Transcript,
    TranscriptLine,
    TranscriptOptions,
    TranscriptStats,
    build_transcript,
)

__all__ = [
    "HEADER_TOKENS",
    "Chunk",
    "Planner",
    "WindowStats",
    "chunk_hash",
    "iter_blocks",
    "realias",
    "transcript_of",
]

#: Tokens a line header (``[m17 14:03 alice ↩m12] ``) costs at most, for packing estimates.
HEADER_TOKENS = 8


@dataclass
class WindowStats:
    """What the planner saw in the whole window: counts, time span, participants."""

    messages_total: int = 0
    kept: int = 0
    dropped: Counter[str] = field(default_factory=Counter)
    redactions: Counter[str] = field(default_factory=Counter)
    truncated_code_blocks: int = 0
    truncated_messages: int = 0
    start: datetime | None = None
    end: datetime | None = None
    participants: dict[str, list[Any]] = field(default_factory=dict)

    def add(self, transcript: Transcript) -> None:
        """Count one block's transcript."""
        stats = transcript.stats
        self.messages_total += stats.messages_total
        self.kept += stats.kept
        self.dropped.update(stats.dropped)
        self.redactions.update(stats.redactions)
        self.truncated_code_blocks += stats.truncated_code_blocks
        self.truncated_messages += stats.truncated_messages
        for line in transcript.lines:
            entry = self.participants.setdefault(line.author_id, [line.author, 0])
            entry[1] += 1
            if self.start is None or line.timestamp < self.start:
                self.start = line.timestamp
            if self.end is None or line.timestamp > self.end:
                self.end = line.timestamp

    def transcript_stats(self) -> TranscriptStats:
        """The window's counts as :class:`TranscriptStats` (for coverage)."""
        return TranscriptStats(
            messages_total=self.messages_total,
            kept=self.kept,
            dropped=dict(self.dropped),
            redactions=dict(self.redactions),
            truncated_code_blocks=self.truncated_code_blocks,
            truncated_messages=self.truncated_messages,
        )

    def participant_list(self) -> list[Participant]:
        """Authors of kept messages, most active first (as ``Transcript.participants``)."""
        ranked = sorted(self.participants.items(), key=lambda kv: (-kv[1][1], kv[1][0]))
        return [Participant(id=uid, name=str(n), messages=int(c)) for uid, (n, c) in ranked]

    def to_json(self) -> dict[str, Any]:
        """JSON-safe form for the plan row."""
        return {
            "messages_total": self.messages_total,
            "kept": self.kept,
            "dropped": dict(self.dropped),
            "redactions": dict(self.redactions),
            "truncated_code_blocks": self.truncated_code_blocks,
            "truncated_messages": self.truncated_messages,
            "start": self.start.isoformat() if self.start else None,
            "end": self.end.isoformat() if self.end else None,
            "participants": self.participants,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> WindowStats:
        """Inverse of :meth:`to_json`."""
        return cls(
            messages_total=int(data.get("messages_total", 0)),
            kept=int(data.get("kept", 0)),
            dropped=Counter(data.get("dropped") or {}),
            redactions=Counter(data.get("redactions") or {}),
            truncated_code_blocks=int(data.get("truncated_code_blocks", 0)),
            truncated_messages=int(data.get("truncated_messages", 0)),
            start=datetime.fromisoformat(data["start"]) if data.get("start") else None,
            end=datetime.fromisoformat(data["end"]) if data.get("end") else None,
            participants={k: list(v) for k, v in (data.get("participants") or {}).items()},
        )


@dataclass(frozen=True)
class Chunk:
    """One map step's input: lines with chunk-local aliases, their tokens and content hash."""

    index: int
    lines: tuple[TranscriptLine, ...]
    tokens: int
    content_hash: str

    @property
    def message_ids(self) -> list[str]:
        """Discord ids of the chunk's messages, in chunk order."""
        return [line.message_id for line in self.lines]


def _zone(name: str) -> tzinfo:
    return UTC if name == "UTC" else ZoneInfo(name)


def iter_blocks(
    messages: Iterable[ChatMessage],
    *,
    max_messages: int,
    gap_seconds: float = MAX_GAP_SECONDS,
    tz: tzinfo = UTC,
) -> Iterator[list[ChatMessage]]:
    """Consecutive runs of ``messages`` cut at silences, day changes and ``max_messages``.

    A message id seen before in the same block is left out (a source that repeats itself must
    not make the segmenter fail).
    """
    block: list[ChatMessage] = []
    seen: set[str] = set()
    previous: ChatMessage | None = None
    for message in messages:
        if message.id in seen:
            continue
        if previous is not None and block:
            gap = (message.timestamp - previous.timestamp).total_seconds()
            new_day = message.timestamp.astimezone(tz).date() != (
                previous.timestamp.astimezone(tz).date()
            )
            if gap > gap_seconds or new_day or len(block) >= max_messages:
                yield block
                block, seen = [], set()
        block.append(message)
        seen.add(message.id)
        previous = message
    if block:
        yield block


def realias(lines: Sequence[TranscriptLine]) -> list[TranscriptLine]:
    """``lines`` with aliases ``m1`` … in order; replies kept only within ``lines``."""
    local = {line.message_id: f"m{i}" for i, line in enumerate(lines, start=1)}
    by_alias = {line.alias: line.message_id for line in lines}
    out = []
    for line in lines:
        target = by_alias.get(line.reply_alias) if line.reply_alias else None
        out.append(
            replace(
                line,
                alias=local[line.message_id],
                reply_alias=local.get(target) if target else None,
            )
        )
    return out


def transcript_of(
    lines: Sequence[TranscriptLine],
    channel: ChannelInfo,
    *,
    stats: TranscriptStats | None = None,
    timezone: str = "UTC",
) -> Transcript:
    """A :class:`Transcript` over already aliased ``lines`` (a chunk, or cited lines)."""
    if stats is None:
        stats = TranscriptStats(
            messages_total=len(lines), kept=len(lines), dropped={}, redactions={}
        )
    return Transcript(channel=channel, lines=lines, stats=stats, tz=_zone(timezone))


def chunk_hash(channel: ChannelInfo, lines: Sequence[TranscriptLine], rendered: str) -> str:
    """Content hash of a chunk: which messages, and exactly what the model is shown."""
    payload = {
        "channel": channel.channel_id,
        "ids": [line.message_id for line in lines],
        "text": rendered,
    }
    raw = json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode()
    return hashlib.sha256(raw).hexdigest()


class Planner:
    """Streams messages into :class:`Chunk` objects; :attr:`stats` describes the window."""

    def __init__(
        self,
        channel: ChannelInfo,
        *,
        options: TranscriptOptions,
        chunk_tokens: int,
        block_messages: int,
        encoding: str,
    ) -> None:
        if chunk_tokens < 1 or block_messages < 1:
            raise ValueError("chunk_tokens and block_messages must be positive")
        self.channel = channel
        self.options = options
        self.chunk_tokens = chunk_tokens
        self.block_messages = block_messages
        self.encoding = encoding
        self.stats = WindowStats()
        self._next_index = 0

    def chunks(self, messages: Iterable[ChatMessage]) -> Iterator[Chunk]:
        """The chunks of ``messages`` (oldest first), block by block."""
        tz = _zone(self.options.timezone)
        for block in iter_blocks(messages, max_messages=self.block_messages, tz=tz):
            yield from self._block_chunks(block)

    def _line_cost(self, line: TranscriptLine) -> int:
        return count_tokens(line.text, encoding=self.encoding) + HEADER_TOKENS

    def _block_chunks(self, block: list[ChatMessage]) -> Iterator[Chunk]:
        transcript = build_transcript(block, self.channel, options=self.options)
        self.stats.add(transcript)
        if not transcript.lines:
            return
        kept = [m for m in block if transcript.alias_for(m.id) is not None]
        groups: list[list[TranscriptLine]] = []
        for segment in segment_messages(kept):
            aliases = (transcript.alias_for(mid) for mid in segment.message_ids)
            groups.append([transcript.line(a) for a in aliases if a is not None])
        pack: list[TranscriptLine] = []
        pack_cost = 0
        for group in groups:
            costs = [self._line_cost(line) for line in group]
            cost = sum(costs)
            if pack and pack_cost + cost > self.chunk_tokens:
                yield self._chunk(pack)
                pack, pack_cost = [], 0
            if cost <= self.chunk_tokens:
                pack.extend(group)
                pack_cost += cost
                continue
            # A conversation larger than one chunk: consecutive parts of it.
            for line, line_cost in zip(group, costs, strict=True):
                if pack and pack_cost + line_cost > self.chunk_tokens:
                    yield self._chunk(pack)
                    pack, pack_cost = [], 0
                pack.append(line)
                pack_cost += line_cost
        if pack:
            yield self._chunk(pack)

    def _chunk(self, lines: Sequence[TranscriptLine]) -> Chunk:
        local = realias(lines)
        rendered = transcript_of(local, self.channel, timezone=self.options.timezone).render()
        chunk = Chunk(
            index=self._next_index,
            lines=tuple(local),
            tokens=count_tokens(rendered, encoding=self.encoding),
            content_hash=chunk_hash(self.channel, local, rendered),
        )
        self._next_index += 1
        return chunk
