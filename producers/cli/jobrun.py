"""Run one summarize job from the command line and show its result.

Embedded mode (no ``REDIS_URL``): a Celery worker thread in this process consumes the job, and the
deliver stage prints the summary here (the ``terminal`` target).  Redis mode: the job is
published for separately started ``summarybot worker`` processes, and this command waits for the
job row to finish, then prints the stored summary.
"""

from __future__ import annotations

import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TextIO

from pydantic import ValidationError
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from schema.models.jobs import Delivery, DeliveryStatus, Job, JobStatus, Summary
from shared.context import open_process_context
from shared.db.engine import reading_session
from shared.db.migrate import current, ensure_schema, head
from shared.dependencies import check_redis
from shared.errors import ConfigError, InvalidInputError
from shared.jobs import (
    CeleryEnqueuer,
    ChannelTarget,
    Destination,
    DiscordChannelSource,
    ExportFileSource,
    FileTarget,
    JobParams,
    TerminalTarget,
    publisher_app,
)
from shared.lifecycle import FINISHED
from shared.services.core import OPERATOR, Core
from shared.services.jobs import submit_job
from shared.settings import Settings
from shared.sources.export_file import open_export
from shared.summarize.content import SummaryContent, SummaryFormat
from shared.summarize.render import SummaryDocument, render_json, render_text

__all__ = ["ChannelWindow", "JobFailed", "RunOptions", "run_summary_job"]


class JobFailed(Exception):
    """The job ended failed or cancelled; the message is the job's error for the user."""


@dataclass(frozen=True)
class ChannelWindow:
    """A Discord channel of a guild to summarize instead of an export file.

    The window is the last ``hours`` hours, or else the most recent ``max_messages`` messages
    (:attr:`RunOptions.max_messages`); ``post_to`` is a channel of the same guild that also
    receives the summary.
    """

    guild_id: str
    channel_id: str
    hours: float | None = None
    post_to: str | None = None


@dataclass(frozen=True)
class RunOptions:
    """What the user asked for on the command line: an export file or a channel window."""

    export: Path | None = None
    format: SummaryFormat = SummaryFormat.STRUCTURED
    as_json: bool = False
    output: Path | None = None
    language: str | None = None
    max_messages: int | None = None
    channel: ChannelWindow | None = None


class _Stdout:
    """Writes to whatever ``sys.stdout`` is at write time (rich redirects it under a live bar)."""

    def write(self, text: str) -> int:
        return sys.stdout.write(text)

    def flush(self) -> None:
        sys.stdout.flush()


def validate_export(path: Path) -> int:
    """Read the whole export once; raise InvalidInputError for anything wrong. Returns count."""
    with open_export(path) as export:
        return export.check()


def _check_schema(url: str, embedded_db: bool) -> None:
    if embedded_db:
        ensure_schema(url)
        return
    if current(url) != head():
        raise ConfigError(
            "DATABASE_URL: the database schema is not up to date; run `summarybot migrate` first"
        )


@contextmanager
def _progress(stream: TextIO, total: int) -> Iterator[Any]:
    if not stream.isatty():
        yield None
        return
    progress = Progress(
        TextColumn("{task.description:<12}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=Console(file=stream),
        transient=True,
    )
    with progress:
        yield progress, progress.add_task("queued", total=total)


def _unsent(session: Session, job_id: uuid.UUID) -> int:
    """Deliveries of the job's summary still pending or being sent."""
    return len(
        session.scalars(
            select(Delivery.id)
            .join(Summary, Summary.id == Delivery.summary_id)
            .where(
                Summary.job_id == job_id,
                Delivery.status.in_([DeliveryStatus.PENDING.value, DeliveryStatus.SENDING.value]),
            )
        ).all()
    )


def _wait(
    session_factory: sessionmaker[Session],
    job_id: uuid.UUID,
    *,
    total: int,
    timeout: float,
    hint_after: float | None,
) -> Job:
    """Wait until the job has ended and so have its deliveries (the terminal one prints)."""
    deadline = time.monotonic() + timeout
    started = time.monotonic()
    hinted = False
    with _progress(sys.stderr, total) as bar:
        while True:
            with reading_session(session_factory) as session:
                job = session.get(Job, job_id)
                assert job is not None
                settled = JobStatus(job.status) in FINISHED and not _unsent(session, job_id)
            if bar is not None:
                progress, task = bar
                done = int(job.progress.get("messages_fetched", 0))
                if job.status not in (JobStatus.QUEUED.value, JobStatus.FETCHING.value):
                    done = total
                progress.update(task, description=job.status, completed=done)
            if settled:
                return job
            now = time.monotonic()
            if hint_after and not hinted and job.status == "queued" and now - started > hint_after:
                print(
                    "still queued: is a `summarybot worker` running against this Redis?",
                    file=sys.stderr,
                )
                hinted = True
            if now > deadline:
                raise JobFailed(
                    f"job {job_id} did not finish within {timeout:.0f} s; it goes on "
                    "in the workers (JOB_WAIT_TIMEOUT sets the wait)"
                )
            time.sleep(0.1)


def _print_stored(session_factory: sessionmaker[Session], job: Job, as_json: bool) -> None:
    with reading_session(session_factory) as session:
        summary = session.scalars(select(Summary).where(Summary.job_id == job.id)).one()
    document = SummaryDocument(
        job_id=str(job.id),
        summary_id=str(summary.id),
        created_at=summary.created_at,
        duration_seconds=(summary.created_at - job.created_at).total_seconds(),
        model=summary.model,
        prompt_version=summary.prompt_version,
        summary=SummaryContent.model_validate(summary.content),
    )
    if as_json:
        sys.stdout.write(render_json(document))
    else:
        sys.stdout.write(render_text(document.summary, duration_seconds=document.duration_seconds))


def _source(options: RunOptions, now: datetime) -> tuple[Any, int]:
    """The job's source and the number of messages the progress bar counts to."""
    channel = options.channel
    if channel is not None:
        if channel.hours is not None:
            window: dict[str, Any] = {"after": now - timedelta(hours=channel.hours)}
        else:
            window = {"limit": options.max_messages or 100}
        try:
            source = DiscordChannelSource(
                guild_id=channel.guild_id, channel_id=channel.channel_id, **window
            )
        except ValidationError as exc:
            raise InvalidInputError(
                "--guild and --channel take numeric Discord ids (Developer Mode → Copy ID): "
                + str(exc.errors()[0]["msg"])
            ) from None
        return source, options.max_messages or window.get("limit", 0)
    assert options.export is not None
    export = options.export.expanduser().resolve()
    total = validate_export(export)
    if options.max_messages:
        total = min(total, options.max_messages)
    return ExportFileSource(path=str(export)), total


def _destinations(settings: Settings, options: RunOptions) -> list[Destination]:
    render = "json" if options.as_json else "text"
    destinations: list[Destination] = []
    if settings.embedded:
        destinations.append(TerminalTarget(render=render))
    if options.output is not None:
        destinations.append(
            FileTarget(
                path=str(options.output.expanduser().resolve()),
                render="json" if options.as_json else "markdown",
            )
        )
    if options.channel is not None and options.channel.post_to is not None:
        destinations.append(ChannelTarget(channel_id=options.channel.post_to))
    return destinations


def run_summary_job(settings: Settings, options: RunOptions) -> Job:
    """Validate input, submit the job, wait for it, and make sure its summary was shown.

    Everything a request names is checked before a job is written: the export file, or the
    channel and destination against ``--guild`` (through the same use case as the API and
    the bot, so a channel of another guild is refused like a missing one).
    """
    source, total = _source(options, datetime.now(UTC))
    url = settings.effective_database_url
    _check_schema(url, embedded_db=settings.database_url is None)
    if settings.redis_url is not None:
        # Before the job row exists: with Redis down nobody would ever run it.
        check_redis(settings.redis_url)
    params = JobParams(
        source=source,
        format=options.format,
        language=options.language,
        max_messages=options.max_messages,
        destinations=_destinations(settings, options),
    )
    actor = OPERATOR
    if options.channel is not None:
        actor = replace(OPERATOR, guild_id=options.channel.guild_id)
    with ExitStack() as stack:
        core = _start(settings, stack, discord=options.channel is not None)
        submission = submit_job(core, actor, params)
        job = _wait(
            core.session_factory,
            submission.job_id,
            total=total,
            timeout=settings.job_wait_timeout,
            hint_after=None if settings.embedded else 10.0,
        )
        if job.status != JobStatus.COMPLETED.value:
            raise JobFailed(job.error or f"job ended {job.status}")
        if not settings.embedded:
            _print_stored(core.session_factory, job, options.as_json)
        return job


def _start(settings: Settings, stack: ExitStack, *, discord: bool) -> Core:
    """What the job runs on: a worker thread here (embedded), or the shared broker."""
    if settings.embedded:
        from workers.app import create_worker_app
        from workers.context import build_services
        from workers.embedded import EmbeddedWorker

        worker = create_worker_app(settings)
        stack.callback(worker.close)
        services = build_services(settings, worker.app)
        stack.callback(services.close)
        services.console = _Stdout()  # type: ignore[assignment]
        worker.context.install(services)
        stack.enter_context(EmbeddedWorker(worker.app, concurrency=settings.embedded_concurrency))
        return services.core()
    publisher = publisher_app(settings.broker_url, visibility_timeout=settings.visibility_timeout)
    stack.callback(publisher.close)
    context = open_process_context(
        settings, enqueuer=CeleryEnqueuer(publisher), with_discord=discord
    )
    stack.callback(context.close)
    return context.core()
