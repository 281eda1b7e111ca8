"""Discord message and channel JSON (the fixtures) → ChatMessage / ChannelInfo."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from shared.discord import to_channel_info, to_chat_message
from shared.domain.messages import ChatMessage
from shared.errors import InvalidInputError
from shared.summarize.sanitize import sanitize_message
from tests.fakes.discord_fixtures import fixture


def test_reply_with_everything() -> None:
    message = to_chat_message(fixture("message_reply_with_thread.json"))
    assert message.id == "1482395238940147715"
    assert message.channel_id == "1102565102059520001"
    assert message.timestamp == datetime(2026, 3, 14, 15, 9, 26, 535000, tzinfo=UTC)
    assert message.author_name == "Marisol"
    assert message.author_id == "606910130683904000"
    assert message.kind == "Reply"
    assert message.reply_to == "1482392863236030471"
    assert (
        message.content
        == "@Tobias looks good to me, see attached diff. cc @role-1102867070976000000"
    )
    assert message.mentions == ("Tobias",)
    assert message.attachments == ("changelog.diff",)
    assert message.embeds == ("Release 4.2 checklist",)
    assert message.reactions == 2
    assert message.edited
    assert not message.is_pinned
    assert not message.is_bot
    assert not message.is_system
    assert ChatMessage.from_wire(message.to_wire()) == message


def test_page_of_plain_messages_and_bots() -> None:
    page = [to_chat_message(m) for m in fixture("message_list_page_newest_first.json")]
    assert [m.author_name for m in page] == ["RelayBot", "Marisol", "Tobias"]
    assert page[0].is_bot
    assert [m.kind for m in page] == ["Default"] * 3
    assert all(not m.edited and m.reply_to is None for m in page)


def test_webhook_message_and_member_nick() -> None:
    hook = to_chat_message(fixture("webhook_message_200.json"))
    assert hook.author_name == "Exporter"
    assert hook.is_bot
    assert hook.extra["webhook_id"] == "1246251869798400003"
    assert hook.embeds == ("Export",)
    raw = fixture("message_list_page_newest_first.json")[1] | {"member": {"nick": "Mari"}}
    assert to_chat_message(raw).author_name == "Mari"


def test_markup_system_messages_and_references() -> None:
    base = fixture("message_list_page_newest_first.json")[1]
    raw = base | {
        "content": "see <#42> <:blob:123456789012345678> at <t:1773500000:f> via </summarize:99> <@999>",
        "sticker_items": [{"name": "wave"}],
        "embeds": [{"description": "  a " * 60}, {"url": "https://x.invalid"}, {}],
        "attachments": [{"url": "https://cdn.invalid/a/b/file.txt?ex=1"}],
        "pinned": True,
    }
    message = to_chat_message(raw, channel_names={"42": "release-eng"})
    assert message.content.startswith("see #release-eng :blob: at 2026-03-14")
    assert "/summarize @Unknown [sticker: wave]" in message.content
    # Kept whole on one line; the door (sanitize) redacts it, then cuts it to 80 characters.
    assert message.embeds[0] == " ".join(["a"] * 60)
    assert sanitize_message(message).embeds[0].endswith("…")
    assert message.embeds[1] == "https://x.invalid"
    assert message.attachments == ("file.txt",)
    assert message.is_pinned
    pin = to_chat_message(base | {"type": 6, "message_reference": {"message_id": "5"}})
    assert pin.kind == "ChannelPinnedMessage"
    assert pin.is_system
    assert pin.reply_to is None
    assert pin.extra["reference_id"] == "5"
    forward = to_chat_message(base | {"message_reference": {"type": 1, "message_id": "6"}})
    assert forward.extra["forwarded_from"] == "6"
    command = to_chat_message(base | {"type": 20})
    assert command.kind == "Default"
    assert command.extra["discord_type"] == 20
    assert to_chat_message(base | {"type": 99}).kind == "Type99"
    assert (
        to_chat_message(base | {"content": "<t:99999999999999999:f>"}).content
        == "<t:99999999999999999:f>"
    )


def test_channel_info_for_channels_threads_and_dms() -> None:
    channel = to_channel_info(fixture("channel_guild_text.json"), guild_name="Release Eng")
    assert (channel.channel_name, channel.kind, channel.parent_id) == (
        "release-eng",
        "GuildTextChat",
        None,
    )
    assert channel.guild_name == "Release Eng"
    thread = to_channel_info(fixture("thread_created_from_message_201.json"))
    assert (thread.kind, thread.parent_id) == ("GuildPublicThread", "1102565102059520001")
    dm = to_channel_info(fixture("dm_channel_200.json"))
    assert (dm.kind, dm.channel_name, dm.guild_id) == ("DirectTextChat", "Marisol", None)


def test_timestamps_are_range_checked_and_name_the_message() -> None:
    raw = dict(fixture("message_reply_with_thread.json"))
    for stamp, problem in (
        ("9999-12-31T23:59:59+00:00", "is outside the supported range"),
        ("0001-01-01T00:00:00+00:00", "is outside the supported range"),
        ("not a time", "has an invalid timestamp 'not a time'"),
    ):
        with pytest.raises(InvalidInputError, match=problem) as info:
            to_chat_message({**raw, "timestamp": stamp})
        assert "Discord message 1482395238940147715" in str(info.value)
    with pytest.raises(InvalidInputError, match=r"has no timestamp and .* not a Discord snowflake"):
        to_chat_message({**raw, "id": str(2**80), "timestamp": None})
