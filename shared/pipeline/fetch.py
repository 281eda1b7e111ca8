"""The fetch stage: read the conversation from its source into the per-job message cache.

Load → work → persist: the job's parameters name the source; a Discord channel or a stored
upload is first checked against the job's guild (the worker trusts no row to keep the
boundary: a channel or an upload of another guild fails the job before anything is read); the
messages are then streamed into the cache page by page, and the move to ``summarizing``
records the count and publishes the next stage.  A window of one page costs that one job
write; a longer one moves the job to ``fetching`` (with the expected count) after its first
page and beats after each further one.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import datetime
from itertools import islice
from typing import Any

import structlog
from sqlalchemy import bindparam, select

from schema.models.jobs import Job, JobStatus
from schema.models.tenancy import GuildSettings, PrivateChannelPolicy
from shared import lifecycle
from shared.cache import CachedFetch
from shared.db.engine import one_statement
from shared.discord.audience import channel_from_json, guild_from_json, member_from_json
from shared.discord.client import DiscordClient
from shared.discord.errors import NotFound
from shared.discord.objects import Channel
from shared.discord.permissions import (
    ChannelKind,
    ChannelView,
    GuildView,
    everyone_can_view,
    is_guild_admin,
    within,
)
from shared.domain.messages import ChannelInfo, ChatMessage
from shared.errors import PermanentError
from shared.jobs import (
    SUMMARIZE,
    DiscordChannelSource,
    DiscordServerSource,
    ExportFileSource,
    JobParams,
    Step,
    UploadSource,
    parse_params,
)
from shared.pipeline.plan import PRIVATE_DENIED, run_plan
from shared.pipeline.services import Services
from shared.sources.export_file import count_messages, open_export
from shared.summarize.sanitize import sanitize_channel, sanitize_messages
from shared.uploads import count_upload, open_upload

__all__ = ["PAGE_SIZE", "run_fetch"]

log = structlog.get_logger(__name__)

PAGE_SIZE = 500


@dataclass(frozen=True)
class _Opened:
    """An open source: the conversation, how many messages it holds when known, how many
    leading ones are skipped, and the stream of the rest."""

    channel: ChannelInfo
    total: int | None
    skipped: int
    messages: Iterator[ChatMessage]


@contextmanager
def _open_document(
    services: Services, job: Job, source: ExportFileSource | UploadSource, *, limit: int
) -> Iterator[_Opened]:
    """An export file or a stored upload: the same streaming reader reads both.  An upload
    must be the job's guild's (the boundary again, as for a channel): another guild's fails
    the job before anything is read."""
    if isinstance(source, UploadSource):
        factory, upload = services.session_factory, source.upload_id
        total = count_upload(factory, upload, guild_id=job.guild_id)
        document = open_upload(factory, upload, guild_id=job.guild_id)
    else:
        total = count_messages(source.path)
        document = open_export(source.path)
    # A window by message count means the latest ones: skip the rest from the start.
    skip = max(0, total - limit)
    with document as export:
        yield _Opened(
            export.channel, total - skip, skip, islice(export.iter_messages(), skip, None)
        )


#: Every job's fetch reads these two columns: a plain statement, not an ORM load of the row.
_SERVER_RULES = select(
    GuildSettings.excluded_channel_ids, GuildSettings.private_channel_policy
).where(GuildSettings.guild_id == bindparam("guild_id"))

#: Why a private channel's summary may not go where a member's job sends it.
PRIVATE_ELSEWHERE = (
    "private: under this server's policy its summary may only be posted in it (or one of its "
    "threads) or sent privately to whoever asked"
)


@dataclass(frozen=True)
class _ShownElsewhere:
    """Where a member's job shows its summary besides the source channel and the member's
    own DMs: the channels it posts in (and falls back to), and whether it also goes beyond
    them (a webhook, another member's DMs)."""

    requester: str
    channel_ids: frozenset[str]
    beyond: bool


def _shown_elsewhere(job: Job, params: JobParams, channel_id: str) -> _ShownElsewhere | None:
    """Where ``job`` shows a summary of ``channel_id`` outside it, when a member asked; None
    when it stays in the channel or with that member, or when the operator asked (an API key
    or the command line: the operator's own trust, which the policy does not bind)."""
    requester = job.requested_by or ""
    if params.part_of is not None or not requester.isdigit():
        return None  # a part's channel was checked against its digest's audience
    channels: set[str] = set()
    beyond = False
    pending = [target.model_dump(mode="json") for target in params.destinations]
    while pending:
        target = pending.pop()
        if isinstance(target.get("fallback"), dict):
            pending.append(target["fallback"])
        kind = target.get("kind")
        if kind in ("channel", "thread"):
            channels.add(str(target["channel_id"]))
        elif kind == "dm":
            beyond |= str(target.get("user_id")) != requester
        elif kind in ("webhook", "discord_webhook"):
            beyond = True
        # A follow-up is seen where its command ran, which its fallback names.
    channels.discard(channel_id)
    if not channels and not beyond:
        return None
    return _ShownElsewhere(requester, frozenset(channels), beyond)


@dataclass(frozen=True)
class _ServerRules:
    """What a guild's admins keep out of every summary, and (under the ``same_channel``
    policy) where a member's job may not show a private channel's summary."""

    excluded: frozenset[str]
    no_private: bool
    elsewhere: _ShownElsewhere | None = None


def _server_rules(
    services: Services, guild_id: str | None, elsewhere: _ShownElsewhere | None
) -> _ServerRules | None:
    """``guild_id``'s rules for this job, or None when none apply (most jobs: then fetch makes
    no Discord request beyond the channel read it makes anyway)."""
    if guild_id is None:
        return None
    with one_statement(services.session_factory) as connection:
        row = connection.execute(_SERVER_RULES, {"guild_id": guild_id}).first()
    # A guild that never changed its settings has the default policy, same_channel.
    policy = PrivateChannelPolicy(
        row.private_channel_policy if row is not None else PrivateChannelPolicy.SAME_CHANNEL
    )
    rules = _ServerRules(
        excluded=frozenset((row.excluded_channel_ids if row is not None else None) or ()),
        no_private=policy is PrivateChannelPolicy.DENY,
        elsewhere=elsewhere if policy is PrivateChannelPolicy.SAME_CHANNEL else None,
    )
    return rules if rules.excluded or rules.no_private or rules.elsewhere else None


def _view(client: DiscordClient, raw: dict[str, Any]) -> ChannelView:
    """The channel of ``raw`` (a thread with its parent) for permission checks."""
    kind = ChannelKind(int(raw.get("type") or 0))
    parent_id = raw.get("parent_id") if kind.is_thread else None
    parent = channel_from_json(client.get_channel(str(parent_id)).raw) if parent_id else None
    return channel_from_json(raw, parent=parent)


def _shows_outside(client: DiscordClient, source: ChannelView, elsewhere: _ShownElsewhere) -> bool:
    if elsewhere.beyond:
        return True
    for channel_id in elsewhere.channel_ids:
        try:
            destination = _view(client, client.get_channel(channel_id).raw)
        except NotFound:
            return True  # not a thread of the source as far as anyone can tell
        if not within(source, destination):
            return True
    return False


def _is_admin(client: DiscordClient, guild: GuildView, guild_id: str, user_id: str) -> bool:
    member = client.get_member(guild_id, user_id)
    return member is not None and is_guild_admin(guild, member_from_json(member))


def _server_rule_refusal(
    client: DiscordClient, rules: _ServerRules, channel: Channel, guild_id: str
) -> str | None:
    """Why ``rules`` keep ``channel`` (as just read from Discord) out of this summary, or None.

    The rules every producer's job obeys, whoever asked (the bot checks them too, to answer
    at once, but an API key or a hand-written row must not get past them, and a schedule's
    channel may have become private since): a channel the admins excluded (with its parent,
    and a thread's parent's category); under the "never" private-channel policy, a private
    channel or thread; under "same channel", a private one whose summary a member's job
    would show outside it, unless that member is an administrator (they set the policy).
    """
    raw = channel.raw
    view = _view(client, raw)
    # The channel, its category or (a thread) its channel, and that channel's category.
    related = {view.id, view.category_id}
    if view.parent is not None:
        related |= {view.parent.id, view.parent.category_id}
    if {str(r) for r in related if r} & rules.excluded:
        return "excluded from summaries by this server's admins"
    if not rules.no_private and rules.elsewhere is None:
        return None
    guild = guild_from_json(client.get_guild(guild_id))
    if everyone_can_view(guild, view):
        return None
    if rules.no_private:
        return PRIVATE_DENIED
    elsewhere = rules.elsewhere
    assert elsewhere is not None
    if _shows_outside(client, view, elsewhere) and not _is_admin(
        client, guild, guild_id, elsewhere.requester
    ):
        return PRIVATE_ELSEWHERE
    return None


def _open_discord(
    services: Services, job: Job, params: JobParams, source: DiscordChannelSource, *, limit: int
) -> _Opened:
    client = services.require_discord()
    elsewhere = _shown_elsewhere(job, params, source.channel_id)
    rules = _server_rules(services, job.guild_id, elsewhere)
    # Under rules the channel is read afresh: its permission overwrites decide "private", and
    # a remembered answer may hold old ones.  The guild boundary below reads the same answer.
    found, channel = client.channel_and_info(source.channel_id, fresh=rules is not None)
    if job.guild_id is None or channel.guild_id != job.guild_id:
        log.warning("fetch.cross_guild", channel_guild=channel.guild_id, job_guild=job.guild_id)
        raise PermanentError(
            f"channel {source.channel_id} belongs to guild {channel.guild_id}, not to the "
            f"job's guild {job.guild_id}",
            user_message="channel is not in this server",
        )
    refusal = None if rules is None else _server_rule_refusal(client, rules, found, job.guild_id)
    if refusal is not None:
        log.info("fetch.refused_by_server_rules", channel_id=source.channel_id, reason=refusal)
        raise PermanentError(
            f"channel {source.channel_id}: {refusal}",
            user_message=f"channel {source.channel_id} is {refusal}",
        )
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
    return _Opened(channel, source.limit if after is None else None, 0, messages)


def _sanitized(opened: _Opened) -> _Opened:
    # The one door for untrusted text: everything the cache, the summarizers and the stored
    # summary see is neutralised and redacted here, whatever the source.
    return replace(
        opened,
        channel=sanitize_channel(opened.channel),
        messages=sanitize_messages(opened.messages),
    )


@contextmanager
def _open(services: Services, job: Job, params: JobParams, *, limit: int) -> Iterator[_Opened]:
    source = params.source
    # Several channels are planned (run_plan), never opened as one conversation.
    assert not isinstance(source, DiscordServerSource)
    if isinstance(source, DiscordChannelSource):
        yield _sanitized(_open_discord(services, job, params, source, limit=limit))
        return
    with _open_document(services, job, source, limit=limit) as opened:
        yield _sanitized(opened)


class _ReaderTally:
    """How the messages of a catch-up's channel involve its reader: mentions of them, replies
    to them, and whether they wrote there (the ranking of :mod:`shared.summarize.digest`)."""

    #: Involving messages remembered by id (the ranking only needs a handful).
    KEEP = 50

    def __init__(self, reader: str) -> None:
        self.reader = reader
        self.mentions = self.replies = 0
        self.took_part = False
        self.ids: list[str] = []

    def add(self, page: list[ChatMessage]) -> None:
        for message in page:
            if message.author_id == self.reader:
                self.took_part = True
                continue
            mentioned = self.reader in message.extra.get("mention_ids", ())
            replied = message.extra.get("reply_to_author") == self.reader
            self.mentions += mentioned
            self.replies += replied and not mentioned
            if (mentioned or replied) and len(self.ids) < self.KEEP:
                self.ids.append(message.id)

    def progress(self) -> dict[str, object]:
        return {
            "reader": {
                "mentions": self.mentions,
                "replies": self.replies,
                "took_part": self.took_part,
                "involved_ids": self.ids,
            }
        }


def _fill_cache(
    services: Services,
    job: Job,
    opened: _Opened,
    tally: _ReaderTally | None,
    progress: dict[str, object],
) -> int | None:
    """Stream the messages into the cache; the count, or None when the job ended meanwhile.

    The job moves to ``fetching`` only once a page came back full, i.e. when the fetch takes
    more than one page: a window of one page is recorded by the move to ``summarizing`` alone.
    """
    key = str(job.id)
    page = _next_page(opened, tally)
    if len(page) < PAGE_SIZE:
        # The whole window in one page: the entry is written and completed in one go.
        services.cache.store(key, page, _done(opened, len(page)))
        return len(page)
    services.cache.begin(key)
    fetched = services.cache.append(key, page)
    started = False
    while True:
        progress["messages_fetched"] = fetched
        alive = (
            _started(services, job, progress)
            if not started
            else _heartbeat(services, job, progress)
        )
        started = True
        if not alive:
            _abandon(services, key)
            return None
        page = _next_page(opened, tally)
        fetched += services.cache.append(key, page)
        if len(page) < PAGE_SIZE:
            break  # the stream ended: the move to summarizing records the count
    services.cache.complete(key, _done(opened, fetched))
    return fetched


def _next_page(opened: _Opened, tally: _ReaderTally | None) -> list[ChatMessage]:
    page = list(islice(opened.messages, PAGE_SIZE))
    if tally is not None:
        tally.add(page)
    return page


def _done(opened: _Opened, count: int) -> CachedFetch:
    return CachedFetch(channel=opened.channel, count=count, skipped=opened.skipped)


def _started(services: Services, job: Job, progress: dict[str, object]) -> bool:
    """Move the job to ``fetching``; a job already summarizing (its cache being filled again)
    keeps its state and only beats.  False when the job ended meanwhile."""
    moved = lifecycle.move(
        services.session_factory,
        job.id,
        lifecycle.Move.START_FETCH,
        now=services.clock(),
        progress=progress,
    )
    return moved is not None or _heartbeat(services, job, progress)


def _heartbeat(services: Services, job: Job, progress: dict[str, object]) -> bool:
    return lifecycle.heartbeat(
        services.session_factory, job.id, now=services.clock(), progress=progress
    )


def _abandon(services: Services, key: str) -> None:
    log.info("fetch.abandoned", reason="job ended meanwhile")
    services.cache.delete(key)


def run_fetch(services: Services, job: Job) -> list[Step]:
    """Fetch a job's messages into the cache and hand the job to the summarize stage.

    Safe to run twice: a job already summarizing whose messages are cached only has its next
    stage published again; a half-filled cache entry from a dead attempt is rewritten.  A job
    in ``summarizing`` whose cache was lost (expired, or Redis wiped) has it filled again
    without moving backwards.
    """
    params = parse_params(job.params)
    if isinstance(params.source, DiscordServerSource):
        return run_plan(services, job, params)
    if job.status == JobStatus.SUMMARIZING.value and services.cache.get(str(job.id)):
        return [Step(SUMMARIZE, (str(job.id),))]
    settings = services.settings
    limit = min(params.max_messages or settings.max_messages, settings.max_messages)
    reader = params.part_of.focus_user_id if params.part_of is not None else None
    tally = _ReaderTally(reader) if reader is not None else None
    with _open(services, job, params, limit=limit) as opened:
        # Opening checked the channel's guild; no history has been read yet.
        progress: dict[str, object] = {"messages_total": opened.total, "messages_fetched": 0}
        fetched = _fill_cache(services, job, opened, tally, progress)
    if fetched is None:
        return []
    steps = lifecycle.move(
        services.session_factory,
        job.id,
        lifecycle.Move.FETCHED,
        now=services.clock(),
        progress={
            "messages_total": opened.total,
            "messages_fetched": fetched,
            **(tally.progress() if tally else {}),
        },
        message_count=fetched,
    )
    if steps is None:
        _abandon(services, str(job.id))
        return []
    log.info("fetch.done", messages=fetched, skipped=opened.skipped)
    return steps
