"""Discord's raw message markup (mentions, emoji, timestamps, commands) rewritten as text.

The gateway/REST converter and the DiscordChatExporter reader both turn ``<@123>``,
``<@&456>``, ``<#789>``, ``<:name:1>``, ``<t:1700000000:R>`` and ``</cmd:1>`` into what a
reader sees: ``@name``, ``@role``, ``#channel``, ``:name:``, a UTC time and ``/cmd``.
The patterns are public: the transcript builder matches the same markup with them and
renders it its own way (names of the job's directory, times in the guild's zone).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import UTC, datetime

__all__ = [
    "CHANNEL_MENTION",
    "COMMAND",
    "EMOJI",
    "ROLE_MENTION",
    "TIMESTAMP",
    "USER_MENTION",
    "render_markup",
]

# Bounded by Discord's own limits (ids are 64-bit snowflakes, names at most 32 characters, a
# command mention at most three names), so text Discord never sends is left as it is.  In
# every pattern group 1 is the id or name.
USER_MENTION = re.compile(r"<@!?(\d{1,21})>")
ROLE_MENTION = re.compile(r"<@&(\d{1,21})>")
CHANNEL_MENTION = re.compile(r"<#(\d{1,21})>")
#: A custom emoji as Discord sends it (names are word characters).
EMOJI = re.compile(r"<a?:(\w{1,32}):\d{1,21}>")
#: A ``<t:…>`` timestamp: group 1 the Unix time, group 2 the style letter (None: default).
TIMESTAMP = re.compile(r"<t:(-?\d{1,13})(?::([tTdDfFR]))?>")
#: A slash command mention: ``</name:id>``, ``</name sub:id>``, ``</name group sub:id>``.
COMMAND = re.compile(r"</([\w -]{1,98}):\d{1,21}>")


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
    content = USER_MENTION.sub(lambda m: "@" + users.get(m.group(1), "Unknown"), content)
    content = ROLE_MENTION.sub(lambda m: "@" + roles.get(m.group(1), f"role-{m.group(1)}"), content)
    content = CHANNEL_MENTION.sub(lambda m: "#" + channels.get(m.group(1), m.group(1)), content)
    content = emoji.sub(r":\1:", content)
    content = TIMESTAMP.sub(_stamp, content)
    return COMMAND.sub(r"/\1", content)
