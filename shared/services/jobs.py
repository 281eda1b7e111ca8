"""Submitting and cancelling jobs: the one door every producer's work comes through.

:func:`submit_job` authorizes (the source channel and every destination belong to the actor's
guild), validates the window and limits, records the ``jobs`` row (the source of truth) and then
publishes the first stage by task name.  The row is committed before the task is published, so a
worker always finds it; a publish lost after the commit is recovered by the stale-job sweep.
Nothing is written when a check fails.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import structlog
from pydantic import SecretStr
from sqlalchemy import insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from schema.base import table_of, utcnow
from schema.models.jobs import Job, JobStatus
from schema.models.tenancy import WebhookEndpoint
from schema.models.uploads import Upload
from shared import lifecycle
from shared.db.engine import one_statement
from shared.discord.objects import WebhookRef
from shared.domain.messages import snowflake_time
from shared.errors import ConflictError, InvalidInputError, NotFoundError
from shared.job_view import JobView
from shared.jobs import (
    FETCH,
    MAX_LISTED_CHANNELS,
    AudienceChannel,
    AudienceMember,
    DiscordChannelSource,
    DiscordServerSource,
    ExportFileSource,
    HeldEnqueuer,
    JobParams,
    RedisCommand,
    UploadSource,
)
from shared.services.core import Actor, Core
from shared.tenancy import (
    DESTINATION_CHANNEL_KINDS,
    destination_chain,
    is_webhook_thread,
    refuse_channel,
    require_category,
    require_channel,
    require_member,
)
from shared.uploads import delete_upload

__all__ = [
    "Submission",
    "audience_of",
    "cancel_job",
    "check_destination",
    "check_destinations",
    "check_scope",
    "publish_held",
    "submit_job",
]

log = structlog.get_logger(__name__)

_CANCELLED_BY = {
    "api": "cancelled through the API",
    "bot": "cancelled in Discord",
    "cli": "cancelled by the operator",
}

#: How far ahead of this host's clock Discord's may have stamped a message id.
_ID_CLOCK_SKEW = timedelta(minutes=5)

#: Destination kinds only the operator may use: they write on the worker's own machine.
_OPERATOR_KINDS = frozenset({"terminal", "file"})


@dataclass(frozen=True)
class Submission:
    """Result of :func:`submit_job`: the job as recorded and whether this call created it."""

    job: JobView
    created: bool

    @property
    def job_id(self) -> uuid.UUID:
        """The job's id."""
        return self.job.id


def _endpoint_owner(core: Core, endpoint_id: Any) -> str | None:
    try:
        ident = uuid.UUID(str(endpoint_id))
    except ValueError:
        return None
    with core.session_factory() as session:
        owner: str | None = session.scalar(
            select(WebhookEndpoint.guild_id).where(WebhookEndpoint.id == ident)
        )
        return owner


def _has_asked_the_bot(core: Core, guild_id: str, user_id: str) -> bool:
    """True when ``user_id`` asked the bot for a summary in ``guild_id`` (a job of theirs is
    still kept): the bot direct-messages nobody who never used it, whoever asks it to."""
    with core.session_factory() as session:
        found = session.scalar(
            select(Job.id)
            .where(
                Job.guild_id == guild_id,
                Job.origin == "bot",
                Job.requested_by == user_id,
            )
            .limit(1)
        )
    return found is not None


def _check_link(core: Core, actor: Actor, link: Mapping[str, Any], where: str) -> None:
    kind = str(link.get("kind"))
    if kind in _OPERATOR_KINDS:
        if not actor.local:
            raise InvalidInputError(
                f"{where}: {kind} destinations write on the server's own disk and are only for "
                "the operator's command line; use a channel or a webhook endpoint"
            )
        return
    guild = actor.guild_id
    if guild is None:
        raise InvalidInputError(
            f"{where}: a {kind} destination belongs to a Discord server; submit the job for "
            "that server (with its guild id)"
        )
    if kind in DESTINATION_CHANNEL_KINDS:
        require_channel(core.require_directory(), guild, str(link.get("channel_id")))
    elif kind == "dm":
        user_id = str(link.get("user_id"))
        require_member(core.require_directory(), guild, user_id)
        if actor.requested_by != user_id and not _has_asked_the_bot(core, guild, user_id):
            raise InvalidInputError(
                f"{where}: member {user_id} has never asked the bot for anything in this "
                "server, and it sends direct messages only to members who did; deliver to a "
                "webhook endpoint, or let the member ask with /catchup"
            )
    elif kind == "webhook":
        endpoint_id = link.get("endpoint_id")
        if _endpoint_owner(core, endpoint_id) != guild:
            raise NotFoundError(
                f"{where}: no webhook endpoint {endpoint_id} in this server; create one with "
                "POST /v1/webhook-endpoints"
            )
    elif kind == "followup":
        if actor.origin != "bot":
            raise InvalidInputError(f"{where}: only the bot answers its own interactions")
    elif kind == "discord_webhook":
        webhook_id = str(link.get("webhook_id"))
        token = core.box.decrypt(str(link.get("token_encrypted")))
        ref = WebhookRef(id=webhook_id, token=SecretStr(token))
        directory = core.require_directory()
        if directory.webhook_guild(ref) != guild:
            raise NotFoundError(f"{where}: no Discord webhook {webhook_id} in this server")
        thread_id = link.get("thread_id")
        if thread_id is not None:
            require_channel(directory, guild, str(thread_id))
            if not is_webhook_thread(directory, ref, str(thread_id)):
                raise refuse_channel(str(thread_id))
    else:  # pragma: no cover - the destination models admit no other kind
        raise InvalidInputError(f"{where}: unknown destination kind {kind!r}")


def check_destination(core: Core, actor: Actor, destination: Any, where: str) -> None:
    """Refuse a destination (or any of its fallbacks) outside the actor's guild or reach.

    ``where`` names it in the error (``destinations/0``, ``destination`` …).
    """
    data = destination if isinstance(destination, Mapping) else destination.model_dump()
    for depth, link in enumerate(destination_chain(data)):
        _check_link(core, actor, link, where + "/fallback" * depth)


def check_destinations(core: Core, actor: Actor, destinations: Sequence[Any]) -> None:
    """:func:`check_destination` for each of a job's destinations."""
    for index, destination in enumerate(destinations):
        check_destination(core, actor, destination, f"destinations/{index}")


def _authorize_upload(core: Core, actor: Actor, source: UploadSource) -> None:
    with core.session_factory() as session:
        upload = session.get(Upload, source.upload_id)
    if upload is None or (not actor.is_operator and upload.guild_id != actor.guild_id):
        raise NotFoundError(f"no upload {source.upload_id} in this server; upload it again")
    if upload.job_id is not None:
        raise ConflictError(
            f"upload {source.upload_id} is already summarized by job {upload.job_id}; read "
            "that job, or upload the conversation again for another summary"
        )


def audience_of(destinations: Sequence[Any]) -> list[AudienceChannel | AudienceMember]:
    """Who reads a multi-channel summary sent to ``destinations``: the viewers of each channel
    or thread it is posted in, and each member it is sent to directly."""
    audience: list[AudienceChannel | AudienceMember] = []
    for destination in destinations:
        data = destination if isinstance(destination, Mapping) else destination.model_dump()
        for link in destination_chain(data):
            if link.get("kind") in DESTINATION_CHANNEL_KINDS:
                entry: AudienceChannel | AudienceMember = AudienceChannel(
                    channel_id=str(link["channel_id"])
                )
            elif link.get("kind") == "dm":
                entry = AudienceMember(user_id=str(link["user_id"]))
            else:
                continue
            if entry not in audience:
                audience.append(entry)
    return audience


def check_scope(
    core: Core, guild_id: str, *, category_id: str | None, channel_ids: Sequence[str]
) -> None:
    """The channels a multi-channel summary covers: a category of ``guild_id``, or at most
    :data:`~shared.jobs.MAX_LISTED_CHANNELS` distinct channels of it (neither means the whole
    server).  Raises :class:`NotFoundError` for one outside the guild and
    :class:`InvalidInputError` (naming the field) for any other problem."""
    if category_id is not None and channel_ids:
        raise InvalidInputError(
            "give a category or a list of channels, not both", field="channel_ids"
        )
    if len(channel_ids) > MAX_LISTED_CHANNELS:
        raise InvalidInputError(
            f"{len(channel_ids)} channels listed; a digest covers at most "
            f"{MAX_LISTED_CHANNELS}: give a category or the whole server instead",
            field="channel_ids",
        )
    if len(set(channel_ids)) != len(channel_ids):
        raise InvalidInputError("the same channel is listed twice", field="channel_ids")
    directory = core.require_directory()
    if category_id is not None:
        require_category(directory, guild_id, category_id)
    for channel_id in channel_ids:
        require_channel(directory, guild_id, channel_id)


def _audience_label(entry: AudienceChannel | AudienceMember) -> str:
    if isinstance(entry, AudienceChannel):
        return f"channel {entry.channel_id}"
    return f"member {entry.user_id}"


def _authorize_server_source(core: Core, actor: Actor, params: JobParams) -> None:
    """A multi-channel job: every channel it names is in the actor's guild, and its audience
    covers everyone its Discord destinations reach (the worker keeps only what they all may
    read, so an audience narrower than the destinations would leak)."""
    source = params.source
    assert isinstance(source, DiscordServerSource)
    guild = actor.guild_id
    if guild is None or source.guild_id != guild:
        raise NotFoundError(f"no guild {source.guild_id} for this caller; use your own guild")
    check_scope(core, guild, category_id=source.category_id, channel_ids=source.channel_ids)
    directory = core.require_directory()
    for entry in source.audience:
        if isinstance(entry, AudienceChannel):
            require_channel(directory, guild, entry.channel_id)
        else:
            require_member(directory, guild, entry.user_id)
    for index, destination in enumerate(params.destinations):
        if destination.kind == "discord_webhook":
            raise InvalidInputError(
                f"destinations/{index}: a summary of several channels cannot go to a Discord "
                "webhook, whose readers are unknown; send it to the channel itself"
            )
    missing = [a for a in audience_of(params.destinations) if a not in source.audience]
    if missing:
        raise InvalidInputError(
            "the audience must include everyone the destinations reach; add "
            + ", ".join(_audience_label(a) for a in missing)
        )


def _authorize_source(core: Core, actor: Actor, params: JobParams) -> JobParams:
    source = params.source
    if isinstance(source, DiscordServerSource):
        _authorize_server_source(core, actor, params)
        return params
    if isinstance(source, UploadSource):
        _authorize_upload(core, actor, source)
        return params
    if isinstance(source, ExportFileSource):
        if not actor.local:
            raise InvalidInputError(
                "export files are read from the workers' disk and only the operator's command "
                "line may name one; send the messages in the request instead"
            )
        return params
    assert isinstance(source, DiscordChannelSource)
    guild = actor.guild_id
    if guild is None:
        guild = source.guild_id
        if guild is None:
            raise InvalidInputError(
                "a Discord channel job needs the channel's guild id; give --guild"
            )
    elif source.guild_id not in (None, guild):
        raise NotFoundError(f"no guild {source.guild_id} for this caller; use your own guild")
    require_channel(core.require_directory(), guild, source.channel_id)
    if source.guild_id != guild:
        params = params.model_copy(update={"source": source.model_copy(update={"guild_id": guild})})
    return params


def _check_limits(core: Core, params: JobParams) -> None:
    if params.max_messages is not None and params.max_messages > core.max_messages:
        raise InvalidInputError(
            f"max_messages {params.max_messages} is above this deployment's limit of "
            f"{core.max_messages}; ask for fewer messages"
        )
    source = params.source
    after = source.after if isinstance(source, DiscordChannelSource | DiscordServerSource) else None
    if after is not None and after > core.clock():
        raise InvalidInputError("the window starts in the future; give a past time")
    # A message id carries its creation time: one from the future names no message yet.
    # Discord's clock, not ours, stamped it: a message just sent may be a little ahead.
    start_id = source.after_message_id if isinstance(source, DiscordChannelSource) else None
    if start_id is not None and snowflake_time(start_id) > core.clock() + _ID_CLOCK_SKEW:
        raise InvalidInputError(
            f"the window starts in the future: message {start_id} would be written at "
            f"{snowflake_time(start_id):%Y-%m-%d %H:%M} UTC; give the id of a sent message"
        )


_INSERT_JOB = insert(table_of(Job))


def _claim_upload(session: Session, source: UploadSource, job_id: uuid.UUID) -> None:
    """Attach the upload to its job in the job's transaction (retention then deletes both)."""
    claimed = session.execute(
        update(Upload)
        .where(Upload.id == source.upload_id, Upload.job_id.is_(None))
        .values(job_id=job_id)
    )
    if getattr(claimed, "rowcount", 0) != 1:
        raise ConflictError(
            f"upload {source.upload_id} was claimed by another job meanwhile; upload the "
            "conversation again for another summary"
        )


def submit_job(
    core: Core,
    actor: Actor,
    params: JobParams,
    *,
    idempotency_key: str | None = None,
    key_lifetime: timedelta | None = None,
) -> Submission:
    """Authorize, validate, record and enqueue a job (see module docstring).

    With an ``idempotency_key`` a second submission returns the first job instead of creating
    another; with ``key_lifetime`` only while that job is younger than it (an older one gives
    the key up, and the submission makes a new job, as the API's 24-hour keys promise).

    Raises :class:`NotFoundError` for a channel or destination outside the actor's guild
    (worded like a missing one), :class:`InvalidInputError` for a request that cannot be done,
    :class:`~shared.errors.ConfigError` when this deployment lacks what the job needs.
    """
    check_destinations(core, actor, params.destinations)
    params = _authorize_source(core, actor, params)
    _check_limits(core, params)
    source = params.source
    guild_id = (
        source.guild_id
        if isinstance(source, DiscordChannelSource | DiscordServerSource)
        else actor.guild_id
    )
    now = utcnow()
    row: dict[str, Any] = {
        "id": uuid.uuid4(),
        "origin": actor.origin,
        "status": JobStatus.QUEUED.value,
        "guild_id": guild_id,
        "channel_id": source.channel_id if isinstance(source, DiscordChannelSource) else None,
        "requested_by": actor.requested_by,
        "params": params.model_dump(mode="json"),
        "progress": {},
        "idempotency_key": idempotency_key,
        "redeliveries": 0,
        "created_at": now,
        "updated_at": now,
    }
    existing = _record(core, source, row, key_lifetime)
    if existing is not None:
        if isinstance(source, UploadSource):
            # The first submission has its own copy; this one would never be read.
            delete_upload(core.session_factory, source.upload_id)
        return Submission(JobView.of(existing), created=False)
    job_id: uuid.UUID = row["id"]
    try:
        core.enqueuer.enqueue(FETCH, str(job_id))
    except Exception:
        # The row is committed, so nothing is lost; the caller still hears of the failure (a
        # retry with the same Idempotency-Key answers this job).  The next sweep publishes it.
        _hand_to_sweep(core, job_id)
        raise
    # The view straight from the inserted values (the columns left out are still null): an
    # ORM instance only to read them back costs more than the view itself.
    return Submission(JobView.of_new_row(row), created=True)


def _record(
    core: Core, source: object, row: dict[str, Any], key_lifetime: timedelta | None
) -> Job | None:
    """Insert the job ``row``; or the job holding its idempotency key, which gives the key up
    first when it is older than ``key_lifetime``."""
    key = row["idempotency_key"]
    try:
        _insert(core, source, row)
        return None
    except IntegrityError:
        if key is None:
            raise
    holder = _holder_of(core, key)
    if key_lifetime is None or holder.created_at > row["created_at"] - key_lifetime:
        return holder
    if _give_up_key(core, holder.id, key):
        try:
            _insert(core, source, row)
            return None
        except IntegrityError:
            pass  # another submission with the same key came first: that job answers
    return _holder_of(core, key)


def _insert(core: Core, source: object, row: dict[str, Any]) -> None:
    if isinstance(source, UploadSource):
        with core.session_factory() as session, session.begin():
            session.execute(_INSERT_JOB, row)
            _claim_upload(session, source, row["id"])
    else:
        # A Core insert (the ORM's unit of work costs more than the rest of a submission),
        # committed by itself.
        with one_statement(core.session_factory) as connection:
            connection.execute(_INSERT_JOB, row)


def _holder_of(core: Core, key: str) -> Job:
    with core.session_factory() as session:
        return session.scalars(select(Job).where(Job.idempotency_key == key)).one()


def _give_up_key(core: Core, job_id: uuid.UUID, key: str) -> bool:
    """Clear an expired idempotency key from its job; False when it had already gone."""
    statement = (
        update(Job).where(Job.id == job_id, Job.idempotency_key == key).values(idempotency_key=None)
    )
    with one_statement(core.session_factory) as connection:
        return bool(connection.execute(statement).rowcount)


def publish_held(
    core: Core,
    held: HeldEnqueuer,
    *,
    along: Callable[[tuple[RedisCommand, ...]], object] | None = None,
    client: Any = None,
) -> None:
    """Publish the first stages :func:`submit_job` left in ``held``.

    ``along`` is a Redis round trip the caller makes anyway, on ``client``: the publications
    ride in it as commands when the enqueuer can give them (one round trip instead of two);
    otherwise they are published first and ``along`` gets none.  When publishing fails, the
    jobs are left to the next sweep, as :func:`submit_job` does, and the error is raised.
    """
    jobs = [uuid.UUID(args[0]) for name, args in held.held if name == FETCH]
    commands = held.release_as_commands(client) if along is not None else None
    if commands is None:
        try:
            held.release()
        except Exception:
            _hand_all_to_sweep(core, jobs)
            raise
    if along is None:
        return
    try:
        along(commands or ())
    except Exception:
        if commands:
            _hand_all_to_sweep(core, jobs)
        raise


def _hand_all_to_sweep(core: Core, job_ids: list[uuid.UUID]) -> None:
    for job_id in job_ids:
        _hand_to_sweep(core, job_id)


def _hand_to_sweep(core: Core, job_id: uuid.UUID) -> None:
    try:
        lifecycle.hand_to_sweep(core.session_factory, job_id)
    except Exception as exc:  # noqa: BLE001 - the publish failure is the error to report
        log.warning("submit.hand_to_sweep_failed", job_id=str(job_id), error=type(exc).__name__)


def cancel_job(core: Core, actor: Actor, job_id: uuid.UUID) -> JobView:
    """Cancel an unfinished job of the actor's guild and return it; cancelling twice answers
    the same.

    Raises :class:`NotFoundError` for a job of another guild (or none), and
    :class:`ConflictError` for a job that already completed or failed.
    """
    with core.session_factory() as session:
        job = session.get(Job, job_id)
        if job is None or (not actor.is_operator and job.guild_id != actor.guild_id):
            raise NotFoundError(f"no job {job_id} in this server")
    if job.status == JobStatus.CANCELLED.value:
        return JobView.of(job)
    reason = _CANCELLED_BY.get(actor.origin, f"cancelled by {actor.origin}")
    moved = lifecycle.move(
        core.session_factory, job_id, lifecycle.Move.CANCEL, now=core.clock(), error=reason
    )
    with core.session_factory() as session:
        row = session.get(Job, job_id)
        assert row is not None
        current = JobView.of(row)
    for part in current.part_ids:
        # A multi-channel job's parts stop with it: nobody would read what they produce.
        lifecycle.move(
            core.session_factory, part, lifecycle.Move.CANCEL, now=core.clock(), error=reason
        )
    if moved is None and current.status is not JobStatus.CANCELLED:
        raise ConflictError(
            f"job {job_id} already ended as {current.status}; there is nothing to cancel"
        )
    return current
