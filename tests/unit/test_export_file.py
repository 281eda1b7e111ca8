"""Tests of the DiscordChatExporter JSON export reader (shared.sources.export_file)."""

from __future__ import annotations

import io
import json
import os
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from shared.domain.messages import ChatMessage, snowflake_time
from shared.errors import InvalidInputError, PermanentError
from shared.sources.export_file import ExportFile, _TrackingReader, count_messages, open_export

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
SMALL = FIXTURES / "dce_small.json"
MARKDOWN_OFF = FIXTURES / "dce_markdown_off.json"
CEST = timezone(timedelta(hours=2))


def _read(path: Path) -> tuple[ExportFile, list[ChatMessage]]:
    with open_export(path) as export:
        return export, list(export.iter_messages())


@pytest.fixture(scope="module")
def small() -> list[ChatMessage]:
    return _read(SMALL)[1]


@pytest.fixture(scope="module")
def small_raw() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(SMALL.read_text(encoding="utf-8"))
    return data


def _minimal(index: int, **overrides: Any) -> dict[str, Any]:
    message: dict[str, Any] = {
        "id": str(1239986130686980096 + index),
        "timestamp": "2024-05-14T19:02:11.384+02:00",
        "content": f"message {index}",
        "author": {"id": "402155861512617986", "name": "alice"},
    }
    message.update(overrides)
    return message


def _export(messages: list[Any], **top: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "guild": {"id": "1039614211843375154", "name": "Linux Helpers"},
        "channel": {"id": "1239963911265288232", "type": "GuildTextChat", "name": "general"},
        "messages": messages,
    }
    doc.update(top)
    return doc


def _write(tmp_path: Path, content: str | bytes, name: str = "export.json") -> Path:
    path = tmp_path / name
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8")
    return path


def _write_json(tmp_path: Path, doc: Any) -> Path:
    return _write(tmp_path, json.dumps(doc, indent=2, ensure_ascii=False))


def _error(path: Path) -> str:
    with pytest.raises(InvalidInputError) as info, open_export(path) as export:
        list(export.iter_messages())
    message = str(info.value)
    assert "\n" not in message, "errors must be one line"
    return message


# --- header -----------------------------------------------------------------------------------


def test_thread_channel_info() -> None:
    with open_export(SMALL) as export:
        channel = export.channel
    assert channel.channel_id == "1239963911265288232"
    assert channel.channel_name == "Wi-Fi drops after suspend (AX201)"
    assert channel.kind == "GuildPublicThread"
    assert channel.parent_id == "1039614212883562537"
    assert channel.guild_id == "1039614211843375154"
    assert channel.guild_name == "Linux Helpers"
    assert channel.topic is None


def test_text_channel_has_no_parent_but_topic() -> None:
    with open_export(MARKDOWN_OFF) as export:
        channel = export.channel
    assert channel.kind == "GuildTextChat"
    assert channel.parent_id is None
    assert channel.topic == "Deploy status and incidents"
    assert channel.guild_name == "Ops Team"


def test_direct_messages_have_no_guild(tmp_path: Path) -> None:
    doc = _export([_minimal(0)], guild={"id": "0", "name": "Direct Messages"})
    doc["channel"] = {"id": "1110325469417095209", "type": "DirectTextChat", "name": "bob"}
    with open_export(_write_json(tmp_path, doc)) as export:
        assert export.channel.guild_id is None
        assert export.channel.guild_name is None
        assert export.channel.kind == "DirectTextChat"


def test_missing_guild_and_channel_name_are_tolerated(tmp_path: Path) -> None:
    doc = {"channel": {"id": 1110325469417095209}, "messages": [_minimal(0)]}
    with open_export(_write_json(tmp_path, doc)) as export:
        assert export.channel.channel_id == "1110325469417095209"
        assert export.channel.channel_name == "1110325469417095209"
        assert export.channel.guild_id is None
        assert export.channel.kind == "GuildTextChat"


def test_messages_before_channel_uses_second_pass(tmp_path: Path) -> None:
    doc = {
        "messages": [_minimal(0), _minimal(1)],
        "messageCount": 2,
        "channel": {"id": "1110325469417095209", "name": "late"},
        "guild": {"id": "1110325468896993381", "name": "Late Guild"},
    }
    path = _write_json(tmp_path, doc)
    with open_export(path) as export:
        assert export.channel.channel_name == "late"
        assert export.channel.guild_name == "Late Guild"
        assert [m.content for m in export.iter_messages()] == ["message 0", "message 1"]
    assert count_messages(path) == 2


def test_guild_after_messages_is_found(tmp_path: Path) -> None:
    doc = {
        "channel": {"id": "1110325469417095209", "name": "general"},
        "messages": [_minimal(0)],
        "guild": {"id": "1110325468896993381", "name": "Late Guild"},
    }
    with open_export(_write_json(tmp_path, doc)) as export:
        assert export.channel.guild_name == "Late Guild"


def test_utf8_bom_is_accepted(tmp_path: Path) -> None:
    text = json.dumps(_export([_minimal(0)]))
    path = _write(tmp_path, b"\xef\xbb\xbf" + text.encode("utf-8"))
    assert [m.content for m in _read(path)[1]] == ["message 0"]


# --- message mapping (dce_small.json) ---------------------------------------------------------


def test_small_fixture_order_and_ids(small: list[ChatMessage], small_raw: dict[str, Any]) -> None:
    assert [m.id for m in small] == [m["id"] for m in small_raw["messages"]]
    assert 12 <= len(small) <= 20
    assert all(m.channel_id == "1239963911265288232" for m in small)
    for message in small:
        # realistic snowflakes: the id encodes the send time
        assert abs(snowflake_time(message.id) - message.timestamp) < timedelta(seconds=1)


def test_timestamps_keep_their_offset(small: list[ChatMessage]) -> None:
    first = small[0]
    assert first.timestamp == datetime(2024, 5, 14, 19, 2, 11, 384000, tzinfo=CEST)
    assert first.timestamp.utcoffset() == timedelta(hours=2)
    assert small[15].timestamp.utcoffset() == timedelta(0)


def test_thread_created_is_system_and_no_reply(small: list[ChatMessage]) -> None:
    notice = small[0]
    assert notice.kind == "ThreadCreated"
    assert notice.is_system
    assert notice.reply_to is None
    assert notice.extra["reference_id"] == "1239985879028740096"


def test_question_attachments_reactions_edited(small: list[ChatMessage]) -> None:
    question = small[1]
    assert question.author_name == "Alice (she/her)"  # nickname wins over name
    assert question.author_id == "402155861512617986"
    assert question.attachments == ("dmesg.txt", "nm-applet.png")
    assert question.reactions == 3  # 2 x 👀 + 1 x custom :tux:
    assert question.edited is True
    assert question.is_pinned is False
    assert question.kind == "Default"
    assert not question.is_system


def test_reply_with_mention(small: list[ChatMessage]) -> None:
    reply = small[2]
    assert reply.kind == "Reply"
    assert reply.reply_to == small[1].id
    assert reply.mentions == ("Alice (she/her)",)
    assert reply.author_name == "bob"
    assert reply.content.startswith("@Alice (she/her) does `nmcli dev`")
    assert reply.edited is False


def test_bot_embed_and_interaction(small: list[ChatMessage]) -> None:
    bot = small[3]
    assert bot.is_bot is True
    assert bot.content == ""
    assert bot.embeds == ("Wiki: Wi-Fi drops after suspend",)
    assert bot.extra["interaction"] == "wiki"


def test_reference_without_type_is_a_reply_and_long_embed_is_cut(
    small: list[ChatMessage],
) -> None:
    answer = small[4]
    assert answer.reply_to == small[2].id
    (snippet,) = answer.embeds
    assert snippet.startswith("NetworkManager keeps the device")
    assert snippet.endswith("…")
    assert len(snippet) <= 80


def test_forward_is_folded_not_a_reply(small: list[ChatMessage]) -> None:
    forward = small[5]
    assert forward.reply_to is None
    assert forward.content == (
        "[forwarded] Known bug: iwlwifi loses the firmware after S3 on AX201, "
        "fixed in linux-firmware 20240318."
    )
    assert forward.embeds == ("Launchpad bug 2049871",)
    assert forward.extra["forwarded_from"] == "1238815021345460294"
    assert forward.extra["forwarded"] is True


def test_pinned_message_and_pin_notice(small: list[ChatMessage]) -> None:
    pinned, notice = small[6], small[7]
    assert pinned.is_pinned is True
    assert pinned.reactions == 4
    assert notice.kind == "ChannelPinnedMessage"
    assert notice.is_system
    assert notice.reply_to is None
    assert notice.extra["reference_id"] == pinned.id


def test_member_join(small: list[ChatMessage]) -> None:
    join = small[8]
    assert join.kind == "GuildMemberJoin"
    assert join.is_system
    assert join.author_name == "Zoë"


def test_non_ascii_text(small: list[ChatMessage]) -> None:
    message = small[9]
    assert message.author_name == "Jürgen"
    assert "日本語のキーボードでも同じです 🙂" in message.content
    assert "ça marche après redémarrage" in message.content


def test_stickers_are_appended(small: list[ChatMessage]) -> None:
    assert small[10].content == "that fixed it, thanks! [sticker: Wumpus thumbs up]"
    assert small[11].content == "[sticker: Party Parrot]"


def test_old_export_without_optional_fields(small: list[ChatMessage]) -> None:
    old = small[12]
    assert old.author_name == "oldtimer"  # no nickname: the user name
    assert old.kind == "Default"
    assert old.reply_to is None
    assert old.reactions == 0


def test_bare_minimum_message(small: list[ChatMessage]) -> None:
    bare = small[13]
    assert bare.content == "+1"
    assert bare.kind == "Default"
    assert bare.author_id == "265914370214346752"
    assert bare.author_name == "265914370214346752"  # no name at all: the id stands in
    assert (bare.is_bot, bare.is_pinned, bare.edited) == (False, False, False)
    assert (bare.attachments, bare.embeds, bare.mentions) == ((), (), ())
    assert bare.extra == {}


def test_attachment_name_from_url_and_mention_by_name(small: list[ChatMessage]) -> None:
    message = small[14]
    assert message.attachments == ("versions.log",)
    assert message.mentions == ("oldtimer",)


def test_embed_with_url_only(small: list[ChatMessage]) -> None:
    assert small[15].embeds == ("https://launchpad.net/ubuntu/+source/linux-firmware",)


def test_count_messages_matches_stream() -> None:
    assert count_messages(SMALL) == len(_read(SMALL)[1]) == 16
    assert count_messages(MARKDOWN_OFF) == 4


# --- --markdown false exports ------------------------------------------------------------------


def test_raw_markup_is_resolved() -> None:
    messages = _read(MARKDOWN_OFF)[1]
    assert messages[0].content == (
        "@kim.dev deploy is stuck again, see #deployments and #1098765432109876543. "
        "Ping @Moderators if it lasts :sadpepe:"
    )
    assert messages[0].mentions == ("kim.dev",)
    assert messages[1].content == (
        "@Sam on it :partyblob:, rollback starts 2024-09-02 14:30 UTC; use /deploy to retry"
    )
    assert messages[1].reply_to == messages[0].id
    assert messages[2].content == "@Lee and @Unknown please review, @role-1234567890123456789 FYI"
    assert messages[3].content == "plain text with a < sign and no markup"


def test_out_of_range_timestamp_markup_is_kept(tmp_path: Path) -> None:
    path = _write_json(tmp_path, _export([_minimal(0, content="at <t:99999999999999999>")]))
    assert _read(path)[1][0].content == "at <t:99999999999999999>"


def test_forwarded_raw_markup_is_resolved(tmp_path: Path) -> None:
    message = _minimal(
        0,
        content="look",
        mentions=[{"id": "1", "name": "kim"}],
        reference={"type": "Forward", "messageId": "77"},
        forwardedMessage={"content": "<@1> said <:ok:5>"},
    )
    (result,) = _read(_write_json(tmp_path, _export([message])))[1]
    assert result.content == "look\n[forwarded] @kim said :ok:"


# --- tolerant parsing of hand-made files -------------------------------------------------------


def test_numbers_and_odd_values_are_tolerated(tmp_path: Path) -> None:
    message = _minimal(
        0,
        id=1239986130686980096,
        type=None,
        author={"id": 402155861512617986, "name": "", "nickname": None, "isBot": "yes"},
        reactions=[{"emoji": {"name": "x"}}, {"count": 2.0}, "junk"],
        attachments=[{"url": "https://cdn.example/a/"}, {}],
        embeds=[{}, {"title": ""}],
        stickers=[{"id": "1"}],
        mentions=[{"id": "1", "name": "kim"}, {"id": "1", "name": "kim"}, {"id": "2"}],
        timestampEdited=None,
        isPinned="true",
        interaction={"name": True},
    )
    (result,) = _read(_write_json(tmp_path, _export([message])))[1]
    assert result.id == "1239986130686980096"
    assert result.kind == "Default"
    assert result.author_id == result.author_name == "402155861512617986"
    assert result.is_bot is False  # only a real true counts
    assert result.is_pinned is False
    assert result.reactions == 3
    assert result.attachments == ()
    assert result.embeds == ()
    assert result.content == "message 0 [sticker: sticker]"
    assert result.mentions == ("kim",)


def test_naive_timestamp_is_taken_as_utc(tmp_path: Path) -> None:
    path = _write_json(tmp_path, _export([_minimal(0, timestamp="2024-05-14T17:02:11")]))
    (result,) = _read(path)[1]
    assert result.timestamp == datetime(2024, 5, 14, 17, 2, 11, tzinfo=UTC)


# --- laziness and handles ------------------------------------------------------------------------


def test_iter_messages_is_lazy_about_bad_json(tmp_path: Path) -> None:
    good = json.dumps(_export([_minimal(i) for i in range(3)]), indent=2)
    head, _sep, _tail = good.rpartition("]")
    path = _write(tmp_path, head + ', {"id": "9", "timestamp": oops} ]}')
    with open_export(path) as export:
        stream = export.iter_messages()
        assert [next(stream).content for _ in range(3)] == [f"message {i}" for i in range(3)]
        with pytest.raises(InvalidInputError, match="malformed JSON at line"):
            next(stream)


def test_iter_messages_is_lazy_about_bad_messages(tmp_path: Path) -> None:
    messages: list[Any] = [_minimal(i) for i in range(3)]
    messages.append({"id": "42", "timestamp": "2024-05-14T19:02:11+02:00", "content": "x"})
    path = _write_json(tmp_path, _export(messages))
    with open_export(path) as export:
        stream = export.iter_messages()
        yielded = [next(stream) for _ in range(3)]
        assert len(yielded) == 3
        with pytest.raises(InvalidInputError, match=r"index 3 \(id 42\) has no \"author.id\""):
            next(stream)


def test_iteration_can_restart_and_interleave() -> None:
    with open_export(SMALL) as export:
        first = list(export.iter_messages())
        again = list(export.iter_messages())
        pairs = list(zip(export.iter_messages(), export.iter_messages(), strict=True))
    assert first == again
    assert [a for a, _ in pairs] == [b for _, b in pairs] == first


def test_interleaved_iterations_release_their_handles() -> None:
    with open_export(SMALL) as export:
        one, two = export.iter_messages(), export.iter_messages()
        got_one, got_two = [], []
        for message in one:
            got_one.append(message)
            got_two.append(next(two))
        assert list(two) == []  # runs to its end, closing its own handle
        assert got_one == got_two
        assert export._extra_handles == []


def test_closed_export_refuses_to_iterate() -> None:
    with open_export(SMALL) as export:
        stream, second = export.iter_messages(), export.iter_messages()
        next(stream)
        next(second)  # runs on its own handle, closed together with the export
    with pytest.raises(InvalidInputError, match="closed"):
        list(export.iter_messages())
    # the running iterations lost their file too
    with pytest.raises(InvalidInputError, match="closed"):
        list(stream)
    with pytest.raises(InvalidInputError, match="closed"):
        list(second)


# --- errors: the file ---------------------------------------------------------------------------


def test_missing_file(tmp_path: Path) -> None:
    message = _error(tmp_path / "nope.json")
    assert "no such file" in message
    assert str(tmp_path / "nope.json") in message


def test_directory(tmp_path: Path) -> None:
    assert "is a directory" in _error(tmp_path)


def test_unreadable_name_too_long(tmp_path: Path) -> None:
    assert "cannot be read" in _error(tmp_path / ("x" * 300))


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files regardless of their mode")
def test_unreadable_permissions(tmp_path: Path) -> None:
    path = _write_json(tmp_path, _export([]))
    path.chmod(0)
    try:
        assert "cannot be read" in _error(path)
    finally:
        path.chmod(0o600)


def test_empty_file(tmp_path: Path) -> None:
    assert "empty (0 bytes)" in _error(_write(tmp_path, b""))


def test_whitespace_only(tmp_path: Path) -> None:
    assert "only whitespace" in _error(_write(tmp_path, "  \n\t \n"))


def test_html_export(tmp_path: Path) -> None:
    message = _error(_write(tmp_path, "<!DOCTYPE html><html><body>chat</body></html>"))
    assert "not JSON" in message
    assert "-f Json" in message


def test_malformed_json_reports_line_column_and_byte(tmp_path: Path) -> None:
    text = json.dumps(_export([_minimal(i) for i in range(3)]), indent=2)
    offset = text.index('"message 1"')
    broken = text[:offset] + "@@" + text[offset + 2 :]
    message = _error(_write(tmp_path, broken))
    line = text.count("\n", 0, offset) + 1
    column = offset - text.rfind("\n", 0, offset)
    assert f"malformed JSON at line {line}, column {column} (byte {offset})" in message
    assert "invalid char" in message


def test_malformed_json_far_into_a_large_file(tmp_path: Path) -> None:
    messages = [_minimal(i, content="x" * 200) for i in range(2000)]
    text = json.dumps(_export(messages), indent=2)
    offset = text.index('"id"', 300_000)  # several 64 KiB chunks into the file
    broken = text[:offset] + "}" + text[offset + 1 :]
    message = _error(_write(tmp_path, broken))
    line = text.count("\n", 0, offset) + 1
    # The stray "}" closes the author object, so the next byte is the invalid one.
    column = offset - text.rfind("\n", 0, offset) + 1
    assert f"at line {line}, column {column} (byte {offset + 1})" in message


def test_truncated_file(tmp_path: Path) -> None:
    text = json.dumps(_export([_minimal(i) for i in range(5)]), indent=2)
    message = _error(_write(tmp_path, text[: len(text) // 2]))
    assert "truncated" in message
    assert f"byte {len(text) // 2}" in message


def test_trailing_garbage(tmp_path: Path) -> None:
    text = json.dumps(_export([_minimal(0)]))
    assert "trailing garbage" in _error(_write(tmp_path, text + " xx"))


def test_invalid_utf8(tmp_path: Path) -> None:
    text = json.dumps(_export([_minimal(0)])).encode("utf-8")
    at = text.index(b"message 0")
    message = _error(_write(tmp_path, text[:at] + b"\xff\xfe" + text[at + 2 :]))
    assert "malformed JSON" in message
    assert f"byte {at}" in message


def test_malformed_json_with_tabs_and_crlf(tmp_path: Path) -> None:
    text = '{\r\n\t"channel": {"id": "1"},\r\n\t"messages": [\r\n\t\t{"id": "1", "timestamp": x}\r\n\t]\r\n}'
    offset = text.index("x}")
    message = _error(_write(tmp_path, text))
    assert f"at line 4, column 28 (byte {offset})" in message


def test_error_snippet_that_cannot_be_found() -> None:
    reader = _TrackingReader(io.BytesIO(b'{"a": 1}'))
    reader.read(100)
    assert reader.locate(b"          not in the chunk", 12) is None
    assert reader.locate(b"                    ", 15) is None
    assert reader.locate(b'          {"a"', 2) is None
    assert reader.locate(b'          {"a": 1}', 15) == (4, 1, 5)


def test_messages_first_with_bad_json_after_them(tmp_path: Path) -> None:
    path = _write(tmp_path, '{"messages": [], "channel": {"id": "1"}, "guild": {"id": 2,}}')
    assert "malformed JSON at line 1" in _error(path)


def test_count_messages_reports_malformed_json(tmp_path: Path) -> None:
    text = json.dumps(_export([_minimal(i) for i in range(3)]))
    path = _write(tmp_path, text[:-5])
    with pytest.raises(InvalidInputError, match="truncated"):
        count_messages(path)


def test_bad_header_json(tmp_path: Path) -> None:
    message = _error(_write(tmp_path, '{"guild": {"id": tru}, "channel": {}, "messages": []}'))
    assert "malformed JSON at line 1" in message


# --- errors: JSON that is not a DCE export --------------------------------------------------------


@pytest.mark.parametrize(
    ("content", "why"),
    [
        ("42", "top level of the JSON is a single value"),
        ('{"guild": {}, "channel": {"id": "1"}}', 'no "messages" array'),
        ('{"channel": {"id": "1"}, "messages": {}}', '"messages" is not an array'),
        ('{"guild": {"id": "1"}, "messages": []}', 'no "channel" object'),
        ('{"channel": "general", "messages": []}', 'no "channel" object'),
        ('{"channel": {"name": "general"}, "messages": []}', 'the "channel" object has no "id"'),
    ],
)
def test_not_a_dce_export(tmp_path: Path, content: str, why: str) -> None:
    message = _error(_write(tmp_path, content))
    assert why in message
    assert "does not look like a DiscordChatExporter JSON export" in message
    assert "DiscordChatExporter.Cli export" in message
    assert "-f Json" in message
    with pytest.raises(InvalidInputError):
        count_messages(tmp_path / "export.json")


# --- errors: messages ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("message", "problem"),
    [
        (
            {"timestamp": "2024-05-14T19:02:11+02:00", "content": "x", "author": {"id": "1"}},
            'at index 1 has no "id"',
        ),
        ({"id": "77", "content": "x", "author": {"id": "1"}}, '(id 77) has no "timestamp"'),
        (
            {"id": "77", "timestamp": "yesterday", "content": "x", "author": {"id": "1"}},
            "(id 77) has an invalid \"timestamp\" 'yesterday'",
        ),
        (
            {"id": "77", "timestamp": "2024-05-14T19:02:11+02:00", "author": {"id": "1"}},
            '(id 77) has no "content" text',
        ),
        (
            {
                "id": "77",
                "timestamp": "2024-05-14T19:02:11+02:00",
                "content": None,
                "author": {"id": "1"},
            },
            '(id 77) has no "content" text',
        ),
        (
            {"id": "77", "timestamp": "2024-05-14T19:02:11+02:00", "content": "x"},
            '(id 77) has no "author.id"',
        ),
        (
            {
                "id": "77",
                "timestamp": "2024-05-14T19:02:11+02:00",
                "content": "x",
                "author": {"name": "bob"},
            },
            '(id 77) has no "author.id"',
        ),
        ("just a string", "at index 1 is not a JSON object"),
    ],
)
def test_message_missing_required_field(tmp_path: Path, message: Any, problem: str) -> None:
    path = _write_json(tmp_path, _export([_minimal(0), message]))
    text = _error(path)
    assert problem in text
    assert '"id", "timestamp", "content" and "author.id"' in text


def test_errors_are_permanent(tmp_path: Path) -> None:
    with pytest.raises(PermanentError):
        open_export(tmp_path / "missing.json")


def _plain(tmp_path: Path, doc: Any) -> list[ChatMessage]:
    with open_export(_write_json(tmp_path, doc)) as export:
        return list(export.iter_messages())


def test_a_message_array_is_read_in_the_api_message_model(tmp_path: Path) -> None:
    messages = [
        {"id": "t-1", "author": "Ana", "time": "2026-03-01T09:00:00Z", "content": "it fails"},
        {
            "id": 2,
            "author": {"id": "u-7", "name": "Ben", "bot": True},
            "time": "2026-03-01T09:04:00+01:00",
            "content": "install libssl3",
            "reply_to": "t-1",
            "reactions": 2,
            "attachments": ["log.txt"],
        },
    ]
    bare = _plain(tmp_path, messages)
    named = _plain(tmp_path, {"messages": messages, "conversation": {"name": "ticket 4711"}})
    assert bare == named
    first, second = named
    assert (first.id, first.author_id, first.author_name, first.channel_id) == (
        "t-1",
        "Ana",
        "Ana",
        "upload",
    )
    assert (second.id, second.author_id, second.author_name, second.is_bot) == (
        "2",
        "u-7",
        "Ben",
        True,
    )
    assert (second.reply_to, second.reactions, second.attachments) == ("t-1", 2, ("log.txt",))
    assert second.timestamp == datetime(2026, 3, 1, 8, 4, tzinfo=UTC)
    with open_export(_write_json(tmp_path, {"messages": messages})) as export:
        assert export.channel.channel_name == "uploaded conversation"
        assert not export.is_export


@pytest.mark.parametrize(
    ("broken", "problem"),
    [
        ({"author": None}, 'has no "author"'),
        ({"time": "yesterday"}, 'invalid "time"'),
        ({"time": None, "timestamp": "2026-03-01T09:00:00Z"}, 'has "timestamp" but no "time"'),
        ({"content": 5}, 'has no "content" text'),
        ({"reactions": -1}, "not a count"),
        ({"attachments": "a.txt"}, "not a list of names"),
        ({"id": "x" * 101}, "longer than 100"),
    ],
)
def test_a_bad_message_of_an_array_is_named_with_its_index(
    tmp_path: Path, broken: dict[str, Any], problem: str
) -> None:
    good = {"id": "a", "author": "Ana", "time": "2026-03-01T09:00:00Z", "content": "hi"}
    bad = {k: v for k, v in {**good, "id": "b", **broken}.items() if v is not None}
    with pytest.raises(InvalidInputError) as info:
        _plain(tmp_path, {"messages": [good, good, bad]})
    assert "message at index 2" in str(info.value) and problem in str(info.value)
    assert info.value.field == "messages/2"
    with pytest.raises(InvalidInputError) as bare:
        _plain(tmp_path, [good, bad])
    assert bare.value.field == "1"
    with pytest.raises(InvalidInputError, match="message at index 0 is not a JSON object"):
        _plain(tmp_path, [1, 2, 3])
