"""After the first reply: progress edits, the 15-minute limit, budgets, feedback buttons and the
reaction trigger — real discord.py objects over the fake Discord, real Postgres and Redis."""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select

from producers.bot.feedback import feedback_custom_id, feedback_row
from producers.bot.store import update_guild_config
from schema.models.feedback import SummaryFeedback
from schema.models.jobs import Job, Summary
from schema.models.usage import UsageLedger
from shared import lifecycle
from shared.db.engine import make_engine, make_sessionmaker
from shared.delivery.reply_fence import ReplyFence
from shared.jobs import DiscordChannelSource, parse_params
from shared.lifecycle import Move
from shared.llm.models import ModelRegistry
from tests.fakes.discord_state import READ_MESSAGE_HISTORY, Message
from tests.integration.bot.harness import BotHarness, running_bot
from tests.unit.bot.gateway import member_json

pytestmark = pytest.mark.integration

EPHEMERAL = 1 << 6
NO_LIMITS = {"user_cooldown_seconds": 0, "guild_cooldown_seconds": 0}


async def eventually(check: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.05)


def the_job(h: BotHarness) -> Job:
    with h.session_factory() as session:
        return session.scalars(select(Job).where(Job.guild_id == str(h.world.guild.id))).one()


async def bob_summarizes_general(h: BotHarness) -> tuple[str, Job]:
    """Bob runs /summarize in #general: the interaction's token, and the job it made."""
    token = await h.command("summarize", [], user=h.world.bob, channel=h.world.general)
    return token, the_job(h)


def field(message: Message | None, name: str) -> str:
    assert message is not None and message.embeds
    return str(next(f["value"] for f in message.embeds[0]["fields"] if f["name"] == name))


def test_progress_edits_a_reply_that_the_summary_does_not_replace(
    database_url: str, redis_url: str
) -> None:
    async def scenario() -> None:
        async with running_bot(database_url=database_url, redis_url=redis_url) as h:
            w = h.world
            other = h.fake.add_channel(w.guild, "summaries")
            h.sync_guild()
            token = await h.command(
                "summarize",
                [{"name": "post_to", "type": 7, "value": str(other.id)}],
                user=w.bob,
                channel=w.general,
                resolved={"channels": {str(other.id): h.resolved_channel(other, w.bob)}},
            )
            job = the_job(h)
            assert field(h.original(token), "Messages") == "counted when read"
            now = datetime.now(UTC)
            lifecycle.move(
                h.session_factory,
                job.id,
                Move.START_FETCH,
                now=now,
                progress={"messages_total": 40, "messages_fetched": 10},
            )
            await eventually(lambda: "(10/40)" in field(h.original(token), "Progress"))
            lifecycle.move(h.session_factory, job.id, Move.FETCHED, now=now, message_count=40)
            await eventually(lambda: field(h.original(token), "Messages") == "40")
            assert "⏳ Summarizing" in field(h.original(token), "Progress")
            lifecycle.move(h.session_factory, job.id, Move.SUMMARIZED, now=now)
            await eventually(lambda: h.original(token).embeds[0]["title"] == "Summary ready")  # type: ignore[union-attr]
            assert field(h.original(token), "Progress").endswith("✅ Done")
            await eventually(lambda: job.id not in h.runtime.tracker)

    asyncio.run(scenario())


def test_progress_leaves_the_reply_to_the_summary_but_shows_failures(
    database_url: str, redis_url: str
) -> None:
    async def scenario() -> None:
        async with running_bot(database_url=database_url, redis_url=redis_url) as h:
            token, job = await bob_summarizes_general(h)
            now = datetime.now(UTC)
            lifecycle.move(h.session_factory, job.id, Move.START_FETCH, now=now)
            lifecycle.move(h.session_factory, job.id, Move.FETCHED, now=now, message_count=12)
            await asyncio.sleep(0.8)  # several poll rounds
            shown = field(h.original(token), "Progress")
            assert "⏳ Summarizing" not in shown  # the deliver stage owns the reply from here
            assert job.id in h.runtime.tracker
            lifecycle.move(
                h.session_factory, job.id, Move.FAIL, now=now, error="the channel was deleted"
            )
            await eventually(lambda: h.original(token).embeds[0]["title"] == "Summary failed")  # type: ignore[union-attr]
            assert field(h.original(token), "Why") == "the channel was deleted"

    asyncio.run(scenario())


def test_the_reply_fence_lets_one_writer_at_a_time(database_url: str) -> None:
    engine = make_engine(database_url)
    fence = ReplyFence(make_sessionmaker(engine))
    job_id, other = uuid.uuid4(), uuid.uuid4()
    try:
        held = fence.try_hold(job_id)  # the bot, about to edit the reply
        assert held is not None
        assert fence.try_hold(job_id) is None
        other_held = fence.try_hold(other)  # each job's reply has its own fence
        assert other_held is not None
        other_held.release()
        written = threading.Event()

        def deliver() -> None:
            with fence.held(job_id):
                written.set()

        writer = threading.Thread(target=deliver)
        writer.start()
        assert not written.wait(0.3)  # the summary waits for the bot's edit to land
        held.release()
        assert written.wait(5)
        writer.join()
        with fence.held(job_id):  # while the summary is written, the bot keeps off
            assert fence.try_hold(job_id) is None
        again = fence.try_hold(job_id)
        assert again is not None
        again.release()
    finally:
        engine.dispose()


def test_progress_never_edits_a_reply_while_the_summary_is_written_into_it(
    database_url: str, redis_url: str
) -> None:
    async def scenario() -> None:
        async with running_bot(database_url=database_url, redis_url=redis_url) as h:
            token, job = await bob_summarizes_general(h)
            shown = field(h.original(token), "Progress")
            fence = ReplyFence(h.session_factory)
            with fence.held(job.id):  # the deliver stage, writing the summary
                lifecycle.move(
                    h.session_factory,
                    job.id,
                    Move.START_FETCH,
                    now=datetime.now(UTC),
                    progress={"messages_total": 40, "messages_fetched": 10},
                )
                await asyncio.sleep(0.8)  # several poll rounds
                assert field(h.original(token), "Progress") == shown
            # The fence is free again and the job is still fetching: progress is shown.
            await eventually(lambda: "(10/40)" in field(h.original(token), "Progress"))
            # From the summarize stage on, the reply is the deliver stage's.
            lifecycle.move(
                h.session_factory, job.id, Move.FETCHED, now=datetime.now(UTC), message_count=40
            )
            await asyncio.sleep(0.8)
            assert "(10/40)" in field(h.original(token), "Progress")

    asyncio.run(scenario())


def test_near_the_token_limit_the_reply_says_where_to_look(
    database_url: str, redis_url: str
) -> None:
    async def scenario() -> None:
        late = lambda: datetime.now(UTC) + timedelta(minutes=14, seconds=30)  # noqa: E731
        async with running_bot(database_url=database_url, redis_url=redis_url, clock=late) as h:
            token = await h.command("summarize", [], user=h.world.bob, channel=h.world.general)
            job = the_job(h)
            await eventually(lambda: job.id not in h.runtime.tracker)
            assert "/summary-status job:" in field(h.original(token), "Updates")

    asyncio.run(scenario())


def test_cost_estimate_and_monthly_budget(database_url: str, redis_url: str) -> None:
    async def scenario() -> None:
        model = ModelRegistry().get("gpt-4o-mini")
        async with running_bot(
            database_url=database_url, redis_url=redis_url, llm_model=model, settings=NO_LIMITS
        ) as h:
            w = h.world
            token = await h.command(
                "summarize",
                [{"name": "messages", "type": 4, "value": 200}],
                user=w.bob,
                channel=w.general,
            )
            cost = field(h.original(token), "Cost")
            assert cost.startswith("≈ ") and "gpt-4o-mini" in cost and "$" in cost
            config = update_guild_config(
                h.session_factory, w.guild.id, {"monthly_token_budget": 1_000_000}
            )
            h.runtime.configs.put(config)
            with h.session_factory() as session, session.begin():
                session.add(
                    UsageLedger(
                        guild_id=str(w.guild.id),
                        model="gpt-4o-mini",
                        kind="single",
                        prompt_tokens=990_000,
                        completion_tokens=5_000,
                    )
                )
            refused = await h.command(
                "summarize",
                [{"name": "messages", "type": 4, "value": 200}],
                user=w.bob,
                channel=w.general,
            )
            [message] = [m for m in h.replies(refused) if m.flags & EPHEMERAL]
            assert "monthly token budget: 995,000 of 1,000,000" in message.content

    asyncio.run(scenario())


def _summary(h: BotHarness) -> Summary:
    job_id, summary_id = uuid.uuid4(), uuid.uuid4()
    with h.session_factory() as session, session.begin():
        session.add(
            Job(
                id=job_id,
                origin="bot",
                status="completed",
                guild_id=str(h.world.guild.id),
                params={},
                progress={},
            )
        )
        session.flush()
        session.add(
            Summary(
                id=summary_id,
                job_id=job_id,
                guild_id=str(h.world.guild.id),
                format="brief",
                content={},
                backend="extractive",
                prompt_version="extractive-1",
                message_count=3,
            )
        )
    with h.session_factory() as session:
        found = session.get(Summary, summary_id)
        assert found is not None
        return found


async def click(h: BotHarness, custom_id: str, message: Message) -> str:
    data = {"custom_id": custom_id, "component_type": 2}
    payload, token = h.interaction_payload(
        data, user=h.world.bob, channel=h.world.general, kind=3, message=message
    )
    await h.dispatch(payload)
    [reply] = [m for m in h.replies(token) if m.flags & EPHEMERAL]
    return reply.content


def test_feedback_buttons_store_votes_with_the_prompt_version(
    database_url: str, redis_url: str
) -> None:
    async def scenario() -> None:
        async with running_bot(database_url=database_url, redis_url=redis_url) as h:
            summary = _summary(h)
            posted = h.fake.add_message(
                h.world.general, h.world.bot, "", components=[feedback_row(summary.id)]
            )
            up = feedback_custom_id(summary.id, helpful=True)
            down = feedback_custom_id(summary.id, helpful=False)
            assert await click(h, up, posted) == "Thanks for the feedback!"
            assert await click(h, down, posted) == "Thanks — your vote is changed."
            with h.session_factory() as session:
                [vote] = session.scalars(
                    select(SummaryFeedback).where(SummaryFeedback.summary_id == summary.id)
                ).all()
            assert (vote.user_id, vote.helpful, vote.prompt_version) == (
                str(h.world.bob.id),
                False,
                "extractive-1",
            )
            assert vote.guild_id == str(h.world.guild.id)
            purged = uuid.uuid4()
            old = h.fake.add_message(
                h.world.general, h.world.bot, "", components=[feedback_row(purged)]
            )
            gone = feedback_custom_id(purged, helpful=True)
            assert "no longer exists" in await click(h, gone, old)

    asyncio.run(scenario())


def _reaction(h: BotHarness, message: Message, user: Any, emoji: str) -> dict[str, Any]:
    return {
        "type": 0,
        "user_id": str(user.id),
        "channel_id": str(message.channel_id),
        "message_id": str(message.id),
        "guild_id": str(h.world.guild.id),
        "message_author_id": str(message.author_id),
        "emoji": {"id": None, "name": emoji},
        "burst": False,
        "burst_colors": [],
        "member": member_json(user.to_json(), sorted(h.world.guild.members[user.id].roles)),
    }


def test_reaction_trigger(database_url: str, redis_url: str) -> None:
    async def scenario() -> None:
        async with running_bot(
            database_url=database_url, redis_url=redis_url, settings=NO_LIMITS
        ) as h:
            w = h.world
            message = h.fake.add_message(w.general, w.alice, "the outage starts here")
            await h.dispatch(_reaction(h, message, w.bob, "🧾"), "MESSAGE_REACTION_ADD")
            with h.session_factory() as session:
                assert (
                    session.scalars(select(Job).where(Job.guild_id == str(w.guild.id))).all() == []
                )
            config = update_guild_config(h.session_factory, w.guild.id, {"reaction_emoji": "🧾"})
            h.runtime.configs.put(config)
            await h.dispatch(_reaction(h, message, w.bob, "👍"), "MESSAGE_REACTION_ADD")
            await h.dispatch(_reaction(h, message, w.bob, "🧾"), "MESSAGE_REACTION_ADD")
            job = the_job(h)
            params = parse_params(job.params)
            assert isinstance(params.source, DiscordChannelSource)
            assert params.source.after_message_id == str(message.id - 1)
            [target] = params.destinations
            assert target.kind == "channel" and target.reply_to == str(message.id)
            assert job.requested_by == str(w.bob.id)
            assert "👀" in h.fake.messages[message.id].reactions
            # A member who cannot read the channel is told by DM, and nothing starts.
            carol = h.fake.add_user("carol")
            h.fake.add_member(w.guild, carol)
            w.general.overwrites.append(
                {"id": str(carol.id), "type": 1, "allow": "0", "deny": str(READ_MESSAGE_HISTORY)}
            )
            h.sync_guild()
            await h.dispatch(_reaction(h, message, carol, "🧾"), "MESSAGE_REACTION_ADD")
            dm = h.fake.dms[(w.bot.id, carol.id)]
            [note] = [h.fake.messages[m] for m in h.fake.channels[dm].message_ids]
            assert "You need Read Message History" in note.content
            with h.session_factory() as session:
                assert (
                    len(session.scalars(select(Job).where(Job.guild_id == str(w.guild.id))).all())
                    == 1
                )

    asyncio.run(scenario())


def test_progress_stops_when_the_reply_is_gone_or_the_token_died(
    database_url: str, redis_url: str
) -> None:
    async def scenario() -> None:
        async with running_bot(
            database_url=database_url, redis_url=redis_url, settings=NO_LIMITS
        ) as h:
            w = h.world
            other = h.fake.add_channel(w.guild, "summaries")
            h.sync_guild()
            resolved = {"channels": {str(other.id): h.resolved_channel(other, w.bob)}}
            post_to = [{"name": "post_to", "type": 7, "value": str(other.id)}]
            token = await h.command(
                "summarize", post_to, user=w.bob, channel=w.general, resolved=resolved
            )
            first = the_job(h)
            original = h.original(token)
            assert original is not None
            h.fake.messages.pop(original.id)  # someone deleted the reply
            lifecycle.move(h.session_factory, first.id, Move.START_FETCH, now=datetime.now(UTC))
            await eventually(lambda: first.id not in h.runtime.tracker)

            await h.command(
                "summarize", post_to, user=w.alice, channel=w.general, resolved=resolved
            )
            with h.session_factory() as session:
                second = session.scalars(
                    select(Job).where(Job.guild_id == str(w.guild.id), Job.id != first.id)
                ).one()
            h.fake.config.interaction_ttl_s = 0.0  # every interaction token is now expired
            lifecycle.move(h.session_factory, second.id, Move.START_FETCH, now=datetime.now(UTC))
            await eventually(lambda: second.id not in h.runtime.tracker)

    asyncio.run(scenario())


def test_a_budget_refusal_does_not_spend_the_members_quota(
    database_url: str, redis_url: str
) -> None:
    async def scenario() -> None:
        model = ModelRegistry().get("gpt-4o-mini")
        settings = {"user_daily_quota": 1, "user_cooldown_seconds": 0, "guild_cooldown_seconds": 0}
        async with running_bot(
            database_url=database_url, redis_url=redis_url, llm_model=model, settings=settings
        ) as h:
            w = h.world
            config = update_guild_config(
                h.session_factory, w.guild.id, {"monthly_token_budget": 10}
            )
            h.runtime.configs.put(config)
            many = [{"name": "messages", "type": 4, "value": 500}]
            refused = await h.command("summarize", many, user=w.bob, channel=w.general)
            assert "monthly token budget" in h.replies(refused)[-1].content
            config = update_guild_config(
                h.session_factory, w.guild.id, {"monthly_token_budget": None}
            )
            h.runtime.configs.put(config)
            accepted = await h.command("summarize", many, user=w.bob, channel=w.general)
            assert h.original(accepted) is not None  # the quota of one was still free
            third = await h.command("summarize", many, user=w.bob, channel=w.general)
            assert "your 1 summary for today" in h.replies(third)[-1].content

    asyncio.run(scenario())
