"""The guild boundary's directory: one Discord lookup per key however many ask at once, and a
ration of refused lookups per guild that tells it nothing about other guilds."""

from __future__ import annotations

import random
import threading

import pytest

from shared.errors import NotFoundError
from shared.tenancy import REFUSED_PER_GUILD, DiscordDirectory, require_channel
from tests.fakes.discord_state import VIEW_CHANNEL
from tests.support.discord_tenants import DiscordTenants


def _channel_lookups(tenants: DiscordTenants, channel: str) -> int:
    return sum(
        1
        for event in tenants.server.fake.limits.events
        if event[1] == "GET /channels/{channel_id}" and event[5] == channel
    )


def test_concurrent_misses_of_one_channel_make_one_discord_request(
    discord_tenants: DiscordTenants,
) -> None:
    guild, channel = discord_tenants.tenant()
    directory = DiscordDirectory(discord_tenants.client, ttl=60.0)
    start = threading.Barrier(16)
    answers: list[str | None] = []

    def ask() -> None:
        start.wait()
        answers.append(directory.channel_guild(channel))

    threads = [threading.Thread(target=ask) for _ in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert answers == [guild] * 16
    assert _channel_lookups(discord_tenants, channel) == 1


def test_an_expired_answer_is_asked_again(discord_tenants: DiscordTenants) -> None:
    guild, channel = discord_tenants.tenant()
    now = [0.0]
    directory = DiscordDirectory(discord_tenants.client, ttl=5.0, clock=lambda: now[0])
    assert directory.channel_guild(channel) == guild
    assert directory.channel_guild(channel) == guild
    assert _channel_lookups(discord_tenants, channel) == 1
    now[0] = 6.0
    assert directory.channel_guild(channel) == guild
    assert _channel_lookups(discord_tenants, channel) == 2


def test_a_guild_naming_channels_the_bot_cannot_see_spends_a_bounded_share_of_invalid_requests(
    discord_tenants: DiscordTenants,
) -> None:
    # Every 403 counts toward Discord's invalid-request limit of the whole deployment (the
    # bot's breaker stops all traffic of every guild near it).  A key of one guild may name
    # any channel id: those of a server the bot is not in come back 403 each.
    fake = discord_tenants.server.fake
    guild, _ = discord_tenants.tenant()
    with fake.lock:
        owner = fake.add_user("stranger")
        elsewhere = fake.add_guild("Elsewhere", owner=owner, everyone_permissions=VIEW_CHANNEL)
        foreign = [str(fake.add_channel(elsewhere, f"c{i}").id) for i in range(60)]
    directory = DiscordDirectory(discord_tenants.client, ttl=60.0)
    before = fake.limits.invalid_count("127.0.0.1")
    for channel_id in foreign:
        with pytest.raises(NotFoundError):
            require_channel(directory, guild, channel_id)
    spent = fake.limits.invalid_count("127.0.0.1") - before
    assert spent <= REFUSED_PER_GUILD, spent
    # Another guild's callers are not held back by it, nor are this guild's known channels.
    other_guild, other_channel = discord_tenants.tenant()
    require_channel(directory, other_guild, other_channel)
    assert directory.in_guild(other_guild, other_channel)


def _foreign_ids(tenants: DiscordTenants, kind: str, count: int) -> list[str]:
    """``count`` channel ids outside any guild a tenant of the test owns."""
    fake = tenants.server.fake
    if kind == "missing":
        return [str(random.randint(10**17, 10**18 - 1)) for _ in range(count)]
    other, _ = tenants.tenant()
    with fake.lock:
        guild = fake.guilds[int(other)]
        # Hidden from the bot (Discord answers 403), or visible but another guild's (200).
        hidden = [{"id": other, "type": 0, "allow": "0", "deny": str(VIEW_CHANNEL)}]
        overwrites = hidden if kind == "hidden" else []
        return [
            str(fake.add_channel(guild, f"x{i}", overwrites=overwrites).id) for i in range(count)
        ]


@pytest.mark.parametrize("kind", ["hidden", "visible", "missing"])
@pytest.mark.parametrize("named", [REFUSED_PER_GUILD - 1, REFUSED_PER_GUILD])
def test_the_ration_charges_every_foreign_id_alike(
    discord_tenants: DiscordTenants, kind: str, named: int
) -> None:
    # Whether a guild's own new channel is still looked up after it named ``named`` ids of
    # other guilds must not depend on whether those ids exist (else the ration is an oracle).
    guild, _ = discord_tenants.tenant()
    directory = DiscordDirectory(discord_tenants.client, ttl=60.0)
    for channel_id in _foreign_ids(discord_tenants, kind, named):
        assert not directory.in_guild(guild, channel_id)
    own = discord_tenants.channel(guild, "brand-new")
    assert directory.in_guild(guild, own) is (named < REFUSED_PER_GUILD)
