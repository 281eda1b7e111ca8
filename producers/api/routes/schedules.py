"""``/v1/schedules``: recurring digests of a channel, or of several (the server, a category,
listed channels), in words ("daily 09:00 Europe/Berlin", "weekly mon 08:00") or cron, evaluated
in their own time zone.

:mod:`shared.services.schedules` holds every rule; this module maps requests onto it and shows
a schedule with its latest run, whose ``left_out`` is for the admins managing the schedule.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Query
from pydantic import BaseModel, Field
from starlette.responses import Response

from producers.api.examples import examples
from producers.api.idempotent import Idempotency, run_idempotent
from producers.api.models import (
    DestinationIn,
    InputModel,
    Language,
    LeftOutChannel,
    Page,
    SafeText,
    Snowflake,
)
from producers.api.onehop import JsonRoute
from producers.api.resources import ApiResources
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
from schema.models.schedules import EmptyPolicy, Schedule, ScheduleScope
from shared.jobs import MAX_LISTED_CHANNELS
from shared.services import schedules as schedule_service
from shared.services.schedules import ScheduleRequest, ScheduleView
from shared.summarize.content import SummaryFormat

__all__ = [
    "LastRunOut",
    "ScheduleCreate",
    "ScheduleList",
    "ScheduleOut",
    "ScheduleUpdate",
    "router",
]

router = APIRouter(tags=["schedules"], route_class=JsonRoute)

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

ScopeName = Annotated[
    Literal["channel", "server", "category", "channels"],
    Field(
        description=(
            "What the digest covers: `channel` (channel_id), `server` (every channel), "
            "`category` (category_id) or `channels` (channel_ids); each channel with its "
            "active threads and forum posts"
        )
    ),
]
CategoryId = Annotated[
    Snowflake | None, Field(description="The category a `category` digest summarizes")
]
ChannelIds = Annotated[
    list[Snowflake],
    Field(
        max_length=MAX_LISTED_CHANNELS,
        description="The channels or threads a `channels` digest summarizes",
    ),
]


class ScheduleCreate(InputModel):
    """A digest of one channel or thread of the key's guild, or of several of its channels.

    A digest of several channels is posted in the channel or thread of its ``destination``
    (``channel_id`` may be left out: it is that channel) and only contains what every reader
    of that channel may read.
    """

    model_config = examples(
        {
            "channel_id": "1234567890123456789",
            "schedule": "daily 09:00 Europe/Berlin",
            "format": "brief",
            "destination": {"kind": "channel", "channel_id": "1234567890123456790"},
        },
        {
            "scope": "category",
            "category_id": "1234567890123456791",
            "schedule": "weekly mon 08:00 Europe/Berlin",
            "destination": {"kind": "channel", "channel_id": "1234567890123456790"},
        },
        extra="forbid",
    )

    scope: ScopeName = "channel"
    channel_id: Snowflake | None = Field(
        default=None,
        description=(
            "The channel or thread a `channel` digest summarizes; for the other scopes, the "
            "channel the digest is posted in (its destination's)"
        ),
    )
    category_id: CategoryId = None
    channel_ids: ChannelIds = Field(default_factory=list)
    schedule: ScheduleText
    timezone: TimeZone = "UTC"
    format: SummaryFormat = SummaryFormat.BRIEF
    language: Language | None = None
    destination: DestinationIn
    empty_policy: Literal["skip", "notice"] = Field(
        default="skip", description="An empty window: send nothing, or a short notice"
    )
    enabled: bool = True


class ScheduleUpdate(InputModel):
    """Fields to change; a field left out keeps its value."""

    model_config = examples({"enabled": False}, extra="forbid")

    scope: ScopeName | None = None
    category_id: CategoryId = None
    channel_ids: ChannelIds | None = None
    schedule: ScheduleText | None = None
    timezone: TimeZone | None = None
    format: SummaryFormat | None = None
    language: Language | None = None
    destination: DestinationIn | None = None
    empty_policy: Literal["skip", "notice"] | None = None
    enabled: bool | None = None


class LastRunOut(BaseModel):
    """A schedule's latest run, for the admins who manage it."""

    job_id: uuid.UUID | None = Field(description="Its digest job (null before it is submitted)")
    status: str | None = Field(description="The job's status")
    window_start: datetime
    window_end: datetime
    left_out: list[LeftOutChannel] = Field(
        description=(
            "The channels its digest left out and why (empty for a one-channel digest).  The "
            "digest itself never names them"
        )
    )


class ScheduleOut(BaseModel):
    """A schedule, when it runs next, and what its latest run left out."""

    id: uuid.UUID
    scope: str
    channel_id: str = Field(
        description="The channel summarized; for a digest of several channels, where it is posted"
    )
    category_id: str | None
    channel_ids: list[str]
    schedule: str = Field(validation_alias="spec", description="The schedule as it was written")
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
    last_run: LastRunOut | None = Field(description="The latest run (null before the first)")


class ScheduleList(Page):
    """One page of schedules, oldest first."""

    items: list[ScheduleOut]


def _out(view: ScheduleView) -> ScheduleOut:
    return ScheduleOut.model_validate(view, from_attributes=True)


def _outs(resources: ApiResources, rows: list[Schedule]) -> list[ScheduleOut]:
    return [_out(view) for view in schedule_service.schedule_views(resources.session_factory, rows)]


ScheduleId = Annotated[uuid.UUID, Path(description="The schedule's id")]


@router.post(
    "/v1/schedules",
    status_code=201,
    response_model=ScheduleOut,
    summary="Create a digest schedule",
    description=(
        "A digest of one channel (`scope: channel`, the default), or of the whole server, a "
        "category or listed channels, with their active threads and forum posts.  A digest of "
        "several channels is posted in its destination channel or thread and only contains "
        "what every reader of it may read; `last_run.left_out` then names the channels left "
        "out, for the admins, never in the digest.  Needs `admin`.  Send an "
        "`Idempotency-Key` to retry safely."
    ),
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
                scope=ScheduleScope(payload.scope),
                channel_id=payload.channel_id,
                category_id=payload.category_id,
                channel_ids=payload.channel_ids,
                text=payload.schedule,
                timezone=payload.timezone,
                format=payload.format,
                language=payload.language,
                destination=payload.destination.model_dump(mode="json"),
                empty_policy=EmptyPolicy(payload.empty_policy),
                enabled=payload.enabled,
            ),
        )
        return json_response(
            _out(schedule_service.schedule_view(row)),
            status=201,
            headers={"Location": f"/v1/schedules/{row.id}"},
        )

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
    return json_response(ScheduleList(items=_outs(resources, rows), next_cursor=following))


@router.get(
    "/v1/schedules/{schedule_id}",
    response_model=ScheduleOut,
    summary="Read a schedule",
    description=(
        "The schedule with its latest run: its job, status and the channels its digest left "
        "out and why.  Needs `admin`."
    ),
    responses=errors(404, *AUTH_ERRORS),
)
def get_schedule(schedule_id: ScheduleId, caller: Admin, resources: Resources) -> Response:
    """One schedule of this guild."""
    row = guild_row(resources, Schedule, caller, schedule_id, what="schedule")
    return json_response(_outs(resources, [row])[0])


@router.patch(
    "/v1/schedules/{schedule_id}",
    response_model=ScheduleOut,
    summary="Change, pause or resume a schedule",
    description=(
        "Needs `admin`.  A new schedule text or time zone, or resuming (`enabled: true`), "
        "recomputes `next_run_at` from now; pausing clears it.  A new `scope` drops the old "
        "scope's `category_id` or `channel_ids` unless they are sent too."
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
    return json_response(_outs(resources, [row])[0])


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
