"""``/summarize``, the "Summarize from here" message command and ``/summary-status``.

Each handler: parse (answering input errors at once), defer, then authorize and submit through
:func:`producers.bot.summaries.request_summary`, show the first reply (job id, messages, cost,
ready time) and hand the reply to the progress poller.
"""

from __future__ import annotations

from typing import Any

import discord
import structlog
from discord import app_commands
from discord.ext import commands

from producers.bot.authorize import PermissionHints, Refusal
from producers.bot.cogs.common import (
    AnyBot,
    AnyChannel,
    GuildChannel,
    GuildContext,
    answer,
    command_context,
    pick_channel,
    resolve_channel,
    runtime_of,
    send_after_defer,
    summary_style_options,
)
from producers.bot.destinations import ReplyPlan
from producers.bot.estimates import EtaModel
from producers.bot.parsing import Window, parse_format, parse_language, parse_window
from producers.bot.responses import RequestSummary, job_list_embed, status_embed
from producers.bot.runtime import BotRuntime
from producers.bot.store import find_jobs, recent_jobs
from producers.bot.summaries import Accepted, SummaryAsk, refusal_text, request_summary
from shared.errors import InvalidInputError, PipelineError
from shared.job_view import JobView
from shared.metrics import REQUESTS
from shared.summarize.content import SummaryFormat

__all__ = ["SummarizeCog", "start_summary"]

log = structlog.get_logger(__name__)


def _hint(option: AnyChannel | None) -> int | None:
    return option.permissions.value if option is not None else None


async def start_summary(
    interaction: discord.Interaction[Any],
    context: GuildContext,
    *,
    source: GuildChannel,
    window: Window,
    format: SummaryFormat | None,
    language: str | None,
    destination: GuildChannel | None,
    private: bool,
    source_hint: int | None,
    destination_hint: int | None,
) -> None:
    """Defer, submit, show the first reply and follow the job (any summary command)."""
    await interaction.response.defer(ephemeral=private, thinking=True)
    runtime = runtime_of(interaction)
    here = context.channel
    in_here = here is not None and here.id == source.id
    if private:
        reply = ReplyPlan(kind="dm", user_id=context.member.id)
    elif destination is not None:
        reply = ReplyPlan(kind="channel", channel_id=destination.id)
    else:
        reply = ReplyPlan(
            kind="interaction",
            channel_id=here.id if here is not None else None,
            application_id=interaction.application_id,
            interaction_id=interaction.id,
            token=interaction.token,
        )
    ask = SummaryAsk(
        guild=context.guild,
        member=context.member,
        source=source,
        window=window,
        reply=reply,
        idempotency_key=f"bot:interaction:{interaction.id}",
        format=format,
        language=language,
        reply_channel=here,
        destination=destination,
        hints=PermissionHints(
            source=interaction.permissions.value if in_here else source_hint,
            destination=destination_hint,
            bot_source=interaction.app_permissions.value if in_here else None,
        ),
        thread_member=True if in_here and isinstance(source, discord.Thread) else None,
    )
    kind = ask.format.value if ask.format else "default"
    try:
        outcome = await request_summary(runtime, ask)
    except PipelineError as exc:
        REQUESTS.labels(type=kind, status="refused").inc()
        await send_after_defer(interaction, refusal_text(exc), deferred_private=private)
        return
    except Exception:
        REQUESTS.labels(type=kind, status="error").inc()
        log.exception("bot.summarize_failed", guild_id=str(context.guild.id))
        await send_after_defer(
            interaction,
            "⛔ Something went wrong on my side; please try again in a minute.",
            deferred_private=private,
        )
        return
    if isinstance(outcome, Refusal):
        REQUESTS.labels(type=kind, status="refused").inc()
        await send_after_defer(interaction, refusal_text(outcome), deferred_private=private)
        return
    REQUESTS.labels(type=kind, status="accepted").inc()
    await _show_and_follow(interaction, runtime, outcome, reply)


async def _show_and_follow(
    interaction: discord.Interaction[Any],
    runtime: BotRuntime,
    accepted: Accepted,
    reply: ReplyPlan,
) -> None:
    summary = accepted.summary
    try:
        await interaction.edit_original_response(embed=status_embed(summary, None))
    except discord.HTTPException as exc:
        log.warning("bot.first_reply_failed", job_id=str(summary.job_id), status=exc.status)
    finally:
        await accepted.publish(runtime)

    def refresh(messages: int) -> str:
        return runtime.cost(messages).text

    runtime.tracker.track(
        interaction, summary, refresh_cost=refresh, hands_off=reply.edits_original
    )


class SummarizeCog(commands.Cog):
    """Summary commands."""

    def __init__(self, bot: AnyBot) -> None:
        self.bot = bot
        self.from_here = app_commands.ContextMenu(
            name="Summarize from here", callback=self.summarize_from_here
        )
        self.from_here.guild_only = True

    async def cog_load(self) -> None:
        """Register the message command (context menus cannot live in a cog class body)."""
        self.bot.tree.add_command(self.from_here)

    async def cog_unload(self) -> None:
        """Remove the message command."""
        self.bot.tree.remove_command(self.from_here.name, type=self.from_here.type)

    @app_commands.command(name="summarize", description="Summarize recent messages")
    @app_commands.guild_only()
    @app_commands.describe(
        hours="Summarize the last N hours (1-168, default 24)",
        messages="Summarize the last N messages instead",
        since="Summarize from this message on (paste its link)",
        channel="Channel or thread to summarize (default: this one)",
        post_to="Channel or thread to post the summary in (default: reply here)",
        private="Only you see the reply; the summary comes by DM",
    )
    @summary_style_options
    async def summarize(
        self,
        interaction: discord.Interaction[Any],
        hours: app_commands.Range[int, 1, 168] | None = None,
        messages: app_commands.Range[int, 1, 1_000_000] | None = None,
        since: str | None = None,
        channel: AnyChannel | None = None,
        format: str | None = None,
        language: str | None = None,
        post_to: AnyChannel | None = None,
        private: bool = False,
    ) -> None:
        """``/summarize``: parse and check the options, then start the summary."""
        context = await command_context(interaction)
        if context is None:
            return
        runtime = runtime_of(interaction)
        try:
            window = parse_window(
                hours=hours,
                messages=messages,
                since=since,
                default_hours=runtime.bot_settings.default_window_hours,
                max_messages=runtime.bot_settings.max_window_messages,
                now=runtime.clock(),
            )
            source = (
                pick_channel(context.guild, channel, "the channel to summarize") or context.channel
            )
            if source is None:
                raise InvalidInputError("pick the channel to summarize with the channel option")
            if window.since is not None:
                if window.since.guild_id != context.guild.id:
                    raise InvalidInputError("that message link points into another server")
                if channel is not None and window.since.channel_id != source.id:
                    raise InvalidInputError(
                        "the message link points into another channel than the one you picked"
                    )
                linked = resolve_channel(context.guild, window.since.channel_id)
                if linked is None:
                    raise InvalidInputError(
                        "I cannot see the channel of that message link; check the link"
                    )
                source = linked
            destination = pick_channel(context.guild, post_to, "the place to post")
            if private and destination is not None:
                raise InvalidInputError("a private summary comes by DM; leave post_to empty")
            summary_format = parse_format(format)
            summary_language = parse_language(language)
        except InvalidInputError as exc:
            await answer(interaction, f"⛔ {exc.user_message}")
            return
        linked_elsewhere = channel is None and window.since is not None
        await start_summary(
            interaction,
            context,
            source=source,
            window=window,
            format=summary_format,
            language=summary_language,
            destination=destination,
            private=private,
            source_hint=None if linked_elsewhere else _hint(channel),
            destination_hint=_hint(post_to),
        )

    async def summarize_from_here(
        self, interaction: discord.Interaction[Any], message: discord.Message
    ) -> None:
        """ "Summarize from here": the window starts at the chosen message."""
        context = await command_context(interaction)
        if context is None:
            return
        runtime = runtime_of(interaction)
        source = resolve_channel(context.guild, message.channel.id) or context.channel
        if source is None:
            await answer(interaction, "⛔ I cannot see this channel.")
            return
        try:
            window = parse_window(
                since=f"https://discord.com/channels/{context.guild.id}/{source.id}/{message.id}",
                now=runtime.clock(),
            )
        except InvalidInputError as exc:
            await answer(interaction, f"⛔ {exc.user_message}")
            return
        await start_summary(
            interaction,
            context,
            source=source,
            window=window,
            format=None,
            language=None,
            destination=None,
            private=False,
            source_hint=None,
            destination_hint=None,
        )

    @app_commands.command(name="summary-status", description="Show how your summaries are doing")
    @app_commands.guild_only()
    @app_commands.describe(job="A job id from a summary reply (the first 8 characters will do)")
    async def summary_status(
        self, interaction: discord.Interaction[Any], job: str | None = None
    ) -> None:
        """``/summary-status``: one job in detail, or the member's latest jobs."""
        context = await command_context(interaction)
        if context is None:
            return
        await interaction.response.defer(ephemeral=True, thinking=True)
        runtime = runtime_of(interaction)
        if job is None:
            jobs = await runtime.db(
                recent_jobs,
                runtime.session_factory,
                guild_id=context.guild.id,
                user_id=context.member.id,
            )
            await interaction.edit_original_response(
                embed=job_list_embed(jobs, title="Your latest summaries")
            )
            return
        try:
            matches = await runtime.db(
                find_jobs, runtime.session_factory, guild_id=context.guild.id, ref=job
            )
        except InvalidInputError as exc:
            await interaction.edit_original_response(content=f"⛔ {exc.user_message}")
            return
        if len(matches) != 1:
            problem = "No job" if not matches else "Several jobs match"
            await interaction.edit_original_response(
                content=f"⛔ {problem} `{job}` in this server; see /summary-status."
            )
            return
        eta = await runtime.eta.get()
        await interaction.edit_original_response(embed=_job_embed(runtime, matches[0], eta))


def _job_embed(runtime: BotRuntime, job: JobView, eta: EtaModel) -> discord.Embed:
    count = job.message_count
    summary = RequestSummary(
        job_id=job.id,
        source=f"<#{job.channel_id}>" if job.channel_id else "a channel",
        window="Messages",
        destination="where it was asked to go",
        messages=str(count) if count is not None else "counted when read",
        cost=runtime.cost(count).text,
        ready_at=job.finished_at or eta.ready_at(job.created_at, count),
    )
    return status_embed(summary, job)
