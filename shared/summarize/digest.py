"""One summary out of many: the channel summaries of a digest or a catch-up, ranked and merged.

Each channel of a multi-channel job is summarized on its own (and its notes are cached like any
channel summary's); :func:`compose_digest` then builds the summary people read:

- **what matters most**: the few points that weigh most across channels.  In a catch-up,
  anything that mentions or answers the reader comes first; then decisions and action items,
  before any other point; within each, a point resting on more messages, in a busier channel,
  outweighs one resting on fewer.  At most two
  points per channel, so one busy channel cannot fill the section;
- **one section per channel with activity**: its own overview, topics, points, decisions,
  action items and open questions, every one still citing its messages;
- **the quiet channels**, named in one line.

Sections are ordered by activity; in a catch-up, by how much they involve the reader first
(mentions and replies, then threads the reader took part in), then by activity.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

from shared.summarize.content import (
    ChannelSection,
    Citation,
    CitedPoint,
    Coverage,
    Participant,
    SummaryContent,
    SummaryFormat,
)

__all__ = ["ChannelPart", "Involvement", "compose_digest"]

#: Points in "what matters most", and how many of them one channel may give.
TOP_POINTS = 5
PER_CHANNEL = 2

_WEIGHTS = {"decision": 3.0, "action": 2.5, "question": 1.5, "point": 1.0, "topic": 1.0}


@dataclass(frozen=True)
class Involvement:
    """How a channel's messages involve the reader of a catch-up."""

    mentions: int = 0
    replies: int = 0
    took_part: bool = False
    message_ids: frozenset[str] = frozenset()

    @property
    def direct(self) -> int:
        """Messages that mention or answer the reader."""
        return self.mentions + self.replies


@dataclass(frozen=True)
class ChannelPart:
    """One channel of the job: where it is, and its summary (None or empty: nothing new)."""

    channel_id: str
    name: str
    parent_name: str | None
    content: SummaryContent | None
    involvement: Involvement = field(default_factory=Involvement)

    @property
    def messages(self) -> int:
        """Messages the channel's summary read."""
        return self.content.coverage.messages_total if self.content is not None else 0


#: Kinds of point that come before every other kind in "what matters most", whatever their
#: score: a decision in a quiet channel matters more than chatter in a busy one.
_FIRST_KINDS = frozenset({"decision", "action"})


@dataclass(frozen=True)
class _Candidate:
    score: float
    text: str
    message_ids: list[str]
    channel: str
    involves_reader: bool = False
    first_kind: bool = False

    @property
    def rank(self) -> tuple[bool, bool, float]:
        """Sort key: what involves the reader, then decisions and action items, then score."""
        return (not self.involves_reader, not self.first_kind, -self.score)


def _candidates(part: ChannelPart, reader_first: bool) -> list[_Candidate]:
    content = part.content
    assert content is not None
    label = f"#{part.name}"
    groups: list[tuple[str, list[tuple[str, list[str]]]]] = [
        ("decision", [(p.text, p.message_ids) for p in content.decisions]),
        ("action", [(a.task, a.message_ids) for a in content.action_items]),
        ("question", [(p.text, p.message_ids) for p in content.open_questions]),
        ("point", [(p.text, p.message_ids) for p in content.key_points]),
        ("topic", [(f"{t.title}: {t.summary}", t.message_ids) for t in content.topics]),
    ]
    activity = 1.0 + math.log1p(part.messages) / 4
    out = []
    for kind, rows in groups:
        for text, ids in rows:
            score = _WEIGHTS[kind] * (1.0 + math.log1p(len(ids))) * activity
            involves = reader_first and bool(part.involvement.message_ids.intersection(ids))
            out.append(
                _Candidate(
                    score,
                    f"{label}: {text}",
                    list(ids),
                    part.channel_id,
                    involves_reader=involves,
                    first_kind=kind in _FIRST_KINDS,
                )
            )
    return out


def _what_matters_most(parts: Sequence[ChannelPart], reader_first: bool) -> list[CitedPoint]:
    ranked = sorted(
        (c for part in parts for c in _candidates(part, reader_first)),
        key=lambda c: c.rank,
    )
    chosen: list[_Candidate] = []
    per_channel: dict[str, int] = {}
    seen_texts: set[str] = set()
    for candidate in ranked:
        if len(chosen) == TOP_POINTS:
            break
        if per_channel.get(candidate.channel, 0) >= PER_CHANNEL or candidate.text in seen_texts:
            continue
        per_channel[candidate.channel] = per_channel.get(candidate.channel, 0) + 1
        seen_texts.add(candidate.text)
        chosen.append(candidate)
    return [CitedPoint(text=c.text, message_ids=c.message_ids) for c in chosen]


def _section(part: ChannelPart) -> ChannelSection:
    content = part.content
    assert content is not None
    return ChannelSection(
        channel_id=part.channel_id,
        channel_name=part.name,
        parent_name=part.parent_name,
        messages=part.messages,
        overview=content.overview,
        topics=content.topics,
        key_points=content.key_points,
        decisions=content.decisions,
        open_questions=content.open_questions,
        action_items=content.action_items,
        involves_reader=part.involvement.direct,
    )


def _participants(parts: Sequence[ChannelPart]) -> list[Participant]:
    counts: dict[str, tuple[str, int]] = {}
    for part in parts:
        assert part.content is not None
        for person in part.content.participants:
            name, total = counts.get(person.id, (person.name, 0))
            counts[person.id] = (name, total + person.messages)
    ranked = sorted(counts.items(), key=lambda item: (-item[1][1], item[1][0]))
    return [Participant(id=pid, name=name, messages=n) for pid, (name, n) in ranked]


def _overview(
    active: Sequence[ChannelPart],
    quiet: int,
    *,
    total: int,
    people: int,
    reader_first: bool,
) -> str:
    if not active:
        return f"Nothing new in the {quiet} channels covered."
    busiest = ", ".join(f"#{p.name} ({p.messages:,})" for p in active[:3])
    text = (
        f"{total:,} messages from {people} people in {len(active)} "
        f"channel{'s' if len(active) != 1 else ''}; busiest: {busiest}."
    )
    if reader_first:
        direct = [p for p in active if p.involvement.direct]
        if direct:
            where = ", ".join(f"#{p.name}" for p in direct[:4])
            count = sum(p.involvement.direct for p in direct)
            text += f" You were mentioned or answered {count} times, in {where}."
        else:
            text += " Nobody mentioned or answered you."
    if quiet:
        text += f" {quiet} channel{'s' if quiet != 1 else ''} had nothing new."
    return text


def compose_digest(
    parts: Sequence[ChannelPart],
    *,
    scope_id: str,
    scope_name: str,
    guild_id: str,
    window_start: datetime,
    window_end: datetime | None,
    format: SummaryFormat,
    reader_first: bool = False,
    backend: str = "digest",
) -> SummaryContent:
    """The multi-channel summary of ``parts`` (see the module docstring).

    ``scope_id``/``scope_name`` name what the summary covers (the server or the category);
    ``reader_first`` ranks a catch-up by what involves its reader.
    """
    active = [p for p in parts if p.content is not None and p.messages > 0]
    quiet = [p for p in parts if p.content is None or p.messages == 0]
    if reader_first:
        active.sort(key=lambda p: (-p.involvement.direct, not p.involvement.took_part, -p.messages))
    else:
        active.sort(key=lambda p: -p.messages)
    citations: dict[str, Citation] = {}
    for part in active:
        assert part.content is not None
        citations.update(part.content.citations)
    participants = _participants(active)
    total = sum(p.messages for p in active)
    starts = [p.content.coverage.start for p in active if p.content and p.content.coverage.start]
    ends = [p.content.coverage.end for p in active if p.content and p.content.coverage.end]
    return SummaryContent(
        format=format,
        overview=_overview(
            active,
            len(quiet),
            total=total,
            people=len(participants),
            reader_first=reader_first,
        ),
        key_points=_what_matters_most(active, reader_first),
        channels=[_section(p) for p in active],
        quiet_channels=[p.name for p in quiet],
        participants=participants,
        citations=citations,
        coverage=Coverage(
            messages_total=total,
            messages_used=sum(p.content.coverage.messages_used for p in active if p.content),
            messages_skipped=sum(p.content.coverage.messages_skipped for p in active if p.content),
            start=min(starts) if starts else window_start,
            end=max(ends) if ends else window_end,
            channel_id=scope_id,
            channel_name=scope_name,
            guild_id=guild_id,
        ),
        backend=backend,
        degraded=any(p.content.degraded for p in active if p.content),
    )
