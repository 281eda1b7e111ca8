"""The worker's own check of the guild boundary, made before anything is sent to Discord.

The job row says which guild a job belongs to; a destination must belong to it too.  Producers
check this when they accept work, and this check repeats it where it matters most, because a
worker must not trust a row: a channel or thread must be a channel of the job's guild, a DM
must go to a member of it, and a Discord webhook must post into it (into its own channel, or
a thread of that channel when the row names one: the thread is checked too, before anything is
sent or read back).  An interaction follow-up needs no check: its token is the authority, and
Discord scoped it to the interaction the bot received.

A destination that does not exist (any more), or that the bot cannot see, is refused too, but
as :attr:`Refusal.missing`: nothing of another guild is involved and nothing can be sent there,
so the reason says so and the destination's own fallback (checked in its turn) may take the
summary.  A destination of another guild never falls back: the row is not to be trusted.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import SecretStr

from shared.crypto import SecretBox
from shared.discord.objects import WebhookRef
from shared.tenancy import DESTINATION_CHANNEL_KINDS, ChannelDirectory, is_webhook_thread

__all__ = ["Refusal", "refusal"]


@dataclass(frozen=True)
class Refusal:
    """Why a destination may not receive the summary."""

    reason: str
    #: True when the destination does not exist or the bot cannot see it (see module
    #: docstring); False when it belongs to another guild, or to no guild of the job's.
    missing: bool = False


def _placed(found: str | None, guild_id: str, *, missing: str, elsewhere: str) -> Refusal | None:
    """The refusal for a destination the directory places in guild ``found`` (None: in none
    the bot can see), or None when that is the job's guild."""
    if found is None:
        return Refusal(missing, missing=True)
    if found != guild_id:
        return Refusal(elsewhere)
    return None


def _channel_refusal(directory: ChannelDirectory, guild_id: str, channel_id: str) -> Refusal | None:
    return _placed(
        directory.channel_guild(channel_id),
        guild_id,
        missing=f"channel {channel_id} does not exist (any more) or the bot cannot see it",
        elsewhere=f"no channel {channel_id} in this server",
    )


def refusal(
    directory: ChannelDirectory,
    box: SecretBox,
    *,
    guild_id: str | None,
    kind: str,
    params: Mapping[str, Any],
) -> Refusal | None:
    """Why a Discord destination may not receive this job's summary, or None when it may."""
    if kind == "followup":
        return None
    if guild_id is None:
        return Refusal(f"a job of no server cannot post to a Discord {kind}")
    if kind in DESTINATION_CHANNEL_KINDS:
        return _channel_refusal(directory, guild_id, str(params.get("channel_id")))
    if kind == "dm":
        user_id = str(params.get("user_id"))
        if not directory.is_member(guild_id, user_id):
            return Refusal(f"no member {user_id} in this server")
        return None
    if kind == "discord_webhook":
        webhook_id = str(params.get("webhook_id"))
        token = box.decrypt(str(params.get("token_encrypted")))
        webhook = WebhookRef(id=webhook_id, token=SecretStr(token))
        refused = _placed(
            directory.webhook_guild(webhook),
            guild_id,
            missing=f"the Discord webhook {webhook_id} no longer exists (or its token is wrong)",
            elsewhere=f"no Discord webhook {webhook_id} in this server",
        )
        if refused is not None:
            return refused
        thread_id = params.get("thread_id")
        if thread_id is None:
            return None
        refused = _channel_refusal(directory, guild_id, str(thread_id))
        if refused is None and not is_webhook_thread(directory, webhook, str(thread_id)):
            refused = Refusal(f"no channel {thread_id} in this server")
        return refused
    return Refusal(f"{kind!r} is not a Discord destination")
