"""The guild boundary's directory over what the gateway told this bot.

The bot knows which guild a channel, thread or member belongs to from its gateway cache and from
the objects Discord sent with an interaction (an archived thread, a member the cache does not
hold).  :class:`GatewayDirectory` answers the use cases' boundary checks
(:class:`shared.tenancy.ChannelDirectory`) from both, without a REST call.
"""

from __future__ import annotations

from collections.abc import Iterable

import discord

from shared.discord.objects import WebhookRef

__all__ = ["GatewayDirectory"]


class GatewayDirectory:
    """Channel and member facts from the gateway cache, plus objects an interaction carried."""

    def __init__(
        self,
        client: discord.Client | None = None,
        *,
        channels: dict[str, tuple[str, int]] | None = None,
        members: frozenset[tuple[str, str]] = frozenset(),
    ) -> None:
        self._client = client
        # channel id -> (guild id, Discord channel type)
        self._channels = dict(channels or {})
        self._members = members

    def attach(self, client: discord.Client) -> None:
        """Answer from ``client``'s cache from now on (the bot is built after its runtime)."""
        self._client = client

    def knowing(
        self,
        channels: Iterable[discord.abc.GuildChannel | discord.Thread | None] = (),
        members: Iterable[discord.Member] = (),
    ) -> GatewayDirectory:
        """A directory that also knows these resolved channels and members."""
        known = dict(self._channels)
        for channel in channels:
            if channel is not None:
                known[str(channel.id)] = (str(channel.guild.id), channel.type.value)
        pairs = self._members | {(str(m.guild.id), str(m.id)) for m in members}
        return GatewayDirectory(self._client, channels=known, members=frozenset(pairs))

    def _channel(self, channel_id: str) -> tuple[str, int] | None:
        if channel_id in self._channels:
            return self._channels[channel_id]
        if self._client is None or not channel_id.isdigit():
            return None
        channel = self._client.get_channel(int(channel_id))
        guild = getattr(channel, "guild", None)
        kind = getattr(channel, "type", None)
        if guild is None or not isinstance(kind, discord.ChannelType):
            return None
        return str(guild.id), kind.value

    def channel_guild(self, channel_id: str) -> str | None:
        """The guild of a channel or thread this bot can see (see ``ChannelDirectory``)."""
        known = self._channel(channel_id)
        return known[0] if known is not None else None

    def in_guild(self, guild_id: str, channel_id: str) -> bool:
        """True when this bot sees the channel in ``guild_id`` (see ``ChannelDirectory``)."""
        return self.channel_guild(channel_id) == guild_id

    def channel_type(self, channel_id: str) -> int | None:
        """Discord's type of a channel or thread this bot can see (see ``ChannelDirectory``)."""
        known = self._channel(channel_id)
        return known[1] if known is not None else None

    def channel_parent(self, channel_id: str) -> str | None:
        """The parent of a channel or thread in this bot's cache (see ``ChannelDirectory``)."""
        if self._client is None or not channel_id.isdigit():
            return None
        parent = getattr(self._client.get_channel(int(channel_id)), "parent_id", None)
        return str(parent) if parent is not None else None

    def is_member(self, guild_id: str, user_id: str) -> bool:
        """True when the cache (or the interaction) shows ``user_id`` in ``guild_id``."""
        if (guild_id, user_id) in self._members:
            return True
        if self._client is None or not (guild_id.isdigit() and user_id.isdigit()):
            return False
        guild = self._client.get_guild(int(guild_id))
        return guild is not None and guild.get_member(int(user_id)) is not None

    def webhook_guild(self, webhook: WebhookRef) -> str | None:  # noqa: ARG002 - protocol
        """The bot never posts through Discord webhooks: none belongs to a guild it serves."""
        return None

    def webhook_channel(self, webhook: WebhookRef) -> str | None:  # noqa: ARG002 - protocol
        """The bot never posts through Discord webhooks (see :meth:`webhook_guild`)."""
        return None
