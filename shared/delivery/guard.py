"""The worker's own check of the guild boundary, made before anything is sent to Discord.

The job row says which guild a job belongs to; a destination must belong to it too.  Producers
check this when they accept work, and this check repeats it where it matters most, because a
worker must not trust a row: a channel or thread must be a channel of the job's guild, a DM
must go to a member of it, and a Discord webhook must post into it (into its own channel, or
a thread of that channel when the row names one: the thread is checked too, before anything is
sent or read back).  An interaction follow-up needs no check: its token is the authority, and
Discord scoped it to the interaction the bot received.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import SecretStr

from shared.crypto import SecretBox
from shared.discord.objects import WebhookRef
from shared.tenancy import DESTINATION_CHANNEL_KINDS, ChannelDirectory, is_webhook_thread

__all__ = ["refusal"]


def refusal(
    directory: ChannelDirectory,
    box: SecretBox,
    *,
    guild_id: str | None,
    kind: str,
    params: Mapping[str, Any],
) -> str | None:
    """Why a Discord destination may not receive this job's summary, or None when it may."""
    if kind == "followup":
        return None
    if guild_id is None:
        return f"a job of no server cannot post to a Discord {kind}"
    if kind in DESTINATION_CHANNEL_KINDS:
        channel_id = str(params.get("channel_id"))
        if directory.channel_guild(channel_id) != guild_id:
            return f"no channel {channel_id} in this server"
    elif kind == "dm":
        user_id = str(params.get("user_id"))
        if not directory.is_member(guild_id, user_id):
            return f"no member {user_id} in this server"
    elif kind == "discord_webhook":
        webhook_id = str(params.get("webhook_id"))
        token = box.decrypt(str(params.get("token_encrypted")))
        webhook = WebhookRef(id=webhook_id, token=SecretStr(token))
        if directory.webhook_guild(webhook) != guild_id:
            return f"no Discord webhook {webhook_id} in this server"
        thread_id = params.get("thread_id")
        if thread_id is not None and (
            directory.channel_guild(str(thread_id)) != guild_id
            or not is_webhook_thread(directory, webhook, str(thread_id))
        ):
            return f"no channel {thread_id} in this server"
    else:
        return f"{kind!r} is not a Discord destination"
    return None
