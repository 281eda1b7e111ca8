"""The fake Discord's REST API: routing, authentication, limits, faults, and every handler.

:class:`FakeDiscord` is transport-free: ``handle(method, path, query, headers, body, ip)``
returns a :class:`Response`; :mod:`tests.fakes.discord_server` puts it behind a real HTTP server.
Seeding helpers (``add_*``) build the world a test needs.  Status codes and JSON error codes
follow Discord's documented REST behaviour (HTTP status codes and JSON error codes); the
example payloads in ``tests/fixtures/discord`` are what its answers are checked against.
"""

from __future__ import annotations

import base64
import bisect
import json
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import unquote

import regex

from tests.fakes.discord_limits import FakeConfig, Fault, Limits, Reply
from tests.fakes.discord_state import (
    ADD_REACTIONS,
    CONNECT,
    CREATE_PRIVATE_THREADS,
    CREATE_PUBLIC_THREADS,
    HAS_THREAD,
    MANAGE_MESSAGES,
    MANAGE_THREADS,
    READ_MESSAGE_HISTORY,
    SEND_MESSAGES,
    SEND_MESSAGES_IN_THREADS,
    VIEW_CHANNEL,
    Channel,
    Guild,
    Interaction,
    Member,
    Message,
    Snowflakes,
    User,
    Webhook,
    iso,
    new_token,
    permissions,
    snowflake_ms,
)

__all__ = ["ApiError", "FakeDiscord", "Response"]

#: How every browser's (and Electron's) User-Agent starts; Discord wants ``DiscordBot (url, v)``.
_BROWSER_AGENT = "Mozilla/"
#: What a forward's snapshot keeps of the forwarded message (Discord's message snapshot object).
_SNAPSHOT_FIELDS = frozenset(
    {
        "type",
        "content",
        "embeds",
        "attachments",
        "timestamp",
        "edited_timestamp",
        "flags",
        "mentions",
        "mention_roles",
        "sticker_items",
        "components",
    }
)
_API_PREFIX = re.compile(r"^/api(?:/v\d+)?(?=/)")
_CUSTOM_EMOJI = re.compile(r"^(\w{2,32}):(\d{15,22})$")
# One Unicode emoji as a reaction path takes it (UTS #51 shapes, with the ``regex`` module's
# Unicode properties): a flag (two regional indicators) or one regional indicator letter, a
# keycap (``1️⃣``), or pictographs joined by ZWJ (``👨‍👩‍👧``), each with an optional VS-16 or
# skin tone and tag sequence (``🏴󠁧󠁢󠁳󠁣󠁴󠁿``).  ASCII never is an emoji by itself.
_EMOJI_ELEMENT = (
    r"(?:(?![\x00-\x7f])[\p{Emoji}\p{Extended_Pictographic}])"
    r"(?:\ufe0f|\p{Emoji_Modifier})?(?:[\U000e0020-\U000e007e]+\U000e007f)?"
)
_UNICODE_EMOJI = regex.compile(
    r"\p{Regional_Indicator}{1,2}"
    r"|[0-9#*]\ufe0f?\u20e3"
    rf"|{_EMOJI_ELEMENT}(?:\u200d{_EMOJI_ELEMENT})*"
)
_GRAPHEME = regex.compile(r"\X")
_USER_MENTION = re.compile(r"<@!?(\d+)>")
_ROLE_MENTION = re.compile(r"<@&(\d+)>")
_ARCHIVE_DURATIONS = (60, 1440, 4320, 10080)
_TEN_S_MS = 10_000
_FOURTEEN_D_MS = 14 * 24 * 3600 * 1000
LOADING = 1 << 7
EPHEMERAL = 1 << 6
COMPONENTS_V2 = 1 << 15


@dataclass
class Response:
    """What the fake answers: status, body, headers; ``reset`` drops the connection without
    answering, ``delay_s`` is slept before answering.

    The body is sent as JSON, except a ``str`` (sent as is: a plain-text answer) and ``None``.
    """

    status: int
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    reset: bool = False
    delay_s: float = 0.0


class ApiError(Exception):
    """A Discord error answer: status, JSON code and message, optional 50035 tree."""

    def __init__(self, status: int, code: int, message: str, errors: Any = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.errors = status, code, message, errors

    def body(self) -> dict[str, Any]:
        """Discord's error JSON."""
        out: dict[str, Any] = {"message": self.message, "code": self.code}
        if self.errors is not None:
            out["errors"] = self.errors
        return out


def _form_error(path: list[str], code: str, message: str) -> ApiError:
    tree: dict[str, Any] = {"_errors": [{"code": code, "message": message}]}
    for part in reversed(path):
        tree = {part: tree}
    return ApiError(400, 50035, "Invalid Form Body", tree)


_CURSORS = ("before", "after", "around")
_SNOWFLAKE_DIGITS = re.compile(r"[0-9]+")
_INT_SYNTAX = re.compile(r"-?[0-9]+")
#: Discord's snowflakes are signed 64-bit on its side: larger values are refused.
_SNOWFLAKE_MAX = 2**63 - 1
#: More significant digits than this are out of every range the fake checks.
_MAX_DIGITS = 20


def _ascii_int(text: str) -> int:
    """``text`` (ASCII digits, maybe after one ``-``) as an int.

    A number of more than ``_MAX_DIGITS`` significant digits becomes ``±10**_MAX_DIGITS``:
    out of every range checked here, and ``int`` itself refuses strings of 4300+ digits.
    """
    digits = text.lstrip("-").lstrip("0") or "0"
    value = int(digits) if len(digits) <= _MAX_DIGITS else 10**_MAX_DIGITS
    return -value if text.startswith("-") else value


def _path_id(raw: str) -> int | None:
    """The id in a path segment, or None when it is not ASCII digits (the handler's 404).

    ``str.isdigit`` is not the test: it accepts digits ``int`` refuses (``²``).
    """
    return _ascii_int(raw) if _SNOWFLAKE_DIGITS.fullmatch(raw) else None


def _snowflake_param(name: str, raw: str) -> int:
    """``raw`` as a snowflake, or Discord's 400/50035 for the query parameter ``name``.

    Only ASCII digits are a snowflake (``-1``, ``abc``, ``1e3`` and ``""`` are not); a value
    past the signed 64-bit range is refused as too large.
    """
    if not _SNOWFLAKE_DIGITS.fullmatch(raw):
        raise _form_error([name], "NUMBER_TYPE_COERCE", f'Value "{raw}" is not snowflake.')
    value = _ascii_int(raw)
    if value > _SNOWFLAKE_MAX:
        raise _form_error(
            [name],
            "NUMBER_TYPE_MAX",
            f"snowflake value should be less than or equal to {_SNOWFLAKE_MAX}.",
        )
    return value


def _check_path_ids(params: dict[str, str]) -> None:
    """Discord's 400/50035 for an id in the path that is not a snowflake (``undefined``, or
    past the 64-bit range), as for a query parameter: not a 404, which would say the id was
    well formed and names nothing."""
    for name, raw in params.items():
        if name.endswith("_id"):
            _snowflake_param(name, raw)


def _int_param(name: str, raw: str, low: int, high: int) -> int:
    """``raw`` as an int in ``low..high``, or Discord's 400/50035 for the parameter ``name``.

    Only ASCII digits after an optional ``-`` are an int (``abc``, ``1.5``, ``""``, `` 5``
    and ``٣`` are not).
    """
    if not _INT_SYNTAX.fullmatch(raw):
        raise _form_error([name], "NUMBER_TYPE_COERCE", f'Value "{raw}" is not int.')
    value = _ascii_int(raw)
    if value < low:
        raise _form_error(
            [name], "NUMBER_TYPE_MIN", f"int value should be greater than or equal to {low}."
        )
    if value > high:
        raise _form_error(
            [name], "NUMBER_TYPE_MAX", f"int value should be less than or equal to {high}."
        )
    return value


def _timestamp_param(name: str, raw: str) -> float:
    """``raw`` as an ISO8601 timestamp in epoch milliseconds (UTC when it names no offset), or
    Discord's 400/50035 for the parameter ``name``.

    The message is the one Discord gives for a unix time sent as ``before`` to the archived
    threads routes (serenity-rs/serenity#2664); the code is inferred from its other type codes.
    """
    try:
        stamp = datetime.fromisoformat(raw)
    except ValueError:
        raise _form_error(
            [name], "DATE_TIME_TYPE_PARSE", f"Could not parse {raw}. Should be ISO8601."
        ) from None
    if stamp.tzinfo is None:
        stamp = stamp.replace(tzinfo=UTC)
    return stamp.timestamp() * 1000


#: The body types Discord reads (fact sheet section 3); the fake reads JSON only.
_BODY_TYPES = ("application/json", "multipart/form-data")


def _check_content_type(header: str) -> None:
    """400/50035 for a body sent without a ``Content-Type`` Discord reads (a request-level
    error, at ``errors._errors``)."""
    if header.split(";", 1)[0].strip().lower() not in _BODY_TYPES:
        raise _form_error(
            [],
            "CONTENT_TYPE_INVALID",
            'Expected "Content-Type" header to be one of '
            "{'application/json', 'multipart/form-data'}.",
        )


class _FormErrors:
    """The problems of one request body, reported together in one 50035 ``errors`` tree
    (``{"embeds": {"0": {"title": {"_errors": [...]}}}}``), as Discord reports them."""

    def __init__(self) -> None:
        self.tree: dict[str, Any] = {}

    def add(self, path: list[str], code: str, message: str) -> None:
        node = self.tree
        for part in path:
            node = node.setdefault(part, {})
        node.setdefault("_errors", []).append({"code": code, "message": message})

    def max_length(self, path: list[str], value: str | list[Any], limit: int) -> None:
        """``BASE_TYPE_MAX_LENGTH`` when ``value`` (a string or a list) is longer than ``limit``."""
        if len(value) > limit:
            self.add(path, "BASE_TYPE_MAX_LENGTH", f"Must be {limit} or fewer in length.")

    def raise_if_any(self) -> None:
        if self.tree:
            raise ApiError(400, 50035, "Invalid Form Body", self.tree)

    # A value of the wrong JSON type is reported at its path like any broken limit, never
    # raised from deep inside a handler (which would be a 500 Discord never gives).

    def model(self, path: list[str], value: Any) -> dict[str, Any] | None:
        """``value`` when it is an object; ``None`` when absent, or (reported) not an object."""
        if value is None or isinstance(value, dict):
            return value
        self.add(path, "MODEL_TYPE_CONVERT", "Only dictionaries may be used in a ModelType")
        return None

    def values(self, path: list[str], value: Any) -> list[Any]:
        """``value`` when it is a list; ``[]`` when absent, or (reported) not a list.

        The code and message are inferred from Discord's ``MODEL_TYPE_CONVERT`` one.
        """
        if value is None or isinstance(value, list):
            return value or []
        self.add(path, "LIST_TYPE_CONVERT", "Only iterables may be used in a ListType")
        return []

    def models(self, path: list[str], value: Any) -> list[dict[str, Any] | None]:
        """The objects of a list, ``None`` in place of each item that is not one (reported:
        ``null`` as Discord's ``LIST_ITEM_VALUE_REQUIRED``, anything else as not an object)."""
        items: list[dict[str, Any] | None] = []
        for i, item in enumerate(self.values(path, value)):
            if item is None:
                self.add(
                    [*path, str(i)],
                    "LIST_ITEM_VALUE_REQUIRED",
                    "List item values of ModelType are required",
                )
            items.append(self.model([*path, str(i)], item))
        return items

    def text(self, path: list[str], value: Any) -> str:
        """``value`` as a string (an integer counts); ``""`` when absent, or (reported) any
        other type (Discord's message for a list is ``Could not interpret "[]" as string.``;
        the code is inferred)."""
        if value is None:
            return ""
        if isinstance(value, str | int) and not isinstance(value, bool):
            return str(value)
        shown = json.dumps(value, separators=(",", ":"))
        self.add(path, "STRING_TYPE_CONVERT", f'Could not interpret "{shown}" as string.')
        return ""

    def integer(self, path: list[str], value: Any, default: int = 0) -> int:
        """``value`` as an int (a whole number, or a string of ASCII digits); ``default`` when
        absent, or (reported) anything else."""
        if value is None:
            return default
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, str) and _INT_SYNTAX.fullmatch(value):
            return _ascii_int(value)
        self.add(path, "NUMBER_TYPE_COERCE", f'Value "{value}" is not int.')
        return default

    def snowflake(self, path: list[str], value: Any) -> None:
        """Report ``value`` unless it is absent or a snowflake (ASCII digits, or an integer,
        within the signed 64-bit range)."""
        if value is None:
            return
        raw = str(value) if isinstance(value, int) and not isinstance(value, bool) else value
        if not isinstance(raw, str) or not _SNOWFLAKE_DIGITS.fullmatch(raw):
            self.add(path, "NUMBER_TYPE_COERCE", f'Value "{value}" is not snowflake.')
        elif _ascii_int(raw) > _SNOWFLAKE_MAX:
            self.add(
                path,
                "NUMBER_TYPE_MAX",
                f"snowflake value should be less than or equal to {_SNOWFLAKE_MAX}.",
            )


def _embed_size(errors: _FormErrors, at: list[str], embed: dict[str, Any]) -> int:
    """Check one embed's limits into ``errors``; its characters that count toward 6000."""
    fields = errors.models([*at, "fields"], embed.get("fields"))
    errors.max_length([*at, "fields"], fields, 25)
    total = 0
    for j, item in enumerate(fields):
        if item is None:
            continue
        for key, limit in (("name", 256), ("value", 1024)):
            where = [*at, "fields", str(j), key]
            text = errors.text(where, item.get(key))
            if item.get(key) in (None, ""):
                errors.add(where, "BASE_TYPE_REQUIRED", "This field is required")
            errors.max_length(where, text, limit)
            total += len(text)
    footer = errors.model([*at, "footer"], embed.get("footer")) or {}
    author = errors.model([*at, "author"], embed.get("author")) or {}
    for where, value, limit in (
        ([*at, "title"], embed.get("title"), 256),
        ([*at, "description"], embed.get("description"), 4096),
        ([*at, "footer", "text"], footer.get("text"), 2048),
        ([*at, "author", "name"], author.get("name"), 256),
    ):
        text = errors.text(where, value)
        errors.max_length(where, text, limit)
        total += len(text)
    return total


def _check_mentions(errors: _FormErrors, value: Any) -> None:
    """``allowed_mentions``: ``parse`` of a kind excludes a list of ids of the same kind."""
    mentions = errors.model(["allowed_mentions"], value) or {}
    parse = errors.values(["allowed_mentions", "parse"], mentions.get("parse"))
    for kind in ("users", "roles"):
        ids = errors.values(["allowed_mentions", kind], mentions.get(kind))
        if kind in parse and ids:
            errors.add(
                ["allowed_mentions"],
                "MESSAGE_ALLOWED_MENTIONS_PARSE_EXCLUSIVE",
                f'parse:["{kind}"] and {kind}: [ids...] are mutually exclusive.',
            )


@dataclass
class _Ctx:
    method: str
    params: dict[str, str]
    query: dict[str, str]
    body: Any
    viewer: int | None
    ip: str


_Handler = Callable[["FakeDiscord", _Ctx], tuple[int, Any]]


@dataclass(frozen=True)
class _Route:
    method: str
    template: str
    pattern: re.Pattern[str]
    handler: str
    auth: str  # "bot", "webhook", "interaction"


def _route(method: str, template: str, handler: str, auth: str = "bot") -> _Route:
    regex = re.sub(r"\{(\w+)\}", r"(?P<\1>[^/]+)", template)
    return _Route(method, template, re.compile(f"^{regex}$"), handler, auth)


_ROUTES = [
    _route("GET", "/users/@me", "get_me"),
    _route("POST", "/users/@me/channels", "create_dm"),
    _route("GET", "/guilds/{guild_id}", "get_guild"),
    _route("GET", "/guilds/{guild_id}/channels", "guild_channels"),
    _route("GET", "/guilds/{guild_id}/members", "list_members"),
    _route("GET", "/guilds/{guild_id}/members/{user_id}", "get_member"),
    _route("GET", "/guilds/{guild_id}/threads/active", "active_threads"),
    _route("GET", "/channels/{channel_id}", "get_channel"),
    _route("GET", "/channels/{channel_id}/messages", "get_messages"),
    _route("POST", "/channels/{channel_id}/messages", "create_message"),
    _route("GET", "/channels/{channel_id}/messages/{message_id}", "get_message"),
    _route("PATCH", "/channels/{channel_id}/messages/{message_id}", "edit_message"),
    _route("DELETE", "/channels/{channel_id}/messages/{message_id}", "delete_message"),
    _route(
        "PUT", "/channels/{channel_id}/messages/{message_id}/reactions/{emoji}/@me", "add_reaction"
    ),
    _route(
        "DELETE",
        "/channels/{channel_id}/messages/{message_id}/reactions/{emoji}/@me",
        "delete_reaction",
    ),
    _route("POST", "/channels/{channel_id}/messages/{message_id}/threads", "thread_from_message"),
    _route("POST", "/channels/{channel_id}/threads", "create_thread"),
    _route("PUT", "/channels/{channel_id}/thread-members/@me", "join_thread"),
    _route("GET", "/channels/{channel_id}/threads/archived/public", "archived_threads"),
    _route(
        "POST",
        "/interactions/{interaction_id}/{interaction_token}/callback",
        "callback",
        "interaction",
    ),
    _route(
        "GET",
        "/webhooks/{webhook_id}/{webhook_token}/messages/@original",
        "original",
        "interaction",
    ),
    _route(
        "PATCH",
        "/webhooks/{webhook_id}/{webhook_token}/messages/@original",
        "original",
        "interaction",
    ),
    _route(
        "DELETE",
        "/webhooks/{webhook_id}/{webhook_token}/messages/@original",
        "original",
        "interaction",
    ),
    _route("GET", "/webhooks/{webhook_id}/{webhook_token}", "get_webhook", "webhook"),
    _route("POST", "/webhooks/{webhook_id}/{webhook_token}", "execute_webhook", "webhook"),
    _route(
        "GET",
        "/webhooks/{webhook_id}/{webhook_token}/messages/{message_id}",
        "webhook_message",
        "webhook",
    ),
    _route(
        "PATCH",
        "/webhooks/{webhook_id}/{webhook_token}/messages/{message_id}",
        "webhook_message",
        "webhook",
    ),
    _route(
        "DELETE",
        "/webhooks/{webhook_id}/{webhook_token}/messages/{message_id}",
        "webhook_message",
        "webhook",
    ),
]


class FakeDiscord:
    """A stateful, rate-limited imitation of Discord's REST API (see module docstring)."""

    def __init__(
        self,
        config: FakeConfig | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self.config = config or FakeConfig()
        self.limits = Limits(self.config, clock=clock, wall=wall)
        self._clock = clock
        self._wall = wall
        self.lock = threading.RLock()
        self.ids = Snowflakes()
        self.users: dict[int, User] = {}
        self.tokens: dict[str, int] = {}
        self.guilds: dict[int, Guild] = {}
        self.channels: dict[int, Channel] = {}
        self.messages: dict[int, Message] = {}
        self.webhooks: dict[int, Webhook] = {}
        self.interactions: dict[str, Interaction] = {}
        self.dms: dict[tuple[int, int], int] = {}
        self.nonces: dict[tuple[int, int, str], tuple[int, float]] = {}
        #: (channel id, limit asked, messages served) of every history page answered.
        self.history_pages: list[tuple[int, int, int]] = []

    # --- seeding -----------------------------------------------------------------------------

    def now_ms(self) -> int:
        """Wall-clock epoch milliseconds."""
        return int(self._wall() * 1000)

    def add_user(
        self,
        username: str,
        *,
        global_name: str | None = None,
        bot: bool = False,
        dm_open: bool = True,
    ) -> User:
        """A user (or bot) created two years ago."""
        user = User(
            id=self.ids.at(self.now_ms() - 2 * 365 * 86400_000),
            username=username,
            global_name=global_name,
            bot=bot,
            discriminator="4821" if bot else "0",
            dm_open=dm_open,
        )
        self.users[user.id] = user
        return user

    def add_bot(self, token: str, username: str = "RelayBot") -> User:
        """A bot user that authenticates with ``Bot <token>``."""
        bot = self.add_user(username, bot=True)
        self.tokens[token] = bot.id
        return bot

    def add_token(self, token: str, bot: User) -> None:
        """Another valid token for the same bot (token rotation)."""
        self.tokens[token] = bot.id

    def revoke_token(self, token: str) -> None:
        """Make ``token`` invalid (401 from now on)."""
        self.tokens.pop(token, None)

    def add_guild(self, name: str, *, owner: User, everyone_permissions: int = 0) -> Guild:
        """A guild whose @everyone role has ``everyone_permissions``."""
        gid = self.ids.at(self.now_ms() - 365 * 86400_000)
        guild = Guild(id=gid, name=name, owner_id=owner.id)
        guild.roles[gid] = ("@everyone", everyone_permissions)
        guild.members[owner.id] = Member(owner.id)
        self.guilds[gid] = guild
        return guild

    def add_role(self, guild: Guild, name: str, permissions_: int) -> int:
        """A role with ``permissions_``; returns its id."""
        rid = self.ids.at(self.now_ms() - 300 * 86400_000)
        guild.roles[rid] = (name, permissions_)
        return rid

    def add_member(
        self, guild: Guild, user: User, *, roles: tuple[int, ...] = (), nick: str | None = None
    ) -> None:
        """Make ``user`` a member of ``guild``."""
        guild.members[user.id] = Member(user.id, set(roles), nick)

    def add_channel(
        self,
        guild: Guild,
        name: str,
        *,
        type: int = 0,
        topic: str | None = None,
        overwrites: list[dict[str, Any]] | None = None,
        created_ms: int | None = None,
        category: Channel | None = None,
    ) -> Channel:
        """A guild channel (text by default), in ``category`` if given."""
        cid = self.ids.at(created_ms or self.now_ms() - 200 * 86400_000)
        channel = Channel(
            id=cid,
            type=type,
            guild_id=guild.id,
            name=name,
            topic=topic,
            overwrites=overwrites or [],
            position=len(self.channels),
            parent_id=None if category is None else category.id,
        )
        self.channels[cid] = channel
        return channel

    def add_thread(
        self,
        parent: Channel,
        name: str,
        *,
        owner: User,
        type: int = 11,
        created_ms: int | None = None,
        archived: bool = False,
        archive_ms: float | None = None,
        locked: bool = False,
        members: tuple[User, ...] = (),
    ) -> Channel:
        """A thread (not started from a message) under ``parent``."""
        tid = self.ids.at(created_ms or self.now_ms() - 86400_000)
        thread = Channel(
            id=tid,
            type=type,
            guild_id=parent.guild_id,
            name=name,
            parent_id=parent.id,
            owner_id=owner.id,
            archived=archived,
            locked=locked,
            archive_ms=archive_ms or snowflake_ms(tid),
        )
        for member in (owner, *members):
            thread.members[member.id] = float(snowflake_ms(tid))
        self.channels[tid] = thread
        return thread

    def add_message(
        self,
        channel: Channel,
        author: User,
        content: str,
        *,
        at_ms: int | None = None,
        **fields: Any,
    ) -> Message:
        """A message written at ``at_ms`` (default: now)."""
        mid = self.ids.at(at_ms if at_ms is not None else self.now_ms())
        message = Message(
            id=mid, channel_id=channel.id, author_id=author.id, content=content, **fields
        )
        message.mention_ids = [
            int(m) for m in _USER_MENTION.findall(content) if int(m) in self.users
        ]
        message.mention_roles = _ROLE_MENTION.findall(content)
        self.messages[mid] = message
        if not message.flags & EPHEMERAL:  # seen by its user only, never in the history
            channel.add_message_id(mid)
        channel.total_sent += 1
        return message

    def add_forward(
        self, channel: Channel, author: User, original: Message, *, at_ms: int | None = None
    ) -> Message:
        """``author`` forwards ``original`` into ``channel``, as Discord stores a forward: its
        own content is empty, and a snapshot of the original (content, embeds, attachments,
        mentions, stickers) rides in ``message_snapshots``."""
        shown = self.message_json(original, None, nested=True)
        return self.add_message(
            channel,
            author,
            "",
            at_ms=at_ms,
            reference={
                "type": 1,
                "message_id": str(original.id),
                "channel_id": str(original.channel_id),
                "guild_id": str(self.channels[original.channel_id].guild_id),
            },
            snapshot={k: v for k, v in shown.items() if k in _SNAPSHOT_FIELDS},
        )

    def add_history(
        self, channel: Channel, authors: list[User], count: int, *, start_ms: int, step_ms: int
    ) -> None:
        """``count`` messages, ``step_ms`` apart from ``start_ms``, authors taking turns."""
        for n in range(count):
            self.add_message(
                channel,
                authors[n % len(authors)],
                f"message {n} in #{channel.name}",
                at_ms=start_ms + n * step_ms,
            )

    def add_webhook(self, channel: Channel, name: str = "Exporter") -> Webhook:
        """A webhook of ``channel``."""
        wid = self.ids.at(self.now_ms() - 30 * 86400_000)
        hook = Webhook(
            id=wid,
            token=new_token(),
            channel_id=channel.id,
            guild_id=channel.guild_id or 0,
            name=name,
        )
        self.webhooks[wid] = hook
        return hook

    def add_interaction(self, channel: Channel, user: User, *, application: User) -> Interaction:
        """An interaction the bot just received; its token decodes like Discord's."""
        iid = self.ids.at(self.now_ms())
        raw = f"interaction:{iid}:{new_token()}".encode()
        token = base64.urlsafe_b64encode(raw).decode().rstrip("=")
        interaction = Interaction(
            id=iid,
            token=token,
            application_id=application.id,
            channel_id=channel.id,
            user_id=user.id,
            created=self._clock(),
        )
        self.interactions[token] = interaction
        return interaction

    def inject(self, fault: Fault) -> None:
        """Queue a fault (see :class:`~tests.fakes.discord_limits.Fault`)."""
        self.limits.inject(fault)

    # --- JSON --------------------------------------------------------------------------------

    def message_json(
        self, message: Message, viewer: int | None, *, nested: bool = False
    ) -> dict[str, Any]:
        """The REST message object as ``viewer`` sees it."""
        author = message.webhook_author or self.users[message.author_id].to_json()
        out: dict[str, Any] = {
            "type": message.type,
            "content": message.content,
            "mentions": [self.users[m].to_json() for m in message.mention_ids],
            "mention_roles": list(message.mention_roles),
            "attachments": list(message.attachments),
            "embeds": [{"type": "rich", **e} for e in message.embeds],
            "timestamp": iso(snowflake_ms(message.id)),
            "edited_timestamp": None if message.edited_ms is None else iso(message.edited_ms),
            "flags": message.flags,
            "components": list(message.components),
            "id": str(message.id),
            "channel_id": str(message.channel_id),
            "author": author,
            "pinned": message.pinned,
            "mention_everyone": False,
            "tts": message.tts,
        }
        if message.webhook_id is not None:
            out["webhook_id"] = str(message.webhook_id)
        if message.interaction is not None:
            out["interaction_metadata"] = dict(message.interaction)
        if self._content_hidden(message, viewer):
            out.update(content="", embeds=[], attachments=[], components=[])
        if message.reference is not None:
            out["message_reference"] = dict(message.reference)
            if not nested and message.type in (19, 21):
                target = self.messages.get(int(message.reference["message_id"]))
                out["referenced_message"] = (
                    None if target is None else self.message_json(target, viewer, nested=True)
                )
        if message.snapshot is not None:
            out["message_snapshots"] = [{"message": dict(message.snapshot)}]
        if message.thread_id is not None and message.thread_id in self.channels:
            out["thread"] = self.channels[message.thread_id].to_json(None, self.users)
        if any(users for _, users in message.reactions.values()):
            out["reactions"] = [
                {
                    "emoji": emoji,
                    "count": len(users),
                    "count_details": {"burst": 0, "normal": len(users)},
                    "burst_colors": [],
                    "me_burst": False,
                    "me": viewer in users,
                }
                for emoji, users in message.reactions.values()
                if users
            ]
        return out

    # --- dispatch ----------------------------------------------------------------------------

    def handle(
        self,
        method: str,
        raw_path: str,
        query: dict[str, str],
        headers: dict[str, str],
        body: bytes,
        ip: str = "127.0.0.1",
    ) -> Response:
        """Answer one request (see module docstring)."""
        raw = raw_path.split("?", 1)[0]
        path = _API_PREFIX.sub("", raw) or "/"
        segments = [unquote(s) for s in path.split("/")]
        # Only /api(/vN) is the API: any other path (a base URL without /api) is not served.
        route, params = self._match(method, segments) if path != raw else (None, {})
        via = {"Via": "1.1 google", "Content-Type": "application/json"}
        if self.limits.banned(ip):
            return self._finish(self.limits.ban_reply(), ip, "*", "ban", "-")
        if headers.get("user-agent", "").startswith(_BROWSER_AGENT):
            # Discord's Cloudflare refuses bot API calls from browser-like User-Agents (fact
            # sheet 1.5): a 403 without Via, which counts as an invalid request.
            blocked = Reply(403, {"message": "internal network error", "code": 40333}, {})
            return self._finish(blocked, ip, "*", "cloudflare", "-")
        if route is not None and route.handler == "get_guild" and self.config.guild_route == "off":
            self.limits.note(
                ip=ip, route_key=f"{method} {route.template}", status=404, scope=None, auth="-"
            )
            return self._unknown_route()
        if route is None:
            self.limits.note(
                ip=ip, route_key=f"{method} ?", status=405 if params else 404, scope=None, auth="-"
            )
            if params:
                return Response(405, {"message": "405: Method Not Allowed", "code": 0}, via)
            return self._unknown_route()
        auth, viewer, global_key = self._auth(route, params, headers, ip)
        route_key, major, hook_channel = self._limit_key(route, params)
        fault = self.limits.take_fault(route_key)
        delay = self.config.latency_s
        if fault is not None:
            if fault.kind == "latency":
                delay += fault.delay_s
            elif fault.kind != "status_after":
                reply = self.limits.fault_reply(fault, route_key, auth, major)
                if reply is not None:
                    return self._finish(reply, ip, route_key, auth, major, delay)
        if route.auth == "bot" and viewer is None:
            error = ApiError(401, 0, "401: Unauthorized")
            return self._finish(Reply(401, error.body(), via), ip, route_key, auth, major, delay)
        reply, bucket_headers = self.limits.admit(
            route_key=route_key,
            auth=auth,
            major=major,
            global_key=global_key,
            webhook_channel=hook_channel,
        )
        if reply is not None:
            return self._finish(reply, ip, route_key, auth, major, delay)
        ctx = _Ctx(method, params, query, None, viewer, ip)
        try:
            if body:
                _check_content_type(headers.get("content-type", ""))
                try:
                    ctx.body = json.loads(body)
                except (ValueError, RecursionError):
                    # ValueError covers bad JSON, bad UTF-8 and numbers of 4300+ digits;
                    # RecursionError arrays nested thousands deep.
                    raise ApiError(400, 50109, "The request body contains invalid JSON.") from None
            _check_path_ids(params)
            with self.lock:
                status, payload = getattr(self, "_h_" + route.handler)(ctx)
        except ApiError as exc:
            status, payload = exc.status, exc.body()
        if fault is not None and fault.kind == "status_after":
            # Served, but the answer that reaches the client is the edge's error.
            body = {"message": f"{fault.status}: Bad Gateway", "code": 0}
            lost = Reply(fault.status, body, fault.status_headers())
            return self._finish(lost, ip, route_key, auth, major, delay)
        headers_out = {**via, **bucket_headers}
        return self._finish(Reply(status, payload, headers_out), ip, route_key, auth, major, delay)

    def _unknown_route(self) -> Response:
        if self.config.unknown_route_body == "json":
            via = {"Via": "1.1 google", "Content-Type": "application/json"}
            return Response(404, {"message": "404: Not Found", "code": 0}, via)
        return Response(404, "404: Not Found", {"Content-Type": "text/plain; charset=utf-8"})

    def _finish(
        self, reply: Reply, ip: str, route_key: str, auth: str, major: str, delay: float = 0.0
    ) -> Response:
        self.limits.note(
            ip=ip,
            route_key=route_key,
            status=reply.status,
            scope=reply.scope,
            auth=auth,
            major=major,
        )
        return Response(reply.status, reply.body, reply.headers, reset=reply.reset, delay_s=delay)

    def _match(self, method: str, segments: list[str]) -> tuple[_Route | None, dict[str, str]]:
        path_ok = False
        for route in _ROUTES:
            parts = route.template.split("/")
            if len(parts) != len(segments):
                continue
            params: dict[str, str] = {}
            for want, got in zip(parts, segments, strict=True):
                if want.startswith("{"):
                    params[want[1:-1]] = got
                elif want != got:
                    break
            else:
                if route.handler == "execute_webhook" and params.get("webhook_token") == "messages":
                    continue
                path_ok = True
                if route.method == method:
                    return route, params
        return None, {"path": "matched"} if path_ok else {}

    def _auth(
        self, route: _Route, params: dict[str, str], headers: dict[str, str], ip: str
    ) -> tuple[str, int | None, str | None]:
        if route.auth == "bot":
            header = headers.get("authorization", "")
            token = header[4:] if header.startswith("Bot ") else None
            viewer = self.tokens.get(token) if token else None
            return (f"token:{token}" if token else f"ip:{ip}"), viewer, f"token:{token}"
        if route.auth == "interaction" or params.get("webhook_token") in self.interactions:
            return "interaction", None, None
        return f"ip:{ip}", None, f"ip:{ip}"

    def _limit_key(self, route: _Route, params: dict[str, str]) -> tuple[str, str, str | None]:
        template = route.template
        if "/reactions/" in template:
            key = "REACTIONS /channels/{channel_id}/messages/{message_id}/reactions"
        elif (
            route.method == "DELETE" and template == "/channels/{channel_id}/messages/{message_id}"
        ):
            message = self.messages.get(_path_id(params["message_id"]))
            age = None if message is None else self.now_ms() - snowflake_ms(message.id)
            suffix = (
                "#young"
                if age is None or age < _TEN_S_MS
                else ("#old14d" if age > _FOURTEEN_D_MS else "#old")
            )
            key = f"DELETE {template}{suffix}"
        else:
            key = f"{route.method} {template}"
        if route.handler == "execute_webhook" and params.get("webhook_token") in self.interactions:
            key = "POST /webhooks/{application_id}/{interaction_token}"
        major = params.get("channel_id") or params.get("guild_id") or ""
        for name in ("webhook_id", "interaction_id"):
            if name in params:
                major = f"{params[name]}:{params.get('webhook_token') or params.get('interaction_token')}"
        hook_channel = None
        if route.handler == "execute_webhook":
            hook = self.webhooks.get(_path_id(params["webhook_id"]))
            hook_channel = None if hook is None else str(hook.channel_id)
        return key, major or "-", hook_channel

    # --- helpers -----------------------------------------------------------------------------

    def _channel(self, ctx: _Ctx, key: str = "channel_id") -> Channel:
        raw = ctx.params[key]
        channel = self.channels.get(_path_id(raw))
        if channel is None:
            raise ApiError(404, 10003, "Unknown Channel")
        if ctx.viewer is not None and not self._can(ctx.viewer, channel, VIEW_CHANNEL):
            raise ApiError(403, 50001, "Missing Access")
        return channel

    def _perms(self, user_id: int, channel: Channel) -> int:
        if channel.type in (1, 3):
            return VIEW_CHANNEL | SEND_MESSAGES | READ_MESSAGE_HISTORY | ADD_REACTIONS
        base_channel = (
            self.channels[channel.parent_id] if channel.is_thread and channel.parent_id else channel
        )
        guild = self.guilds[channel.guild_id or 0]
        perms = permissions(guild, base_channel, user_id)
        if channel.type == 12 and user_id not in channel.members and not perms & MANAGE_THREADS:
            perms &= ~VIEW_CHANNEL
        return perms

    def _content_hidden(self, message: Message, viewer: int | None) -> bool:
        """Whether ``viewer`` (an app without the Message Content intent) gets ``message``
        emptied: not its own, not in a DM, not mentioning it."""
        if self.config.message_content_intent or viewer is None or message.author_id == viewer:
            return False
        channel = self.channels.get(message.channel_id)
        return not (channel is not None and channel.type == 1) and viewer not in message.mention_ids

    def _can(self, user_id: int, channel: Channel, bits: int) -> bool:
        return self._perms(user_id, channel) & bits == bits

    def _readable(self, ctx: _Ctx, channel: Channel) -> None:
        """Get Channel Messages in a voice or stage channel needs Connect as well as View
        Channel (Discord's docs), else 403 Missing Access like an unseen channel."""
        assert ctx.viewer is not None
        if channel.type in (2, 13) and not self._can(ctx.viewer, channel, CONNECT):
            raise ApiError(403, 50001, "Missing Access")

    def _message(self, channel: Channel, raw: str) -> Message:
        message = self.messages.get(_path_id(raw))
        if message is None or message.channel_id != channel.id:
            raise ApiError(404, 10008, "Unknown Message")
        return message

    def _validate(self, body: Any, *, create: bool, webhook: bool = False) -> None:
        """Discord's checks of a message body: every broken limit and every value of the wrong
        type at once in one 50035 tree (fact sheet section 5), then 50006 for a message with
        nothing to show."""
        if not isinstance(body, dict):
            raise _form_error(
                [], "MODEL_TYPE_CONVERT", "Only dictionaries may be used in a DictType"
            )
        errors = _FormErrors()
        content = errors.text(["content"], body.get("content"))
        errors.max_length(["content"], content, 2000)
        embeds = errors.models(["embeds"], body.get("embeds"))
        errors.max_length(["embeds"], embeds, 10)
        total = sum(
            _embed_size(errors, ["embeds", str(i)], embed)
            for i, embed in enumerate(embeds)
            if embed is not None
        )
        if total > 6000:
            errors.add(
                ["embeds"], "BASE_TYPE_MAX_LENGTH", "Embed size exceeds maximum size of 6000"
            )
        components = errors.values(["components"], body.get("components"))
        if not errors.integer(["flags"], body.get("flags")) & COMPONENTS_V2:
            # Legacy components: at most five action rows (V2 layouts have other rules).
            errors.max_length(["components"], components, 5)
        _check_mentions(errors, body.get("allowed_mentions"))
        reference = errors.model(["message_reference"], body.get("message_reference")) or {}
        for key in ("message_id", "channel_id", "guild_id"):
            errors.snowflake(["message_reference", key], reference.get(key))
        nonce = body.get("nonce")
        if isinstance(nonce, str):
            errors.max_length(["nonce"], nonce, 25)
        if webhook and body.get("username") is not None:
            name = errors.text(["username"], body["username"])
            if not 1 <= len(name) <= 80 or "discord" in name.lower() or "clyde" in name.lower():
                errors.add(["username"], "USERNAME_INVALID", 'Username cannot contain "discord"')
        errors.raise_if_any()
        if create and not (content or embeds or components or body.get("sticker_ids")):
            raise ApiError(400, 50006, "Cannot send an empty message")

    def _new_message(
        self, channel: Channel, author_id: int, body: dict[str, Any], **fields: Any
    ) -> Message:
        mid = self.ids.at(self.now_ms())
        content = str(body.get("content") or "")
        message = Message(
            id=mid,
            channel_id=channel.id,
            author_id=author_id,
            content=content,
            embeds=list(body.get("embeds") or []),
            components=list(body.get("components") or []),
            flags=int(body.get("flags") or 0),
            tts=bool(body.get("tts")),
            allowed_mentions=body.get("allowed_mentions"),
            **fields,
        )
        message.mention_ids = [
            int(m) for m in _USER_MENTION.findall(content) if int(m) in self.users
        ]
        message.mention_roles = _ROLE_MENTION.findall(content)
        self.messages[mid] = message
        if not message.flags & EPHEMERAL:  # seen by its user only, never in the history
            channel.add_message_id(mid)
        channel.total_sent += 1
        return message

    def _interaction_message(
        self, interaction: Interaction, body: dict[str, Any], *, followup: bool
    ) -> Message:
        """An interaction's response or followup: posted by the application's webhook, with
        the interaction's metadata (a followup also names the original response)."""
        metadata: dict[str, Any] = {
            "id": str(interaction.id),
            "type": 2,
            "user": self.users[interaction.user_id].to_json(),
            "authorizing_integration_owners": {
                "0": str(self.channels[interaction.channel_id].guild_id)
            },
        }
        if followup and interaction.original_id is not None:
            metadata["original_response_message_id"] = str(interaction.original_id)
        return self._new_message(
            self.channels[interaction.channel_id],
            interaction.application_id,
            body,
            type=20,
            webhook_id=interaction.application_id,
            interaction=metadata,
        )

    def _thread_writable(self, thread: Channel, viewer: int) -> None:
        if thread.locked and not self._can(viewer, thread, MANAGE_THREADS):
            raise ApiError(403, 160005, "Thread is locked")
        if thread.type == 12 and viewer not in thread.members:
            # Seeing a private thread (MANAGE_THREADS) is not being in it: join first.
            raise ApiError(403, 50001, "Missing Access")
        thread.archived = False
        # Posting in a public thread joins it, as on Discord.
        thread.members.setdefault(viewer, float(self.now_ms()))

    # --- handlers: users, guilds, channels ---------------------------------------------------

    def _h_get_me(self, ctx: _Ctx) -> tuple[int, Any]:
        assert ctx.viewer is not None
        return 200, self.users[ctx.viewer].to_json()

    def _h_get_guild(self, ctx: _Ctx) -> tuple[int, Any]:
        raw = ctx.params["guild_id"]
        guild = self.guilds.get(_path_id(raw))
        if guild is None or ctx.viewer not in guild.members:
            raise ApiError(404, 10004, "Unknown Guild")
        if self.config.guild_route == "forbidden":
            raise ApiError(403, 50001, "Missing Access")
        return 200, guild.to_json()

    def _h_get_member(self, ctx: _Ctx) -> tuple[int, Any]:
        raw = ctx.params["guild_id"]
        guild = self.guilds.get(_path_id(raw))
        if guild is None or ctx.viewer not in guild.members:
            raise ApiError(404, 10004, "Unknown Guild")
        user = ctx.params["user_id"]
        member = guild.members.get(_path_id(user))
        if member is None:
            raise ApiError(404, 10007, "Unknown Member")
        return 200, self._member_json(guild, member)

    def _member_json(self, guild: Guild, member: Member) -> dict[str, Any]:
        timeout = member.timeout_until_ms
        return {
            "user": self.users[member.user_id].to_json(),
            "nick": member.nick,
            "roles": [str(r) for r in sorted(member.roles)],
            "joined_at": iso(float(snowflake_ms(guild.id))),
            "deaf": False,
            "mute": False,
            "flags": 0,
            "pending": False,
            "communication_disabled_until": None if timeout is None else iso(timeout),
        }

    def _member_guild(self, ctx: _Ctx) -> Guild:
        """The guild of the path, which the bot must belong to (403/50001 otherwise)."""
        raw = ctx.params["guild_id"]
        guild = self.guilds.get(_path_id(raw))
        if guild is None:
            raise ApiError(404, 10004, "Unknown Guild")
        if ctx.viewer not in guild.members:
            raise ApiError(403, 50001, "Missing Access")
        return guild

    def _h_guild_channels(self, ctx: _Ctx) -> tuple[int, Any]:
        guild = self._member_guild(ctx)
        # Discord lists every channel, those the bot cannot view too (their overwrites say so).
        channels = sorted(
            (c for c in self.channels.values() if c.guild_id == guild.id and not c.is_thread),
            key=lambda c: c.id,
        )
        return 200, [c.to_json(ctx.viewer, self.users) for c in channels]

    def _h_list_members(self, ctx: _Ctx) -> tuple[int, Any]:
        guild = self._member_guild(ctx)
        if not self.config.members_intent:
            raise ApiError(403, 50001, "Missing Access")
        limit = _int_param("limit", ctx.query.get("limit", "1"), 1, 1000)
        after = _snowflake_param("after", ctx.query.get("after", "0"))
        ids = sorted(uid for uid in guild.members if uid > after)[:limit]
        return 200, [self._member_json(guild, guild.members[uid]) for uid in ids]

    def _h_get_channel(self, ctx: _Ctx) -> tuple[int, Any]:
        channel = self._channel(ctx)
        if (
            channel.type == 1
            and ctx.viewer not in channel.recipients
            and ctx.viewer != self._dm_bot(channel)
        ):
            raise ApiError(403, 50001, "Missing Access")
        return 200, channel.to_json(ctx.viewer, self.users)

    def _dm_bot(self, channel: Channel) -> int | None:
        for (bot, _user), cid in self.dms.items():
            if cid == channel.id:
                return bot
        return None

    def _h_active_threads(self, ctx: _Ctx) -> tuple[int, Any]:
        assert ctx.viewer is not None
        raw = ctx.params["guild_id"]
        guild = self.guilds.get(_path_id(raw))
        if guild is None or ctx.viewer not in guild.members:
            raise ApiError(404, 10004, "Unknown Guild")
        threads = [
            c
            for c in self.channels.values()
            if c.is_thread
            and c.guild_id == guild.id
            and not c.archived
            and self._can(ctx.viewer, c, VIEW_CHANNEL)
        ]
        members = [
            {
                "id": str(t.id),
                "user_id": str(ctx.viewer),
                "join_timestamp": iso(t.members[ctx.viewer]),
                "flags": 1,
            }
            for t in threads
            if ctx.viewer in t.members
        ]
        return 200, {"threads": [t.to_json(None, self.users) for t in threads], "members": members}

    def _h_archived_threads(self, ctx: _Ctx) -> tuple[int, Any]:
        assert ctx.viewer is not None
        channel = self._channel(ctx)
        if not self._can(ctx.viewer, channel, READ_MESSAGE_HISTORY):
            raise ApiError(403, 50013, "Missing Permissions")
        limit = _int_param("limit", ctx.query.get("limit", "50"), 2, 100)
        before = ctx.query.get("before")
        before_ms = float("inf") if before is None else _timestamp_param("before", before)
        threads = sorted(
            (
                c
                for c in self.channels.values()
                if c.parent_id == channel.id
                and c.archived
                and c.type in (10, 11)
                and c.archive_ms < before_ms
            ),
            key=lambda c: c.archive_ms,
            reverse=True,
        )
        page = threads[:limit]
        return 200, {
            "threads": [t.to_json(None, self.users) for t in page],
            "members": [],
            "has_more": len(threads) > limit,
        }

    # --- handlers: messages ------------------------------------------------------------------

    def _h_get_messages(self, ctx: _Ctx) -> tuple[int, Any]:
        assert ctx.viewer is not None
        channel = self._channel(ctx)
        self._readable(ctx, channel)
        limit = _int_param("limit", ctx.query.get("limit", "50"), 1, 100)
        cursors = {k: _snowflake_param(k, ctx.query[k]) for k in _CURSORS if k in ctx.query}
        if len(cursors) > 1:
            raise _form_error(
                [], "BASE_TYPE_BAD", "before, after and around are mutually exclusive"
            )
        if not self._can(ctx.viewer, channel, READ_MESSAGE_HISTORY):
            return 200, []
        ids = channel.message_ids
        if "after" in cursors:
            start = bisect.bisect_right(ids, cursors["after"])
            chosen = ids[start : start + limit]
        elif "before" in cursors:
            end = bisect.bisect_left(ids, cursors["before"])
            chosen = ids[max(0, end - limit) : end]
        elif "around" in cursors:
            at = bisect.bisect_left(ids, cursors["around"])
            start = max(0, at - limit // 2)
            chosen = ids[start : start + limit]
        else:
            chosen = ids[-limit:]
        self.history_pages.append((channel.id, limit, len(chosen)))
        return 200, [self.message_json(self.messages[m], ctx.viewer) for m in reversed(chosen)]

    def _h_get_message(self, ctx: _Ctx) -> tuple[int, Any]:
        assert ctx.viewer is not None
        channel = self._channel(ctx)
        self._readable(ctx, channel)
        if not self._can(ctx.viewer, channel, READ_MESSAGE_HISTORY):
            raise ApiError(403, 50001, "Missing Access")
        return 200, self.message_json(self._message(channel, ctx.params["message_id"]), ctx.viewer)

    def _h_create_message(self, ctx: _Ctx) -> tuple[int, Any]:
        assert ctx.viewer is not None
        channel = self._channel(ctx)
        body = ctx.body
        self._validate(body, create=True)
        if channel.type == 1:
            recipient = self.users[channel.recipients[0]]
            if not recipient.dm_open:
                raise ApiError(403, 50007, "Cannot send messages to this user")
        elif channel.is_thread:
            if not self._can(ctx.viewer, channel, SEND_MESSAGES_IN_THREADS):
                raise ApiError(403, 50013, "Missing Permissions")
            self._thread_writable(channel, ctx.viewer)
        elif channel.type in (15, 16):
            raise ApiError(400, 50008, "Cannot send messages in a non-text channel")
        elif not self._can(ctx.viewer, channel, SEND_MESSAGES):
            raise ApiError(403, 50013, "Missing Permissions")
        nonce = body.get("nonce")
        if nonce is not None and body.get("enforce_nonce"):
            seen = self.nonces.get((channel.id, ctx.viewer, str(nonce)))
            if seen is not None and seen[1] > self._clock() - 300 and seen[0] in self.messages:
                return 200, self.message_json(self.messages[seen[0]], ctx.viewer)
        reference = body.get("message_reference")
        fields: dict[str, Any] = {}
        if isinstance(reference, dict) and reference.get("message_id"):
            if not self._can(ctx.viewer, channel, READ_MESSAGE_HISTORY):
                raise ApiError(
                    403, 160002, "Cannot reply without permission to read message history"
                )
            target = self.messages.get(int(reference["message_id"]))
            if target is None or target.channel_id != int(
                reference.get("channel_id") or channel.id
            ):
                if reference.get("fail_if_not_exists", True):
                    raise _form_error(
                        ["message_reference"], "REPLIES_UNKNOWN_MESSAGE", "Unknown message"
                    )
            else:
                fields["type"] = 19
                fields["reference"] = {
                    "type": 0,
                    "channel_id": str(target.channel_id),
                    "message_id": str(target.id),
                    "guild_id": str(channel.guild_id) if channel.guild_id else None,
                }
        message = self._new_message(channel, ctx.viewer, body, **fields)
        if nonce is not None:
            message.nonce = str(nonce)
        if nonce is not None and body.get("enforce_nonce"):
            self.nonces[(channel.id, ctx.viewer, str(nonce))] = (message.id, self._clock())
        return 200, self.message_json(message, ctx.viewer)

    def _h_edit_message(self, ctx: _Ctx) -> tuple[int, Any]:
        assert ctx.viewer is not None
        channel = self._channel(ctx)
        message = self._message(channel, ctx.params["message_id"])
        body = ctx.body if isinstance(ctx.body, dict) else {}
        if message.author_id != ctx.viewer and set(body) - {"flags"}:
            raise ApiError(403, 50005, "Cannot edit a message authored by another user")
        self._validate(body, create=False)
        self._apply_edit(message, body)
        if "flags" in body:
            message.flags = int(body["flags"] or 0)
        return 200, self.message_json(message, ctx.viewer)

    def _apply_edit(self, message: Message, body: dict[str, Any]) -> None:
        """PATCH semantics: only fields present change; ``null`` clears."""
        if "content" in body:
            message.content = str(body["content"] or "")
            message.mention_ids = [
                int(m) for m in _USER_MENTION.findall(message.content) if int(m) in self.users
            ]
        if "embeds" in body:
            message.embeds = list(body["embeds"] or [])
        if "components" in body:
            message.components = list(body["components"] or [])
        message.edited_ms = float(self.now_ms())

    def _h_delete_message(self, ctx: _Ctx) -> tuple[int, Any]:
        assert ctx.viewer is not None
        channel = self._channel(ctx)
        message = self._message(channel, ctx.params["message_id"])
        if message.author_id != ctx.viewer and not self._can(ctx.viewer, channel, MANAGE_MESSAGES):
            raise ApiError(403, 50013, "Missing Permissions")
        self._remove(message)
        return 204, None

    def _remove(self, message: Message) -> None:
        channel = self.channels[message.channel_id]
        del self.messages[message.id]
        channel.message_ids.remove(message.id)

    def _emoji(self, raw: str) -> dict[str, Any]:
        """The reaction emoji of a path: ``name:id``, or exactly one Unicode emoji (one
        grapheme of emoji code points); anything else is Discord's 400/10014."""
        match = _CUSTOM_EMOJI.match(raw)
        if match:
            return {"id": match.group(2), "name": match.group(1)}
        if len(_GRAPHEME.findall(raw)) == 1 and _UNICODE_EMOJI.fullmatch(raw):
            return {"id": None, "name": raw}
        raise ApiError(400, 10014, "Unknown Emoji")

    def _h_add_reaction(self, ctx: _Ctx) -> tuple[int, Any]:
        assert ctx.viewer is not None
        channel = self._channel(ctx)
        message = self._message(channel, ctx.params["message_id"])
        emoji = self._emoji(ctx.params["emoji"])
        key = emoji["id"] or emoji["name"]
        if not self._can(ctx.viewer, channel, READ_MESSAGE_HISTORY):
            raise ApiError(403, 50013, "Missing Permissions")
        if key not in message.reactions and not self._can(ctx.viewer, channel, ADD_REACTIONS):
            raise ApiError(403, 50013, "Missing Permissions")
        message.reactions.setdefault(key, (emoji, set()))[1].add(ctx.viewer)
        return 204, None

    def _h_delete_reaction(self, ctx: _Ctx) -> tuple[int, Any]:
        assert ctx.viewer is not None
        channel = self._channel(ctx)
        message = self._message(channel, ctx.params["message_id"])
        emoji = self._emoji(ctx.params["emoji"])
        entry = message.reactions.get(emoji["id"] or emoji["name"])
        if entry is not None:
            entry[1].discard(ctx.viewer)
        return 204, None

    # --- handlers: threads -------------------------------------------------------------------

    def _thread_body(self, body: Any) -> tuple[str, int]:
        if not isinstance(body, dict) or not isinstance(body.get("name"), str):
            raise _form_error(["name"], "BASE_TYPE_REQUIRED", "This field is required")
        if not 1 <= len(body["name"]) <= 100:
            raise _form_error(
                ["name"], "BASE_TYPE_BAD_LENGTH", "Must be between 1 and 100 in length."
            )
        errors = _FormErrors()
        duration = errors.integer(["auto_archive_duration"], body.get("auto_archive_duration"))
        errors.raise_if_any()
        duration = duration or 1440
        if duration not in _ARCHIVE_DURATIONS:
            raise _form_error(
                ["auto_archive_duration"],
                "BASE_TYPE_CHOICES",
                "Value must be one of {60, 1440, 4320, 10080}.",
            )
        return body["name"], duration

    def _h_thread_from_message(self, ctx: _Ctx) -> tuple[int, Any]:
        assert ctx.viewer is not None
        channel = self._channel(ctx)
        name, duration = self._thread_body(ctx.body)
        if channel.type not in (0, 5):
            raise ApiError(400, 50024, "Cannot execute action on this channel type")
        message = self._message(channel, ctx.params["message_id"])
        if not self._can(ctx.viewer, channel, CREATE_PUBLIC_THREADS):
            raise ApiError(403, 50013, "Missing Permissions")
        if message.thread_id is not None:
            raise ApiError(400, 160004, "A thread has already been created for this message")
        thread = Channel(
            id=message.id,
            type=10 if channel.type == 5 else 11,
            guild_id=channel.guild_id,
            name=name,
            parent_id=channel.id,
            owner_id=ctx.viewer,
            auto_archive_duration=duration,
            archive_ms=float(self.now_ms()),
        )
        thread.members[ctx.viewer] = float(self.now_ms())
        self.channels[thread.id] = thread
        message.thread_id = thread.id
        message.flags |= HAS_THREAD
        starter = self._new_message(thread, message.author_id, {"content": ""}, type=21)
        starter.reference = {
            "channel_id": str(channel.id),
            "message_id": str(message.id),
            "guild_id": str(channel.guild_id),
        }
        return 201, thread.to_json(ctx.viewer, self.users)

    def _h_create_thread(self, ctx: _Ctx) -> tuple[int, Any]:
        assert ctx.viewer is not None
        channel = self._channel(ctx)
        name, duration = self._thread_body(ctx.body)
        body = ctx.body
        forum = channel.type in (15, 16)
        if forum:
            if not isinstance(body.get("message"), dict):
                raise _form_error(["message"], "BASE_TYPE_REQUIRED", "This field is required")
            self._validate(body["message"], create=True)
            kind = 11
        elif channel.type in (0, 5):
            errors = _FormErrors()
            kind = errors.integer(["type"], body.get("type")) or 12
            errors.raise_if_any()
            if kind not in (10, 11, 12):
                raise _form_error(
                    ["type"], "BASE_TYPE_CHOICES", "Value must be one of {10, 11, 12}."
                )
        else:
            raise ApiError(400, 50024, "Cannot execute action on this channel type")
        needed = CREATE_PRIVATE_THREADS if kind == 12 else CREATE_PUBLIC_THREADS
        if not self._can(ctx.viewer, channel, needed | SEND_MESSAGES):
            raise ApiError(403, 50013, "Missing Permissions")
        thread = Channel(
            id=self.ids.at(self.now_ms()),
            type=kind,
            guild_id=channel.guild_id,
            name=name,
            parent_id=channel.id,
            owner_id=ctx.viewer,
            auto_archive_duration=duration,
            invitable=bool(body.get("invitable", True)),
            archive_ms=float(self.now_ms()),
        )
        thread.members[ctx.viewer] = float(self.now_ms())
        self.channels[thread.id] = thread
        out = thread.to_json(ctx.viewer, self.users)
        if forum:
            first = Message(
                id=thread.id,
                channel_id=thread.id,
                author_id=ctx.viewer,
                content=str(body["message"].get("content") or ""),
                embeds=list(body["message"].get("embeds") or []),
            )
            self.messages[first.id] = first
            thread.add_message_id(first.id)
            thread.total_sent += 1
            out["message"] = self.message_json(first, ctx.viewer)
        elif kind != 12:
            notice = self._new_message(channel, ctx.viewer, {"content": name}, type=18)
            notice.reference = {"channel_id": str(thread.id), "guild_id": str(channel.guild_id)}
        return 201, out

    def _h_join_thread(self, ctx: _Ctx) -> tuple[int, Any]:
        assert ctx.viewer is not None
        thread = self._channel(ctx)
        if not thread.is_thread:
            raise ApiError(400, 50024, "Cannot execute action on this channel type")
        if thread.archived:
            raise ApiError(400, 50083, "Thread is archived")
        thread.members.setdefault(ctx.viewer, float(self.now_ms()))
        return 204, None

    # --- handlers: DMs -----------------------------------------------------------------------

    def _h_create_dm(self, ctx: _Ctx) -> tuple[int, Any]:
        assert ctx.viewer is not None
        body = ctx.body if ctx.body is not None else {}
        if not isinstance(body, dict):
            raise _form_error(
                [], "MODEL_TYPE_CONVERT", "Only dictionaries may be used in a DictType"
            )
        recipient = _path_id(str(body.get("recipient_id", "")))
        if recipient is None or recipient not in self.users:
            raise ApiError(
                400,
                50035,
                "Invalid Form Body",
                {
                    "recipient_id": {
                        "_errors": [
                            {"code": "NUMBER_TYPE_COERCE", "message": "Value is not snowflake."}
                        ]
                    }
                },
            )
        key = (ctx.viewer, recipient)
        if key not in self.dms:
            channel = Channel(id=self.ids.at(self.now_ms()), type=1, recipients=[recipient])
            self.channels[channel.id] = channel
            self.dms[key] = channel.id
        return 200, self.channels[self.dms[key]].to_json(ctx.viewer, self.users)

    # --- handlers: webhooks ------------------------------------------------------------------

    def _webhook(self, ctx: _Ctx) -> Webhook:
        raw = ctx.params["webhook_id"]
        hook = self.webhooks.get(_path_id(raw))
        if hook is None:
            raise ApiError(404, 10015, "Unknown Webhook")
        if hook.token != ctx.params["webhook_token"]:
            raise ApiError(401, 50027, "Invalid Webhook Token")
        return hook

    def _webhook_target(self, hook: Webhook, ctx: _Ctx) -> Channel:
        channel = self.channels[hook.channel_id]
        thread_id = ctx.query.get("thread_id")
        if thread_id is None:
            return channel
        thread = self.channels.get(_path_id(thread_id))
        if thread is None or thread.parent_id != channel.id:
            raise ApiError(400, 10003, "Unknown Channel")
        return thread

    def _h_get_webhook(self, ctx: _Ctx) -> tuple[int, Any]:
        hook = self._webhook(ctx)
        return 200, {
            "id": str(hook.id),
            "type": 1,
            "guild_id": str(hook.guild_id),
            "channel_id": str(hook.channel_id),
            "name": hook.name,
            "avatar": None,
            "application_id": None,
            "token": hook.token,
        }

    def _h_execute_webhook(self, ctx: _Ctx) -> tuple[int, Any]:
        if ctx.params["webhook_token"] in self.interactions:
            return self._followup(ctx)
        hook = self._webhook(ctx)
        body = ctx.body
        self._validate(body, create=True, webhook=True)
        channel = self._webhook_target(hook, ctx)
        if channel.type in (15, 16) and "thread_name" not in body:
            raise ApiError(
                400,
                220001,
                "Webhooks posted to forum channels must have a thread_name or thread_id",
            )
        if channel.is_thread:
            channel.archived = False
        author = {
            "id": str(hook.id),
            "username": body.get("username") or hook.name,
            "avatar": None,
            "discriminator": "0000",
            "public_flags": 0,
            "flags": 0,
            "bot": True,
            "global_name": None,
        }
        message = self._new_message(channel, 0, body, webhook_id=hook.id, webhook_author=author)
        if ctx.query.get("wait", "false").lower() in ("true", "1"):
            return 200, self.message_json(message, None)
        return 204, None

    def _h_webhook_message(self, ctx: _Ctx) -> tuple[int, Any]:
        hook = self._webhook(ctx)
        channel = self._webhook_target(hook, ctx)
        message = self._message(channel, ctx.params["message_id"])
        if message.webhook_id != hook.id:
            raise ApiError(404, 10008, "Unknown Message")
        if ctx.method == "DELETE":
            self._remove(message)
            return 204, None
        if ctx.method == "PATCH":
            body = ctx.body if isinstance(ctx.body, dict) else {}
            self._validate(body, create=False)
            self._apply_edit(message, body)
        return 200, self.message_json(message, None)

    # --- handlers: interactions --------------------------------------------------------------

    def _interaction(self, token: str, *, for_callback: bool) -> Interaction:
        interaction = self.interactions.get(token)
        age = None if interaction is None else self._clock() - interaction.created
        if interaction is None:
            raise ApiError(404, 10062, "Unknown interaction")
        if for_callback:
            if not interaction.acked and age is not None and age > self.config.interaction_ack_s:
                raise ApiError(404, 10062, "Unknown interaction")
        elif age is not None and age > self.config.interaction_ttl_s:
            raise ApiError(401, 50027, "Invalid Webhook Token")
        return interaction

    def _h_callback(self, ctx: _Ctx) -> tuple[int, Any]:
        interaction = self._interaction(ctx.params["interaction_token"], for_callback=True)
        if str(interaction.id) != ctx.params["interaction_id"]:
            raise ApiError(404, 10062, "Unknown interaction")
        if interaction.acked:
            raise ApiError(400, 40060, "Interaction has already been acknowledged.")
        body = ctx.body if isinstance(ctx.body, dict) else {}
        kind = body.get("type")
        if kind not in (1, 4, 5, 6, 7, 8, 9):
            raise _form_error(
                ["type"], "BASE_TYPE_CHOICES", "Value must be one of {1, 4, 5, 6, 7, 8, 9}."
            )
        interaction.acked = True
        data = body.get("data") if isinstance(body.get("data"), dict) else {}
        message: Message | None = None
        if kind == 4:
            self._validate(data, create=True)
            message = self._interaction_message(interaction, data, followup=False)
        elif kind == 5:
            errors = _FormErrors()
            flags = errors.integer(["data", "flags"], data.get("flags")) | LOADING
            errors.raise_if_any()
            message = self._interaction_message(interaction, {"flags": flags}, followup=False)
        if message is not None:
            interaction.original_id = message.id
            interaction.deferred = kind == 5
        if ctx.query.get("with_response", "false").lower() in ("true", "1"):
            out: dict[str, Any] = {
                "interaction": {
                    "id": str(interaction.id),
                    "type": 2,
                    "response_message_id": None if message is None else str(message.id),
                    "response_message_loading": kind == 5,
                    "response_message_ephemeral": False,
                }
            }
            if message is not None:
                out["resource"] = {"type": kind, "message": self.message_json(message, None)}
            return 200, out
        return 204, None

    def _followup(self, ctx: _Ctx) -> tuple[int, Any]:
        interaction = self._interaction(ctx.params["webhook_token"], for_callback=False)
        if str(interaction.application_id) != ctx.params["webhook_id"]:
            raise ApiError(404, 10015, "Unknown Webhook")
        if not interaction.acked:
            raise ApiError(404, 10015, "Unknown Webhook")
        body = ctx.body
        self._validate(body, create=True)
        message = self._interaction_message(interaction, body, followup=True)
        return 200, self.message_json(message, None)

    def _h_original(self, ctx: _Ctx) -> tuple[int, Any]:
        interaction = self._interaction(ctx.params["webhook_token"], for_callback=False)
        if str(interaction.application_id) != ctx.params["webhook_id"]:
            raise ApiError(404, 10015, "Unknown Webhook")
        message = self.messages.get(interaction.original_id or 0)
        if message is None:
            raise ApiError(404, 10008, "Unknown Message")
        if ctx.method == "DELETE":
            self._remove(message)
            interaction.original_id = None
            return 204, None
        if ctx.method == "PATCH":
            body = ctx.body if isinstance(ctx.body, dict) else {}
            self._validate(body, create=False)
            self._apply_edit(message, body)
            message.flags &= ~LOADING
        return 200, self.message_json(message, None)
