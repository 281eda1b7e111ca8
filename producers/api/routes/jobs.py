"""``/v1/jobs``: submit a summary job, read its state, cancel it."""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ValidationError
from sqlalchemy import select
from starlette.responses import Response

from producers.api.auth import (
    Caller,
    Credentials,
    admit,
    admit_with_claim,
    caller_of,
    check_scope,
    request_credentials,
    require_scope,
    verify_credentials,
)
from producers.api.auth import admitted as mark_admitted
from producers.api.idempotent import (
    Idempotency,
    IdempotencyKey,
    checked_key,
    run_claimed,
    run_idempotent,
)
from producers.api.models import DeliveryOut, JobCreate, JobOut
from producers.api.onehop import in_hop, json_body, one_hop_route, validate_body
from producers.api.problems import Problem, validation_errors
from producers.api.resources import ApiResources, get_resources
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
from shared.idempotency import fingerprint
from shared.job_view import JobView
from shared.jobs import HeldEnqueuer, JobParams
from shared.services import jobs as job_service
from shared.summarize.content import SummaryFormat

__all__ = ["create_job", "job_out", "job_params", "router", "serve_create_job", "submit"]

router = APIRouter(tags=["jobs"])

_WRITE = (Scope.JOBS_WRITE,)

JobId = Annotated[uuid.UUID, Path(description="The job's id", examples=[uuid.UUID(int=1)])]


def job_out(job: JobView, deliveries: list[DeliveryOut] | None = None) -> JobOut:
    """The public view of a job, with its deliveries."""
    out = JobOut.model_validate(job, from_attributes=True)
    if not deliveries:
        return out  # ``deliveries`` is already the empty list
    return out.model_copy(update={"deliveries": deliveries})


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


def create_job(
    payload: JobCreate,
    caller: JobWriter,
    idem: Idempotency,
    resources: Resources,
) -> Response:
    """Submit a job (202).

    The declaration FastAPI documents; :func:`serve_create_job` serves the requests, with the
    same checks in the same order, in one worker-thread hop.
    """
    return run_idempotent(resources, caller, idem, _submission(resources, caller, idem, payload))


def _submission(
    resources: ApiResources,
    caller: Caller,
    idem: IdempotencyKey | None,
    payload: JobCreate,
    held: HeldEnqueuer | None = None,
) -> Callable[[], Response]:
    return lambda: submit(resources, caller, idem, _params(resources, caller, payload), held)


def _create_job_in_thread(
    resources: ApiResources,
    credentials: Credentials,
    header: str | None,
    path: str,
    body: Any,
    admitted: list[Caller],
) -> Response:
    key = verify_credentials(resources, credentials)
    caller = caller_of(key)
    try:
        check_scope(caller, _WRITE)
        idempotency_key = checked_key(header)
        payload = validate_body(JobCreate, body)
    except (Problem, RequestValidationError):
        # Refused without Redis, but the rate limit answers first (429 before these).
        admitted.append(caller_of(key, admit(resources, key)))  # for the log and headers
        raise
    if idempotency_key is None:
        caller = caller_of(key, admit(resources, key))
        admitted.append(caller)
        return _submission(resources, caller, None, payload)()
    signed = credentials.signed
    assert signed is not None  # the body was read for the signature check
    idem = IdempotencyKey(idempotency_key, fingerprint("POST", path, signed.body))
    # The rate limit and the claim of the key in one Redis round trip.
    claim, decision = admit_with_claim(resources, key, idem.key, idem.fingerprint)
    caller = caller_of(key, decision)
    admitted.append(caller)
    # The job's publication rides in the round trip that stores the response.
    held = HeldEnqueuer(resources.core.enqueuer)
    work = _submission(resources, caller, idem, payload, held)
    return run_claimed(resources, claim, work, held=held)


async def serve_create_job(request: Request) -> Response:
    """``POST /v1/jobs`` as :func:`create_job` declares it, in one worker-thread hop."""
    body = await json_body(request)
    resources = await get_resources(request)
    credentials = await request_credentials(request, resources)
    admitted: list[Caller] = []
    try:
        return await in_hop(
            resources.hops,
            _create_job_in_thread,
            resources,
            credentials,
            request.headers.get("idempotency-key"),
            request.url.path,
            body,
            admitted,
        )
    finally:
        if admitted:
            mark_admitted(request, admitted[0])


router.add_api_route(
    "/v1/jobs",
    create_job,
    methods=["POST"],
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
    route_class_override=one_hop_route(serve_create_job),
)


def submit(
    resources: ApiResources,
    caller: Caller,
    idem: IdempotencyKey | None,
    params: JobParams,
    held: HeldEnqueuer | None = None,
) -> Response:
    """Submit ``params`` for ``caller`` and answer 202 with the job (the routes' shared work).

    With ``held`` the job's first stage is left in it for the caller to publish.
    """
    durable_key = None
    if idem is not None:
        # The request's fingerprint is part of the row's key: when Redis has forgotten the
        # record (a restart, an eviction), the same request still finds its job, and another
        # request reusing the key makes its own instead of being answered with that one.
        digest = hashlib.sha256(f"{idem.key}\n{idem.fingerprint}".encode()).hexdigest()[:40]
        durable_key = f"api:{caller.key_id}:{digest}"
    core = resources.core if held is None else replace(resources.core, enqueuer=held)
    submission = job_service.submit_job(
        core,
        caller.actor,
        params,
        idempotency_key=durable_key,
        # The job remembers the key as long as the API does, then a reuse is a new request.
        key_lifetime=timedelta(seconds=resources.options.idempotency_ttl_seconds),
    )
    job = submission.job
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
