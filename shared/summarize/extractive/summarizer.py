"""The offline summarizer: picks and labels real messages, never writes new facts.

Used when no LLM endpoint is configured and as the fallback when one fails.  The pipeline:

1. drop system and bot messages (counted as skipped in the coverage);
2. segment the rest into conversations (:func:`shared.summarize.segment.segment_messages`);
3. score every message: TF-IDF centrality in its segment (cosine to the segment centroid),
   replies received, reactions, pins, and a length sanity factor (one-word messages and pastes
   are poor extracts);
4. pick key points across segments with maximal marginal relevance (MMR), so near-duplicates
   and five points from one thread do not crowd out the rest;
5. find decisions, questions (open when nobody answered), action items (owner and due date)
   and, for the technical format, problems, fixes, commands and versions, by cue phrases;
6. title each topic with its top TF-IDF phrases.

Every bullet is an extract of one message (cut on a word boundary, prefixed with its author)
and cites it; ``citations`` holds exactly the cited ids.  Work is linear in the messages plus
per-segment sums; MMR runs on a bounded candidate list, so there is no global n×n matrix.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from shared.domain.messages import ChannelInfo, ChatMessage, jump_url
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
from shared.summarize.segment import segment_messages
from shared.summarize.text import (
    STOP_WORDS,
    Idf,
    SparseVector,
    add_into,
    cosine,
    dot,
    is_question,
    shorten,
    tokenize,
)

__all__ = ["LIMITS", "ExtractiveSummarizer", "FormatLimits"]

BULLET_CHARS = 200
TITLE_PHRASES = 2
TOPIC_CITATIONS = 5
MMR_LAMBDA = 0.7
DUPLICATE_COSINE = 0.6


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


LIMITS: dict[SummaryFormat, FormatLimits] = {
    SummaryFormat.BRIEF: FormatLimits(
        topics=3, key_points=3, decisions=0, action_items=0, open_questions=0
    ),
    SummaryFormat.STRUCTURED: FormatLimits(
        topics=6, key_points=7, decisions=5, action_items=7, open_questions=5
    ),
    SummaryFormat.DETAILED: FormatLimits(
        topics=10,
        key_points=7,
        decisions=7,
        action_items=10,
        open_questions=7,
        contributors=8,
        points_per_contributor=3,
    ),
    SummaryFormat.TECHNICAL: FormatLimits(
        topics=6,
        key_points=7,
        decisions=5,
        action_items=7,
        open_questions=5,
        technical=12,
        technical_per_kind=4,
    ),
}

_I = re.IGNORECASE
_URL_RE = re.compile(r"https?://\S+|www\.\S+", _I)
_DECISION_RE = re.compile(
    r"\b(?:we(?:'ll| will| are going to|'re going to)? go(?:ing)? with|decided|decision is|"
    r"let'?s (?:use|go with|go for|do|stick with|switch to|move to|ship|keep|drop|merge)|"
    r"agreed|we(?:'re| are) going to|going to use|the (?:fix|solution|plan) is|settled on|"
    r"we(?:'ll| will) (?:use|switch|move|ship|drop|keep)|ship it|approved)\b",
    _I,
)
_SELF_RE = re.compile(
    r"\b(?:i'll|i will|i'm going to|i am going to|i can take|i'll take|let me|i need to|"
    r"i have to|i'm on it|will do|i'll handle|i'll look)\b",
    _I,
)
_REQUEST_RE = re.compile(
    r"(?<!if )\b(?:can you|could you|would you|please|pls|you need to|you should|make sure)\b",
    _I,
)
_TODO_RE = re.compile(r"\b(?:todo|to-do|action item)\b", _I)
_GROUP_RE = re.compile(
    r"(?<!if )\b(?:we need to|we should|we have to|someone needs to|(?<!you )need to)\b", _I
)
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
    """One kept message and everything scored about it."""

    message: ChatMessage
    author: str
    text: str
    vector: SparseVector
    segment: int = -1
    tokens: int = 0
    replies: int = 0
    answered_by_others: bool = False
    centrality: float = 0.0
    score: float = 0.0


@dataclass(slots=True)
class _Topic:
    """One segment with its ranking and its members (indices into the item list)."""

    number: int
    members: list[int]
    centroid: SparseVector = field(default_factory=dict)
    weight: float = 0.0
    authors: int = 0


def _clean(message: ChatMessage) -> str:
    text = " ".join(message.content.split())
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
        self.topic_sizes: list[int] = []
        self.excluded: frozenset[str] = STOP_WORDS

    # -- analysis --------------------------------------------------------------------------

    def _analyse(self) -> None:
        name_tokens: set[str] = set()
        for name in self.names.values():
            name_tokens.update(tokenize(name))
        for message in self.kept:
            for mention in message.mentions:
                name_tokens.update(tokenize(mention))
        excluded = STOP_WORDS | name_tokens
        self.excluded = excluded
        all_terms: list[list[str]] = []
        token_counts: list[int] = []
        for message in self.kept:
            tokens = tokenize(_URL_RE.sub(" ", message.content))
            token_counts.append(len(tokens))
            all_terms.append(
                [t for t in tokens if len(t) > 1 and t not in excluded and not t.isdigit()]
            )
        self.idf = Idf(all_terms)
        for message, terms, count in zip(self.kept, all_terms, token_counts, strict=True):
            self.index[message.id] = len(self.items)
            self.items.append(
                _Item(
                    message=message,
                    author=self.names[message.author_id],
                    text=_clean(message),
                    vector=self.idf.vector(terms),
                    tokens=count,
                )
            )
        for item in self.items:
            parent = self.index.get(item.message.reply_to or "")
            if parent is not None and self.items[parent].message.author_id != (
                item.message.author_id
            ):
                self.items[parent].replies += 1
        largest = 1
        for number, segment in enumerate(segment_messages(self.kept)):
            members = [self.index[i] for i in segment.message_ids]
            for member in members:
                self.items[member].segment = number
            topic = _Topic(number=number, members=members)
            self._score_topic(topic)
            self.topics.append(topic)
            largest = max(largest, len(members))
        for topic in self.topics:
            reactions = sum(self.items[i].message.reactions for i in topic.members)
            pins = sum(self.items[i].message.is_pinned for i in topic.members)
            topic.weight = (
                math.log1p(len(topic.members)) / math.log1p(largest)
                + 0.1 * min(topic.authors - 1, 5)
                + 0.1 * math.log1p(reactions)
                + 0.3 * pins
            )
        self.topics.sort(key=lambda t: (-t.weight, -len(t.members), t.number))

    def _score_topic(self, topic: _Topic) -> None:
        """Centrality (cosine to the centroid of the *other* members) and the message score."""
        centroid: SparseVector = {}
        for i in topic.members:
            add_into(centroid, self.items[i].vector)
        topic.centroid = centroid
        topic.authors = len({self.items[i].message.author_id for i in topic.members})
        centroid_sq = dot(centroid, centroid)
        for i in topic.members:
            item = self.items[i]
            if len(topic.members) == 1 or not item.vector:
                item.centrality = 0.0
            else:
                shared = dot(item.vector, centroid)
                rest_sq = centroid_sq - 2 * shared + 1.0  # item.vector has unit length
                item.centrality = max(0.0, (shared - 1.0) / math.sqrt(max(rest_sq, 1e-12)))
            item.score = self._score(item)

    @staticmethod
    def _score(item: _Item) -> float:
        message = item.message
        # One-word messages are poor extracts, pastes and walls of text too.
        if not item.vector:
            length = 0.1
        elif len(item.text) > 600:
            length = 0.7
        else:
            length = 0.35 + 0.65 * min(item.tokens, 12) / 12
        return length * (
            0.5 * item.centrality
            + 0.25 * min(1.0, math.log1p(item.replies) / math.log(4))
            + 0.25 * min(1.0, math.log1p(message.reactions) / math.log(6))
            + 0.3 * message.is_pinned
            + 0.15 * min(1.0, len(item.vector) / 8)
        )

    # -- helpers -------------------------------------------------------------------------

    def _bullet(self, i: int) -> str:
        item = self.items[i]
        return f"{item.author}: {shorten(item.text, self.bullet_chars)}"

    def _mmr(
        self,
        candidates: Iterable[tuple[int, float]],
        limit: int,
        *,
        spread_topics: bool = True,
    ) -> list[int]:
        """Pick up to ``limit`` items by maximal marginal relevance; drop near-duplicates."""
        pool = sorted(candidates, key=lambda c: -c[1])[: max(limit * 8, 24)]
        chosen: list[int] = []
        while pool and len(chosen) < limit:
            best_at, best_value = -1, -math.inf
            for at, (i, relevance) in enumerate(pool):
                redundancy = 0.0
                for j in chosen:
                    similarity = cosine(self.items[i].vector, self.items[j].vector)
                    if spread_topics and self.items[i].segment == self.items[j].segment:
                        similarity += 0.25
                    redundancy = max(redundancy, similarity)
                value = MMR_LAMBDA * relevance - (1 - MMR_LAMBDA) * redundancy
                if value > best_value:
                    best_at, best_value = at, value
            i, _ = pool.pop(best_at)
            if any(
                cosine(self.items[i].vector, self.items[j].vector) >= DUPLICATE_COSINE
                for j in chosen
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

    # -- sections ------------------------------------------------------------------------

    def _key_points(self) -> list[CitedPoint]:
        limit = self.limits.key_points
        candidates: list[tuple[int, float]] = []
        for topic in self.topics[: limit * 3]:
            ranked = sorted(topic.members, key=lambda i: -self.items[i].score)[:3]
            candidates.extend((i, self.items[i].score * (0.5 + 0.5 * topic.weight)) for i in ranked)
        chosen = self._mmr((c for c in candidates if self.items[c[0]].vector), limit)
        chosen.sort(key=lambda i: self.items[i].message.timestamp)
        return [
            CitedPoint(text=self._bullet(i), message_ids=[self.items[i].message.id]) for i in chosen
        ]

    def _title(self, topic: _Topic) -> str:
        """The topic's top TF-IDF phrases ("kernel headers / module build").

        Phrases are single content words and pairs of adjacent content words; a phrase scores
        (messages of the topic containing it) x (mean idf), pairs a little more, and in a
        topic of several messages a pair must occur in at least two of them.
        """
        found: Counter[tuple[str, ...]] = Counter()
        for i in topic.members:
            phrases: set[tuple[str, ...]] = set()
            previous: str | None = None
            for token in tokenize(_URL_RE.sub(" ", self.items[i].message.content)):
                if len(token) < 2 or token in self.excluded or token.isdigit():
                    previous = None
                    continue
                phrases.add((token,))
                if previous is not None and previous != token:
                    phrases.add((previous, token))
                previous = token
            found.update(phrases)
        multi = len(topic.members) > 1
        scored = []
        for parts, count in found.items():
            if multi and len(parts) == 2 and count < 2:
                continue
            idf = sum(self.idf.weight(p) for p in parts) / len(parts)
            scored.append((count * idf * (1.3 if len(parts) == 2 else 1.0), parts))
        scored.sort(key=lambda sp: (-sp[0], sp[1]))
        picked: list[str] = []
        used: set[str] = set()
        for _, parts in scored:
            if used.intersection(parts):
                continue
            picked.append(" ".join(parts))
            used.update(parts)
            if len(picked) == TITLE_PHRASES:
                break
        if not picked:
            return shorten(self.items[topic.members[0]].text or "(no text)", 60)
        return " / ".join(picked)

    def _topics(self) -> list[Topic]:
        multi = [t for t in self.topics if len(t.members) > 1]
        chosen = (multi or self.topics)[: self.limits.topics]
        result = []
        for topic in chosen:
            texts = [i for i in topic.members if self.items[i].vector]
            pool = texts or topic.members
            representative = max(pool, key=lambda i: (self.items[i].score, -i))
            ranked = sorted(pool, key=lambda i: -self.items[i].score)
            cited = {topic.members[0], representative}
            for i in ranked:
                if len(cited) >= TOPIC_CITATIONS:
                    break
                cited.add(i)
            ordered = sorted(cited, key=lambda i: self.items[i].message.timestamp)
            self.topic_sizes.append(len(topic.members))
            result.append(
                Topic(
                    title=self._title(topic),
                    summary=self._bullet(representative),
                    message_ids=[self.items[i].message.id for i in ordered],
                )
            )
        return result

    def _decisions(self) -> list[CitedPoint]:
        candidates = [
            (i, item.score + 0.2)
            for i, item in enumerate(self.items)
            if _DECISION_RE.search(item.text) and not item.text.rstrip().endswith("?")
        ]
        points = []
        for i in self._mmr(candidates, self.limits.decisions, spread_topics=False):
            message = self.items[i].message
            ids = [message.id]
            if message.reply_to in self.index:
                ids.insert(0, str(message.reply_to))  # what was agreed on
            points.append(CitedPoint(text=self._bullet(i), message_ids=ids))
        return points

    def _mark_answers(self) -> None:
        """A question counts as answered once someone else speaks after it in its topic."""
        for topic in self.topics:
            pending: dict[str, list[int]] = {}
            for i in topic.members:
                item = self.items[i]
                author = item.message.author_id
                for asker in [a for a in pending if a != author]:
                    for q in pending.pop(asker):
                        self.items[q].answered_by_others = True
                if is_question(item.text):
                    pending.setdefault(author, []).append(i)

    def _open_questions(self) -> list[CitedPoint]:
        self._mark_answers()
        candidates = [
            (i, item.score + 0.1 * min(len(item.vector), 8) / 8)
            for i, item in enumerate(self.items)
            if is_question(item.text) and item.replies == 0 and not item.answered_by_others
        ]
        chosen = self._mmr(candidates, self.limits.open_questions, spread_topics=False)
        chosen.sort(key=lambda i: self.items[i].message.timestamp)
        return [
            CitedPoint(text=self._bullet(i), message_ids=[self.items[i].message.id]) for i in chosen
        ]

    def _action(self, item: _Item) -> tuple[str | None, bool]:
        """(owner, is an action item) for one message."""
        text = item.text
        question = text.rstrip().endswith("?")
        if _SELF_RE.search(text) and not question:
            return item.author, True
        addressee = self._addressee(item)
        if _REQUEST_RE.search(text) and addressee is not None:
            return addressee, True
        if _TODO_RE.search(text):
            return addressee or item.author, True
        if _GROUP_RE.search(text) and not question:
            return addressee, True
        return None, False

    def _action_items(self) -> list[ActionItem]:
        found: dict[int, str | None] = {}
        candidates = []
        for i, item in enumerate(self.items):
            owner, is_action = self._action(item)
            if is_action and item.tokens >= 3:
                found[i] = owner
                candidates.append((i, item.score + 0.1 * (owner is not None)))
        chosen = self._mmr(candidates, self.limits.action_items, spread_topics=False)
        chosen.sort(key=lambda i: self.items[i].message.timestamp)
        items = []
        for i in chosen:
            due = _DUE_RE.search(self.items[i].text)
            items.append(
                ActionItem(
                    task=self._bullet(i),
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
            candidates = [(i, self.items[i].score) for i in members if self.items[i].vector]
            chosen = self._mmr(candidates, self.limits.points_per_contributor)
            if not chosen:
                continue
            chosen.sort(key=lambda i: self.items[i].message.timestamp)
            result.append(
                Contribution(
                    participant=self.names[author_id],
                    points=[
                        CitedPoint(text=self._bullet(i), message_ids=[self.items[i].message.id])
                        for i in chosen
                    ],
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
            kind = self._technical_kind(item.text)
            if kind is not None and item.tokens >= 2:
                kinds.setdefault(kind, []).append((i, item.score))
        picked: list[tuple[str, int]] = []
        for kind in ("problem", "fix", "command", "version"):
            chosen = self._mmr(
                kinds.get(kind, []), self.limits.technical_per_kind, spread_topics=False
            )
            picked.extend((kind, i) for i in chosen)
        picked = picked[: self.limits.technical]
        return [
            CitedPoint(text=f"[{kind}] {self._bullet(i)}", message_ids=[self.items[i].message.id])
            for kind, i in picked
        ]

    def _overview(self, topics: list[Topic], decisions: int, questions: int) -> str:
        """One sentence on volume and time, one on the main topics and what was settled."""
        count = len(self.items)
        people = len(self.names)
        span = _span(self.kept[0].timestamp, self.kept[-1].timestamp)
        first = (
            f"{_plural(count, 'message')} from {_plural(people, 'participant')} in "
            f"#{self.channel.channel_name} {span}."
        )
        main = [
            f"{topic.title} ({_plural(size, 'message')})"
            for topic, size in zip(topics[:3], self.topic_sizes, strict=False)
            if size > 1
        ]
        extra = []
        if decisions:
            extra.append(_plural(decisions, "decision"))
        if questions:
            extra.append(_plural(questions, "open question"))
        if main and extra:
            return f"{first} Main topics: {'; '.join(main)}; {' and '.join(extra)}."
        if main:
            return f"{first} Main topics: {'; '.join(main)}."
        if extra:
            return f"{first} {' and '.join(extra).capitalize()} noted."
        return first

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
        key_points = self._key_points()
        decisions = self._decisions() if limits.decisions else []
        questions = self._open_questions() if limits.open_questions else []
        actions = self._action_items() if limits.action_items else []
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
                jump_url=jump_url(self.channel.guild_id, message.channel_id, message_id),
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
