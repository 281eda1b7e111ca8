"""Request and response bodies of the API (pydantic models; they are the OpenAPI schemas).

Every text field refuses control characters and text that is not valid Unicode, so nothing a
client sends can make the database reject a write (PostgreSQL refuses NUL bytes) and turn bad
input into a server error.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    model_validator,
)

from producers.api.examples import examples
from shared.domain.messages import SnowflakeText
from shared.jobs import Audience
from shared.summarize.content import SummaryFormat

__all__ = [
    "CatchupCreate",
    "CatchupDestinationIn",
    "ChannelDestination",
    "DestinationIn",
    "DigestCreate",
    "DigestWindow",
    "DirectMessageDestination",
    "InputModel",
    "JobCreate",
    "JobOut",
    "JobWindow",
    "Language",
    "LeftOutChannel",
    "Page",
    "SafeText",
    "Snowflake",
    "UserDataErased",
    "WebhookDestination",
]

_DISCORD_EPOCH = datetime(2015, 1, 1, tzinfo=UTC)


def _clean_text(value: str) -> str:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("the text is not valid Unicode (lone surrogate)") from None
    if any((ord(ch) < 0x20 and ch not in "\n\t") or ord(ch) == 0x7F for ch in value):
        raise ValueError("control characters are not allowed")
    return value


#: Free text: valid Unicode without control characters (newlines and tabs allowed).
SafeText = Annotated[str, AfterValidator(_clean_text)]
#: A Discord id.
Snowflake = Annotated[SnowflakeText, Field(examples=["1234567890123456789"])]
#: A language tag such as ``en`` or ``pt-BR``.
Language = Annotated[
    str,
    Field(
        pattern=r"^[A-Za-z]{2,3}(-[A-Za-z0-9]{1,8}){0,3}$",
        max_length=16,
        examples=["en", "de", "pt-BR"],
    ),
]


class InputModel(BaseModel):
    """A request body: a field it does not declare is an error (422), not silently dropped."""

    model_config = ConfigDict(extra="forbid")


def _check_time(value: datetime | None, name: str) -> datetime | None:
    if value is None:
        return None
    try:
        utc = value.astimezone(UTC)
    except (OverflowError, ValueError):
        raise ValueError(f"{name} is out of range") from None
    if utc < _DISCORD_EPOCH:
        raise ValueError(f"{name} is before Discord existed (2015)")
    return utc


def _check_range(after: datetime | None, before: datetime | None) -> None:
    """A time range's rules: ``before`` needs ``after`` and comes later."""
    if before is not None and after is None:
        raise ValueError("before needs after (a time range)")
    if after is not None and before is not None and before <= after:
        raise ValueError("before must be later than after")


class JobWindow(InputModel):
    """Which messages to read: the last ``hours``, a time range, everything after a message,
    or the last ``messages`` messages.  ``messages`` may also cap any other form."""

    model_config = examples(
        {"hours": 24},
        {"after": "2026-03-01T08:00:00Z", "before": "2026-03-01T18:00:00Z"},
        {"after_message_id": "1234567890123456789"},
        {"messages": 500},
        extra="forbid",
    )

    hours: int | None = Field(default=None, ge=1, le=168, description="The last N hours (1-168)")
    after: AwareDatetime | None = Field(default=None, description="Start of a time range")
    before: AwareDatetime | None = Field(default=None, description="End of a time range")
    after_message_id: Snowflake | None = Field(
        default=None, description="Every message after this one ('summarize from here')"
    )
    messages: int | None = Field(
        default=None, ge=1, le=100_000, description="At most the last N messages"
    )

    @model_validator(mode="after")
    def _one_form(self) -> JobWindow:
        self.after = _check_time(self.after, "after")
        self.before = _check_time(self.before, "before")
        starts = [
            name
            for name in ("hours", "after", "after_message_id")
            if getattr(self, name) is not None
        ]
        if len(starts) > 1:
            raise ValueError(f"give only one of hours, after, after_message_id (got {starts})")
        if not starts and self.messages is None:
            raise ValueError("give hours, after, after_message_id or messages")
        _check_range(self.after, self.before)
        return self

    def resolve(self, now: datetime) -> dict[str, Any]:
        """The ``DiscordChannelSource`` window fields for a request received at ``now``."""
        window: dict[str, Any] = {
            "after": self.after,
            "before": self.before,
            "after_message_id": self.after_message_id,
            "limit": self.messages,
        }
        if self.hours is not None:
            window["after"] = now - timedelta(hours=self.hours)
        return window


class WebhookDestination(InputModel):
    """Deliver to one of this guild's webhook endpoints (``/v1/webhook-endpoints``)."""

    kind: Literal["webhook"] = "webhook"
    endpoint_id: uuid.UUID


class ChannelDestination(InputModel):
    """Post into a Discord channel or thread of this guild."""

    kind: Literal["channel"] = "channel"
    channel_id: Snowflake


DestinationIn = Annotated[WebhookDestination | ChannelDestination, Field(discriminator="kind")]


class DirectMessageDestination(InputModel):
    """Send the summary privately to a member of this guild (a catch-up's reader)."""

    kind: Literal["dm"] = "dm"
    user_id: Snowflake


#: Where a catch-up goes: the member's DMs, or one of this guild's webhook endpoints.
CatchupDestinationIn = Annotated[
    DirectMessageDestination | WebhookDestination, Field(discriminator="kind")
]


class DigestWindow(InputModel):
    """Which time a digest covers: the last ``hours``, or a time range.  A digest reads time,
    not a number of messages: ``messages`` and ``after_message_id`` are refused."""

    model_config = examples(
        {"hours": 24},
        {"after": "2026-03-01T08:00:00Z", "before": "2026-03-01T18:00:00Z"},
        extra="forbid",
    )

    hours: int | None = Field(default=None, ge=1, le=168, description="The last N hours (1-168)")
    after: AwareDatetime | None = Field(default=None, description="Start of a time range")
    before: AwareDatetime | None = Field(
        default=None, description="End of a time range (default: now)"
    )

    @model_validator(mode="before")
    @classmethod
    def _no_message_windows(cls, data: Any) -> Any:
        if isinstance(data, dict):
            given = [k for k in ("messages", "after_message_id") if k in data]
            if given:
                raise ValueError(
                    f"a digest covers a time window: give hours, or after (and before), "
                    f"not {' or '.join(given)}"
                )
        return data

    @model_validator(mode="after")
    def _one_form(self) -> DigestWindow:
        self.after = _check_time(self.after, "after")
        self.before = _check_time(self.before, "before")
        if self.hours is not None and self.after is not None:
            raise ValueError("give hours or after, not both")
        if self.hours is None and self.after is None:
            raise ValueError("give hours, or after (and before)")
        _check_range(self.after, self.before)
        return self

    def resolve(self, now: datetime) -> tuple[datetime, datetime | None]:
        """``(after, before)`` for a request received at ``now``."""
        if self.hours is not None:
            return now - timedelta(hours=self.hours), None
        assert self.after is not None
        return self.after, self.before


class DigestCreate(InputModel):
    """A summary of several channels of the key's guild in one: a list of channels (with their
    active threads and forum posts), a category, or the whole server (neither given).

    Only channels that every member of the ``audience`` can read are summarized; the audience
    defaults to the readers of the Discord destinations (a channel's viewers, a DM's member).
    A digest sent only to webhooks must name its audience.  The job's ``left_out`` then tells
    you which channels were left out and why.
    """

    model_config = examples(
        {
            "category_id": "1234567890123456789",
            "window": {"hours": 24},
            "format": "structured",
            "language": "en",
            "destinations": [{"kind": "channel", "channel_id": "1234567890123456790"}],
        },
        {
            "channel_ids": ["1234567890123456791", "1234567890123456792"],
            "window": {"after": "2026-03-01T00:00:00Z", "before": "2026-03-08T00:00:00Z"},
            "destinations": [
                {"kind": "webhook", "endpoint_id": "5f0c8e1e-8a7e-4d0b-9a51-0f6a1c2b3d4e"}
            ],
            "audience": [{"kind": "channel", "channel_id": "1234567890123456793"}],
        },
        extra="forbid",
    )

    category_id: Snowflake | None = Field(
        default=None, description="Summarize this category's channels (not with channel_ids)"
    )
    channel_ids: list[Snowflake] = Field(
        default_factory=list,
        max_length=50,
        description="Summarize these channels or threads (not with category_id)",
    )
    window: DigestWindow = Field(default_factory=lambda: DigestWindow(hours=24))
    format: SummaryFormat = SummaryFormat.STRUCTURED
    language: Language | None = None
    destinations: list[DestinationIn] = Field(
        default_factory=list,
        max_length=20,
        description="Where to deliver the digest besides GET /v1/summaries/{id}",
    )
    audience: list[Audience] | None = Field(
        default=None,
        min_length=1,
        max_length=10,
        description=(
            "Who reads the digest (default: the destinations' readers); it must include "
            "every destination channel"
        ),
    )


class CatchupCreate(InputModel):
    """What happened in the key's guild since a member last wrote, for that member alone.

    The catch-up covers the channels the member can read, from their latest message in the
    last 7 days (or from ``since``), and puts first what involves them.  It goes to the
    member's DMs unless ``destinations`` say otherwise.
    """

    model_config = examples(
        {"user_id": "1234567890123456789", "format": "brief", "language": "en"},
        {
            "user_id": "1234567890123456789",
            "since": "2026-03-01T08:00:00Z",
            "destinations": [
                {"kind": "webhook", "endpoint_id": "5f0c8e1e-8a7e-4d0b-9a51-0f6a1c2b3d4e"}
            ],
        },
        extra="forbid",
    )

    user_id: Snowflake = Field(description="The member to catch up")
    since: AwareDatetime | None = Field(
        default=None,
        description="Start here (at most 7 days ago) instead of at the member's latest message",
    )
    format: SummaryFormat = SummaryFormat.BRIEF
    language: Language | None = None
    destinations: list[CatchupDestinationIn] | None = Field(
        default=None,
        min_length=1,
        max_length=20,
        description="Where to deliver the catch-up (default: a DM to the member)",
    )


class JobCreate(InputModel):
    """A request to summarize a window of one channel or thread of the key's guild."""

    model_config = examples(
        {
            "channel_id": "1234567890123456789",
            "window": {"hours": 24},
            "format": "structured",
            "language": "en",
            "destinations": [
                {"kind": "webhook", "endpoint_id": "5f0c8e1e-8a7e-4d0b-9a51-0f6a1c2b3d4e"}
            ],
        },
        extra="forbid",
    )

    guild_id: Snowflake | None = Field(
        default=None, description="Optional; when given it must be the key's guild"
    )
    channel_id: Snowflake = Field(description="The channel or thread to summarize")
    window: JobWindow = Field(default_factory=lambda: JobWindow(hours=24))
    format: SummaryFormat = SummaryFormat.STRUCTURED
    language: Language | None = None
    max_messages: int | None = Field(default=None, ge=1, le=1_000_000)
    destinations: list[DestinationIn] = Field(
        default_factory=list,
        max_length=20,
        description="Where to deliver the summary besides GET /v1/summaries/{id}",
    )


class DeliveryOut(BaseModel):
    """One destination of a job's summary and how sending to it goes."""

    target: str = Field(description="The destination, e.g. webhook:<endpoint id>, channel:<id>")
    kind: str
    status: Literal["pending", "sending", "sent", "failed"]
    attempts: int
    last_error: str | None
    fallback_of: str | None = Field(description="The target this one stands in for")
    sent_at: datetime | None


class LeftOutChannel(BaseModel):
    """A channel a digest or catch-up did not summarize, and why."""

    channel_id: str
    name: str
    reason: str = Field(description="Why it was left out, e.g. who in the audience cannot read it")


class JobOut(BaseModel):
    """A job's state.

    ``completed`` means the summary is stored (read it with ``summary_id``); each destination
    then has its own status in ``deliveries``.  When they have all ended, the job says how they
    went: ``completed`` (each reached), ``completed_with_errors`` (some did not) or ``failed``
    (none did).
    """

    model_config = examples(
        {
            "id": "0b6a7a8e-2f7c-4a55-9d3e-1d4f2f0c8a11",
            "status": "summarizing",
            "stage": "summarize",
            "progress": {"fetched": 1200},
            "error": None,
            "guild_id": "1234567890123456789",
            "channel_id": "1234567890123456790",
            "format": "structured",
            "message_count": 1200,
            "summary_id": None,
            "created_at": "2026-03-01T18:00:00Z",
            "updated_at": "2026-03-01T18:00:04Z",
            "finished_at": None,
        },
        {
            "id": "0b6a7a8e-2f7c-4a55-9d3e-1d4f2f0c8a12",
            "status": "completed",
            "stage": None,
            "progress": {"summary_id": "7c1e4a0b-3f52-4d7e-8b6a-2d9c0e1f3a45"},
            "error": None,
            "guild_id": "1234567890123456789",
            "channel_id": None,
            "format": "structured",
            "message_count": 0,
            "summary_id": "7c1e4a0b-3f52-4d7e-8b6a-2d9c0e1f3a45",
            "created_at": "2026-03-01T18:00:00Z",
            "updated_at": "2026-03-01T18:01:10Z",
            "finished_at": "2026-03-01T18:01:10Z",
            "channels": 12,
            "left_out": [
                {
                    "channel_id": "1234567890123456795",
                    "name": "moderators",
                    "reason": "not everyone in the audience can read it",
                }
            ],
        },
    )

    id: uuid.UUID
    status: Literal[
        "queued",
        "fetching",
        "summarizing",
        "delivering",
        "completed",
        "completed_with_errors",
        "failed",
        "cancelled",
    ]
    stage: Literal["fetch", "summarize", "deliver"] | None = Field(
        description="The stage working on the job now (null when queued or finished)"
    )
    progress: dict[str, Any]
    error: str | None = Field(description="Why the job failed or was cancelled")
    guild_id: str | None
    channel_id: str | None
    format: str | None
    message_count: int | None
    summary_id: uuid.UUID | None
    created_at: datetime
    updated_at: datetime
    finished_at: datetime | None
    deliveries: list[DeliveryOut] = Field(
        default_factory=list, description="The summary's destinations (empty until it is stored)"
    )
    channels: int | None = Field(
        default=None,
        description=(
            "Digests and catch-ups: how many channels the summary covers (the summarized and "
            "the quiet ones), once they are chosen; null for other jobs"
        ),
    )
    left_out: list[LeftOutChannel] = Field(
        default_factory=list,
        description=(
            "Digests and catch-ups: the channels left out and why (not readable by everyone "
            "in the audience, or a part that failed).  This is the view of whoever set the "
            "job up; the summary itself never names them"
        ),
    )


class Page(BaseModel):
    """Pagination of a list: pass ``next_cursor`` as ``cursor`` to get the next page."""

    next_cursor: str | None = None


class UserDataErased(BaseModel):
    """What ``DELETE /v1/users/{user_id}/data`` changed in the key's guild."""

    model_config = examples(
        {
            "user_id": "1234567890123456789",
            "guild_id": "1234567890123456780",
            "summaries_updated": 3,
            "jobs_updated": 1,
            "schedules_updated": 0,
            "api_keys_updated": 0,
            "opt_out_kept": True,
        },
    )

    user_id: str
    guild_id: str
    summaries_updated: int = Field(
        description="Summaries whose participants, citations and cited items lost this member"
    )
    jobs_updated: int = Field(description="Jobs whose requested_by was this member (now null)")
    schedules_updated: int = Field(description="Schedules this member created (creator erased)")
    api_keys_updated: int = Field(description="API keys this member created (creator erased)")
    opt_out_kept: bool = Field(description="True when the member has an opt-out, left in place")
