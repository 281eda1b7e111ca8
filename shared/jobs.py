"""The contract between producers and workers: task names, job parameters, publishing.

Producers submit work through :func:`shared.services.jobs.submit_job`, which records the
``jobs`` row and publishes the first stage by task *name* through an :class:`Enqueuer`
(:class:`CeleryEnqueuer` over :func:`publisher_app`), so a producer never imports worker code.
Messages between processes carry ids only, and the time they were published.
"""

from __future__ import annotations

import threading
import time
import uuid
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, ClassVar, Literal, Protocol
from urllib.parse import urlsplit

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from shared.delivery.targets import (
    ChannelTarget,
    DirectMessageTarget,
    DiscordWebhookTarget,
    InteractionFollowupTarget,
    ThreadTarget,
    WebhookTarget,
)
from shared.domain.messages import SnowflakeText, timestamp_problem
from shared.errors import InvalidInputError
from shared.summarize.content import SummaryFormat

if TYPE_CHECKING:
    from celery import Celery

    from shared.broker import QueueHead

__all__ = [
    "DELIVER",
    "FETCH",
    "PART_ORIGIN",
    "SUMMARIZE",
    "AudienceChannel",
    "AudienceMember",
    "CeleryEnqueuer",
    "ChannelTarget",
    "Destination",
    "DirectMessageTarget",
    "DiscordChannelSource",
    "DiscordServerSource",
    "DiscordWebhookTarget",
    "Enqueuer",
    "ExportFileSource",
    "FileTarget",
    "HeldEnqueuer",
    "InteractionFollowupTarget",
    "JobParams",
    "PartOf",
    "RedisCommand",
    "Step",
    "TerminalTarget",
    "ThreadTarget",
    "UploadSource",
    "WebhookTarget",
    "parse_params",
    "publisher_app",
]

FETCH = "summarybot.fetch"
SUMMARIZE = "summarybot.summarize"
DELIVER = "summarybot.deliver"


class _Params(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _absolute_path(problem: str) -> AfterValidator:
    """Rejects a relative path with ``problem``: another process, elsewhere, opens it."""

    def check(value: str) -> str:
        if not Path(value).is_absolute():
            raise ValueError(problem)
        return value

    return AfterValidator(check)


class ExportFileSource(_Params):
    """A DiscordChatExporter JSON file on a path every worker can read."""

    kind: Literal["export_file"] = "export_file"
    path: Annotated[
        str, _absolute_path("the export path must be absolute so every worker finds it")
    ]


class UploadSource(_Params):
    """Messages a client sent (a DCE export or a message array), stored in the ``uploads``
    table (:mod:`shared.uploads`) where every worker reads them."""

    kind: Literal["upload"] = "upload"
    upload_id: uuid.UUID


def _time_in_range(value: datetime) -> datetime:
    problem = timestamp_problem(value)
    if problem is not None:
        raise ValueError(f"the time {problem}")
    return value


#: An ``after``/``before`` bound of a window: a time inside the range the system stores.
_WindowTime = Annotated[datetime, AfterValidator(_time_in_range)]


def _check_times(after: datetime | None, before: datetime | None) -> None:
    """A window's times carry a zone, and ``before`` comes after ``after``."""
    for name, value in (("after", after), ("before", before)):
        if value is not None and value.tzinfo is None:
            raise ValueError(f"{name} needs a time zone (e.g. 2026-01-01T00:00:00Z)")
    if after is not None and before is not None and before <= after:
        raise ValueError("before must be later than after")


class DiscordChannelSource(_Params):
    """A window of a Discord channel or thread, read through the REST adapter.

    The window is ``after``/``before`` times, or the messages after ``after_message_id``
    ("Summarize from here"), optionally capped to the most recent ``limit`` messages.
    """

    kind: Literal["discord_channel"] = "discord_channel"
    guild_id: SnowflakeText | None = None
    channel_id: SnowflakeText
    after: _WindowTime | None = None
    before: _WindowTime | None = None
    after_message_id: SnowflakeText | None = None
    limit: int | None = Field(default=None, ge=1, le=1_000_000)

    @model_validator(mode="after")
    def _window(self) -> DiscordChannelSource:
        _check_times(self.after, self.before)
        if self.after is None and self.after_message_id is None and self.limit is None:
            raise ValueError("give a window: after, after_message_id or limit")
        return self


class AudienceChannel(_Params):
    """Everyone who can read this channel (or thread) reads the summary."""

    kind: Literal["channel"] = "channel"
    channel_id: SnowflakeText


class AudienceMember(_Params):
    """One member reads the summary (a DM, an ephemeral reply, a personal catch-up)."""

    kind: Literal["member"] = "member"
    user_id: SnowflakeText


Audience = Annotated[AudienceChannel | AudienceMember, Field(discriminator="kind")]

#: How many channels one multi-channel job may name.
MAX_LISTED_CHANNELS = 50


class DiscordServerSource(_Params):
    """Several channels of one guild in one summary: a server or category digest, a list of
    channels, or a member's catch-up (see :mod:`shared.pipeline.plan`).

    Scope: ``channel_ids`` (with their active threads and forum posts), else ``category_id``,
    else the whole server.  Only channels every member of the ``audience`` can read are
    summarized.  ``since_last_message`` starts the window at ``focus_user_id``'s latest
    message (no earlier than ``after``), and ranks what involves that member first.
    """

    kind: Literal["discord_server"] = "discord_server"
    guild_id: SnowflakeText
    category_id: SnowflakeText | None = None
    channel_ids: list[SnowflakeText] = Field(default_factory=list, max_length=MAX_LISTED_CHANNELS)
    after: _WindowTime
    before: _WindowTime | None = None
    audience: list[Audience] = Field(min_length=1, max_length=10)
    focus_user_id: SnowflakeText | None = None
    since_last_message: bool = False

    @model_validator(mode="after")
    def _consistent(self) -> DiscordServerSource:
        _check_times(self.after, self.before)
        if self.category_id is not None and self.channel_ids:
            raise ValueError("give a category or a list of channels, not both")
        if len(set(self.channel_ids)) != len(self.channel_ids):
            raise ValueError("the same channel is listed twice")
        if self.since_last_message and self.focus_user_id is None:
            raise ValueError("since_last_message needs focus_user_id: whose last message?")
        return self


Source = Annotated[
    ExportFileSource | DiscordChannelSource | UploadSource | DiscordServerSource,
    Field(discriminator="kind"),
]


class TerminalTarget(_Params):
    """Print the summary on the standard output of the process that delivers it."""

    kind: Literal["terminal"] = "terminal"
    render: Literal["text", "markdown", "json"] = "text"

    @property
    def key(self) -> str:
        """Identity of the target, unique per summary."""
        return "terminal"


class FileTarget(_Params):
    """Write the summary to a file (replaced atomically)."""

    kind: Literal["file"] = "file"
    path: Annotated[str, _absolute_path("the output path must be absolute")]
    render: Literal["text", "markdown", "json"] = "markdown"

    @property
    def key(self) -> str:
        """Identity of the target, unique per summary."""
        return f"file:{self.path}"


#: Where a summary can go.  Remote kinds are sent by ``shared.delivery`` (their models live in
#: ``shared.delivery.targets``); the deliver stage dispatches on ``kind``.
Destination = Annotated[
    TerminalTarget
    | FileTarget
    | WebhookTarget
    | ChannelTarget
    | ThreadTarget
    | DirectMessageTarget
    | DiscordWebhookTarget
    | InteractionFollowupTarget,
    Field(discriminator="kind"),
]


#: ``jobs.origin`` of a multi-channel job's parts: internal rows, never listed to people.
PART_ORIGIN = "part"


class PartOf(_Params):
    """Marks a job as one channel of a multi-channel job: the worker that finishes it wakes
    the parent, which composes the parts once all have ended."""

    job_id: uuid.UUID
    focus_user_id: SnowflakeText | None = None


class JobParams(_Params):
    """What a job summarizes, how, and where the result goes."""

    source: Source
    part_of: PartOf | None = None
    format: SummaryFormat = SummaryFormat.STRUCTURED
    language: str | None = Field(default=None, max_length=16)
    max_messages: int | None = Field(default=None, ge=1, le=1_000_000)
    destinations: list[Destination] = Field(default_factory=list, max_length=20)

    @field_validator("destinations")
    @classmethod
    def _unique_targets(cls, value: list[Any]) -> list[Any]:
        keys = [d.key for d in value]
        if len(keys) != len(set(keys)):
            raise ValueError("the same destination is listed twice")
        return value


def parse_params(data: dict[str, Any]) -> JobParams:
    """Validate stored or submitted parameters, turning errors into one readable line."""
    try:
        return JobParams.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'params'}: {e['msg']}" for e in exc.errors()
        )
        raise InvalidInputError(f"invalid job parameters: {problems}") from None


@dataclass(frozen=True)
class Step:
    """A task to publish: its name and its string arguments (ids only)."""

    task: str
    args: tuple[str, ...]


class Enqueuer(Protocol):
    """Publishes a task by name (:class:`CeleryEnqueuer`, or a test's recorder)."""

    def enqueue(self, task_name: str, *args: str) -> None:
        """Publish ``task_name(*args)`` on its queue."""


#: A Redis command as its words, e.g. ``("LPUSH", "fetch", message)``.
RedisCommand = tuple[str | bytes | int, ...]


class HeldEnqueuer:
    """Holds publications until the caller says how to send them.

    The bot publishes a job's first stage only after its first reply is shown (the deliver
    stage may write the summary into that reply, and must come second); the API sends it in
    the same Redis round trip as the request's idempotency record.  A held job's row is
    committed either way, so a process that dies before sending loses nothing: the stale-job
    sweep publishes it.
    """

    def __init__(self, target: Enqueuer) -> None:
        self._target = target
        self._held: list[tuple[str, tuple[str, ...]]] = []

    @property
    def held(self) -> tuple[tuple[str, tuple[str, ...]], ...]:
        """What is held and not yet sent, as ``(task name, args)``."""
        return tuple(self._held)

    def enqueue(self, task_name: str, *args: str) -> None:
        """Remember ``task_name(*args)``."""
        self._held.append((task_name, args))

    def release(self) -> None:
        """Publish what is held (once)."""
        held, self._held = self._held, []
        for task_name, args in held:
            self._target.enqueue(task_name, *args)

    def release_as_commands(self, client: Any) -> tuple[RedisCommand, ...] | None:
        """What is held as the Redis commands that publish it, for the caller to send on
        ``client`` in a round trip of its own; they count as sent from here on.

        None, with nothing taken, when the target cannot say (not a :class:`CeleryEnqueuer`,
        or one that does not publish to ``client``'s Redis database): :meth:`release` then.
        """
        target = self._target
        if not isinstance(target, CeleryEnqueuer) or not target.publishes_to(client):
            return None
        commands: list[RedisCommand] = []
        for task_name, args in self._held:
            made = target.publish_commands(task_name, *args)
            if made is None:
                return None
            commands.extend(made)
        self._held = []
        return tuple(commands)


class _Collected:
    """Takes the commands kombu's Redis channel would send for a message instead of sending
    them (the channel's publish-batch protocol: ``_put`` calls :meth:`add`)."""

    def __init__(self) -> None:
        self.commands: list[RedisCommand] = []

    def add(self, name: str, *args: str | bytes | int) -> None:
        self.commands.append((name.upper(), *args))


class CeleryEnqueuer:
    """:class:`Enqueuer` over Celery; the routes in ``celeryconfig`` pick the queue, so a
    producer never imports a task module.

    A publisher app (:func:`publisher_app`, no task registered, outside any task) builds the
    message with Celery's own ``app.amqp.create_task_message`` and publishes it with
    ``app.amqp.send_task_message``: what ``send_task`` does, less its per-call work that such
    an app does not need (routing the name again, looking it up among registered tasks,
    ``saferepr`` of the ids, re-declaring the queue on every publish).  Anywhere else, e.g. a
    worker publishing from inside a task (whose message carries its parent and root ids), it is
    ``send_task`` itself.

    The producers it publishes with are kept between calls (:class:`_KeptProducers`): taking
    one from kombu's pool and giving it back cost a third of a publish.  A producer whose
    publish failed goes back to kombu, which revives it.

    Every message says when it was published (the :data:`~shared.broker.PUBLISHED_AT` header,
    read from ``clock``), so :meth:`queue_head` can tell how far behind a queue's workers are.
    """

    def __init__(self, app: Celery, *, clock: Callable[[], float] = time.time) -> None:
        self._app = app
        self._clock = clock
        self._routes: dict[str, dict[str, Any]] = {}
        self._origin: str | None = None
        self._kept: _KeptProducers | None = None
        # Per client pool, held weakly: an id() could be reused by a pool of another database.
        self._shares: weakref.WeakKeyDictionary[Any, bool] = weakref.WeakKeyDictionary()
        self._commands: tuple[str, Any] | Literal[False] | None = None

    def enqueue(self, task_name: str, *args: str) -> None:
        """Publish ``task_name(*args)``."""
        from shared.broker import PUBLISHED_AT

        app = self._app
        if task_name in app.tasks or app.current_worker_task is not None:
            # No result is ever read; without ignore_result Celery subscribes to a result
            # channel per task and never drops it.
            app.send_task(
                task_name,
                args=list(args),
                ignore_result=True,
                headers={PUBLISHED_AT: self._clock()},
            )
            return
        self._publish(task_name, list(args))

    def queue_head(self, task_name: str) -> QueueHead | None:
        """The oldest message waiting on ``task_name``'s queue, or None when this broker cannot
        say (kombu's in-process memory transport, or Redis keys under a prefix)."""
        from kombu.transport import redis as kombu_redis

        from shared.broker import read_queue_head

        queue = self._route(task_name)["queue"].name
        with self._app.pool.acquire(block=True) as connection:
            channel = connection.default_channel
            if not isinstance(channel, kombu_redis.Channel) or channel.global_keyprefix:
                return None
            with channel.conn_or_acquire() as client:
                return read_queue_head(client, queue)

    def _publish(self, task_name: str, args: list[str]) -> None:
        app = self._app
        route, message = self._task_message(task_name, args)
        producer = self._take_producer()
        try:
            # The workers declare their queues; publishing to one needs no declaration on
            # Redis, and kombu would copy and bind the queue on every call to find it declared.
            with producer.connection._reraise_as_library_errors():
                app.amqp.send_task_message(producer, task_name, message, declare=[], **route)
        except BaseException:
            producer.release()
            raise
        self._keep_producer(producer)

    def _route(self, task_name: str) -> dict[str, Any]:
        route = self._routes.get(task_name)
        if route is None:
            route = self._routes[task_name] = self._app.amqp.router.route(
                {}, task_name, (), {}, None
            )
        return route

    def _task_message(self, task_name: str, args: list[str]) -> tuple[dict[str, Any], Any]:
        """The route and Celery's task message (headers, properties, body, sent event)."""
        from shared.broker import PUBLISHED_AT

        app = self._app
        amqp = app.amqp
        route = self._route(task_name)
        if self._origin is None:
            from celery.utils.nodenames import anon_nodename

            self._origin = anon_nodename()
        message = amqp.create_task_message(
            str(uuid.uuid4()),
            task_name,
            args,
            {},
            reply_to=app.thread_oid,
            create_sent_event=app.conf.task_send_sent_event,
            ignore_result=True,
            argsrepr=repr(args),
            kwargsrepr="{}",
            origin=self._origin,
        )
        message.headers[PUBLISHED_AT] = self._clock()
        return route, message

    def publishes_to(self, client: Any) -> bool:
        """Whether this enqueuer's broker is the database of the redis-py ``client``, over the
        Redis transport whose commands :meth:`publish_commands` can give."""
        pool = getattr(client, "connection_pool", None)
        if pool is None or self._command_settings() is None:
            return False
        found = self._shares.get(pool)
        if found is None:
            found = self._shares[pool] = self._same_database(pool.connection_kwargs)
        return found

    def _same_database(self, kwargs: dict[str, Any]) -> bool:
        broker = urlsplit(self._app.conf.broker_url)
        return (
            "path" not in kwargs  # a Unix socket
            and (broker.hostname or "localhost") == kwargs.get("host", "localhost")
            and (broker.port or 6379) == int(kwargs.get("port", 6379))
            and int(broker.path.strip("/") or 0) == int(kwargs.get("db", 0))
        )

    def _command_settings(self) -> tuple[str, Any] | None:
        """The serializer and default delivery mode, or None when the broker's commands
        cannot be given: not this project's Redis transport, a key prefix or compression
        (which the commands would have to apply), or task-sent events (which a publish sends)."""
        if self._commands is None:
            from shared.broker import TRANSPORT

            conf = self._app.conf
            usable = (
                conf.broker_transport == TRANSPORT
                and not conf.broker_transport_options.get("global_keyprefix")
                and not conf.task_compression
                and not conf.task_send_sent_event
            )
            settings = (conf.task_serializer, conf.task_default_delivery_mode)
            self._commands = settings if usable else False
        return self._commands or None

    def publish_commands(self, task_name: str, *args: str) -> tuple[RedisCommand, ...] | None:
        """The Redis commands that publish ``task_name(*args)``, the message :meth:`enqueue`
        would publish, for a caller that sends them in a round trip of its own (with
        :meth:`publishes_to` its client).

        kombu's Redis channel makes the commands (its publish-batch protocol), so the queue's
        key and the message's envelope are kombu's own.  None where only a real publish will
        do: inside a task (whose message carries its parent), with receivers connected to
        Celery's publish signals, or where :meth:`publishes_to` is false for every client.
        """
        from kombu import serialization
        from kombu.entity import maybe_delivery_mode

        app = self._app
        settings = self._command_settings()
        if settings is None or task_name in app.tasks or app.current_worker_task is not None:
            return None
        if _publish_signals_connected():
            return None
        serializer, default_delivery_mode = settings
        route, (headers, properties, body, _sent) = self._task_message(task_name, list(args))
        queue = route["queue"]
        content_type, content_encoding, data = serialization.dumps(body, serializer=serializer)
        delivery_mode = queue.exchange.delivery_mode or default_delivery_mode
        properties["delivery_mode"] = maybe_delivery_mode(delivery_mode)
        collected = _Collected()
        producer = self._take_producer()
        try:
            channel = producer.channel
            message = channel.prepare_message(
                data,
                properties.pop("priority", 0),
                content_type,
                content_encoding,
                headers,
                properties,
            )
            channel.basic_publish(
                message, exchange="", routing_key=queue.name, _publish_batch=collected
            )
        except BaseException:
            producer.release()
            raise
        self._keep_producer(producer)
        return tuple(collected.commands)

    def _take_producer(self) -> Any:
        if self._kept is None:
            self._kept = _KeptProducers.of(self._app)
        return self._kept.take()

    def _keep_producer(self, producer: Any) -> None:
        assert self._kept is not None
        self._kept.keep(producer)


class _KeptProducers:
    """Producers kept between publishes, for every enqueuer over one kombu producer pool.

    Celery's producer and connection pools are kombu's, one per broker URL in a process,
    shared by every app on that URL; so is this, or enqueuers of several apps (the API's and
    a test's, say) would each keep their share and together hold the whole pool.  At most
    half of ``broker_pool_limit`` is kept: below the limit, a thread waiting in kombu's pool
    is always woken by one that gives its producer back rather than keeping it.
    """

    _all: ClassVar[weakref.WeakKeyDictionary[Any, _KeptProducers]] = weakref.WeakKeyDictionary()
    _all_lock: ClassVar[threading.Lock] = threading.Lock()

    def __init__(self, pool: Any, keep: int) -> None:
        self._pool = pool
        self._keep = keep
        self._idle: list[Any] = []
        self._lock = threading.Lock()

    @classmethod
    def of(cls, app: Celery) -> _KeptProducers:
        """The kept producers of ``app``'s producer pool."""
        pool = app.producer_pool
        with cls._all_lock:
            kept = cls._all.get(pool)
            if kept is None:
                limit = app.conf.broker_pool_limit
                kept = cls._all[pool] = cls(pool, max(1, limit // 2) if limit else 4)
            return kept

    def take(self) -> Any:
        """A kept producer, else one from kombu's pool (waiting for one when all are out)."""
        with self._lock:
            if self._idle:
                return self._idle.pop()
        return self._pool.acquire(block=True)

    def keep(self, producer: Any) -> None:
        """Keep ``producer`` for the next publish, or give it back to kombu's pool."""
        with self._lock:
            if len(self._idle) < self._keep:
                self._idle.append(producer)
                return
        producer.release()


def _publish_signals_connected() -> bool:
    from celery import signals

    return any(
        signal.receivers
        for signal in (signals.before_task_publish, signals.after_task_publish, signals.task_sent)
    )


def publisher_app(broker_url: str, *, visibility_timeout: int) -> Celery:
    """A Celery app that only publishes: the workers' routes and broker, no task imported.

    Producers (API, bot, CLI, beat) use it; only worker processes and the embedded mode load
    the task modules.
    """
    from celery import Celery

    import celeryconfig
    from shared.broker import broker_settings

    app = Celery("summarybot-publisher", set_as_current=False)
    app.config_from_object(celeryconfig)
    app.conf.update(**broker_settings(broker_url), **celeryconfig.time_bounds(visibility_timeout))
    return app
