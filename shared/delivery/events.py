"""The events webhooks carry, their versioned JSON Schemas, and payload encoding with a cap.

Every event is one JSON object ``{"type", "version", "timestamp", "data"}`` (the Standard
Webhooks envelope plus a schema version).  ``timestamp`` is when the event happened (the
``webhook-timestamp`` header is when the attempt was made).  Schemas live in ``schema/json/`` as
``webhook-event-<type>.v<version>.json``; a test keeps them equal to the models here.

A payload is encoded once, compactly, and those exact bytes are signed and sent.  When it would
exceed the configured cap, the bulky parts (``markdown``, then ``summary``) are left out and
``truncated`` is set: the receiver then fetches the summary by id.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from shared.errors import PermanentError
from shared.summarize.content import SummaryContent, SummaryFormat
from shared.summarize.render import render_markdown

__all__ = [
    "EVENT_MODELS",
    "EVENT_TYPES",
    "JOB_FAILED",
    "SCHEMA_BASE",
    "SUMMARY_COMPLETED",
    "JobFailedData",
    "JobFailedEvent",
    "PayloadTooLarge",
    "SummaryCompletedData",
    "SummaryCompletedEvent",
    "encode_event",
    "event_json_schema",
    "event_schema_filename",
    "job_failed_event",
    "summary_completed_event",
]

SUMMARY_COMPLETED = "summary.completed"
JOB_FAILED = "job.failed"
EVENT_TYPES = (SUMMARY_COMPLETED, JOB_FAILED)
SCHEMA_BASE = "https://summarybot.dev/schemas/"


class PayloadTooLarge(PermanentError):
    """Even the thin form of an event does not fit the payload cap."""


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SummaryCompletedData(_Model):
    """A summary was stored.  ``summary`` and ``markdown`` are absent when ``truncated``."""

    job_id: str = Field(description="the job that produced the summary (UUID)")
    summary_id: str = Field(description="the stored summary (UUID)")
    guild_id: str | None = Field(description="Discord guild id, if any")
    channel_id: str | None = Field(description="Discord channel or thread id, if any")
    channel_name: str = Field(description="name of the summarized channel")
    format: SummaryFormat
    language: str | None = None
    created_at: datetime = Field(description="when the summary was stored (UTC)")
    window_start: datetime | None = Field(description="time of the first message summarized")
    window_end: datetime | None = Field(description="time of the last message summarized")
    message_count: int = Field(ge=0, description="messages read")
    degraded: bool = Field(description="true when the offline fallback wrote it")
    backend: str
    model: str | None = None
    prompt_version: str
    truncated: bool = Field(
        default=False,
        description="true when summary/markdown were left out to fit the payload size cap",
    )
    markdown: str | None = Field(
        default=None, description="the summary rendered as Markdown with citation links"
    )
    summary: SummaryContent | None = Field(
        default=None, description="the structured summary (sections, citations, coverage)"
    )


class SummaryCompletedEvent(_Model):
    """``summary.completed``: a summary is ready."""

    type: Literal["summary.completed"] = "summary.completed"
    version: Literal[1] = 1
    timestamp: datetime = Field(description="when the event happened (UTC, ISO 8601)")
    data: SummaryCompletedData


class JobFailedData(_Model):
    """A job ended without a summary (or without reaching any destination)."""

    job_id: str = Field(description="the failed job (UUID)")
    origin: str = Field(description="who asked: cli, bot, api, digest")
    guild_id: str | None
    channel_id: str | None
    error: str = Field(description="why it failed, written for a person")
    created_at: datetime
    failed_at: datetime


class JobFailedEvent(_Model):
    """``job.failed``: a job failed."""

    type: Literal["job.failed"] = "job.failed"
    version: Literal[1] = 1
    timestamp: datetime = Field(description="when the event happened (UTC, ISO 8601)")
    data: JobFailedData


EVENT_MODELS: dict[str, type[SummaryCompletedEvent] | type[JobFailedEvent]] = {
    SUMMARY_COMPLETED: SummaryCompletedEvent,
    JOB_FAILED: JobFailedEvent,
}

_DOCS = (
    "Sent as an HTTP POST with Content-Type application/json and the Standard Webhooks headers "
    "webhook-id (stable across retries: deduplicate on it), webhook-timestamp (Unix seconds of "
    "the attempt) and webhook-signature ('v1,' + base64 HMAC-SHA256 of "
    "'{webhook-id}.{webhook-timestamp}.{raw body}' keyed with the base64-decoded whsec_ "
    "secret; several space-separated entries while secrets rotate, accept if any matches, and "
    "reject timestamps more than 5 minutes away).  Answer 2xx within 15 s; any other status, a "
    "redirect included, is retried after 5 s, 5 min, 30 min, 2 h, 5 h, 10 h and 10 h (with "
    "jitter; Retry-After is honoured); 410 Gone disables the endpoint.  Delivery order is not "
    "guaranteed: use 'timestamp' to discard stale events."
)


def event_schema_filename(event_type: str, version: int = 1) -> str:
    """File name of an event's schema under ``schema/json/``."""
    return f"webhook-event-{event_type}.v{version}.json"


def event_json_schema(event_type: str) -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of ``event_type``, with its delivery contract."""
    model = EVENT_MODELS[event_type]
    schema = model.model_json_schema(mode="serialization")
    schema["description"] = f"{schema.get('description', '')} {_DOCS}".strip()
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": SCHEMA_BASE + event_schema_filename(event_type),
        **schema,
    }


def summary_completed_event(
    *,
    content: SummaryContent,
    job_id: str,
    summary_id: str,
    guild_id: str | None,
    created_at: datetime,
    language: str | None,
    model: str | None,
    prompt_version: str,
    duration_seconds: float | None = None,
) -> SummaryCompletedEvent:
    """The full ``summary.completed`` event of a stored summary; ``guild_id`` is the guild the
    summary belongs to (the job's), not whatever an uploaded conversation claimed."""
    coverage = content.coverage
    data = SummaryCompletedData(
        job_id=job_id,
        summary_id=summary_id,
        guild_id=guild_id,
        channel_id=coverage.channel_id,
        channel_name=coverage.channel_name,
        format=content.format,
        language=language,
        created_at=created_at,
        window_start=coverage.start,
        window_end=coverage.end,
        message_count=coverage.messages_total,
        degraded=content.degraded,
        backend=content.backend,
        model=model,
        prompt_version=prompt_version,
        markdown=render_markdown(content, duration_seconds=duration_seconds),
        summary=content,
    )
    return SummaryCompletedEvent(timestamp=created_at, data=data)


def job_failed_event(data: JobFailedData) -> JobFailedEvent:
    """The ``job.failed`` event of a failed job, stamped with the time it failed."""
    return JobFailedEvent(timestamp=data.failed_at, data=data)


def _dump(event: BaseModel) -> bytes:
    data = event.model_dump(mode="json")
    return json.dumps(data, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def encode_event(event: SummaryCompletedEvent | JobFailedEvent, *, max_bytes: int) -> bytes:
    """The exact bytes to sign and send, thinned to fit ``max_bytes`` if needed."""
    body = _dump(event)
    if len(body) <= max_bytes:
        return body
    if isinstance(event, SummaryCompletedEvent):
        for drop in ({"markdown": None}, {"markdown": None, "summary": None}):
            thin = event.model_copy(
                update={"data": event.data.model_copy(update={**drop, "truncated": True})}
            )
            body = _dump(thin)
            if len(body) <= max_bytes:
                return body
    raise PayloadTooLarge(
        f"{event.type} payload is {len(body)} bytes, over the {max_bytes} byte cap",
        user_message=f"the {event.type} event does not fit WEBHOOK_MAX_PAYLOAD_BYTES "
        f"({max_bytes}); raise the cap",
    )
