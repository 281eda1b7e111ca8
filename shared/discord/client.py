"""The Discord REST adapter: one typed method per operation, all through the shared limiter.

Build it with :func:`shared.discord.factory.build_discord_client`.  Every method is synchronous,
checks message limits before sending, and raises the errors of :mod:`shared.discord.errors`.

Idempotent by design: deleting something already deleted succeeds, and a message sent with a
``nonce`` (and ``enforce_nonce``, the default) is created once even if the call is retried.
"""

from __future__ import annotations

import re
import time
import unicodedata
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import datetime
from typing import Any, Generic, TypeVar

import structlog
from pydantic import SecretStr

from shared.closing import ClosesOnExit
from shared.discord import history, routes
from shared.discord.convert import to_channel_info
from shared.discord.errors import (
    BadRequest,
    Forbidden,
    InvalidWebhook,
    NotFound,
    RateLimited,
    TooManyMembers,
    Unauthorized,
    UnknownRoute,
)
from shared.discord.message_limits import check_message
from shared.discord.models import Message, MessageEdit, MessageFlags
from shared.discord.objects import Channel, ReceivedMessage, User, WebhookRef
from shared.discord.rest import RestSession
from shared.domain.messages import SNOWFLAKE_DIGITS, ChannelInfo
from shared.errors import InvalidInputError

__all__ = [
    "AUTO_ARCHIVE_MINUTES",
    "CHANNEL_TTL_S",
    "GUILD_NAME_TTL_S",
    "DiscordClient",
    "normalize_emoji",
]

log = structlog.get_logger(__name__)

V = TypeVar("V")

#: Thread auto-archive durations Discord accepts, in minutes.
AUTO_ARCHIVE_MINUTES = (60, 1440, 4320, 10080)
_CUSTOM_EMOJI = re.compile(
    rf"^(?:<a?:(?P<tag_name>\w{{2,32}}):(?P<tag_id>{SNOWFLAKE_DIGITS})>"
    rf"|:?(?P<name>\w{{2,32}}):(?P<id>{SNOWFLAKE_DIGITS}))$"
)
#: The only emoji whose code point Unicode files as a letter or punctuation:
#: ‼ ⁉ ℹ 〰 〽 (each is an emoji, usually followed by VS-16).
_TEXTLIKE_EMOJI = frozenset("\u203c\u2049\u2139\u3030\u303d")
_KEYCAP = "\u20e3"
_UNKNOWN_MESSAGE = 10008
_MISSING_ACCESS = 50001
_ARCHIVED_THREAD = 50083
#: The largest page of ``GET /guilds/{id}/members`` Discord serves.
_MEMBERS_PAGE = 1000
#: Longest wait for rate limits on a lookup the caller can do without (the guild's name).
_OPTIONAL_WAIT_S = 2.0
#: How long a guild's name is reused before it is asked again (seconds).
GUILD_NAME_TTL_S = 300.0
#: How long a channel's description (name, topic, guild) is reused (seconds).
CHANNEL_TTL_S = 60.0
# Enough for every guild a large bot serves; beyond it the expired entries go first.
_REMEMBERED_MAX = 10_000


class _Remembered(Generic[V]):
    """Values kept for ``ttl`` seconds of ``clock``; at most :data:`_REMEMBERED_MAX` of them."""

    def __init__(self, ttl: float, clock: Callable[[], float]) -> None:
        self._ttl = ttl
        self._clock = clock
        self._values: dict[str, tuple[float, V]] = {}

    def get(self, key: str) -> V | None:
        known = self._values.get(key)
        return known[1] if known is not None and known[0] > self._clock() else None

    def put(self, key: str, value: V) -> None:
        now = self._clock()
        if len(self._values) >= _REMEMBERED_MAX:
            self._values = {k: v for k, v in self._values.items() if v[0] > now}
            if len(self._values) >= _REMEMBERED_MAX:
                self._values.clear()
        self._values[key] = (now + self._ttl, value)


def normalize_emoji(emoji: str) -> str:
    """The ``{emoji}`` path value Discord expects: a Unicode emoji, or ``name:id`` for custom.

    Accepts ``<:name:id>``, ``<a:name:id>``, ``:name:id`` and ``name:id``; the route layer then
    percent-encodes it (``👍`` → ``%F0%9F%91%8D``, ``:`` → ``%3A``).  Text that cannot be an
    emoji (ASCII, or letters, digits, punctuation or spaces around one: ``ok👍``, ``é``) is
    refused here; whether the rest is exactly one emoji (``👍👍`` is not) is Discord's call, a
    :class:`~shared.discord.errors.BadRequest` with code 10014.
    """
    text = emoji.strip()
    if not text:
        raise InvalidInputError("emoji is empty; give a Unicode emoji or name:id")
    match = _CUSTOM_EMOJI.match(text)
    if match:
        name = match["tag_name"] or match["name"]
        return f"{name}:{match['tag_id'] or match['id']}"
    if ":" in text or "<" in text or text.isascii() or _holds_text(text):
        raise InvalidInputError(
            f"{text!r} is not an emoji Discord understands; use a Unicode emoji such as 👍 "
            "or a custom emoji as name:id (e.g. party:1234567890123456789)"
        )
    return text


def _holds_text(text: str) -> bool:
    """True when ``text`` holds a letter, digit, punctuation or space that no emoji is made of
    (a keycap's ``0-9#*`` and the five text-like emoji aside): ``ok👍`` or ``é``, which
    Discord would refuse with 10014 Unknown Emoji.  Whether the rest is exactly one emoji is
    left to Discord, whose list of emoji is the one that counts.
    """
    keycap = _KEYCAP in text
    for char in text:
        if char in _TEXTLIKE_EMOJI or (keycap and char in "0123456789#*"):
            continue
        if unicodedata.category(char)[0] in "LNPZ":
            return True
    return False


def _secret(value: str | SecretStr) -> str:
    return value.get_secret_value() if isinstance(value, SecretStr) else value


def _check_archive(minutes: int) -> None:
    if minutes not in AUTO_ARCHIVE_MINUTES:
        raise InvalidInputError(
            f"auto_archive_minutes {minutes} is not allowed; use one of {AUTO_ARCHIVE_MINUTES}"
        )


def _webhook_route(
    route: routes.Route, webhook: WebhookRef | str | SecretStr, **params: str
) -> routes.CompiledRoute:
    """``route`` filled in for ``webhook`` (a :class:`WebhookRef`, or its URL)."""
    ref = webhook if isinstance(webhook, WebhookRef) else WebhookRef.from_url(webhook)
    return route.compile(webhook_id=ref.id, webhook_token=ref.token.get_secret_value(), **params)


def _in_thread(thread_id: str | None) -> dict[str, str | int | bool]:
    """The query parameters that aim a webhook call at a thread (none for the channel)."""
    return {} if thread_id is None else {"thread_id": thread_id}


class DiscordClient(ClosesOnExit):
    """Typed Discord operations over a :class:`~shared.discord.rest.RestSession`.

    What :meth:`channel_info` reads is remembered for a while (seconds of ``clock``): a guild's
    name for ``guild_name_ttl_s``, a channel (its name, topic and guild) for
    ``channel_ttl_s``.  A renamed guild or channel shows its new name in summaries within
    that time.
    """

    def __init__(
        self,
        session: RestSession,
        *,
        closers: Sequence[Callable[[], None]] = (),
        guild_name_ttl_s: float = GUILD_NAME_TTL_S,
        channel_ttl_s: float = CHANNEL_TTL_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.session = session
        self._dm_channels: dict[str, str] = {}
        self._closers = list(closers)
        self._guild_names: _Remembered[str] = _Remembered(guild_name_ttl_s, clock)
        self._channels: _Remembered[Channel] = _Remembered(channel_ttl_s, clock)

    def __repr__(self) -> str:
        return f"DiscordClient({self.session!r})"

    def close(self) -> None:
        """Close what the factory created for this client (recording file, own HTTP client)."""
        while self._closers:
            self._closers.pop()()

    # --- users, guilds, channels -------------------------------------------------------------

    def get_current_user(self) -> User:
        """The bot's own user (a cheap way to check the token)."""
        answer = self.session.request(routes.GET_CURRENT_USER.compile())
        return User.from_json(answer.body)

    def get_guild(self, guild_id: str, *, max_wait_s: float | None = None) -> dict[str, Any]:
        """The guild object (raw JSON); ``max_wait_s`` bounds the wait for rate limits."""
        route = routes.GET_GUILD.compile(guild_id=guild_id)
        body: dict[str, Any] = self.session.request(route, max_wait_s=max_wait_s).body
        return body

    def get_member(self, guild_id: str, user_id: str) -> dict[str, Any] | None:
        """The guild member object (raw JSON), or None when the user is not in the guild."""
        route = routes.GET_GUILD_MEMBER.compile(guild_id=guild_id, user_id=user_id)
        try:
            body: dict[str, Any] = self.session.request(route).body
        except UnknownRoute:
            raise
        except NotFound:
            return None
        return body

    def guild_channels(self, guild_id: str) -> list[dict[str, Any]]:
        """Every channel of the guild (raw JSON, with ``permission_overwrites``), no threads.

        Discord lists the channels the bot cannot view too; their overwrites say so.
        """
        route = routes.LIST_GUILD_CHANNELS.compile(guild_id=guild_id)
        body: list[dict[str, Any]] = self.session.request(route).body
        return body

    def iter_members(self, guild_id: str, *, max_members: int) -> Iterator[dict[str, Any]]:
        """The guild's members (raw JSON), by user id, read in pages of up to 1000.

        Raises :class:`~shared.discord.errors.TooManyMembers` once more than ``max_members``
        exist (after yielding the first ``max_members``), so the caller never holds an
        unbounded list; and :class:`~shared.discord.errors.Forbidden` (403/50001 "Missing
        Access") when the application lacks the privileged Server Members intent.  Lazy: the
        first request is sent on the first ``next()``.
        """
        if max_members < 0:
            raise InvalidInputError(f"max_members must be 0 or more, got {max_members}")
        return self._iter_members(guild_id, max_members)

    def _iter_members(self, guild_id: str, max_members: int) -> Iterator[dict[str, Any]]:
        route = routes.LIST_GUILD_MEMBERS.compile(guild_id=guild_id)
        # One more than the cap fits in the page that proves the cap is passed.
        page_size = min(_MEMBERS_PAGE, max_members + 1)
        after = 0
        seen = 0
        while True:
            params: dict[str, str | int | bool] = {"limit": page_size, "after": after}
            page: list[dict[str, Any]] = self.session.request(route, params=params).body
            for member in page:
                seen += 1
                if seen > max_members:
                    raise TooManyMembers(guild_id, max_members, route=route.label)
                yield member
                after = max(after, int(member["user"]["id"]))
            if len(page) < page_size:
                return

    def get_channel(self, channel_id: str) -> Channel:
        """A channel, thread or DM channel."""
        answer = self.session.request(routes.GET_CHANNEL.compile(channel_id=channel_id))
        return Channel.from_json(answer.body)

    def channel_info(self, channel_id: str) -> ChannelInfo:
        """What the pipeline records about a conversation: channel and guild ids and names.

        The guild's name is optional: a channel can be readable while ``GET /guilds/{id}`` is
        not (403), or the route may not be served (404), or rate limited; the info then simply
        has no guild name.  Both are reused for a while (see the class docstring).  Reusing the
        channel's answer keeps the guild boundary: Discord never moves a channel to another
        guild, and a channel since deleted or closed to the bot fails the history read that
        follows.
        """
        return self.channel_and_info(channel_id)[1]

    def channel_and_info(
        self, channel_id: str, *, fresh: bool = False
    ) -> tuple[Channel, ChannelInfo]:
        """The channel and :meth:`channel_info`'s answer for it, from one channel read.

        ``fresh``: read the channel from Discord even when it is remembered (and remember the
        new answer): for a caller that needs what may change, such as permission overwrites,
        which a remembered answer may hold stale.
        """
        channel = None if fresh else self._channels.get(channel_id)
        if channel is None:
            channel = self.get_channel(channel_id)
            self._channels.put(channel_id, channel)
        guild_name = self._guild_name(channel.guild_id) if channel.guild_id else None
        return channel, to_channel_info(channel.raw, guild_name=guild_name)

    def _guild_name(self, guild_id: str) -> str | None:
        known = self._guild_names.get(guild_id)
        if known is not None:
            return known
        try:
            guild = self.get_guild(guild_id, max_wait_s=_OPTIONAL_WAIT_S)
        except (NotFound, Forbidden, RateLimited) as exc:
            log.warning(
                "discord.guild_name_unavailable",
                guild_id=guild_id,
                error=type(exc).__name__,
                status=exc.status,
                code=exc.code,
            )
            return None
        name = guild.get("name")
        if not isinstance(name, str):
            return None
        # Only names are remembered: a refusal may be lifted (permissions, the route) any time.
        self._guild_names.put(guild_id, name)
        return name

    # --- messages ----------------------------------------------------------------------------

    def get_message(self, channel_id: str, message_id: str) -> ReceivedMessage:
        """One message."""
        route = routes.GET_MESSAGE.compile(channel_id=channel_id, message_id=message_id)
        return ReceivedMessage.from_json(self.session.request(route).body)

    def get_messages(
        self,
        channel_id: str,
        *,
        limit: int = 100,
        before: str | None = None,
        after: str | None = None,
        around: str | None = None,
    ) -> list[dict[str, Any]]:
        """One raw page of messages, newest first, as Discord returns it (``limit`` 1-100)."""
        if not 1 <= limit <= 100:
            raise InvalidInputError(f"limit {limit} is out of range; Discord pages hold 1-100")
        cursors = {"before": before, "after": after, "around": around}
        given = {k: v for k, v in cursors.items() if v is not None}
        if len(given) > 1:
            raise InvalidInputError(
                f"before/after/around are mutually exclusive; got {sorted(given)}"
            )
        params: dict[str, str | int | bool] = {"limit": limit, **given}
        route = routes.GET_MESSAGES.compile(channel_id=channel_id)
        body: list[dict[str, Any]] = self.session.request(route, params=params).body
        return body

    def send_message(self, channel_id: str, message: Message) -> ReceivedMessage:
        """Post ``message`` in a channel or thread (retries are safe when it has a nonce)."""
        payload = message.to_json()
        route = routes.CREATE_MESSAGE.compile(channel_id=channel_id)
        idempotent = message.nonce is not None and message.enforce_nonce
        answer = self.session.request(route, json=payload, idempotent=idempotent)
        return ReceivedMessage.from_json(answer.body)

    def edit_message(self, channel_id: str, message_id: str, edit: MessageEdit) -> ReceivedMessage:
        """Change only the fields set in ``edit``."""
        route = routes.EDIT_MESSAGE.compile(channel_id=channel_id, message_id=message_id)
        return ReceivedMessage.from_json(self.session.request(route, json=edit.to_json()).body)

    def delete_message(
        self, channel_id: str, message_id: str, *, reason: str | None = None
    ) -> None:
        """Delete a message; one that is already gone counts as deleted."""
        route = routes.DELETE_MESSAGE.compile(channel_id=channel_id, message_id=message_id)
        try:
            self.session.request(route, reason=reason)
        except NotFound as exc:
            if exc.code != _UNKNOWN_MESSAGE:
                raise

    def add_reaction(self, channel_id: str, message_id: str, emoji: str) -> None:
        """React with a Unicode emoji or a custom one (``name:id`` or ``<:name:id>``)."""
        route = routes.ADD_REACTION.compile(
            channel_id=channel_id, message_id=message_id, emoji=normalize_emoji(emoji)
        )
        self.session.request(route)

    def remove_own_reaction(self, channel_id: str, message_id: str, emoji: str) -> None:
        """Remove the bot's reaction (no error if it was not there)."""
        route = routes.DELETE_OWN_REACTION.compile(
            channel_id=channel_id, message_id=message_id, emoji=normalize_emoji(emoji)
        )
        self.session.request(route)

    # --- threads -----------------------------------------------------------------------------

    def create_thread(
        self,
        channel_id: str,
        name: str,
        *,
        message_id: str | None = None,
        private: bool = False,
        auto_archive_minutes: int = 1440,
        invitable: bool | None = None,
        rate_limit_per_user: int | None = None,
    ) -> Channel:
        """Start a thread from ``message_id``, or a public (or ``private``) thread without one."""
        if not 1 <= len(name) <= 100:
            raise InvalidInputError(f"thread name must be 1-100 characters, got {len(name)}")
        _check_archive(auto_archive_minutes)
        body: dict[str, Any] = {"name": name, "auto_archive_duration": auto_archive_minutes}
        if rate_limit_per_user is not None:
            body["rate_limit_per_user"] = rate_limit_per_user
        if message_id is not None:
            if private:
                raise InvalidInputError("a thread started from a message is always public")
            route = routes.START_THREAD_FROM_MESSAGE.compile(
                channel_id=channel_id, message_id=message_id
            )
        else:
            body["type"] = 12 if private else 11
            if invitable is not None:
                body["invitable"] = invitable
            route = routes.START_THREAD.compile(channel_id=channel_id)
        return Channel.from_json(self.session.request(route, json=body).body)

    def create_forum_post(
        self,
        forum_id: str,
        name: str,
        message: Message,
        *,
        auto_archive_minutes: int = 1440,
        applied_tags: list[str] | None = None,
    ) -> Channel:
        """Open a post (a thread with its first message) in a forum or media channel."""
        _check_archive(auto_archive_minutes)
        body: dict[str, Any] = {
            "name": name,
            "auto_archive_duration": auto_archive_minutes,
            "message": message.to_json(),
        }
        if applied_tags:
            body["applied_tags"] = applied_tags
        route = routes.START_THREAD.compile(channel_id=forum_id)
        return Channel.from_json(self.session.request(route, json=body).body)

    def join_thread(self, thread_id: str) -> None:
        """Join a thread (needed before posting in a private thread one is not part of)."""
        self.session.request(routes.JOIN_THREAD.compile(channel_id=thread_id))

    def send_to_thread(
        self, thread_id: str, message: Message, *, join: bool = True
    ) -> ReceivedMessage:
        """Post in a thread, joining it first when Discord says the bot is not part of it."""
        try:
            return self.send_message(thread_id, message)
        except (Forbidden, BadRequest) as exc:
            if not join or exc.code not in (_MISSING_ACCESS, _ARCHIVED_THREAD):
                raise
        self.join_thread(thread_id)
        return self.send_message(thread_id, message)

    def active_threads(self, channel_id: str) -> list[Channel]:
        """The channel's active (not archived) threads, forum posts included."""
        channel = self.get_channel(channel_id)
        if not channel.guild_id:
            return []
        return [t for t in self.guild_active_threads(channel.guild_id) if t.parent_id == channel_id]

    def guild_active_threads(self, guild_id: str) -> list[Channel]:
        """Every active (not archived) thread of the guild the bot can see, with ``parent_id``."""
        route = routes.LIST_ACTIVE_THREADS.compile(guild_id=guild_id)
        body = self.session.request(route).body
        return [Channel.from_json(t) for t in body.get("threads", [])]

    def list_archived_threads(
        self, channel_id: str, *, before: datetime | None = None, limit: int = 100
    ) -> tuple[list[Channel], bool]:
        """One page of public archived threads (newest archive first) and whether more exist
        (``limit`` 2-100: Discord refuses any other with a 400)."""
        if not 2 <= limit <= 100:
            raise InvalidInputError(
                f"limit {limit} is out of range; Discord pages archived threads 2-100 at a time"
            )
        params: dict[str, str | int | bool] = {"limit": limit}
        if before is not None:
            params["before"] = before.isoformat()
        route = routes.LIST_PUBLIC_ARCHIVED_THREADS.compile(channel_id=channel_id)
        body = self.session.request(route, params=params).body
        threads = [Channel.from_json(t) for t in body.get("threads", [])]
        return threads, bool(body.get("has_more"))

    #: Threads and forum posts of a channel active in a window
    #: (:func:`shared.discord.history.threads_in_window`).
    threads_in_window = history.threads_in_window

    # --- direct messages ---------------------------------------------------------------------

    def open_dm(self, user_id: str) -> Channel:
        """The DM channel with a user (Discord returns the existing one if there is one)."""
        route = routes.CREATE_DM.compile()
        channel = Channel.from_json(
            self.session.request(route, json={"recipient_id": user_id}, idempotent=True).body
        )
        self._dm_channels[user_id] = channel.id
        return channel

    def send_dm(self, user_id: str, message: Message) -> ReceivedMessage:
        """Send a direct message (403/50007 when the user does not accept DMs from the bot)."""
        channel_id = self._dm_channels.get(user_id) or self.open_dm(user_id).id
        return self.send_message(channel_id, message)

    # --- webhooks ----------------------------------------------------------------------------

    def webhook_place(self, webhook: WebhookRef | str | SecretStr) -> tuple[str | None, str | None]:
        """(guild, channel) a webhook posts into, from one read; (None, None) when the
        webhook or its token is gone."""
        route = _webhook_route(routes.GET_WEBHOOK, webhook)
        try:
            body: dict[str, Any] = self.session.request(route).body
        except UnknownRoute:
            raise
        except (NotFound, Unauthorized, InvalidWebhook):
            return None, None
        guild, channel = body.get("guild_id"), body.get("channel_id")
        return (str(guild) if guild else None), (str(channel) if channel else None)

    def webhook_channel(self, webhook: WebhookRef | str | SecretStr) -> str:
        """The channel a webhook posts into (its messages outside threads)."""
        body: dict[str, Any] = self.session.request(
            _webhook_route(routes.GET_WEBHOOK, webhook)
        ).body
        return str(body["channel_id"])

    def execute_webhook(
        self,
        webhook: WebhookRef | str | SecretStr,
        message: Message,
        *,
        wait: bool = True,
        thread_id: str | None = None,
        thread_name: str | None = None,
        username: str | None = None,
        avatar_url: str | None = None,
    ) -> ReceivedMessage | None:
        """Post through a webhook (URL or :class:`WebhookRef`); the message when ``wait``."""
        route = _webhook_route(routes.EXECUTE_WEBHOOK, webhook)
        payload = message.to_json(check=False)
        for key in ("message_reference", "nonce", "enforce_nonce"):
            payload.pop(key, None)
        if username is not None:
            payload["username"] = username
        if avatar_url is not None:
            payload["avatar_url"] = avatar_url
        if thread_name is not None:
            payload["thread_name"] = thread_name
        check_message(payload)
        params = {"wait": wait, **_in_thread(thread_id)}
        answer = self.session.request(route, json=payload, params=params)
        return ReceivedMessage.from_json(answer.body) if wait and answer.body else None

    def edit_webhook_message(
        self,
        webhook: WebhookRef | str | SecretStr,
        message_id: str,
        edit: MessageEdit,
        *,
        thread_id: str | None = None,
    ) -> ReceivedMessage:
        """Edit a message the webhook sent."""
        route = _webhook_route(routes.EDIT_WEBHOOK_MESSAGE, webhook, message_id=message_id)
        answer = self.session.request(route, json=edit.to_json(), params=_in_thread(thread_id))
        return ReceivedMessage.from_json(answer.body)

    def delete_webhook_message(
        self,
        webhook: WebhookRef | str | SecretStr,
        message_id: str,
        *,
        thread_id: str | None = None,
    ) -> None:
        """Delete a message the webhook sent; one that is already gone counts as deleted."""
        route = _webhook_route(routes.DELETE_WEBHOOK_MESSAGE, webhook, message_id=message_id)
        try:
            self.session.request(route, params=_in_thread(thread_id))
        except NotFound as exc:
            if exc.code != _UNKNOWN_MESSAGE:
                raise

    # --- interactions ------------------------------------------------------------------------

    def create_interaction_response(
        self,
        interaction_id: str,
        interaction_token: str | SecretStr,
        *,
        type: int,
        data: Mapping[str, Any] | None = None,
    ) -> None:
        """Acknowledge an interaction (type 5 defers with "thinking", 4 answers at once)."""
        body: dict[str, Any] = {"type": type}
        if data is not None:
            body["data"] = dict(data)
        route = routes.CREATE_INTERACTION_RESPONSE.compile(
            interaction_id=interaction_id, interaction_token=_secret(interaction_token)
        )
        self.session.request(route, json=body)

    def defer_interaction(
        self, interaction_id: str, interaction_token: str | SecretStr, *, ephemeral: bool = False
    ) -> None:
        """Acknowledge with DEFERRED_CHANNEL_MESSAGE_WITH_SOURCE (the user sees "thinking")."""
        data = {"flags": int(MessageFlags.EPHEMERAL)} if ephemeral else None
        self.create_interaction_response(interaction_id, interaction_token, type=5, data=data)

    def create_followup(
        self,
        application_id: str,
        interaction_token: str | SecretStr,
        message: Message,
        *,
        ephemeral: bool = False,
    ) -> ReceivedMessage:
        """Send a followup message for an interaction (valid for 15 minutes)."""
        payload = message.to_json()
        for key in ("message_reference", "nonce", "enforce_nonce"):
            payload.pop(key, None)
        if ephemeral:
            payload["flags"] = int(payload.get("flags", 0)) | int(MessageFlags.EPHEMERAL)
        route = routes.CREATE_FOLLOWUP.compile(
            application_id=application_id, interaction_token=_secret(interaction_token)
        )
        return ReceivedMessage.from_json(self.session.request(route, json=payload).body)

    def get_original_response(
        self, application_id: str, interaction_token: str | SecretStr
    ) -> ReceivedMessage:
        """The interaction's original response (its channel is where the followups go)."""
        route = routes.GET_ORIGINAL_RESPONSE.compile(
            application_id=application_id, interaction_token=_secret(interaction_token)
        )
        return ReceivedMessage.from_json(self.session.request(route).body)

    def edit_original_response(
        self, application_id: str, interaction_token: str | SecretStr, edit: MessageEdit
    ) -> ReceivedMessage:
        """Edit the interaction's original response (e.g. replace "thinking" with the answer)."""
        route = routes.EDIT_ORIGINAL_RESPONSE.compile(
            application_id=application_id, interaction_token=_secret(interaction_token)
        )
        return ReceivedMessage.from_json(self.session.request(route, json=edit.to_json()).body)

    def delete_original_response(
        self, application_id: str, interaction_token: str | SecretStr
    ) -> None:
        """Delete the interaction's original response (already deleted is fine)."""
        route = routes.DELETE_ORIGINAL_RESPONSE.compile(
            application_id=application_id, interaction_token=_secret(interaction_token)
        )
        try:
            self.session.request(route)
        except NotFound as exc:
            if exc.code != _UNKNOWN_MESSAGE:
                raise

    # --- history -----------------------------------------------------------------------------

    #: A channel's or thread's messages, oldest first
    #: (:func:`shared.discord.history.iter_history`).
    iter_history = history.iter_history
    #: A thread's messages led by the message it was started from
    #: (:func:`shared.discord.history.iter_thread_history`).
    iter_thread_history = history.iter_thread_history
