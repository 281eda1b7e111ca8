"""Outgoing message models: Message, MessageEdit, Embed, buttons and select menus.

Every model renders to Discord's JSON with ``to_json()``; :class:`Message` and
:class:`MessageEdit` check the whole payload against Discord's limits first
(:func:`shared.discord.message_limits.check_message`) and raise one
:class:`~shared.discord.errors.MessageLimitsError` listing every violation, before any request.

Mentions are safe by default: :class:`AllowedMentions` pings mentioned users only; @everyone,
@here and roles are pinged only when asked for, and a reply does not ping its author.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import Enum, IntEnum
from typing import Any, Final, Literal

from shared.discord.message_limits import check_message

__all__ = [
    "UNSET",
    "ActionRow",
    "AllowedMentions",
    "Button",
    "ButtonStyle",
    "Embed",
    "EmbedAuthor",
    "EmbedField",
    "EmbedFooter",
    "Message",
    "MessageEdit",
    "MessageFlags",
    "MessageReference",
    "SelectMenu",
    "SelectOption",
    "Unset",
]


def _given(model: object, *names: str) -> dict[str, Any]:
    """The attributes ``names`` of ``model`` that are given (neither None nor empty)."""
    return {name: value for name in names if (value := getattr(model, name))}


def _not_none(model: object, *names: str) -> dict[str, Any]:
    """The attributes ``names`` of ``model`` that are not None (``0`` and ``""`` included)."""
    return {name: value for name in names if (value := getattr(model, name)) is not None}


class Unset(Enum):
    """Marker type of :data:`UNSET`: "leave this field as it is" in partial updates."""

    UNSET = "UNSET"


#: A field of :class:`MessageEdit` that is not sent (``None`` clears it instead).
UNSET: Final = Unset.UNSET


class MessageFlags(IntEnum):
    """Message flags a bot may set."""

    SUPPRESS_EMBEDS = 1 << 2
    EPHEMERAL = 1 << 6
    SUPPRESS_NOTIFICATIONS = 1 << 12


class ButtonStyle(IntEnum):
    """Button styles: 1-4 carry a ``custom_id``, LINK a ``url``, PREMIUM a ``sku_id``."""

    PRIMARY = 1
    SECONDARY = 2
    SUCCESS = 3
    DANGER = 4
    LINK = 5
    PREMIUM = 6


@dataclass(frozen=True, slots=True, kw_only=True)
class AllowedMentions:
    """Who may be pinged.  The default pings mentioned users and nobody else."""

    users: bool | Sequence[str] = True
    roles: bool | Sequence[str] = False
    everyone: bool = False
    replied_user: bool = False

    @classmethod
    def none(cls) -> AllowedMentions:
        """Ping nobody at all."""
        return cls(users=False, roles=False, everyone=False, replied_user=False)

    def to_json(self) -> dict[str, Any]:
        """Discord's ``allowed_mentions`` object."""
        parse: list[str] = []
        out: dict[str, Any] = {}
        if self.users is True:
            parse.append("users")
        elif self.users:
            out["users"] = list(self.users)
        if self.roles is True:
            parse.append("roles")
        elif self.roles:
            out["roles"] = list(self.roles)
        if self.everyone:
            parse.append("everyone")
        out["parse"] = parse
        out["replied_user"] = self.replied_user
        return out


@dataclass(frozen=True, slots=True)
class MessageReference:
    """A reply to ``message_id`` (``fail_if_not_exists=False`` sends even if it was deleted)."""

    message_id: str
    channel_id: str | None = None
    guild_id: str | None = None
    fail_if_not_exists: bool = False

    def to_json(self) -> dict[str, Any]:
        """Discord's ``message_reference`` object."""
        return {
            "message_id": self.message_id,
            **_given(self, "channel_id", "guild_id"),
            "fail_if_not_exists": self.fail_if_not_exists,
        }


@dataclass(frozen=True, slots=True)
class EmbedField:
    """One name/value field of an embed."""

    name: str
    value: str
    inline: bool = False

    def to_json(self) -> dict[str, Any]:
        """Discord's embed field object."""
        return {"name": self.name, "value": self.value, "inline": self.inline}


@dataclass(frozen=True, slots=True)
class EmbedFooter:
    """Footer text (and icon) of an embed."""

    text: str
    icon_url: str | None = None

    def to_json(self) -> dict[str, Any]:
        """Discord's embed footer object."""
        return {"text": self.text, **_given(self, "icon_url")}


@dataclass(frozen=True, slots=True)
class EmbedAuthor:
    """Author line of an embed."""

    name: str
    url: str | None = None
    icon_url: str | None = None

    def to_json(self) -> dict[str, Any]:
        """Discord's embed author object."""
        return {"name": self.name, **_given(self, "url", "icon_url")}


@dataclass(frozen=True, slots=True, kw_only=True)
class Embed:
    """A rich embed; limits are checked with the whole message."""

    title: str | None = None
    description: str | None = None
    url: str | None = None
    color: int | None = None
    timestamp: datetime | None = None
    fields: Sequence[EmbedField] = ()
    footer: EmbedFooter | None = None
    author: EmbedAuthor | None = None
    image_url: str | None = None
    thumbnail_url: str | None = None

    def to_json(self) -> dict[str, Any]:
        """Discord's embed object (only the fields that are set)."""
        out = _not_none(self, "title", "description", "url", "color")
        if self.timestamp is not None:
            out["timestamp"] = self.timestamp.isoformat()
        if self.fields:
            out["fields"] = [f.to_json() for f in self.fields]
        if self.footer is not None:
            out["footer"] = self.footer.to_json()
        if self.author is not None:
            out["author"] = self.author.to_json()
        if self.image_url:
            out["image"] = {"url": self.image_url}
        if self.thumbnail_url:
            out["thumbnail"] = {"url": self.thumbnail_url}
        return out


@dataclass(frozen=True, slots=True, kw_only=True)
class Button:
    """A button: styles 1-4 need ``custom_id``, LINK needs ``url``, PREMIUM needs ``sku_id``."""

    style: ButtonStyle = ButtonStyle.SECONDARY
    label: str | None = None
    custom_id: str | None = None
    url: str | None = None
    emoji: str | None = None
    sku_id: str | None = None
    disabled: bool = False

    def to_json(self) -> dict[str, Any]:
        """Discord's button component (type 2)."""
        out = {
            "type": 2,
            "style": int(self.style),
            **_not_none(self, "label", "custom_id", "url", "sku_id"),
        }
        if self.emoji:
            out["emoji"] = {"name": self.emoji}
        return out | _given(self, "disabled")


@dataclass(frozen=True, slots=True, kw_only=True)
class SelectOption:
    """One choice of a string select menu."""

    label: str
    value: str
    description: str | None = None
    default: bool = False

    def to_json(self) -> dict[str, Any]:
        """Discord's select option object."""
        return {
            "label": self.label,
            "value": self.value,
            **_not_none(self, "description"),
            **_given(self, "default"),
        }


@dataclass(frozen=True, slots=True, kw_only=True)
class SelectMenu:
    """A string select menu (component type 3); it fills an action row on its own."""

    custom_id: str
    options: Sequence[SelectOption]
    placeholder: str | None = None
    min_values: int = 1
    max_values: int = 1
    disabled: bool = False

    def to_json(self) -> dict[str, Any]:
        """Discord's string select component."""
        return {
            "type": 3,
            "custom_id": self.custom_id,
            "options": [o.to_json() for o in self.options],
            "min_values": self.min_values,
            "max_values": self.max_values,
            **_not_none(self, "placeholder"),
            **_given(self, "disabled"),
        }


@dataclass(frozen=True, slots=True)
class ActionRow:
    """A row of up to 5 buttons, or one select menu."""

    components: Sequence[Button | SelectMenu]

    def to_json(self) -> dict[str, Any]:
        """Discord's action row (type 1)."""
        return {"type": 1, "components": [c.to_json() for c in self.components]}


@dataclass(frozen=True, slots=True, kw_only=True)
class Message:
    """A message to create (channel, thread, DM, webhook, interaction followup).

    ``nonce`` makes the send idempotent: with ``enforce_nonce`` (the default when a nonce is
    given) Discord returns the earlier message instead of posting a duplicate.
    """

    content: str | None = None
    embeds: Sequence[Embed] = ()
    components: Sequence[ActionRow] = ()
    allowed_mentions: AllowedMentions = field(default_factory=AllowedMentions)
    reply_to: MessageReference | None = None
    nonce: str | None = None
    enforce_nonce: bool = True
    tts: bool = False
    flags: int = 0

    def to_json(self, *, check: bool = True) -> dict[str, Any]:
        """The JSON body; raises :class:`MessageLimitsError` listing every broken limit."""
        out: dict[str, Any] = {"allowed_mentions": self.allowed_mentions.to_json()}
        if self.content is not None:
            out["content"] = self.content
        if self.embeds:
            out["embeds"] = [e.to_json() for e in self.embeds]
        if self.components:
            out["components"] = [r.to_json() for r in self.components]
        if self.reply_to is not None:
            out["message_reference"] = self.reply_to.to_json()
        if self.nonce is not None:
            out["nonce"] = self.nonce
            if self.enforce_nonce:
                out["enforce_nonce"] = True
        if self.tts:
            out["tts"] = True
        if self.flags:
            out["flags"] = self.flags
        if check:
            check_message(out, require_body=True)
        return out


@dataclass(frozen=True, slots=True, kw_only=True)
class MessageEdit:
    """A partial edit: fields left :data:`UNSET` are not sent; ``None`` clears a field."""

    content: str | Literal[Unset.UNSET] | None = UNSET
    embeds: Sequence[Embed] | Literal[Unset.UNSET] | None = UNSET
    components: Sequence[ActionRow] | Literal[Unset.UNSET] | None = UNSET
    allowed_mentions: AllowedMentions | Literal[Unset.UNSET] = UNSET
    flags: int | Literal[Unset.UNSET] = UNSET

    def to_json(self) -> dict[str, Any]:
        """The JSON body with only the fields to change; limits are checked."""
        out: dict[str, Any] = {}
        if self.content is not UNSET:
            out["content"] = self.content
        if self.embeds is not UNSET:
            out["embeds"] = [] if self.embeds is None else [e.to_json() for e in self.embeds]
        if self.components is not UNSET:
            out["components"] = (
                [] if self.components is None else [r.to_json() for r in self.components]
            )
        if self.allowed_mentions is not UNSET:
            out["allowed_mentions"] = self.allowed_mentions.to_json()
        elif self.content is not UNSET:
            # Changed content re-parses mentions with Discord's defaults unless we say otherwise.
            out["allowed_mentions"] = AllowedMentions().to_json()
        if self.flags is not UNSET:
            out["flags"] = self.flags
        check_message(out, require_body=False)
        return out
