"""The streaming planner: blocks, packing, chunk-local aliases, stable hashes, statistics."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest

from shared.domain.messages import ChannelInfo, ChatMessage
from shared.llm.tokens import count_tokens
from shared.summarize.llm.plan import (
    Planner,
    WindowStats,
    iter_blocks,
    realias,
    transcript_of,
)
from shared.summarize.transcript import TranscriptOptions, build_transcript
from tests.support.irc import read_irc_log

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "irc-dev"
CHANNEL = ChannelInfo(channel_id="42", channel_name="help", guild_id="7")
T0 = datetime(2024, 5, 1, 10, 0, tzinfo=UTC)


def _msg(
    i: int, minutes: float, author: str = "ann", text: str = "hello there", **kw
) -> ChatMessage:  # type: ignore[no-untyped-def]
    return ChatMessage(
        id=str(1000 + i),
        channel_id="42",
        timestamp=T0 + timedelta(minutes=minutes),
        author_id=f"u-{author}",
        author_name=author,
        content=text,
        **kw,
    )


def _days(first: date, count: int) -> list[ChatMessage]:
    raws = sorted(FIXTURES.glob("*.raw.txt"))
    messages: list[ChatMessage] = []
    day = first
    for run in range(count):
        raw = raws[run % len(raws)]
        log = read_irc_log(raw, None, day=day, seed=run, guild_id="7", channel_id="42")
        messages.extend(log.messages)
        day = log.messages[-1].timestamp.date() + timedelta(days=1)
    return messages


def _planner(**kw) -> Planner:  # type: ignore[no-untyped-def]
    values = {
        "options": TranscriptOptions(),
        "chunk_tokens": 1500,
        "block_messages": 5000,
        "encoding": "o200k_base",
    }
    values.update(kw)
    return Planner(CHANNEL, **values)  # type: ignore[arg-type]


def test_blocks_cut_at_silences_days_and_size() -> None:
    messages = [
        _msg(0, 0),
        _msg(1, 5),
        _msg(2, 5 + 61),  # a silence longer than any segment may span
        _msg(3, 70),
        _msg(4, 14 * 60 - 1),  # 23:59 UTC
        _msg(5, 14 * 60 + 1),  # 00:01 the next day
        _msg(6, 14 * 60 + 2),
        _msg(6, 14 * 60 + 3),  # a repeated id is left out
    ]
    blocks = list(iter_blocks(messages, max_messages=2))
    assert [[m.id for m in b] for b in blocks] == [
        ["1000", "1001"],
        ["1002", "1003"],
        ["1004"],
        ["1005", "1006"],
    ]
    assert [len(b) for b in iter_blocks(messages[:2], max_messages=1)] == [1, 1]


def test_chunks_respect_the_budget_and_cover_every_kept_message() -> None:
    messages = _days(date(2024, 3, 1), 2)
    planner = _planner()
    chunks = list(planner.chunks(messages))
    assert len(chunks) > 5
    assert [c.index for c in chunks] == list(range(len(chunks)))
    for chunk in chunks:
        rendered = transcript_of(chunk.lines, CHANNEL).render()
        assert chunk.tokens == count_tokens(rendered, encoding="o200k_base")
        assert chunk.tokens <= 1500 * 1.15  # the packing estimate is close to exact
        assert [line.alias for line in chunk.lines] == [
            f"m{i}" for i in range(1, len(chunk.lines) + 1)
        ]
    kept = [line.message_id for chunk in chunks for line in chunk.lines]
    assert len(kept) == len(set(kept)) == planner.stats.kept
    assert planner.stats.messages_total == len(messages)
    assert planner.stats.kept + sum(planner.stats.dropped.values()) == len(messages)


def test_chunks_are_counted_with_the_encoding_the_planner_is_given() -> None:
    # A proxy's alias for gpt-4 is counted by the server with cl100k_base: so must the plan.
    messages = _days(date(2024, 3, 1), 1)
    chunks = list(_planner(encoding="cl100k_base").chunks(messages))
    rendered = [transcript_of(chunk.lines, CHANNEL).render() for chunk in chunks]
    assert [c.tokens for c in chunks] == [count_tokens(r, encoding="cl100k_base") for r in rendered]
    assert [c.tokens for c in chunks] != [count_tokens(r, encoding="o200k_base") for r in rendered]


def test_a_day_yields_the_same_chunks_alone_and_inside_a_week() -> None:
    week = _days(date(2024, 3, 1), 4)
    second = sorted({m.timestamp.date() for m in week})[1]
    day_two = [m for m in week if m.timestamp.date() == second]
    alone = {c.content_hash for c in _planner().chunks(day_two)}
    inside = {c.content_hash for c in _planner().chunks(week)}
    assert alone and alone <= inside


def test_replies_and_aliases_are_local_to_a_chunk() -> None:
    messages = [
        _msg(0, 0, "ann", "how do I mount a usb disk?"),
        _msg(1, 1, "bob", "use udisksctl mount -b /dev/sdb1", reply_to="1000"),
        _msg(2, 2, "ann", "that worked", reply_to="1001"),
    ]
    transcript = build_transcript(messages, CHANNEL)
    local = realias(transcript.lines[1:])
    assert [line.alias for line in local] == ["m1", "m2"]
    assert local[0].reply_alias is None  # its target is not in this chunk
    assert local[1].reply_alias == "m1"


def test_a_conversation_larger_than_a_chunk_is_split() -> None:
    long_text = "the build fails with a linker error in libfoo " * 20
    messages = [_msg(i, i * 0.5, "ann" if i % 2 else "bob", long_text) for i in range(60)]
    chunks = list(_planner(chunk_tokens=800).chunks(messages))
    assert len(chunks) >= 5
    assert sum(len(c.lines) for c in chunks) == 60
    assert all(c.tokens <= 800 * 1.2 for c in chunks)


def test_window_stats_round_trip_and_participants() -> None:
    messages = [
        _msg(0, 0, "ann", "hi all"),
        _msg(1, 1, "bob", "hey ann, did the upgrade work?"),
        _msg(2, 2, "ann", "yes it worked after a reboot"),
        _msg(3, 3, "bot", "build passed", is_bot=True),
    ]
    planner = _planner()
    list(planner.chunks(messages))
    stats = planner.stats
    assert stats.kept == 3 and stats.dropped == {"bot": 1}
    assert [(p.name, p.messages) for p in stats.participant_list()] == [("ann", 2), ("bob", 1)]
    again = WindowStats.from_json(stats.to_json())
    assert again.to_json() == stats.to_json()
    assert again.transcript_stats().kept == 3
    assert stats.start == messages[0].timestamp and stats.end == messages[2].timestamp


def test_planner_rejects_nonsense_budgets() -> None:
    with pytest.raises(ValueError, match="positive"):
        _planner(chunk_tokens=0)
