"""``/v1/schedules``: recurring digests of a channel, in words ("daily 09:00 Europe/Berlin",
"weekly mon 08:00") or cron, evaluated in their own time zone."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Query
from pydantic import BaseModel, ConfigDict, Field
from starlette.responses import Response

from producers.api.examples import examples
from producers.api.idempotent import Idempotency, run_idempotent
from producers.api.models import (
    DestinationIn,
    Language,
    Page,
    SafeText,
    Snowflake,
)
from producers.api.routes.common import (
    AUTH_ERRORS,
    Admin,
    PageCursor,
    PageSize,
    Resources,
    errors,
    guild_page,
    guild_page_query,
    guild_row,
    json_response,
)
from schema.models.schedules import EmptyPolicy, Schedule
from shared.digests.spec import parse_schedule
from shared.errors import InvalidInputError
from shared.services import schedules as schedule_service
from shared.services.schedules import ScheduleRequest
from shared.summarize.content import SummaryFormat

__all__ = ["ScheduleCreate", "ScheduleList", "ScheduleOut", "ScheduleUpdate", "router"]

router = APIRouter(tags=["schedules"])

ScheduleText = Annotated[
    SafeText,
    Field(
        min_length=1,
        max_length=200,
        description="When it runs, in words or cron, optionally ending with an IANA time zone",
        examples=["daily 09:00 Europe/Berlin", "weekly mon 08:00", "cron 0 9 * * 1-5"],
    ),
]
TimeZone = Annotated[
    str,
    Field(
        min_length=1,
        max_length=64,
        pattern=r"^[A-Za-z0-9_+/-]+$",
        description="Time zone when the schedule text names none (IANA name)",
        examples=["Europe/Berlin", "UTC"],
    ),
]


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ScheduleCreate(_In):
    """A digest of one channel or thread of the key's guild."""

    model_config = examples(
        {
            "channel_id": "1234567890123456789",
            "schedule": "daily 09:00 Europe/Berlin",
            "format": "brief",
            "destination": {"kind": "channel", "channel_id": "1234567890123456790"},
        },
        extra="forbid",
    )

    channel_id: Snowflake
    schedule: ScheduleText
    timezone: TimeZone = "UTC"
    format: SummaryFormat = SummaryFormat.BRIEF
    language: Language | None = None
    destination: DestinationIn
    empty_policy: Literal["skip", "notice"] = Field(
        default="skip", description="An empty window: send nothing, or a short notice"
    )
    enabled: bool = True


class ScheduleUpdate(_In):
    """Fields to change; a field left out keeps its value."""

    model_config = examples({"enabled": False}, extra="forbid")

    schedule: ScheduleText | None = None
    timezone: TimeZone | None = None
    format: SummaryFormat | None = None
    language: Language | None = None
    destination: DestinationIn | None = None
    empty_policy: Literal["skip", "notice"] | None = None
    enabled: bool | None = None


class ScheduleOut(BaseModel):
    """A schedule and when it runs next."""

    id: uuid.UUID
    channel_id: str
    schedule: str = Field(description="The schedule as it was written")
    description: str = Field(description="When it runs, in plain words")
    cron: str
    timezone: str
    format: str
    language: str | None
    destination: dict[str, Any]
    empty_policy: str
    enabled: bool
    next_run_at: datetime | None
    last_run_at: datetime | None
    created_at: datetime
    updated_at: datetime


class ScheduleList(Page):
    """One page of schedules, oldest first."""

    items: list[ScheduleOut]


def _out(row: Schedule) -> ScheduleOut:
    try:
        description = parse_schedule(row.spec, default_timezone=row.timezone).description
    except InvalidInputError:
        description = f"cron {row.cron!r} ({row.timezone})"
    return ScheduleOut(
        id=row.id,
        channel_id=row.channel_id,
        schedule=row.spec,
        description=description,
        cron=row.cron,
        timezone=row.timezone,
        format=row.format,
        language=row.language,
        destination=row.destination,
        empty_policy=row.empty_policy,
        enabled=row.enabled,
        next_run_at=row.next_run_at,
        last_run_at=row.last_run_at,
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


ScheduleId = Annotated[uuid.UUID, Path(description="The schedule's id")]


@router.post(
    "/v1/schedules",
    status_code=201,
    response_model=ScheduleOut,
    summary="Create a digest schedule",
    description="Needs `admin`.  Send an `Idempotency-Key` to retry safely.",
    responses=errors(404, 409, *AUTH_ERRORS),
)
def create_schedule(
    payload: ScheduleCreate,
    caller: Admin,
    idem: Idempotency,
    resources: Resources,
) -> Response:
    """Create a schedule; ``next_run_at`` is its first firing after now."""

    def work() -> Response:
        row = schedule_service.create_schedule(
            resources.core,
            caller.actor,
            ScheduleRequest(
                channel_id=payload.channel_id,
                text=payload.schedule,
                timezone=payload.timezone,
                format=payload.format,
                language=payload.language,
                destination=payload.destination.model_dump(mode="json"),
                empty_policy=EmptyPolicy(payload.empty_policy),
                enabled=payload.enabled,
            ),
        )
        return json_response(_out(row), status=201, headers={"Location": f"/v1/schedules/{row.id}"})

    return run_idempotent(resources, caller, idem, work)


@router.get(
    "/v1/schedules",
    response_model=ScheduleList,
    summary="List this guild's schedules",
    description="Needs `admin`.",
    responses=errors(*AUTH_ERRORS),
)
def list_schedules(
    caller: Admin,
    resources: Resources,
    limit: PageSize = 50,
    cursor: PageCursor = None,
    channel_id: Annotated[Snowflake | None, Query(description="Only this channel's")] = None,
) -> Response:
    """A page of schedules, oldest first."""
    query = guild_page_query(Schedule, caller.guild_id, limit=limit, cursor=cursor)
    if channel_id is not None:
        query = query.where(Schedule.channel_id == channel_id)
    rows, following = guild_page(resources, query, limit)
    return json_response(ScheduleList(items=[_out(r) for r in rows], next_cursor=following))


@router.get(
    "/v1/schedules/{schedule_id}",
    response_model=ScheduleOut,
    summary="Read a schedule",
    description="Needs `admin`.",
    responses=errors(404, *AUTH_ERRORS),
)
def get_schedule(schedule_id: ScheduleId, caller: Admin, resources: Resources) -> Response:
    """One schedule of this guild."""
    return json_response(_out(guild_row(resources, Schedule, caller, schedule_id, what="schedule")))


@router.patch(
    "/v1/schedules/{schedule_id}",
    response_model=ScheduleOut,
    summary="Change, pause or resume a schedule",
    description=(
        "Needs `admin`.  A new schedule text or time zone, or resuming (`enabled: true`), "
        "recomputes `next_run_at` from now; pausing clears it."
    ),
    responses=errors(404, *AUTH_ERRORS),
)
def update_schedule(
    schedule_id: ScheduleId,
    payload: ScheduleUpdate,
    caller: Admin,
    resources: Resources,
) -> Response:
    """Apply the fields that were sent."""
    changes = payload.model_dump(mode="json", include=payload.model_fields_set)
    if "schedule" in changes:
        changes["text"] = changes.pop("schedule")
    row = schedule_service.update_schedule(resources.core, caller.actor, schedule_id, changes)
    return json_response(_out(row))


@router.delete(
    "/v1/schedules/{schedule_id}",
    status_code=204,
    summary="Delete a schedule",
    description="Needs `admin`.  Digests already sent are not affected.",
    responses=errors(404, *AUTH_ERRORS),
)
def delete_schedule(schedule_id: ScheduleId, caller: Admin, resources: Resources) -> Response:
    """Remove the schedule and its run records."""
    schedule_service.delete_schedule(resources.core, caller.actor, schedule_id)
    return Response(status_code=204)
