"""The API's app factory: routes, error handlers, middleware, and resources built at start.

``create_app(settings)`` builds nothing that connects: the lifespan creates the database engine,
the Redis client and the Celery enqueuer when the server starts and closes them when it stops.
Tests (and embedders) pass their own ``session_factory``, ``redis``, ``enqueuer`` and
``secret_box``; when all four are given the app is ready at once, without a lifespan run.
"""

from __future__ import annotations

import gc
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import datetime
from typing import TYPE_CHECKING, Any

import anyio.to_thread
import structlog
from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from fastapi_offline import FastAPIOffline
from sqlalchemy.engine import make_url

from producers.api.auth import SECURITY_SCHEME
from producers.api.metrics import ApiMetrics
from producers.api.middleware import (
    BodySizeLimitMiddleware,
    JsonBodyMiddleware,
    MetricsMiddleware,
)
from producers.api.onehop import OneHopDispatch
from producers.api.problems import PROBLEM_JSON, install_problem_handlers
from producers.api.resources import ApiOptions, ApiResources, utc_now
from producers.api.routes import (
    digests,
    health,
    jobs,
    schedules,
    summaries,
    uploads,
    users,
    webhooks,
)
from producers.api.warmup import warm_up
from shared.context import open_process_context
from shared.crypto import SecretBox
from shared.errors import ConfigError
from shared.jobs import CeleryEnqueuer, Enqueuer, publisher_app
from shared.services.core import Core
from shared.settings import Settings
from shared.tenancy import ChannelDirectory

if TYPE_CHECKING:
    from redis import Redis
    from sqlalchemy.orm import Session, sessionmaker

__all__ = ["API_VERSION", "app_from_environment", "check_settings", "create_app"]

API_VERSION = "1.0.0"

log = structlog.get_logger("summarybot.api")

_DESCRIPTION = """
Submit summary jobs for channels of your Discord guild, read their results, and manage digest
schedules and webhook endpoints.

**Authentication.** Every `/v1` call needs an API key, `Authorization: Bearer sb_<id>_<secret>`,
made with `summarybot keys create --guild G --scope ...`.  A key belongs to one guild: anything
of another guild answers 404.  Scopes: `jobs:write` (submit and cancel jobs), `summaries:read`
(read jobs and summaries), `admin` (everything, including schedules, webhook endpoints and
member data erasure).  A key may be limited to IP ranges and may require signed requests
(Standard Webhooks `webhook-id`/`webhook-timestamp`/`webhook-signature` headers, HMAC-SHA256,
five minutes' tolerance, each id once).  A request signature covers the request, not only the
body: sign `{webhook-id}.{webhook-timestamp}.{METHOD} {path?query}\n{body}`, with the path and
query exactly as sent, so a signature made for one call is refused on any other.

**Retries.** POST calls accept an `Idempotency-Key` header (kept 24 h, per API key): the same key
and body replay the first response; another body answers 422; a request still running 409.

**Limits.** Each key has a rate limit (429 with `Retry-After`); request bodies are limited to
64 KiB (413), except uploads to `POST /v1/jobs/upload`, which are streamed into storage and
limited to 100 MiB.

**Summaries from anywhere.** `POST /v1/jobs/upload` summarizes a conversation you send: a
message array (`id`, `author`, `time`, `content`, optional `reply_to`, `reactions`,
`attachments`) or a DiscordChatExporter JSON export, as `application/json` or as the `file`
field of a `multipart/form-data` form.

**Several channels in one.** `POST /v1/digests` summarizes a list of channels, a category or
the whole server; `POST /v1/catchups` tells one member what happened since they last wrote.
Only channels that every reader of the summary can read are included; the job's `left_out`
tells you (who set it up) which channels were left out and why.

**Errors** are RFC 9457 problem documents (`application/problem+json`) with `type`, `title`,
`status`, `detail`, and `errors` listing each invalid field.  Bodies are JSON sent as
`Content-Type: application/json` (anything else: 415; uploads also take
`multipart/form-data`); a body that is not valid JSON gets 400
naming the line and column where it breaks; valid JSON with invalid fields gets 422.  Every
request writes one `api.request` log line (method, route template, status, duration, key id).
"""


def check_settings(settings: Settings) -> None:
    """Refuse the embedded mode: the API needs ``REDIS_URL`` and a PostgreSQL ``DATABASE_URL``."""
    url = settings.database_url
    if settings.redis_url is None or url is None or make_url(url).get_backend_name() == "sqlite":
        raise ConfigError(
            "the API needs REDIS_URL and a PostgreSQL DATABASE_URL (the embedded mode has no "
            "shared broker for separate workers); set both, run `summarybot migrate`, then "
            "start the API again"
        )


def _openapi(app: FastAPI) -> Callable[[], dict[str, Any]]:
    def build() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        schema = get_openapi(
            title=app.title,
            version=app.version,
            description=app.description,
            routes=app.routes,
            tags=app.openapi_tags,
        )
        # Error responses are problem documents only; FastAPI also lists application/json for
        # a response "model", which the API never sends for an error.
        schema.setdefault("components", {}).setdefault("securitySchemes", {})["ApiKey"] = (
            SECURITY_SCHEME
        )
        for route, path in schema.get("paths", {}).items():
            for operation in path.values():
                if route.startswith("/v1/"):
                    operation["security"] = [{"ApiKey": []}]
                for status, response in operation.get("responses", {}).items():
                    content = response.get("content", {})
                    if str(status).startswith(("4", "5")) and PROBLEM_JSON in content:
                        content.pop("application/json", None)
        app.openapi_schema = schema
        return schema

    return build


def create_app(
    settings: Settings,
    *,
    session_factory: sessionmaker[Session] | None = None,
    redis: Redis[Any] | None = None,
    enqueuer: Enqueuer | None = None,
    box: SecretBox | None = None,
    directory: ChannelDirectory | None = None,
    options: ApiOptions | None = None,
    clock: Callable[[], datetime] = utc_now,
) -> FastAPI:
    """The API app for ``settings``; raises :class:`ConfigError` in the embedded mode.

    Given ``session_factory``, ``redis``, ``enqueuer`` and ``box`` (tests, embedders), the app
    is ready at once and uses ``directory`` for the guild boundary; otherwise its lifespan
    builds the process context (:func:`shared.context.open_process_context`) at start.
    """
    check_settings(settings)
    options = options or ApiOptions()
    metrics = ApiMetrics()

    def build(
        factory: sessionmaker[Session],
        client: Redis[Any],
        queue: Enqueuer,
        secrets: SecretBox,
        channels: ChannelDirectory | None,
    ) -> ApiResources:
        core = Core.configured(
            settings,
            session_factory=factory,
            enqueuer=queue,
            box=secrets,
            directory=channels,
            clock=clock,
        )
        return ApiResources(
            session_factory=factory,
            redis=client,
            core=core,
            secret_box=secrets,
            metrics=metrics,
            options=options,
            clock=clock,
        )

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        anyio.to_thread.current_default_thread_limiter().total_tokens = options.max_threads
        if getattr(app.state, "resources", None) is not None:
            yield
            return
        assert settings.redis_url is not None
        publisher = publisher_app(
            settings.broker_url, visibility_timeout=settings.visibility_timeout
        )
        # No pre-ping: it costs a round trip on each checkout of a job submission.  A
        # connection the server dropped fails one request with 503 (the pool is then
        # invalidated) and the client retries.
        context = open_process_context(
            settings,
            enqueuer=enqueuer or CeleryEnqueuer(publisher),
            engine_options={
                "pool_size": 20,
                "max_overflow": 20,
                "pool_timeout": 5,
                "pool_pre_ping": False,
                "pool_recycle": 1800,
                "connect_args": {"connect_timeout": 5},
            },
            redis_options={
                "socket_timeout": 5,
                "socket_connect_timeout": 2,
                "health_check_interval": 30,
                "max_connections": 100,
            },
        )
        assert context.redis is not None
        resources = app.state.resources = build(
            context.session_factory,
            context.redis,
            context.enqueuer,
            context.box,
            context.directory,
        )
        await anyio.to_thread.run_sync(warm_up, context.session_factory, context.redis, publisher)
        # What start-up built (the imports, the app, the clients: ~150k objects) lives as long
        # as the process; frozen, it is left out of the full collections, each of which would
        # otherwise scan it all again (~65 ms of CPU, a pause the requests meanwhile wait out).
        gc.collect()
        gc.freeze()
        log.info("api.started")
        try:
            yield
        finally:
            gc.unfreeze()
            app.state.resources = None
            resources.hops.shutdown(wait=True)
            context.close()
            publisher.close()
            log.info("api.stopped")

    # The docs pages load Swagger UI and ReDoc from our own process, not a CDN: self-hosted
    # deployments often have no way out to the internet.
    app = FastAPIOffline(
        title="Summary Bot NG API",
        version=API_VERSION,
        description=_DESCRIPTION,
        lifespan=lifespan,
        # FastAPI's built-in OpenTelemetry (spans, metrics, exception logs through the global
        # providers) is off: the API reports through its Prometheus metrics and structlog
        # lines, and never sets up OpenTelemetry.  Left on, FastAPI asks all three global
        # providers whether they are configured on every request.
        telemetry={"tracing": False, "metrics": False, "logs": False},
        openapi_tags=[
            {"name": "jobs", "description": "Submit, follow and cancel summary jobs"},
            {"name": "summaries", "description": "Read finished summaries"},
            {"name": "schedules", "description": "Recurring digests"},
            {"name": "webhook endpoints", "description": "Where signed events are sent"},
            {"name": "members", "description": "Member data erasure"},
            {"name": "operations", "description": "Health, readiness and metrics"},
        ],
    )
    if session_factory is not None and redis is not None and enqueuer is not None and box:
        app.state.resources = build(session_factory, redis, enqueuer, box, directory)
    install_problem_handlers(app)
    modules = (uploads, jobs, digests, summaries, schedules, webhooks, users, health)
    for module in modules:
        app.include_router(module.router)
    # The routers are included without a prefix: their routes' paths are the served paths.
    app.add_middleware(
        OneHopDispatch,
        routes=[route for module in modules for route in module.router.routes],
        handlers=app.exception_handlers,
        debug=app.debug,
    )
    app.add_middleware(JsonBodyMiddleware, uploads=frozenset({uploads.UPLOAD_PATH}))
    app.add_middleware(
        BodySizeLimitMiddleware,
        max_bytes=options.max_body_bytes,
        metrics=metrics,
        streamed={uploads.UPLOAD_PATH: options.max_upload_bytes},
    )
    app.add_middleware(MetricsMiddleware, metrics=metrics)
    app.openapi = _openapi(app)  # type: ignore[method-assign]
    return app


def app_from_environment() -> FastAPI:
    """The app for the settings in the environment (uvicorn's factory for several workers)."""
    from shared.logging import configure_from_settings
    from shared.settings import load_settings

    settings = load_settings()
    configure_from_settings(settings)
    return create_app(settings)
