"""What the adapter sends is exactly Discord's documented request shapes (the fixture files)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import httpx
import pytest

from shared.discord import (
    ActionRow,
    AllowedMentions,
    Button,
    ButtonStyle,
    Embed,
    EmbedField,
    EmbedFooter,
    Message,
    MessageEdit,
    MessageFlags,
    MessageReference,
)
from tests.fakes.discord_fixtures import fixture

CHANNEL = "1102565102059520001"


def ok(request: httpx.Request) -> httpx.Response:
    path = request.url.path
    if path.endswith("/threads"):
        name = "thread_private_created_without_message_201.json"
        if "/messages/" in path:
            name = "thread_created_from_message_201.json"
        return httpx.Response(201, json=fixture(name))
    if path.endswith("/users/@me/channels"):
        return httpx.Response(200, json=fixture("dm_channel_200.json"))
    if "/callback" in path:
        return httpx.Response(204)
    if path.startswith("/api/v10/webhooks/"):
        return httpx.Response(200, json=fixture("webhook_message_200.json"))
    return httpx.Response(200, json=fixture("message_reply_with_thread.json"))


def test_create_message_matches_fixture(make_client: Any) -> None:
    client, seen = make_client(ok)
    message = Message(
        content="Heads up <@606910130683904000>: rollout paused.",
        embeds=[
            Embed(
                title="Rollout status",
                description="Paused at 40% (error budget burn).",
                color=15548997,
                fields=[EmbedField("Region", "eu-west", inline=True)],
                footer=EmbedFooter("RelayBot"),
                timestamp=datetime.fromisoformat("2026-03-14T15:09:26.535000+00:00"),
            )
        ],
        components=[
            ActionRow(
                [
                    Button(
                        style=ButtonStyle.PRIMARY, label="Resume", custom_id="rollout:resume:4.2"
                    ),
                    Button(style=ButtonStyle.DANGER, label="Abort", custom_id="rollout:abort:4.2"),
                    Button(
                        style=ButtonStyle.LINK,
                        label="Dashboard",
                        url="https://example.invalid/dash",
                    ),
                ]
            )
        ],
        reply_to=MessageReference("1482392863236030471", channel_id=CHANNEL),
        allowed_mentions=AllowedMentions(users=["606910130683904000"]),
        flags=MessageFlags.SUPPRESS_NOTIFICATIONS,
        nonce="b7f3c1d0a9e84f2c",
    )
    sent = client.send_message(CHANNEL, message)
    assert seen.body() == fixture("request_create_message.json")
    request = seen.requests[0]
    assert request.url.path == f"/api/v10/channels/{CHANNEL}/messages"
    assert request.headers["authorization"] == "Bot unit-token"
    assert request.headers["user-agent"].startswith("DiscordBot (")
    assert sent.id == "1482395238940147715"
    assert sent.author.display_name == "Marisol"


def test_edit_message_matches_fixture(make_client: Any) -> None:
    client, seen = make_client(ok)
    edit = MessageEdit(
        content="Heads up: rollout resumed.",
        embeds=None,
        components=None,
        allowed_mentions=AllowedMentions.none(),
    )
    client.edit_message(CHANNEL, "1482395238940147715", edit)
    expected = fixture("request_edit_message.json")
    expected["allowed_mentions"]["replied_user"] = False
    assert seen.body() == expected
    assert seen.requests[0].method == "PATCH"


def test_thread_and_dm_requests_match_fixtures(make_client: Any) -> None:
    client, seen = make_client(ok)
    client.create_thread(CHANNEL, "changelog review", message_id="1482395238940147715")
    assert seen.body() == fixture("request_start_thread_from_message.json")
    assert seen.requests[-1].url.path.endswith("/messages/1482395238940147715/threads")
    thread = client.create_thread(
        CHANNEL, "incident-2026-03-14", private=True, invitable=False, auto_archive_minutes=4320
    )
    assert seen.body() == fixture("request_start_thread_without_message.json")
    assert thread.type == 12
    assert thread.joined
    dm = client.open_dm("606910130683904000")
    assert seen.body() == fixture("request_create_dm.json")
    assert dm.type == 1


def test_webhook_request_matches_fixture_and_has_no_bot_token(make_client: Any) -> None:
    client, seen = make_client(ok)
    url = "https://discord.com/api/webhooks/1246251869798400003/tok-en_123"
    sent = client.execute_webhook(
        url,
        Message(
            content="Nightly export finished (2.1 GB).",
            embeds=[Embed(title="Export", description="42 tables", color=3066993)],
            allowed_mentions=AllowedMentions.none(),
        ),
        username="Exporter",
        avatar_url="https://example.invalid/avatar.png",
    )
    expected = fixture("request_execute_webhook.json")
    expected["allowed_mentions"]["replied_user"] = False
    assert seen.body() == expected
    request = seen.requests[0]
    assert "authorization" not in request.headers
    assert request.url.params["wait"] == "true"
    assert sent is not None and sent.webhook_id == "1246251869798400003"


def test_interaction_requests_match_fixtures(make_client: Any) -> None:
    client, seen = make_client(ok)
    client.defer_interaction("1482395238940147715", "aW50ZXJhY3Rpb246MTox", ephemeral=True)
    assert seen.body() == fixture("request_interaction_callback_deferred.json")
    assert "authorization" not in seen.requests[-1].headers
    callback = fixture("request_interaction_callback_message.json")
    client.create_interaction_response(
        "1482395238940147715", "aW50ZXJhY3Rpb246MTox", type=4, data=callback["data"]
    )
    assert seen.body() == callback
    client.create_followup(
        "1194573850214400000",
        "aW50ZXJhY3Rpb246MTox",
        Message(content="Done: 3 rows updated.", allowed_mentions=AllowedMentions.none()),
        ephemeral=True,
    )
    expected = fixture("request_interaction_followup.json")
    expected["allowed_mentions"]["replied_user"] = False
    assert seen.body() == expected


@pytest.mark.parametrize(
    ("emoji", "encoded"),
    [
        ("👍", "%F0%9F%91%8D"),
        ("party:1102867070976000123", "party%3A1102867070976000123"),
        ("<:party:1102867070976000123>", "party%3A1102867070976000123"),
        ("<a:party:1102867070976000123>", "party%3A1102867070976000123"),
        (":party:1102867070976000123", "party%3A1102867070976000123"),
    ],
)
def test_reaction_emoji_is_encoded_like_discordpy(
    make_client: Any, emoji: str, encoded: str
) -> None:
    client, seen = make_client(lambda r: httpx.Response(204))
    client.add_reaction(CHANNEL, "1482395238940147715", emoji)
    raw_path = seen.requests[0].url.raw_path.decode()
    assert (
        raw_path
        == f"/api/v10/channels/{CHANNEL}/messages/1482395238940147715/reactions/{encoded}/@me"
    )


def test_audit_log_reason_is_url_encoded(make_client: Any) -> None:
    client, seen = make_client(lambda r: httpx.Response(204))
    client.delete_message(CHANNEL, "1482395238940147715", reason="spam/bot ä")
    assert seen.requests[0].headers["x-audit-log-reason"] == "spam/bot %C3%A4"
