"""The parameters of digest and catch-up jobs, built one way for every producer.

A *digest* summarizes what a :class:`DigestScope` covers over a window: one channel, or several
channels of one guild (the whole server, a category, or a list of channels) for the readers of
its destinations; a *catch-up* summarizes the whole server for one member, from their last
message on (or from a time they give).  The API, the bot and the schedule dispatcher all build
their :class:`~shared.jobs.JobParams` here and submit them with
:func:`shared.services.jobs.submit_job`, which authorizes them (guild boundary, an audience that
covers every destination); the worker then keeps only the channels the whole audience can read
(:mod:`shared.pipeline.plan`).  Nothing here reads the database or Discord.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from pydantic import BaseModel

from schema.models.schedules import Schedule, ScheduleScope
from shared.errors import InvalidInputError
from shared.jobs import AudienceChannel, AudienceMember, JobParams, parse_params
from shared.services.jobs import audience_of
from shared.summarize.content import SummaryFormat

__all__ = ["CATCHUP_LOOKBACK", "DigestScope", "catchup_params", "digest_params"]

#: How far back a catch-up reaches at most (and where it starts for a member with no message).
CATCHUP_LOOKBACK = timedelta(days=7)

#: A future ``since`` this close to the clock is taken as "now" (clocks of callers drift).
_CLOCK_SKEW = timedelta(minutes=5)


@dataclass(frozen=True, kw_only=True)
class DigestScope:
    """What a digest covers in guild ``guild_id``, as a request or a schedule states it.

    ``channel_id`` alone is one channel or thread.  Otherwise the digest covers several
    channels: ``channel_ids`` (with their active threads and forum posts), else
    ``category_id``, else the whole server.
    """

    guild_id: str
    channel_id: str | None = None
    category_id: str | None = None
    channel_ids: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.channel_id is not None and (self.category_id is not None or self.channel_ids):
            raise ValueError("a digest of one channel has no category or channel list")

    @classmethod
    def of_schedule(cls, schedule: Schedule) -> DigestScope:
        """What ``schedule`` covers: its channel, or the channels of its scope (whose
        ``channel_id`` is then where the digest is posted, not what it covers)."""
        if ScheduleScope(schedule.scope).several:
            return cls(
                guild_id=schedule.guild_id,
                category_id=schedule.scope_category_id,
                channel_ids=tuple(schedule.scope_channel_ids),
            )
        return cls(guild_id=schedule.guild_id, channel_id=schedule.channel_id)


def _plain(item: BaseModel | Mapping[str, Any]) -> dict[str, Any]:
    return item.model_dump(mode="json") if isinstance(item, BaseModel) else dict(item)


def _params(
    source: dict[str, Any],
    *,
    format: SummaryFormat,
    language: str | None,
    destinations: Sequence[BaseModel | Mapping[str, Any]],
) -> JobParams:
    return parse_params(
        {
            "source": source,
            "format": SummaryFormat(format).value,
            "language": language,
            "destinations": [_plain(d) for d in destinations],
        }
    )


def catchup_params(
    *,
    guild_id: str,
    user_id: str,
    since: datetime | None,
    now: datetime,
    format: SummaryFormat,
    language: str | None,
    destinations: Sequence[BaseModel | Mapping[str, Any]],
) -> JobParams:
    """A catch-up of the whole server for member ``user_id``, who alone is its audience.

    With ``since`` the window starts there; without it, at the member's latest message within
    the last :data:`CATCHUP_LOOKBACK` (the start of the lookback when they wrote nothing).
    What involves the member is ranked first.  Raises :class:`InvalidInputError` for a
    ``since`` in the future or older than the lookback.
    """
    if since is not None:
        if since.tzinfo is None:
            raise InvalidInputError("since needs a time zone, e.g. 2026-03-01T08:00:00Z")
        if since > now + _CLOCK_SKEW:
            raise InvalidInputError(
                "since is in the future; give a past time, or leave it out to start at your "
                "last message"
            )
        if since < now - CATCHUP_LOOKBACK:
            raise InvalidInputError(
                f"since is more than {CATCHUP_LOOKBACK.days} days ago; a catch-up reaches back "
                f"{CATCHUP_LOOKBACK.days} days at most: give a later time, or a digest of the "
                "channels for a longer window"
            )
    source = {
        "kind": "discord_server",
        "guild_id": guild_id,
        "after": min(since, now) if since is not None else now - CATCHUP_LOOKBACK,
        "audience": [AudienceMember(user_id=user_id).model_dump()],
        "focus_user_id": user_id,
        "since_last_message": since is None,
    }
    return _params(source, format=format, language=language, destinations=destinations)


def digest_params(
    scope: DigestScope,
    *,
    after: datetime,
    before: datetime | None,
    format: SummaryFormat,
    language: str | None,
    destinations: Sequence[BaseModel | Mapping[str, Any]],
    audience: Sequence[AudienceChannel | AudienceMember | Mapping[str, Any]] | None = None,
) -> JobParams:
    """A digest of ``scope`` from ``after`` to ``before``.

    A digest of one channel is a job of that channel, read by whoever reads it there, so it
    takes no ``audience``.  A digest of several channels only contains what its ``audience``
    may read; None means the readers of the destinations (:func:`audience_of`).  One that only
    goes outside Discord (webhooks) has no readers Discord knows of, so it needs an explicit
    audience.  Raises :class:`InvalidInputError` for parameters that cannot be a job.
    """
    if scope.channel_id is not None:
        if audience is not None:
            raise InvalidInputError("a digest of one channel is read by that channel's readers")
        channel = {
            "kind": "discord_channel",
            "guild_id": scope.guild_id,
            "channel_id": scope.channel_id,
            "after": after,
            "before": before,
        }
        return _params(channel, format=format, language=language, destinations=destinations)
    plain = [_plain(d) for d in destinations]
    if audience is None:
        readers: list[dict[str, Any]] = [a.model_dump() for a in audience_of(plain)]
        if not readers:
            raise InvalidInputError(
                "a digest sent outside Discord needs an audience: give audience "
                "[{kind: channel, channel_id}] (its viewers) or [{kind: member, user_id}]"
            )
    else:
        readers = [_plain(a) for a in audience]
    source = {
        "kind": "discord_server",
        "guild_id": scope.guild_id,
        "category_id": scope.category_id,
        "channel_ids": list(scope.channel_ids),
        "after": after,
        "before": before,
        "audience": readers,
    }
    return _params(source, format=format, language=language, destinations=plain)
