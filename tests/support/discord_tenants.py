"""Guilds, channels and members on a fake Discord, for tests of the guild boundary.

One :class:`DiscordTenants` per test session (the ``discord_tenants`` fixture): every test makes
guilds of its own in it with :meth:`DiscordTenants.tenant`, so tests never see each other's.
Its ``directory`` is the REST directory the producers and workers use, pointed at the fake.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass

from pydantic import SecretStr

from shared.discord.client import DiscordClient
from shared.discord.config import DiscordSettings
from shared.discord.factory import build_discord_client
from shared.tenancy import DiscordDirectory
from tests.fakes.discord_server import FakeDiscordServer
from tests.fakes.discord_state import DEFAULT_BOT_PERMISSIONS, VIEW_CHANNEL, User

__all__ = ["DiscordTenants", "open_directory", "open_tenants"]


@dataclass
class DiscordTenants:
    """A fake Discord with a bot in it, a client of that bot, and the boundary's directory."""

    server: FakeDiscordServer
    token: str
    bot: User
    client: DiscordClient
    directory: DiscordDirectory

    def tenant(self) -> tuple[str, str]:
        """A new guild the bot is in, with one text channel: ``(guild id, channel id)``."""
        fake = self.server.fake
        with fake.lock:
            owner = fake.add_user(f"owner{random.randint(0, 10**6)}")
            guild = fake.add_guild("Tenant", owner=owner, everyone_permissions=VIEW_CHANNEL)
            role = fake.add_role(guild, "bot", DEFAULT_BOT_PERMISSIONS)
            fake.add_member(guild, self.bot, roles=(role,))
            channel = fake.add_channel(guild, "general")
        return str(guild.id), str(channel.id)

    def channel(self, guild: str, name: str = "more") -> str:
        """Another text channel of ``guild``."""
        fake = self.server.fake
        with fake.lock:
            return str(fake.add_channel(fake.guilds[int(guild)], name).id)

    def category(
        self, guild: str, name: str = "Area", *, channels: int = 1
    ) -> tuple[str, list[str]]:
        """A category of ``guild`` with ``channels`` text channels: ``(its id, their ids)``."""
        fake = self.server.fake
        with fake.lock:
            target = fake.guilds[int(guild)]
            category = fake.add_channel(target, name, type=4)
            inside = [
                str(fake.add_channel(target, f"{name.lower()}-{i}", category=category).id)
                for i in range(channels)
            ]
        return str(category.id), inside

    def member(self, guild: str, name: str = "member") -> str:
        """A new member of ``guild``."""
        fake = self.server.fake
        with fake.lock:
            user = fake.add_user(name)
            fake.add_member(fake.guilds[int(guild)], user)
        return str(user.id)

    def history_requests(self) -> list[str]:
        """Route keys of every message-history request the fake answered so far."""
        return [e[1] for e in self.server.fake.limits.events if e[1].endswith("/messages")]

    def close(self) -> None:
        """Close the client and stop the server."""
        self.client.close()
        self.server.stop()


def open_tenants(token: str = "tenants-bot-token") -> DiscordTenants:
    """Start a fake Discord with a bot and return its tenants helper (close it after)."""
    server = FakeDiscordServer().start()
    bot = server.fake.add_bot(token)
    client = build_discord_client(
        DiscordSettings(token=SecretStr(token), api_base=server.api_base), None, None, None
    )
    return DiscordTenants(server, token, bot, client, DiscordDirectory(client, ttl=5.0))


def open_directory(api_base: str, token: str) -> tuple[DiscordDirectory, Callable[[], None]]:
    """A directory of the fake at ``api_base`` for another process; and what closes it."""
    client = build_discord_client(
        DiscordSettings(token=SecretStr(token), api_base=api_base), None, None, None
    )
    return DiscordDirectory(client, ttl=5.0), client.close
