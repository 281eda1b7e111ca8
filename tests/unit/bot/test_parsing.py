"""Command input parsing: windows, message links, languages, formats."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from producers.bot.parsing import (
    MessageLink,
    Window,
    parse_channel_mentions,
    parse_format,
    parse_language,
    parse_message_link,
    parse_since,
    parse_window,
)
from shared.errors import InvalidInputError
from shared.summarize.content import SummaryFormat
from tests.unit.bot.gateway import snowflake

NOW = datetime(2026, 3, 14, 15, 0, tzinfo=UTC)
GUILD, CHANNEL = 1102565081088000000, 1102565102059520001


def test_message_links_in_every_form() -> None:
    message = snowflake(int(NOW.timestamp() * 1000) - 3_600_000)
    for host in ("discord.com", "ptb.discord.com", "canary.discord.com", "discordapp.com"):
        link = parse_message_link(f"  <https://{host}/channels/{GUILD}/{CHANNEL}/{message}>  ")
        assert link == MessageLink(GUILD, CHANNEL, message)
    assert link.url == f"https://discord.com/channels/{GUILD}/{CHANNEL}/{message}"
    assert link.created_at == NOW - timedelta(hours=1)


def test_bad_links_say_how_to_get_a_good_one() -> None:
    with pytest.raises(InvalidInputError, match="Copy Message Link"):
        parse_message_link("https://example.com/channels/1/2/3")
    with pytest.raises(InvalidInputError, match="direct message"):
        parse_message_link(f"https://discord.com/channels/@me/{CHANNEL}/{CHANNEL}")


def test_default_window_is_the_last_day() -> None:
    window = parse_window(now=NOW)
    assert window == Window("hours", hours=24)
    assert window.describe() == "the last 24 hours"
    assert window.start(NOW) == NOW - timedelta(hours=24)
    source = window.to_source(guild_id=GUILD, channel_id=CHANNEL, now=NOW)
    assert source.after == NOW - timedelta(hours=24)
    assert source.channel_id == str(CHANNEL) and source.guild_id == str(GUILD)
    assert parse_window(hours=1).describe() == "the last hour"


def test_hours_must_be_within_a_week() -> None:
    assert parse_window(hours=168).hours == 168
    for bad in (0, 169):
        with pytest.raises(InvalidInputError, match="between 1 and 168"):
            parse_window(hours=bad)


def test_message_count_window() -> None:
    window = parse_window(messages=500, max_messages=1000)
    assert window.describe() == "the last 500 messages"
    assert window.start(NOW) is None
    assert window.to_source(guild_id=GUILD, channel_id=CHANNEL, now=NOW).limit == 500
    assert parse_window(messages=1).describe() == "the last message"
    with pytest.raises(InvalidInputError, match="between 1 and 1000"):
        parse_window(messages=1001, max_messages=1000)


def test_since_window_includes_the_linked_message() -> None:
    message = snowflake(int(NOW.timestamp() * 1000) - 60_000)
    window = parse_window(
        since=f"https://discord.com/channels/{GUILD}/{CHANNEL}/{message}", now=NOW
    )
    assert window.kind == "since"
    assert "messages since https://discord.com/channels/" in window.describe()
    source = window.to_source(guild_id=GUILD, channel_id=CHANNEL, now=NOW)
    assert source.after_message_id == str(message - 1)
    assert window.start(NOW) == NOW - timedelta(minutes=1)


def test_since_in_the_future_is_refused() -> None:
    future = snowflake(int(NOW.timestamp() * 1000) + 3_600_000)
    with pytest.raises(InvalidInputError, match="future"):
        parse_window(since=MessageLink(GUILD, CHANNEL, future), now=NOW)


def test_only_one_window_option() -> None:
    with pytest.raises(InvalidInputError, match="hours and messages"):
        parse_window(hours=2, messages=10)


def test_languages() -> None:
    assert parse_language(None) is None
    assert parse_language("  ") is None
    assert parse_language("de") == "de"
    assert parse_language("pt-BR") == "pt-BR"
    for bad in ("english please", "e", "x" * 20):
        with pytest.raises(InvalidInputError, match="language code"):
            parse_language(bad)


def test_formats() -> None:
    assert parse_format(None) is None
    assert parse_format("") is None
    assert parse_format(" Technical ") is SummaryFormat.TECHNICAL
    with pytest.raises(InvalidInputError, match="brief, structured, detailed, technical"):
        parse_format("long")


@pytest.mark.parametrize(
    ("text", "ago"),
    [
        ("12", timedelta(hours=12)),
        ("12h", timedelta(hours=12)),
        (" 90m ", timedelta(minutes=90)),
        ("45min", timedelta(minutes=45)),
        ("2D", timedelta(days=2)),
    ],
)
def test_since_as_time_ago(text: str, ago: timedelta) -> None:
    assert parse_since(text, guild_id=GUILD, now=NOW) == NOW - ago


def test_since_as_a_message_link_or_nothing() -> None:
    message = snowflake(int(NOW.timestamp() * 1000) - 3_600_000)
    link = f"https://discord.com/channels/{GUILD}/{CHANNEL}/{message}"
    assert parse_since(link, guild_id=GUILD, now=NOW) == NOW - timedelta(hours=1)
    assert parse_since(None, guild_id=GUILD, now=NOW) is None
    assert parse_since("  ", guild_id=GUILD, now=NOW) is None


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("yesterday", "is not a time"),
        ("0h", "at least 1"),
        ("-3h", "is not a time"),
        (f"https://discord.com/channels/{GUILD + 1}/{CHANNEL}/{CHANNEL}", "another server"),
        ("https://discord.com/channels/@me/1102565102059520001/1102565102059520002", "direct"),
    ],
)
def test_since_that_is_not_a_time(text: str, words: str) -> None:
    with pytest.raises(InvalidInputError, match=words):
        parse_since(text, guild_id=GUILD, now=NOW)


def test_channel_mentions_are_read_in_order() -> None:
    first, second = str(CHANNEL), str(CHANNEL + 1)
    assert parse_channel_mentions(f" <#{first}>, <#{second}>\n{first} ") == [first, second, first]
    assert parse_channel_mentions(None) == [] and parse_channel_mentions("  ") == []
    with pytest.raises(InvalidInputError, match="'#general' is not a channel"):
        parse_channel_mentions(f"<#{first}> #general")
    with pytest.raises(InvalidInputError, match="is not a channel"):
        parse_channel_mentions(f"<@{first}>")
