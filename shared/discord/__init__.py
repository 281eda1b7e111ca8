"""Discord REST adapter: typed operations, shared rate limits, and simulation.

Start with :func:`build_discord_client`; the error tree is in :mod:`shared.discord.errors`,
outgoing message models in :mod:`shared.discord.models`, splitting helpers in
:mod:`shared.discord.splitting`.
"""

from shared.discord.client import DiscordClient, normalize_emoji
from shared.discord.config import DiscordSettings
from shared.discord.convert import to_channel_info, to_chat_message
from shared.discord.errors import (
    BadRequest,
    DiscordError,
    DiscordPermanentError,
    DiscordTransientError,
    EdgeBlocked,
    Forbidden,
    InvalidWebhook,
    MessageLimitsError,
    NetworkError,
    NotFound,
    RateLimited,
    ServerError,
    TooManyMembers,
    Unauthorized,
    UnexpectedAnswer,
    UnknownRoute,
)
from shared.discord.factory import build_discord_client
from shared.discord.models import (
    UNSET,
    ActionRow,
    AllowedMentions,
    Button,
    ButtonStyle,
    Embed,
    EmbedAuthor,
    EmbedField,
    EmbedFooter,
    Message,
    MessageEdit,
    MessageFlags,
    MessageReference,
    SelectMenu,
    SelectOption,
)
from shared.discord.objects import Channel, ReceivedMessage, User, WebhookRef
from shared.discord.splitting import pack_embeds, split_content, split_embeds

__all__ = [
    "UNSET",
    "ActionRow",
    "AllowedMentions",
    "BadRequest",
    "Button",
    "ButtonStyle",
    "Channel",
    "DiscordClient",
    "DiscordError",
    "DiscordPermanentError",
    "DiscordSettings",
    "DiscordTransientError",
    "EdgeBlocked",
    "Embed",
    "EmbedAuthor",
    "EmbedField",
    "EmbedFooter",
    "Forbidden",
    "InvalidWebhook",
    "Message",
    "MessageEdit",
    "MessageFlags",
    "MessageLimitsError",
    "MessageReference",
    "NetworkError",
    "NotFound",
    "RateLimited",
    "ReceivedMessage",
    "SelectMenu",
    "SelectOption",
    "ServerError",
    "TooManyMembers",
    "Unauthorized",
    "UnexpectedAnswer",
    "UnknownRoute",
    "User",
    "WebhookRef",
    "build_discord_client",
    "normalize_emoji",
    "pack_embeds",
    "split_content",
    "split_embeds",
    "to_channel_info",
    "to_chat_message",
]
