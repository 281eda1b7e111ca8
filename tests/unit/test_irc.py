"""Tests of the IRC log converter, the DCE export writer, the demo export and the perf helper."""

from __future__ import annotations

import io
import itertools
import json
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest

from shared.domain.messages import ChannelInfo, ChatMessage, snowflake_time
from shared.errors import InvalidInputError
from shared.sources.export_file import count_messages, open_export
from tests.perf import export_data
from tests.support import irc
from tests.support.irc import (
    DEMO_CHANNEL,
    MENTION_WINDOW,
    IrcLog,
    build_demo_export,
    nick_user_id,
    read_irc_log,
    snowflake_at,
    write_export,
)

ROOT = Path(__file__).resolve().parents[2]
IRC = ROOT / "tests" / "fixtures" / "irc-dev"
RAW = IRC / "2009-03-03_10.raw.txt"
ANNOTATION = IRC / "2009-03-03_10.annotation.txt"
DEMO = ROOT / "shared" / "data" / "demo" / "ubuntu-support.json"
DAY = date(2025, 3, 3)


@pytest.fixture(scope="module")
def log() -> IrcLog:
    return read_irc_log(RAW, ANNOTATION)


def _raw(tmp_path: Path, lines: list[str], name: str = "2024-02-10_09.raw.txt") -> Path:
    path = tmp_path / name
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def _annotation(tmp_path: Path, links: list[tuple[int, int]]) -> Path:
    path = tmp_path / "2024-02-10_09.annotation.txt"
    path.write_text("".join(f"{a} {b} -\n" for a, b in links), encoding="utf-8")
    return path


# --- ids, times, order -----------------------------------------------------------------------


def test_every_line_becomes_a_message(log: IrcLog) -> None:
    lines = RAW.read_text(encoding="utf-8").splitlines()
    assert len(log.messages) == len(lines) == len(log.line_ids) == 1250
    assert [m.id for m in log.messages] == log.line_ids
    assert [m.extra["line"] for m in log.messages] == list(range(1250))
    assert log.messages[4].content == lines[4].split("> ", 1)[1]


def test_ids_encode_time_and_increase(log: IrcLog) -> None:
    ids = [int(i) for i in log.line_ids]
    assert ids == sorted(ids)
    assert len(set(ids)) == len(ids)
    for message in log.messages:
        assert snowflake_time(message.id) == message.timestamp
        assert message.timestamp.tzinfo is not None
    times = [m.timestamp for m in log.messages]
    assert times == sorted(times)


def test_default_day_moves_old_logs_into_the_discord_era(log: IrcLog) -> None:
    # 2009-03-03 precedes snowflakes (2015); month, day and times are kept.
    assert log.messages[0].timestamp == datetime(2015, 3, 3, 6, 22, tzinfo=UTC)
    recent = read_irc_log(IRC / "2016-12-19_20.raw.txt")
    assert recent.messages[0].timestamp.date() == date(2016, 12, 19)


def test_leap_day_of_an_old_log(tmp_path: Path) -> None:
    raw = _raw(tmp_path, ["[10:00] <a> hi"], name="2008-02-29_10.raw.txt")
    assert read_irc_log(raw).messages[0].timestamp.date() == date(2016, 2, 29)


def test_lines_of_one_minute_are_spread_over_it(log: IrcLog) -> None:
    # lines 0-2 share [06:22], line 3 is [06:23]
    offsets = [m.timestamp.second for m in log.messages[:4]]
    assert offsets == [0, 20, 40, 0]


def test_explicit_day_and_ids(tmp_path: Path) -> None:
    raw = _raw(tmp_path, ["[10:00] <alice> hello", "[10:00] <bob> hi", "[10:01] <alice> ok"])
    result = read_irc_log(raw, day=DAY, channel_id="42", guild_id="7", channel_name="c")
    first = result.messages[0]
    assert first.timestamp == datetime(2025, 3, 3, 10, 0, tzinfo=UTC)
    assert result.messages[1].timestamp == datetime(2025, 3, 3, 10, 0, 30, tzinfo=UTC)
    ms = int(first.timestamp.timestamp() * 1000)
    assert first.id == str((ms - 1420070400000) << 22)
    assert result.messages[2].id == snowflake_at(ms + 60_000, 2)
    assert all(m.channel_id == "42" for m in result.messages)
    assert result.channel == ChannelInfo("42", "c", guild_id="7", guild_name="Ubuntu IRC")


def test_day_before_discord_epoch_is_refused(tmp_path: Path) -> None:
    raw = _raw(tmp_path, ["[10:00] <alice> hello"])
    with pytest.raises(InvalidInputError, match="precedes the Discord epoch"):
        read_irc_log(raw, day=date(2014, 12, 31))
    with pytest.raises(InvalidInputError, match="precedes the Discord epoch"):
        snowflake_at(0)


def test_day_needed_when_the_name_has_no_date(tmp_path: Path) -> None:
    raw = _raw(tmp_path, ["[10:00] <alice> hello"], name="channel.log")
    with pytest.raises(InvalidInputError, match="no date"):
        read_irc_log(raw)
    assert read_irc_log(raw, day=DAY).messages[0].timestamp.date() == DAY


def test_twelve_hour_clock_and_midnight_roll_over(tmp_path: Path) -> None:
    raw = _raw(
        tmp_path,
        [
            "[12:58] <a> noon-ish",
            "[12:59] <a> still",
            "[01:00] <a> twelve-hour clock wraps",
            "[11:59] <a> late",
            "[00:00] <a> after midnight",
            "[23:59] <a> next evening",
            "[00:01] <a> second midnight",
        ],
    )
    times = [m.timestamp for m in read_irc_log(raw, day=DAY).messages]
    start = datetime(2025, 3, 3, tzinfo=UTC)
    assert times == [
        start + timedelta(hours=12, minutes=58),
        start + timedelta(hours=12, minutes=59),
        start + timedelta(hours=13),
        start + timedelta(hours=23, minutes=59),
        start + timedelta(days=1),
        start + timedelta(days=1, hours=23, minutes=59),
        start + timedelta(days=2, minutes=1),
    ]


def test_small_clock_glitch_keeps_order(tmp_path: Path) -> None:
    raw = _raw(tmp_path, ["[10:05] <a> one", "[10:04] <b> two", "[10:06] <a> three"])
    messages = read_irc_log(raw, day=DAY).messages
    assert [m.timestamp.strftime("%H:%M") for m in messages] == ["10:05", "10:05", "10:06"]
    assert messages[0].timestamp < messages[1].timestamp


def test_untimed_lines_take_the_neighbouring_minute(tmp_path: Path) -> None:
    raw = _raw(
        tmp_path,
        [
            "=== early [~e@host]  has joined #ubuntu",
            "[10:00] <a> first timed",
            "=== a is now known as a_",
            "[10:01] <a_> later",
        ],
    )
    messages = read_irc_log(raw, day=DAY).messages
    assert [m.timestamp.strftime("%H:%M:%S") for m in messages] == [
        "10:00:00",
        "10:00:20",
        "10:00:40",
        "10:01:00",
    ]


def test_more_lines_than_milliseconds_in_a_minute_still_increase() -> None:
    # _times_ms keeps strictly increasing times even when a minute is oversubscribed
    times = irc._times_ms(DAY, [5] * 60_001)
    assert all(b > a for a, b in itertools.pairwise(times))


# --- line kinds, authors, mentions ---------------------------------------------------------------


def test_line_kinds(tmp_path: Path) -> None:
    raw = _raw(
        tmp_path,
        [
            "[10:00] <alice> hello all",
            "[10:00] <bob>",
            "[10:01]  * carol waves",
            "[10:01]  * dave",
            "=== erin [~erin@host.example]  has joined #ubuntu",
            "=== frank [~f@host]  has left #ubuntu [Leaving]",
            "=== gina [~g@host]  has left #ubuntu []",
            "=== alice is now known as alice_away",
            "=== ogra thinks regarding this chat",
            "=== matt|",
            "[10:02] <ubottu> alice: see https://help.ubuntu.com",
            "[10:02] <FloodBot1> please do not flood",
        ],
    )
    messages = read_irc_log(raw, day=DAY).messages
    summary = [(m.kind, m.author_name, m.content) for m in messages]
    assert summary == [
        ("Default", "alice", "hello all"),
        ("Default", "bob", ""),
        ("Default", "carol", "_waves_"),
        ("Default", "dave", ""),
        ("GuildMemberJoin", "erin", "Joined the server."),
        ("RecipientRemove", "frank", "Left #ubuntu (Leaving)."),
        ("RecipientRemove", "gina", "Left #ubuntu."),
        ("RecipientAdd", "alice_away", "alice is now known as alice_away"),
        ("Default", "ogra", "_thinks regarding this chat_"),
        ("Default", "matt|", ""),
        ("Default", "ubottu", "alice: see https://help.ubuntu.com"),
        ("Default", "FloodBot1", "please do not flood"),
    ]
    assert [m.is_system for m in messages][4:8] == [True, True, True, True]
    assert [m.is_bot for m in messages] == [False] * 10 + [True, True]


def test_unknown_line_is_an_error(tmp_path: Path) -> None:
    raw = _raw(tmp_path, ["[10:00] <a> fine", "garbage line"])
    with pytest.raises(InvalidInputError, match=r"line 1 is not an IRC log line"):
        read_irc_log(raw, day=DAY)


def test_missing_raw_file(tmp_path: Path) -> None:
    with pytest.raises(InvalidInputError, match="cannot read the IRC log"):
        read_irc_log(tmp_path / "2024-01-01_00.raw.txt")


def test_author_ids_are_stable_hashes() -> None:
    assert nick_user_id("Flannel") == nick_user_id("flannel")
    assert nick_user_id("Flannel") != nick_user_id("Titan8990")
    for nick in ("Flannel", "x", "ünïcödé", "[francof]"):
        user_id = nick_user_id(nick)
        assert len(user_id) == 18
        assert user_id.isdigit()
    assert nick_user_id("Flannel") == "226584926187871677"  # stable across runs and versions


def test_author_ids_in_log(log: IrcLog) -> None:
    flannel = [m for m in log.messages if m.author_name == "Flannel"]
    assert flannel
    assert {m.author_id for m in flannel} == {nick_user_id("Flannel")}


def test_addressing_a_recent_speaker_is_a_mention(tmp_path: Path) -> None:
    raw = _raw(
        tmp_path,
        [
            "[10:00] <Alice> my wifi is broken",
            "[10:00] <bob> alice: which card?",
            "[10:01] <bob> carol, are you there?",
            "[10:01] <Alice> bob , an intel one",
            "[10:01] <bob> http://example.com has a guide",
            "[10:02] <bob> Yes, it is known",
            "[10:02] <bob> Alice:",
            "[10:02]  * bob pokes Alice: hard",
        ],
    )
    mentions = [m.mentions for m in read_irc_log(raw, day=DAY).messages]
    assert mentions == [(), ("Alice",), (), ("bob",), (), (), ("Alice",), ()]


def test_mentions_expire_after_the_window(tmp_path: Path) -> None:
    filler = [f"[10:{i // 60 % 60:02d}] <bob> line {i}" for i in range(MENTION_WINDOW)]
    lines = ["[09:59] <alice> hi", *filler, "[11:00] <bob> alice: still there?"]
    messages = read_irc_log(_raw(tmp_path, lines), day=DAY).messages
    assert messages[-1].mentions == ()
    lines = ["[09:59] <alice> hi", *filler[:-1], "[11:00] <bob> alice: still there?"]
    messages = read_irc_log(_raw(tmp_path, lines), day=DAY).messages
    assert messages[-1].mentions == ("alice",)


def test_fixture_addressing(log: IrcLog) -> None:
    # [06:28] <nickrud> paulSterio, why? ...  (paulSterio spoke a minute earlier)
    line = next(i for i, m in enumerate(log.messages) if m.content.startswith("paulSterio, why?"))
    assert log.messages[line].mentions == ("paulSterio",)
    # line 3 addresses Flannel before Flannel has spoken: no mention
    assert log.messages[3].content.startswith("Flannel, sorry")
    assert log.messages[3].mentions == ()


# --- gold links and replies ----------------------------------------------------------------------


def _candidates(result: IrcLog) -> dict[int, int]:
    parents: dict[int, int] = {}
    for parent, child in result.gold_links:
        if (
            parent < child
            and not result.messages[parent].is_system
            and not result.messages[child].is_system
        ):
            parents[child] = max(parents.get(child, parent), parent)
    return parents


def test_gold_links_are_read(log: IrcLog) -> None:
    lines = [line.split() for line in ANNOTATION.read_text(encoding="utf-8").splitlines()]
    expected = sorted({(int(a), int(b)) for a, b, *_ in lines})
    assert log.gold_links == expected
    assert (969, 1119) in log.gold_links
    assert any(a == b for a, b in log.gold_links)  # conversation starts are kept


def test_half_of_the_linked_messages_become_replies(log: IrcLog) -> None:
    parents = _candidates(log)
    assert len(log.reply_lines) == round(0.5 * len(parents))
    assert log.reply_lines <= set(parents)
    for i, message in enumerate(log.messages):
        if i in log.reply_lines:
            assert message.kind == "Reply"
            assert message.reply_to == log.line_ids[parents[i]]  # the nearest gold parent
        else:
            assert message.reply_to is None
            assert message.kind != "Reply"


def test_reply_choice_is_seeded() -> None:
    again = read_irc_log(RAW, ANNOTATION)
    assert again.reply_lines == read_irc_log(RAW, ANNOTATION, seed=0).reply_lines
    other = read_irc_log(RAW, ANNOTATION, seed=1)
    assert other.reply_lines != again.reply_lines
    assert len(other.reply_lines) == len(again.reply_lines)
    assert other.line_ids == again.line_ids


@pytest.mark.parametrize(("fraction", "share"), [(0.0, 0.0), (0.25, 0.25), (1.0, 1.0)])
def test_reply_fraction(fraction: float, share: float) -> None:
    result = read_irc_log(RAW, ANNOTATION, reply_fraction=fraction)
    assert len(result.reply_lines) == round(share * len(_candidates(result)))


def test_reply_fraction_out_of_range() -> None:
    with pytest.raises(InvalidInputError, match="reply_fraction"):
        read_irc_log(RAW, ANNOTATION, reply_fraction=1.5)


def test_links_to_system_lines_never_become_replies(tmp_path: Path) -> None:
    raw = _raw(
        tmp_path,
        [
            "[10:00] <a> question",
            "=== b [~b@h]  has joined #ubuntu",
            "[10:01] <b> answer",
            "[10:01] <a> thanks",
        ],
    )
    annotation = _annotation(tmp_path, [(0, 0), (1, 2), (0, 2), (2, 3), (0, 3)])
    result = read_irc_log(raw, annotation, day=DAY, reply_fraction=1.0)
    assert result.reply_lines == frozenset({2, 3})
    assert result.messages[2].reply_to == result.line_ids[0]  # not the join line
    assert result.messages[3].reply_to == result.line_ids[2]  # nearest of 0 and 2
    assert result.gold_links == [(0, 0), (0, 2), (0, 3), (1, 2), (2, 3)]


def test_no_annotation_means_no_links(tmp_path: Path) -> None:
    result = read_irc_log(_raw(tmp_path, ["[10:00] <a> x"]), day=DAY)
    assert result.gold_links == []
    assert result.reply_lines == frozenset()


@pytest.mark.parametrize(
    ("content", "error"),
    [
        ("0 7 -\n", "only 2 lines"),
        ("zero one -\n", "line 0 is not 'A B -'"),
        ("5\n", "line 0 is not 'A B -'"),
    ],
)
def test_bad_annotation(tmp_path: Path, content: str, error: str) -> None:
    raw = _raw(tmp_path, ["[10:00] <a> x", "[10:00] <b> y"])
    annotation = tmp_path / "bad.annotation.txt"
    annotation.write_text(content, encoding="utf-8")
    with pytest.raises(InvalidInputError, match=error):
        read_irc_log(raw, annotation, day=DAY)


def test_missing_annotation(tmp_path: Path) -> None:
    raw = _raw(tmp_path, ["[10:00] <a> x"])
    with pytest.raises(InvalidInputError, match="cannot read the annotation"):
        read_irc_log(raw, tmp_path / "missing.txt", day=DAY)


def test_blank_annotation_lines_are_skipped(tmp_path: Path) -> None:
    raw = _raw(tmp_path, ["[10:00] <a> x", "[10:00] <b> y"])
    annotation = tmp_path / "a.txt"
    annotation.write_text("\n0 1 -\n\n", encoding="utf-8")
    assert read_irc_log(raw, annotation, day=DAY).gold_links == [(0, 1)]


# --- write_export ---------------------------------------------------------------------------------


def _rich_messages() -> list[ChatMessage]:
    when = datetime(2025, 3, 3, 9, 30, 15, 250000, tzinfo=UTC)
    first = ChatMessage(
        id=snowflake_at(int(when.timestamp() * 1000)),
        channel_id="1194325511418032185",
        timestamp=when,
        author_id="402155861512617986",
        author_name="Zoë",
        content="Grüße — see the log 日本語",
        attachments=("dmesg.txt", "screen shot.png"),
        embeds=("Wiki: Wi-Fi",),
        reactions=3,
        is_pinned=True,
        edited=True,
    )
    later = when + timedelta(seconds=1, microseconds=123)
    second = ChatMessage(
        id=snowflake_at(int(later.timestamp() * 1000)),
        channel_id="1194325511418032185",
        timestamp=later,
        author_id="1040019846224060426",
        author_name="HelpBot",
        content="Zoë: try this",
        kind="Reply",
        is_bot=True,
        reply_to=first.id,
        mentions=("Zoë", "stranger"),
    )
    return [first, second]


def test_write_export_layout() -> None:
    out = io.StringIO()
    count = write_export(
        iter(_rich_messages()),
        DEMO_CHANNEL,
        out,
        exported_at=datetime(2025, 3, 3, 12, 0, tzinfo=UTC),
    )
    assert count == 2
    text = out.getvalue()
    doc = json.loads(text)
    assert list(doc) == [
        "guild",
        "channel",
        "dateRange",
        "exportedAt",
        "messages",
        "messageCount",
    ]
    assert doc["guild"] == {
        "id": DEMO_CHANNEL.guild_id,
        "name": "Ubuntu Support (demo)",
        "iconUrl": None,
    }
    assert doc["channel"]["name"] == "ubuntu-help"
    assert doc["channel"]["type"] == "GuildTextChat"
    assert doc["exportedAt"] == "2025-03-03T12:00:00+00:00"
    assert doc["messageCount"] == 2
    first, second = doc["messages"]
    assert first["timestamp"] == "2025-03-03T09:30:15.250+00:00"
    assert first["timestampEdited"] == first["timestamp"]
    assert [a["fileName"] for a in first["attachments"]] == ["dmesg.txt", "screen shot.png"]
    assert first["reactions"][0]["count"] == 3
    assert "reference" not in first
    assert second["timestamp"] == "2025-03-03T09:30:16.250123+00:00"
    assert second["reference"] == {
        "type": "Default",
        "messageId": first["id"],
        "channelId": DEMO_CHANNEL.channel_id,
        "guildId": DEMO_CHANNEL.guild_id,
    }
    assert second["author"]["isBot"] is True
    # a mentioned author gets the id seen earlier in the stream, a stranger a hashed one
    assert second["mentions"][0]["id"] == "402155861512617986"
    assert second["mentions"][1]["id"] == nick_user_id("stranger")
    assert "日本語" in text  # non-ASCII is written literally, like DCE
    assert text.startswith('{\n  "guild": {\n    "id": ')
    assert text.endswith('  ],\n  "messageCount": 2\n}\n')


def test_write_export_empty_and_direct_messages() -> None:
    out = io.StringIO()
    channel = ChannelInfo("1110325469417095209", "bob", kind="DirectTextChat")
    assert write_export([], channel, out) == 0
    doc = json.loads(out.getvalue())
    assert doc["messages"] == []
    assert doc["messageCount"] == 0
    assert doc["guild"]["id"] == "0"
    assert doc["guild"]["name"] == "Direct Messages"
    exported = datetime.fromisoformat(doc["exportedAt"])
    assert abs(exported - datetime.now(UTC)) < timedelta(minutes=1)


def test_round_trip_through_open_export(tmp_path: Path) -> None:
    thread = ChannelInfo(
        channel_id="1239963911265288232",
        channel_name="Wi-Fi drops",
        guild_id="1039614211843375154",
        guild_name="Linux Helpers",
        kind="GuildPublicThread",
        parent_id="1039614212883562537",
        topic="help",
    )
    messages = [replace(m, channel_id=thread.channel_id) for m in _rich_messages()]
    path = tmp_path / "round.json"
    with path.open("w", encoding="utf-8") as out:
        write_export(messages, thread, out)
    with open_export(path) as export:
        assert export.channel == thread
        assert list(export.iter_messages()) == messages
    assert count_messages(path) == 2


def test_irc_log_round_trip(tmp_path: Path, log: IrcLog) -> None:
    path = tmp_path / "irc.json"
    with path.open("w", encoding="utf-8") as out:
        assert write_export(log.messages, log.channel, out) == len(log.messages)
    with open_export(path) as export:
        assert list(export.iter_messages()) == log.messages
        assert export.channel == log.channel


def test_non_numeric_ids_are_written(tmp_path: Path) -> None:
    message = ChatMessage(
        id="m-1",
        channel_id="c",
        timestamp=datetime(2025, 1, 1, tzinfo=UTC),
        author_id="someone",
        author_name="Someone",
        content="x",
        attachments=("a.txt",),
    )
    out = io.StringIO()
    write_export([message], ChannelInfo("c", "chan"), out)
    (written,) = json.loads(out.getvalue())["messages"]
    assert written["attachments"][0]["id"] == "m-1-0"
    assert written["author"]["avatarUrl"].endswith("/0.png")


# --- the bundled demo ------------------------------------------------------------------------------


def test_demo_export_is_reproducible(tmp_path: Path) -> None:
    out = tmp_path / "demo.json"
    assert build_demo_export(RAW, ANNOTATION, out) == 1250
    assert out.read_bytes() == DEMO.read_bytes()


def test_demo_export_content() -> None:
    with open_export(DEMO) as export:
        assert export.channel == DEMO_CHANNEL
        messages = list(export.iter_messages())
    assert len(messages) == count_messages(DEMO) == 1250
    assert messages[0].timestamp.date() == date(2025, 3, 3)
    replies = [m for m in messages if m.reply_to]
    linked = _candidates(read_irc_log(RAW, ANNOTATION))
    assert len(replies) == round(0.5 * len(linked))
    assert all(m.kind == "Reply" for m in replies)
    assert any(m.is_bot and m.author_name == "ubottu" for m in messages)


# --- tests/perf/export_data.py --------------------------------------------------------------------


def test_build_large_export(tmp_path: Path) -> None:
    n = 2 * 1250 + 777  # crosses two logs and stops inside the third
    path = export_data.build_large_export(tmp_path / "large.json", n, seed=3)
    assert count_messages(path) == n
    with open_export(path) as export:
        messages = list(export.iter_messages())
    ids = [int(m.id) for m in messages]
    assert ids == sorted(ids)
    assert len(set(ids)) == n
    assert messages[0].timestamp.date() == export_data.START_DAY
    # each log starts on the day after the previous one ended
    assert messages[1250].timestamp.date() > messages[1249].timestamp.date()
    again = export_data.build_large_export(tmp_path / "again.json", n, seed=3)
    assert again.read_bytes() == path.read_bytes()


def test_build_large_export_edge_sizes(tmp_path: Path) -> None:
    assert count_messages(export_data.build_large_export(tmp_path / "zero.json", 0)) == 0
    with pytest.raises(ValueError, match="n_messages"):
        export_data.build_large_export(tmp_path / "neg.json", -1)


def test_export_data_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "cli.json"
    assert export_data.main([str(out), "300"]) == 0
    figures = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert figures["messages"] == 300
    assert figures["bytes"] == out.stat().st_size
    assert count_messages(out) == 300
    assert export_data.main(["only-one-arg"]) == 2
    assert "usage" in capsys.readouterr().err


def test_lines_split_at_newlines_only(tmp_path: Path) -> None:
    # Real logs (2008-07-14_18, 2010-08-17_18) hold \x1c and U+2028 inside a line, where
    # str.splitlines would split and shift every later line against the gold links.
    raw = _raw(
        tmp_path,
        [
            "[09:00] <alice> file sep \x1c inside",
            "[09:01] <bob> para\u2028sep",
            "[09:02] <carol> ok",
        ],
    )
    annotation = _annotation(tmp_path, [(0, 0), (1, 2)])
    parsed = read_irc_log(raw, annotation, day=DAY, reply_fraction=1.0)
    assert [m.author_name for m in parsed.messages] == ["alice", "bob", "carol"]
    assert parsed.messages[2].reply_to == parsed.messages[1].id
    assert irc.log_lines("a\r\nb\n") == ["a", "b"] and irc.log_lines("") == []
