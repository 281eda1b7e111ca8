"""Topic segmentation: reply links, addressing, authors, words and time gaps."""

from __future__ import annotations

import random
import time
from datetime import UTC, datetime, timedelta

import pytest

from shared.domain.messages import ChatMessage
from shared.errors import InvalidInputError
from shared.summarize.segment import (
    MAX_GAP_SECONDS,
    MIN_GAP_SECONDS,
    Segment,
    adaptive_gap_seconds,
    segment_messages,
    time_gap_baseline,
)

T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)


def msg(
    mid: str,
    author: str,
    text: str,
    seconds: float,
    *,
    channel: str = "c1",
    **extra: object,
) -> ChatMessage:
    return ChatMessage(
        id=mid,
        channel_id=channel,
        timestamp=T0 + timedelta(seconds=seconds),
        author_id=f"u-{author}",
        author_name=author,
        content=text,
        **extra,  # type: ignore[arg-type]
    )


def groups(segments: list[Segment]) -> set[frozenset[str]]:
    return {frozenset(s.message_ids) for s in segments}


def together(segments: list[Segment], *ids: str) -> bool:
    return any(set(ids) <= set(s.message_ids) for s in segments)


def test_reply_links_join_interleaved_messages_even_across_a_long_gap() -> None:
    messages = [
        msg("1", "alice", "my postgres replica lags behind", 0),
        msg("2", "bob", "anyone seen the new logo drafts", 10),
        msg("3", "carol", "looks great to me", 20, reply_to="2"),
        # Three hours later a reply to alice's first message: still her conversation.
        msg("4", "dave", "check wal_keep_size", 3 * 3600, reply_to="1"),
    ]
    segments = segment_messages(messages)
    assert together(segments, "1", "4")
    assert together(segments, "2", "3")
    assert not together(segments, "1", "2")


def test_a_reply_to_a_later_message_still_joins_it() -> None:
    messages = [
        msg("1", "alice", "deploy is done", 0, reply_to="2"),
        msg("2", "bob", "ping me when the deploy is done", 5),
        msg("3", "carol", "unrelated: lunch at noon anyone", 6),
    ]
    segments = segment_messages(messages)
    assert together(segments, "1", "2")
    assert not together(segments, "1", "3")


def test_a_long_silence_splits_even_the_same_people_and_words() -> None:
    messages = [
        msg("1", "alice", "the kernel module build fails", 0),
        msg("2", "alice", "kernel module build still fails", 30),
        msg("3", "alice", "kernel module build fails again today", 3 * 3600),
    ]
    segments = segment_messages(messages)
    assert groups(segments) == {frozenset({"1", "2"}), frozenset({"3"})}
    assert segments[0].start == messages[0].timestamp
    assert segments[0].end == messages[1].timestamp
    assert len(segments[0]) == 2


def test_max_gap_seconds_overrides_the_adaptive_threshold() -> None:
    messages = [
        msg("1", "alice", "the kernel module build fails", 0),
        msg("2", "alice", "kernel module build still fails", 600),
    ]
    assert len(segment_messages(messages)) == 1
    assert len(segment_messages(messages, max_gap_seconds=300)) == 2


def test_irc_style_addressing_attaches_to_the_addressed_speakers_conversation() -> None:
    messages = [
        msg("1", "alice", "how do I resize an ext4 partition", 0),
        msg("2", "bob", "what is the best irc client", 10),
        msg("3", "carol", "alice: use resize2fs after growing it", 20),
        msg("4", "dave", "bob, weechat is nice", 30),
        msg("5", "erin", "Alice, also back up first", 40),
    ]
    segments = segment_messages(messages)
    assert together(segments, "1", "3", "5")
    assert together(segments, "2", "4")
    assert not together(segments, "1", "2")


def test_a_shortened_nick_addresses_its_unique_owner() -> None:
    messages = [
        msg("1", "paulSterio", "what is gcc?", 0),
        msg("2", "zed", "my wifi drops every hour", 5),
        msg("3", "nickrud", "paul: the gnu c compiler", 10),
    ]
    assert together(segment_messages(messages), "1", "3")


def test_mentions_attach_to_the_mentioned_speaker_and_prefer_a_shared_conversation() -> None:
    messages = [
        msg("1", "alice", "the staging deploy is red", 0),
        msg("2", "bob", "looking at the deploy logs", 5, mentions=("alice",)),
        msg("3", "carol", "who owns the billing cron?", 10),
        msg("4", "bob", "I do, it moved to the new host", 15, mentions=("carol",)),
        # bob's latest message is in carol's thread, but alice shares the deploy one with him.
        msg("5", "alice", "found it: a missing env var", 20, mentions=("bob",)),
    ]
    segments = segment_messages(messages)
    assert together(segments, "1", "2", "5")
    assert together(segments, "3", "4")
    assert not together(segments, "1", "4")


def test_at_mentions_in_the_text_count_as_addressing() -> None:
    messages = [
        msg("1", "alice", "pushing the release branch now", 0),
        msg("2", "bob", "is the printer on floor 3 jammed again?", 5),
        msg("3", "carol", "thanks @alice, tag it v1.2.0 please", 10),
    ]
    segments = segment_messages(messages)
    assert together(segments, "1", "3")
    assert not together(segments, "2", "3")


def test_the_same_author_continues_their_own_conversation() -> None:
    messages = [
        msg("1", "alice", "my laptop will not suspend", 0),
        msg("2", "bob", "anyone tried the new vim release", 5),
        msg("3", "alice", "it just wakes up again instantly", 20),
    ]
    segments = segment_messages(messages)
    assert together(segments, "1", "3")
    assert not together(segments, "1", "2")


def test_lexical_similarity_joins_a_newcomer_to_the_matching_conversation() -> None:
    messages = [
        msg("1", "alice", "nvidia driver black screen after upgrade", 0),
        msg("2", "bob", "how to mount a samba share at boot", 5),
        msg("3", "carol", "fstab entry with cifs credentials file works", 10),
        msg("4", "dave", "nvidia driver black screen here too since the upgrade", 20),
    ]
    segments = segment_messages(messages)
    assert together(segments, "1", "4")
    assert not together(segments, "2", "4")


def test_an_unrelated_newcomer_in_a_busy_channel_starts_a_new_conversation() -> None:
    messages = [
        msg("1", "alice", "nvidia driver black screen after upgrade", 0),
        msg("2", "bob", "how to mount a samba share at boot", 5),
        msg("3", "carol", "bob: fstab entry with cifs credentials", 10),
        msg("4", "dave", "is there a tool to rename photos by exif date", 15),
    ]
    segments = segment_messages(messages)
    assert frozenset({"4"}) in groups(segments)


def test_a_quiet_two_person_dialogue_stays_one_conversation() -> None:
    messages = [
        msg("1", "alice", "morning! coffee first", 0),
        msg("2", "bob", "same here, rough night", 30),
        msg("3", "alice", "the baby again?", 60),
        msg("4", "bob", "yes, teething", 90),
    ]
    assert len(segment_messages(messages)) == 1


def test_channels_and_threads_never_mix() -> None:
    messages = [
        msg("1", "alice", "kernel module build fails", 0, channel="c1"),
        msg("2", "alice", "kernel module build fails", 5, channel="t1"),
        msg("3", "bob", "alice: kernel headers missing", 10, channel="t1", reply_to="1"),
    ]
    segments = segment_messages(messages)
    assert together(segments, "2", "3")
    assert frozenset({"1"}) in groups(segments)


def test_system_messages_are_segments_of_their_own() -> None:
    messages = [
        msg("1", "alice", "ready for the demo", 0),
        msg("2", "system", "bob joined", 5, kind="GuildMemberJoin"),
        msg("3", "alice", "starting in five", 10),
    ]
    segments = segment_messages(messages)
    assert groups(segments) == {frozenset({"1", "3"}), frozenset({"2"})}
    assert [s.message_ids[0] for s in segments] == ["1", "2"]


def test_time_gap_baseline_splits_on_silence_only() -> None:
    messages = [
        msg("1", "alice", "a", 0),
        msg("2", "bob", "b", 50),
        msg("3", "system", "carol joined", 60, kind="GuildMemberJoin"),
        msg("4", "carol", "c", 200),
        msg("5", "dave", "d", 210, channel="c2"),
    ]
    segments = time_gap_baseline(messages, gap_seconds=100)
    assert groups(segments) == {
        frozenset({"1", "2"}),
        frozenset({"3"}),
        frozenset({"4"}),
        frozenset({"5"}),
    }


def test_adaptive_gap_is_clamped_between_thirty_and_sixty_minutes() -> None:
    busy = [msg(str(i), "a", "x", i * 10) for i in range(50)]
    sparse = [msg(str(i), "a", "x", i * 4 * 3600) for i in range(50)]
    medium = [msg(str(i), "a", "x", i * 45 * 60) for i in range(50)]
    assert adaptive_gap_seconds(busy) == MIN_GAP_SECONDS
    assert adaptive_gap_seconds(sparse) == MAX_GAP_SECONDS
    assert adaptive_gap_seconds(medium) == pytest.approx(45 * 60)
    assert adaptive_gap_seconds([]) == MIN_GAP_SECONDS


def test_empty_input_gives_no_segments() -> None:
    assert segment_messages([]) == []
    assert time_gap_baseline([], gap_seconds=60) == []


@pytest.mark.parametrize("gap", [0, -5, float("nan"), float("inf")])
def test_bad_gaps_are_rejected(gap: float) -> None:
    with pytest.raises(InvalidInputError, match="positive number of seconds"):
        segment_messages([msg("1", "a", "x", 0)], max_gap_seconds=gap)
    with pytest.raises(InvalidInputError, match="gap_seconds"):
        time_gap_baseline([msg("1", "a", "x", 0)], gap_seconds=gap)


def test_naive_timestamps_and_duplicate_ids_are_rejected() -> None:
    naive = ChatMessage(
        id="1",
        channel_id="c",
        timestamp=datetime(2024, 1, 1),
        author_id="a",
        author_name="a",
        content="x",
    )
    with pytest.raises(InvalidInputError, match="timezone-aware"):
        segment_messages([naive])
    with pytest.raises(InvalidInputError, match="occurs twice"):
        segment_messages([msg("1", "a", "x", 0), msg("1", "b", "y", 1)])


def test_every_message_lands_in_exactly_one_segment_in_time_order() -> None:
    rng = random.Random(7)
    words = ["kernel", "wifi", "grub", "nvidia", "samba", "docker", "python", "boot"]
    names = [f"user{i}" for i in range(12)]
    messages = []
    for i in range(400):
        author = rng.choice(names)
        text = " ".join(rng.choices(words, k=4))
        if rng.random() < 0.3:
            text = f"{rng.choice(names)}: {text}"
        reply = str(rng.randrange(i)) if i and rng.random() < 0.2 else None
        messages.append(msg(str(i), author, text, i * rng.uniform(1, 40), reply_to=reply))
    segments = segment_messages(messages)
    seen = [mid for s in segments for mid in s.message_ids]
    assert sorted(seen) == sorted(m.id for m in messages)
    by_id = {m.id: m for m in messages}
    for segment in segments:
        stamps = [by_id[i].timestamp for i in segment.message_ids]
        assert stamps == sorted(stamps)
        assert segment.start == stamps[0]
        assert segment.end == stamps[-1]
    for m in messages:
        if m.reply_to:
            assert together(segments, m.id, m.reply_to)


def test_segmentation_is_near_linear() -> None:
    rng = random.Random(11)
    vocabulary = [f"term{i}" for i in range(3000)]
    names = [f"user{i}" for i in range(300)]
    messages = []
    for i in range(20_000):
        text = " ".join(rng.choices(vocabulary, k=8))
        if rng.random() < 0.4:
            text = f"{rng.choice(names)}: {text}"
        messages.append(msg(str(i), rng.choice(names), text, i * 3.0))
    started = time.perf_counter()
    segments = segment_messages(messages)
    elapsed = time.perf_counter() - started
    assert sum(len(s) for s in segments) == 20_000
    # All-pairs comparison would take minutes here; the windowed pass takes about a second.
    assert elapsed < 15
