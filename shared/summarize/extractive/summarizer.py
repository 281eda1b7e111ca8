"""The offline summarizer: picks and labels real messages, never writes new facts.

Used when no LLM endpoint is configured, as the fallback when one fails, and by
``summarybot demo``.  The pipeline:

1. drop system and bot messages (counted as skipped in the coverage) and mark noise
   (:mod:`~shared.summarize.extractive.noise`: greetings, fillers, join lines, bot commands,
   pastes, bare links, transcription markup): noise shapes the conversation but is never
   quoted;
2. one streaming pass counts document frequencies (IDF) and the channel's TF-IDF centroid;
   nothing per message is kept but a few numbers;
3. segment into conversations (:func:`shared.summarize.segment.segment_messages`); a long
   conversation (a meeting, a busy thread) is cut further into sub-topics where its
   vocabulary shifts most (TextTiling depth scores over blocks of messages);
4. per topic, one at a time (memory is bounded by the largest topic, not the channel): every
   quotable unit (the whole message when it fits a bullet, else a run of its sentences) is
   scored by centrality in its topic (cosine to the centroid of the *other* messages),
   closeness to the channel's centroid, an early-position bonus, replies, reactions and
   pins, and a content-length factor; a topic keeps only its best unit per message;
5. pick key points across topics with maximal marginal relevance (MMR): representative and
   not redundant, near-duplicates and topic gists left out;
6. decisions, open questions and action items by cue phrases, with precision over recall
   (:mod:`~shared.summarize.extractive.actions`); problems, fixes, commands and versions
   for the technical format;
7. title each topic with its key noun phrases (:mod:`~shared.summarize.extractive.titles`).

Every bullet is an extract of one message (markup and spoken fillers removed, cut on a word
boundary, prefixed with its author) and cites it; ``citations`` holds exactly the cited ids.
Pure Python: no numpy, scikit-learn or models, so the worker starts fast and installs small.
"""

from __future__ import annotations

import heapq
import math
import re
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime

from shared.domain.messages import ChannelInfo, ChatMessage, message_link
from shared.errors import InvalidInputError
from shared.summarize.content import (
    ActionItem,
    Citation,
    CitedPoint,
    Contribution,
    Coverage,
    Participant,
    SummaryContent,
    SummaryFormat,
    Topic,
)
from shared.summarize.extractive.actions import action_owner, is_decision
from shared.summarize.extractive.noise import (
    FILLER_WORDS,
    FRAGMENT_WORDS,
    clean_extract,
    noise_kind,
    split_sentences,
    strip_markup,
)
from shared.summarize.extractive.titles import topic_title
from shared.summarize.segment import segment_messages
from shared.summarize.text import (
    STOP_WORDS,
    Idf,
    SparseVector,
    add_into,
    cosine,
    dot,
    is_question,
    normalize,
    shorten,
    tokenize,
)

__all__ = ["LIMITS", "ExtractiveSummarizer", "FormatLimits"]

BULLET_CHARS = 200
TOPIC_CITATIONS = 5
MMR_LAMBDA = 0.7
DUPLICATE_COSINE = 0.6
# Sub-topics: a conversation of at least SPLIT_MIN quotable messages is cut into about one
# part per SPLIT_TARGET of them (at most SPLIT_MAX parts, none under SPLIT_PART), at the
# deepest valleys of lexical similarity between blocks of SPLIT_BLOCK messages.
SPLIT_MIN = 60
SPLIT_TARGET = 45
SPLIT_MAX = 8
SPLIT_PART = 15
SPLIT_BLOCK = 6
# A message longer than this many sentences is scored on its first ones only.
MAX_SENTENCES = 20
# Open questions: in a stretch where at most SMALL_GROUP people speak (within
# SMALL_GROUP_WINDOW messages either side), a question followed within ANSWER_NEXT messages
# by another speaker counts as answered.
SMALL_GROUP = 6
SMALL_GROUP_WINDOW = 10
ANSWER_NEXT = 3
# Scoring weights (see _Digest._score_topic).
W_LOCAL = 0.5
W_GLOBAL = 0.3
W_POSITION = 0.1
CONTENT_TERMS_FULL = 6
# Noise never quoted; a paste may still be a technical note.
_UNQUOTABLE = frozenset({"empty", "markup", "filler", "greeting", "join", "bot", "link", "short"})


@dataclass(frozen=True)
class FormatLimits:
    """How many entries each section of one format may hold (0 = section left out)."""

    topics: int
    key_points: int
    decisions: int
    action_items: int
    open_questions: int
    contributors: int = 0
    points_per_contributor: int = 0
    technical: int = 0
    technical_per_kind: int = 0


_STRUCTURED = FormatLimits(topics=6, key_points=7, decisions=5, action_items=7, open_questions=5)

LIMITS: dict[SummaryFormat, FormatLimits] = {
    SummaryFormat.BRIEF: FormatLimits(
        topics=3, key_points=3, decisions=0, action_items=0, open_questions=0
    ),
    SummaryFormat.STRUCTURED: _STRUCTURED,
    SummaryFormat.DETAILED: FormatLimits(
        topics=10,
        key_points=7,
        decisions=7,
        action_items=10,
        open_questions=7,
        contributors=8,
        points_per_contributor=3,
    ),
    # The structured sections, and the technical notes.
    SummaryFormat.TECHNICAL: replace(_STRUCTURED, technical=12, technical_per_kind=4),
}

_I = re.IGNORECASE
_URL_RE = re.compile(r"https?://\S+|www\.\S+", _I)
_WEEKDAY = (
    r"monday|tuesday|wednesday|thursday|friday|saturday|sunday|mon|tue|tues|wed|thu|thur|thurs|"
    r"fri|sat|sun"
)
_WHEN = (
    r"\d{4}-\d{2}-\d{2}|end of (?:the )?(?:day|week|month)|tomorrow|tonight|today|this week|"
    r"next week|eod|eow|asap"
)
_DUE_RE = re.compile(
    r"\b(?:(?:by|before|until|on|due) (?:the )?(?:" + _WHEN + "|noon|" + _WEEKDAY + r"|"
    r"\d{1,2}:\d{2}\s?(?:am|pm)?|\d{1,2}\s?(?:am|pm))|" + _WHEN + r")\b",
    _I,
)
_ERROR_RE = re.compile(
    r"\b(?:error|errors|problem|issue|exception|traceback|segfault|segmentation fault|failed|"
    r"failure|fails|cannot|can't find|couldn't|not found|no such file|permission denied|"
    r"undefined (?:symbol|reference)|unable to|fatal|panic|crash(?:es|ed)?|broken|"
    r"doesn't work|does not work|not working|stopped working|"
    r"won't (?:start|boot|mount|work))\b|^e: ",
    _I,
)
_FIX_STRONG_RE = re.compile(
    r"\b(?:fixed|the fix|fixes it|solved|solution|workaround|works now|that worked|it worked|"
    r"resolved|to fix)\b",
    _I,
)
_FIX_WEAK_RE = re.compile(r"\b(?:try|run|use|install|upgrade|downgrade|reinstall|set|add)\b", _I)
_COMMAND_RE = re.compile(
    r"`[^`]+`|^\s*\$ |(?:^|[\s:])(?:sudo|apt-get|apt|aptitude|dpkg|pip3?|npm|yarn|git|make|"
    r"cmake|modprobe|systemctl|service|docker|kubectl|python3?|gcc|grep|cat|chmod|chown|mount|"
    r"dmesg|lsmod|lspci|ifconfig|curl|wget)\s+\S|\s--?[a-z][\w-]*|\|\s*\w+",
    _I,
)
_PATH_RE = re.compile(r"(?:^|\s)(?:~|\.{1,2})?/[\w.\-]+(?:/[\w.\-]*)+|[A-Z]:\\[\w\\.\-]+")
_PACKAGE_RE = re.compile(r"\b(?:lib[\w+.\-]+-dev|[\w.+\-]+\.(?:deb|rpm|whl)|python3?-[\w.\-]+)\b")
_VERSION_RE = re.compile(r"\bv?\d+\.\d+(?:\.\d+)+(?:-[\w.]+)?\b|\bv\d+\.\d+\b|\b\d+\.\d+\.x\b")
_ADDRESS_RE = re.compile(r"^\s*@?([^\s:,]{2,32})\s*[:,]")


@dataclass(slots=True)
class _Item:
    """One kept message and the few numbers scored about it (no text, no vectors)."""

    message: ChatMessage
    author: str
    noise: str | None = None
    segment: int = -1
    tokens: int = 0
    replies: int = 0
    answered_by_others: bool = False
    score: float = 0.0
    # The quoted unit: sentences [first, first + count) of the message; count 0 = all of it.
    first: int = 0
    count: int = 0

    @property
    def quotable(self) -> bool:
        return self.noise not in _UNQUOTABLE


@dataclass(slots=True)
class _Topic:
    """One conversation (or one part of a long one): its members (indices into the items,
    in time order), ranking, title and gist."""

    number: int
    members: list[int]
    weight: float = 0.0
    authors: int = 0
    content: int = 0
    scored: bool = False
    best: list[int] = field(default_factory=list)


def _clean(message: ChatMessage) -> str:
    text = strip_markup(" ".join(message.content.split()))
    if not text and message.attachments:
        text = "[file: " + ", ".join(message.attachments) + "]"
    if not text and message.embeds:
        text = "[embed: " + ", ".join(message.embeds) + "]"
    return text


class ExtractiveSummarizer:
    """Summarize by extraction: ranked, cited excerpts of the messages themselves.

    ``language`` is accepted for interface compatibility; extracts stay in the language they
    were written in and the overview sentence is English.
    """

    name = "extractive"

    def __init__(self, *, bullet_chars: int = BULLET_CHARS) -> None:
        if bullet_chars < 40:
            raise InvalidInputError(f"bullet_chars must be at least 40, got {bullet_chars}")
        self.bullet_chars = bullet_chars

    def summarize(
        self,
        messages: Sequence[ChatMessage],
        channel: ChannelInfo,
        *,
        format: SummaryFormat,
        language: str | None = None,
        skipped: int = 0,
    ) -> SummaryContent:
        """Summarize ``messages`` of ``channel`` in ``format``; ``skipped`` messages were
        already left out upstream and are only counted."""
        try:
            shape = SummaryFormat(format)
        except ValueError:
            choices = ", ".join(f.value for f in SummaryFormat)
            raise InvalidInputError(
                f"unknown summary format {format!r}; use one of {choices}"
            ) from None
        if skipped < 0:
            raise InvalidInputError(f"skipped must be 0 or more, got {skipped}")
        for message in messages:
            if message.timestamp.tzinfo is None:
                raise InvalidInputError(
                    f"message {message.id} has a naive timestamp; give every ChatMessage a "
                    "timezone-aware timestamp (e.g. UTC)"
                )
        del language  # extracts keep their own language; see the class docstring
        return _Digest(messages, channel, shape, skipped, self.bullet_chars).build()


class _Digest:
    """One summarization run: analysis of the messages, then the sections."""

    def __init__(
        self,
        messages: Sequence[ChatMessage],
        channel: ChannelInfo,
        shape: SummaryFormat,
        skipped: int,
        bullet_chars: int,
    ) -> None:
        self.channel = channel
        self.shape = shape
        self.limits = LIMITS[shape]
        self.bullet_chars = bullet_chars
        self.all_messages = messages
        self.skipped = skipped
        kept = [m for m in messages if not m.is_system and not m.is_bot]
        kept.sort(key=lambda m: m.timestamp)
        self.kept = kept
        # One display name per user id: the latest one seen.
        self.names: dict[str, str] = {}
        for message in kept:
            self.names[message.author_id] = message.author_name
        self.name_keys = {name.lower(): name for name in self.names.values()}
        self.items: list[_Item] = []
        self.topics: list[_Topic] = []
        self.index: dict[str, int] = {}
        self.excluded: frozenset[str] = STOP_WORDS
        self.idf = Idf(())
        self.centroid: SparseVector = {}
        self.gists: set[int] = set()
        #: Messages quoted by the decisions, open questions and action items.
        self.specific: set[int] = set()
        self._vectors: dict[int, SparseVector] = {}

    # -- text ------------------------------------------------------------------------------

    def _terms(self, text: str) -> list[str]:
        """Content terms: no stop words, fillers, names, numbers or single characters."""
        excluded = self.excluded
        return [
            t
            for t in tokenize(_URL_RE.sub(" ", text))
            if len(t) > 1 and t not in excluded and not t.isdigit()
        ]

    def _units(self, text: str) -> list[tuple[int, int, str]]:
        """Quotable units of a message: (first sentence, sentence count, text).  The whole
        message when it fits a bullet, else runs of sentences that fit one."""
        cleaned = clean_extract(text)
        if len(cleaned) <= self.bullet_chars:
            return [(0, 0, cleaned)] if cleaned else []
        sentences = split_sentences(text)[:MAX_SENTENCES]
        units = []
        for first in range(len(sentences)):
            parts: list[str] = []
            length = used = 0
            for sentence in sentences[first : first + 3]:
                piece = clean_extract(sentence)
                if parts and length + len(piece) + 1 > self.bullet_chars:
                    break
                used += 1
                if piece:
                    parts.append(piece)
                    length += len(piece) + 1
            if parts:
                units.append((first, used, " ".join(parts)))
        return units

    def _extract(self, i: int, prefer: Callable[[str], bool] | None = None) -> str:
        """The text a bullet quotes of item ``i``: its chosen unit, or with ``prefer`` the
        first unit for which ``prefer`` holds (the sentence with a decision cue)."""
        item = self.items[i]
        text = _clean(item.message)
        if prefer is not None:
            units = self._units(text)
            for _, _, unit in units:
                if prefer(unit):
                    return unit
        if item.count == 0:
            return clean_extract(text) or text
        sentences = split_sentences(text)[item.first : item.first + item.count]
        return " ".join(p for p in (clean_extract(s) for s in sentences) if p) or text

    def _vector(self, i: int) -> SparseVector:
        """TF-IDF vector of item ``i``'s quoted unit (computed for the few items compared)."""
        vector = self._vectors.get(i)
        if vector is None:
            vector = self._vectors[i] = self.idf.vector(self._terms(self._extract(i)))
        return vector

    # -- analysis --------------------------------------------------------------------------

    def _analyse(self) -> None:
        name_tokens: set[str] = set()
        for name in self.names.values():
            name_tokens.update(tokenize(name))
        for message in self.kept:
            for mention in message.mentions:
                name_tokens.update(tokenize(mention))
        self.excluded = STOP_WORDS | FILLER_WORDS | FRAGMENT_WORDS | name_tokens
        names = frozenset(name_tokens)
        # One streaming pass: document frequencies and total term weights, no stored terms.
        df: Counter[str] = Counter()
        tf: Counter[str] = Counter()
        for message in self.kept:
            text = strip_markup(message.content)
            terms = self._terms(text)
            df.update(set(terms))
            tf.update(terms)
            self.index[message.id] = len(self.items)
            self.items.append(
                _Item(
                    message=message,
                    author=self.names[message.author_id],
                    noise=noise_kind(
                        text, names=names, has_files=bool(message.attachments or message.embeds)
                    ),
                    tokens=len(terms),
                )
            )
        documents = len(self.items)
        self.idf = Idf.from_counts(df, documents)
        del df
        self.centroid = normalize({t: n * self.idf.weight(t) for t, n in tf.items()})
        del tf
        self._small_group_answers()
        for item in self.items:
            parent = self.index.get(item.message.reply_to or "")
            if parent is not None and self.items[parent].message.author_id != (
                item.message.author_id
            ):
                self.items[parent].replies += 1
        largest = 1
        for segment in segment_messages(self.kept):
            members = [self.index[i] for i in segment.message_ids]
            self._mark_answers(members)
            for part in self._split(members):
                topic = _Topic(number=len(self.topics), members=part)
                for member in part:
                    self.items[member].segment = topic.number
                topic.authors = len({self.items[i].message.author_id for i in part})
                topic.content = sum(
                    1 for i in part if self.items[i].quotable and self.items[i].tokens
                )
                self.topics.append(topic)
                largest = max(largest, topic.content)
        for topic in self.topics:
            reactions = sum(self.items[i].message.reactions for i in topic.members)
            pins = sum(self.items[i].message.is_pinned for i in topic.members)
            topic.weight = (
                math.log1p(topic.content) / math.log1p(largest)
                + 0.1 * min(topic.authors - 1, 5)
                + 0.1 * math.log1p(reactions)
                + 0.3 * pins
            )
        self.by_number = list(self.topics)
        self.topics.sort(key=lambda t: (-t.weight, -len(t.members), t.number))

    def _message_vector(self, i: int) -> SparseVector:
        item = self.items[i]
        if not item.quotable or not item.tokens:
            return {}
        return self.idf.vector(self._terms(strip_markup(item.message.content)))

    def _split(self, members: list[int]) -> list[list[int]]:
        """A long conversation cut into sub-topics at its deepest lexical valleys."""
        content = [i for i in members if self.items[i].quotable and self.items[i].tokens]
        if len(content) < SPLIT_MIN:
            return [members]
        parts = min(SPLIT_MAX, round(len(content) / SPLIT_TARGET))
        if parts < 2:
            return [members]
        vectors = [self._message_vector(i) for i in content]
        gaps = len(content) - 1
        similarity = [0.0] * (gaps + 1)
        for g in range(1, gaps + 1):
            left: SparseVector = {}
            right: SparseVector = {}
            for v in vectors[max(0, g - SPLIT_BLOCK) : g]:
                add_into(left, v)
            for v in vectors[g : g + SPLIT_BLOCK]:
                add_into(right, v)
            similarity[g] = cosine(left, right)
        depth: list[tuple[float, int]] = []
        for g in range(SPLIT_PART, len(content) - SPLIT_PART + 1):
            lpeak = similarity[g]
            for h in range(g - 1, 0, -1):
                if similarity[h] < lpeak:
                    break
                lpeak = similarity[h]
            rpeak = similarity[g]
            for h in range(g + 1, gaps + 1):
                if similarity[h] < rpeak:
                    break
                rpeak = similarity[h]
            depth.append((lpeak + rpeak - 2 * similarity[g], g))
        cuts: list[int] = []
        for value, g in sorted(depth, key=lambda d: (-d[0], d[1])):
            if value <= 0 or len(cuts) == parts - 1:
                break
            if all(abs(g - c) >= SPLIT_PART for c in cuts):
                cuts.append(g)
        if not cuts:
            return [members]
        boundaries = sorted(self.items[content[g]].message.timestamp for g in cuts)
        result: list[list[int]] = [[] for _ in range(len(boundaries) + 1)]
        at = 0
        for i in members:
            while at < len(boundaries) and self.items[i].message.timestamp >= boundaries[at]:
                at += 1
            result[at].append(i)
        return [part for part in result if part]

    def _scored(self, topic: _Topic) -> _Topic:
        """``topic`` with its members scored (done once, on first need)."""
        if not topic.scored:
            self._score_topic(topic)
            topic.scored = True
        return topic

    def _score(self, i: int) -> float:
        """Item ``i``'s score, its topic scored first if it was not yet."""
        self._scored(self.by_number[self.items[i].segment])
        return self.items[i].score

    def _score_topic(self, topic: _Topic) -> None:
        """Score every member's best unit.  Vectors live only here: topics are scored one at
        a time, and only those a section needs."""
        items = self.items
        members = topic.members
        quotable = [i for i in members if items[i].quotable]
        vectors = {i: self._message_vector(i) for i in quotable}
        centre: SparseVector = {}
        for vector in vectors.values():
            add_into(centre, vector)
        centre_sq = dot(centre, centre)
        size = max(1, len(members) - 1)
        position = {i: 1.0 - at / size for at, i in enumerate(members)}
        for i in quotable:
            item = items[i]
            own = vectors[i]
            if own:
                shared = dot(own, centre)
                rest_norm = math.sqrt(max(centre_sq - 2 * shared + 1.0, 1e-12))
            else:
                shared, rest_norm = 0.0, 1.0
            message = item.message
            social = (
                0.25 * min(1.0, math.log1p(item.replies) / math.log(4))
                + 0.25 * min(1.0, math.log1p(message.reactions) / math.log(6))
                + 0.3 * message.is_pinned
            )
            best = (-1.0, 0, 0)
            for first, count, unit in self._units(_clean(message)):
                terms = self._terms(unit)
                vector = self.idf.vector(terms)
                local = 0.0
                if vector and topic.content > 1:
                    # Cosine to the centroid of the *other* messages of the topic.
                    local = max(0.0, (dot(vector, centre) - dot(vector, own)) / rest_norm)
                overall = dot(vector, self.centroid)
                words = len(unit.split())
                length = min(1.0, len(set(terms)) / CONTENT_TERMS_FULL)
                if words > 45:
                    length *= 45 / words
                value = length * (
                    W_LOCAL * local + W_GLOBAL * overall + W_POSITION * position[i] + social
                )
                if value > best[0]:
                    best = (value, first, count)
            item.score = max(0.0, best[0])
            item.first, item.count = best[1], best[2]
        del vectors, centre
        ranked = sorted(quotable, key=lambda i: (-items[i].score, i))
        topic.best = [i for i in ranked if items[i].tokens][:3]

    def _title(self, topic: _Topic) -> str:
        items = self.items
        title = topic_title(
            (
                strip_markup(items[i].message.content)
                for i in topic.members
                if items[i].quotable and items[i].tokens
            ),
            self.idf.weight,
            excluded=self.excluded - STOP_WORDS,
        )
        return title or shorten(self._extract(topic.best[0]), 60)

    # -- helpers -------------------------------------------------------------------------

    def _bullet(self, i: int, prefer: Callable[[str], bool] | None = None) -> str:
        item = self.items[i]
        return f"{item.author}: {shorten(self._extract(i, prefer), self.bullet_chars)}"

    def _mmr(
        self,
        candidates: Iterable[tuple[int, float]],
        limit: int,
        *,
        spread_topics: bool = True,
        shown: Iterable[int] = (),
    ) -> list[int]:
        """Pick up to ``limit`` items by maximal marginal relevance; drop near-duplicates of
        each other and of the ``shown`` items (already quoted elsewhere in the summary)."""
        pool = heapq.nsmallest(max(limit * 8, 24), candidates, key=lambda c: (-c[1], c[0]))
        before = list(shown)
        chosen: list[int] = []
        while pool and len(chosen) < limit:
            best_at, best_value = -1, -math.inf
            for at, (i, relevance) in enumerate(pool):
                redundancy = 0.0
                for j in [*before, *chosen]:
                    similarity = cosine(self._vector(i), self._vector(j))
                    if spread_topics and self.items[i].segment == self.items[j].segment:
                        similarity += 0.25
                    redundancy = max(redundancy, similarity)
                value = MMR_LAMBDA * relevance - (1 - MMR_LAMBDA) * redundancy
                if value > best_value:
                    best_at, best_value = at, value
            i, _ = pool.pop(best_at)
            if any(
                cosine(self._vector(i), self._vector(j)) >= DUPLICATE_COSINE
                for j in [*before, *chosen]
            ):
                continue
            chosen.append(i)
        return chosen

    def _addressee(self, item: _Item) -> str | None:
        """Who a message speaks to: a mention, ``nick:`` addressing, or the replied author."""
        message = item.message
        for mention in message.mentions:
            if mention.lower() != item.author.lower():
                return mention
        match = _ADDRESS_RE.match(message.content)
        if match:
            name = self.name_keys.get(match.group(1).lstrip("@").lower())
            if name is not None and name != item.author:
                return name
        parent = self.index.get(message.reply_to or "")
        if parent is not None and self.items[parent].author != item.author:
            return self.items[parent].author
        return None

    def _point(self, i: int, prefer: Callable[[str], bool] | None = None) -> CitedPoint:
        return CitedPoint(text=self._bullet(i, prefer), message_ids=[self.items[i].message.id])

    # -- sections ------------------------------------------------------------------------

    def _shown_topics(self) -> list[_Topic]:
        with_content = [t for t in self.topics if t.content]
        multi = [t for t in with_content if t.content > 1]
        return [self._scored(t) for t in (multi or with_content)[: self.limits.topics]]

    def _topics(self) -> list[Topic]:
        result = []
        for topic in self._shown_topics():
            representative = topic.best[0]
            self.gists.add(representative)
            cited = {topic.members[0], representative, *topic.best}
            ranked = sorted(topic.members, key=lambda i: (-self.items[i].score, i))
            for i in ranked:
                if len(cited) >= TOPIC_CITATIONS:
                    break
                if self.items[i].quotable:
                    cited.add(i)
            ordered = sorted(cited, key=lambda i: (self.items[i].message.timestamp, i))
            result.append(
                Topic(
                    title=self._title(topic),
                    summary=self._bullet(representative),
                    message_ids=[self.items[i].message.id for i in ordered],
                )
            )
        return result

    def _key_points(self) -> list[CitedPoint]:
        limit = self.limits.key_points
        candidates: list[tuple[int, float]] = []
        for topic in self.topics[: limit * 3]:
            self._scored(topic)
            candidates.extend(
                (
                    i,
                    self.items[i].score
                    * (0.5 + 0.5 * topic.weight)
                    * (0.5 if i in self.gists else 1.0),
                )
                for i in topic.best
            )
        fresh = [c for c in candidates if c[0] not in self.gists and c[0] not in self.specific]
        chosen = self._mmr(fresh, limit, shown=sorted(self.gists))
        if len(chosen) < limit:
            # Few topics: a gist may also be a key point rather than leave the section short.
            rest = [c for c in candidates if c[0] in self.gists and c[0] not in self.specific]
            chosen += self._mmr(rest, limit - len(chosen), shown=chosen)
        chosen.sort(key=lambda i: (self.items[i].message.timestamp, i))
        return [self._point(i) for i in chosen]

    def _decisions(self) -> list[CitedPoint]:
        candidates = [
            (i, self._score(i) + 0.2)
            for i, item in enumerate(self.items)
            if item.quotable and is_decision(strip_markup(item.message.content))
        ]
        points = []
        chosen = self._mmr(candidates, self.limits.decisions, spread_topics=False)
        self.specific.update(chosen)
        for i in chosen:
            message = self.items[i].message
            ids = [message.id]
            if message.reply_to in self.index:
                ids.insert(0, str(message.reply_to))  # what was agreed on
            points.append(CitedPoint(text=self._bullet(i, is_decision), message_ids=ids))
        return points

    def _small_group_answers(self) -> None:
        """In a small group (a meeting, a team of a few), the next speaker answers: a question
        followed within ANSWER_NEXT messages by someone else, where at most SMALL_GROUP
        people speak around it, is answered whatever segment that reply fell into."""
        items = self.items
        for at, item in enumerate(items):
            if not item.quotable or not is_question(strip_markup(item.message.content)):
                continue
            around = items[max(0, at - SMALL_GROUP_WINDOW) : at + SMALL_GROUP_WINDOW + 1]
            if len({other.message.author_id for other in around}) > SMALL_GROUP:
                continue
            author = item.message.author_id
            if any(
                other.message.author_id != author for other in items[at + 1 : at + 1 + ANSWER_NEXT]
            ):
                item.answered_by_others = True

    def _mark_answers(self, members: list[int]) -> None:
        """A question counts as answered once someone else speaks after it in its
        conversation (the whole segment, before any cut into sub-topics)."""
        pending: dict[str, list[int]] = {}
        for i in members:
            item = self.items[i]
            author = item.message.author_id
            for asker in [a for a in pending if a != author]:
                for q in pending.pop(asker):
                    self.items[q].answered_by_others = True
            if item.quotable and is_question(strip_markup(item.message.content)):
                pending.setdefault(author, []).append(i)

    def _open_questions(self) -> list[CitedPoint]:
        candidates = [
            (i, self._score(i) + 0.1 * min(item.tokens, 8) / 8)
            for i, item in enumerate(self.items)
            if item.quotable
            and item.tokens >= 2
            and item.replies == 0
            and not item.answered_by_others
            and is_question(strip_markup(item.message.content))
            and i not in self.specific
        ]
        chosen = self._mmr(candidates, self.limits.open_questions, spread_topics=False)
        self.specific.update(chosen)
        chosen.sort(key=lambda i: (self.items[i].message.timestamp, i))
        return [self._point(i, is_question) for i in chosen]

    def _action_items(self) -> list[ActionItem]:
        found: dict[int, str] = {}
        candidates = []
        for i, item in enumerate(self.items):
            if not item.quotable or item.tokens < 2 or i in self.specific:
                continue
            owner = action_owner(
                strip_markup(item.message.content),
                author=item.author,
                addressee=self._addressee(item),
            )
            if owner is not None:
                found[i] = owner
                candidates.append((i, self._score(i)))
        chosen = self._mmr(candidates, self.limits.action_items, spread_topics=False)
        self.specific.update(chosen)
        chosen.sort(key=lambda i: (self.items[i].message.timestamp, i))
        items = []
        for i in chosen:
            item = self.items[i]
            addressee = self._addressee(item)

            def states_it(unit: str, item: _Item = item, addressee: str | None = addressee) -> bool:
                return action_owner(unit, author=item.author, addressee=addressee) is not None

            task = self._bullet(i, states_it)
            due = _DUE_RE.search(task)
            items.append(
                ActionItem(
                    task=task,
                    owner=found[i],
                    due=due.group(0) if due else None,
                    message_ids=[self.items[i].message.id],
                )
            )
        return items

    def _contributions(self) -> list[Contribution]:
        by_author: dict[str, list[int]] = {}
        for i, item in enumerate(self.items):
            by_author.setdefault(item.message.author_id, []).append(i)
        top = sorted(by_author.items(), key=lambda kv: (-len(kv[1]), self.names[kv[0]]))
        result = []
        for author_id, members in top[: self.limits.contributors]:
            candidates = [
                (i, self._score(i))
                for i in members
                if self.items[i].quotable and self.items[i].tokens
            ]
            chosen = self._mmr(candidates, self.limits.points_per_contributor)
            if not chosen:
                continue
            chosen.sort(key=lambda i: (self.items[i].message.timestamp, i))
            result.append(
                Contribution(
                    participant=self.names[author_id], points=[self._point(i) for i in chosen]
                )
            )
        return result

    @staticmethod
    def _technical_kind(text: str) -> str | None:
        """problem / fix / command / version, by cue; ``None`` for other messages."""
        question = is_question(text)
        code = bool(_COMMAND_RE.search(text) or _PATH_RE.search(text) or _PACKAGE_RE.search(text))
        if not question and _FIX_STRONG_RE.search(text):
            return "fix"
        if _ERROR_RE.search(text) or (question and (code or _VERSION_RE.search(text))):
            return "problem"
        if not question and code and _FIX_WEAK_RE.search(text):
            return "fix"
        if code:
            return "command"
        if _VERSION_RE.search(text):
            return "version"
        return None

    def _technical(self) -> list[CitedPoint]:
        kinds: dict[str, list[tuple[int, float]]] = {}
        for i, item in enumerate(self.items):
            if item.noise in _UNQUOTABLE:
                continue
            kind = self._technical_kind(strip_markup(item.message.content))
            if kind is not None and len(tokenize(item.message.content)) >= 2:
                # A paste scores nothing as prose; as a technical note it counts.
                kinds.setdefault(kind, []).append(
                    (i, self._score(i) + 0.05 * (item.noise == "paste"))
                )
        picked: list[tuple[str, int]] = []
        for kind in ("problem", "fix", "command", "version"):
            chosen = self._mmr(
                kinds.get(kind, []), self.limits.technical_per_kind, spread_topics=False
            )
            picked.extend((kind, i) for i in chosen)
        picked = picked[: self.limits.technical]
        return [
            CitedPoint(
                text=f"[{kind}] {self.items[i].author}: "
                + shorten(_clean(self.items[i].message), self.bullet_chars),
                message_ids=[self.items[i].message.id],
            )
            for kind, i in picked
        ]

    def _overview(self, topics: list[Topic], decisions: int, questions: int) -> str:
        """What the talk was about (the main topics' titles), and what is listed below.

        Volume, time span and participants are in every rendering's header and footer, so
        the overview spends no words on them."""
        titles = [t.title for t in topics[:3] if t.title]
        extra = []
        if decisions:
            extra.append(_plural(decisions, "decision"))
        if questions:
            extra.append(_plural(questions, "open question"))
        parts = []
        if titles:
            parts.append(f"Main topics: {'; '.join(titles)}.")
        if extra:
            parts.append(f"{' and '.join(extra).capitalize()} below.")
        if not parts:
            quotable = sum(1 for item in self.items if item.quotable and item.tokens)
            people = len(self.names)
            if quotable == 0:
                return (
                    f"Only greetings, fillers, links and other chatter: "
                    f"{_plural(len(self.items), 'message')} from "
                    f"{_plural(people, 'participant')}, nothing to quote."
                )
            return f"{_plural(len(self.items), 'message')} from {_plural(people, 'participant')}."
        return " ".join(parts)

    # -- assembly ------------------------------------------------------------------------

    def _coverage(self) -> Coverage:
        times = [m.timestamp for m in self.all_messages]
        return Coverage(
            messages_total=len(self.all_messages) + self.skipped,
            messages_used=len(self.kept),
            messages_skipped=self.skipped + len(self.all_messages) - len(self.kept),
            start=min(times) if times else None,
            end=max(times) if times else None,
            channel_id=self.channel.channel_id,
            channel_name=self.channel.channel_name,
            guild_id=self.channel.guild_id,
        )

    def build(self) -> SummaryContent:
        """Analyse the messages and assemble the summary of the requested shape."""
        coverage = self._coverage()
        if not self.kept:
            dropped = coverage.messages_skipped
            note = f" ({dropped} system, bot or filtered messages skipped)" if dropped else ""
            return SummaryContent(
                format=self.shape,
                overview=(
                    f"Nothing to summarize: no messages from people in "
                    f"#{self.channel.channel_name} in this window{note}."
                ),
                coverage=coverage,
                backend="extractive",
            )
        self._analyse()
        limits = self.limits
        topics = self._topics()
        # The specific sections first: a message they quote is not repeated as a key point.
        decisions = self._decisions() if limits.decisions else []
        actions = self._action_items() if limits.action_items else []  # before a request's "?"
        questions = self._open_questions() if limits.open_questions else []
        key_points = self._key_points()
        contributions = self._contributions() if limits.contributors else []
        technical = self._technical() if limits.technical else []
        counts = Counter(item.message.author_id for item in self.items)
        participants = [
            Participant(id=author_id, name=self.names[author_id], messages=n)
            for author_id, n in sorted(counts.items(), key=lambda kv: (-kv[1], self.names[kv[0]]))
        ]
        content = SummaryContent(
            format=self.shape,
            overview=self._overview(topics, len(decisions), len(questions)),
            topics=topics,
            key_points=key_points,
            decisions=decisions,
            open_questions=questions,
            action_items=actions,
            contributions=contributions,
            technical=technical,
            participants=participants,
            coverage=coverage,
            backend="extractive",
            degraded=False,
        )
        citations = {}
        for message_id in sorted(content.cited_ids()):
            message = self.items[self.index[message_id]].message
            citations[message_id] = Citation(
                message_id=message_id,
                author=self.names[message.author_id],
                timestamp=message.timestamp,
                jump_url=message_link(self.channel, message.channel_id, message_id),
            )
        return content.model_copy(update={"citations": citations})


def _plural(count: int, noun: str) -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}"


def _span(start: datetime, end: datetime) -> str:
    """ "on 2024-05-01 between 14:03 and 16:20 UTC" (or across two dates)."""
    start, end = start.astimezone(UTC), end.astimezone(UTC)
    if start.date() == end.date():
        return f"on {start:%Y-%m-%d} between {start:%H:%M} and {end:%H:%M} UTC"
    return f"between {start:%Y-%m-%d %H:%M} and {end:%Y-%m-%d %H:%M} UTC"
