"""kombu's Redis transport with one Redis client per channel for its synchronous commands.

kombu's Redis channel builds a new ``redis.Redis`` object for every publish, ack and queue
size it asks for (``Channel.conn_or_acquire``).  The connections come from a pool either way,
but constructing the client is not free: redis-py fills a table of ~170 response callbacks per
instance, which was a fifth of the API's CPU per ``POST /v1/jobs`` (``tests.perf.api_load``
under a profiler) and a cost on every hand-over between pipeline stages.  Redis clients are
thread-safe and hold no connection of their own, so one per channel (per pool) serves them all.

:func:`broker_settings` selects this transport for ``redis://`` brokers; other URLs
(``rediss://``, whose TLS defaults kombu derives from the scheme, and the embedded
``memory://``) keep kombu's own transport.

It also knows how that transport stores a queue (:func:`queue_keys`), so the queue-size
metric and the stale-job sweep (:func:`read_queue_head`) read the same lists.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from kombu.transport import TRANSPORT_ALIASES
from kombu.transport import redis as kombu_redis

__all__ = [
    "PUBLISHED_AT",
    "TRANSPORT",
    "Channel",
    "QueueHead",
    "Transport",
    "broker_settings",
    "head_of",
    "queue_keys",
    "read_queue_head",
    "stamp_published_at",
]

#: The name this transport is known by in Celery's ``broker_transport`` and in the worker's
#: "Connected to summarybot-redis://..." line.
TRANSPORT = "summarybot-redis"
_SCHEMES = frozenset({"redis"})


class Channel(kombu_redis.Channel):  # type: ignore[misc]
    """A kombu Redis channel that reuses one client for the commands it does not poll with."""

    _command_client: Any = None

    @contextmanager
    def conn_or_acquire(self, client: Any = None) -> Iterator[Any]:
        """The client given, else this channel's client over its current pool."""
        if client:
            yield client
            return
        pool = self.pool
        current = self._command_client
        # kombu drops its pools after a fork or a failed ping; follow it to the new one.
        if current is None or current.connection_pool is not pool:
            current = self._command_client = self._create_client()
        yield current


class Transport(kombu_redis.Transport):  # type: ignore[misc]
    """kombu's Redis transport with :class:`Channel`."""

    Channel = Channel


TRANSPORT_ALIASES.setdefault(TRANSPORT, f"{__name__}:Transport")


def broker_settings(broker_url: str) -> dict[str, object]:
    """Celery settings for ``broker_url``: the URL, and this transport where it applies."""
    settings: dict[str, object] = {"broker_url": broker_url}
    if urlsplit(broker_url).scheme in _SCHEMES:
        settings["broker_transport"] = TRANSPORT
    return settings


#: Header of every task message :class:`shared.jobs.CeleryEnqueuer` publishes: when it was
#: published (a UNIX time), so the oldest message waiting in a queue tells how far behind the
#: workers of that queue are (see :func:`read_queue_head`).
PUBLISHED_AT = "published_at"

#: kombu's Redis transport keeps a queue as a list named after it, plus one list per extra
#: priority step (``name\x06\x16<n>``).
_PRIORITY_SEPARATOR = "\x06\x16"


def stamp_published_at(headers: dict[str, Any] | None = None, **_: Any) -> None:
    """A ``before_task_publish`` receiver that says when each message was published, for a
    process whose messages Celery publishes itself (beat) rather than the enqueuer."""
    if headers is not None:
        headers.setdefault(PUBLISHED_AT, time.time())


def queue_keys(queue: str) -> tuple[str, ...]:
    """The Redis lists that hold ``queue``'s waiting messages on kombu's Redis transport."""
    return (queue, *(f"{queue}{_PRIORITY_SEPARATOR}{step}" for step in range(1, 10)))


@dataclass(frozen=True)
class QueueHead:
    """The oldest message waiting in a queue.

    ``empty`` when nothing waits; otherwise ``published_at`` is when that message was published
    (None when it does not say: a message from another publisher, or one this project published
    before it stamped its messages).
    """

    empty: bool
    published_at: float | None = None

    def may_hold(self, handed_over: float, *, skew: float) -> bool:
        """Whether a message published at ``handed_over`` may still be waiting in the queue.

        kombu's Redis queues are first in, first out: a message published after the oldest
        waiting one is still behind it.  ``skew`` allows for a publish a little later than the
        time recorded for it, and for clocks of different hosts.  An empty queue, or a head
        that does not say when it was published, holds nothing for sure.
        """
        if self.empty or self.published_at is None:
            return False
        return handed_over >= self.published_at - skew


def read_queue_head(client: Any, queue: str) -> QueueHead:
    """The oldest message waiting in ``queue``, read with ``client`` (a redis-py client of the
    broker) in one round trip: kombu pushes on the left and pops on the right of each list."""
    pipe = client.pipeline(transaction=False)
    for key in queue_keys(queue):
        pipe.lindex(key, -1)
    return head_of(pipe.execute())


def head_of(last_items: Iterable[bytes | str | None]) -> QueueHead:
    """The head of a queue from the last item (``LINDEX key -1``) of each of its lists."""
    oldest = [raw for raw in last_items if raw is not None]
    if not oldest:
        return QueueHead(empty=True)
    times = [_published_at(raw) for raw in oldest]
    known = [at for at in times if at is not None]
    return QueueHead(empty=False, published_at=min(known) if len(known) == len(times) else None)


def _published_at(raw: bytes | str) -> float | None:
    try:
        headers = json.loads(raw).get("headers") or {}
        value = headers.get(PUBLISHED_AT)
    except (ValueError, AttributeError):
        return None
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None
