"""``/catchup`` inside the bot: real discord.py objects from gateway payloads, the fake Discord
over HTTP, real Postgres and Redis; no worker runs (the job row and its published FETCH)."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select

from producers.bot.store import recent_jobs
from schema.models.jobs import Job
from shared.jobs import (
    FETCH,
    DiscordServerSource,
    InteractionFollowupTarget,
    parse_params,
)
from tests.integration.bot.harness import BotHarness, RecordingEnqueuer, running_bot

pytestmark = pytest.mark.integration

EPHEMERAL = 1 << 6
NOW = datetime.now(UTC).replace(microsecond=0)


def jobs_of(h: BotHarness) -> list[Job]:
    with h.session_factory() as session:
        return list(
            session.scalars(
                select(Job).where(Job.guild_id == str(h.world.guild.id)).order_by(Job.created_at)
            )
        )


def option(name: str, value: Any, kind: int = 3) -> dict[str, Any]:
    return {"name": name, "type": kind, "value": value}


def test_catchup_answers_privately_and_submits_the_members_catchup(
    database_url: str, redis_url: str
) -> None:
    async def scenario() -> None:
        async with running_bot(
            database_url=database_url, redis_url=redis_url, clock=lambda: NOW
        ) as h:
            bob = h.world.bob
            token = await h.command(
                "catchup", [option("language", "de")], user=bob, channel=h.world.general
            )
            interaction = h.fake.interactions[token]
            assert interaction.acked and interaction.deferred
            [job] = jobs_of(h)
            assert job.origin == "bot" and job.requested_by == str(bob.id)
            assert job.channel_id is None
            assert job.idempotency_key == f"bot:interaction:{interaction.id}"
            params = parse_params(job.params)
            assert params.language == "de" and params.format.value == "brief"
            source = params.source
            assert isinstance(source, DiscordServerSource)
            assert source.guild_id == str(h.world.guild.id)
            assert source.category_id is None and source.channel_ids == []
            assert [a.model_dump() for a in source.audience] == [
                {"kind": "member", "user_id": str(bob.id)}
            ]
            assert source.focus_user_id == str(bob.id) and source.since_last_message
            assert source.after == NOW - timedelta(days=7)
            [target] = params.destinations
            assert isinstance(target, InteractionFollowupTarget)
            assert target.ephemeral is True
            assert target.interaction_id == str(interaction.id)
            assert h.runtime.box.decrypt(target.token_encrypted) == token
            # After the token expires the summary goes to the member, never to a channel.
            assert target.fallback == {"kind": "dm", "user_id": str(bob.id), "fallback": None}
            assert isinstance(h.enqueuer, RecordingEnqueuer)
            assert h.enqueuer.sent == [(FETCH, (str(job.id),))]
            original = h.original(token)
            assert original is not None and original.flags & EPHEMERAL
            assert f"Job `{job.id}`" in original.content
            assert "since your last message" in original.content

    asyncio.run(scenario())


def test_catchup_since_hours_or_a_message_link(database_url: str, redis_url: str) -> None:
    async def scenario() -> None:
        settings = {"user_cooldown_seconds": 0, "guild_cooldown_seconds": 0}
        async with running_bot(
            database_url=database_url, redis_url=redis_url, settings=settings
        ) as h:
            before = datetime.now(UTC)
            await h.command(
                "catchup", [option("since", "12h")], user=h.world.bob, channel=h.world.general
            )
            message = h.add_message(h.world.general, h.world.alice, "an hour ago, roughly")
            link = (
                f"https://discord.com/channels/{h.world.guild.id}/{h.world.general.id}/{message.id}"
            )
            await h.command(
                "catchup", [option("since", link)], user=h.world.alice, channel=h.world.general
            )
            hours, linked = jobs_of(h)
            first = parse_params(hours.params).source
            assert isinstance(first, DiscordServerSource) and not first.since_last_message
            assert before - timedelta(hours=12, seconds=5) <= first.after
            assert first.after <= datetime.now(UTC) - timedelta(hours=12)
            second = parse_params(linked.params).source
            assert isinstance(second, DiscordServerSource) and not second.since_last_message
            assert second.focus_user_id == str(h.world.alice.id)
            assert abs(second.after - datetime.now(UTC)) < timedelta(minutes=1)

    asyncio.run(scenario())


@pytest.mark.parametrize(
    ("since", "words"),
    [
        ("yesterday", "is not a time"),
        (
            "https://discord.com/channels/123456789012345678/123456789012345678/123456789012345678",
            "another server",
        ),
        ("8d", "7 days at most"),
    ],
)
def test_catchups_that_cannot_be_done_are_answered_privately(
    database_url: str, redis_url: str, since: str, words: str
) -> None:
    async def scenario() -> None:
        async with running_bot(database_url=database_url, redis_url=redis_url) as h:
            token = await h.command(
                "catchup", [option("since", since)], user=h.world.bob, channel=h.world.general
            )
            texts = [m.content for m in h.replies(token) if m.flags & EPHEMERAL]
            assert any(words in text for text in texts), texts
            assert jobs_of(h) == []
            assert isinstance(h.enqueuer, RecordingEnqueuer) and h.enqueuer.sent == []

    asyncio.run(scenario())


def test_a_timed_out_member_gets_no_catchup(database_url: str, redis_url: str) -> None:
    async def scenario() -> None:
        async with running_bot(database_url=database_url, redis_url=redis_url) as h:
            token = await h.command(
                "catchup",
                [],
                user=h.world.bob,
                channel=h.world.general,
                timed_out_until=datetime.now(UTC) + timedelta(hours=1),
            )
            original = h.original(token)
            assert original is not None and original.flags & EPHEMERAL
            assert "timed out" in original.content
            assert jobs_of(h) == []

    asyncio.run(scenario())


def test_the_first_reply_is_shown_before_the_catchup_is_published(
    database_url: str, redis_url: str
) -> None:
    class Watching(RecordingEnqueuer):
        def __init__(self) -> None:
            super().__init__()
            self.harness: BotHarness | None = None
            self.seen: list[str] = []

        def enqueue(self, task_name: str, *args: str) -> None:
            assert self.harness is not None
            [token] = [t for t, i in self.harness.fake.interactions.items() if i.acked]
            original = self.harness.original(token)
            self.seen.append(original.content if original else "")
            super().enqueue(task_name, *args)

    async def scenario() -> None:
        sink = Watching()
        async with running_bot(database_url=database_url, redis_url=redis_url, enqueuer=sink) as h:
            sink.harness = h
            await h.command("catchup", [], user=h.world.bob, channel=h.world.general)
            [seen] = sink.seen
            assert "Catching you up" in seen

    asyncio.run(scenario())


def test_the_parts_of_a_catchup_are_not_in_the_members_latest_jobs(
    database_url: str, redis_url: str
) -> None:
    async def scenario() -> None:
        async with running_bot(database_url=database_url, redis_url=redis_url) as h:
            await h.command("catchup", [], user=h.world.bob, channel=h.world.general)
            [parent] = jobs_of(h)
            part = uuid.uuid4()
            with h.session_factory() as session, session.begin():
                session.add(
                    Job(
                        id=part,
                        origin="part",
                        status="queued",
                        guild_id=str(h.world.guild.id),
                        channel_id=str(h.world.general.id),
                        requested_by=str(h.world.bob.id),
                        params={},
                        progress={},
                    )
                )
            listed = recent_jobs(
                h.session_factory, guild_id=h.world.guild.id, user_id=h.world.bob.id
            )
            assert [j.id for j in listed] == [parent.id]

    asyncio.run(scenario())
