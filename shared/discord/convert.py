"""Discord REST JSON → the pipeline's :class:`ChatMessage` and :class:`ChannelInfo`.

Author names are what people see: the guild nickname when the message carries a ``member``,
else the global display name, else the username.  Raw markup is rendered as a reader sees it
(``<@id>`` → ``@Name``, ``<#id>`` → ``#channel``, ``<:emoji:id>`` → ``:emoji:``, timestamps as
UTC dates), like the export-file source, so summaries read the same whichever source fed them.
Kinds use DiscordChatExporter's names, so both sources agree on them too.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, Final

from shared.domain.markup import render_markup
from shared.domain.messages import ChannelInfo, ChatMessage, check_timestamp, snowflake_time
from shared.errors import InvalidInputError

__all__ = ["CHANNEL_KINDS", "MESSAGE_KINDS", "to_channel_info", "to_chat_message"]

#: Discord message type → DiscordChatExporter kind.
MESSAGE_KINDS: Final[Mapping[int, str]] = {
    0: "Default",
    1: "RecipientAdd",
    2: "RecipientRemove",
    3: "Call",
    4: "ChannelNameChange",
    5: "ChannelIconChange",
    6: "ChannelPinnedMessage",
    7: "GuildMemberJoin",
    8: "GuildBoost",
    9: "GuildBoostTier1",
    10: "GuildBoostTier2",
    11: "GuildBoostTier3",
    12: "ChannelFollowAdd",
    18: "ThreadCreated",
    19: "Reply",
    # Slash-command and context-menu answers are conversation, not system notices.
    20: "Default",
    21: "ThreadStarterMessage",
    23: "Default",
    24: "AutoModerationAction",
}

#: Discord channel type → DiscordChatExporter channel kind.
CHANNEL_KINDS: Final[Mapping[int, str]] = {
    0: "GuildTextChat",
    1: "DirectTextChat",
    2: "GuildVoiceChat",
    3: "DirectGroupTextChat",
    4: "GuildCategory",
    5: "GuildNews",
    10: "GuildNewsThread",
    11: "GuildPublicThread",
    12: "GuildPrivateThread",
    13: "GuildStageVoice",
    14: "GuildDirectory",
    15: "GuildForum",
    16: "GuildMedia",
}


def _display_name(user: Mapping[str, Any], member: Any = None) -> str:
    nick = member.get("nick") if isinstance(member, Mapping) else None
    return str(nick or user.get("global_name") or user.get("username") or user.get("id") or "")


def _render(content: str, raw: Mapping[str, Any], channels: Mapping[str, str]) -> str:
    if "<" not in content:
        return content
    users = {str(u.get("id")): _display_name(u, u.get("member")) for u in raw.get("mentions") or ()}
    author = raw.get("author") or {}
    users.setdefault(str(author.get("id")), _display_name(author, raw.get("member")))
    return render_markup(content, users=users, roles={}, channels=channels)


def _embed_text(embed: Mapping[str, Any]) -> str | None:
    for key in ("title", "url"):
        value = embed.get(key)
        if isinstance(value, str) and value.strip():
            return value.strip()
    description = embed.get("description")
    if isinstance(description, str) and description.strip():
        # Whole, on one line: the door (sanitize) redacts it, then cuts it short; a cut made
        # here could split a secret into a piece no rule recognises.
        return " ".join(description.split())
    return None


def _attachment_name(attachment: Mapping[str, Any]) -> str:
    url = str(attachment.get("url", ""))
    return str(attachment.get("filename") or url.rsplit("/", 1)[-1].split("?", 1)[0])


def _forwarded(raw: Mapping[str, Any]) -> Mapping[str, Any] | None:
    """The forwarded message of a forward (``message_snapshots[0].message``), or None."""
    snapshots = raw.get("message_snapshots")
    if not isinstance(snapshots, list) or not snapshots or not isinstance(snapshots[0], Mapping):
        return None
    message = snapshots[0].get("message")
    return message if isinstance(message, Mapping) else None


def _timestamp(stamp: Any, msg_id: str) -> datetime:
    """The message's time, range-checked; a missing one comes from the snowflake."""
    what = f"Discord message {msg_id}"
    if not stamp:
        try:
            return snowflake_time(msg_id)
        except InvalidInputError as exc:
            raise InvalidInputError(f"{what} has no timestamp and {exc}") from None
    try:
        when = datetime.fromisoformat(str(stamp))
    except ValueError:
        raise InvalidInputError(
            f"{what} has an invalid timestamp {str(stamp)[:40]!r} (expected ISO 8601)"
        ) from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return check_timestamp(when, what)


def to_chat_message(
    raw: Mapping[str, Any],
    *,
    channel_id: str | None = None,
    channel_names: Mapping[str, str] | None = None,
) -> ChatMessage:
    """Map one Discord message object to a :class:`ChatMessage`."""
    msg_id = str(raw["id"])
    author = raw.get("author") or {}
    kind_number = int(raw.get("type") or 0)
    kind = MESSAGE_KINDS.get(kind_number, f"Type{kind_number}")
    timestamp = _timestamp(raw.get("timestamp"), msg_id)
    extra: dict[str, Any] = {}
    if kind_number in (20, 23):
        extra["discord_type"] = kind_number
    reply_to: str | None = None
    reference = raw.get("message_reference")
    if isinstance(reference, Mapping) and reference.get("message_id"):
        ref_id = str(reference["message_id"])
        if reference.get("type") == 1:
            extra["forwarded_from"] = ref_id
        elif kind_number == 19:
            reply_to = ref_id
        else:
            extra["reference_id"] = ref_id
    if raw.get("webhook_id"):
        extra["webhook_id"] = str(raw["webhook_id"])
    # Who a message involves (a catch-up ranks what mentions or answers its reader first).
    mention_ids = [str(u["id"]) for u in raw.get("mentions") or () if u.get("id")]
    if mention_ids:
        extra["mention_ids"] = mention_ids
    referenced = raw.get("referenced_message")
    if reply_to is not None and isinstance(referenced, Mapping):
        replied = (referenced.get("author") or {}).get("id")
        if replied:
            extra["reply_to_author"] = str(replied)
    mentions: list[str] = []
    for user in raw.get("mentions") or ():
        name = _display_name(user, user.get("member"))
        if name and name not in mentions:
            mentions.append(name)
    attachments = tuple(_attachment_name(a) for a in raw.get("attachments") or ())
    embeds = tuple(t for t in map(_embed_text, raw.get("embeds") or ()) if t)
    reactions = sum(int(r.get("count") or 0) for r in raw.get("reactions") or ())
    content = _render(str(raw.get("content") or ""), raw, channel_names or {})
    forwarded = _forwarded(raw) if "forwarded_from" in extra else None
    if forwarded is not None:
        # A forward's own content is empty: what was forwarded is in its snapshot (as the
        # export reader marks it).
        extra["forwarded"] = True
        inner = _render(str(forwarded.get("content") or ""), forwarded, channel_names or {})
        marked = f"[forwarded] {inner}".rstrip()
        content = f"{content}\n{marked}" if content else marked
        attachments += tuple(_attachment_name(a) for a in forwarded.get("attachments") or ())
        embeds += tuple(t for t in map(_embed_text, forwarded.get("embeds") or ()) if t)
    stickers = [str(s.get("name") or "sticker") for s in raw.get("sticker_items") or ()]
    if stickers:
        tags = " ".join(f"[sticker: {name}]" for name in stickers)
        content = f"{content} {tags}" if content else tags
    return ChatMessage(
        id=msg_id,
        channel_id=channel_id or str(raw.get("channel_id") or ""),
        timestamp=timestamp,
        author_id=str(author.get("id") or ""),
        author_name=_display_name(author, raw.get("member")),
        content=content,
        kind=kind,
        is_bot=bool(author.get("bot")) or bool(raw.get("webhook_id")),
        reply_to=reply_to,
        reactions=reactions,
        attachments=tuple(a for a in attachments if a),
        embeds=embeds,
        mentions=tuple(mentions),
        is_pinned=bool(raw.get("pinned")),
        edited=raw.get("edited_timestamp") is not None,
        extra=extra,
    )


def to_channel_info(channel: Mapping[str, Any], *, guild_name: str | None = None) -> ChannelInfo:
    """Map a Discord channel object (and its guild's name) to :class:`ChannelInfo`."""
    kind_number = int(channel.get("type") or 0)
    name = channel.get("name")
    if not name and kind_number in (1, 3):
        recipients = channel.get("recipients") or ()
        name = ", ".join(_display_name(r) for r in recipients) or "Direct messages"
    return ChannelInfo(
        channel_id=str(channel["id"]),
        channel_name=str(name or channel["id"]),
        guild_id=channel.get("guild_id"),
        guild_name=guild_name,
        kind=CHANNEL_KINDS.get(kind_number, "GuildTextChat"),
        # For threads the parent is their channel; a channel's parent is only its category.
        parent_id=channel.get("parent_id") if kind_number in (10, 11, 12) else None,
        topic=channel.get("topic"),
    )
