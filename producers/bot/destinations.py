"""Where a summary the bot asked for goes, and how that becomes job destinations.

A :class:`ReplyPlan` is the bot's intent, and :func:`to_destinations` turns it into the job
contract's Discord targets (``shared.delivery.targets``), which the deliver stage sends:

- ``interaction``: the summary answers the slash command (:class:`InteractionFollowupTarget`,
  the interaction token encrypted with ``SECRET_KEYS``).  Its token dies 15 minutes after the
  command; a summary finishing later goes to the channel the command ran in instead (the
  target's ``fallback``).
- ``channel``: posted in a channel or thread (:class:`ChannelTarget`), as a reply to
  ``reply_to`` when set (the reaction trigger).
- ``dm``: sent privately to the member (:class:`DirectMessageTarget`); a member whose DMs are
  closed gets the reason in the command's reply, never a copy in a channel.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from shared.crypto import SecretBox
from shared.jobs import ChannelTarget, DirectMessageTarget, InteractionFollowupTarget

__all__ = ["ReplyPlan", "to_destinations"]


@dataclass(frozen=True)
class ReplyPlan:
    """The bot's intent for one summary (see module docstring).

    ``interaction`` needs ``application_id``, ``interaction_id`` and ``token``, and uses
    ``channel_id`` as the fallback; ``channel`` needs ``channel_id``; ``dm`` needs ``user_id``.
    """

    kind: Literal["interaction", "channel", "dm"]
    channel_id: int | None = None
    user_id: int | None = None
    application_id: int | None = None
    interaction_id: int | None = None
    token: str | None = None
    reply_to: int | None = None

    @property
    def private(self) -> bool:
        """True when only the member sees the summary."""
        return self.kind == "dm"

    @property
    def edits_original(self) -> bool:
        """True when the deliver stage writes the summary into the interaction's reply."""
        return self.kind == "interaction"

    def describe(self) -> str:
        """Where it goes, in words for the first reply."""
        if self.kind == "dm":
            return "your DMs"
        if self.kind == "channel":
            return f"<#{self.channel_id}>"
        return "this reply"


def _required(value: Any, name: str, kind: str) -> str:
    if value is None:
        raise ValueError(f"a {kind} reply plan needs {name}")
    return str(value)


def to_destinations(plan: ReplyPlan, box: SecretBox) -> list[Any]:
    """The job destinations of ``plan`` (``box`` encrypts an interaction token)."""
    if plan.kind == "channel":
        return [
            ChannelTarget(
                channel_id=_required(plan.channel_id, "channel_id", plan.kind),
                reply_to=None if plan.reply_to is None else str(plan.reply_to),
            )
        ]
    if plan.kind == "dm":
        return [DirectMessageTarget(user_id=_required(plan.user_id, "user_id", plan.kind))]
    fallback = (
        None
        if plan.channel_id is None
        else ChannelTarget(channel_id=str(plan.channel_id)).model_dump(mode="json")
    )
    return [
        InteractionFollowupTarget.with_token(
            box,
            application_id=_required(plan.application_id, "application_id", plan.kind),
            interaction_id=_required(plan.interaction_id, "interaction_id", plan.kind),
            token=_required(plan.token, "token", plan.kind),
            fallback=fallback,
        )
    ]
