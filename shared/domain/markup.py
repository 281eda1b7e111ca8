"""Discord's raw message markup (mentions, emoji, timestamps, commands) rewritten as text.

The gateway/REST converter and the DiscordChatExporter reader both turn ``<@123>``,
``<@&456>``, ``<#789>``, ``<:name:1>``, ``<t:1700000000:R>`` and ``</cmd:1>`` into what a
reader sees: ``@name``, ``@role``, ``#channel``, ``:name:``, a UTC time and ``/cmd``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import UTC, datetime

__all__ = ["EMOJI", "render_markup"]

_USER_MENTION = re.compile(r"<@!?(\d+)>")
_ROLE_MENTION = re.compile(r"<@&(\d+)>")
_CHANNEL_MENTION = re.compile(r"<#(\d+)>")
#: A custom emoji as Discord sends it (names are word characters).
EMOJI = re.compile(r"<a?:(\w+):\d+>")
_TIMESTAMP = re.compile(r"<t:(-?\d+)(?::[tTdDfFR])?>")
_COMMAND = re.compile(r"</([\w -]+):\d+>")


def _stamp(match: re.Match[str]) -> str:
    try:
        when = datetime.fromtimestamp(int(match.group(1)), tz=UTC)
    except (OverflowError, OSError, ValueError):
        return match.group(0)
    return when.strftime("%Y-%m-%d %H:%M UTC")


def render_markup(
    content: str,
    *,
    users: Mapping[str, str],
    roles: Mapping[str, str],
    channels: Mapping[str, str],
    emoji: re.Pattern[str] = EMOJI,
) -> str:
    """``content`` with its markup rewritten, names looked up by id.

    An unknown user is ``@Unknown``, an unknown role ``@role-<id>``, an unknown channel
    ``#<id>``; a timestamp out of range stays as it was.  ``emoji`` is the custom-emoji
    pattern whose first group is the name.
    """
    content = _USER_MENTION.sub(lambda m: "@" + users.get(m.group(1), "Unknown"), content)
    content = _ROLE_MENTION.sub(
        lambda m: "@" + roles.get(m.group(1), f"role-{m.group(1)}"), content
    )
    content = _CHANNEL_MENTION.sub(lambda m: "#" + channels.get(m.group(1), m.group(1)), content)
    content = emoji.sub(r":\1:", content)
    content = _TIMESTAMP.sub(_stamp, content)
    return _COMMAND.sub(r"/\1", content)
