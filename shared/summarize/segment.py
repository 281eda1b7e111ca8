"""Topic segmentation: untangle a channel's interleaved conversations into segments.

Layered, cheapest and most certain signal first (see the summarization notes, §4.2):

1. **Hard structure.**  Messages of different channels/threads never share a segment; Discord
   reply links (``ChatMessage.reply_to``) are union-find edges that always hold.
2. **Addressing.**  ``@name`` mentions (``ChatMessage.mentions``) and IRC-style addressing of a
   recent speaker (``nick: ...``, ``nick, ...``) attach a message to that speaker's conversation.
   Among the addressee's open segments, one the author already takes part in wins.
3. **Same author.**  A speaker's next message within a few minutes continues their own
   conversation.
4. **Lexical similarity.**  TF-IDF cosine against the recent messages of open segments, decayed
   with the time since each of those messages.
5. **Quiet stretch.**  When only two people are talking, an unmarked message that is not a
   fresh question continues the previous message's conversation.
6. **Time gaps.**  A segment silent for longer than an adaptive threshold is closed: only hard
   links can join it again.

A message none of these place starts a new segment.

The pass is online and near-linear: a message is compared only with the messages of a sliding
window (the last :data:`WINDOW_MESSAGES` messages within :data:`WINDOW_SECONDS`), through an
inverted index, never with all earlier messages.
"""

from __future__ import annotations

import itertools
import math
import re
from collections import Counter, deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

from shared.domain.messages import ChatMessage
from shared.errors import InvalidInputError
from shared.summarize.text import STOP_WORDS, Idf, SparseVector, content_terms, is_question

__all__ = [
    "MAX_GAP_SECONDS",
    "MIN_GAP_SECONDS",
    "Segment",
    "adaptive_gap_seconds",
    "segment_messages",
    "time_gap_baseline",
]

MIN_GAP_SECONDS = 30 * 60.0
MAX_GAP_SECONDS = 60 * 60.0
GAP_PERCENTILE = 0.95

WINDOW_MESSAGES = 50
WINDOW_SECONDS = 15 * 60.0
# How long an addressed speaker or an author's own last message stays a valid anchor.
ADDRESS_SECONDS = 15 * 60.0
AUTHOR_SECONDS = 6 * 60.0
# Lexical evidence: cosine x exp(-dt / LEXICAL_DECAY_SECONDS) must reach LEXICAL_THRESHOLD.
LEXICAL_DECAY_SECONDS = 10 * 60.0
LEXICAL_THRESHOLD = 0.3
# In a quiet stretch (one conversation going on), an unmarked message continues it.
QUIET_SECONDS = 90.0
QUIET_WINDOW_SECONDS = 300.0
QUIET_TALKERS = 2
RECENT_PER_SPEAKER = 4

_ADDRESS_RE = re.compile(r"^\s*@?([^\s:,>]{2,32})\s*[:,>]")
_AT_RE = re.compile(r"@([\w.\-\[\]`^|{}]{2,32})")
_NICK_CHARS = " \t_-|`^[]{}"


@dataclass(frozen=True)
class Segment:
    """One conversation: its message ids in time order and the time it spans."""

    message_ids: tuple[str, ...]
    start: datetime
    end: datetime

    def __len__(self) -> int:
        return len(self.message_ids)


def adaptive_gap_seconds(messages: Sequence[ChatMessage]) -> float:
    """The silence that closes a segment in this channel.

    The 95th percentile of the gaps between consecutive conversation messages, clamped to
    30–60 minutes: busy channels close after half an hour, sparse ones wait up to an hour.
    """
    times = sorted(m.timestamp.timestamp() for m in messages if not m.is_system)
    gaps = sorted(b - a for a, b in itertools.pairwise(times))
    if not gaps:
        return MIN_GAP_SECONDS
    value = gaps[min(len(gaps) - 1, int(GAP_PERCENTILE * len(gaps)))]
    return min(MAX_GAP_SECONDS, max(MIN_GAP_SECONDS, value))


def _check(messages: Sequence[ChatMessage], gap: float | None, name: str) -> None:
    if gap is not None and not (gap > 0 and math.isfinite(gap)):
        raise InvalidInputError(f"{name} must be a positive number of seconds, got {gap!r}")
    seen: set[str] = set()
    for message in messages:
        if message.timestamp.tzinfo is None:
            raise InvalidInputError(
                f"message {message.id} has a naive timestamp {message.timestamp.isoformat()}; "
                "give every ChatMessage a timezone-aware timestamp (e.g. UTC)"
            )
        if message.id in seen:
            raise InvalidInputError(
                f"message id {message.id} occurs twice; remove duplicates before segmenting"
            )
        seen.add(message.id)


def _by_channel(messages: Sequence[ChatMessage]) -> dict[str, list[int]]:
    """Indices of ``messages`` per channel, each list in time order (stable for equal times)."""
    order = sorted(range(len(messages)), key=lambda i: messages[i].timestamp)
    channels: dict[str, list[int]] = {}
    for i in order:
        channels.setdefault(messages[i].channel_id, []).append(i)
    return channels


def _to_segments(messages: Sequence[ChatMessage], groups: list[list[int]]) -> list[Segment]:
    segments = []
    for group in groups:
        group.sort(key=lambda i: (messages[i].timestamp, i))
        segments.append(
            Segment(
                message_ids=tuple(messages[i].id for i in group),
                start=messages[group[0]].timestamp,
                end=messages[group[-1]].timestamp,
            )
        )
    segments.sort(key=lambda s: (s.start, s.message_ids[0]))
    return segments


def time_gap_baseline(messages: Sequence[ChatMessage], *, gap_seconds: float) -> list[Segment]:
    """The classic baseline: a channel's conversation messages split wherever the silence
    exceeds ``gap_seconds``.  System messages (joins, pins) are segments of their own."""
    _check(messages, gap_seconds, "gap_seconds")
    groups: list[list[int]] = []
    for indices in _by_channel(messages).values():
        current: list[int] = []
        last = 0.0
        for i in indices:
            message = messages[i]
            if message.is_system:
                groups.append([i])
                continue
            now = message.timestamp.timestamp()
            if current and now - last > gap_seconds:
                groups.append(current)
                current = []
            current.append(i)
            last = now
        if current:
            groups.append(current)
    return _to_segments(messages, groups)


class _UnionFind:
    """Disjoint sets over message indices (union by size, path halving)."""

    __slots__ = ("parent", "size")

    def __init__(self, n: int) -> None:
        self.parent = list(range(n))
        self.size = [1] * n

    def find(self, i: int) -> int:
        parent = self.parent
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    def union(self, a: int, b: int) -> int:
        ra, rb = self.find(a), self.find(b)
        if ra == rb:
            return ra
        if self.size[ra] < self.size[rb]:
            ra, rb = rb, ra
        self.parent[rb] = ra
        self.size[ra] += self.size[rb]
        return ra


def _nick_key(name: str) -> str:
    """Normalised nick for matching addressing against speakers ("Bob_|away" → "bob")."""
    key = name.lower().split("|", 1)[0].strip(_NICK_CHARS)
    return key or name.lower()


@dataclass(slots=True, eq=False)
class _ChannelPass:
    """The online pass over one channel; state lives here, decisions in :meth:`place`."""

    messages: Sequence[ChatMessage]
    times: Sequence[float]
    vectors: dict[int, SparseVector]
    sets: _UnionFind
    gap: float
    idf: Idf
    # Per segment, keyed by its union-find root: time of its latest message, speakers.
    last_time: dict[int, float] = field(default_factory=dict, init=False)
    members: dict[int, set[str]] = field(default_factory=dict, init=False)
    # Placed messages still in the comparison window: (placement number, index).
    window: deque[tuple[int, int]] = field(default_factory=deque, init=False)
    placed: int = field(default=0, init=False)
    postings: dict[str, deque[tuple[int, int]]] = field(default_factory=dict, init=False)
    # Per nick key: their latest few messages.
    recent: dict[str, deque[int]] = field(default_factory=dict, init=False)
    previous: int | None = field(default=None, init=False)

    # -- bookkeeping ---------------------------------------------------------------------

    def _slide(self, now: float) -> None:
        window, times = self.window, self.times
        while window and (
            len(window) > WINDOW_MESSAGES or now - times[window[0][1]] > WINDOW_SECONDS
        ):
            placed, gone = window.popleft()
            # Its postings are at the front of each of its terms' lists: drop them now.
            for term in self.vectors.pop(gone, ()):
                posting = self.postings.get(term)
                while posting and posting[0][0] <= placed:
                    posting.popleft()
                if not posting:
                    self.postings.pop(term, None)

    def _open(self, index: int, now: float) -> int | None:
        """Root of ``index``'s segment if that segment is still open at ``now``."""
        root = self.sets.find(index)
        last = self.last_time.get(root)
        if last is None or now - last > self.gap:
            return None
        return root

    def _join(self, index: int, target: int) -> None:
        """Put ``index`` (and its not yet placed reply component) into segment ``target``."""
        root = self.sets.union(index, target)
        if root != target:  # the union re-rooted the segment: move its state along
            self.last_time[root] = self.last_time.pop(target)
            self.members[root] = self.members.pop(target)

    def _record(self, index: int, key: str) -> None:
        root = self.sets.find(index)
        now = self.times[index]
        self.last_time[root] = max(now, self.last_time.get(root, now))
        self.members.setdefault(root, set()).add(key)
        self.window.append((self.placed, index))
        for term in self.vectors.get(index, ()):
            self.postings.setdefault(term, deque()).append((self.placed, index))
        self.placed += 1
        recent = self.recent.setdefault(key, deque(maxlen=RECENT_PER_SPEAKER))
        recent.append(index)
        self.previous = index

    def _roots_of(self, key: str, now: float, horizon: float) -> list[int]:
        """Open segments of speaker ``key``'s messages within ``horizon`` s, latest first."""
        roots: list[int] = []
        for index in reversed(self.recent.get(key, ())):
            if now - self.times[index] > horizon:
                break
            root = self._open(index, now)
            if root is not None and root not in roots:
                roots.append(root)
        return roots

    # -- soft signals ----------------------------------------------------------------------

    def _addressees(self, message: ChatMessage, own: str) -> list[str]:
        """Nick keys of the speakers this message addresses or mentions."""
        names: list[str] = list(message.mentions)
        match = _ADDRESS_RE.match(message.content)
        if match:
            names.append(match.group(1))
        names.extend(_AT_RE.findall(message.content))
        for word in message.content.split()[1:]:
            key = _nick_key(word.strip(".,:;!?()\"'<>"))
            if len(key) >= 3 and key not in STOP_WORDS and key in self.recent:
                names.append(key)
        keys: list[str] = []
        for name in names:
            key = _nick_key(name)
            if key not in self.recent and len(key) >= 3:
                # People shorten long nicks ("paul:" for paulSterio): accept a unique prefix
                # among the speakers of the window.
                hits = {
                    speaker
                    for _, i in self.window
                    if (speaker := _nick_key(self.messages[i].author_name)).startswith(key)
                }
                key = hits.pop() if len(hits) == 1 else ""
            if key and key != own and key in self.recent and key not in keys:
                keys.append(key)
        return keys

    def _by_address(self, message: ChatMessage, own: str, now: float) -> int | None:
        """The open segment an addressed speaker is in, preferring one shared with us."""
        candidates: list[int] = []
        addressees = self._addressees(message, own)
        for key in addressees:
            candidates.extend(self._roots_of(key, now, ADDRESS_SECONDS))
        if not candidates:
            return None
        for root in candidates:
            if own in self.members[root]:
                return root
        for root in self._roots_of(own, now, ADDRESS_SECONDS)[:1]:
            if any(key in self.members[root] for key in addressees):
                return root
        return candidates[0]

    def _lexical(self, index: int, now: float) -> tuple[int | None, float]:
        """Best open segment by decayed TF-IDF cosine against the window, and its score."""
        vector = self.vectors.get(index)
        if not vector:
            return None, 0.0
        oldest = self.window[0][0] if self.window else self.placed
        dots: dict[int, float] = {}
        for term, weight in vector.items():
            posting = self.postings.get(term)
            if posting is None:
                continue
            # Postings are in placement order; drop what fell out of the window.
            while posting and posting[0][0] < oldest:
                posting.popleft()
            if not posting:
                del self.postings[term]
                continue
            for _, other in posting:
                dots[other] = dots.get(other, 0.0) + weight * self.vectors[other][term]
        best_root: int | None = None
        best = 0.0
        for other, value in dots.items():
            score = value * math.exp(-(now - self.times[other]) / LEXICAL_DECAY_SECONDS)
            if score > best:
                root = self._open(other, now)
                if root is not None:
                    best, best_root = score, root
        return best_root, best

    def _quiet(self, message: ChatMessage, now: float) -> int | None:
        """The previous message's segment when only one pair of people is talking.

        A fresh question still opens a conversation of its own.
        """
        if self.previous is None or now - self.times[self.previous] > QUIET_SECONDS:
            return None
        if is_question(message.content):
            return None
        talkers = {message.author_id}
        for _, i in reversed(self.window):
            if now - self.times[i] > QUIET_WINDOW_SECONDS:
                break
            talkers.add(self.messages[i].author_id)
        if len(talkers) > QUIET_TALKERS:
            return None
        return self._open(self.previous, now)

    def place(self, index: int) -> None:
        """Decide which segment message ``index`` joins (or start a new one) and record it."""
        message = self.messages[index]
        now = self.times[index]
        own = _nick_key(message.author_name)
        self._slide(now)
        terms = content_terms(message.content)
        if terms:
            self.vectors[index] = self.idf.vector(terms)
        if self.sets.find(index) not in self.last_time:
            # Not tied by a reply link to a placed message, so the soft signals decide.
            target = self._by_address(message, own, now)
            if target is None:
                lexical_root, lexical_score = self._lexical(index, now)
                mine = self._roots_of(own, now, AUTHOR_SECONDS)
                if mine:
                    target = mine[0]
                elif lexical_score >= LEXICAL_THRESHOLD:
                    target = lexical_root
                else:
                    target = self._quiet(message, now)
            if target is not None:
                self._join(index, target)
        self._record(index, own)


def segment_messages(
    messages: Sequence[ChatMessage], *, max_gap_seconds: float | None = None
) -> list[Segment]:
    """Split ``messages`` into conversations (segments), ordered by their first message.

    ``max_gap_seconds`` is the silence after which a segment closes; by default it adapts to
    each channel (:func:`adaptive_gap_seconds`).  System messages (joins, pins) are segments of
    their own.  Raises :class:`InvalidInputError` on duplicate ids or naive timestamps.
    """
    _check(messages, max_gap_seconds, "max_gap_seconds")
    count = len(messages)
    sets = _UnionFind(count)
    position = {m.id: i for i, m in enumerate(messages)}
    for i, message in enumerate(messages):
        parent = position.get(message.reply_to) if message.reply_to else None
        if (
            parent is not None
            and not message.is_system
            and not messages[parent].is_system
            and messages[parent].channel_id == message.channel_id
        ):
            sets.union(i, parent)
    # Document frequencies in one pass; a message's vector is built when it is placed and
    # dropped when it leaves the comparison window, so memory does not grow with the channel.
    df: Counter[str] = Counter()
    documents = 0
    for message in messages:
        if not message.is_system:
            df.update(set(content_terms(message.content)))
            documents += 1
    idf = Idf.from_counts(df, documents)
    del df
    vectors: dict[int, SparseVector] = {}
    times = [m.timestamp.timestamp() for m in messages]
    groups: dict[int, list[int]] = {}
    singles: list[list[int]] = []
    for indices in _by_channel(messages).values():
        channel_messages = [messages[i] for i in indices]
        gap = max_gap_seconds or adaptive_gap_seconds(channel_messages)
        state = _ChannelPass(messages, times, vectors, sets, gap, idf)
        for i in indices:
            if messages[i].is_system:
                singles.append([i])
            else:
                state.place(i)
        for i in indices:
            if not messages[i].is_system:
                groups.setdefault(sets.find(i), []).append(i)
    return _to_segments(messages, [*groups.values(), *singles])
