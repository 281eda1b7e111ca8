"""Keep data no longer than each guild allows, and erase a member's identifiers on request.

:func:`purge_expired` runs daily from beat.  For every guild it deletes summaries (their
deliveries and delivery logs go with them, by foreign-key cascade) and finished jobs older than
the guild's ``retention_days`` (:data:`DEFAULT_RETENTION_DAYS` for a guild that never chose),
and it drops the cached messages of jobs that finished recently, in case a stage ended without
removing them.  Data without a guild (CLI runs on one's own machine) is left alone.  Stored
uploads (conversations sent through the API) are deleted with their job by foreign-key cascade;
uploads no job claimed within an hour (a request that died) are deleted too.

:func:`erase_member` removes one member's identifiers from what is stored: from summaries as
:mod:`shared.erasure` describes (their participant entry, citations of their messages, items
drawn only from them, their name in text), ``jobs.requested_by``, ``schedules.created_by``,
``api_keys.created_by``, delivery parameters and their feedback votes; and it deletes every
stored upload that holds their id (:func:`shared.uploads.erase_member_uploads`: a document a
client wrote cannot be rewritten reliably, so the whole upload goes, and a job still reading it
fails saying it was erased).  Their opt-out row is
kept: it is what keeps them out of future summaries.  The API's ``DELETE
/v1/users/{id}/data`` and the ``erase_member`` maintenance task both call it.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import structlog
from sqlalchemy import Text, cast, delete, select, update
from sqlalchemy.orm import Session, sessionmaker

from schema.models.feedback import SummaryFeedback
from schema.models.jobs import Delivery, Job, Summary
from schema.models.schedules import Schedule
from schema.models.tenancy import ALL_GUILDS, ApiKey, GuildSettings, UserOptOut
from shared.cache import MessageCache
from shared.domain.messages import is_snowflake
from shared.erasure import ERASED_NAME, erase_from_content
from shared.errors import InvalidInputError
from shared.lifecycle import FINISHED
from shared.uploads import erase_member_uploads, purge_orphans

__all__ = [
    "DEFAULT_RETENTION_DAYS",
    "ERASED",
    "ErasureResult",
    "PurgeResult",
    "erase_member",
    "purge_expired",
]

log = structlog.get_logger(__name__)

#: Retention of a guild without settings (the ``guild_settings.retention_days`` default).
DEFAULT_RETENTION_DAYS = 90
#: What an erased identifier is replaced with.
ERASED = ERASED_NAME
_FINISHED = [status.value for status in FINISHED]


@dataclass(frozen=True)
class PurgeResult:
    """What :func:`purge_expired` removed."""

    summaries: int
    jobs: int
    caches: int
    guilds: int
    uploads: int = 0


@dataclass(frozen=True)
class ErasureResult:
    """What :func:`erase_member` changed."""

    summaries: int
    jobs: int
    schedules: int
    api_keys: int
    deliveries: int
    feedback: int = 0
    opt_out_kept: bool = False
    uploads: int = 0


def _retention(session: Session, guild_ids: Iterable[str]) -> dict[str, int]:
    ids = list(guild_ids)
    chosen = dict(
        session.execute(
            select(GuildSettings.guild_id, GuildSettings.retention_days).where(
                GuildSettings.guild_id.in_(ids)
            )
        ).all()
    )
    return {guild: int(chosen.get(guild, DEFAULT_RETENTION_DAYS)) for guild in ids}


def _delete_in_batches(
    session_factory: sessionmaker[Session], model: Any, ids_query: Any, *, batch: int
) -> int:
    """Delete the rows ``ids_query`` selects, ``batch`` at a time (short transactions)."""
    total = 0
    while True:
        with session_factory() as session, session.begin():
            ids = list(session.scalars(ids_query.limit(batch)))
            if not ids:
                return total
            session.execute(delete(model).where(model.id.in_(ids)))
            total += len(ids)


def purge_expired(
    session_factory: sessionmaker[Session],
    cache: MessageCache,
    *,
    now: datetime,
    cache_ttl: int,
    batch: int = 500,
) -> PurgeResult:
    """Enforce every guild's retention and clear caches of finished jobs; safe to rerun."""
    youngest_expiry = now - timedelta(days=1)  # retention_days is at least 1
    with session_factory() as session:
        guilds = set(
            session.scalars(
                select(Summary.guild_id)
                .where(Summary.guild_id.is_not(None), Summary.created_at < youngest_expiry)
                .distinct()
            )
        )
        guilds |= set(
            session.scalars(
                select(Job.guild_id)
                .where(
                    Job.guild_id.is_not(None),
                    Job.status.in_(_FINISHED),
                    Job.created_at < youngest_expiry,
                )
                .distinct()
            )
        )
        retention = _retention(session, (g for g in guilds if g is not None))
    summaries = jobs = 0
    for guild_id, days in sorted(retention.items()):
        cutoff = now - timedelta(days=days)
        summaries += _delete_in_batches(
            session_factory,
            Summary,
            # A summary still being delivered is kept until its job ends.
            select(Summary.id)
            .join(Job, Job.id == Summary.job_id)
            .where(
                Summary.guild_id == guild_id,
                Summary.created_at < cutoff,
                Job.status.in_(_FINISHED),
            ),
            batch=batch,
        )
        jobs += _delete_in_batches(
            session_factory,
            Job,
            select(Job.id).where(
                Job.guild_id == guild_id,
                Job.status.in_(_FINISHED),
                Job.created_at < cutoff,
            ),
            batch=batch,
        )
    caches = _clear_finished_caches(session_factory, cache, now=now, cache_ttl=cache_ttl)
    # Uploads of deleted jobs went with them (cascade); these are requests that never made one.
    uploads = purge_orphans(session_factory, now=now)
    result = PurgeResult(
        summaries=summaries, jobs=jobs, caches=caches, guilds=len(retention), uploads=uploads
    )
    log.info(
        "retention.purged",
        summaries=summaries,
        jobs=jobs,
        caches=caches,
        guilds=len(retention),
        uploads=uploads,
    )
    return result


def _clear_finished_caches(
    session_factory: sessionmaker[Session], cache: MessageCache, *, now: datetime, cache_ttl: int
) -> int:
    """Drop cached messages of jobs that ended within the cache TTL (older ones expired)."""
    since = now - timedelta(seconds=cache_ttl) - timedelta(hours=1)
    with session_factory() as session:
        finished = session.scalars(
            select(Job.id).where(Job.status.in_(_FINISHED), Job.updated_at >= since)
        ).all()
    for job_id in finished:
        cache.delete(str(job_id))
    return len(finished)


# --- erasure ----------------------------------------------------------------------------------


class _Scrubber:
    """Replaces one member's id (and names) wherever they appear in stored delivery params."""

    def __init__(self, user_id: str, names: set[str]) -> None:
        self.user_id = user_id
        self.names = {n for n in names if n and n != ERASED}
        alternatives = [re.escape(user_id)] + [
            re.escape(n) for n in sorted(self.names, key=len, reverse=True) if len(n) >= 3
        ]
        self._mention = re.compile(r"<@!?" + re.escape(user_id) + r">")
        self._words = re.compile(r"(?<![\w@])@?(?:" + "|".join(alternatives) + r")(?!\w)")

    def text(self, value: str) -> str:
        if value in self.names or value == self.user_id:
            return ERASED
        return self._words.sub(ERASED, self._mention.sub(ERASED, value))

    def walk(self, value: Any) -> Any:
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, list):
            return [self.walk(v) for v in value]
        if isinstance(value, dict):
            return {k: self.walk(v) for k, v in value.items()}
        return value


def erase_member(
    session_factory: sessionmaker[Session], *, guild_id: str, user_id: str, batch: int = 200
) -> ErasureResult:
    """Remove a member's identifiers from stored data in one guild (``"*"``: every guild)."""
    if not is_snowflake(user_id):
        raise InvalidInputError(
            f"user id {user_id!r} is not a Discord id; give the member's numeric id "
            "(Developer Mode → Copy User ID)"
        )
    if guild_id != ALL_GUILDS and not is_snowflake(guild_id):
        raise InvalidInputError(f"guild id {guild_id!r} is not a Discord id (or '*' for all)")

    def in_guild(column: Any) -> Any:
        return column.is_not(None) if guild_id == ALL_GUILDS else column == guild_id

    summaries = 0
    last: uuid.UUID | None = None
    while True:
        with session_factory() as session, session.begin():
            query = (
                select(Summary)
                .where(in_guild(Summary.guild_id), cast(Summary.content, Text).contains(user_id))
                .order_by(Summary.id)
                .limit(batch)
                .with_for_update()
            )
            if last is not None:
                query = query.where(Summary.id > last)
            rows = session.scalars(query).all()
            for summary in rows:
                erased = erase_from_content(summary.content, user_id)
                if erased is not None and erased != summary.content:
                    summary.content = erased
                    summaries += 1
        if len(rows) < batch:
            break
        last = rows[-1].id
    with session_factory() as session, session.begin():
        jobs = session.execute(
            update(Job)
            .where(in_guild(Job.guild_id), Job.requested_by == user_id)
            .values(requested_by=None)
        )
        schedules = session.execute(
            update(Schedule)
            .where(in_guild(Schedule.guild_id), Schedule.created_by == user_id)
            .values(created_by=ERASED)
        )
        keys = session.execute(
            update(ApiKey)
            .where(in_guild(ApiKey.guild_id), ApiKey.created_by == user_id)
            .values(created_by=None)
        )
        deliveries = 0
        rows_with_id = session.scalars(
            select(Delivery)
            .join(Summary, Summary.id == Delivery.summary_id)
            .where(in_guild(Summary.guild_id), cast(Delivery.params, Text).contains(user_id))
        ).all()
        scrubber = _Scrubber(user_id, set())
        for delivery in rows_with_id:
            delivery.params = scrubber.walk(delivery.params)
            deliveries += 1
        feedback = session.execute(
            delete(SummaryFeedback).where(
                in_guild(SummaryFeedback.guild_id), SummaryFeedback.user_id == user_id
            )
        )
        opt_out = session.scalar(
            select(UserOptOut.id).where(
                UserOptOut.user_id == user_id,
                UserOptOut.guild_id.in_([guild_id, ALL_GUILDS])
                if guild_id != ALL_GUILDS
                else UserOptOut.guild_id.is_not(None),
            )
        )
    uploads = erase_member_uploads(session_factory, guild_id=guild_id, user_id=user_id)
    result = ErasureResult(
        uploads=uploads,
        summaries=summaries,
        jobs=_count(jobs),
        schedules=_count(schedules),
        api_keys=_count(keys),
        deliveries=deliveries,
        feedback=_count(feedback),
        opt_out_kept=opt_out is not None,
    )
    log.info("retention.member_erased", guild_id=guild_id, **result.__dict__)
    return result


def _count(result: Any) -> int:
    return int(getattr(result, "rowcount", 0) or 0)
