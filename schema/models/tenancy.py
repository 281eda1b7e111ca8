"""Per-guild configuration and access: guild settings, API keys, webhook endpoints, opt-outs.

Secrets follow one rule: what is only compared is hashed (API key secrets), what must be used
again is encrypted with MultiFernet and stored as the Fernet token text (webhook signing
secrets, custom auth headers, request-signing secrets).  No column ever holds a plain secret.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    Integer,
    String,
    Text,
    UniqueConstraint,
    text,
    true,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from schema.base import Base, JSONType
from schema.models.columns import DefaultNowInDb, Snowflake, Timestamp, UpdatedAtInDb, UuidPk
from schema.models.jobs import _in

__all__ = [
    "ALL_GUILDS",
    "ApiKey",
    "GuildSettings",
    "PrivateChannelPolicy",
    "SummaryFormatName",
    "UserOptOut",
    "WebhookAuthKind",
    "WebhookEndpoint",
]

#: ``UserOptOut.guild_id`` of an opt-out that applies in every guild.
ALL_GUILDS = "*"

# For optional JSON columns: Python None is SQL NULL (not the JSON value null), so
# ``IS NULL`` finds every row that has none.
_OptionalJSON = JSON(none_as_null=True).with_variant(JSONB(none_as_null=True), "postgresql")


class SummaryFormatName(StrEnum):
    """Formats a guild or schedule may choose; mirrors ``shared.summarize.content.SummaryFormat``.

    Kept here as plain values so the schema does not import the summarizer; a unit test keeps
    the two in step.
    """

    BRIEF = "brief"
    STRUCTURED = "structured"
    DETAILED = "detailed"
    TECHNICAL = "technical"


class PrivateChannelPolicy(StrEnum):
    """What may happen to a summary of a channel @everyone cannot read.

    ``allow``: delivered wherever the invoker asks; ``same_channel``: only into that channel
    or privately to the invoker; ``deny``: such channels are never summarized.
    """

    ALLOW = "allow"
    SAME_CHANNEL = "same_channel"
    DENY = "deny"


class WebhookAuthKind(StrEnum):
    """Extra authentication sent with each webhook, on top of the Standard Webhooks signature."""

    NONE = "none"
    BEARER = "bearer"
    BASIC = "basic"
    HEADER = "header"


class GuildSettings(Base):
    """An admin's choices for one guild (``/summary-config``); a missing row means defaults.

    Empty ``allowed_role_ids`` lets every member summarize; ``monthly_token_budget`` NULL means
    no budget; ``reaction_trigger_emoji`` NULL turns the reaction trigger off.
    """

    __tablename__ = "guild_settings"
    __table_args__ = (
        CheckConstraint(_in("default_format", SummaryFormatName), name="default_format"),
        CheckConstraint(_in("private_channel_policy", PrivateChannelPolicy), name="private_policy"),
        CheckConstraint("retention_days BETWEEN 1 AND 3650", name="retention_days"),
        CheckConstraint("monthly_token_budget >= 0", name="token_budget"),
        CheckConstraint("length(custom_instructions) <= 2000", name="instructions_length"),
    )

    guild_id: Mapped[Snowflake] = mapped_column(primary_key=True)
    default_format: Mapped[str] = mapped_column(
        String(16),
        default=SummaryFormatName.BRIEF.value,
        server_default=SummaryFormatName.BRIEF.value,
    )
    default_language: Mapped[str | None] = mapped_column(String(16))
    allowed_role_ids: Mapped[list[str]] = mapped_column(
        JSONType, default=list, server_default=text("'[]'")
    )
    excluded_channel_ids: Mapped[list[str]] = mapped_column(
        JSONType, default=list, server_default=text("'[]'")
    )
    retention_days: Mapped[int] = mapped_column(Integer, default=90, server_default=text("90"))
    monthly_token_budget: Mapped[int | None] = mapped_column(BigInteger)
    reaction_trigger_emoji: Mapped[str | None] = mapped_column(String(100))
    private_channel_policy: Mapped[str] = mapped_column(
        String(16),
        default=PrivateChannelPolicy.SAME_CHANNEL.value,
        server_default=PrivateChannelPolicy.SAME_CHANNEL.value,
    )
    custom_instructions: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[DefaultNowInDb]
    updated_at: Mapped[UpdatedAtInDb]


class ApiKey(Base):
    """An inbound API key ``sb_<id>_<secret>``, bound to one guild.

    ``id`` is the public ``<id>`` part (letters and digits, no ``_``); only a hash of the
    secret is kept (hex SHA-256 or HMAC-SHA256, compared in constant time).  ``ip_allowlist``
    NULL allows any address, otherwise it lists CIDRs.  ``rate_limit_per_minute`` NULL means the
    service default.  A key is usable while ``revoked_at`` is NULL and ``expires_at`` is NULL or
    in the future.
    """

    __tablename__ = "api_keys"
    __table_args__ = (
        CheckConstraint("length(id) BETWEEN 8 AND 32", name="id_length"),
        CheckConstraint("rate_limit_per_minute > 0", name="rate_limit"),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    guild_id: Mapped[Snowflake] = mapped_column(index=True)
    name: Mapped[str] = mapped_column(String(100))
    secret_hash: Mapped[str] = mapped_column(String(128))
    scopes: Mapped[list[str]] = mapped_column(JSONType, default=list, server_default=text("'[]'"))
    ip_allowlist: Mapped[list[str] | None] = mapped_column(_OptionalJSON)
    signing_secret_encrypted: Mapped[str | None] = mapped_column(Text)
    rate_limit_per_minute: Mapped[int | None] = mapped_column(Integer)
    created_by: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[DefaultNowInDb]
    expires_at: Mapped[Timestamp | None]
    revoked_at: Mapped[Timestamp | None]
    last_used_at: Mapped[Timestamp | None]


class WebhookEndpoint(Base):
    """An HTTP endpoint that receives a guild's events, signed with Standard Webhooks ``v1``.

    ``secret_encrypted`` is the Fernet token of the current ``whsec_`` secret.  After a rotation
    ``previous_secrets`` holds ``{"secret_encrypted": ..., "expires_at": ISO-8601}`` objects that
    are still signed with until they expire.  ``auth_encrypted`` (set exactly when ``auth_kind``
    is not ``none``) is the Fernet token of the bearer token, ``user:password`` or
    ``Header-Name: value``.  ``fallback`` names where deliveries go when this endpoint is dead,
    e.g. ``{"kind": "webhook", "endpoint_id": ...}`` or ``{"kind": "channel", "channel_id": ...}``.
    """

    __tablename__ = "webhook_endpoints"
    __table_args__ = (
        CheckConstraint(_in("auth_kind", WebhookAuthKind), name="auth_kind"),
        CheckConstraint(
            "(auth_kind = 'none' AND auth_encrypted IS NULL)"
            " OR (auth_kind <> 'none' AND auth_encrypted IS NOT NULL)",
            name="auth_secret",
        ),
    )

    id: Mapped[UuidPk]
    guild_id: Mapped[Snowflake] = mapped_column(index=True)
    url: Mapped[str] = mapped_column(String(2048))
    description: Mapped[str | None] = mapped_column(String(200))
    secret_encrypted: Mapped[str] = mapped_column(Text)
    previous_secrets: Mapped[list[dict[str, Any]]] = mapped_column(
        JSONType, default=list, server_default=text("'[]'")
    )
    auth_kind: Mapped[str] = mapped_column(
        String(16), default=WebhookAuthKind.NONE.value, server_default=WebhookAuthKind.NONE.value
    )
    auth_encrypted: Mapped[str | None] = mapped_column(Text)
    events: Mapped[list[str]] = mapped_column(
        JSONType, default=lambda: ["summary.completed", "job.failed"]
    )
    enabled: Mapped[bool] = mapped_column(Boolean, default=True, server_default=true())
    disabled_reason: Mapped[str | None] = mapped_column(Text)
    failing_since: Mapped[Timestamp | None]
    fallback: Mapped[dict[str, Any] | None] = mapped_column(_OptionalJSON)
    created_at: Mapped[DefaultNowInDb]
    updated_at: Mapped[UpdatedAtInDb]


class UserOptOut(Base):
    """A member who asked that their messages be left out of summaries.

    ``guild_id`` is a guild id, or :data:`ALL_GUILDS` (``"*"``) for an opt-out that applies
    everywhere; it is never NULL, so the unique ``(guild_id, user_id)`` holds on every backend.
    """

    __tablename__ = "user_opt_outs"
    __table_args__ = (UniqueConstraint("guild_id", "user_id"),)

    id: Mapped[UuidPk]
    guild_id: Mapped[Snowflake]
    user_id: Mapped[Snowflake] = mapped_column(index=True)
    created_at: Mapped[DefaultNowInDb]
