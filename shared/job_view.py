"""One read-only view of a ``jobs`` row for everyone who shows or sends a job.

The API's job resource, the bot's status replies and the delivery outbox (which sends a failed
job's notice, or a summary with its job's timing) all read a job through :class:`JobView`,
built once from the row by :meth:`JobView.of`: what a job's state means (its stage, its summary,
the channels a multi-channel job covered and left out) is decided here, not by each reader.
The view holds copies of the row's JSON columns, so it is safe to use after its session ends.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from schema.models.jobs import Job, JobStatus

__all__ = ["JobView", "LeftOutChannel", "Stage", "left_out_of"]

#: The stage that works on a job, by its status (none while queued or once finished).
Stage = Literal["fetch", "summarize", "deliver"]
_STAGES: dict[JobStatus, Stage] = {
    JobStatus.FETCHING: "fetch",
    JobStatus.SUMMARIZING: "summarize",
    JobStatus.DELIVERING: "deliver",
}


@dataclass(frozen=True)
class LeftOutChannel:
    """A channel a multi-channel summary left out, and why (for whoever set it up)."""

    channel_id: str
    name: str
    reason: str


def left_out_of(progress: Any) -> list[LeftOutChannel]:
    """The channels a multi-channel job left out, from its ``progress.plan`` (none for other
    jobs, or before the plan is made)."""
    plan = progress.get("plan") if isinstance(progress, Mapping) else None
    items = plan.get("left_out") if isinstance(plan, Mapping) else None
    return [
        LeftOutChannel(
            channel_id=str(item.get("channel_id")),
            name=str(item.get("name") or item.get("channel_id")),
            reason=str(item.get("reason") or "left out"),
        )
        for item in items or []
        if isinstance(item, Mapping)
    ]


#: The columns of the view a job's insert leaves null.
_UNSET_AT_INSERT: dict[str, Any] = {"message_count": None, "error": None, "finished_at": None}


class JobView(BaseModel):
    """A job's state: the columns of its row, and what they mean (see the properties).

    :meth:`of` reads it from a ``jobs`` row; validation copies the JSON columns.
    """

    model_config = ConfigDict(frozen=True, from_attributes=True)

    id: uuid.UUID
    origin: str
    status: JobStatus
    guild_id: str | None
    channel_id: str | None
    requested_by: str | None
    params: dict[str, Any]
    progress: dict[str, Any]
    message_count: int | None
    error: str | None
    created_at: datetime
    updated_at: datetime
    finished_at: datetime | None

    @classmethod
    def of(cls, row: Job) -> JobView:
        """Read a ``jobs`` row."""
        return cls.model_validate(row)

    @classmethod
    def of_new_row(cls, values: Mapping[str, Any]) -> JobView:
        """The view of a ``jobs`` row just inserted with ``values`` (column -> value): the
        columns a new job has no value for yet are null."""
        return cls.model_validate({**_UNSET_AT_INSERT, **values})

    @property
    def stage(self) -> Stage | None:
        """The stage working on the job now (None when queued or finished)."""
        return _STAGES.get(self.status)

    @property
    def summary_id(self) -> uuid.UUID | None:
        """The stored summary, once the job has one."""
        value = self.progress.get("summary_id")
        try:
            return uuid.UUID(str(value)) if value else None
        except ValueError:
            return None

    @property
    def format(self) -> str | None:
        """The summary format the job asked for."""
        value = self.params.get("format")
        return str(value) if value is not None else None

    @property
    def channels(self) -> int | None:
        """A multi-channel job's channel count (the summarized and the quiet ones), once its
        plan is made; None for other jobs."""
        plan = self.progress.get("plan")
        if not isinstance(plan, Mapping):
            return None
        counted = [plan.get("parts"), plan.get("quiet")]
        return sum(len(entries) for entries in counted if isinstance(entries, list))

    @property
    def part_ids(self) -> list[uuid.UUID]:
        """The jobs of a multi-channel job's parts, once its plan is made."""
        plan = self.progress.get("plan")
        parts = plan.get("parts") if isinstance(plan, Mapping) else None
        return [
            uuid.UUID(str(part["job_id"]))
            for part in parts or []
            if isinstance(part, Mapping) and "job_id" in part
        ]

    @property
    def left_out(self) -> list[LeftOutChannel]:
        """The channels a multi-channel job left out, with why (see :func:`left_out_of`)."""
        return left_out_of(self.progress)
