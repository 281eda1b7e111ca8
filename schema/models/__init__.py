"""Every model of the system of record; importing this package registers all tables.

``Base.metadata`` is complete once ``schema.models`` is imported, which is what Alembic's
``env.py`` and ``create_all`` in tests rely on.
"""

from __future__ import annotations

from schema.models.chunks import (
    ChunkStatus,
    ReduceMode,
    SummaryChunk,
    SummaryPlan,
    SummaryReduction,
)
from schema.models.delivery_log import (
    AttemptOutcome,
    DeliveryAttempt,
    DeliverySchedule,
    JobNotification,
)
from schema.models.feedback import SummaryFeedback
from schema.models.jobs import DeadLetter, Delivery, DeliveryStatus, Job, JobStatus, Summary
from schema.models.schedules import EmptyPolicy, Schedule, ScheduleRun
from schema.models.tenancy import (
    ALL_GUILDS,
    ApiKey,
    GuildSettings,
    PrivateChannelPolicy,
    SummaryFormatName,
    UserOptOut,
    WebhookAuthKind,
    WebhookEndpoint,
)
from schema.models.uploads import Upload, UploadChunk
from schema.models.usage import UsageKind, UsageLedger

__all__ = [
    "ALL_GUILDS",
    "ApiKey",
    "AttemptOutcome",
    "ChunkStatus",
    "DeadLetter",
    "Delivery",
    "DeliveryAttempt",
    "DeliverySchedule",
    "DeliveryStatus",
    "EmptyPolicy",
    "GuildSettings",
    "Job",
    "JobNotification",
    "JobStatus",
    "PrivateChannelPolicy",
    "ReduceMode",
    "Schedule",
    "ScheduleRun",
    "Summary",
    "SummaryChunk",
    "SummaryFeedback",
    "SummaryFormatName",
    "SummaryPlan",
    "SummaryReduction",
    "Upload",
    "UploadChunk",
    "UsageKind",
    "UsageLedger",
    "UserOptOut",
    "WebhookAuthKind",
    "WebhookEndpoint",
]
