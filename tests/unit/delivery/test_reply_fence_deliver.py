"""The deliver stage writes a summary into an interaction's reply only under the reply's fence
(:mod:`shared.delivery.reply_fence`), on PostgreSQL, where the fence is a lock."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from shared.crypto import SecretBox
from shared.delivery.reply_fence import ReplyFence
from shared.delivery.runtime import DeliveryRuntime
from tests.fakes.discord_server import FakeDiscordServer, World
from tests.support.databases import postgres_engine
from tests.unit.delivery.helpers import deliver
from tests.unit.delivery.test_discord_targets import (
    deferred_interaction,
    discord,
    drt,
    row,
    services,
    summary_in,
)

__all__ = ["discord", "drt", "services"]  # the fixtures these tests share

pytestmark = pytest.mark.integration


@pytest.fixture
def engine(postgres_url: str) -> Iterator[Engine]:
    """A fresh migrated PostgreSQL database instead of the SQLite file."""
    with postgres_engine(postgres_url, prefix="sb_fence") as engine:
        yield engine


def test_the_summary_waits_for_the_bots_edit_of_the_reply(
    services: Any,
    session_factory: sessionmaker[Session],
    discord: tuple[FakeDiscordServer, World],
    drt: DeliveryRuntime,
    box: SecretBox,
) -> None:
    server, world = discord
    interaction, target = deferred_interaction(server, world, drt, box)
    fan = summary_in(world, session_factory, [target.model_dump(mode="json")])
    original = server.fake.messages[server.fake.interactions[interaction.token].original_id]
    held = ReplyFence(session_factory).try_hold(fan.job_id)  # the bot, mid-edit
    assert held is not None
    sending = threading.Thread(target=deliver, args=(services, fan.job_id, fan.delivery_ids[0]))
    sending.start()
    try:
        sending.join(0.5)
        assert sending.is_alive()  # waiting at the fence
        assert not original.embeds  # still the deferred "thinking…" reply
    finally:
        held.release()
        sending.join(10)
    assert not sending.is_alive()
    assert original.embeds  # the summary
    assert row(session_factory, fan.delivery_ids[0]).status == "sent"
