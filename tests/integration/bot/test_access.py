"""A member without Read Message History is refused — one test per overwrite case — and the bot
names the permission it lacks and where.  Real interactions over the fake Discord."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select

from schema.models.jobs import Job
from tests.fakes.discord_state import (
    ADMINISTRATOR,
    READ_MESSAGE_HISTORY,
    SEND_MESSAGES,
    VIEW_CHANNEL,
    Channel,
    User,
)
from tests.integration.bot.harness import BotHarness, running_bot

pytestmark = pytest.mark.integration

EPHEMERAL = 1 << 6


def job_count(h: BotHarness) -> int:
    with h.session_factory() as session:
        count = session.scalar(
            select(func.count()).select_from(Job).where(Job.guild_id == str(h.world.guild.id))
        )
    return int(count or 0)


def ow(target: int, kind: int, *, allow: int = 0, deny: int = 0) -> dict[str, object]:
    return {"id": str(target), "type": kind, "allow": str(allow), "deny": str(deny)}


async def summarize(h: BotHarness, channel: Channel, user: User | None = None) -> str:
    """``/summarize`` in ``channel`` as Bob (by default); returns what the member was told."""
    token = await h.command("summarize", [], user=user or h.world.bob, channel=channel)
    original = h.original(token)
    if original is not None and original.embeds:
        return "accepted"
    [refusal] = [m for m in h.replies(token) if m.flags & EPHEMERAL]
    return refusal.content


def case(database_url: str, redis_url: str, body: Callable[[BotHarness], object]) -> None:
    async def scenario() -> None:
        settings = {"user_cooldown_seconds": 0, "guild_cooldown_seconds": 0}
        async with running_bot(
            database_url=database_url, redis_url=redis_url, settings=settings
        ) as h:
            await body(h)  # type: ignore[misc]

    asyncio.run(scenario())


def test_role_deny(database_url: str, redis_url: str) -> None:
    async def body(h: BotHarness) -> None:
        quiet = h.fake.add_role(h.world.guild, "no-history", 0)
        h.world.guild.members[h.world.bob.id].roles.add(quiet)
        h.world.general.overwrites.append(ow(quiet, 0, deny=READ_MESSAGE_HISTORY))
        h.sync_guild()
        told = await summarize(h, h.world.general)
        assert told.startswith(f"⛔ You need Read Message History in <#{h.world.general.id}>")
        assert "the overwrite for @no-history" in told
        assert job_count(h) == 0
        assert await summarize(h, h.world.general, h.world.alice) == "accepted"

    case(database_url, redis_url, body)


def test_member_deny(database_url: str, redis_url: str) -> None:
    async def body(h: BotHarness) -> None:
        h.world.general.overwrites.append(ow(h.world.bob.id, 1, deny=READ_MESSAGE_HISTORY))
        h.sync_guild()
        told = await summarize(h, h.world.general)
        assert "You need Read Message History" in told
        assert "member-specific overwrite" in told
        assert job_count(h) == 0

    case(database_url, redis_url, body)


def test_member_allow_over_role_deny(database_url: str, redis_url: str) -> None:
    async def body(h: BotHarness) -> None:
        quiet = h.fake.add_role(h.world.guild, "no-history", 0)
        h.world.guild.members[h.world.bob.id].roles.add(quiet)
        h.world.general.overwrites.extend(
            [
                ow(quiet, 0, deny=READ_MESSAGE_HISTORY),
                ow(h.world.bob.id, 1, allow=READ_MESSAGE_HISTORY),
            ]
        )
        h.sync_guild()
        assert await summarize(h, h.world.general) == "accepted"
        assert job_count(h) == 1

    case(database_url, redis_url, body)


def test_thread_inherits_its_parent(database_url: str, redis_url: str) -> None:
    async def body(h: BotHarness) -> None:
        quiet = h.fake.add_role(h.world.guild, "no-history", 0)
        h.world.guild.members[h.world.bob.id].roles.add(quiet)
        h.world.general.overwrites.append(ow(quiet, 0, deny=READ_MESSAGE_HISTORY))
        thread = h.fake.add_thread(h.world.general, "release-42", owner=h.world.alice)
        h.sync_guild()
        told = await summarize(h, thread)
        assert f"You need Read Message History in <#{thread.id}>" in told
        assert f"inherits <#{h.world.general.id}>" in told
        assert job_count(h) == 0
        # Picking the thread from another channel is refused the same way.
        other = h.fake.add_channel(h.world.guild, "lobby")
        h.sync_guild()
        token = await h.command(
            "summarize",
            [{"name": "channel", "type": 7, "value": str(thread.id)}],
            user=h.world.bob,
            channel=other,
            resolved={"channels": {str(thread.id): h.resolved_channel(thread, h.world.bob)}},
        )
        [refusal] = [m for m in h.replies(token) if m.flags & EPHEMERAL]
        assert "Read Message History" in refusal.content
        assert job_count(h) == 0

    case(database_url, redis_url, body)


def test_everyone_deny_with_role_allow(database_url: str, redis_url: str) -> None:
    async def body(h: BotHarness) -> None:
        readers = h.fake.add_role(h.world.guild, "readers", 0)
        h.world.general.overwrites.extend(
            [
                ow(h.world.guild.id, 0, deny=READ_MESSAGE_HISTORY),
                ow(readers, 0, allow=READ_MESSAGE_HISTORY),
            ]
        )
        h.world.guild.members[h.world.bob.id].roles.add(readers)
        h.sync_guild()
        # The bot is caught by the @everyone deny as well, and says so.
        told = await summarize(h, h.world.general)
        assert told.startswith(f"⛔ I need Read Message History in <#{h.world.general.id}>")
        assert "the @everyone overwrite" in told
        [bot_role] = h.world.guild.members[h.world.bot.id].roles
        h.world.general.overwrites.append(ow(bot_role, 0, allow=READ_MESSAGE_HISTORY))
        h.world.guild.members[h.world.bob.id].roles.discard(readers)
        h.sync_guild()
        told = await summarize(h, h.world.general)
        assert told.startswith("⛔ You need Read Message History")
        assert "the @everyone overwrite" in told
        h.world.guild.members[h.world.bob.id].roles.add(readers)
        assert await summarize(h, h.world.general) == "accepted"

    case(database_url, redis_url, body)


def test_administrator_and_owner_pass_every_overwrite(database_url: str, redis_url: str) -> None:
    async def body(h: BotHarness) -> None:
        admins = h.fake.add_role(h.world.guild, "admins", ADMINISTRATOR)
        h.world.guild.members[h.world.bob.id].roles.add(admins)
        h.world.general.overwrites.extend(
            [
                ow(h.world.guild.id, 0, deny=VIEW_CHANNEL | READ_MESSAGE_HISTORY),
                ow(h.world.bob.id, 1, deny=READ_MESSAGE_HISTORY),
                ow(h.world.alice.id, 1, deny=READ_MESSAGE_HISTORY),
            ]
        )
        [bot_role] = h.world.guild.members[h.world.bot.id].roles
        h.world.general.overwrites.append(
            ow(bot_role, 0, allow=VIEW_CHANNEL | READ_MESSAGE_HISTORY)
        )
        h.sync_guild()
        assert await summarize(h, h.world.general) == "accepted"
        assert await summarize(h, h.world.general, h.world.alice) == "accepted"

    case(database_url, redis_url, body)


def test_timed_out_member_is_refused(database_url: str, redis_url: str) -> None:
    async def body(h: BotHarness) -> None:
        token = await h.command(
            "summarize",
            [],
            user=h.world.bob,
            channel=h.world.general,
            timed_out_until=datetime.now(UTC) + timedelta(hours=1),
        )
        [refusal] = [m for m in h.replies(token) if m.flags & EPHEMERAL]
        assert "timed out" in refusal.content

    case(database_url, redis_url, body)


def test_the_bot_says_which_permission_it_lacks_and_where(
    database_url: str, redis_url: str
) -> None:
    async def body(h: BotHarness) -> None:
        hidden = h.world.hidden  # the bot's role is denied View Channel there
        token = await h.command(
            "summarize",
            [{"name": "channel", "type": 7, "value": str(hidden.id)}],
            user=h.world.bob,
            channel=h.world.general,
            resolved={"channels": {str(hidden.id): h.resolved_channel(hidden, h.world.bob)}},
        )
        [refusal] = [m for m in h.replies(token) if m.flags & EPHEMERAL]
        assert refusal.content.startswith(
            f"⛔ I need View Channel and Read Message History in <#{hidden.id}>"
        )
        assert "the overwrite for @RelayBot" in refusal.content
        assert "Ask a server admin" in refusal.content
        # Posting somewhere the bot cannot send is refused before any job exists.
        readonly = h.world.readonly
        token = await h.command(
            "summarize",
            [{"name": "post_to", "type": 7, "value": str(readonly.id)}],
            user=h.world.alice,
            channel=h.world.general,
            resolved={"channels": {str(readonly.id): h.resolved_channel(readonly, h.world.alice)}},
        )
        [refusal] = [m for m in h.replies(token) if m.flags & EPHEMERAL]
        assert f"I need Send Messages and Embed Links in <#{readonly.id}>" in refusal.content
        assert job_count(h) == 0

    case(database_url, redis_url, body)


def test_member_cannot_post_where_they_may_not_write(database_url: str, redis_url: str) -> None:
    async def body(h: BotHarness) -> None:
        quiet = h.fake.add_channel(
            h.world.guild,
            "announcements-2",
            overwrites=[ow(h.world.guild.id, 0, deny=SEND_MESSAGES)],
        )
        h.sync_guild()
        token = await h.command(
            "summarize",
            [{"name": "post_to", "type": 7, "value": str(quiet.id)}],
            user=h.world.bob,
            channel=h.world.general,
            resolved={"channels": {str(quiet.id): h.resolved_channel(quiet, h.world.bob)}},
        )
        [refusal] = [m for m in h.replies(token) if m.flags & EPHEMERAL]
        assert f"You need Send Messages in <#{quiet.id}>" in refusal.content

    case(database_url, redis_url, body)


def _foreign_channel(h: BotHarness) -> Channel:
    """A channel of another guild the same bot is in (the shard's cache does not hold it)."""
    other = h.fake.add_guild("Elsewhere", owner=h.world.alice, everyone_permissions=VIEW_CHANNEL)
    h.fake.add_member(other, h.world.bot)
    h.fake.add_member(other, h.world.bob)
    return h.fake.add_channel(other, "their-secrets")


async def _refusal(h: BotHarness, token: str) -> str:
    """What the member was told privately in answer to the interaction."""
    original = h.original(token)
    assert original is not None and original.flags & EPHEMERAL, h.replies(token)
    return original.content


def test_a_destination_or_digest_channel_of_another_guild_is_refused_like_a_missing_one(
    database_url: str, redis_url: str
) -> None:
    async def body(h: BotHarness) -> None:
        w = h.world
        foreign = _foreign_channel(h)
        missing = 1_234_567_890_123_456_789
        answers = {}
        for label, channel_id in (("foreign", foreign.id), ("missing", missing)):
            entry = {**h.resolved_channel(foreign, w.bob), "id": str(channel_id)}
            resolved = {"channels": {str(channel_id): entry}}
            post = await h.command(
                "summarize",
                [{"name": "post_to", "type": 7, "value": str(channel_id)}],
                user=w.bob,
                channel=w.general,
                resolved=resolved,
            )
            digest = await h.command(
                "digest",
                [
                    {
                        "name": "create",
                        "type": 1,
                        "options": [
                            {"name": "channel", "type": 7, "value": str(channel_id)},
                            {"name": "schedule", "type": 3, "value": "daily 09:00"},
                        ],
                    }
                ],
                user=w.alice,
                channel=w.general,
                resolved=resolved,
            )
            answers[label] = (
                (await _refusal(h, post)).replace(str(channel_id), "X"),
                (await _refusal(h, digest)).replace(str(channel_id), "X"),
            )
        assert answers["foreign"] == answers["missing"], answers
        assert all(text.startswith("⛔") for text in answers["foreign"])
        assert job_count(h) == 0 and h.enqueuer.sent == []
        assert [m for m in h.fake.messages.values() if m.channel_id == foreign.id] == []

    case(database_url, redis_url, body)
