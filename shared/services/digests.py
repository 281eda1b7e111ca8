"""The parameters of a multi-channel job, built one way for every producer.

A *digest* summarizes several channels of one guild (the whole server, a category, or a list of
channels) for the readers of its destinations; a *catch-up* summarizes the whole server for one
member, from their last message on (or from a time they give).  The API and the bot both build
their :class:`~shared.jobs.JobParams` here and submit them with
:func:`shared.services.jobs.submit_job`, which authorizes them (guild boundary, an audience that
covers every destination); the worker then keeps only the channels the whole audience can read
(:mod:`shared.pipeline.plan`).  Nothing here reads the database or Discord.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

from pydantic import BaseModel

from shared.errors import InvalidInputError
from shared.jobs import AudienceChannel, AudienceMember, JobParams, parse_params
from shared.services.jobs import audience_of
from shared.summarize.content import SummaryFormat

__all__ = ["CATCHUP_LOOKBACK", "catchup_params", "digest_params"]

#: How far back a catch-up reaches at most (and where it starts for a member with no message).
CATCHUP_LOOKBACK = timedelta(days=7)

#: A future ``since`` this close to the clock is taken as "now" (clocks of callers drift).
_CLOCK_SKEW = timedelta(minutes=5)


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
    *,
    guild_id: str,
    category_id: str | None,
    channel_ids: Sequence[str],
    after: datetime,
    before: datetime | None,
    format: SummaryFormat,
    language: str | None,
    destinations: Sequence[BaseModel | Mapping[str, Any]],
    audience: Sequence[AudienceChannel | AudienceMember | Mapping[str, Any]] | None,
) -> JobParams:
    """A digest of several channels: ``channel_ids``, else ``category_id``, else the server.

    ``audience`` None means the readers of the destinations (:func:`audience_of`).  A digest
    that only goes outside Discord (webhooks) has no readers Discord knows of, so it needs an
    explicit audience.  Raises :class:`InvalidInputError` for parameters that cannot be a job.
    """
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
        "guild_id": guild_id,
        "category_id": category_id,
        "channel_ids": list(channel_ids),
        "after": after,
        "before": before,
        "audience": readers,
    }
    return _params(source, format=format, language=language, destinations=plain)
