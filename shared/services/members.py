"""Members' choices and rights: opting out of summaries, and erasing a member's data.

An opted-out member's messages are left out of every summary of that guild (or of every guild);
erasure removes a member's identifiers from what is stored (:func:`shared.retention.erase_member`)
and keeps their opt-out, so their messages stay excluded.
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from schema.models.tenancy import ALL_GUILDS, UserOptOut
from shared.db.rows import add_unless_present
from shared.retention import ErasureResult, erase_member
from shared.services.core import Actor, Core

__all__ = ["erase_member_data", "opt_out_scopes", "opted_out_ids", "set_opt_out"]


def opt_out_scopes(guild_id: str | None) -> list[str]:
    """The opt-out scopes that bind summaries of ``guild_id``: that guild's and everywhere."""
    return [ALL_GUILDS] if guild_id is None else [guild_id, ALL_GUILDS]


def opted_out_ids(session: Session, guild_id: str | None) -> frozenset[str]:
    """The members whose messages no summary of ``guild_id`` may use: those who opted out of
    that guild's summaries and those who opted out everywhere."""
    scopes = opt_out_scopes(guild_id)
    return frozenset(
        session.scalars(select(UserOptOut.user_id).where(UserOptOut.guild_id.in_(scopes)))
    )


def set_opt_out(core: Core, *, user_id: str, guild_id: str | None, opted_out: bool) -> bool:
    """Opt a member out of (or back into) summaries of one guild, or every guild (None).

    Returns True when something changed.  Safe to call twice, and from two processes at once.
    """
    scope = ALL_GUILDS if guild_id is None else guild_id
    with core.session_factory() as session, session.begin():
        existing = session.scalar(
            select(UserOptOut).where(UserOptOut.guild_id == scope, UserOptOut.user_id == user_id)
        )
        if not opted_out:
            if existing is None:
                return False
            session.delete(existing)
            return True
        if existing is not None:
            return False
        return add_unless_present(session, UserOptOut(guild_id=scope, user_id=user_id))


def erase_member_data(core: Core, actor: Actor, user_id: str) -> ErasureResult:
    """Erase a member's identifiers from the actor's guild (the operator: from every guild)."""
    guild = ALL_GUILDS if actor.guild_id is None else actor.guild_id
    return erase_member(core.session_factory, guild_id=guild, user_id=user_id)
