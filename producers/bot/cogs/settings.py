"""``/summary-config`` (server managers) and ``/summary-optout`` / ``/summary-optin`` (anyone).

Settings live in ``guild_settings``; a member's opt-out in ``user_opt_outs`` (for one server or
all), which the summarizer reads to leave their messages out.  Every reply is private.
"""

from __future__ import annotations

from typing import Any, Literal

import discord
from discord import app_commands
from discord.ext import commands

from producers.bot.cogs.common import (
    FORMAT_CHOICES,
    AnyBot,
    AnyChannel,
    GuildContext,
    answer,
    manager_context,
    runtime_of,
)
from producers.bot.parsing import parse_language
from producers.bot.responses import config_embed
from producers.bot.store import GuildConfig, update_guild_config
from schema.models.tenancy import PrivateChannelPolicy
from shared.errors import InvalidInputError
from shared.services.members import set_opt_out
from shared.summarize.content import SummaryFormat

__all__ = ["OptOutCog", "SettingsCog", "parse_emoji"]

_POLICIES = [
    app_commands.Choice(name="allow anywhere", value=PrivateChannelPolicy.ALLOW.value),
    app_commands.Choice(
        name="only in the same channel or privately", value=PrivateChannelPolicy.SAME_CHANNEL.value
    ),
    app_commands.Choice(name="never", value=PrivateChannelPolicy.DENY.value),
]
_OFF = {"off", "none", "disable", "disabled", "-"}


def parse_emoji(text: str) -> str | None:
    """A reaction trigger emoji: a Unicode emoji or a custom ``<:name:id>``; "off" → None."""
    value = text.strip()
    if value.lower() in _OFF:
        return None
    emoji = discord.PartialEmoji.from_str(value)
    if emoji.id is None and (
        not value or len(value) > 16 or value.isascii() or any(c.isspace() for c in value)
    ):
        raise InvalidInputError(
            f"{value[:30]!r} is not an emoji; send a Unicode emoji such as 🧾, a server emoji, "
            "or 'off'"
        )
    return str(emoji)


async def _managers_only(interaction: discord.Interaction[Any]) -> GuildContext | None:
    return await manager_context(
        interaction, "⛔ Only members with Manage Server can change these settings."
    )


_IdChange = Literal["add", "remove", "clear"]
_ROLE_CHANGES: dict[str, _IdChange] = {"allow": "add", "remove": "remove", "everyone": "clear"}
_CHANNEL_CHANGES: dict[str, _IdChange] = {
    "exclude": "add",
    "include": "remove",
    "include-all": "clear",
}


async def _show(interaction: discord.Interaction[Any], config: GuildConfig, *, saved: bool) -> None:
    """Answer the deferred interaction with the settings embed ("Saved." after a change)."""
    runtime = runtime_of(interaction)
    await interaction.edit_original_response(
        content="Saved." if saved else None,
        embed=config_embed(
            config, limits=runtime.limiter.describe(), llm=runtime.describe_summarizer()
        ),
    )


@app_commands.guild_only()
@app_commands.default_permissions(manage_guild=True)
class SettingsCog(commands.GroupCog, group_name="summary-config"):
    """Server settings of the summaries."""

    def __init__(self, bot: AnyBot) -> None:
        self.bot = bot
        super().__init__()

    async def _save(
        self, interaction: discord.Interaction[Any], context: GuildContext, changes: dict[str, Any]
    ) -> None:
        await interaction.response.defer(ephemeral=True, thinking=True)
        runtime = runtime_of(interaction)
        if changes:
            config = await runtime.db(
                update_guild_config, runtime.session_factory, context.guild.id, changes
            )
            runtime.configs.put(config)
        else:
            config = await runtime.configs.get(context.guild.id)
        await _show(interaction, config, saved=bool(changes))

    async def _edit_ids(
        self,
        interaction: discord.Interaction[Any],
        field: str,
        action: str,
        change: _IdChange,
        target: discord.abc.Snowflake | None,
        what: str,
    ) -> None:
        """Add ``target`` to, remove it from, or clear the id set ``field`` of the config."""
        context = await _managers_only(interaction)
        if context is None:
            return
        if change != "clear" and target is None:
            await answer(interaction, f"⛔ Pick the {what} to {action}.")
            return
        ident = target.id if target else None
        runtime = runtime_of(interaction)
        await interaction.response.defer(ephemeral=True, thinking=True)
        current = set(getattr(await runtime.configs.get(context.guild.id), field))
        if change == "clear":
            current.clear()
        elif change == "add":
            current.add(ident)
        else:
            current.discard(ident)
        config = await runtime.db(
            update_guild_config,
            runtime.session_factory,
            context.guild.id,
            {field: frozenset(current)},
        )
        runtime.configs.put(config)
        await _show(interaction, config, saved=True)

    @app_commands.command(name="show", description="Show this server's summary settings")
    async def show(self, interaction: discord.Interaction[Any]) -> None:
        """Show the settings."""
        context = await _managers_only(interaction)
        if context is not None:
            await self._save(interaction, context, {})

    @app_commands.command(name="set", description="Change summary settings")
    @app_commands.describe(
        default_format="Format when a member picks none",
        default_language="Language when a member picks none (e.g. en); 'as-written' clears it",
        retention_days="Days summaries are kept (1-3650)",
        monthly_token_budget="LLM tokens this server may use per month; 0 removes the budget",  # noqa: S106
        reaction_emoji="Reacting with this emoji summarizes from that message; 'off' disables",
        private_channels="Summaries of channels @everyone cannot see",
    )
    @app_commands.choices(default_format=FORMAT_CHOICES, private_channels=_POLICIES)
    async def set_(
        self,
        interaction: discord.Interaction[Any],
        default_format: str | None = None,
        default_language: str | None = None,
        retention_days: app_commands.Range[int, 1, 3650] | None = None,
        monthly_token_budget: app_commands.Range[int, 0, 10**12] | None = None,
        reaction_emoji: str | None = None,
        private_channels: str | None = None,
    ) -> None:
        """Change any of the scalar settings."""
        context = await _managers_only(interaction)
        if context is None:
            return
        changes: dict[str, Any] = {}
        try:
            if default_format is not None:
                changes["default_format"] = SummaryFormat(default_format)
            if default_language is not None:
                cleared = default_language.strip().lower() in ("as-written", "none", "off")
                changes["default_language"] = None if cleared else parse_language(default_language)
            if retention_days is not None:
                changes["retention_days"] = retention_days
            if monthly_token_budget is not None:
                changes["monthly_token_budget"] = monthly_token_budget or None
            if reaction_emoji is not None:
                changes["reaction_emoji"] = parse_emoji(reaction_emoji)
            if private_channels is not None:
                changes["private_channel_policy"] = PrivateChannelPolicy(private_channels)
        except (InvalidInputError, ValueError) as exc:
            text = exc.user_message if isinstance(exc, InvalidInputError) else str(exc)
            await answer(interaction, f"⛔ {text}")
            return
        if not changes:
            await answer(interaction, "Nothing to change: pick at least one option.")
            return
        await self._save(interaction, context, changes)

    @app_commands.command(name="roles", description="Choose which roles may summarize")
    @app_commands.describe(action="Add or remove a role, or let everyone summarize again")
    async def roles(
        self,
        interaction: discord.Interaction[Any],
        action: Literal["allow", "remove", "everyone"],
        role: discord.Role | None = None,
    ) -> None:
        """Edit the role allowlist (empty: everyone may summarize)."""
        await self._edit_ids(
            interaction, "allowed_role_ids", action, _ROLE_CHANGES[action], role, "role"
        )

    @app_commands.command(name="channels", description="Exclude channels from summaries")
    @app_commands.describe(action="Exclude or include a channel, or include all again")
    async def channels(
        self,
        interaction: discord.Interaction[Any],
        action: Literal["exclude", "include", "include-all"],
        channel: AnyChannel | None = None,
    ) -> None:
        """Edit the excluded channels (a channel's threads are excluded with it)."""
        await self._edit_ids(
            interaction,
            "excluded_channel_ids",
            action,
            _CHANNEL_CHANGES[action],
            channel,
            "channel",
        )


class OptOutCog(commands.Cog):
    """A member leaves their own messages out of every summary, or lets them back in."""

    def __init__(self, bot: AnyBot) -> None:
        self.bot = bot

    async def _set(
        self,
        interaction: discord.Interaction[Any],
        scope: Literal["this-server", "all-servers"],
        *,
        opted_out: bool,
    ) -> None:
        guild_id = interaction.guild_id
        if scope == "this-server" and guild_id is None:
            await answer(interaction, "⛔ Use scope all-servers outside a server.")
            return
        await interaction.response.defer(ephemeral=True, thinking=True)
        runtime = runtime_of(interaction)
        changed = await runtime.db(
            set_opt_out,
            runtime.core(),
            user_id=str(interaction.user.id),
            guild_id=str(guild_id) if scope == "this-server" and guild_id else None,
            opted_out=opted_out,
        )
        where = "this server" if scope == "this-server" else "every server"
        if opted_out:
            text = (
                f"Done: your messages are left out of summaries in {where}."
                if changed
                else f"You were already opted out in {where}."
            )
        else:
            text = (
                f"Done: your messages are included in summaries in {where} again."
                if changed
                else f"You were not opted out in {where}."
            )
        await interaction.edit_original_response(content=text)

    @app_commands.command(
        name="summary-optout", description="Leave your messages out of all summaries"
    )
    @app_commands.describe(scope="Only this server, or every server the bot is in")
    async def optout(
        self,
        interaction: discord.Interaction[Any],
        scope: Literal["this-server", "all-servers"] = "this-server",
    ) -> None:
        """Opt out."""
        await self._set(interaction, scope, opted_out=True)

    @app_commands.command(name="summary-optin", description="Include your messages again")
    @app_commands.describe(scope="Only this server, or every server the bot is in")
    async def optin(
        self,
        interaction: discord.Interaction[Any],
        scope: Literal["this-server", "all-servers"] = "this-server",
    ) -> None:
        """Opt back in."""
        await self._set(interaction, scope, opted_out=False)
