"""The structured summary every backend produces and every renderer reads.

Every bullet carries ``message_ids``: the Discord message ids (snowflakes as strings) it was
drawn from.  ``citations`` maps each cited id to what a reader needs to find it again (author,
time, jump link), so rendering never has to go back to the messages themselves.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "ActionItem",
    "ChannelSection",
    "Citation",
    "CitedPoint",
    "Contribution",
    "Coverage",
    "Participant",
    "Sections",
    "SummaryContent",
    "SummaryFormat",
    "Topic",
]


class SummaryFormat(StrEnum):
    """The shapes of summary a user can ask for."""

    BRIEF = "brief"
    STRUCTURED = "structured"
    DETAILED = "detailed"
    TECHNICAL = "technical"


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class CitedPoint(_Model):
    """A sentence of the summary and the messages it rests on."""

    text: str
    message_ids: list[str] = Field(min_length=1)


class Topic(_Model):
    """One thread of conversation: a title, a short gist, and its messages."""

    title: str
    summary: str
    message_ids: list[str] = Field(min_length=1)


class ActionItem(_Model):
    """Something somebody said they (or someone) would do."""

    task: str
    owner: str | None = None
    due: str | None = None
    message_ids: list[str] = Field(min_length=1)


class Participant(_Model):
    """A person who wrote in the window, with their message count."""

    id: str
    name: str
    messages: int


class Contribution(_Model):
    """What one participant brought to the conversation (detailed format)."""

    participant: str
    points: list[CitedPoint]


class Citation(_Model):
    """How to find a cited message again: its id as the source gave it, and its Discord jump
    link when one can be built (null for a conversation sent without Discord ids)."""

    message_id: str
    author: str
    timestamp: datetime
    jump_url: str | None


class Coverage(_Model):
    """What the summary is about: how many messages were read, skipped, and when they span."""

    messages_total: int
    messages_used: int
    messages_skipped: int
    start: datetime | None
    end: datetime | None
    channel_id: str
    channel_name: str
    guild_id: str | None = None


class Sections(_Model):
    """The sections a summary and each channel's part of a multi-channel summary both have."""

    overview: str
    topics: list[Topic] = Field(default_factory=list)
    key_points: list[CitedPoint] = Field(default_factory=list)
    decisions: list[CitedPoint] = Field(default_factory=list)
    open_questions: list[CitedPoint] = Field(default_factory=list)
    action_items: list[ActionItem] = Field(default_factory=list)

    def cited_ids(self) -> set[str]:
        """Every message id these sections cite."""
        ids: set[str] = set()
        for group in (self.key_points, self.decisions, self.open_questions):
            for point in group:
                ids.update(point.message_ids)
        for topic in self.topics:
            ids.update(topic.message_ids)
        for item in self.action_items:
            ids.update(item.message_ids)
        return ids


class ChannelSection(Sections):
    """One channel's part of a multi-channel summary (a digest or a catch-up)."""

    channel_id: str
    channel_name: str
    parent_name: str | None = Field(
        default=None, description="The channel a thread or forum post belongs to"
    )
    messages: int
    involves_reader: int = Field(
        default=0, description="Messages that mention or answer the reader (a catch-up)"
    )

    @property
    def label(self) -> str:
        """``#name``, or ``#parent › name`` for a thread or forum post."""
        if self.parent_name:
            return f"#{self.parent_name} › {self.channel_name}"
        return f"#{self.channel_name}"


class SummaryContent(Sections):
    """A complete summary with sections, citations, participants and coverage."""

    format: SummaryFormat
    contributions: list[Contribution] = Field(default_factory=list)
    technical: list[CitedPoint] = Field(default_factory=list)
    participants: list[Participant] = Field(default_factory=list)
    citations: dict[str, Citation] = Field(default_factory=dict)
    channels: list[ChannelSection] = Field(
        default_factory=list, description="Per-channel sections of a multi-channel summary"
    )
    quiet_channels: list[str] = Field(
        default_factory=list, description="Channels with nothing new in the window"
    )
    coverage: Coverage
    backend: str
    degraded: bool = False

    @property
    def multi_channel(self) -> bool:
        """True for a digest or catch-up over several channels."""
        return bool(self.channels or self.quiet_channels)

    def cited_ids(self) -> set[str]:
        """Every message id cited anywhere in the summary."""
        ids = super().cited_ids()
        for point in self.technical:
            ids.update(point.message_ids)
        for contribution in self.contributions:
            for point in contribution.points:
                ids.update(point.message_ids)
        for section in self.channels:
            ids |= section.cited_ids()
        return ids
