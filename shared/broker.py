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
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import urlsplit

from kombu.transport import TRANSPORT_ALIASES
from kombu.transport import redis as kombu_redis

__all__ = ["TRANSPORT", "Channel", "Transport", "broker_settings"]

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
