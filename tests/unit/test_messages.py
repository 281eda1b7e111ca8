from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from pydantic import TypeAdapter, ValidationError

from shared.domain.messages import (
    ChannelInfo,
    ChatMessage,
    SnowflakeText,
    check_timestamp,
    is_snowflake,
    jump_url,
    snowflake_time,
)
from shared.errors import InvalidInputError


def test_snowflake_time_matches_discord_epoch() -> None:
    # Example from Discord's docs: 175928847299117063 → 2016-04-30 11:18:25.796 UTC.
    assert snowflake_time("175928847299117063") == datetime(
        2016, 4, 30, 11, 18, 25, 796000, tzinfo=UTC
    )


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("123456789012345", True),
        ("9223372036854775807", True),  # the largest 64-bit id
        ("9223372036854775808", False),  # past it: Discord answers 400
        ("12345678901234567890", False),  # 20 digits
        ("12345678901234", False),  # too short
        ("123456789012345678\n", False),  # re.match with "$" would take this one
        (" 123456789012345678", False),
        ("12345678901234567a", False),
        ("１２３４５６７８９０１２３４５６", False),  # full-width digits are not ASCII
        ("", False),
        (None, False),
    ],
)
def test_one_rule_says_what_a_discord_id_is(text: str | None, expected: bool) -> None:
    assert is_snowflake(text) is expected
    # A model field (its pattern, which the OpenAPI schema shows, and the 64-bit bound) agrees.
    if text is not None:
        try:
            TypeAdapter(SnowflakeText).validate_python(text)
        except ValidationError:
            accepted = False
        else:
            accepted = True
        assert accepted is expected


def test_jump_url_for_guild_and_dm() -> None:
    assert jump_url("1", "2", "3") == "https://discord.com/channels/1/2/3"
    assert jump_url(None, "2", "3") == "https://discord.com/channels/@me/2/3"


def test_wire_round_trip_keeps_every_field() -> None:
    message = ChatMessage(
        id="5",
        channel_id="2",
        timestamp=datetime(2026, 1, 1, 12, tzinfo=UTC),
        author_id="7",
        author_name="ann",
        content="hi",
        kind="Reply",
        is_bot=True,
        reply_to="4",
        reactions=3,
        attachments=("a.txt",),
        embeds=("title",),
        mentions=("bob",),
        is_pinned=True,
        edited=True,
    )
    assert ChatMessage.from_wire(message.to_wire()) == message
    plain = ChatMessage(
        id="6",
        channel_id="2",
        timestamp=message.timestamp,
        author_id="7",
        author_name="ann",
        content="x",
    )
    assert set(plain.to_wire()) == {"i", "c", "t", "a", "n", "x"}
    assert not plain.is_system and ChatMessage.from_wire(plain.to_wire()) == plain
    channel = ChannelInfo(channel_id="2", channel_name="general", guild_id="1")
    assert ChannelInfo.from_wire(channel.to_wire()) == channel


def test_cached_messages_share_their_repeated_strings() -> None:
    # 100,000 cached messages of a few hundred people must not hold 100,000 copies of each
    # name: from_wire interns channel, author, kind and mention strings.
    wires = [
        json.loads(
            json.dumps(
                {
                    "i": str(n),
                    "c": "900000000000000001",
                    "t": "2026-01-01T12:00:00+00:00",
                    "a": "575879645750558604",
                    "n": "cactusfrog",
                    "x": f"message {n}",
                    "k": "Reply",
                    "me": ["Titan8990"],
                }
            )
        )
        for n in range(2)
    ]
    first, second = (ChatMessage.from_wire(w) for w in wires)
    assert first.author_name is second.author_name
    assert first.author_id is second.author_id
    assert first.channel_id is second.channel_id
    assert first.kind is second.kind
    assert first.mentions[0] is second.mentions[0]
    assert first.content is not second.content


@pytest.mark.parametrize(
    "when",
    [
        datetime(9999, 12, 31, 23, 59, tzinfo=UTC),
        datetime(1, 1, 1, tzinfo=UTC),
        datetime(2100, 1, 1, tzinfo=UTC),
        datetime(1969, 12, 31, 23, 59, 59),  # naive: compared as UTC
    ],
)
def test_a_message_out_of_the_time_range_is_refused_naming_it(when: datetime) -> None:
    with pytest.raises(InvalidInputError, match=r"^message 42: the time .* is outside"):
        ChatMessage(
            id="42", channel_id="1", timestamp=when, author_id="7", author_name="a", content="x"
        )
    assert check_timestamp(datetime(2024, 1, 1, tzinfo=UTC), "x") == datetime(
        2024, 1, 1, tzinfo=UTC
    )
    with pytest.raises(InvalidInputError, match="not a Discord snowflake"):
        snowflake_time(10**40)
