"""The fetch stage: read the conversation from its source into the per-job message cache."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from datetime import datetime
from itertools import islice

import structlog

from schema.models.jobs import JobStatus
from shared.cache import CachedFetch
from shared.domain.messages import ChannelInfo, ChatMessage
from shared.errors import ConfigError
from shared.jobs import SUMMARIZE, DiscordChannelSource, ExportFileSource, JobParams, parse_params
from shared.pipeline import state
from shared.pipeline.services import Services
from shared.sources.export_file import count_messages, open_export
from shared.summarize.sanitize import sanitize_channel, sanitize_messages

__all__ = ["PAGE_SIZE", "run_fetch"]

log = structlog.get_logger(__name__)

PAGE_SIZE = 500


@contextmanager
def _open_source(
    services: Services, source: ExportFileSource | DiscordChannelSource, *, limit: int
) -> Iterator[tuple[ChannelInfo, int | None, int, Iterator[ChatMessage]]]:
    """Channel, total (when known in advance), leading messages skipped, and the stream.

    Only the most recent ``limit`` messages are kept: a window by message count means the
    latest ones.
    """
    if isinstance(source, DiscordChannelSource):
        yield _discord_source(services, source, limit=limit)
        return
    total = count_messages(source.path)
    skip = max(0, total - limit)
    with open_export(source.path) as export:
        yield export.channel, total - skip, skip, islice(export.iter_messages(), skip, None)


def _discord_source(
    services: Services, source: DiscordChannelSource, *, limit: int
) -> tuple[ChannelInfo, int | None, int, Iterator[ChatMessage]]:
    if services.discord is None:
        raise ConfigError(
            "reading Discord channels needs the Discord adapter: set DISCORD_TOKEN",
            user_message="this deployment cannot read Discord channels (no DISCORD_TOKEN)",
        )
    client = services.discord
    channel = client.channel_info(source.channel_id)
    if channel.guild_id is None and source.guild_id is not None:
        channel = replace(channel, guild_id=source.guild_id)
    after: datetime | str | None = source.after_message_id or source.after
    count = min(source.limit or limit, limit)
    messages = client.iter_history(
        source.channel_id,
        after=after,
        before=source.before,
        limit=count,
        # A count-only window ("the last 500 messages") wants the latest ones; a window with a
        # start wants everything from there, up to the cap.
        newest=after is None,
    )
    return channel, source.limit if after is None else None, 0, messages


def run_fetch(services: Services, job_id: uuid.UUID) -> None:
    """Fetch a job's messages into the cache and hand the job to the summarize stage.

    Safe to run twice: a job already past this stage only has its next stage re-enqueued, and
    a half-filled cache entry from a dead attempt is discarded and rewritten.
    """
    job = state.load(services.session_factory, job_id)
    if job is None or job.status in state.FINISHED:
        log.info("fetch.skipped", reason="job missing or finished")
        return
    if job.status == JobStatus.SUMMARIZING.value:
        services.enqueuer.enqueue(SUMMARIZE, str(job_id))
        return
    if job.status != JobStatus.QUEUED.value and job.status != JobStatus.FETCHING.value:
        return
    params: JobParams = parse_params(job.params)
    limit = min(
        params.max_messages or services.settings.max_messages, services.settings.max_messages
    )
    key = str(job_id)
    now = services.clock
    state.advance(services.session_factory, job_id, JobStatus.FETCHING, now=now())
    services.cache.begin(key)
    fetched = 0
    with _open_source(services, params.source, limit=limit) as (channel, total, skip, messages):
        channel, messages = sanitize_channel(channel), sanitize_messages(messages)
        state.heartbeat(
            services.session_factory,
            job_id,
            now=now(),
            progress={"messages_total": total, "messages_fetched": 0},
        )
        while page := list(islice(messages, PAGE_SIZE)):
            fetched += services.cache.append(key, page)
            alive = state.heartbeat(
                services.session_factory,
                job_id,
                now=now(),
                progress={"messages_fetched": fetched},
            )
            if not alive:
                log.info("fetch.abandoned", reason="job ended meanwhile")
                services.cache.delete(key)
                return
    services.cache.complete(key, CachedFetch(channel=channel, count=fetched, skipped=skip))
    moved = state.advance(
        services.session_factory,
        job_id,
        JobStatus.SUMMARIZING,
        now=now(),
        message_count=fetched,
        channel_id=channel.channel_id,
        guild_id=channel.guild_id,
    )
    if moved:
        log.info("fetch.done", messages=fetched, skipped=skip)
        services.enqueuer.enqueue(SUMMARIZE, key)
