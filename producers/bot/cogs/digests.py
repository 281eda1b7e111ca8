"""``/digest create|list|pause|resume|delete``: recurring summaries of a channel or of several.

Schedules are stored in Postgres (``schedules``) and fired by beat's dispatcher; the bot only
parses the options, authorizes and records them through :mod:`shared.services.schedules`, which
holds the rules.  The schedule is said in words ("daily 09:00 Europe/Berlin", "weekly mon
08:00") or as cron (``shared.digests.spec``).  A digest covers this channel (or the one picked),
or the whole server, a category or mentioned channels; a digest of several channels is posted
in a channel (``post_to``, or the one the command runs in) and only contains what every reader
of it may read.  Digests post publicly, so creating one takes Manage Server and passes the same
access checks as a summary posted in the destination.  ``/digest list`` (for those managers
only) names the channels each digest of several channels left out last time, and why.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import discord
from discord import app_commands
from discord.ext import commands

from producers.bot.authorize import PermissionHints
from producers.bot.cogs.common import (
    FORMAT_CHOICES,
    SUMMARIZABLE,
    AnyBot,
    AnyChannel,
    GuildChannel,
    GuildContext,
    answer,
    manager_context,
    pick_channel,
    runtime_of,
)
from producers.bot.parsing import parse_channel_mentions, parse_language
from producers.bot.responses import schedule_covers, schedule_list_embed
from producers.bot.store import list_schedules
from producers.bot.summaries import check_access
from schema.models.schedules import Schedule, ScheduleScope
from shared.digests.spec import ScheduleSpec, parse_schedule
from shared.errors import InvalidInputError, PipelineError
from shared.services import schedules as schedule_service
from shared.services.core import Actor
from shared.services.schedules import ScheduleRequest
from shared.summarize.content import SummaryFormat

__all__ = ["DigestCog"]

_SCOPES = [
    app_commands.Choice(name="this channel", value=ScheduleScope.CHANNEL.value),
    app_commands.Choice(name="the whole server", value=ScheduleScope.SERVER.value),
    app_commands.Choice(name="a category", value=ScheduleScope.CATEGORY.value),
]


def _scope(
    choice: str, category: discord.CategoryChannel | None, channels: list[str]
) -> ScheduleScope:
    """The scope the options ask for: mentioned channels or a category given with the default
    scope make it a digest of those."""
    scope = ScheduleScope(choice)
    if scope is ScheduleScope.CHANNEL and channels:
        return ScheduleScope.CHANNELS
    if scope is ScheduleScope.CHANNEL and category is not None:
        return ScheduleScope.CATEGORY
    return scope


def _summarized(
    context: GuildContext, option: AnyChannel | None, scope: ScheduleScope
) -> GuildChannel | None:
    """The one channel a ``channel`` digest summarizes (the option, else this channel)."""
    if scope.several:
        if option is not None:
            raise InvalidInputError(
                "`channel` picks the one channel of a 'this channel' digest; a digest of "
                "several channels is posted in `post_to` (or here), so leave `channel` out"
            )
        return None
    picked = pick_channel(context.guild, option, "the channel to summarize")
    if picked is not None:
        return picked
    here = context.channel
    if here is None or here.type not in SUMMARIZABLE:
        raise InvalidInputError("pick the channel to summarize with the `channel` option")
    return here


def _actor(context: GuildContext) -> Actor:
    return Actor(origin="bot", guild_id=str(context.guild.id), requested_by=str(context.member.id))


def _describe(row: Schedule) -> str:
    item = schedule_service.schedule_view(row)
    state = (
        f"next <t:{int(item.next_run_at.timestamp())}:R>"
        if item.enabled and item.next_run_at
        else "paused"
    )
    posted = f" → <#{item.channel_id}>" if item.scope != ScheduleScope.CHANNEL.value else ""
    return f"`{item.short_id}` · {item.spec} · {schedule_covers(item)}{posted} · {state}"


@app_commands.guild_only()
class DigestCog(commands.GroupCog, group_name="digest"):
    """Recurring digests of a channel."""

    def __init__(self, bot: AnyBot) -> None:
        self.bot = bot
        super().__init__()

    async def _managers(self, interaction: discord.Interaction[Any]) -> GuildContext | None:
        return await manager_context(
            interaction, "⛔ Only members with Manage Server can manage digests."
        )

    @app_commands.command(name="create", description="Summarize channels on a schedule")
    @app_commands.describe(
        schedule="When: 'daily 09:00 Europe/Berlin', 'weekly mon 08:00', 'cron 0 9 * * 1-5'",
        channel="Channel or thread to summarize (default: this channel)",
        scope="What to summarize: this channel, the whole server or a category",
        category="The category to summarize (its channels, threads and forum posts)",
        channels="Or these channels, mentioned: #general #dev",
        format="How detailed the digest is",
        post_to="Channel or thread to post the digest in (default: the channel itself, or here)",
        webhook_endpoint="Or send it to this webhook endpoint id (from the API)",
        language="Language of the digest, e.g. en",
        timezone="Time zone when the schedule names none (IANA, e.g. Europe/Berlin)",
    )
    @app_commands.choices(format=FORMAT_CHOICES, scope=_SCOPES)
    async def create(
        self,
        interaction: discord.Interaction[Any],
        schedule: app_commands.Range[str, 1, 200],
        channel: AnyChannel | None = None,
        scope: str = ScheduleScope.CHANNEL.value,
        category: discord.CategoryChannel | None = None,
        channels: app_commands.Range[str, 1, 2000] | None = None,
        format: str = SummaryFormat.BRIEF.value,
        post_to: AnyChannel | None = None,
        webhook_endpoint: str | None = None,
        language: str | None = None,
        timezone: str = "UTC",
    ) -> None:
        """Parse the options, authorize, and store the schedule through the core."""
        context = await self._managers(interaction)
        if context is None:
            return
        try:
            channel_ids = parse_channel_mentions(channels)
            chosen = _scope(scope, category, channel_ids)
            source = _summarized(context, channel, chosen)
            destination_channel = pick_channel(context.guild, post_to, "the digest's destination")
            if destination_channel is not None and webhook_endpoint is not None:
                raise InvalidInputError("give post_to or webhook_endpoint, not both")
            endpoint_id: uuid.UUID | None = None
            if webhook_endpoint is not None:
                try:
                    endpoint_id = uuid.UUID(webhook_endpoint.strip())
                except ValueError:
                    raise InvalidInputError(
                        "webhook_endpoint must be an endpoint id such as "
                        "5f0c8e1e-8a7e-4d0b-9a51-0f6a1c2b3d4e (see /v1/webhook-endpoints)"
                    ) from None
            spec: ScheduleSpec = parse_schedule(schedule, default_timezone=timezone)
            summary_language = parse_language(language)
            summary_format = SummaryFormat(format)
        except InvalidInputError as exc:
            await answer(interaction, f"⛔ {exc.user_message}")
            return
        await interaction.response.defer(ephemeral=True, thinking=True)
        runtime = runtime_of(interaction)
        config = await runtime.configs.get(context.guild.id)
        target = destination_channel or (
            None if endpoint_id is not None else source or context.channel
        )
        # A digest of several channels is read where it is posted: the checks of a summary of
        # that channel posted there (the core refuses one without a channel to post in).
        checked = source or target
        if checked is not None:
            if source is not None and channel is not None:
                source_hint: int | None = channel.permissions.value
            elif checked is context.channel:
                source_hint = interaction.permissions.value
            else:
                source_hint = post_to.permissions.value if post_to else None
            refusal = check_access(
                context.member,
                checked,
                config,
                destination=target,
                hints=PermissionHints(
                    source=source_hint,
                    destination=post_to.permissions.value if post_to else None,
                ),
                external=endpoint_id is not None,
            )
            if refusal is not None:
                await interaction.edit_original_response(content=f"⛔ {refusal.message}")
                return
        if endpoint_id is not None:
            destination: dict[str, Any] = {"kind": "webhook", "endpoint_id": str(endpoint_id)}
        else:
            assert target is not None
            destination = {"kind": "channel", "channel_id": str(target.id)}
        request = ScheduleRequest(
            scope=chosen,
            channel_id=str(source.id) if source is not None else None,
            category_id=str(category.id) if category is not None else None,
            channel_ids=channel_ids,
            text=schedule,
            timezone=timezone,
            format=summary_format,
            language=summary_language,
            destination=destination,
        )
        known = runtime.directory.knowing([source, target, category])
        core = replace(runtime.core(), directory=known)
        try:
            created = await runtime.db(
                schedule_service.create_schedule, core, _actor(context), request
            )
        except PipelineError as exc:
            await interaction.edit_original_response(content=f"⛔ {exc.user_message}")
            return
        await interaction.edit_original_response(
            content=f"Digest created: {spec.description}.\n{_describe(created)}"
        )

    @app_commands.command(name="list", description="List this server's digests")
    async def list_(self, interaction: discord.Interaction[Any]) -> None:
        """Show every digest of the guild."""
        context = await self._managers(interaction)
        if context is None:
            return
        await interaction.response.defer(ephemeral=True, thinking=True)
        runtime = runtime_of(interaction)
        items = await runtime.db(list_schedules, runtime.session_factory, guild_id=context.guild.id)
        await interaction.edit_original_response(embed=schedule_list_embed(items))

    async def _change(
        self,
        interaction: discord.Interaction[Any],
        ref: str,
        done: str,
        change: Callable[..., Schedule],
        **options: Any,
    ) -> None:
        """Find the digest ``ref``, apply ``change`` to it and say it is ``done``."""
        context = await self._managers(interaction)
        if context is None:
            return
        await interaction.response.defer(ephemeral=True, thinking=True)
        runtime = runtime_of(interaction)
        core, actor = runtime.core(), _actor(context)
        try:
            schedule_id = await runtime.db(schedule_service.find_schedule, core, actor, ref)
            item = await runtime.db(change, core, actor, schedule_id, **options)
        except PipelineError as exc:
            await interaction.edit_original_response(content=f"⛔ {exc.user_message}")
            return
        await interaction.edit_original_response(content=f"Digest {done}: {_describe(item)}")

    @app_commands.command(name="pause", description="Pause a digest")
    @app_commands.describe(digest="The digest's id from /digest list")
    async def pause(self, interaction: discord.Interaction[Any], digest: str) -> None:
        """Stop a digest from firing until resumed."""
        await self._change(
            interaction, digest, "paused", schedule_service.set_schedule_enabled, enabled=False
        )

    @app_commands.command(name="resume", description="Resume a paused digest")
    @app_commands.describe(digest="The digest's id from /digest list")
    async def resume(self, interaction: discord.Interaction[Any], digest: str) -> None:
        """Fire a paused digest again from its next time on."""
        await self._change(
            interaction, digest, "resumed", schedule_service.set_schedule_enabled, enabled=True
        )

    @app_commands.command(name="delete", description="Delete a digest")
    @app_commands.describe(digest="The digest's id from /digest list")
    async def delete(self, interaction: discord.Interaction[Any], digest: str) -> None:
        """Delete a digest for good."""
        await self._change(interaction, digest, "deleted", schedule_service.delete_schedule)
