"""Composing a multi-channel summary from its channels' summaries (pure, no I/O)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from shared.delivery.discord_render import render_messages
from shared.summarize.content import (
    ActionItem,
    Citation,
    CitedPoint,
    Coverage,
    Participant,
    SummaryContent,
    SummaryFormat,
    Topic,
)
from shared.summarize.digest import ChannelPart, Involvement, compose_digest
from shared.summarize.render import render_markdown, render_text

T0 = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)


def _content(channel: str, prefix: str, n: int, *, decisions: int = 0) -> SummaryContent:
    ids = [f"{prefix}{i:03d}" for i in range(n)]
    return SummaryContent(
        format=SummaryFormat.STRUCTURED,
        overview=f"{channel} talked about {prefix} things.",
        topics=[Topic(title=f"{prefix} topic", summary="details", message_ids=ids[:2])],
        key_points=[CitedPoint(text=f"{prefix} point {i}", message_ids=[ids[i]]) for i in range(3)],
        decisions=[
            CitedPoint(text=f"{prefix} decided {i}", message_ids=ids[i : i + 3])
            for i in range(decisions)
        ],
        action_items=[ActionItem(task=f"{prefix} will ship", owner="sam", message_ids=[ids[0]])],
        participants=[Participant(id="1", name="sam", messages=n)],
        citations={
            i: Citation(message_id=i, author="sam", timestamp=T0, jump_url=f"https://d/{i}")
            for i in ids
        },
        coverage=Coverage(
            messages_total=n,
            messages_used=n,
            messages_skipped=0,
            start=T0,
            end=T0 + timedelta(hours=n),
            channel_id=prefix,
            channel_name=channel,
            guild_id="9",
        ),
        backend="extractive",
    )


def _digest(parts: list[ChannelPart], *, reader_first: bool = False) -> SummaryContent:
    return compose_digest(
        parts,
        scope_id="9",
        scope_name="Acme",
        guild_id="9",
        window_start=T0,
        window_end=T0 + timedelta(days=1),
        format=SummaryFormat.STRUCTURED,
        reader_first=reader_first,
    )


def test_sections_by_activity_quiet_channels_named_and_citations_kept() -> None:
    parts = [
        ChannelPart("1", "dev", None, _content("dev", "d", 10, decisions=1)),
        ChannelPart("2", "random", None, _content("random", "r", 40)),
        ChannelPart("3", "music", None, None),
        ChannelPart("4", "release", "dev", _content("release", "t", 5)),
    ]
    digest = _digest(parts)
    assert [s.channel_name for s in digest.channels] == ["random", "dev", "release"]
    assert digest.channels[2].label == "#dev › release"
    assert digest.quiet_channels == ["music"]
    assert digest.coverage.messages_total == 55
    assert digest.participants == [Participant(id="1", name="sam", messages=55)]
    assert digest.cited_ids() <= set(digest.citations)
    assert "55 messages from 1 people in 3 channels" in digest.overview
    assert "1 channel had nothing new" in digest.overview


def test_what_matters_most_prefers_decisions_and_caps_each_channel() -> None:
    parts = [
        ChannelPart("1", "dev", None, _content("dev", "d", 10, decisions=3)),
        ChannelPart("2", "random", None, _content("random", "r", 10)),
    ]
    top = _digest(parts).key_points
    assert top[0].text.startswith("#dev: d decided")
    assert sum(p.text.startswith("#dev:") for p in top) == 2
    assert any(p.text.startswith("#random:") for p in top)


def test_a_catch_up_puts_what_involves_the_reader_first() -> None:
    involved = Involvement(mentions=1, replies=0, took_part=False, message_ids=frozenset({"q002"}))
    parts = [
        ChannelPart("1", "busy", None, _content("busy", "b", 60, decisions=2)),
        ChannelPart("2", "quiet-ish", None, _content("quiet-ish", "q", 4), involved),
    ]
    digest = _digest(parts, reader_first=True)
    assert digest.channels[0].channel_name == "quiet-ish"
    assert digest.channels[0].involves_reader == 1
    assert digest.key_points[0].text == "#quiet-ish: q point 2"
    assert "You were mentioned or answered 1 times, in #quiet-ish" in digest.overview


def test_every_renderer_shows_the_sections_and_the_quiet_line() -> None:
    parts = [
        ChannelPart("1", "dev", None, _content("dev", "d", 10, decisions=1)),
        ChannelPart("3", "music", None, None),
    ]
    digest = _digest(parts)
    text = render_text(digest)
    assert "Digest of Acme (structured)" in text
    assert "What matters most" in text
    assert "#dev · 10 messages" in text
    assert "Decision: d decided 0" in text
    assert "Nothing new" in text and "#music" in text
    markdown = render_markdown(digest)
    assert "## #dev · 10 messages" in markdown
    assert "(https://d/d000)" in markdown
    embeds = [e for m in render_messages(digest) for e in m.embeds]
    assert embeds[0].title == "Digest of Acme (structured)"
    assert any(e.title == "Nothing new" for e in embeds)


def test_a_long_digest_is_split_across_messages_within_discord_limits() -> None:
    parts = [
        ChannelPart(str(i), f"channel-{i}", None, _content(f"channel-{i}", f"c{i}x", 30))
        for i in range(40)
    ]
    messages = render_messages(_digest(parts))
    assert len(messages) > 1
    for message in messages:
        assert len(message.embeds) <= 10
        assert sum(len(e.description or "") + len(e.title or "") for e in message.embeds) <= 6000


def test_nothing_new_anywhere() -> None:
    digest = _digest([ChannelPart("3", "music", None, None)])
    assert digest.channels == [] and digest.quiet_channels == ["music"]
    assert digest.overview == "Nothing new in the 1 channels covered."


def test_decisions_and_action_items_come_before_plain_points_whatever_the_channel_size() -> None:
    busy = _content("general", "g", 30)
    busy = busy.model_copy(
        update={
            "key_points": [
                CitedPoint(text="g point everyone chatted about", message_ids=list(busy.citations))
            ],
            "action_items": [],
            "coverage": busy.coverage.model_copy(update={"messages_total": 5000}),
        }
    )
    small = _content("ops", "o", 3, decisions=1)
    top = _digest(
        [ChannelPart("1", "general", None, busy), ChannelPart("2", "ops", None, small)]
    ).key_points
    texts = [p.text for p in top]
    assert texts[:2] == ["#ops: o decided 0", "#ops: o will ship"]
    assert "#general: g point everyone chatted about" in texts[2:]
