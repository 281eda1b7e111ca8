"""Settings of the Discord bot, as one pydantic model the application settings nest (``bot``).

Nothing here reads the environment: the application's :class:`~shared.settings.Settings` fills
:class:`BotSettings` (or tests build one).  The token itself is ``Settings.discord_token``
(``DISCORD_TOKEN``).  Every invalid value fails validation with a message that says what is
wrong and how to fix it.

Sharding: leave ``shard_count``/``shard_ids`` unset and one process runs every shard Discord
recommends.  To split a large bot over processes, give every process the same ``shard_count``
and its own ``shard_ids`` (e.g. ``[0, 1]`` and ``[2, 3]`` with ``shard_count`` 4).
"""

from __future__ import annotations

from typing import Self

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

__all__ = ["BotSettings"]


class BotSettings(BaseModel):
    """Everything the bot process can be told besides its token."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    application_id: int | None = Field(
        default=None,
        ge=1,
        description="the application's id; read from Discord at login when unset",
    )
    shard_count: int | None = Field(
        default=None, ge=1, le=16_384, description="total shards of the bot (all processes)"
    )
    shard_ids: list[int] | None = Field(
        default=None, description="the shards this process runs; needs shard_count"
    )
    sync_commands: bool = Field(
        default=True, description="register the slash commands with Discord at start"
    )
    command_guild_ids: list[int] = Field(
        default_factory=list,
        description="register commands in these guilds only (instant, for testing)",
    )

    user_cooldown_seconds: float = Field(default=60.0, ge=0, le=86_400)
    guild_cooldown_seconds: float = Field(default=5.0, ge=0, le=86_400)
    user_daily_quota: int = Field(default=25, ge=0, le=100_000, description="0 = no limit")
    guild_daily_quota: int = Field(default=500, ge=0, le=1_000_000, description="0 = no limit")

    max_window_messages: int = Field(default=10_000, ge=1, le=1_000_000)
    default_window_hours: int = Field(default=24, ge=1, le=168)
    progress_interval_seconds: float = Field(default=3.0, gt=0, le=120)
    #: Interaction tokens live 15 minutes; stop using one this long after the interaction.
    interaction_token_seconds: float = Field(default=14 * 60, gt=0, le=15 * 60)
    tokens_per_message: int = Field(
        default=45, ge=1, le=10_000, description="average prompt tokens one message costs"
    )
    activity_ttl_hours: int = Field(default=8 * 24, ge=1, le=24 * 31)
    redis_key_prefix: str = Field(default="sb:bot:", min_length=1, max_length=64)
    metrics_port: int | None = Field(
        default=None, ge=0, le=65535, description="serve Prometheus /metrics here (0: any port)"
    )

    @field_validator("shard_ids")
    @classmethod
    def _distinct(cls, value: list[int] | None) -> list[int] | None:
        if value is None:
            return None
        if not value:
            raise ValueError("shard_ids is empty; list the shards this process runs, e.g. [0, 1]")
        if len(set(value)) != len(value) or min(value) < 0:
            raise ValueError("shard_ids must be distinct numbers from 0, e.g. [0, 1]")
        return sorted(value)

    @model_validator(mode="after")
    def _shards(self) -> Self:
        if self.shard_ids is not None:
            if self.shard_count is None:
                raise ValueError("shard_ids needs shard_count (the total over all bot processes)")
            too_big = [s for s in self.shard_ids if s >= self.shard_count]
            if too_big:
                raise ValueError(
                    f"shard ids {too_big} are not below shard_count {self.shard_count}; "
                    "shards are numbered 0 to shard_count - 1"
                )
        return self
