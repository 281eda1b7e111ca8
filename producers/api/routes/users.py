"""``DELETE /v1/users/{user_id}/data``: erase one member's data in the key's guild."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path
from starlette.responses import Response

from producers.api.models import UserDataErased
from producers.api.routes.common import AUTH_ERRORS, Admin, Resources, errors, json_response
from shared.domain.messages import SNOWFLAKE_PATTERN
from shared.services.members import erase_member_data

__all__ = ["router"]

router = APIRouter(tags=["members"])


@router.delete(
    "/v1/users/{user_id}/data",
    response_model=UserDataErased,
    summary="Erase a member's data in this guild",
    description=(
        "Removes the member's identifiers from this guild's stored data: from summaries (their "
        "participant entry, citations of their messages, items drawn only from their messages, "
        "their contributions, their name in the text), from jobs they requested, from "
        "schedules and API keys they created, from delivery parameters, and their feedback "
        "votes.  Their opt-out, if any, stays, so their messages "
        "keep being excluded.  Safe to repeat.  Needs `admin`."
    ),
    responses=errors(*AUTH_ERRORS),
)
def erase_user_data(
    user_id: Annotated[str, Path(pattern=SNOWFLAKE_PATTERN, description="The member's Discord id")],
    caller: Admin,
    resources: Resources,
) -> Response:
    """Erase and report what changed."""
    report = erase_member_data(resources.core, caller.actor, user_id)
    return json_response(
        UserDataErased(
            user_id=user_id,
            guild_id=caller.guild_id,
            summaries_updated=report.summaries,
            jobs_updated=report.jobs,
            schedules_updated=report.schedules,
            api_keys_updated=report.api_keys,
            opt_out_kept=report.opt_out_kept,
        )
    )
