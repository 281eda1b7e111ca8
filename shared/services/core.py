"""What every use case needs: the resources of the calling process, and who is asking."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, TypeVar

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from shared.crypto import SecretBox
from shared.delivery.ssrf import EgressPolicy
from shared.errors import ConfigError, NotFoundError
from shared.jobs import Enqueuer
from shared.tenancy import ChannelDirectory

if TYPE_CHECKING:
    from shared.settings import Settings

__all__ = ["OPERATOR", "Actor", "Core", "locked_guild_row"]

Row = TypeVar("Row")


def _utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class Actor:
    """Who asks: a guild's API key or member, a digest schedule, or the operator.

    ``guild_id`` is the tenant every resource touched must belong to; None only for the
    operator acting for no one guild.  ``local`` marks the operator at the deployment's own
    command line, who alone may read export files and write to the terminal or local files.
    ``requested_by`` is recorded on what is created (``api:<key id>``, a member's id, ``cli``).
    """

    origin: str
    guild_id: str | None
    requested_by: str | None = None
    local: bool = False

    @property
    def is_operator(self) -> bool:
        """True for the deployment's operator acting for no one guild."""
        return self.guild_id is None


#: The operator at the command line.
OPERATOR = Actor(origin="cli", guild_id=None, requested_by="cli", local=True)


@dataclass(frozen=True)
class Core:
    """The resources a use case may use, built once by the entry point of a process.

    ``directory`` is None when this deployment has no Discord access (no ``DISCORD_TOKEN``):
    use cases that need Discord then refuse with a :class:`ConfigError` before writing
    anything.  ``box`` encrypts secrets at rest (webhook secrets, tokens); ``egress`` is the
    outbound URL policy the delivery guard enforces (``WEBHOOK_ALLOWED_HOSTS``).
    """

    session_factory: sessionmaker[Session]
    enqueuer: Enqueuer
    box: SecretBox
    egress: EgressPolicy = field(default_factory=EgressPolicy)
    directory: ChannelDirectory | None = None
    clock: Callable[[], datetime] = _utcnow
    max_messages: int = 200_000
    max_schedules_per_guild: int = 25

    @classmethod
    def configured(
        cls,
        settings: Settings,
        *,
        session_factory: sessionmaker[Session],
        enqueuer: Enqueuer,
        box: SecretBox,
        directory: ChannelDirectory | None,
        clock: Callable[[], datetime] = _utcnow,
    ) -> Core:
        """The core with the deployment's rules from ``settings`` (the outbound URL policy,
        the message limit): every process builds it here, so no producer runs with defaults
        where the operator configured otherwise."""
        return cls(
            session_factory=session_factory,
            enqueuer=enqueuer,
            box=box,
            egress=settings.delivery.egress_policy,
            directory=directory,
            clock=clock,
            max_messages=settings.max_messages,
        )

    def require_directory(self) -> ChannelDirectory:
        """The channel directory, or a :class:`ConfigError` saying how to enable Discord."""
        if self.directory is None:
            raise ConfigError(
                "this deployment has no Discord access: set DISCORD_TOKEN (or "
                "DISCORD_TOKEN_FILE) for the API and the workers",
                user_message="this deployment cannot read or post to Discord channels (no "
                "DISCORD_TOKEN is configured); ask the operator to set it",
            )
        return self.directory


def locked_guild_row(
    session: Session, model: type[Row], guild_id: str, row_id: uuid.UUID, *, what: str
) -> Row:
    """The row ``row_id`` of ``model`` in guild ``guild_id``, locked for update.

    :class:`NotFoundError` ("no <what> <id> in this server") when it is missing or belongs to
    another guild.
    """
    table: Any = model
    row = session.scalars(
        select(model).where(table.id == row_id, table.guild_id == guild_id).with_for_update()
    ).one_or_none()
    if row is None:
        raise NotFoundError(f"no {what} {row_id} in this server")
    return row
