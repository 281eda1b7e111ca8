"""``/summarize`` end to end inside the bot: real discord.py objects from gateway payloads, the
fake Discord over HTTP, real Postgres and Redis (workers are not started here)."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select

from schema.models.jobs import Job
from shared.jobs import FETCH, DiscordChannelSource, InteractionFollowupTarget, parse_params
from tests.fakes.discord_state import READ_MESSAGE_HISTORY, SEND_MESSAGES, VIEW_CHANNEL
from tests.integration.bot.harness import BotHarness, RecordingEnqueuer, running_bot

pytestmark = pytest.mark.integration

EPHEMERAL = 1 << 6


def jobs_of(h: BotHarness) -> list[Job]:
    with h.session_factory() as session:
        return list(
            session.scalars(
                select(Job).where(Job.guild_id == str(h.world.guild.id)).order_by(Job.created_at)
            )
        )


def option(name: str, value: Any, kind: int) -> dict[str, Any]:
    return {"name": name, "type": kind, "value": value}


def embed_field(message: Any, name: str) -> str:
    for embed in message.embeds:
        for item in embed.get("fields", []):
            if item["name"] == name:
                return str(item["value"])
    raise AssertionError(f"no field {name!r} in {message.embeds}")


def test_summarize_defers_submits_and_shows_the_first_reply(
    database_url: str, redis_url: str
) -> None:
    async def scenario() -> None:
        async with running_bot(database_url=database_url, redis_url=redis_url) as h:
            token = await h.command(
                "summarize",
                [option("messages", 300, 4), option("format", "technical", 3)],
                user=h.world.bob,
                channel=h.world.general,
            )
            interaction = h.fake.interactions[token]
            assert interaction.acked and interaction.deferred
            [job] = jobs_of(h)
            assert job.origin == "bot" and job.requested_by == str(h.world.bob.id)
            assert job.idempotency_key == f"bot:interaction:{interaction.id}"
            params = parse_params(job.params)
            assert params.source.kind == "discord_channel"
            assert params.source.limit == 300
            assert params.source.channel_id == str(h.world.general.id)
            assert params.format.value == "technical"
            [target] = params.destinations
            assert isinstance(target, InteractionFollowupTarget)
            assert target.interaction_id == str(interaction.id)
            assert h.runtime.box.decrypt(target.token_encrypted) == token
            assert target.fallback == {
                "kind": "channel",
                "channel_id": str(h.world.general.id),
                "reply_to": None,
                "fallback": None,
            }
            assert isinstance(h.enqueuer, RecordingEnqueuer)
            assert h.enqueuer.sent == [(FETCH, (str(job.id),))]
            original = h.original(token)
            assert original is not None
            assert embed_field(original, "Job") == f"`{job.id}`"
            assert embed_field(original, "Messages") == "≤ 300"
            assert embed_field(original, "Cost") == "offline summarizer: free"
            assert embed_field(original, "Ready").startswith("<t:")
            assert embed_field(original, "Ready").endswith(":R>")
            assert not original.flags & EPHEMERAL
            assert job.id in h.runtime.tracker

    asyncio.run(scenario())


def test_the_first_reply_is_shown_before_the_job_is_published(
    database_url: str, redis_url: str
) -> None:
    """The fetch task must not be able to deliver into the reply before the bot's first edit."""

    class Watching(RecordingEnqueuer):
        def __init__(self) -> None:
            super().__init__()
            self.harness: BotHarness | None = None
            self.seen_original: list[bool] = []

        def enqueue(self, task_name: str, *args: str) -> None:
            assert self.harness is not None
            [token] = [t for t, i in self.harness.fake.interactions.items() if i.acked]
            original = self.harness.original(token)
            self.seen_original.append(bool(original and original.embeds))
            super().enqueue(task_name, *args)

    async def scenario() -> None:
        sink = Watching()
        async with running_bot(database_url=database_url, redis_url=redis_url, enqueuer=sink) as h:
            sink.harness = h
            await h.command("summarize", [], user=h.world.bob, channel=h.world.general)
            assert sink.seen_original == [True]

    asyncio.run(scenario())


def test_private_summary_is_ephemeral_and_goes_by_dm(database_url: str, redis_url: str) -> None:
    async def scenario() -> None:
        async with running_bot(database_url=database_url, redis_url=redis_url) as h:
            token = await h.command(
                "summarize",
                [option("hours", 6, 4), option("private", True, 5)],
                user=h.world.bob,
                channel=h.world.general,
            )
            original = h.original(token)
            assert original is not None and original.flags & EPHEMERAL
            [job] = jobs_of(h)
            [target] = parse_params(job.params).destinations
            assert target.kind == "dm" and target.user_id == str(h.world.bob.id)
            assert "your DMs" in original.embeds[0]["description"]

    asyncio.run(scenario())


def test_post_to_another_channel_and_a_link_window(database_url: str, redis_url: str) -> None:
    async def scenario() -> None:
        async with running_bot(database_url=database_url, redis_url=redis_url) as h:
            other = h.fake.add_channel(h.world.guild, "digest-room")
            h.sync_guild()
            message = h.fake.add_message(h.world.general, h.world.alice, "start here")
            link = (
                f"https://discord.com/channels/{h.world.guild.id}/{h.world.general.id}/{message.id}"
            )
            await h.command(
                "summarize",
                [option("since", link, 3), option("post_to", str(other.id), 7)],
                user=h.world.bob,
                channel=h.world.general,
                resolved={"channels": {str(other.id): h.resolved_channel(other, h.world.bob)}},
            )
            [job] = jobs_of(h)
            params = parse_params(job.params)
            assert isinstance(params.source, DiscordChannelSource)
            assert params.source.after_message_id == str(message.id - 1)
            [target] = params.destinations
            assert target.kind == "channel" and target.channel_id == str(other.id)

    asyncio.run(scenario())


def test_input_errors_are_answered_at_once_and_privately(database_url: str, redis_url: str) -> None:
    async def scenario() -> None:
        async with running_bot(database_url=database_url, redis_url=redis_url) as h:
            token = await h.command(
                "summarize",
                [option("hours", 2, 4), option("messages", 10, 4)],
                user=h.world.bob,
                channel=h.world.general,
            )
            original = h.original(token)
            assert original is not None and original.flags & EPHEMERAL
            assert "give only one of hours, messages or since" in original.content
            bad = await h.command(
                "summarize",
                [option("since", "not a link", 3)],
                user=h.world.bob,
                channel=h.world.general,
            )
            reply = h.original(bad)
            assert reply is not None and "Copy Message Link" in reply.content
            language = await h.command(
                "summarize",
                [option("language", "klingon please", 3)],
                user=h.world.bob,
                channel=h.world.general,
            )
            answer = h.original(language)
            assert answer is not None and "language code" in answer.content
            assert jobs_of(h) == []

    asyncio.run(scenario())


def test_a_repeated_interaction_makes_one_job(database_url: str, redis_url: str) -> None:
    async def scenario() -> None:
        async with running_bot(
            database_url=database_url, redis_url=redis_url, settings={"user_cooldown_seconds": 0}
        ) as h:
            data = {
                "id": "1",
                "name": "summarize",
                "type": 1,
                "guild_id": str(h.world.guild.id),
                "options": [],
            }
            payload, token = h.interaction_payload(data, user=h.world.bob, channel=h.world.general)
            await h.dispatch(payload)
            h.fake.interactions[token].acked = False  # Discord re-sent it after a resume
            await h.dispatch(payload)
            assert len(jobs_of(h)) == 1

    asyncio.run(scenario())


def test_cooldown_refuses_the_second_request_privately(database_url: str, redis_url: str) -> None:
    async def scenario() -> None:
        async with running_bot(database_url=database_url, redis_url=redis_url) as h:
            await h.command("summarize", [], user=h.world.bob, channel=h.world.general)
            token = await h.command("summarize", [], user=h.world.bob, channel=h.world.general)
            replies = h.replies(token)
            assert h.original(token) is None  # the public "thinking…" was deleted
            [refusal] = [m for m in replies if m.flags & EPHEMERAL]
            assert "try again in" in refusal.content
            assert len(jobs_of(h)) == 1
            other = await h.command("summarize", [], user=h.world.alice, channel=h.world.general)
            assert h.original(other) is None  # the guild cooldown applies to everyone
            assert "this server just asked" in h.replies(other)[-1].content

    asyncio.run(scenario())


def test_daily_quota(database_url: str, redis_url: str) -> None:
    async def scenario() -> None:
        settings = {"user_cooldown_seconds": 0, "guild_cooldown_seconds": 0, "user_daily_quota": 2}
        async with running_bot(
            database_url=database_url, redis_url=redis_url, settings=settings
        ) as h:
            for _ in range(2):
                await h.command("summarize", [], user=h.world.bob, channel=h.world.general)
            token = await h.command("summarize", [], user=h.world.bob, channel=h.world.general)
            assert "your 2 summaries for today" in h.replies(token)[-1].content
            assert len(jobs_of(h)) == 2

    asyncio.run(scenario())


def test_ack_does_not_wait_for_a_dead_redis(database_url: str) -> None:
    """Redis down: the interaction is still acknowledged, then the member is told."""

    async def scenario() -> None:
        async with running_bot(database_url=database_url, redis_url="redis://127.0.0.1:1/0") as h:
            token = await h.command("summarize", [], user=h.world.bob, channel=h.world.general)
            assert h.fake.interactions[token].acked
            assert "Something went wrong" in h.replies(token)[-1].content
            assert jobs_of(h) == []

    asyncio.run(scenario())


def test_status_of_my_jobs(database_url: str, redis_url: str) -> None:
    async def scenario() -> None:
        async with running_bot(database_url=database_url, redis_url=redis_url) as h:
            await h.command("summarize", [], user=h.world.bob, channel=h.world.general)
            [job] = jobs_of(h)
            token = await h.command("summary-status", [], user=h.world.bob, channel=h.world.general)
            listing = h.original(token)
            assert listing is not None and listing.flags & EPHEMERAL
            assert listing.embeds[0]["fields"][0]["name"] == f"Job {job.id.hex[:8]}"
            one = await h.command(
                "summary-status",
                [option("job", job.id.hex[:8], 3)],
                user=h.world.bob,
                channel=h.world.general,
            )
            detail = h.original(one)
            assert detail is not None
            assert embed_field(detail, "Job") == f"`{job.id}`"
            missing = await h.command(
                "summary-status",
                [option("job", uuid.uuid4().hex[:8], 3)],
                user=h.world.bob,
                channel=h.world.general,
            )
            gone = h.original(missing)
            assert gone is not None and "No job" in gone.content
            bad = await h.command(
                "summary-status",
                [option("job", "zzz", 3)],
                user=h.world.bob,
                channel=h.world.general,
            )
            invalid = h.original(bad)
            assert invalid is not None and "not a job id" in invalid.content

    asyncio.run(scenario())


def test_message_counts_from_the_gateway(database_url: str, redis_url: str) -> None:
    async def scenario() -> None:
        async with running_bot(database_url=database_url, redis_url=redis_url) as h:
            for n in range(3):
                h.add_message(h.world.general, h.world.alice, f"message {n}")
            # on_message runs as a task: wait until the three are counted.
            channel = h.world.general.id
            deadline = asyncio.get_running_loop().time() + 10
            while True:
                now = datetime.now(UTC)
                counted = await h.runtime.activity.count_since(
                    channel, now - timedelta(hours=1), now
                )
                if (counted is not None and counted.messages >= 3) or (
                    asyncio.get_running_loop().time() > deadline
                ):
                    break
                await asyncio.sleep(0.05)
            token = await h.command(
                "summarize", [option("hours", 1, 4)], user=h.world.bob, channel=h.world.general
            )
            original = h.original(token)
            assert original is not None
            assert embed_field(original, "Messages") == "≥ 3"

    asyncio.run(scenario())


def test_summarize_from_here(database_url: str, redis_url: str) -> None:
    async def scenario() -> None:
        async with running_bot(database_url=database_url, redis_url=redis_url) as h:
            message = h.fake.add_message(h.world.general, h.world.alice, "the incident starts")
            data = {
                "id": str(uuid.uuid4().int >> 70),
                "name": "Summarize from here",
                "type": 3,
                "guild_id": str(h.world.guild.id),
                "target_id": str(message.id),
                "resolved": {
                    "messages": {str(message.id): h.fake.message_json(message, h.world.bot.id)}
                },
            }
            payload, token = h.interaction_payload(data, user=h.world.bob, channel=h.world.general)
            await h.dispatch(payload)
            [job] = jobs_of(h)
            source = parse_params(job.params).source
            assert isinstance(source, DiscordChannelSource)
            assert source.after_message_id == str(message.id - 1)
            assert h.original(token) is not None

    asyncio.run(scenario())


def test_everyone_without_history_is_refused(database_url: str, redis_url: str) -> None:
    async def scenario() -> None:
        async with running_bot(
            database_url=database_url,
            redis_url=redis_url,
            everyone=VIEW_CHANNEL | SEND_MESSAGES,
        ) as h:
            token = await h.command("summarize", [], user=h.world.bob, channel=h.world.general)
            [refusal] = h.replies(token)
            assert refusal.flags & EPHEMERAL
            assert "You need Read Message History" in refusal.content
            assert jobs_of(h) == []
            assert READ_MESSAGE_HISTORY  # the bit the refusal is about

    asyncio.run(scenario())


def test_a_guild_the_bot_has_not_loaded_yet(database_url: str, redis_url: str) -> None:
    async def scenario() -> None:
        async with running_bot(database_url=database_url, redis_url=redis_url) as h:
            h.bot._connection._remove_guild(h.guild)
            token = await h.command("summarize", [], user=h.world.bob, channel=h.world.general)
            original = h.original(token)
            assert original is not None and original.flags & EPHEMERAL
            assert "have not received this server's details" in original.content
            assert jobs_of(h) == []

    asyncio.run(scenario())
