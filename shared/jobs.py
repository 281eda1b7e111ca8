"""The contract between producers and workers: task names, job parameters, and submission.

Producers (CLI, bot, API, digests) call :func:`submit_job`: it validates the parameters, writes
the ``jobs`` row (the source of truth) and then enqueues the first stage by task *name*, so a
producer never imports worker code.  Messages between processes carry ids only.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any, Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from schema.models.jobs import Job, JobStatus
from shared.delivery.targets import (
    ChannelTarget,
    DirectMessageTarget,
    DiscordWebhookTarget,
    InteractionFollowupTarget,
    ThreadTarget,
    WebhookTarget,
)
from shared.domain.messages import timestamp_problem
from shared.errors import InvalidInputError
from shared.summarize.content import SummaryFormat

__all__ = [
    "DELIVER",
    "FETCH",
    "SUMMARIZE",
    "ChannelTarget",
    "Destination",
    "DirectMessageTarget",
    "DiscordChannelSource",
    "DiscordWebhookTarget",
    "Enqueuer",
    "ExportFileSource",
    "FileTarget",
    "InteractionFollowupTarget",
    "JobParams",
    "Submission",
    "TerminalTarget",
    "ThreadTarget",
    "WebhookTarget",
    "parse_params",
    "submit_job",
]

FETCH = "summarybot.fetch"
SUMMARIZE = "summarybot.summarize"
DELIVER = "summarybot.deliver"


class _Params(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ExportFileSource(_Params):
    """A DiscordChatExporter JSON file on a path every worker can read."""

    kind: Literal["export_file"] = "export_file"
    path: str

    @field_validator("path")
    @classmethod
    def _absolute(cls, value: str) -> str:
        if not Path(value).is_absolute():
            raise ValueError("the export path must be absolute so every worker finds it")
        return value


_SNOWFLAKE = r"^[0-9]{15,21}$"


class DiscordChannelSource(_Params):
    """A window of a Discord channel or thread, read through the REST adapter.

    The window is ``after``/``before`` times, or the messages after ``after_message_id``
    ("Summarize from here"), optionally capped to the most recent ``limit`` messages.
    """

    kind: Literal["discord_channel"] = "discord_channel"
    guild_id: str | None = Field(default=None, pattern=_SNOWFLAKE)
    channel_id: str = Field(pattern=_SNOWFLAKE)
    after: datetime | None = None
    before: datetime | None = None
    after_message_id: str | None = Field(default=None, pattern=_SNOWFLAKE)
    limit: int | None = Field(default=None, ge=1, le=1_000_000)

    @field_validator("after", "before")
    @classmethod
    def _in_range(cls, value: datetime | None) -> datetime | None:
        problem = None if value is None else timestamp_problem(value)
        if problem is not None:
            raise ValueError(f"the time {problem}")
        return value

    @model_validator(mode="after")
    def _window(self) -> DiscordChannelSource:
        for name in ("after", "before"):
            value = getattr(self, name)
            if value is not None and value.tzinfo is None:
                raise ValueError(f"{name} needs a time zone (e.g. 2026-01-01T00:00:00Z)")
        if self.after is None and self.after_message_id is None and self.limit is None:
            raise ValueError("give a window: after, after_message_id or limit")
        if self.after is not None and self.before is not None and self.before <= self.after:
            raise ValueError("before must be later than after")
        return self


Source = Annotated[ExportFileSource | DiscordChannelSource, Field(discriminator="kind")]


class TerminalTarget(_Params):
    """Print the summary on the standard output of the process that delivers it."""

    kind: Literal["terminal"] = "terminal"
    render: Literal["text", "markdown", "json"] = "text"

    @property
    def key(self) -> str:
        """Identity of the target, unique per summary."""
        return "terminal"


class FileTarget(_Params):
    """Write the summary to a file (replaced atomically)."""

    kind: Literal["file"] = "file"
    path: str
    render: Literal["text", "markdown", "json"] = "markdown"

    @field_validator("path")
    @classmethod
    def _absolute(cls, value: str) -> str:
        if not Path(value).is_absolute():
            raise ValueError("the output path must be absolute")
        return value

    @property
    def key(self) -> str:
        """Identity of the target, unique per summary."""
        return f"file:{self.path}"


#: Where a summary can go.  Remote kinds are sent by ``shared.delivery`` (their models live in
#: ``shared.delivery.targets``); the deliver stage dispatches on ``kind``.
Destination = Annotated[
    TerminalTarget
    | FileTarget
    | WebhookTarget
    | ChannelTarget
    | ThreadTarget
    | DirectMessageTarget
    | DiscordWebhookTarget
    | InteractionFollowupTarget,
    Field(discriminator="kind"),
]


class JobParams(_Params):
    """What a job summarizes, how, and where the result goes."""

    source: Source
    format: SummaryFormat = SummaryFormat.STRUCTURED
    language: str | None = Field(default=None, max_length=16)
    max_messages: int | None = Field(default=None, ge=1, le=1_000_000)
    destinations: list[Destination] = Field(default_factory=list, max_length=20)

    @field_validator("destinations")
    @classmethod
    def _unique_targets(cls, value: list[Any]) -> list[Any]:
        keys = [d.key for d in value]
        if len(keys) != len(set(keys)):
            raise ValueError("the same destination is listed twice")
        return value


def parse_params(data: dict[str, Any]) -> JobParams:
    """Validate stored or submitted parameters, turning errors into one readable line."""
    try:
        return JobParams.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'params'}: {e['msg']}" for e in exc.errors()
        )
        raise InvalidInputError(f"invalid job parameters: {problems}") from None


class Enqueuer(Protocol):
    """Sends a task by name; the Celery implementation lives in ``workers.enqueue``."""

    def enqueue(self, task_name: str, *args: str) -> None:
        """Publish ``task_name(*args)`` on its queue."""


@dataclass(frozen=True)
class Submission:
    """Result of :func:`submit_job`: the job id and whether this call created it."""

    job_id: uuid.UUID
    created: bool


def submit_job(
    session_factory: sessionmaker[Session],
    enqueuer: Enqueuer,
    *,
    params: JobParams,
    origin: str,
    guild_id: str | None = None,
    channel_id: str | None = None,
    requested_by: str | None = None,
    idempotency_key: str | None = None,
) -> Submission:
    """Record a job and enqueue its first stage.

    With an ``idempotency_key`` a second submission returns the first job instead of creating
    another.  The row is committed before the task is published, so a worker always finds it;
    a publish lost after the commit is recovered by the stale-job sweep.
    """
    job = Job(
        id=uuid.uuid4(),
        origin=origin,
        status=JobStatus.QUEUED.value,
        guild_id=guild_id,
        channel_id=channel_id,
        requested_by=requested_by,
        params=params.model_dump(mode="json"),
        progress={},
        idempotency_key=idempotency_key,
    )
    with session_factory() as session:
        session.add(job)
        try:
            session.commit()
        except IntegrityError:
            session.rollback()
            if idempotency_key is None:
                raise
            existing = session.scalars(
                select(Job.id).where(Job.idempotency_key == idempotency_key)
            ).one()
            return Submission(existing, created=False)
    enqueuer.enqueue(FETCH, str(job.id))
    return Submission(job.id, created=True)
