"""Every operation of the adapter against the fake Discord, through the Redis-shared limiter."""

from __future__ import annotations

import pytest

from shared.discord import (
    ActionRow,
    BadRequest,
    Button,
    ButtonStyle,
    DiscordClient,
    Embed,
    EmbedField,
    Forbidden,
    InvalidWebhook,
    Message,
    MessageEdit,
    MessageReference,
    NotFound,
    SelectMenu,
    SelectOption,
    WebhookRef,
    routes,
)
from shared.errors import InvalidInputError
from tests.fakes.discord_server import FakeDiscordServer, World

pytestmark = pytest.mark.integration


def test_identity_guild_and_channel(client: DiscordClient, world: World) -> None:
    me = client.get_current_user()
    assert me.id == str(world.bot.id)
    assert me.bot
    assert client.get_guild(str(world.guild.id))["name"] == "Release Eng"
    channel = client.get_channel(str(world.general.id))
    assert (channel.name, channel.type, channel.is_thread) == ("release-eng", 0, False)
    info = client.channel_info(str(world.general.id))
    assert info.guild_name == "Release Eng"
    assert info.kind == "GuildTextChat"
    assert info.topic == "Release coordination"


def test_send_message_with_embeds_components_and_safe_mentions(
    client: DiscordClient, world: World, server: FakeDiscordServer
) -> None:
    message = Message(
        content=f"Heads up <@{world.alice.id}>: rollout paused. @everyone",
        embeds=[Embed(title="Rollout", fields=[EmbedField("Region", "eu-west", inline=True)])],
        components=[
            ActionRow([Button(style=ButtonStyle.PRIMARY, label="Resume", custom_id="r:1")]),
            ActionRow([SelectMenu(custom_id="pick", options=[SelectOption(label="A", value="a")])]),
        ],
    )
    sent = client.send_message(str(world.general.id), message)
    assert sent.content.startswith("Heads up")
    assert sent.author.id == str(world.bot.id)
    raw = sent.raw
    assert raw["embeds"][0]["title"] == "Rollout"
    assert raw["components"][0]["components"][0]["custom_id"] == "r:1"
    assert raw["mentions"][0]["id"] == str(world.alice.id)
    stored = server.fake.messages[int(sent.id)]
    # Safe by default: users only, no @everyone, no roles, no reply ping.
    assert stored.allowed_mentions == {"parse": ["users"], "replied_user": False}


def test_reply_and_nonce_make_one_message(
    client: DiscordClient, world: World, server: FakeDiscordServer
) -> None:
    channel = str(world.general.id)
    original = client.send_message(channel, Message(content="Deploy 4.2 is out"))
    reply = Message(content="looks good", reply_to=MessageReference(original.id), nonce="n-1")
    first = client.send_message(channel, reply)
    again = client.send_message(channel, reply)
    assert first.id == again.id
    assert first.type == 19
    assert first.raw["message_reference"]["message_id"] == original.id
    assert first.raw["referenced_message"]["content"] == "Deploy 4.2 is out"
    assert len(server.fake.channels[world.general.id].message_ids) == 2


def test_edit_is_partial(client: DiscordClient, world: World) -> None:
    channel = str(world.general.id)
    sent = client.send_message(channel, Message(content="v1", embeds=[Embed(title="kept")]))
    edited = client.edit_message(channel, sent.id, MessageEdit(content="v2"))
    assert edited.content == "v2"
    assert edited.raw["embeds"][0]["title"] == "kept"
    assert edited.edited_timestamp is not None
    cleared = client.edit_message(channel, sent.id, MessageEdit(embeds=None))
    assert cleared.raw["embeds"] == []
    assert cleared.content == "v2"


def test_delete_is_idempotent(client: DiscordClient, world: World) -> None:
    channel = str(world.general.id)
    sent = client.send_message(channel, Message(content="bye"))
    client.delete_message(channel, sent.id)
    client.delete_message(channel, sent.id)
    with pytest.raises(NotFound):
        client.get_message(channel, sent.id)


@pytest.mark.parametrize(
    "emoji",
    ["👍", "👩🏽‍💻", "1️⃣", "🇫🇷", "party:1102867070976000123", "<a:party:1102867070976000123>"],
)
def test_add_and_remove_reaction(client: DiscordClient, world: World, emoji: str) -> None:
    channel = str(world.general.id)
    sent = client.send_message(channel, Message(content="react to me"))
    client.add_reaction(channel, sent.id, emoji)
    reactions = client.get_message(channel, sent.id).raw["reactions"]
    assert reactions[0]["count"] == 1
    assert reactions[0]["me"] is True
    name = reactions[0]["emoji"]["name"]
    assert name == ("party" if "party" in emoji else emoji)
    client.remove_own_reaction(channel, sent.id, emoji)
    assert "reactions" not in client.get_message(channel, sent.id).raw


def test_bad_emoji_is_refused_locally_and_by_discord(client: DiscordClient, world: World) -> None:
    channel = str(world.general.id)
    sent = client.send_message(channel, Message(content="x"))
    with pytest.raises(InvalidInputError, match="not an emoji"):
        client.add_reaction(channel, sent.id, ":thumbsup:")
    route = routes.ADD_REACTION.compile(channel_id=channel, message_id=sent.id, emoji="thumbsup")
    with pytest.raises(BadRequest) as caught:
        client.session.request(route)
    assert caught.value.code == 10014


@pytest.mark.parametrize("emoji", ["ok👍", "é", "👍👍", "🇫🇷🇩", "⌘"])
def test_discord_takes_one_emoji_per_reaction(
    client: DiscordClient, world: World, server: FakeDiscordServer, emoji: str
) -> None:
    channel = str(world.general.id)
    sent = client.send_message(channel, Message(content="x"))
    for compile_route in (routes.ADD_REACTION.compile, routes.DELETE_OWN_REACTION.compile):
        route = compile_route(channel_id=channel, message_id=sent.id, emoji=emoji)
        with pytest.raises(BadRequest) as caught:
            client.session.request(route)
        assert (caught.value.status, caught.value.code) == (400, 10014)
    # Through the client: text around an emoji is refused before sending; the rest (two
    # emoji, a flag and a half, a symbol that is no emoji) is Discord's 10014, sent once.
    before = len(server.fake.limits.events)
    if emoji in ("ok👍", "é"):
        with pytest.raises(InvalidInputError, match="not an emoji"):
            client.add_reaction(channel, sent.id, emoji)
        assert len(server.fake.limits.events) == before
    else:
        with pytest.raises(BadRequest) as caught:
            client.add_reaction(channel, sent.id, emoji)
        assert caught.value.code == 10014
        assert len(server.fake.limits.events) == before + 1
    assert "reactions" not in client.get_message(channel, sent.id).raw


def test_threads_from_message_public_private_and_forum(
    client: DiscordClient, world: World, server: FakeDiscordServer
) -> None:
    channel = str(world.general.id)
    starter = client.send_message(channel, Message(content="changelog?"))
    thread = client.create_thread(channel, "changelog review", message_id=starter.id)
    assert thread.id == starter.id
    assert thread.type == 11
    assert thread.joined
    assert client.get_message(channel, starter.id).raw["flags"] & 32
    private = client.create_thread(channel, "incident", private=True, auto_archive_minutes=4320)
    assert private.type == 12
    public = client.create_thread(channel, "open", invitable=False, rate_limit_per_user=5)
    assert public.type == 11
    post = client.create_forum_post(str(world.forum.id), "Idea", Message(content="dark mode"))
    assert post.parent_id == str(world.forum.id)
    assert server.fake.messages[int(post.id)].content == "dark mode"
    with pytest.raises(InvalidInputError, match="auto_archive"):
        client.create_thread(channel, "x", auto_archive_minutes=5)
    with pytest.raises(InvalidInputError, match="always public"):
        client.create_thread(channel, "x", message_id=starter.id, private=True)
    with pytest.raises(BadRequest) as caught:
        client.create_thread(channel, "again", message_id=starter.id)
    assert caught.value.code == 160004


def test_send_to_thread_joins_when_needed(
    client: DiscordClient, world: World, server: FakeDiscordServer
) -> None:
    fake = server.fake
    thread = fake.add_thread(world.general, "ops", owner=world.alice, type=12)
    sent = client.send_to_thread(str(thread.id), Message(content="joined and posted"))
    assert sent.channel_id == str(thread.id)
    assert world.bot.id in thread.members
    other = fake.add_thread(world.general, "ops-2", owner=world.alice, type=12)
    with pytest.raises(Forbidden):
        client.send_to_thread(str(other.id), Message(content="x"), join=False)
    archived = fake.add_thread(world.general, "old", owner=world.alice, archived=True)
    client.send_to_thread(str(archived.id), Message(content="wake up"))
    assert not archived.archived
    client.join_thread(str(archived.id))


def test_active_and_archived_threads_in_a_window(
    client: DiscordClient, world: World, server: FakeDiscordServer
) -> None:
    from datetime import UTC, datetime, timedelta

    fake = server.fake
    now = fake.now_ms()
    hour = 3600_000
    active = fake.add_thread(world.general, "live", owner=world.alice, created_ms=now - 2 * hour)
    fake.add_message(active, world.alice, "still going", at_ms=now - hour)
    recent = fake.add_thread(
        world.general,
        "done",
        owner=world.alice,
        created_ms=now - 5 * hour,
        archived=True,
        archive_ms=now - 3 * hour,
    )
    fake.add_thread(
        world.general,
        "ancient",
        owner=world.alice,
        created_ms=now - 50 * hour,
        archived=True,
        archive_ms=now - 40 * hour,
    )
    fake.add_thread(world.readonly, "elsewhere", owner=world.alice, created_ms=now - hour)
    assert [t.id for t in client.active_threads(str(world.general.id))] == [str(active.id)]
    since = datetime.now(UTC) - timedelta(hours=10)
    found = [t.name for t in client.threads_in_window(str(world.general.id), since=since)]
    assert found == ["live", "done"]
    until = datetime.now(UTC) - timedelta(hours=4)
    early = list(client.threads_in_window(str(world.general.id), since=since, until=until))
    assert [t.id for t in early] == [str(recent.id)]
    assert not list(
        client.threads_in_window(
            str(world.general.id), since=since, include_archived=False, until=until
        )
    )


def test_direct_messages(client: DiscordClient, world: World, server: FakeDiscordServer) -> None:
    sent = client.send_dm(str(world.alice.id), Message(content="your summary is ready"))
    channel = client.get_channel(sent.channel_id)
    assert channel.type == 1
    again = client.send_dm(str(world.alice.id), Message(content="and another"))
    assert again.channel_id == sent.channel_id
    assert client.open_dm(str(world.alice.id)).id == sent.channel_id
    with pytest.raises(Forbidden) as caught:
        client.send_dm(str(world.bob.id), Message(content="closed DMs"))
    assert caught.value.code == 50007


def test_webhook_execute_edit_delete(
    client: DiscordClient, world: World, server: FakeDiscordServer
) -> None:
    sent = client.execute_webhook(
        world.webhook_url,
        Message(content="Nightly export finished"),
        username="Exporter",
        avatar_url="https://example.invalid/a.png",
    )
    assert sent is not None
    assert sent.webhook_id == str(world.webhook.id)
    assert sent.author.username == "Exporter"
    assert (
        client.execute_webhook(world.webhook_url, Message(content="fire and forget"), wait=False)
        is None
    )
    thread = server.fake.add_thread(world.general, "exports", owner=world.alice)
    in_thread = client.execute_webhook(
        WebhookRef.from_url(world.webhook_url),
        Message(content="in thread"),
        thread_id=str(thread.id),
    )
    assert in_thread is not None
    assert in_thread.channel_id == str(thread.id)
    edited = client.edit_webhook_message(world.webhook_url, sent.id, MessageEdit(content="edited"))
    assert edited.content == "edited"
    client.edit_webhook_message(
        world.webhook_url, in_thread.id, MessageEdit(content="e"), thread_id=str(thread.id)
    )
    client.delete_webhook_message(world.webhook_url, sent.id)
    client.delete_webhook_message(world.webhook_url, sent.id)
    client.delete_webhook_message(world.webhook_url, in_thread.id, thread_id=str(thread.id))


def test_webhook_rejections_mark_it_dead(
    client: DiscordClient, world: World, server: FakeDiscordServer
) -> None:
    gone = f"https://discord.com/api/webhooks/{world.webhook.id + 1}/abcdef"
    with pytest.raises(InvalidWebhook) as caught:
        client.execute_webhook(gone, Message(content="x"))
    assert caught.value.status == 404
    assert caught.value.code == 10015
    before = len(server.fake.limits.events)
    with pytest.raises(InvalidWebhook):
        client.execute_webhook(gone, Message(content="x"))
    assert len(server.fake.limits.events) == before  # refused without a request
    wrong = f"https://discord.com/api/webhooks/{world.webhook.id}/not-the-token"
    with pytest.raises(InvalidWebhook) as caught:
        client.execute_webhook(wrong, Message(content="x"))
    assert (caught.value.status, caught.value.code) == (401, 50027)
    # The real token of the same webhook still works.
    assert client.execute_webhook(world.webhook_url, Message(content="ok")) is not None


def test_interaction_defer_followup_edit_delete(
    client: DiscordClient, world: World, server: FakeDiscordServer
) -> None:
    interaction = server.fake.add_interaction(world.general, world.alice, application=world.bot)
    app = str(world.bot.id)
    client.defer_interaction(str(interaction.id), interaction.token, ephemeral=True)
    with pytest.raises(BadRequest) as caught:
        client.defer_interaction(str(interaction.id), interaction.token)
    assert caught.value.code == 40060
    original = client.edit_original_response(
        app, interaction.token, MessageEdit(content="Summary: ...")
    )
    assert original.content == "Summary: ..."
    assert not original.raw["flags"] & 128
    follow = client.create_followup(
        app, interaction.token, Message(content="details"), ephemeral=True
    )
    assert follow.raw["flags"] & 64
    client.delete_original_response(app, interaction.token)
    client.delete_original_response(app, interaction.token)
    answered = server.fake.add_interaction(world.general, world.alice, application=world.bot)
    client.create_interaction_response(
        str(answered.id), answered.token, type=4, data={"content": "Working on it"}
    )


def test_interaction_tokens_expire(
    client: DiscordClient, world: World, server: FakeDiscordServer
) -> None:
    fake = server.fake
    fake.config.interaction_ack_s = 0.0
    late = fake.add_interaction(world.general, world.alice, application=world.bot)
    with pytest.raises(NotFound) as caught:
        client.defer_interaction(str(late.id), late.token)
    assert caught.value.code == 10062
    fake.config.interaction_ack_s = 3.0
    old = fake.add_interaction(world.general, world.alice, application=world.bot)
    client.defer_interaction(str(old.id), old.token)
    fake.config.interaction_ttl_s = 0.0
    with pytest.raises(InvalidWebhook) as expired:
        client.create_followup(str(world.bot.id), old.token, Message(content="too late"))
    assert expired.value.code == 50027


def test_get_messages_page_and_cursor_rules(
    client: DiscordClient, world: World, server: FakeDiscordServer
) -> None:
    fake = server.fake
    start = fake.now_ms() - 3600_000
    fake.add_history(world.general, [world.alice, world.bob], 30, start_ms=start, step_ms=1000)
    ids = [str(m) for m in fake.channels[world.general.id].message_ids]
    page = client.get_messages(str(world.general.id), limit=5, before=ids[10])
    assert [m["id"] for m in page] == list(reversed(ids[5:10]))  # newest first
    after = client.get_messages(str(world.general.id), limit=5, after=ids[10])
    assert [m["id"] for m in after] == list(reversed(ids[11:16]))
    around = client.get_messages(str(world.general.id), limit=4, around=ids[10])
    assert ids[10] in [m["id"] for m in around]
    with pytest.raises(InvalidInputError, match="mutually exclusive"):
        client.get_messages(str(world.general.id), before=ids[1], after=ids[2])
    with pytest.raises(InvalidInputError, match="1-100"):
        client.get_messages(str(world.general.id), limit=101)
