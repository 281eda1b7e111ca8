"""The reaction trigger, and the message counters behind "messages in the window".

When a guild has set a trigger emoji (``/summary-config set reaction_emoji``), a member who may
summarize (role allowlist, channel permissions) reacting with it asks for a summary from that
message on, posted in the channel as a reply to it.  There is no interaction to answer: an
accepted request gets a 👀 reaction from the bot, a refused one a DM with the reason (both best
effort).

Every message the bot sees also bumps an hourly counter in Redis (nothing else is kept).
"""

from __future__ import annotations

import contextlib
from typing import cast

import discord
import structlog
from discord.ext import commands

from producers.bot.authorize import Refusal, passes_role_allowlist
from producers.bot.cogs.common import SUMMARIZABLE, AnyBot, resolve_channel
from producers.bot.destinations import ReplyPlan
from producers.bot.parsing import MessageLink, Window
from producers.bot.runtime import BotRuntime, HasRuntime
from producers.bot.snapshots import guild_view, member_view
from producers.bot.summaries import SummaryAsk, refusal_text, request_summary

__all__ = ["ACCEPTED_EMOJI", "ReactionCog", "same_emoji"]

log = structlog.get_logger(__name__)

ACCEPTED_EMOJI = "👀"


def same_emoji(configured: str, reacted: discord.PartialEmoji) -> bool:
    """True when ``reacted`` is the configured trigger (custom emoji compare by id)."""
    wanted = discord.PartialEmoji.from_str(configured)
    if wanted.id is not None or reacted.id is not None:
        return wanted.id == reacted.id
    return wanted.name == reacted.name


class ReactionCog(commands.Cog):
    """Reaction trigger and message counting."""

    def __init__(self, bot: AnyBot) -> None:
        self.bot = bot

    @property
    def runtime(self) -> BotRuntime:
        """The bot's runtime."""
        return cast(HasRuntime, self.bot).runtime

    @commands.Cog.listener()
    async def on_message(self, message: discord.Message) -> None:
        """Count the message for window estimates."""
        if message.guild is None:
            return
        try:
            await self.runtime.activity.record(message.channel.id, message.created_at)
        except Exception:
            # Counting is a nicety; a Redis hiccup must not disturb anything else.
            log.warning("activity.record_failed", exc_info=True)

    @commands.Cog.listener()
    async def on_raw_reaction_add(self, payload: discord.RawReactionActionEvent) -> None:
        """Start a summary when an allowed member reacts with the guild's trigger emoji."""
        member = payload.member
        if payload.guild_id is None or member is None or member.bot:
            return
        guild = self.bot.get_guild(payload.guild_id)
        if guild is None or guild.me is None:
            return
        runtime = self.runtime
        config = await runtime.configs.get(guild.id)
        if not config.reaction_emoji or not same_emoji(config.reaction_emoji, payload.emoji):
            return
        if not passes_role_allowlist(guild_view(guild), member_view(member), config):
            return
        channel = resolve_channel(guild, payload.channel_id)
        if channel is None or channel.type not in SUMMARIZABLE:
            return
        ask = SummaryAsk(
            guild=guild,
            member=member,
            source=channel,
            window=Window("since", since=MessageLink(guild.id, channel.id, payload.message_id)),
            reply=ReplyPlan(kind="channel", channel_id=channel.id, reply_to=payload.message_id),
            idempotency_key=f"bot:reaction:{payload.message_id}:{member.id}",
            reply_channel=channel,
            destination=channel,
        )
        try:
            outcome = await request_summary(runtime, ask)
        except Exception as exc:
            log.exception("bot.reaction_failed", guild_id=str(guild.id))
            outcome = Refusal("bot", getattr(exc, "user_message", "something went wrong"))
        if isinstance(outcome, Refusal):
            with contextlib.suppress(discord.HTTPException):
                await member.send(refusal_text(outcome))
            return
        await outcome.publish(runtime)
        if isinstance(
            channel,
            discord.TextChannel | discord.VoiceChannel | discord.StageChannel | discord.Thread,
        ):
            with contextlib.suppress(discord.HTTPException):
                await channel.get_partial_message(payload.message_id).add_reaction(ACCEPTED_EMOJI)
