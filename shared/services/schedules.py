"""Digest schedules: create, change, pause or resume, and delete them, with one cap per guild.

A schedule summarizes one channel or thread of the actor's guild on a recurring time, in its
own time zone, and delivers to a destination of that guild; both are checked against the guild
boundary here (and again by the workers when each digest runs).  ``next_run_at`` always says
when it fires next: recomputed from now when the time or zone changes or it is resumed, cleared
while it is paused.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from schema.models.schedules import EmptyPolicy, Schedule
from shared.digests.spec import ScheduleSpec, next_run, parse_schedule
from shared.errors import ConflictError, InvalidInputError, NotFoundError
from shared.services.core import Actor, Core, locked_guild_row
from shared.services.jobs import check_destination
from shared.summarize.content import SummaryFormat
from shared.tenancy import require_channel

__all__ = [
    "ScheduleRequest",
    "create_schedule",
    "delete_schedule",
    "find_schedule",
    "set_schedule_enabled",
    "update_schedule",
]

_REF = re.compile(r"^[0-9a-f]{6,32}$")

#: Fields :func:`update_schedule` may change.
_CHANGEABLE = frozenset(
    {"text", "timezone", "format", "language", "destination", "empty_policy", "enabled"}
)


@dataclass(frozen=True)
class ScheduleRequest:
    """A new digest of ``channel_id``: when (words or cron, in ``timezone``), how, and where."""

    channel_id: str
    text: str
    destination: Mapping[str, Any]
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


def _locked(session: Session, guild_id: str, schedule_id: uuid.UUID) -> Schedule:
    return locked_guild_row(session, Schedule, guild_id, schedule_id, what="schedule")


def create_schedule(core: Core, actor: Actor, request: ScheduleRequest) -> Schedule:
    """Store a new schedule, due at its first firing after now.

    Raises :class:`NotFoundError` for a channel or destination outside the actor's guild,
    :class:`InvalidInputError` for a schedule text that cannot be read, and
    :class:`ConflictError` when the guild already has the most schedules allowed.
    """
    guild = _guild(actor)
    spec = _parse(request.text, request.timezone)
    require_channel(core.require_directory(), guild, request.channel_id)
    destination = _check_destination(core, actor, request.destination)
    now = core.clock()
    row = Schedule(
        id=uuid.uuid4(),
        guild_id=guild,
        channel_id=request.channel_id,
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
        # Counted under a lock on the guild's rows, so two creations cannot both pass the cap.
        session.execute(
            select(Schedule.id).where(Schedule.guild_id == guild).with_for_update()
        ).all()
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
    it.  ``language`` may be set to None; every other field must have a value.
    """
    guild = _guild(actor)
    unknown = set(changes) - _CHANGEABLE
    if unknown:
        raise InvalidInputError(f"these schedule fields cannot be changed: {sorted(unknown)}")
    for name, value in changes.items():
        if value is None and name != "language":
            raise InvalidInputError(f"{name} cannot be null; leave it out to keep its value")
    destination = changes.get("destination")
    if destination is not None:
        destination = _check_destination(core, actor, destination)
    now = core.clock()
    with core.session_factory() as session, session.begin():
        row = _locked(session, guild, schedule_id)
        retime = False
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
