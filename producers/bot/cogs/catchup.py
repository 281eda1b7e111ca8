"""``/catchup``: what happened in this server since you last wrote, for your eyes only.

The handler parses ``since`` (answering input errors at once), defers *ephemerally*, then builds
the job with :func:`shared.services.digests.catchup_params` (the whole server, the invoking
member as its only reader) and submits it with :func:`shared.services.jobs.submit_job`, which
holds the rules.  The summary answers the command as an ephemeral interaction follow-up; when it
is ready after the interaction's token has expired (15 minutes) it comes by DM instead, never to
a channel.  The worker keeps only channels the member can read, and the channels it leaves out
are never named to the member.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime
from typing import Any

import discord
import structlog
from discord import app_commands
from discord.ext import commands

from producers.bot.authorize import authorize_member
from producers.bot.cogs.common import (
    AnyBot,
    answer,
    command_context,
    runtime_of,
    summary_style_options,
)
from producers.bot.limits import OverLimit
from producers.bot.parsing import parse_format, parse_language, parse_since
from producers.bot.runtime import BotRuntime
from producers.bot.snapshots import guild_view, member_view
from producers.bot.summaries import BOT_ORIGIN
from shared.errors import PipelineError
from shared.jobs import DirectMessageTarget, HeldEnqueuer, InteractionFollowupTarget
from shared.metrics import REQUESTS
from shared.services.core import Actor
from shared.services.digests import CATCHUP_LOOKBACK, catchup_params
from shared.services.jobs import Submission, submit_job
from shared.summarize.content import SummaryFormat

__all__ = ["CatchupCog"]

log = structlog.get_logger(__name__)


def _first_reply(guild: discord.Guild, since: datetime | None, submission: Submission) -> str:
    start = (
        f"since <t:{int(since.timestamp())}:f>"
        if since is not None
        else f"since your last message (at most {CATCHUP_LOOKBACK.days} days back)"
    )
    return (
        f"📬 Catching you up on **{discord.utils.escape_markdown(guild.name)}** {start}, in "
        f"the channels you can read. The summary will appear here, only for you.\n"
        f"Job `{submission.job_id}`"
    )


async def _refuse(interaction: discord.Interaction[Any], text: str) -> None:
    REQUESTS.labels(type="catchup", status="refused").inc()
    await interaction.edit_original_response(content=f"⛔ {text}", embed=None)


class CatchupCog(commands.Cog):
    """The member's own catch-up."""

    def __init__(self, bot: AnyBot) -> None:
        self.bot = bot

    @app_commands.command(
        name="catchup", description="Catch up on this server since your last message (only you)"
    )
    @app_commands.guild_only()
    @app_commands.describe(
        since="Start here instead of at your last message: 12h, 90m, 2d, or a message link",
    )
    @summary_style_options
    async def catchup(
        self,
        interaction: discord.Interaction[Any],
        since: str | None = None,
        format: str | None = None,
        language: str | None = None,
    ) -> None:
        """``/catchup``: parse, defer ephemerally, submit, show the first reply."""
        context = await command_context(interaction)
        if context is None:
            return
        runtime = runtime_of(interaction)
        now = runtime.clock()
        try:
            start = parse_since(since, guild_id=context.guild.id, now=now)
            summary_format = parse_format(format)
            summary_language = parse_language(language)
        except PipelineError as exc:
            await answer(interaction, f"⛔ {exc.user_message}")
            return
        await interaction.response.defer(ephemeral=True, thinking=True)
        guild, member = context.guild, context.member
        config = await runtime.configs.get(guild.id)
        refusal = authorize_member(guild_view(guild), member_view(member), config)
        if refusal is not None:
            await _refuse(interaction, refusal.message)
            return
        held = HeldEnqueuer(runtime.enqueuer)
        try:
            submission = await runtime.limiter.run(
                guild_id=guild.id,
                user_id=member.id,
                submit=lambda: self._submit(
                    runtime,
                    interaction,
                    held,
                    since=start,
                    now=now,
                    format=summary_format or config.default_format,
                    language=summary_language or config.default_language,
                ),
                started=lambda done: done.created,
            )
        except PipelineError as exc:
            await _refuse(interaction, exc.user_message)
            return
        except Exception:
            REQUESTS.labels(type="catchup", status="error").inc()
            log.exception("bot.catchup_failed", guild_id=str(guild.id))
            await interaction.edit_original_response(
                content="⛔ Something went wrong on my side; please try again in a minute."
            )
            return
        if isinstance(submission, OverLimit):
            await _refuse(interaction, submission.message)
            return
        REQUESTS.labels(type="catchup", status="accepted").inc()
        try:
            await interaction.edit_original_response(content=_first_reply(guild, start, submission))
        except discord.HTTPException as exc:
            log.warning("bot.first_reply_failed", job_id=str(submission.job_id), status=exc.status)
        finally:
            # Published only now: the summary, written into this reply, never races our edit.
            await runtime.db(held.release)

    async def _submit(
        self,
        runtime: BotRuntime,
        interaction: discord.Interaction[Any],
        held: HeldEnqueuer,
        *,
        since: datetime | None,
        now: datetime,
        format: SummaryFormat,
        language: str | None,
    ) -> Submission:
        member = interaction.user
        assert isinstance(member, discord.Member)
        reply = InteractionFollowupTarget.with_token(
            runtime.box,
            application_id=str(interaction.application_id),
            interaction_id=str(interaction.id),
            token=interaction.token,
            ephemeral=True,
            fallback=DirectMessageTarget(user_id=str(member.id)).model_dump(mode="json"),
        )
        params = catchup_params(
            guild_id=str(member.guild.id),
            user_id=str(member.id),
            since=since,
            now=now,
            format=format,
            language=language,
            destinations=[reply],
        )
        # The member is a fact Discord sent with the interaction: no REST call to check it.
        core = replace(
            runtime.core(), enqueuer=held, directory=runtime.directory.knowing(members=[member])
        )
        actor = Actor(origin=BOT_ORIGIN, guild_id=str(member.guild.id), requested_by=str(member.id))
        submission: Submission = await runtime.db(
            submit_job, core, actor, params, idempotency_key=f"bot:interaction:{interaction.id}"
        )
        log.info(
            "bot.catchup_submitted",
            job_id=str(submission.job_id),
            guild_id=str(member.guild.id),
            since=None if since is None else since.isoformat(),
            created=submission.created,
        )
        return submission
