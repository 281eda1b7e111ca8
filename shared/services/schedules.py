"""Digest schedules: create, change, pause or resume, and delete them, with one cap per guild.

A schedule covers one channel or thread of the actor's guild, or several (its *scope*: the
whole server, a category, or listed channels, each with their active threads and forum posts),
on a recurring time in its own time zone, and delivers to a destination of that guild.  The
scope, the channels and the destination are checked against the guild boundary here (with the
checks :func:`~shared.services.jobs.submit_job` makes), and again by the workers when each
digest runs.  A digest of several channels is posted in a channel or thread, and contains only
what every reader of it may read; the channels it left out are shown to whoever manages the
schedule (:func:`last_runs`, :class:`ScheduleView`), never to its readers.  ``next_run_at``
always says when it fires next: recomputed from now when the time or zone changes or it is
resumed, cleared while it is paused.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import and_, func, select
from sqlalchemy.orm import Session, sessionmaker

from schema.models.jobs import Job
from schema.models.schedules import EmptyPolicy, Schedule, ScheduleRun, ScheduleScope
from shared.db.locks import lock_guild
from shared.digests.spec import ScheduleSpec, next_run, parse_schedule
from shared.errors import ConflictError, InvalidInputError, NotFoundError
from shared.job_view import LeftOutChannel, left_out_of
from shared.services.core import Actor, Core, locked_guild_row
from shared.services.jobs import check_destination, check_scope
from shared.summarize.content import SummaryFormat
from shared.tenancy import DESTINATION_CHANNEL_KINDS, require_channel

__all__ = [
    "LastRun",
    "ScheduleRequest",
    "ScheduleView",
    "create_schedule",
    "delete_schedule",
    "find_schedule",
    "last_runs",
    "schedule_view",
    "schedule_views",
    "set_schedule_enabled",
    "update_schedule",
]

_REF = re.compile(r"^[0-9a-f]{6,32}$")

#: Fields :func:`update_schedule` may change.
_CHANGEABLE = frozenset(
    {
        "text",
        "timezone",
        "format",
        "language",
        "destination",
        "empty_policy",
        "enabled",
        "scope",
        "category_id",
        "channel_ids",
    }
)
#: Fields :func:`update_schedule` may set to None.
_NULLABLE = frozenset({"language", "category_id"})
#: Changes that decide what a schedule covers, checked together.
_COVERAGE = frozenset({"scope", "category_id", "channel_ids", "destination"})


@dataclass(frozen=True, kw_only=True)
class ScheduleRequest:
    """A new digest: what it covers, when (words or cron, in ``timezone``), how, and where.

    A ``channel`` scope summarizes ``channel_id``.  The other scopes (``server``, ``category``
    with ``category_id``, ``channels`` with ``channel_ids``) are posted in the channel or
    thread of ``destination``, which becomes the schedule's ``channel_id`` (give it, or leave
    it out).
    """

    text: str
    destination: Mapping[str, Any]
    channel_id: str | None = None
    scope: ScheduleScope = ScheduleScope.CHANNEL
    category_id: str | None = None
    channel_ids: Sequence[str] = field(default_factory=tuple)
    timezone: str = "UTC"
    format: SummaryFormat = SummaryFormat.BRIEF
    language: str | None = None
    empty_policy: EmptyPolicy = EmptyPolicy.SKIP
    enabled: bool = True


def _guild(actor: Actor) -> str:
    if actor.guild_id is None:
        raise InvalidInputError("a digest schedule belongs to a server; give its guild id")
    return actor.guild_id


def _parse(text: str, timezone: str) -> ScheduleSpec:
    try:
        return parse_schedule(text.strip(), default_timezone=timezone)
    except InvalidInputError as exc:
        raise InvalidInputError(str(exc), user_message=exc.user_message, field="schedule") from None


def _retime(row: Schedule, now: datetime) -> None:
    spec = ScheduleSpec(cron=row.cron, timezone=row.timezone, description=row.spec)
    row.next_run_at = next_run(spec, now)


def _check_destination(core: Core, actor: Actor, destination: Mapping[str, Any]) -> dict[str, Any]:
    check_destination(core, actor, destination, "destination")
    return dict(destination)


@dataclass(frozen=True)
class _Coverage:
    """What a schedule covers, checked: its scope, its ``channel_id``, category and channels."""

    scope: ScheduleScope
    channel_id: str
    category_id: str | None
    channel_ids: list[str]


def _scope(value: Any) -> ScheduleScope:
    try:
        return ScheduleScope(value)
    except ValueError:
        raise InvalidInputError(
            f"unknown scope {value!r}; use one of {', '.join(s.value for s in ScheduleScope)}",
            field="scope",
        ) from None


def _coverage(
    core: Core,
    guild: str,
    *,
    scope: ScheduleScope,
    channel_id: str | None,
    category_id: str | None,
    channel_ids: Sequence[str],
    destination: Mapping[str, Any],
) -> _Coverage:
    """Check that the scope and its channels go together and belong to ``guild``."""
    if category_id is not None and scope is not ScheduleScope.CATEGORY:
        raise InvalidInputError(
            f"category_id goes with scope 'category', not {scope.value!r}", field="category_id"
        )
    if channel_ids and scope is not ScheduleScope.CHANNELS:
        raise InvalidInputError(
            f"channel_ids go with scope 'channels', not {scope.value!r}", field="channel_ids"
        )
    if not scope.several:
        if channel_id is None:
            raise InvalidInputError(
                "give channel_id: the channel or thread to summarize", field="channel_id"
            )
        require_channel(core.require_directory(), guild, channel_id)
        return _Coverage(scope, channel_id, None, [])
    if destination.get("kind") not in DESTINATION_CHANNEL_KINDS:
        raise InvalidInputError(
            f"a {scope.value} digest is posted in a channel or thread, whose readers decide "
            "which channels it may contain; give a channel or thread destination",
            field="destination",
        )
    posted_in = str(destination.get("channel_id"))
    if channel_id is not None and channel_id != posted_in:
        raise InvalidInputError(
            f"the channel_id of a {scope.value} digest is the channel it is posted in "
            f"({posted_in}); leave it out or give that channel",
            field="channel_id",
        )
    if scope is ScheduleScope.CATEGORY and category_id is None:
        raise InvalidInputError(
            "a category digest needs category_id: the category to summarize", field="category_id"
        )
    if scope is ScheduleScope.CHANNELS and not channel_ids:
        raise InvalidInputError(
            "a digest of listed channels needs channel_ids: the channels to summarize",
            field="channel_ids",
        )
    check_scope(core, guild, category_id=category_id, channel_ids=channel_ids)
    return _Coverage(scope, posted_in, category_id, list(channel_ids))


def _locked(session: Session, guild_id: str, schedule_id: uuid.UUID) -> Schedule:
    return locked_guild_row(session, Schedule, guild_id, schedule_id, what="schedule")


def create_schedule(core: Core, actor: Actor, request: ScheduleRequest) -> Schedule:
    """Store a new schedule, due at its first firing after now.

    Raises :class:`NotFoundError` for a channel, category or destination outside the actor's
    guild, :class:`InvalidInputError` for a schedule text that cannot be read or a scope whose
    parts do not go together (naming the field at fault), and
    :class:`ConflictError` when the guild already has the most schedules allowed.
    """
    guild = _guild(actor)
    spec = _parse(request.text, request.timezone)
    coverage = _coverage(
        core,
        guild,
        scope=_scope(request.scope),
        channel_id=request.channel_id,
        category_id=request.category_id,
        channel_ids=request.channel_ids,
        destination=request.destination,
    )
    destination = _check_destination(core, actor, request.destination)
    now = core.clock()
    row = Schedule(
        id=uuid.uuid4(),
        guild_id=guild,
        channel_id=coverage.channel_id,
        scope=coverage.scope.value,
        scope_category_id=coverage.category_id,
        scope_channel_ids=coverage.channel_ids,
        created_by=actor.requested_by or actor.origin,
        spec=request.text.strip(),
        cron=spec.cron,
        timezone=spec.timezone,
        format=request.format.value,
        language=request.language,
        destination=destination,
        empty_policy=request.empty_policy.value,
        enabled=request.enabled,
        created_at=now,
        updated_at=now,
    )
    if request.enabled:
        _retime(row, now)
    with core.session_factory() as session, session.begin():
        # Racing creations must not all count the same total and pass the cap.
        lock_guild(session, "schedules", guild)
        count = session.scalar(
            select(func.count()).select_from(Schedule).where(Schedule.guild_id == guild)
        )
        if (count or 0) >= core.max_schedules_per_guild:
            raise ConflictError(
                f"this server already has {core.max_schedules_per_guild} digest schedules; "
                "delete one first"
            )
        session.add(row)
    return row


def update_schedule(
    core: Core, actor: Actor, schedule_id: uuid.UUID, changes: Mapping[str, Any]
) -> Schedule:
    """Apply ``changes`` (fields of :class:`ScheduleRequest` but ``channel_id``).

    A new text or time zone, or resuming, recomputes ``next_run_at`` from now; pausing clears
    it.  Resuming checks the schedule's channels and destination against the guild again, as
    creating it did.  ``language`` and ``category_id`` may be set to None; every other field
    must have a value.  A new ``scope`` drops the category and channels of the old one unless
    they are given too; the scope, its channels and the destination are checked together as
    in :func:`create_schedule` (a schedule switched to ``channel`` summarizes its
    ``channel_id``, which for a digest of several channels is where it was posted).
    """
    guild = _guild(actor)
    unknown = set(changes) - _CHANGEABLE
    if unknown:
        raise InvalidInputError(f"these schedule fields cannot be changed: {sorted(unknown)}")
    for name, value in changes.items():
        if value is None and name not in _NULLABLE:
            # Named as the request named it: the schedule's text is its "schedule" field.
            field = "schedule" if name == "text" else name
            raise InvalidInputError(
                f"{field} cannot be null; leave it out to keep its value", field=field
            )
    destination = changes.get("destination")
    coverage = None
    resuming = bool(changes.get("enabled"))
    if _COVERAGE & set(changes) or resuming:
        with core.session_factory() as session:
            current = _locked(session, guild, schedule_id)
        resuming = resuming and not current.enabled
        if _COVERAGE & set(changes) or resuming:
            # A paused schedule may be one the dispatcher paused because it cannot run (its
            # channel left the server): resuming checks it again and says why, rather than
            # answering "resumed" for it to be paused again at its next run.
            coverage = _changed_coverage(core, guild, current, changes, destination)
        if resuming and destination is None:
            _check_destination(core, actor, current.destination)
    if destination is not None:
        destination = _check_destination(core, actor, destination)
    now = core.clock()
    with core.session_factory() as session, session.begin():
        row = _locked(session, guild, schedule_id)
        retime = False
        if coverage is not None:
            row.scope = coverage.scope.value
            row.channel_id = coverage.channel_id
            row.scope_category_id = coverage.category_id
            row.scope_channel_ids = coverage.channel_ids
        if "text" in changes or "timezone" in changes:
            text = changes.get("text", row.spec)
            spec = _parse(text, changes.get("timezone", row.timezone))
            row.spec, row.cron, row.timezone = text.strip(), spec.cron, spec.timezone
            retime = True
        if "format" in changes:
            row.format = SummaryFormat(changes["format"]).value
        if "language" in changes:
            row.language = changes["language"]
        if destination is not None:
            row.destination = destination
        if "empty_policy" in changes:
            row.empty_policy = EmptyPolicy(changes["empty_policy"]).value
        if "enabled" in changes:
            retime = retime or (bool(changes["enabled"]) and not row.enabled)
            row.enabled = bool(changes["enabled"])
        if not row.enabled:
            row.next_run_at = None
        elif retime or row.next_run_at is None:
            _retime(row, now)
        row.updated_at = now
    return row


def _changed_coverage(
    core: Core,
    guild: str,
    row: Schedule,
    changes: Mapping[str, Any],
    destination: Mapping[str, Any] | None,
) -> _Coverage:
    scope = _scope(changes.get("scope", row.scope))
    kept = scope.value == row.scope
    return _coverage(
        core,
        guild,
        scope=scope,
        # A digest of several channels takes its channel from the destination.
        channel_id=None if scope.several else row.channel_id,
        category_id=changes.get("category_id", row.scope_category_id if kept else None),
        channel_ids=changes.get("channel_ids", row.scope_channel_ids if kept else []),
        destination=destination if destination is not None else row.destination,
    )


def set_schedule_enabled(
    core: Core, actor: Actor, schedule_id: uuid.UUID, *, enabled: bool
) -> Schedule:
    """Pause or resume a schedule (resuming fires next at its next time after now)."""
    return update_schedule(core, actor, schedule_id, {"enabled": enabled})


def delete_schedule(core: Core, actor: Actor, schedule_id: uuid.UUID) -> Schedule:
    """Delete a schedule and its run records (digests already sent are not affected)."""
    guild = _guild(actor)
    with core.session_factory() as session, session.begin():
        row = _locked(session, guild, schedule_id)
        session.delete(row)
    return row


def find_schedule(core: Core, actor: Actor, ref: str) -> uuid.UUID:
    """The schedule of the actor's guild whose id starts with ``ref`` (6+ hex digits)."""
    guild = _guild(actor)
    text = ref.strip().lower().replace("-", "")
    if not _REF.match(text):
        raise InvalidInputError(
            f"{ref!r} is not a digest id; use the id shown by /digest list (e.g. 1a2b3c4d)"
        )
    with core.session_factory() as session:
        ids = list(session.scalars(select(Schedule.id).where(Schedule.guild_id == guild)))
    matches = [i for i in ids if i.hex.startswith(text)]
    if not matches:
        raise NotFoundError(f"no digest {ref!r} in this server; see /digest list")
    if len(matches) > 1:
        raise InvalidInputError(f"{ref!r} matches several digests; give more of the id")
    return matches[0]


@dataclass(frozen=True)
class LastRun:
    """A schedule's latest run as whoever manages the schedule reads it: its window, its job
    (None until submitted, or once purged) and the channels the digest left out, with why."""

    window_start: datetime
    window_end: datetime
    job_id: uuid.UUID | None
    status: str | None
    left_out: list[LeftOutChannel]


def last_runs(
    session_factory: sessionmaker[Session], schedule_ids: Sequence[uuid.UUID]
) -> dict[uuid.UUID, LastRun]:
    """The latest run of each schedule that has run, by schedule id (one query)."""
    if not schedule_ids:
        return {}
    latest = (
        select(ScheduleRun.schedule_id, func.max(ScheduleRun.window_start).label("start"))
        .where(ScheduleRun.schedule_id.in_(schedule_ids))
        .group_by(ScheduleRun.schedule_id)
        .subquery()
    )
    query = (
        select(ScheduleRun, Job.status, Job.progress)
        .join(
            latest,
            and_(
                ScheduleRun.schedule_id == latest.c.schedule_id,
                ScheduleRun.window_start == latest.c.start,
            ),
        )
        .outerjoin(Job, Job.id == ScheduleRun.job_id)
    )
    with session_factory() as session:
        rows = session.execute(query).all()
    return {
        run.schedule_id: LastRun(
            window_start=run.window_start,
            window_end=run.window_end,
            job_id=run.job_id if status is not None else None,
            status=status,
            left_out=left_out_of(progress),
        )
        for run, status, progress in rows
    }


class ScheduleView(BaseModel):
    """A schedule as whoever manages it sees it, in the API and in the bot: its settings, when
    it runs in plain words, and its latest run (None before the first).

    ``channel_id`` is the channel summarized or, for a digest of several channels (a ``scope``
    other than ``channel``), the channel it is posted in.  ``spec`` is the schedule as it was
    written.  :func:`schedule_view` reads it from a ``schedules`` row.
    """

    model_config = ConfigDict(frozen=True, from_attributes=True, validate_by_name=True)

    id: uuid.UUID
    scope: str = ScheduleScope.CHANNEL.value
    channel_id: str
    category_id: str | None = Field(default=None, validation_alias="scope_category_id")
    channel_ids: tuple[str, ...] = Field(default=(), validation_alias="scope_channel_ids")
    spec: str
    cron: str
    timezone: str
    format: str
    language: str | None
    destination: dict[str, Any]
    empty_policy: str
    enabled: bool
    next_run_at: datetime | None
    last_run_at: datetime | None = None
    created_by: str
    created_at: datetime
    updated_at: datetime
    last_run: LastRun | None = None

    @property
    def description(self) -> str:
        """When it runs, in plain words."""
        try:
            return parse_schedule(self.spec, default_timezone=self.timezone).description
        except InvalidInputError:
            # A schedule stored under older parsing rules still shows when it runs.
            return f"cron {self.cron!r} ({self.timezone})"

    @property
    def short_id(self) -> str:
        """The first 8 hex digits, enough to name it (see :func:`find_schedule`)."""
        return self.id.hex[:8]

    @property
    def left_out(self) -> list[LeftOutChannel]:
        """The channels its latest digest left out, with why (none before the first run)."""
        return self.last_run.left_out if self.last_run is not None else []


def schedule_view(row: Schedule, last_run: LastRun | None = None) -> ScheduleView:
    """The view of a ``schedules`` row, with its latest run (from :func:`last_runs`)."""
    return ScheduleView.model_validate(row).model_copy(update={"last_run": last_run})


def schedule_views(
    session_factory: sessionmaker[Session], rows: Sequence[Schedule]
) -> list[ScheduleView]:
    """The views of ``rows``, each with its latest run (one query for all)."""
    runs = last_runs(session_factory, [row.id for row in rows])
    return [schedule_view(row, runs.get(row.id)) for row in rows]
