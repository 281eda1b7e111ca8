"""The discord.py client: an :class:`~discord.ext.commands.AutoShardedBot` with the bot's cogs.

Intents are exactly what the features need: guilds (channels, roles, threads and overwrites
for permission checks), guild messages and message content (message counts for estimates, the
"Summarize from here" target) and guild reactions (the reaction trigger).  No members intent:
invokers come with their roles in each interaction or reaction payload.

Sharding: with ``shard_count``/``shard_ids`` unset, one process runs every shard Discord
recommends (``AutoShardedBot``).  For a bot in many guilds run one process per shard group:
the same ``shard_count`` everywhere and disjoint ``shard_ids`` per process.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any
from wsgiref.simple_server import WSGIServer

import discord
import structlog
from discord import app_commands
from discord.ext import commands

from producers.bot.cogs.catchup import CatchupCog
from producers.bot.cogs.common import answer
from producers.bot.cogs.digests import DigestCog
from producers.bot.cogs.reactions import ReactionCog
from producers.bot.cogs.settings import OptOutCog, SettingsCog
from producers.bot.cogs.summarize import SummarizeCog
from producers.bot.feedback import FeedbackButton
from producers.bot.runtime import BotRuntime
from shared.metrics import start_worker_metrics_server
from shared.settings import BotSettings

__all__ = ["SummaryBot", "bot_intents"]

log = structlog.get_logger(__name__)


def bot_intents() -> discord.Intents:
    """Guilds, guild messages, message content and guild reactions; nothing else."""
    intents = discord.Intents.none()
    intents.guilds = True
    intents.guild_messages = True
    intents.message_content = True
    intents.guild_reactions = True
    return intents


class _Tree(app_commands.CommandTree["SummaryBot"]):
    """The command tree, answering members when a handler fails unexpectedly."""

    async def on_error(
        self, interaction: discord.Interaction[SummaryBot], error: app_commands.AppCommandError
    ) -> None:
        """Tell the member something went wrong; keep the details in the log."""
        log.error(
            "bot.command_error",
            command=interaction.command.qualified_name if interaction.command else None,
            error=repr(error),
        )
        with contextlib.suppress(discord.HTTPException):
            await answer(interaction, "⛔ Something went wrong on my side; please try again.")


class SummaryBot(commands.AutoShardedBot):
    """The Summary Bot NG gateway client (see module docstring)."""

    def __init__(self, runtime: BotRuntime, *, settings: BotSettings | None = None) -> None:
        self.runtime = runtime
        self.bot_settings = settings or runtime.bot_settings
        options: dict[str, Any] = {}
        if self.bot_settings.shard_count is not None:
            options["shard_count"] = self.bot_settings.shard_count
        if self.bot_settings.shard_ids is not None:
            options["shard_ids"] = self.bot_settings.shard_ids
        if self.bot_settings.application_id is not None:
            options["application_id"] = self.bot_settings.application_id
        super().__init__(
            command_prefix=commands.when_mentioned,
            intents=bot_intents(),
            help_command=None,
            chunk_guilds_at_startup=False,
            member_cache_flags=discord.MemberCacheFlags.none(),
            allowed_mentions=discord.AllowedMentions.none(),
            tree_cls=_Tree,
            **options,
        )
        self._poller: asyncio.Task[None] | None = None
        self.metrics_server: WSGIServer | None = None
        runtime.directory.attach(self)

    async def setup_hook(self) -> None:
        """Add the cogs and the feedback buttons, start the poller, sync commands."""
        await self.add_cog(SummarizeCog(self))
        await self.add_cog(CatchupCog(self))
        await self.add_cog(DigestCog(self))
        await self.add_cog(SettingsCog(self))
        await self.add_cog(OptOutCog(self))
        await self.add_cog(ReactionCog(self))
        self.add_dynamic_items(FeedbackButton)
        self._poller = asyncio.create_task(self.runtime.tracker.run(), name="progress-poller")
        metrics = self.runtime.metrics
        if metrics.port is not None and self.metrics_server is None:
            self.metrics_server, _ = start_worker_metrics_server(metrics.port, addr=metrics.host)
        if self.bot_settings.sync_commands:
            await self.sync_commands()

    async def sync_commands(self) -> None:
        """Register the commands globally, or in the configured test guilds only."""
        if self.bot_settings.command_guild_ids:
            for guild_id in self.bot_settings.command_guild_ids:
                guild = discord.Object(id=guild_id)
                self.tree.copy_global_to(guild=guild)
                synced = await self.tree.sync(guild=guild)
                log.info("bot.commands_synced", guild_id=str(guild_id), commands=len(synced))
            return
        synced = await self.tree.sync()
        log.info("bot.commands_synced", commands=len(synced))

    async def on_ready(self) -> None:
        """Log the shards this process runs."""
        log.info(
            "bot.ready",
            user=str(self.user),
            guilds=len(self.guilds),
            shards=sorted(self.shards),
            shard_count=self.shard_count,
        )

    async def close(self) -> None:
        """Stop the poller, close Redis, then disconnect."""
        if self._poller is not None:
            self._poller.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._poller
            self._poller = None
        if self.metrics_server is not None:
            self.metrics_server.shutdown()
            self.metrics_server.server_close()
            self.metrics_server = None
        # types-redis predates redis 5, where aclose() replaced the deprecated close().
        await self.runtime.redis.aclose()  # type: ignore[attr-defined]
        await super().close()
