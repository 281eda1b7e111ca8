"""Destination models of remote targets, as stored in job parameters and delivery rows.

Job parameters are stored in plain JSON, so these never hold a plain secret: a webhook target
names a ``webhook_endpoints`` row (URL, signing secrets and auth live there, encrypted); Discord
webhook and interaction tokens are kept as Fernet tokens (``token_encrypted``, made with
:class:`shared.crypto.SecretBox`; build them with ``with_token``).  ``key`` is the target's
identity, unique per summary (the deliveries outbox has a unique ``(summary_id, target)``).

``fallback`` (Discord targets) names another destination that gets the summary when this one
fails for good; a webhook endpoint's fallback is on its row.
"""

from __future__ import annotations

import uuid
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field

from shared.crypto import SecretBox
from shared.domain.messages import SnowflakeText

__all__ = [
    "ChannelTarget",
    "DirectMessageTarget",
    "DiscordWebhookTarget",
    "InteractionFollowupTarget",
    "ThreadTarget",
    "WebhookTarget",
]


class _Target(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    #: The field that tells targets of one kind apart (see :attr:`key`).
    _key_field: ClassVar[str]
    kind: str

    @property
    def key(self) -> str:
        """Identity of the target, unique per summary: ``<kind>:<its _key_field>``."""
        return f"{self.kind}:{getattr(self, self._key_field)}"


class WebhookTarget(_Target):
    """POST a signed ``summary.completed`` (and ``job.failed``) event to a registered endpoint."""

    _key_field: ClassVar[str] = "endpoint_id"
    kind: Literal["webhook"] = "webhook"
    endpoint_id: uuid.UUID


class ChannelTarget(_Target):
    """Post the summary as embeds in a channel or thread (optionally as a reply)."""

    _key_field: ClassVar[str] = "channel_id"
    kind: Literal["channel"] = "channel"
    channel_id: SnowflakeText
    reply_to: SnowflakeText | None = None
    fallback: dict[str, Any] | None = None


class ThreadTarget(_Target):
    """Start a new thread per summary in ``channel_id``; the summary is posted inside it.

    The first message (overview) is posted in the channel and the thread is started from it,
    which makes the thread creation idempotent (a message has at most one thread).
    """

    _key_field: ClassVar[str] = "channel_id"
    kind: Literal["thread"] = "thread"
    channel_id: SnowflakeText
    name: str | None = Field(default=None, min_length=1, max_length=100)
    auto_archive_minutes: Literal[60, 1440, 4320, 10080] = 1440
    fallback: dict[str, Any] | None = None


class DirectMessageTarget(_Target):
    """Send the summary privately to a user (the requester)."""

    _key_field: ClassVar[str] = "user_id"
    kind: Literal["dm"] = "dm"
    user_id: SnowflakeText
    fallback: dict[str, Any] | None = None


class DiscordWebhookTarget(_Target):
    """Post through a Discord webhook, with an optional name/avatar override and thread."""

    _key_field: ClassVar[str] = "webhook_id"
    kind: Literal["discord_webhook"] = "discord_webhook"
    webhook_id: SnowflakeText
    token_encrypted: str = Field(min_length=1, description="Fernet token of the webhook token")
    username: str | None = Field(default=None, min_length=1, max_length=80)
    avatar_url: str | None = Field(default=None, max_length=2048)
    thread_id: SnowflakeText | None = None
    fallback: dict[str, Any] | None = None

    @classmethod
    def with_token(cls, box: SecretBox, *, webhook_id: str, token: str, **kw: Any) -> Any:
        """A target whose webhook token is encrypted with ``box``."""
        return cls(webhook_id=webhook_id, token_encrypted=box.encrypt(token), **kw)


class InteractionFollowupTarget(_Target):
    """Answer a deferred slash command: edit the "thinking" response, follow up with the rest.

    The interaction token is valid for 15 minutes; after that Discord refuses and the
    ``fallback`` (e.g. the channel) gets the summary.
    """

    _key_field: ClassVar[str] = "interaction_id"
    kind: Literal["followup"] = "followup"
    application_id: SnowflakeText
    interaction_id: SnowflakeText
    token_encrypted: str = Field(min_length=1, description="Fernet token of the interaction token")
    ephemeral: bool = False
    fallback: dict[str, Any] | None = None

    @classmethod
    def with_token(
        cls, box: SecretBox, *, application_id: str, interaction_id: str, token: str, **kw: Any
    ) -> Any:
        """A target whose interaction token is encrypted with ``box``."""
        return cls(
            application_id=application_id,
            interaction_id=interaction_id,
            token_encrypted=box.encrypt(token),
            **kw,
        )
