"""A real :class:`SummaryBot` wired to the fake Discord over HTTP, real Postgres and Redis.

discord.py's HTTP client (and its interaction webhooks) point at the fake server through
``discord.http.Route.BASE``; the guild reaches the bot's cache as a GUILD_CREATE payload built
from the fake's own state, and interactions, messages and reactions arrive as gateway payloads
fed to the bot's ``ConnectionState`` — the same objects and code paths as in production, minus
the websocket.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import discord
import redis.asyncio as aioredis
from redis.exceptions import ConnectionError as RedisConnectionError
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from producers.bot.client import SummaryBot
from producers.bot.runtime import BotRuntime, build_runtime
from shared.crypto import SecretBox, generate_key
from shared.db.engine import make_engine, make_sessionmaker
from shared.jobs import Enqueuer
from shared.llm.models import ModelInfo
from shared.settings import BotSettings, MetricsSettings, load_settings
from tests.fakes.discord_api import FakeDiscord
from tests.fakes.discord_server import FakeDiscordServer, World, seed_basic
from tests.fakes.discord_state import (
    ADD_REACTIONS,
    READ_MESSAGE_HISTORY,
    SEND_MESSAGES,
    VIEW_CHANNEL,
    Channel,
    Message,
    User,
    iso,
    permissions,
    snowflake_ms,
)
from tests.unit.bot.gateway import member_json, role_json, snowflake

__all__ = ["EMBED_LINKS", "EVERYONE", "BotHarness", "RecordingEnqueuer", "running_bot"]

EMBED_LINKS = 1 << 14
#: What @everyone may do in the harness's guild unless a test changes it.
EVERYONE = VIEW_CHANNEL | SEND_MESSAGES | READ_MESSAGE_HISTORY | ADD_REACTIONS | EMBED_LINKS


class RecordingEnqueuer:
    """Keeps published task names instead of sending them (handler tests run no workers)."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, tuple[str, ...]]] = []

    def enqueue(self, task_name: str, *args: str) -> None:
        """Remember one publication."""
        self.sent.append((task_name, args))


def _fake_permissions(fake: FakeDiscord, channel: Channel, user_id: int) -> int:
    guild = fake.guilds[channel.guild_id or 0]
    base = fake.channels[channel.parent_id] if channel.is_thread and channel.parent_id else channel
    return permissions(guild, base, user_id)


@dataclass
class BotHarness:
    """The bot and the fake world it lives in."""

    server: FakeDiscordServer
    world: World
    bot: SummaryBot
    runtime: BotRuntime
    engine: Engine
    enqueuer: Enqueuer
    sent_interactions: list[str] = field(default_factory=list)

    @property
    def fake(self) -> FakeDiscord:
        """The fake Discord's state."""
        return self.server.fake

    @property
    def session_factory(self) -> sessionmaker[Session]:
        """Sessions on the test database."""
        return self.runtime.session_factory

    @property
    def guild(self) -> discord.Guild:
        """The bot's cached guild."""
        found = self.bot.get_guild(self.world.guild.id)
        assert found is not None
        return found

    def sync_guild(self) -> discord.Guild:
        """Send the fake's current guild to the bot as GUILD_CREATE (after seeding changes)."""
        fake, world = self.fake, self.world
        guild = world.guild
        roles = [
            role_json(rid, name, perms, 0 if rid == guild.id else n + 1)
            for n, (rid, (name, perms)) in enumerate(guild.roles.items())
        ]
        channels, threads = [], []
        for channel in fake.channels.values():
            if channel.guild_id != guild.id:
                continue
            if channel.is_thread:
                threads.append(channel.to_json(world.bot.id, fake.users))
            else:
                channels.append(channel.to_json(world.bot.id, fake.users))
        bot_member = guild.members[world.bot.id]
        payload = {
            "id": str(guild.id),
            "name": guild.name,
            "icon": None,
            "owner_id": str(guild.owner_id),
            "roles": roles,
            "channels": channels,
            "threads": threads,
            "members": [member_json(world.bot.to_json(), sorted(bot_member.roles))],
            "member_count": len(guild.members),
            "emojis": [],
            "stickers": [],
            "features": [],
            "large": False,
            "unavailable": False,
            "joined_at": iso(fake.now_ms()),
            "voice_states": [],
            "presences": [],
            "stage_instances": [],
            "guild_scheduled_events": [],
            "soundboard_sounds": [],
            "premium_tier": 0,
            "preferred_locale": "en-US",
            "verification_level": 0,
            "default_message_notifications": 0,
            "explicit_content_filter": 0,
            "mfa_level": 0,
            "nsfw_level": 0,
            "system_channel_flags": 0,
            "afk_timeout": 300,
        }
        self.bot._connection._add_guild_from_data(payload)  # type: ignore[arg-type]
        return self.guild

    def member_payload(
        self, user: User, channel: Channel, *, timed_out_until: datetime | None = None
    ) -> dict[str, Any]:
        """A member as an interaction carries it, with Discord's permissions in ``channel``."""
        member = self.world.guild.members[user.id]
        return member_json(
            user.to_json(),
            sorted(member.roles),
            timed_out_until=timed_out_until,
            permissions=_fake_permissions(self.fake, channel, user.id),
        )

    def resolved_channel(self, channel: Channel, user: User) -> dict[str, Any]:
        """A channel option's ``resolved`` entry (with the invoker's permissions in it)."""
        out: dict[str, Any] = {
            "id": str(channel.id),
            "name": channel.name,
            "type": channel.type,
            "permissions": str(_fake_permissions(self.fake, channel, user.id)),
        }
        if channel.parent_id is not None:
            out["parent_id"] = str(channel.parent_id)
        if channel.is_thread:
            out = {**channel.to_json(), **out}
        return out

    def interaction_payload(
        self,
        data: dict[str, Any],
        *,
        user: User,
        channel: Channel,
        kind: int = 2,
        message: Message | None = None,
        timed_out_until: datetime | None = None,
    ) -> tuple[dict[str, Any], str]:
        """An INTERACTION_CREATE payload registered with the fake; returns it and its token."""
        registered = self.fake.add_interaction(channel, user, application=self.world.bot)
        payload: dict[str, Any] = {
            "id": str(registered.id),
            "application_id": str(self.world.bot.id),
            "type": kind,
            "token": registered.token,
            "version": 1,
            "guild_id": str(self.world.guild.id),
            "channel_id": str(channel.id),
            "channel": channel.to_json(self.world.bot.id, self.fake.users),
            "member": self.member_payload(user, channel, timed_out_until=timed_out_until),
            "app_permissions": str(_fake_permissions(self.fake, channel, self.world.bot.id)),
            "locale": "en-US",
            "guild_locale": "en-US",
            "entitlements": [],
            "authorizing_integration_owners": {"0": str(self.world.guild.id)},
            "context": 0,
            "attachment_size_limit": 26214400,
            "data": data,
        }
        if message is not None:
            payload["message"] = self.fake.message_json(message, self.world.bot.id)
        return payload, registered.token

    async def dispatch(self, payload: dict[str, Any], event: str = "INTERACTION_CREATE") -> None:
        """Feed one gateway event to the bot and wait until everything it started is done."""
        before = asyncio.all_tasks()
        parser = getattr(self.bot._connection, "parse_" + event.lower())
        parser(payload)
        await self.settle(before)

    async def settle(self, before: set[asyncio.Task[Any]], timeout: float = 20.0) -> None:
        """Wait for the tasks started since ``before`` (and the ones they start)."""
        deadline = time.monotonic() + timeout
        current = asyncio.current_task()
        while True:
            pending = [t for t in asyncio.all_tasks() - before if t is not current and not t.done()]
            if not pending:
                return
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"bot tasks still running: {pending}")
            await asyncio.wait(pending, timeout=left)

    async def command(
        self,
        name: str,
        options: list[dict[str, Any]] | None = None,
        *,
        user: User,
        channel: Channel,
        resolved: dict[str, Any] | None = None,
        timed_out_until: datetime | None = None,
    ) -> str:
        """Run a slash command; returns the interaction token."""
        data: dict[str, Any] = {
            "id": str(snowflake()),
            "name": name,
            "type": 1,
            "guild_id": str(self.world.guild.id),
            "options": options or [],
        }
        if resolved:
            data["resolved"] = resolved
        payload, token = self.interaction_payload(
            data, user=user, channel=channel, timed_out_until=timed_out_until
        )
        await self.dispatch(payload)
        return token

    def original(self, token: str) -> Message | None:
        """The interaction's original response as the fake holds it."""
        interaction = self.fake.interactions[token]
        return self.fake.messages.get(interaction.original_id or 0)

    def replies(self, token: str) -> list[Message]:
        """Every message posted through the interaction (original first, then follow-ups)."""
        interaction = self.fake.interactions[token]
        # By the interaction's metadata: ephemeral replies are in no channel's history.
        with self.fake.lock:
            messages = list(self.fake.messages.values())
        return sorted(
            (m for m in messages if (m.interaction or {}).get("id") == str(interaction.id)),
            key=lambda message: message.id,
        )

    def add_message(self, channel: Channel, author: User, content: str) -> Message:
        """A message in the fake, announced to the bot as MESSAGE_CREATE."""
        message = self.fake.add_message(channel, author, content)
        data = self.fake.message_json(message, self.world.bot.id)
        data["guild_id"] = str(self.world.guild.id)
        member = self.world.guild.members.get(author.id)
        if member is not None:
            data["member"] = {
                "roles": [str(r) for r in sorted(member.roles)],
                "joined_at": iso(snowflake_ms(self.world.guild.id)),
                "deaf": False,
                "mute": False,
                "flags": 0,
            }
        self.bot._connection.parse_message_create(data)  # type: ignore[arg-type]
        return message


@contextlib.asynccontextmanager
async def running_bot(
    *,
    database_url: str,
    redis_url: str,
    enqueuer: Enqueuer | None = None,
    settings: dict[str, Any] | None = None,
    llm_model: ModelInfo | None = None,
    clock: Callable[[], datetime] | None = None,
    everyone: int = EVERYONE,
    server: FakeDiscordServer | None = None,
    secret_key: str | None = None,
    metrics: MetricsSettings | None = None,
) -> AsyncIterator[BotHarness]:
    """A logged-in bot with the ``basic`` fake world in its cache (see module docstring)."""
    own_server = server is None
    server = server or FakeDiscordServer().start()
    world = seed_basic(server.fake, token=f"bot-token-{uuid.uuid4().hex[:8]}")
    guild = world.guild
    guild.roles[guild.id] = ("@everyone", everyone)
    world.api_base = server.api_base
    previous_base = discord.http.Route.BASE
    discord.http.Route.BASE = server.api_base
    engine = make_engine(database_url, pool_size=2, max_overflow=2)
    config = BotSettings(
        **{
            "sync_commands": False,
            "application_id": world.bot.id,
            "redis_key_prefix": f"sbtest:bot:{uuid.uuid4().hex[:12]}:",
            "progress_interval_seconds": 0.2,
            **(settings or {}),
        }
    )
    sink = enqueuer if enqueuer is not None else RecordingEnqueuer()
    runtime = build_runtime(
        load_settings(bot=config, metrics=metrics or MetricsSettings()),
        session_factory=make_sessionmaker(engine),
        enqueuer=sink,
        redis=aioredis.Redis.from_url(redis_url),
        box=SecretBox([secret_key or generate_key()]),
        llm_model=llm_model,
        clock=clock or (lambda: datetime.now(UTC)),
    )
    bot = SummaryBot(runtime)
    harness = BotHarness(
        server=server, world=world, bot=bot, runtime=runtime, engine=engine, enqueuer=sink
    )
    prefix = config.redis_key_prefix
    try:
        await bot._async_setup_hook()
        data = await bot.http.static_login(world.token)
        bot._connection.user = discord.ClientUser(state=bot._connection, data=data)
        await bot.setup_hook()
        harness.sync_guild()
        yield harness
    finally:
        with contextlib.suppress(RedisConnectionError):
            async for key in runtime.redis.scan_iter(match=f"{prefix}*"):
                await runtime.redis.delete(key)
        with contextlib.suppress(RedisConnectionError):
            await bot.close()
        # Database calls the bot made in threads finish (and return their connections)
        # before the pool is disposed.
        await asyncio.get_running_loop().shutdown_default_executor()
        discord.http.Route.BASE = previous_base
        engine.dispose()
        if own_server:
            server.stop()
