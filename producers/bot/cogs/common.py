"""Helpers every command handler uses: the runtime, guild context, channel lookups, replies.

Handlers acknowledge first (a deferral, or an immediate answer for input errors found without
any I/O) and only then touch the database or Redis, so Discord's 3-second deadline never
depends on them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar, cast

import discord
import structlog
from discord import app_commands
from discord.ext import commands

from producers.bot.authorize import can_manage_guild
from producers.bot.runtime import BotRuntime, HasRuntime
from producers.bot.snapshots import guild_view, member_view
from shared.errors import InvalidInputError
from shared.summarize.content import SummaryFormat

__all__ = [
    "FORMAT_CHOICES",
    "SUMMARIZABLE",
    "AnyBot",
    "AnyChannel",
    "GuildChannel",
    "GuildContext",
    "answer",
    "command_context",
    "guild_context",
    "manager_context",
    "pick_channel",
    "resolve_channel",
    "runtime_of",
    "send_after_defer",
    "summary_style_options",
]

log = structlog.get_logger(__name__)

GuildChannel = discord.abc.GuildChannel | discord.Thread
AnyBot = commands.Bot | commands.AutoShardedBot
#: What a channel option of a command holds: a channel or a thread.
AnyChannel = app_commands.AppCommandChannel | app_commands.AppCommandThread

#: Channel types whose messages can be summarized.
SUMMARIZABLE = frozenset(
    {
        discord.ChannelType.text,
        discord.ChannelType.news,
        discord.ChannelType.voice,
        discord.ChannelType.stage_voice,
        discord.ChannelType.public_thread,
        discord.ChannelType.private_thread,
        discord.ChannelType.news_thread,
    }
)

#: The choices of every command's summary format option, one per :class:`SummaryFormat`.
FORMAT_CHOICES = [app_commands.Choice(name=f.value, value=f.value) for f in SummaryFormat]

Command = TypeVar("Command", bound=Callable[..., Any])


def summary_style_options(command: Command) -> Command:
    """Describe the ``format`` and ``language`` options of a command a member asks a summary
    with, and offer the formats as choices: the same words in every such command."""
    described = app_commands.describe(
        format="How detailed the summary is",
        language="Language of the summary, e.g. en, de, pt-BR",
    )(command)
    return app_commands.choices(format=FORMAT_CHOICES)(described)


def runtime_of(interaction: discord.Interaction[Any]) -> BotRuntime:
    """The runtime of the bot that received ``interaction``."""
    return cast(HasRuntime, interaction.client).runtime


@dataclass(frozen=True)
class GuildContext:
    """The guild, the invoking member and the channel a command ran in."""

    guild: discord.Guild
    member: discord.Member
    channel: GuildChannel | None


def guild_context(interaction: discord.Interaction[Any]) -> GuildContext | str:
    """The command's guild context, or why there is none (a message for the member)."""
    guild = interaction.guild
    member = interaction.user
    if guild is None or not isinstance(member, discord.Member):
        return "This command works in servers only."
    if guild.unavailable or guild.me is None or guild.default_role is None or not guild.roles:
        return "I have not received this server's details from Discord yet; try again shortly."
    channel = interaction.channel
    if not isinstance(channel, discord.abc.GuildChannel | discord.Thread):
        channel = None
    return GuildContext(guild=guild, member=member, channel=channel)


def resolve_channel(guild: discord.Guild, channel_id: int) -> GuildChannel | None:
    """A cached channel or thread of ``guild``."""
    found = guild.get_channel_or_thread(channel_id)
    return found if isinstance(found, discord.abc.GuildChannel | discord.Thread) else None


def pick_channel(guild: discord.Guild, option: AnyChannel | None, what: str) -> GuildChannel | None:
    """The cached channel or thread a channel option names, None when it was left out.

    InvalidInputError when the bot cannot see it or its messages cannot be summarized;
    ``what`` names its part in the command ("the place to post").
    """
    if option is None:
        return None
    channel = resolve_channel(guild, option.id)
    if channel is None:
        raise InvalidInputError(
            f"I cannot see {option.mention}; give me View Channel there (for a thread: on its "
            "parent channel)"
        )
    if channel.type not in SUMMARIZABLE:
        raise InvalidInputError(
            f"{option.mention} cannot be used as {what}: pick a text channel "
            "or a thread (for a forum, pick one of its posts)"
        )
    return channel


async def answer(interaction: discord.Interaction[Any], text: str) -> None:
    """Tell the member something privately, whether or not the interaction was answered."""
    if interaction.response.is_done():
        await interaction.followup.send(text, ephemeral=True)
    else:
        await interaction.response.send_message(text, ephemeral=True)


async def command_context(interaction: discord.Interaction[Any]) -> GuildContext | None:
    """The command's guild context, or None once the member was told why there is none."""
    context = guild_context(interaction)
    if isinstance(context, str):
        await answer(interaction, context)
        return None
    return context


async def manager_context(
    interaction: discord.Interaction[Any], refusal: str
) -> GuildContext | None:
    """:func:`command_context` for members with Manage Server; others are told ``refusal``."""
    context = await command_context(interaction)
    if context is None:
        return None
    if not can_manage_guild(guild_view(context.guild), member_view(context.member)):
        await answer(interaction, refusal)
        return None
    return context


async def send_after_defer(
    interaction: discord.Interaction[Any], text: str, *, deferred_private: bool
) -> None:
    """Replace a deferred reply with ``text``, shown only to the member.

    A public deferral's "thinking…" message is deleted first, so a refusal is never shown to
    the whole channel.
    """
    if deferred_private:
        await interaction.edit_original_response(content=text, embed=None)
        return
    try:
        await interaction.delete_original_response()
    except discord.HTTPException as exc:
        log.info("bot.delete_deferred_failed", status=exc.status)
    await interaction.followup.send(text, ephemeral=True)
