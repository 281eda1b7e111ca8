"""The helpful / not helpful buttons under every summary, and what a click does.

The deliver stage renders the buttons (it posts the summaries, the bot does not), so the
``custom_id`` format below is a contract between the two:
``sb:fb:<summary id as 32 hex digits>:<1 helpful | 0 not helpful>``.  :func:`feedback_row`
gives the exact component JSON.  Clicks arrive at whichever bot process runs the shard;
:class:`FeedbackButton` is a discord.py dynamic item, so it matches the buttons of every
summary ever posted, across restarts.
"""

from __future__ import annotations

import re
import uuid
from typing import Any, cast

import discord
import structlog

from producers.bot.runtime import HasRuntime
from producers.bot.store import record_feedback

__all__ = [
    "FEEDBACK_ID",
    "FeedbackButton",
    "feedback_custom_id",
    "feedback_row",
    "parse_feedback_id",
]

log = structlog.get_logger(__name__)

#: Pattern of the buttons' ``custom_id``.
FEEDBACK_ID = r"sb:fb:(?P<summary>[0-9a-f]{32}):(?P<vote>[01])"
_PATTERN = re.compile(FEEDBACK_ID)


def feedback_custom_id(summary_id: uuid.UUID, *, helpful: bool) -> str:
    """The ``custom_id`` of one of the two buttons of a summary."""
    return f"sb:fb:{summary_id.hex}:{1 if helpful else 0}"


def parse_feedback_id(custom_id: str) -> tuple[uuid.UUID, bool] | None:
    """Summary id and vote of a feedback button, or None for any other component."""
    match = _PATTERN.fullmatch(custom_id)
    if match is None:
        return None
    return uuid.UUID(match["summary"]), match["vote"] == "1"


def feedback_row(summary_id: uuid.UUID) -> dict[str, Any]:
    """The action row (component JSON) to attach to a summary message."""
    return {
        "type": 1,
        "components": [
            {
                "type": 2,
                "style": 2,
                "label": "Helpful",
                "emoji": {"name": "👍"},
                "custom_id": feedback_custom_id(summary_id, helpful=True),
            },
            {
                "type": 2,
                "style": 2,
                "label": "Not helpful",
                "emoji": {"name": "👎"},
                "custom_id": feedback_custom_id(summary_id, helpful=False),
            },
        ],
    }


def _button(summary_id: uuid.UUID, helpful: bool) -> discord.ui.Button[Any]:
    return discord.ui.Button(
        style=discord.ButtonStyle.secondary,
        label="Helpful" if helpful else "Not helpful",
        emoji="👍" if helpful else "👎",
        custom_id=feedback_custom_id(summary_id, helpful=helpful),
    )


class FeedbackButton(discord.ui.DynamicItem[discord.ui.Button[Any]], template=FEEDBACK_ID):
    """Either feedback button of any summary; a click records the member's vote."""

    def __init__(self, summary_id: uuid.UUID, helpful: bool) -> None:
        super().__init__(_button(summary_id, helpful))
        self.summary_id = summary_id
        self.helpful = helpful

    @classmethod
    async def from_custom_id(
        cls,
        interaction: discord.Interaction,  # noqa: ARG003
        item: discord.ui.Item[Any],  # noqa: ARG003
        match: re.Match[str],
        /,
    ) -> FeedbackButton:
        """Rebuild the button from its ``custom_id``."""
        return cls(uuid.UUID(match["summary"]), match["vote"] == "1")

    async def callback(self, interaction: discord.Interaction) -> None:
        """Acknowledge at once, then store the vote and thank the member privately."""
        await interaction.response.defer(ephemeral=True, thinking=True)
        runtime = cast(HasRuntime, interaction.client).runtime
        try:
            result = await runtime.db(
                record_feedback,
                runtime.session_factory,
                summary_id=self.summary_id,
                user_id=interaction.user.id,
                helpful=self.helpful,
                now=runtime.clock(),
            )
        except Exception:
            log.exception("feedback.store_failed", summary_id=str(self.summary_id))
            await interaction.edit_original_response(
                content="Sorry, your feedback could not be saved; please try again."
            )
            return
        if not result.recorded:
            text = "This summary no longer exists (it was deleted by the retention policy)."
        elif result.changed:
            text = "Thanks — your vote is changed."
        else:
            text = "Thanks for the feedback!"
        log.info(
            "feedback.recorded",
            summary_id=str(self.summary_id),
            helpful=self.helpful,
            prompt_version=result.prompt_version,
        )
        await interaction.edit_original_response(content=text)
