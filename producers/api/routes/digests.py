"""``/v1/digests`` and ``/v1/catchups``: summaries of several channels of the key's guild.

Both build their job with :mod:`shared.services.digests` and submit it like ``POST /v1/jobs``
(:func:`producers.api.routes.jobs.submit`): 202 with the job, which runs one part per channel
and composes them.  :func:`shared.services.jobs.submit_job` holds every rule (the guild boundary,
an audience that covers the destinations); the worker keeps only the channels that every reader
can read, and the job's ``left_out`` names the others for the caller.
"""

from __future__ import annotations

from fastapi import APIRouter
from starlette.responses import Response

from producers.api.idempotent import Idempotency, run_idempotent
from producers.api.models import CatchupCreate, DigestCreate, DirectMessageDestination, JobOut
from producers.api.onehop import JsonRoute
from producers.api.routes.common import JOB_ACCEPTED, JobWriter, Resources
from producers.api.routes.jobs import submit
from shared.services.digests import DigestScope, catchup_params, digest_params

__all__ = ["router"]

router = APIRouter(tags=["jobs"], route_class=JsonRoute)


@router.post(
    "/v1/digests",
    status_code=202,
    response_model=JobOut,
    summary="Submit a digest of several channels",
    description=(
        "Records a job summarizing several channels of the key's guild in one: `channel_ids`, "
        "a `category_id`, or the whole server when neither is given.  Only channels that every "
        "reader (`audience`, by default the destinations' readers) can read are summarized; "
        "the job's `left_out` lists the others with the reason, and `channels` counts those "
        "covered.  Poll `GET /v1/jobs/{id}` like any job.  Needs the `jobs:write` scope.  "
        "Send an `Idempotency-Key` to retry safely."
    ),
    responses=JOB_ACCEPTED,
)
def create_digest(
    payload: DigestCreate,
    caller: JobWriter,
    idem: Idempotency,
    resources: Resources,
) -> Response:
    """Submit a digest (202)."""

    def work() -> Response:
        after, before = payload.window.resolve(resources.clock())
        scope = DigestScope(
            guild_id=caller.guild_id,
            category_id=payload.category_id,
            channel_ids=tuple(payload.channel_ids),
        )
        params = digest_params(
            scope,
            after=after,
            before=before,
            format=payload.format,
            language=payload.language,
            destinations=payload.destinations,
            audience=None
            if payload.audience is None
            else [a.model_dump() for a in payload.audience],
        )
        return submit(resources, caller, idem, params)

    return run_idempotent(resources, caller, idem, work)


@router.post(
    "/v1/catchups",
    status_code=202,
    response_model=JobOut,
    summary="Submit a member's catch-up",
    description=(
        "Records a job summarizing what happened in the key's guild since the member "
        "`user_id` last wrote (at most 7 days back), or since `since`, in the channels that "
        "member can read, with what involves them first.  It goes to the member's DMs unless "
        "`destinations` say otherwise.  The job's `left_out` lists the channels left out.  "
        "Needs the `jobs:write` scope.  Send an `Idempotency-Key` to retry safely."
    ),
    responses=JOB_ACCEPTED,
)
def create_catchup(
    payload: CatchupCreate,
    caller: JobWriter,
    idem: Idempotency,
    resources: Resources,
) -> Response:
    """Submit a catch-up (202)."""

    def work() -> Response:
        destinations = payload.destinations or [DirectMessageDestination(user_id=payload.user_id)]
        params = catchup_params(
            guild_id=caller.guild_id,
            user_id=payload.user_id,
            since=payload.since,
            now=resources.clock(),
            format=payload.format,
            language=payload.language,
            destinations=destinations,
        )
        return submit(resources, caller, idem, params)

    return run_idempotent(resources, caller, idem, work)
