"""``/healthz`` (the process answers), ``/readyz`` (database and Redis answer), ``/metrics``."""

from __future__ import annotations

import concurrent.futures
from typing import Annotated, Literal

import structlog
from fastapi import APIRouter, Depends
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel
from sqlalchemy import text
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from producers.api.problems import PROBLEM_JSON, problem_response
from producers.api.resources import ApiResources, get_resources
from producers.api.routes.common import json_response
from shared.db.engine import reading_session

__all__ = ["Health", "Readiness", "router"]

router = APIRouter(tags=["operations"])
log = structlog.get_logger("summarybot.api")


class Health(BaseModel):
    """The process is up."""

    status: Literal["ok"] = "ok"


class Readiness(BaseModel):
    """Whether each dependency answered."""

    status: Literal["ready", "unavailable"]
    database: Literal["ok", "unavailable"]
    redis: Literal["ok", "unavailable"]


@router.get("/healthz", response_model=Health, summary="Liveness: the process answers")
async def healthz() -> Response:
    """Always 200 while the event loop runs."""
    return json_response(Health())


def _database_ok(resources: ApiResources) -> bool:
    try:
        with reading_session(resources.session_factory) as session:
            session.execute(text("SELECT 1"))
    except Exception as exc:  # noqa: BLE001  # any failure means "not ready"
        log.warning("api.readiness_failed", dependency="database", error=type(exc).__name__)
        return False
    return True


def _redis_ok(resources: ApiResources) -> bool:
    try:
        return bool(resources.redis.ping())
    except Exception as exc:  # noqa: BLE001  # any failure means "not ready"
        log.warning("api.readiness_failed", dependency="redis", error=type(exc).__name__)
        return False


def _check(resources: ApiResources) -> tuple[bool, bool]:
    # Both probes run at once and neither may hold the answer past the timeout: a server that
    # accepts the connection but never answers must still make the API report "not ready".
    timeout = resources.options.readiness_timeout_seconds
    pool = concurrent.futures.ThreadPoolExecutor(max_workers=2)
    try:
        database = pool.submit(_database_ok, resources)
        redis = pool.submit(_redis_ok, resources)
        done, _ = concurrent.futures.wait([database, redis], timeout=timeout)
        return (
            database in done and database.result(),
            redis in done and redis.result(),
        )
    finally:
        pool.shutdown(wait=False)


@router.get(
    "/readyz",
    response_model=Readiness,
    summary="Readiness: the database and Redis answer",
    responses={
        503: {
            "description": "A dependency is down (problem+json with `database` and `redis`)",
            "content": {PROBLEM_JSON: {"schema": {"$ref": "#/components/schemas/ProblemBody"}}},
        }
    },
)
async def readyz(resources: Annotated[ApiResources, Depends(get_resources)]) -> Response:
    """200 when both answer within the timeout, 503 otherwise."""
    database, redis = await run_in_threadpool(_check, resources)
    body = Readiness(
        status="ready" if database and redis else "unavailable",
        database="ok" if database else "unavailable",
        redis="ok" if redis else "unavailable",
    )
    if database and redis:
        return json_response(body)
    down = " and ".join(
        name for name, ok in (("the database", database), ("Redis", redis)) if not ok
    )
    return problem_response(
        503,
        f"{down} did not answer within {resources.options.readiness_timeout_seconds} s",
        headers={"Retry-After": "5"},
        extensions=body.model_dump(exclude={"status"}),
    )


@router.get(
    "/metrics",
    summary="Prometheus metrics of this process",
    response_class=Response,
    responses={200: {"content": {"text/plain": {"schema": {"type": "string"}}}}},
)
async def metrics(resources: Annotated[ApiResources, Depends(get_resources)]) -> Response:
    """The app's own registry in the Prometheus text format."""
    return Response(
        content=generate_latest(resources.metrics.registry), media_type=CONTENT_TYPE_LATEST
    )
