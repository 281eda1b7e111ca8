"""Discord targets against the fake Discord server: rendering, parts, nonces, threads, fallback."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy.orm import Session, sessionmaker

from schema.models.delivery_log import DeliverySchedule
from schema.models.jobs import Delivery, Job
from schema.models.tenancy import WebhookEndpoint
from shared.crypto import SecretBox
from shared.delivery.discord_render import FORMAT_COLOURS, render_embeds, render_messages
from shared.delivery.discord_targets import nonce_prefix
from shared.delivery.runtime import DeliveryRuntime
from shared.delivery.targets import DiscordWebhookTarget, InteractionFollowupTarget
from shared.discord.config import DiscordSettings
from shared.discord.errors import ServerError
from shared.discord.factory import build_discord_client
from shared.discord.message_limits import EMBED_TOTAL_LIMIT, MAX_EMBEDS, embed_length
from shared.settings import Settings
from shared.summarize.content import CitedPoint, SummaryContent, SummaryFormat
from tests.fakes.discord_limits import Fault
from tests.fakes.discord_server import FakeDiscordServer, World, seed_basic
from tests.fakes.discord_state import (
    DEFAULT_BOT_PERMISSIONS,
    READ_MESSAGE_HISTORY,
    SEND_MESSAGES,
    VIEW_CHANNEL,
)
from tests.fakes.enqueuer import RecordingEnqueuer
from tests.unit.delivery.helpers import (
    Clock,
    Fanout,
    add_endpoint,
    add_summary,
    deliver,
    make_runtime,
    make_services,
    redrive,
    sample_content,
)


def long_content(points: int = 40) -> SummaryContent:
    base = sample_content(channel="900000000000000001")
    filler = "the build needs the kernel headers of the running kernel installed first " * 4
    return base.model_copy(
        update={
            "key_points": [
                CitedPoint(text=f"{i}: {filler}", message_ids=[str(11 + i % 3)])
                for i in range(points)
            ]
        }
    )


@pytest.fixture
def discord() -> Iterator[tuple[FakeDiscordServer, World]]:
    with FakeDiscordServer() as server:
        world = seed_basic(server.fake)
        yield server, world


@pytest.fixture
def drt(box: SecretBox, discord: tuple[FakeDiscordServer, World]) -> Iterator[DeliveryRuntime]:
    server, world = discord
    runtime = make_runtime(box, webhook_retry_schedule=[1, 600], webhook_retry_jitter=0.0)
    config = DiscordSettings(token=world.token, api_base=server.api_base, max_retries=0)
    client = build_discord_client(config, None, None, None)
    runtime.discord_factory = lambda: client
    yield runtime
    runtime.close()
    client.close()


@pytest.fixture
def services(
    settings: Settings, session_factory: sessionmaker[Session], drt: DeliveryRuntime
) -> Any:
    return make_services(
        settings, session_factory, enqueuer=RecordingEnqueuer(), clock=Clock(), runtime=drt
    )


def summary_in(world: World, factory: sessionmaker[Session], *args: Any, **kw: Any) -> Fanout:
    """A summarized job of the fake's guild (the deliver stage checks the guild)."""
    return add_summary(factory, *args, guild_id=str(world.guild.id), **kw)


def channel_messages(server: FakeDiscordServer, channel_id: int) -> list[Any]:
    with server.fake.lock:
        return sorted(
            (m for m in server.fake.messages.values() if m.channel_id == channel_id),
            key=lambda m: m.id,
        )


def deferred_interaction(
    server: FakeDiscordServer, world: World, drt: DeliveryRuntime, box: SecretBox
) -> tuple[Any, InteractionFollowupTarget]:
    """Alice's interaction in #general, deferred by the bot, and the target of its reply."""
    interaction = server.fake.add_interaction(world.general, world.alice, application=world.bot)
    drt.discord().defer_interaction(str(interaction.id), interaction.token)
    target = InteractionFollowupTarget.with_token(
        box,
        application_id=str(world.bot.id),
        interaction_id=str(interaction.id),
        token=interaction.token,
    )
    return interaction, target


def row(factory: sessionmaker[Session], delivery_id: uuid.UUID) -> Delivery:
    with factory() as session:
        found = session.get(Delivery, delivery_id)
        assert found is not None
        return found


# --- rendering --------------------------------------------------------------------------------


def test_embeds_per_section_with_colour_links_and_footer() -> None:
    content = sample_content()
    embeds = render_embeds(content, duration_seconds=2.5)
    assert embeds[0].title == "Summary of #support (structured)"
    assert embeds[0].description == content.overview
    assert [e.title for e in embeds[1:]] == ["Topics", "Key points", "Decisions", "Open questions"]
    assert {e.color for e in embeds} == {FORMAT_COLOURS[SummaryFormat.STRUCTURED]}
    topics = embeds[1].description or ""
    assert (
        "[[1]](https://discord.com/channels/1/2/11)[[2]](https://discord.com/channels/1/2/12)"
        in topics
    )
    assert "[[3]](https://discord.com/channels/1/2/13)" in (embeds[4].description or "")
    footer = embeds[-1].footer
    assert footer is not None
    assert footer.text.startswith("Participants: ann (3), bob (1)\n")
    assert "4 messages read, 0 skipped · 2026-03-01 10:00 → 2026-03-01 10:05 UTC" in footer.text
    assert "3 cited" in footer.text and "2.5 s" in footer.text
    technical = sample_content().model_copy(
        update={"format": SummaryFormat.TECHNICAL, "degraded": True}
    )
    assert render_embeds(technical)[0].color == 0x99AAB5
    assert "offline fallback" in (render_embeds(technical)[0].title or "")


def test_long_summaries_split_within_discord_limits() -> None:
    content = long_content(60)
    messages = render_messages(content, nonce_prefix="p" * 22)
    assert len(messages) >= 2
    for index, message in enumerate(messages):
        payload = message.to_json()  # raises on any broken limit
        assert len(payload["embeds"]) <= MAX_EMBEDS
        assert sum(embed_length(e) for e in payload["embeds"]) <= EMBED_TOTAL_LIMIT
        assert payload["nonce"] == "p" * 22 + f"{index:03d}" and payload["enforce_nonce"]
        assert payload["allowed_mentions"]["parse"] == []
    titles = [e.title for m in messages for e in m.embeds]
    assert "Key points (continued)" in titles
    with pytest.raises(ValueError, match="nonce_prefix"):
        render_messages(content, nonce_prefix="x" * 23)
    assert len(nonce_prefix(uuid.uuid4())) == 22


# --- targets ----------------------------------------------------------------------------------


def test_channel_target_posts_every_part_once(
    services: Any, session_factory: sessionmaker[Session], discord: tuple[FakeDiscordServer, World]
) -> None:
    server, world = discord
    content = long_content()
    parts = len(render_messages(content))
    fan = summary_in(
        world,
        session_factory,
        [{"kind": "channel", "channel_id": str(world.general.id)}],
        content=content,
    )
    deliver(services, fan.job_id, fan.delivery_ids[0])
    posted = channel_messages(server, world.general.id)
    assert len(posted) == parts >= 2
    assert posted[0].embeds[0]["title"] == "Summary of #support (structured)"
    assert "Participants:" in posted[-1].embeds[-1]["footer"]["text"]
    delivery = row(session_factory, fan.delivery_ids[0])
    assert (delivery.status, delivery.remote_id) == ("sent", str(posted[0].id))
    with session_factory() as session:
        plan = session.get(DeliverySchedule, fan.delivery_ids[0])
        # Progress is saved after each part but the last, whose id the outcome records.
        assert plan is not None and plan.progress["sent"] == [str(m.id) for m in posted[:-1]]
    deliver(services, fan.job_id, fan.delivery_ids[0])
    assert len(channel_messages(server, world.general.id)) == parts


def test_a_channel_target_with_reply_to_answers_that_message_first(
    services: Any, session_factory: sessionmaker[Session], discord: tuple[FakeDiscordServer, World]
) -> None:
    # The reaction trigger's summary replies to the message reacted to.
    server, world = discord
    trigger = server.fake.add_message(world.general, world.alice, "what did I miss?")
    fan = summary_in(
        world,
        session_factory,
        [{"kind": "channel", "channel_id": str(world.general.id), "reply_to": str(trigger.id)}],
        content=long_content(),
    )
    deliver(services, fan.job_id, fan.delivery_ids[0])
    posted = [m for m in channel_messages(server, world.general.id) if m.id != trigger.id]
    assert len(posted) >= 2
    assert (posted[0].type, posted[0].reference["message_id"]) == (19, str(trigger.id))
    assert all(m.type == 0 and m.reference is None for m in posted[1:])


class FlakyClient:
    """A real client whose ``method`` fails once, on call number ``fail_on``."""

    def __init__(self, client: Any, method: str, fail_on: int) -> None:
        self._client, self._method, self._fail_on, self.calls = client, method, fail_on, 0

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._client, name)
        if name != self._method:
            return attr

        def wrapped(*args: Any, **kwargs: Any) -> Any:
            self.calls += 1
            if self.calls == self._fail_on:
                raise ServerError("Discord answered 502", status=502)
            return attr(*args, **kwargs)

        return wrapped


def test_a_failed_part_resumes_after_the_recorded_ones(
    services: Any,
    session_factory: sessionmaker[Session],
    discord: tuple[FakeDiscordServer, World],
    drt: DeliveryRuntime,
) -> None:
    server, world = discord
    content = long_content()
    parts = len(render_messages(content))
    real = drt.discord()
    drt._discord = FlakyClient(real, "send_message", fail_on=2)  # type: ignore[assignment]
    fan = summary_in(
        world,
        session_factory,
        [{"kind": "channel", "channel_id": str(world.general.id)}],
        content=content,
    )
    assert deliver(services, fan.job_id, fan.delivery_ids[0]) == []  # retried by the outbox
    assert len(channel_messages(server, world.general.id)) == 1
    assert row(session_factory, fan.delivery_ids[0]).last_error == "Discord answered 502"
    services.clock.advance(2)
    deliver(services, fan.job_id, fan.delivery_ids[0])
    assert len(channel_messages(server, world.general.id)) == parts
    assert row(session_factory, fan.delivery_ids[0]).status == "sent"


def test_a_part_created_but_not_recorded_is_not_posted_twice(
    services: Any,
    session_factory: sessionmaker[Session],
    discord: tuple[FakeDiscordServer, World],
    drt: DeliveryRuntime,
) -> None:
    server, world = discord
    fan = summary_in(
        world, session_factory, [{"kind": "channel", "channel_id": str(world.general.id)}]
    )
    # A worker posted part 0 and died before recording it: same nonce, same message.
    [first] = render_messages(sample_content(), nonce_prefix=nonce_prefix(fan.delivery_ids[0]))
    earlier = drt.discord().send_message(str(world.general.id), first)
    deliver(services, fan.job_id, fan.delivery_ids[0])
    posted = channel_messages(server, world.general.id)
    assert [m.id for m in posted] == [int(earlier.id)]
    assert row(session_factory, fan.delivery_ids[0]).remote_id == earlier.id


def test_thread_target_starts_one_thread_per_summary(
    services: Any,
    session_factory: sessionmaker[Session],
    discord: tuple[FakeDiscordServer, World],
    drt: DeliveryRuntime,
) -> None:
    server, world = discord
    content = long_content()
    parts = len(render_messages(content))
    fan = summary_in(
        world,
        session_factory,
        [{"kind": "thread", "channel_id": str(world.general.id), "auto_archive_minutes": 60}],
        content=content,
    )
    deliver(services, fan.job_id, fan.delivery_ids[0])
    starter = channel_messages(server, world.general.id)
    assert len(starter) == 1
    thread_id = int(row(session_factory, fan.delivery_ids[0]).remote_id or 0)
    assert thread_id == starter[0].id
    thread = server.fake.channels[thread_id]
    assert thread.parent_id == world.general.id
    assert (thread.name or "").startswith("Summary of #support")
    # Discord adds a "thread starter" system message (type 21); ours are the others.
    inside = [m for m in channel_messages(server, thread_id) if m.type != 21]
    assert len(inside) == parts - 1

    # Progress lost after the thread was made: the retry finds the thread, makes no second one.
    second = summary_in(
        world,
        session_factory,
        [{"kind": "thread", "channel_id": str(world.general.id), "name": "Daily digest"}],
    )
    [only] = render_messages(sample_content(), nonce_prefix=nonce_prefix(second.delivery_ids[0]))
    client = drt.discord()
    made = client.send_message(str(world.general.id), only)
    client.create_thread(str(world.general.id), "Daily digest", message_id=made.id)
    with session_factory() as session, session.begin():
        session.add(
            DeliverySchedule(delivery_id=second.delivery_ids[0], progress={"sent": [made.id]})
        )
    threads_before = len(server.fake.channels)
    deliver(services, second.job_id, second.delivery_ids[0])
    assert len(server.fake.channels) == threads_before
    assert row(session_factory, second.delivery_ids[0]).remote_id == made.id


def test_dm_target_and_fallback_when_dms_are_closed(
    services: Any,
    session_factory: sessionmaker[Session],
    discord: tuple[FakeDiscordServer, World],
) -> None:
    server, world = discord
    fan = summary_in(
        world,
        session_factory,
        [
            {"kind": "dm", "user_id": str(world.alice.id)},
            {
                "kind": "dm",
                "user_id": str(world.bob.id),
                "fallback": {"kind": "channel", "channel_id": str(world.general.id)},
            },
        ],
    )
    deliver(services, fan.job_id, fan.delivery_ids[0])
    alice = row(session_factory, fan.delivery_ids[0])
    assert alice.status == "sent"
    dm_channel = server.fake.dms[tuple(sorted((world.bot.id, world.alice.id)))]  # type: ignore[index]
    assert len(channel_messages(server, dm_channel)) == 1

    deliver(services, fan.job_id, fan.delivery_ids[1])
    bob = row(session_factory, fan.delivery_ids[1])
    assert bob.status == "failed"
    [(job_arg, fallback_arg)] = services.enqueuer.take()
    fallback = row(session_factory, uuid.UUID(fallback_arg))
    assert (fallback.fallback_of, fallback.kind) == (bob.id, "channel")
    deliver(services, uuid.UUID(job_arg), fallback.id)
    assert len(channel_messages(server, world.general.id)) == 1
    with session_factory() as session:
        job = session.get(Job, fan.job_id)
        assert job is not None and job.status == "completed"
        assert job.progress["fallbacks"] == 1


def test_discord_webhook_target_with_name_override(
    services: Any,
    session_factory: sessionmaker[Session],
    discord: tuple[FakeDiscordServer, World],
    box: SecretBox,
) -> None:
    server, world = discord
    target = DiscordWebhookTarget.with_token(
        box,
        webhook_id=str(world.webhook.id),
        token=world.webhook.token,
        username="Digest",
    )
    assert world.webhook.token not in target.model_dump_json()
    fan = summary_in(world, session_factory, [target.model_dump(mode="json")])
    deliver(services, fan.job_id, fan.delivery_ids[0])
    [posted] = channel_messages(server, world.general.id)
    assert row(session_factory, fan.delivery_ids[0]).remote_id == str(posted.id)
    assert posted.embeds[0]["title"].startswith("Summary of #support")


def test_interaction_followup_edits_the_deferred_answer_then_follows_up(
    services: Any,
    session_factory: sessionmaker[Session],
    discord: tuple[FakeDiscordServer, World],
    drt: DeliveryRuntime,
    box: SecretBox,
) -> None:
    server, world = discord
    interaction, target = deferred_interaction(server, world, drt, box)
    content = long_content()
    parts = len(render_messages(content))
    fan = summary_in(world, session_factory, [target.model_dump(mode="json")], content=content)
    deliver(services, fan.job_id, fan.delivery_ids[0])
    posted = channel_messages(server, world.general.id)
    assert len(posted) == parts
    original = server.fake.interactions[interaction.token].original_id
    assert original == posted[0].id and posted[0].embeds
    assert row(session_factory, fan.delivery_ids[0]).status == "sent"


def test_missing_token_and_forbidden_channel_fail_clearly(
    settings: Settings,
    session_factory: sessionmaker[Session],
    box: SecretBox,
    discord: tuple[FakeDiscordServer, World],
    services: Any,
) -> None:
    _, world = discord
    fan = summary_in(
        world, session_factory, [{"kind": "channel", "channel_id": str(world.readonly.id)}]
    )
    deliver(services, fan.job_id, fan.delivery_ids[0])
    assert row(session_factory, fan.delivery_ids[0]).status == "failed"

    plain = make_services(settings, session_factory, runtime=make_runtime(box))  # no Discord
    other = summary_in(
        world, session_factory, [{"kind": "channel", "channel_id": str(world.general.id)}]
    )
    deliver(plain, other.job_id, other.delivery_ids[0])
    failed = row(session_factory, other.delivery_ids[0])
    assert failed.status == "failed" and "DISCORD_TOKEN is not set" in (failed.last_error or "")


@pytest.mark.parametrize("job_guild", ["1506000000000000001", None])
def test_a_forged_row_cannot_post_into_another_guild(
    services: Any,
    session_factory: sessionmaker[Session],
    discord: tuple[FakeDiscordServer, World],
    box: SecretBox,
    job_guild: str | None,
) -> None:
    """The job row says one guild; every Discord destination is of another: nothing is sent."""
    server, world = discord
    hook = DiscordWebhookTarget.with_token(
        box, webhook_id=str(world.webhook.id), token=world.webhook.token
    )
    targets = [
        {"kind": "channel", "channel_id": str(world.general.id)},
        {"kind": "thread", "channel_id": str(world.general.id)},
        {"kind": "dm", "user_id": str(world.alice.id)},
        hook.model_dump(mode="json"),
    ]
    fan = add_summary(session_factory, targets, guild_id=job_guild)
    before = len(server.fake.messages)
    for item in fan.delivery_ids:
        deliver(services, fan.job_id, item)
    assert len(server.fake.messages) == before
    errors = [row(session_factory, item).last_error or "" for item in fan.delivery_ids]
    assert all(row(session_factory, i).status == "failed" for i in fan.delivery_ids)
    if job_guild is None:
        assert all(e.startswith("a job of no server cannot post") for e in errors), errors
    else:
        assert errors[0].startswith("no channel") and errors[1].startswith("no channel")
        assert errors[2].startswith("no member") and errors[3].startswith("no Discord webhook")
    sends = [e for e in server.fake.limits.events if e[1].startswith(("POST", "PATCH"))]
    assert sends == []
    with session_factory() as session:
        job = session.get(Job, fan.job_id)
        assert job is not None and job.status == "failed"


def _another_guilds_thread(server: FakeDiscordServer, world: World) -> Any:
    """A thread, with a message in it, of a second guild the same bot serves."""
    fake = server.fake
    with fake.lock:
        owner = fake.add_user("b-owner")
        guild = fake.add_guild(
            "Guild B",
            owner=owner,
            everyone_permissions=VIEW_CHANNEL | SEND_MESSAGES | READ_MESSAGE_HISTORY,
        )
        fake.add_member(
            guild, world.bot, roles=(fake.add_role(guild, "bot", DEFAULT_BOT_PERMISSIONS),)
        )
        thread = fake.add_thread(fake.add_channel(guild, "b-secret"), "b-thread", owner=owner)
        fake.add_message(thread, owner, "guild B's private plans")
    return thread


def test_discord_webhook_target_posts_into_a_thread_of_its_channel(
    services: Any,
    session_factory: sessionmaker[Session],
    discord: tuple[FakeDiscordServer, World],
    box: SecretBox,
) -> None:
    server, world = discord
    with server.fake.lock:
        thread = server.fake.add_thread(world.general, "weekly", owner=world.alice)
    hook = DiscordWebhookTarget.with_token(
        box, webhook_id=str(world.webhook.id), token=world.webhook.token, thread_id=str(thread.id)
    )
    fan = summary_in(world, session_factory, [hook.model_dump(mode="json")])
    deliver(services, fan.job_id, fan.delivery_ids[0])
    [posted] = channel_messages(server, thread.id)
    assert row(session_factory, fan.delivery_ids[0]).remote_id == str(posted.id)


@pytest.mark.parametrize("where", ["another guild", "another channel"])
def test_a_forged_webhook_thread_is_neither_read_nor_posted_to(
    services: Any,
    session_factory: sessionmaker[Session],
    discord: tuple[FakeDiscordServer, World],
    box: SecretBox,
    where: str,
) -> None:
    """The job's own webhook, with a ``thread_id`` of another guild (or of another channel:
    Discord posts only into threads of the webhook's channel).  The first send's answer is
    lost, so the retry would read the thread to look for it: the guard fails the delivery for
    good before either, like a missing channel."""
    server, world = discord
    if where == "another guild":
        thread = _another_guilds_thread(server, world)
    else:
        with server.fake.lock:
            thread = server.fake.add_thread(world.readonly, "elsewhere", owner=world.alice)
    hook = DiscordWebhookTarget.with_token(
        box, webhook_id=str(world.webhook.id), token=world.webhook.token, thread_id=str(thread.id)
    )
    fan = summary_in(world, session_factory, [hook.model_dump(mode="json")])
    item = fan.delivery_ids[0]
    server.fake.inject(
        Fault(
            kind="status", route="POST /webhooks/{webhook_id}/{webhook_token}", times=1, status=500
        )
    )
    deliver(services, fan.job_id, item)
    services.clock.advance(2)
    deliver(services, fan.job_id, item)
    touched = [e[1] for e in server.fake.limits.events if e[5] == str(thread.id)]
    assert [r for r in touched if r.startswith(("POST", "PATCH")) or r.endswith("/messages")] == []
    delivered = row(session_factory, item)
    assert delivered.status == "failed"
    assert delivered.last_error == f"no channel {thread.id} in this server"


def test_a_job_failed_notice_shows_the_error_as_written_with_no_link_of_its_own(
    services: Any,
    session_factory: sessionmaker[Session],
    box: SecretBox,
    discord: tuple[FakeDiscordServer, World],
) -> None:
    # An error quotes what others wrote (a receiver's Location header, a thread's name ...):
    # in the bot's own notice it must not become a link the bot seems to vouch for.
    server, world = discord
    endpoint_id, _ = add_endpoint(
        session_factory, box, "https://hooks.example.com/in", guild_id=str(world.guild.id)
    )
    with session_factory() as session, session.begin():
        endpoint = session.get(WebhookEndpoint, endpoint_id)
        assert endpoint is not None
        endpoint.enabled, endpoint.disabled_reason = False, "410 Gone"
        endpoint.fallback = {"kind": "channel", "channel_id": str(world.general.id)}
    fan = summary_in(world, session_factory, [{"kind": "webhook", "endpoint_id": str(endpoint_id)}])
    lure = "[Re-authorize the bot here](https://evil.example/login)"
    with session_factory() as session, session.begin():
        job = session.get(Job, fan.job_id)
        assert job is not None
        job.status, job.finished_at = "failed", services.clock()
        job.error = f"the webhook answered 302 redirect to {lure}"
    services.enqueuer.take()
    redrive(services, services.delivery_runtime().settings)
    [(job_arg, note_arg)] = services.enqueuer.take()
    deliver(services, uuid.UUID(job_arg), uuid.UUID(note_arg))  # the endpoint is disabled
    [(job_arg, fallback_arg)] = services.enqueuer.take()
    deliver(services, uuid.UUID(job_arg), uuid.UUID(fallback_arg))
    [notice] = channel_messages(server, world.general.id)
    description = notice.embeds[0]["description"]
    assert "Re-authorize the bot here" in description and "evil.example/login" in description
    assert not re.search(r"(?<!\\)\[[^\]]*(?<!\\)\]\(", description), description


@pytest.mark.parametrize("gone", ["discord webhook", "channel"])
def test_a_destination_that_no_longer_exists_fails_clearly_and_falls_back(
    services: Any,
    session_factory: sessionmaker[Session],
    discord: tuple[FakeDiscordServer, World],
    box: SecretBox,
    gone: str,
) -> None:
    # Deleted since the job was accepted: that is no attempt to reach another guild, so the
    # reason says what happened and the destination's fallback takes the summary.
    server, world = discord
    fallback = {"kind": "dm", "user_id": str(world.alice.id)}
    if gone == "discord webhook":
        target = DiscordWebhookTarget.with_token(
            box, webhook_id=str(world.webhook.id), token=world.webhook.token, fallback=fallback
        ).model_dump(mode="json")
        with server.fake.lock:
            del server.fake.webhooks[world.webhook.id]
        reason = "no longer exists"
    else:
        with server.fake.lock:
            doomed = server.fake.add_channel(world.guild, "old-news")
        target = {"kind": "channel", "channel_id": str(doomed.id), "fallback": fallback}
        with server.fake.lock:
            del server.fake.channels[doomed.id]
        reason = "does not exist"
    fan = summary_in(world, session_factory, [target])
    deliver(services, fan.job_id, fan.delivery_ids[0])
    failed = row(session_factory, fan.delivery_ids[0])
    assert failed.status == "failed" and reason in (failed.last_error or ""), failed.last_error
    assert "in this server" not in (failed.last_error or "")
    [(job_arg, fallback_arg)] = services.enqueuer.take()
    deliver(services, uuid.UUID(job_arg), uuid.UUID(fallback_arg))
    assert row(session_factory, uuid.UUID(fallback_arg)).status == "sent"
    with session_factory() as session:
        job = session.get(Job, fan.job_id)
        assert job is not None and job.status == "completed"
