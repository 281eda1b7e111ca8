"""The Acme server (:func:`tests.fakes.server_world.seed_server`) with a day of real chat.

:func:`seed_server_chat` builds Acme with no scripted messages, then gives each of its 12
message channels a different slice of the irc-dev logs (CC BY 4.0, see
``tests/fixtures/irc-dev``), 300 to 600 messages each, spread over the 24 h before ``now_ms``
(the same day in every channel, #music and #events included: nothing is quiet).  IRC nicks
become users (authors, not members: they leave the audience checks as Acme defines them), and
a message the annotation links to an earlier one in its slice is a reply (type 19) to it.

The threads and the forum post keep what :func:`seed_server` gives them with no scripted
messages (the forum post's starter message only).  Benchmarks reach it through the fake's
control endpoint: ``POST /_fake/seed`` with ``{"scenario": "server_chat", ...}``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.fakes.discord_api import FakeDiscord
from tests.fakes.discord_state import User
from tests.fakes.server_world import MESSAGE_CHANNELS, seed_server
from tests.support.irc import read_irc_log

__all__ = ["IRC_DEV", "seed_server_chat"]

IRC_DEV = Path(__file__).resolve().parents[1] / "fixtures" / "irc-dev"
_DAY_MS = 24 * 3600_000
_MARGIN_MS = 20 * 60_000


def _counts(channels: int, low: int, high: int) -> list[int]:
    """Message counts from ``low`` to ``high``, spread over the channels (not in order)."""
    if channels == 1:
        return [low]
    return [low + (n * 7 % channels) * (high - low) // (channels - 1) for n in range(channels)]


def seed_server_chat(
    fake: FakeDiscord,
    *,
    token: str,
    now_ms: int | None = None,
    min_messages: int = 300,
    max_messages: int = 600,
) -> dict[str, Any]:
    """Seed Acme with a day of irc-dev chat per message channel (see the module docstring).

    Returns ``guild_id``, ``token``, ``channels`` (name → id and message count for the 12
    message channels), ``staff_only_id``, ``general_id``, the day's ``after_ms``/``before_ms``
    and ``messages``.
    """
    now = fake.now_ms() if now_ms is None else now_ms
    world = seed_server(fake, messages_per_channel=0, now_ms=now, token=token)
    raws = sorted(IRC_DEV.glob("*.raw.txt"))
    start, end = now - _DAY_MS + _MARGIN_MS, now - _MARGIN_MS
    users: dict[str, User] = {}
    channels: dict[str, dict[str, Any]] = {}
    counts = _counts(len(MESSAGE_CHANNELS), min_messages, max_messages)
    for index, (name, count) in enumerate(zip(MESSAGE_CHANNELS, counts, strict=True)):
        raw = raws[index % len(raws)]
        log = read_irc_log(
            raw, raw.with_name(raw.name.replace(".raw.", ".annotation.")), seed=index
        )
        # Another slice for channels that share a log; each slice is a stretch of one day.
        offset = (index // len(raws)) * max_messages % max(len(log.messages) - count, 1)
        chosen = log.messages[offset : offset + count]
        first = chosen[0].timestamp.timestamp() * 1000
        span = max(chosen[-1].timestamp.timestamp() * 1000 - first, 1.0)
        scale = min(1.0, (end - start) / span)
        channel = world.channels[name]
        made: dict[str, int] = {}
        for message in chosen:
            author = users.get(message.author_name)
            if author is None:
                author = users[message.author_name] = fake.add_user(message.author_name)
            at_ms = int(start + (message.timestamp.timestamp() * 1000 - first) * scale)
            fields: dict[str, Any] = {}
            parent = made.get(message.reply_to) if message.reply_to else None
            if parent is not None:
                fields = {
                    "type": 19,
                    "reference": {
                        "type": 0,
                        "channel_id": str(channel.id),
                        "message_id": str(parent),
                        "guild_id": str(world.guild.id),
                    },
                }
            made[message.id] = fake.add_message(
                channel, author, message.content, at_ms=at_ms, **fields
            ).id
        channels[name] = {"id": str(channel.id), "messages": len(chosen)}
    return {
        "guild_id": str(world.guild.id),
        "token": token,
        "channels": channels,
        "staff_only_id": str(world.channels["staff-only"].id),
        "general_id": str(world.channels["general"].id),
        "after_ms": now - _DAY_MS,
        "before_ms": now,
        "messages": sum(c["messages"] for c in channels.values()),
    }
