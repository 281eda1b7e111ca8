"""``/v1/jobs``: submit a summary job, read its state, cancel it."""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Sequence
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path
from pydantic import BaseModel, ValidationError
from sqlalchemy import select
from starlette.responses import Response

from producers.api.auth import Caller, require_scope
from producers.api.idempotent import Idempotency, IdempotencyKey, run_idempotent
from producers.api.models import DeliveryOut, JobCreate, JobOut
from producers.api.problems import Problem, validation_errors
from producers.api.resources import ApiResources
from producers.api.routes.common import (
    AUTH_ERRORS,
    JOB_ACCEPTED,
    JobWriter,
    Resources,
    errors,
    guild_row,
    json_response,
)
from schema.models.jobs import Delivery, Job, Summary
from shared.apikeys import Scope
from shared.job_view import JobView
from shared.jobs import JobParams
from shared.services import jobs as job_service
from shared.summarize.content import SummaryFormat

__all__ = ["job_out", "job_params", "router", "submit"]

router = APIRouter(tags=["jobs"])

JobId = Annotated[uuid.UUID, Path(description="The job's id", examples=[uuid.UUID(int=1)])]


def job_out(job: JobView, deliveries: list[DeliveryOut] | None = None) -> JobOut:
    """The public view of a job, with its deliveries."""
    out = JobOut.model_validate(job, from_attributes=True)
    return out.model_copy(update={"deliveries": deliveries or []})


def _params(resources: ApiResources, caller: Caller, payload: JobCreate) -> JobParams:
    source = {
        "kind": "discord_channel",
        "guild_id": payload.guild_id or caller.guild_id,
        "channel_id": payload.channel_id,
        **payload.window.resolve(resources.clock()),
    }
    return job_params(
        source,
        format=payload.format,
        language=payload.language,
        max_messages=payload.max_messages,
        destinations=payload.destinations,
    )


def job_params(
    source: dict[str, Any],
    *,
    format: SummaryFormat,
    language: str | None,
    max_messages: int | None,
    destinations: Sequence[BaseModel],
) -> JobParams:
    """The job's parameters for a request's ``source`` and options (422 when they clash)."""
    data = {
        "source": source,
        "format": format.value,
        "language": language,
        "max_messages": max_messages,
        "destinations": [d.model_dump(mode="json") for d in destinations],
    }
    try:
        return JobParams.model_validate(data)
    except ValidationError as exc:
        problems = validation_errors(
            [{**e, "loc": ("body", *e["loc"])} for e in exc.errors(include_input=False)]
        )
        raise Problem(
            422,
            "the job cannot be built from this request: "
            + "; ".join(f"{p.pointer}: {p.detail}" for p in problems[:3]),
            errors=problems,
        ) from None


@router.post(
    "/v1/jobs",
    status_code=202,
    response_model=JobOut,
    summary="Submit a summary job",
    description=(
        "Records a job for a channel or thread of the key's guild and queues it; the answer "
        "comes at once (202) and the job runs in the background.  Poll `GET /v1/jobs/{id}` "
        "until `status` is `completed`, then read `GET /v1/summaries/{summary_id}`.  "
        "Needs the `jobs:write` scope.  Send an `Idempotency-Key` to retry safely."
    ),
    responses=JOB_ACCEPTED,
)
def create_job(
    payload: JobCreate,
    caller: JobWriter,
    idem: Idempotency,
    resources: Resources,
) -> Response:
    """Submit a job (202)."""

    def work() -> Response:
        return submit(resources, caller, idem, _params(resources, caller, payload))

    return run_idempotent(resources, caller, idem, work)


def submit(
    resources: ApiResources, caller: Caller, idem: IdempotencyKey | None, params: JobParams
) -> Response:
    """Submit ``params`` for ``caller`` and answer 202 with the job (the routes' shared work)."""
    durable_key = None
    if idem is not None:
        digest = hashlib.sha256(idem.key.encode()).hexdigest()[:40]
        durable_key = f"api:{caller.key_id}:{digest}"
    submission = job_service.submit_job(
        resources.core, caller.actor, params, idempotency_key=durable_key
    )
    job = JobView.of(submission.job)
    resources.metrics.summary_requests.labels(
        params.format.value, "accepted" if submission.created else "duplicate"
    ).inc()
    return json_response(job_out(job), status=202, headers={"Location": f"/v1/jobs/{job.id}"})


def _deliveries(resources: ApiResources, job_id: uuid.UUID) -> list[DeliveryOut]:
    with resources.session_factory() as session:
        rows = session.scalars(
            select(Delivery)
            .join(Summary, Summary.id == Delivery.summary_id)
            .where(Summary.job_id == job_id)
            .order_by(Delivery.created_at, Delivery.id)
        ).all()
    return [
        DeliveryOut(
            target=row.target,
            kind=row.kind,
            status=row.status,
            attempts=row.attempts,
            last_error=row.last_error,
            fallback_of=str(row.fallback_of) if row.fallback_of else None,
            sent_at=row.sent_at,
        )
        for row in rows
    ]


@router.get(
    "/v1/jobs/{job_id}",
    response_model=JobOut,
    summary="Read a job's status, stage and progress",
    description="Needs `jobs:write` or `summaries:read`.",
    responses=errors(404, *AUTH_ERRORS),
)
def get_job(
    job_id: JobId,
    caller: Annotated[Caller, Depends(require_scope(Scope.JOBS_WRITE, Scope.SUMMARIES_READ))],
    resources: Resources,
) -> Response:
    """A job of the key's guild."""
    job = JobView.of(guild_row(resources, Job, caller, job_id, what="job"))
    return json_response(job_out(job, _deliveries(resources, job.id)))


@router.delete(
    "/v1/jobs/{job_id}",
    response_model=JobOut,
    summary="Cancel a job",
    description=(
        "Marks an unfinished job `cancelled`; its stages stop at their next step.  Cancelling "
        "a cancelled job again answers the same; a completed or failed job answers 409.  "
        "Needs `jobs:write`."
    ),
    responses=errors(404, 409, *AUTH_ERRORS),
)
def cancel_job(
    job_id: JobId,
    caller: JobWriter,
    resources: Resources,
) -> Response:
    """Cancel an unfinished job."""
    return json_response(job_out(job_service.cancel_job(resources.core, caller.actor, job_id)))
