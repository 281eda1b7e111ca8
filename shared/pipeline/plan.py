"""The fetch stage of a multi-channel job: choose its channels, then fan out one part per channel.

A digest of a server, a category or a list of channels, and a member's catch-up, run as one
*parent* job and one *part* job per channel with something new.  This stage, run for the parent
on the fetch queue, reads the guild's shape once (:func:`shared.discord.audience.load_snapshot`)
and:

1. lists the candidate channels: the scope's text and announcement channels with their active
   threads, and the posts of its forums;
2. keeps only the channels every member of the job's *audience* can read (the members who can
   see a destination channel, or the one member who asked) and the bot can read; the others are
   recorded with the reason, for the person who set the job up and never for the audience;
3. for a catch-up, finds the reader's latest message (newest pages first, stopping as soon as a
   page is older than the best time found so far) and starts the window there;
4. names channels whose last message is older than the window *quiet* without reading them;
5. records one part job per remaining channel (an ordinary channel job: fetched, checked against
   the guild, summarized and cached like any other, on any worker, under the shared rate
   limits), each reading at most its share of the job's message limit (:func:`part_share`),
   stores the plan on the parent and publishes the parts' fetches.

The parent then waits in ``summarizing``; each part that ends wakes it (the task decorator), and
:mod:`shared.pipeline.compose` builds the summary once every part has ended.  Part ids are
derived from the parent's id and the channel's, so a second run of this stage records nothing
twice.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

import structlog

from schema.models.jobs import Job, JobStatus
from schema.models.tenancy import GuildSettings, PrivateChannelPolicy
from shared import lifecycle
from shared.db.engine import reading_session
from shared.db.rows import add_unless_present
from shared.discord.audience import (
    GuildSnapshot,
    LeftOut,
    load_snapshot,
    member_from_json,
    readable_by_all,
)
from shared.discord.client import DiscordClient
from shared.discord.permissions import ChannelKind, ChannelView, MemberView, everyone_can_view
from shared.domain.messages import snowflake_time
from shared.errors import PermanentError
from shared.jobs import (
    FETCH,
    PART_ORIGIN,
    SUMMARIZE,
    AudienceChannel,
    DiscordChannelSource,
    DiscordServerSource,
    JobParams,
    PartOf,
    Step,
)
from shared.pipeline.services import Services
from shared.summarize.sanitize import sanitize_name, sanitize_text

__all__ = ["PART_FLOOR", "PRIVATE_DENIED", "SCAN_PAGES", "part_id", "part_share", "run_plan"]

log = structlog.get_logger(__name__)

#: Pages of 100 messages read per channel, at most, to find a catch-up reader's last message.
SCAN_PAGES = 5

#: Why a private channel is left out under the "never" private-channel policy.
PRIVATE_DENIED = "private, and the server never summarizes private channels"

_MESSAGE_CHANNELS = frozenset({ChannelKind.TEXT, ChannelKind.ANNOUNCEMENT})
_POST_CHANNELS = frozenset({ChannelKind.FORUM, ChannelKind.MEDIA})


def part_id(parent_id: uuid.UUID, channel_id: str) -> uuid.UUID:
    """The id of a parent job's part for one channel (stable, so a rerun finds it)."""
    return uuid.uuid5(parent_id, f"part:{channel_id}")


def _not_here(what: str, channel_id: str) -> PermanentError:
    return PermanentError(
        f"{what} {channel_id} is not in this server",
        user_message=f"{what} {channel_id} is not in this server (or the bot cannot see it)",
    )


def _threads_of(snapshot: GuildSnapshot, parent: int) -> list[int]:
    return sorted(
        cid
        for cid, view in snapshot.channels.items()
        if view.is_thread and view.parent is not None and view.parent.id == parent
    )


def _expand(snapshot: GuildSnapshot, roots: Iterable[ChannelView]) -> list[int]:
    """Message channels with their active threads, forum posts, and threads as given."""
    out: list[int] = []
    for view in roots:
        if view.is_thread:
            out.append(view.id)
        elif view.kind in _MESSAGE_CHANNELS:
            out += [view.id, *_threads_of(snapshot, view.id)]
        elif view.kind in _POST_CHANNELS:
            out += _threads_of(snapshot, view.id)
        elif view.kind is ChannelKind.CATEGORY:
            out += _expand(snapshot, _in_category(snapshot, view.id))
    return list(dict.fromkeys(out))


def _in_category(snapshot: GuildSnapshot, category: int) -> list[ChannelView]:
    return sorted(
        (v for v in snapshot.channels.values() if not v.is_thread and v.category_id == category),
        key=lambda v: v.id,
    )


def candidates(snapshot: GuildSnapshot, source: DiscordServerSource) -> list[int]:
    """The channels and threads a job's scope covers, before the audience is considered."""
    if source.channel_ids:
        roots = []
        for channel_id in source.channel_ids:
            view = snapshot.channels.get(int(channel_id))
            if view is None:
                raise _not_here("channel", channel_id)
            roots.append(view)
        return _expand(snapshot, roots)
    if source.category_id is not None:
        category = snapshot.channels.get(int(source.category_id))
        if category is None or category.kind is not ChannelKind.CATEGORY:
            raise _not_here("category", source.category_id)
        return _expand(snapshot, [category])
    tops = sorted(
        (v for v in snapshot.channels.values() if not v.is_thread),
        key=lambda v: (v.category_id or 0, v.id),
    )
    return _expand(snapshot, tops)


def audience_members(
    client: DiscordClient, snapshot: GuildSnapshot, source: DiscordServerSource
) -> list[MemberView] | None:
    """Everyone the summary is for; None when a channel's viewers cannot be known."""
    members: dict[int, MemberView] = {}
    for entry in source.audience:
        if isinstance(entry, AudienceChannel):
            if int(entry.channel_id) not in snapshot.channels:
                raise _not_here("channel", entry.channel_id)
            viewers = snapshot.viewers(int(entry.channel_id))
            if viewers is None:
                return None
            members.update((m.id, m) for m in viewers)
            continue
        member = snapshot.member(int(entry.user_id))
        if member is None:
            data = client.get_member(source.guild_id, entry.user_id)
            if data is None:
                raise _not_here("member", entry.user_id)
            member = member_from_json(data)
        members[member.id] = member
    return list(members.values())


def _audience_label(snapshot: GuildSnapshot, source: DiscordServerSource) -> str:
    only = source.audience[0] if len(source.audience) == 1 else None
    if isinstance(only, AudienceChannel):
        view = snapshot.channels.get(int(only.channel_id))
        return f"members who can see #{view.name if view is not None else only.channel_id}"
    return "members of the audience"


def _needs_members(source: DiscordServerSource) -> bool:
    return any(isinstance(a, AudienceChannel) for a in source.audience)


def last_message_of(
    client: DiscordClient,
    snapshot: GuildSnapshot,
    channels: Sequence[int],
    user_id: str,
    *,
    after: datetime,
) -> datetime:
    """The time of ``user_id``'s latest message in ``channels``, or ``after`` when none is
    newer.  Channels are read newest first, and each stops at a page older than the best time
    found so far, so the member's own activity keeps the scan short."""
    best = after
    order = sorted(channels, key=lambda c: -(snapshot.last_message_ids.get(c) or 0))
    for channel_id in order:
        last = snapshot.last_message_ids.get(channel_id)
        if last is not None and snowflake_time(last) <= best:
            continue
        cursor: str | None = None
        for _ in range(SCAN_PAGES):
            page = client.get_messages(str(channel_id), limit=100, before=cursor)
            mine = [m for m in page if str((m.get("author") or {}).get("id")) == user_id]
            if mine:
                best = max(best, snowflake_time(mine[0]["id"]))
                break
            if len(page) < 100 or snowflake_time(page[-1]["id"]) <= best:
                break
            cursor = str(page[-1]["id"])
    return best


def _name(view: ChannelView) -> tuple[str, str | None]:
    parent = view.parent.name if view.is_thread and view.parent is not None else None
    return view.name or str(view.id), parent


#: Messages each channel of a multi-channel job may read at least, however many channels.
PART_FLOOR = 500


def part_share(asked: int | None, deployment: int, parts: int) -> int:
    """Messages each of ``parts`` channels may read: the job's limit (``asked``, capped by the
    deployment's ``MAX_MESSAGES``) is for the whole job, shared evenly, but never below
    :data:`PART_FLOOR` (or the whole limit, when that is smaller), so each channel says
    something.  Without the share, one digest of a large server with a window years
    long read ``MAX_MESSAGES`` from every channel, under the rate limits every guild shares."""
    budget = min(asked or deployment, deployment)
    return max(min(PART_FLOOR, budget), budget // max(1, parts))


def _part(
    job: Job,
    params: JobParams,
    source: DiscordServerSource,
    channel_id: int,
    since: datetime,
    max_messages: int,
) -> Job:
    part = JobParams(
        source=DiscordChannelSource(
            guild_id=source.guild_id,
            channel_id=str(channel_id),
            after=since,
            before=source.before,
        ),
        format=params.format,
        language=params.language,
        max_messages=max_messages,
        part_of=PartOf(job_id=job.id, focus_user_id=source.focus_user_id),
    )
    return Job(
        id=part_id(job.id, str(channel_id)),
        origin=PART_ORIGIN,
        status=JobStatus.QUEUED.value,
        guild_id=source.guild_id,
        channel_id=str(channel_id),
        requested_by=job.requested_by,
        params=part.model_dump(mode="json"),
        progress={},
        redeliveries=0,
    )


def _without_excluded(
    services: Services, snapshot: GuildSnapshot, guild_id: str, channel_ids: list[int]
) -> tuple[list[int], list[LeftOut]]:
    """Channels the server's rules keep out of every summary are left out, as for a
    one-channel summary: those its admins excluded (a thread or channel is excluded with its
    parent or category), and, when the server never summarizes private channels, every
    private one (a channel @everyone cannot view, and every private thread) whoever the
    audience is."""
    with reading_session(services.session_factory) as session:
        row = session.get(GuildSettings, guild_id)
    excluded = {int(c) for c in (row.excluded_channel_ids if row is not None else [])}
    no_private = row is not None and row.private_channel_policy == PrivateChannelPolicy.DENY.value
    kept: list[int] = []
    left_out: list[LeftOut] = []
    for channel_id in channel_ids:
        view = snapshot.channels[channel_id]
        parent = view.parent
        related = {channel_id, view.category_id}
        if parent is not None:
            related |= {parent.id, parent.category_id}
        name, _ = _name(view)
        if related & excluded:
            left_out.append(LeftOut(channel_id, name, "excluded from summaries by the server"))
        elif no_private and not everyone_can_view(snapshot.guild, view):
            left_out.append(LeftOut(channel_id, name, PRIVATE_DENIED))
        else:
            kept.append(channel_id)
    return kept, left_out


def _left_out_json(items: Sequence[LeftOut]) -> list[dict[str, str]]:
    return [
        {
            "channel_id": str(i.channel_id),
            "name": sanitize_name(i.name),
            "reason": sanitize_text(i.reason),
        }
        for i in items
    ]


def _clean(text: str | None) -> str | None:
    # Channel, thread and server names come from Discord as anyone with Manage Channels wrote
    # them: they reach the stored plan and the summary's section titles through the same door
    # as message text (neutralised and redacted), and like every name they are one line.
    return None if text is None else sanitize_name(text)


def run_plan(services: Services, job: Job, params: JobParams) -> list[Step]:
    """Plan a multi-channel job and publish its parts (see the module docstring)."""
    source = params.source
    assert isinstance(source, DiscordServerSource)
    if job.status == JobStatus.SUMMARIZING.value:
        return [Step(SUMMARIZE, (str(job.id),))]
    if job.guild_id != source.guild_id:
        raise PermanentError(
            f"job guild {job.guild_id} differs from its source's guild {source.guild_id}",
            user_message="the channels are not in this server",
        )
    client = services.require_discord()
    now = services.clock()
    lifecycle.move(services.session_factory, job.id, lifecycle.Move.START_FETCH, now=now)
    snapshot = load_snapshot(client, source.guild_id, with_members=_needs_members(source))
    if str(snapshot.guild.id) != source.guild_id:
        raise _not_here("guild", source.guild_id)
    audience = audience_members(client, snapshot, source)
    allowed, excluded = _without_excluded(
        services, snapshot, source.guild_id, candidates(snapshot, source)
    )
    kept, left_out = readable_by_all(
        snapshot, audience, allowed, audience_label=_audience_label(snapshot, source)
    )
    left_out = [*excluded, *left_out]
    since = source.after
    if source.since_last_message and source.focus_user_id is not None:
        since = last_message_of(client, snapshot, kept, source.focus_user_id, after=since)
    active: list[int] = []
    quiet: list[int] = []
    for channel_id in kept:
        last = snapshot.last_message_ids.get(channel_id)
        # A channel whose newest message predates the window has nothing new: not read at all.
        (quiet if last is not None and snowflake_time(last) < since else active).append(channel_id)
    share = part_share(params.max_messages, services.settings.max_messages, len(active))
    parts = [_part(job, params, source, cid, since, share) for cid in active]
    plan = {
        "scope_name": _scope_name(snapshot, source),
        "since": since.isoformat(),
        "messages_per_channel": share,
        "parts": [_entry(snapshot, cid, str(part_id(job.id, str(cid)))) for cid in active],
        "quiet": [_entry(snapshot, cid) for cid in quiet],
        "left_out": _left_out_json(left_out),
    }
    with services.session_factory() as session, session.begin():
        for part in parts:
            add_unless_present(session, part)
        steps = lifecycle.move_in(
            session,
            job.id,
            lifecycle.Move.FETCHED,
            now=services.clock(),
            progress={"plan": plan},
            message_count=0,
        )
    if steps is None:
        return []
    log.info(
        "plan.done",
        parts=len(parts),
        quiet=len(quiet),
        left_out=len(left_out),
        audience=None if audience is None else len(audience),
    )
    # The parts first: the parent's summarize step only waits for them.
    return [Step(FETCH, (str(p.id),)) for p in parts] + steps


def _entry(snapshot: GuildSnapshot, channel_id: int, job_id: str | None = None) -> dict[str, Any]:
    name, parent = _name(snapshot.channels[channel_id])
    entry: dict[str, Any] = {
        "channel_id": str(channel_id),
        "name": _clean(name),
        "parent": _clean(parent),
    }
    if job_id is not None:
        entry["job_id"] = job_id
    return entry


def _scope_name(snapshot: GuildSnapshot, source: DiscordServerSource) -> str:
    name = snapshot.name
    if source.category_id is not None:
        name = snapshot.channels[int(source.category_id)].name or name
    return sanitize_name(name)
