"""Targets without a nonce (Discord webhooks, interaction followups): a part whose outcome is
in doubt is looked for before it is sent again, so a lost answer or a dead worker does not post
it twice (celery.md: "Discord webhooks have no idempotency nonce ... reconcile instead of
blindly resending")."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from sqlalchemy import update
from sqlalchemy.orm import Session, sessionmaker

from schema.models.delivery_log import DeliverySchedule
from schema.models.jobs import Delivery, Job, Summary
from shared.crypto import SecretBox
from shared.delivery.config import DeliverySettings
from shared.delivery.discord_render import render_messages
from shared.delivery.runtime import DeliveryRuntime
from shared.delivery.targets import DiscordWebhookTarget, InteractionFollowupTarget
from shared.discord.models import Message
from shared.discord.objects import WebhookRef
from shared.summarize.content import SummaryContent
from tests.fakes.discord_limits import Fault
from tests.fakes.discord_server import FakeDiscordServer, World
from tests.fakes.discord_state import READ_MESSAGE_HISTORY
from tests.unit.delivery.helpers import deliver, redrive
from tests.unit.delivery.test_discord_targets import (
    channel_messages,
    deferred_interaction,
    discord,
    drt,
    long_content,
    row,
    services,
    summary_in,
)

__all__ = ["discord", "drt", "services"]  # fixtures shared with test_discord_targets

WEBHOOK_ROUTE = "POST /webhooks/{webhook_id}/{webhook_token}"
FOLLOWUP_ROUTE = "POST /webhooks/{application_id}/{interaction_token}"


def _webhook_target(world: World, box: SecretBox) -> dict[str, Any]:
    target = DiscordWebhookTarget.with_token(
        box, webhook_id=str(world.webhook.id), token=world.webhook.token
    )
    return target.model_dump(mode="json")


def _webhook_delivery(
    world: World, factory: sessionmaker[Session], box: SecretBox
) -> tuple[Any, Any]:
    """A summary with one delivery to the world's webhook: (its fan-out, the delivery's id)."""
    fan = summary_in(world, factory, [_webhook_target(world, box)])
    return fan, fan.delivery_ids[0]


def _lose_next_webhook_answer(server: FakeDiscordServer) -> None:
    """Discord posts the next webhook message, then its edge loses the answer (a 500)."""
    server.fake.inject(Fault(kind="status_after", route=WEBHOOK_ROUTE, times=1, status=500))


def _progress(factory: sessionmaker[Session], delivery_id: Any) -> dict[str, Any]:
    with factory() as session:
        schedule = session.get(DeliverySchedule, delivery_id)
        return dict(schedule.progress) if schedule is not None else {}


def _rendered(factory: sessionmaker[Session], item: Any) -> list[Message]:
    """The parts the deliver stage sends for ``item``."""
    with factory() as session:
        delivery = session.get(Delivery, item)
        assert delivery is not None
        summary = session.get(Summary, delivery.summary_id)
        assert summary is not None
        job = session.get(Job, summary.job_id)
        assert job is not None
        return render_messages(
            SummaryContent.model_validate(summary.content),
            duration_seconds=(summary.created_at - job.created_at).total_seconds(),
        )


def test_a_webhook_part_whose_answer_was_lost_is_found_not_posted_again(
    services: Any,
    session_factory: sessionmaker[Session],
    discord: tuple[FakeDiscordServer, World],
    box: SecretBox,
) -> None:
    server, world = discord
    fan, item = _webhook_delivery(world, session_factory, box)
    _lose_next_webhook_answer(server)
    assert deliver(services, fan.job_id, item) == []  # retried by the outbox
    [posted] = channel_messages(server, world.general.id)
    assert _progress(session_factory, item)["in_doubt"]["part"] == 0
    services.clock.advance(2)
    deliver(services, fan.job_id, item)
    assert [m.id for m in channel_messages(server, world.general.id)] == [posted.id]
    delivered = row(session_factory, item)
    assert (delivered.status, delivered.remote_id) == ("sent", str(posted.id))


def test_a_part_in_doubt_that_was_not_posted_is_sent(
    services: Any,
    session_factory: sessionmaker[Session],
    discord: tuple[FakeDiscordServer, World],
    box: SecretBox,
) -> None:
    server, world = discord
    fan, item = _webhook_delivery(world, session_factory, box)
    with server.fake.lock:
        earlier = server.fake.add_message(world.general, world.alice, "the channel's last chat")
    # A 500 before anything was done: no answer either way, so it is in doubt all the same.
    server.fake.inject(Fault(kind="status", route=WEBHOOK_ROUTE, times=1, status=500))
    deliver(services, fan.job_id, item)
    assert channel_messages(server, world.general.id) == [earlier]
    assert "in_doubt" in _progress(session_factory, item)
    services.clock.advance(2)
    deliver(services, fan.job_id, item)
    [_, posted] = channel_messages(server, world.general.id)
    assert row(session_factory, item).remote_id == str(posted.id)


def test_a_followup_part_whose_answer_was_lost_is_found_not_posted_again(
    services: Any,
    session_factory: sessionmaker[Session],
    discord: tuple[FakeDiscordServer, World],
    drt: DeliveryRuntime,
    box: SecretBox,
) -> None:
    server, world = discord
    _, target = deferred_interaction(server, world, drt, box)
    content = long_content()
    parts = len(render_messages(content))
    assert parts >= 3
    fan = summary_in(world, session_factory, [target.model_dump(mode="json")], content=content)
    item = fan.delivery_ids[0]
    server.fake.inject(Fault(kind="status_after", route=FOLLOWUP_ROUTE, times=1, status=502))
    deliver(services, fan.job_id, item)
    assert len(channel_messages(server, world.general.id)) == 2  # the reply, then one followup
    assert _progress(session_factory, item)["in_doubt"]["part"] == 1
    services.clock.advance(2)
    deliver(services, fan.job_id, item)
    assert len(channel_messages(server, world.general.id)) == parts
    assert row(session_factory, item).status == "sent"


def test_a_part_in_doubt_the_bot_cannot_check_is_not_sent_again(
    services: Any,
    session_factory: sessionmaker[Session],
    discord: tuple[FakeDiscordServer, World],
    drt: DeliveryRuntime,
    box: SecretBox,
) -> None:
    server, world = discord
    interaction, _ = deferred_interaction(server, world, drt, box)
    ephemeral = InteractionFollowupTarget.with_token(
        box,
        application_id=str(world.bot.id),
        interaction_id=str(interaction.id),
        token=interaction.token,
        ephemeral=True,
        fallback={"kind": "channel", "channel_id": str(world.general.id)},
    )
    fan = summary_in(
        world, session_factory, [ephemeral.model_dump(mode="json")], content=long_content()
    )
    item = fan.delivery_ids[0]
    server.fake.inject(Fault(kind="status_after", route=FOLLOWUP_ROUTE, times=1, status=500))
    deliver(services, fan.job_id, item)
    with server.fake.lock:
        made = len(server.fake.messages)
    services.clock.advance(2)
    deliver(services, fan.job_id, item)
    with server.fake.lock:
        assert len(server.fake.messages) == made  # neither again nor through the fallback
    failed = row(session_factory, item)
    assert failed.status == "failed"
    assert failed.last_error is not None
    assert "part 2 of" in failed.last_error and "may already be posted" in failed.last_error
    assert "cannot read the channel" in failed.last_error


def test_a_dead_workers_webhook_part_is_found_after_its_lease_ran_out(
    services: Any,
    session_factory: sessionmaker[Session],
    discord: tuple[FakeDiscordServer, World],
    drt: DeliveryRuntime,
    box: SecretBox,
) -> None:
    server, world = discord
    fan, item = _webhook_delivery(world, session_factory, box)
    # A worker leased the item, posted its part, and was killed before recording it.
    lease = DeliverySettings.load().delivery_lease_seconds
    started = services.clock()
    with session_factory() as session, session.begin():
        session.execute(
            update(Delivery)
            .where(Delivery.id == item)
            .values(status="sending", lease_until=started + timedelta(seconds=lease))
        )
    hook = WebhookRef.from_url(
        f"{server.api_base}/webhooks/{world.webhook.id}/{world.webhook.token}"
    )
    [sent] = _rendered(session_factory, item)
    earlier = drt.discord().execute_webhook(hook, sent, wait=True)
    assert earlier is not None
    services.clock.advance(lease + 1)
    assert redrive(services, DeliverySettings.load()).expired_leases == 1
    deliver(services, fan.job_id, item)
    assert [m.id for m in channel_messages(server, world.general.id)] == [int(earlier.id)]
    assert row(session_factory, item).remote_id == earlier.id


def test_a_webhook_part_in_doubt_where_the_bot_cannot_read_history_is_not_sent_again(
    services: Any,
    session_factory: sessionmaker[Session],
    discord: tuple[FakeDiscordServer, World],
    box: SecretBox,
) -> None:
    # Discord answers such a reader with an empty page, which alone would read as "not
    # posted": the channel's last message is asked for to tell them apart.
    server, world = discord
    fan, item = _webhook_delivery(world, session_factory, box)
    _lose_next_webhook_answer(server)
    deliver(services, fan.job_id, item)
    with server.fake.lock:
        world.general.overwrites.append(
            {"id": str(world.bot.id), "type": 1, "allow": "0", "deny": str(READ_MESSAGE_HISTORY)}
        )
    services.clock.advance(2)
    deliver(services, fan.job_id, item)
    assert len(channel_messages(server, world.general.id)) == 1
    failed = row(session_factory, item)
    assert failed.status == "failed" and "may already be posted" in (failed.last_error or "")
    assert "no Read Message History" in (failed.last_error or "")
