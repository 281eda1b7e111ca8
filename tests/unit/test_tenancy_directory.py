"""The guild boundary's directory: one Discord lookup per key however many ask at once."""

from __future__ import annotations

import threading

from shared.tenancy import DiscordDirectory
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
