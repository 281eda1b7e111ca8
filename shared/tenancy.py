"""The guild boundary: which guild a channel, thread or member belongs to, and the one check.

A caller (an API key, a bot member, a digest schedule) acts for one guild.  Everything a job
reads or posts to must belong to that guild.  The check is made where work is accepted
(:mod:`shared.services.jobs`) and again by the workers that act on it: fetch compares the
channel it reads with the job's guild, and delivery each destination, so a row written by hand
cannot lead a worker across the boundary.

A refusal reads exactly like "no such channel" (:class:`~shared.errors.NotFoundError`), so a
caller learns nothing about other guilds.

:class:`DiscordDirectory` answers from Discord's REST API through our adapter, with a short
cache: a channel never changes guild, but it can be deleted or hidden from the bot.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Iterator, Mapping
from typing import Any, Protocol

import structlog

from shared.discord.client import DiscordClient
from shared.discord.errors import Forbidden, NotFound
from shared.discord.objects import WebhookRef
from shared.discord.permissions import ChannelKind
from shared.errors import InvalidInputError, NotFoundError

__all__ = [
    "DESTINATION_CHANNEL_KINDS",
    "REFUSED_PER_GUILD",
    "REFUSED_WINDOW_S",
    "ChannelDirectory",
    "DiscordDirectory",
    "destination_chain",
    "is_webhook_thread",
    "refuse_channel",
    "require_category",
    "require_channel",
    "require_member",
    "tenant_guild",
]

log = structlog.get_logger(__name__)

#: Channel lookups answered "not in this guild" that one guild's callers may cause per window
#: (see :meth:`DiscordDirectory.in_guild`).
REFUSED_PER_GUILD = 20
REFUSED_WINDOW_S = 600.0

#: Destination kinds that name a channel (or a thread) by ``channel_id``.
DESTINATION_CHANNEL_KINDS = frozenset({"channel", "thread"})


class ChannelDirectory(Protocol):
    """Answers which guild a channel belongs to and who is a member of a guild."""

    def channel_guild(self, channel_id: str) -> str | None:
        """The guild of a channel or thread; None when it does not exist, the bot cannot see
        it, or it belongs to no guild (a DM)."""

    def channel_type(self, channel_id: str) -> int | None:
        """Discord's type of a channel or thread (4 is a category); None when it is unknown
        or the bot cannot see it."""

    def channel_parent(self, channel_id: str) -> str | None:
        """The parent of a thread (its channel) or of a channel (its category); None when
        there is none, or the channel is unknown or hidden from the bot."""

    def in_guild(self, guild_id: str, channel_id: str) -> bool:
        """True when ``channel_id`` is a channel or thread of ``guild_id``, asked on behalf of
        a caller of ``guild_id`` (who may name any id at all)."""

    def is_member(self, guild_id: str, user_id: str) -> bool:
        """True when ``user_id`` is a member of ``guild_id``."""

    def webhook_guild(self, webhook: WebhookRef) -> str | None:
        """The guild a Discord webhook posts into; None when it is gone or its token wrong."""

    def webhook_channel(self, webhook: WebhookRef) -> str | None:
        """The channel a Discord webhook posts into; None when it is gone or its token wrong."""


def tenant_guild(job_guild: str | None, described: str | None) -> str | None:
    """The guild a job belongs to: whose budget pays, whose settings and opt-outs apply, who
    owns its summary.

    That is the job row's guild (``job_guild``), set from the caller and checked against
    Discord by fetch.  The guild id an uploaded or exported conversation names (``described``)
    only describes its messages, for jump links: a key of one guild could otherwise bill
    another and read its settings into the prompt.  Only a job without a guild (the operator's
    command line summarizing a file) takes ``described``.
    """
    return job_guild if job_guild is not None else described


def refuse_channel(channel_id: str, *, what: str = "channel") -> NotFoundError:
    """The refusal for a channel outside the caller's guild, worded as "no such channel"."""
    return NotFoundError(
        f"{what} {channel_id} is not in this server",
        user_message=f"no {what} {channel_id} in this server",
    )


def require_channel(
    directory: ChannelDirectory, guild_id: str, channel_id: str, *, what: str = "channel"
) -> None:
    """Raise :class:`NotFoundError` unless ``channel_id`` is a channel of ``guild_id``."""
    if not directory.in_guild(guild_id, channel_id):
        raise refuse_channel(channel_id, what=what)


def require_category(directory: ChannelDirectory, guild_id: str, channel_id: str) -> None:
    """Raise :class:`NotFoundError` unless ``channel_id`` is in ``guild_id``, and
    :class:`InvalidInputError` when it is a channel of that guild but not a category."""
    require_channel(directory, guild_id, channel_id, what="category")
    if directory.channel_type(channel_id) != ChannelKind.CATEGORY:
        raise InvalidInputError(
            f"channel {channel_id} is not a category; give the id of a category (a group of "
            "channels), or list the channels instead",
            field="category_id",
        )


def require_member(directory: ChannelDirectory, guild_id: str, user_id: str) -> None:
    """Raise :class:`NotFoundError` unless ``user_id`` is a member of ``guild_id``."""
    if not directory.is_member(guild_id, user_id):
        raise NotFoundError(
            f"user {user_id} is not a member of guild {guild_id}",
            user_message=f"no member {user_id} in this server",
        )


def is_webhook_thread(directory: ChannelDirectory, webhook: WebhookRef, thread_id: str) -> bool:
    """True when ``thread_id`` is a thread of the channel ``webhook`` posts into.

    Discord executes a webhook into a thread of the webhook's own channel only; checking it
    here keeps a row's ``thread_id`` from naming a thread anywhere else (the in-doubt retry
    reads that thread's messages with the bot's token).  The caller still checks the thread's
    guild.
    """
    channel = directory.webhook_channel(webhook)
    return channel is not None and directory.channel_parent(thread_id) == channel


def destination_chain(destination: Mapping[str, Any]) -> Iterator[Mapping[str, Any]]:
    """A destination followed by its fallbacks (``fallback`` nests), at most 8 deep."""
    current: Mapping[str, Any] | None = destination
    for _ in range(8):
        if current is None:
            return
        yield current
        nested = current.get("fallback")
        current = nested if isinstance(nested, Mapping) else None


class DiscordDirectory:
    """:class:`ChannelDirectory` over the Discord REST adapter, with a small TTL cache.

    Thread-safe: API and worker threads share one per process.  Positive and negative answers
    are both kept for ``ttl`` seconds (a deleted channel or a member who left is noticed
    within that time).  Concurrent misses of one key make one Discord request: the others
    wait for its answer (a cold process or an expired entry under load would otherwise send
    one lookup per waiting request, run into the route's rate limit and stall for seconds).
    """

    def __init__(
        self,
        client: DiscordClient,
        *,
        ttl: float = 60.0,
        max_entries: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
        max_refused: int = REFUSED_PER_GUILD,
        refused_window: float = REFUSED_WINDOW_S,
    ) -> None:
        self._client = client
        self._ttl = ttl
        self._max = max_entries
        self._clock = clock
        self._max_refused = max_refused
        self._refused_window = refused_window
        self._refused: OrderedDict[str, deque[float]] = OrderedDict()
        self._cache: OrderedDict[tuple[str, ...], tuple[float, Any]] = OrderedDict()
        self._lock = threading.Lock()
        self._in_flight: dict[tuple[str, ...], threading.Lock] = {}

    def _fresh(self, key: tuple[str, ...]) -> tuple[bool, Any]:
        with self._lock:
            hit = self._cache.get(key)
            if hit is not None and hit[0] > self._clock():
                self._cache.move_to_end(key)
                return True, hit[1]
        return False, None

    def _cached(self, key: tuple[str, ...], fetch: Callable[[], Any]) -> Any:
        found, value = self._fresh(key)
        if found:
            return value
        with self._lock:
            flight = self._in_flight.setdefault(key, threading.Lock())
        with flight:
            # Whoever held the flight before us may have answered already.
            found, value = self._fresh(key)
            if found:
                return value
            try:
                now = self._clock()
                value = fetch()
                with self._lock:
                    self._cache[key] = (now + self._ttl, value)
                    self._cache.move_to_end(key)
                    while len(self._cache) > self._max:
                        self._cache.popitem(last=False)
            finally:
                with self._lock:
                    self._in_flight.pop(key, None)
        return value

    def _channel(self, channel_id: str) -> tuple[str | None, int | None, str | None]:
        """A channel's guild, type and parent, from one cached read."""

        def fetch() -> tuple[str | None, int | None, str | None]:
            try:
                channel = self._client.get_channel(channel_id)
            except (NotFound, Forbidden):
                return None, None, None
            return channel.guild_id, channel.type, channel.parent_id

        result: tuple[str | None, int | None, str | None] = self._cached(
            ("channel", channel_id), fetch
        )
        return result

    def _recent_refused(self, guild_id: str) -> int:
        now = self._clock()
        with self._lock:
            times = self._refused.get(guild_id)
            if times is None:
                return 0
            while times and times[0] <= now - self._refused_window:
                times.popleft()
            return len(times)

    def _charge_refused(self, guild_id: str) -> None:
        with self._lock:
            times = self._refused.setdefault(guild_id, deque())
            self._refused.move_to_end(guild_id)
            times.append(self._clock())
            while len(self._refused) > self._max:
                self._refused.popitem(last=False)

    def in_guild(self, guild_id: str, channel_id: str) -> bool:
        """True when the channel is in the guild (see :class:`ChannelDirectory`).

        A caller may name any channel id of the world, and each one Discord answers 403 (a
        channel the bot cannot see) counts toward its invalid-request limit, shared by the
        whole deployment (the bot's breaker stops *all* traffic near it).  So each guild's
        callers get at most ``max_refused`` lookups answered "not in this guild" per
        ``refused_window``; past that, a channel not already known to be the guild's is
        refused without asking Discord.  Every such answer is charged alike, whether Discord
        said 403, 404 or that the channel is another guild's, and whether it came from the
        cache: were only 403s charged, a guild could tell from its own ration whether an id
        it named exists elsewhere.
        """
        found, value = self._fresh(("channel", channel_id))
        if found and value[0] == guild_id:
            return True
        if self._recent_refused(guild_id) >= self._max_refused:
            log.warning(
                "tenancy.refused_lookups_rationed",
                guild_id=guild_id,
                channel_id=channel_id,
                limit=self._max_refused,
            )
            return False
        if not found:
            value = self._channel(channel_id)
        if value[0] == guild_id:
            return True
        self._charge_refused(guild_id)
        return False

    def channel_guild(self, channel_id: str) -> str | None:
        """The guild of a channel or thread (see :class:`ChannelDirectory`)."""
        return self._channel(channel_id)[0]

    def channel_type(self, channel_id: str) -> int | None:
        """Discord's type of a channel or thread (see :class:`ChannelDirectory`)."""
        return self._channel(channel_id)[1]

    def channel_parent(self, channel_id: str) -> str | None:
        """The parent of a thread or channel (see :class:`ChannelDirectory`)."""
        return self._channel(channel_id)[2]

    def is_member(self, guild_id: str, user_id: str) -> bool:
        """True when the user is a member of the guild (see :class:`ChannelDirectory`)."""

        def fetch() -> bool:
            try:
                return self._client.get_member(guild_id, user_id) is not None
            except Forbidden:
                return False

        result: bool = self._cached(("member", guild_id, user_id), fetch)
        return result

    def _webhook(self, webhook: WebhookRef) -> tuple[str | None, str | None]:
        """A Discord webhook's guild and channel, from one cached read."""

        def fetch() -> tuple[str | None, str | None]:
            return self._client.webhook_place(webhook)

        # Keyed by id and a fingerprint of the token: a wrong token must not reuse an answer.
        fingerprint = hashlib.sha256(webhook.token.get_secret_value().encode()).hexdigest()[:16]
        result: tuple[str | None, str | None] = self._cached(
            ("webhook", webhook.id, fingerprint), fetch
        )
        return result

    def webhook_guild(self, webhook: WebhookRef) -> str | None:
        """The guild of a Discord webhook (see :class:`ChannelDirectory`)."""
        return self._webhook(webhook)[0]

    def webhook_channel(self, webhook: WebhookRef) -> str | None:
        """The channel of a Discord webhook (see :class:`ChannelDirectory`)."""
        return self._webhook(webhook)[1]
