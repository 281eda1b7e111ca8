"""The offline extractive summarizer: sections, owners, citations, formats, a real IRC log."""

from __future__ import annotations

import random
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from shared.domain.messages import ChannelInfo, ChatMessage, jump_url
from shared.errors import InvalidInputError
from shared.summarize.content import SummaryContent, SummaryFormat
from shared.summarize.extractive.summarizer import LIMITS, ExtractiveSummarizer

T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
CHANNEL = ChannelInfo(channel_id="c1", channel_name="dev", guild_id="g1")
IRC_LOG = Path(__file__).resolve().parents[1] / "fixtures" / "irc-dev" / "2009-03-03_10.raw.txt"


def msg(mid: str, author: str, text: str, seconds: float, **extra: object) -> ChatMessage:
    return ChatMessage(
        id=mid,
        channel_id="c1",
        timestamp=T0 + timedelta(seconds=seconds),
        author_id=f"u-{author}",
        author_name=author,
        content=text,
        **extra,  # type: ignore[arg-type]
    )


def conversation() -> list[ChatMessage]:
    return [
        msg(
            "1",
            "alice",
            "The nvidia kernel module build fails after the upgrade: "
            "error: implicit declaration of function in the kernel module",
            0,
        ),
        msg(
            "2",
            "bob",
            "You need the kernel headers first: `sudo apt-get install linux-headers-6.8.0-31`",
            30,
            reply_to="1",
            reactions=3,
        ),
        msg(
            "3",
            "alice",
            "that worked, the kernel module builds now with dkms 3.0.11",
            60,
            reply_to="2",
        ),
        msg(
            "4",
            "carol",
            "agreed, let's use dkms for every kernel module we build out of tree",
            90,
            reply_to="3",
        ),
        msg("5", "bob", "I'll update the wiki page about kernel headers by friday", 120),
        msg("6", "dave", "what should the release date for version 2.4 be?", 150),
        msg(
            "7",
            "erin",
            "we decided to ship release 2.4 on 2024-06-03 after the freeze",
            180,
            reply_to="6",
        ),
        msg(
            "8",
            "dave",
            "@erin can you draft the release changelog tomorrow?",
            210,
            mentions=("erin",),
        ),
        msg("9", "erin", "sure, release notes draft coming", 240, reply_to="8"),
        msg("10", "ci-bot", "Build #123 passed", 250, is_bot=True),
        msg("11", "system", "gina joined the server", 260, kind="GuildMemberJoin"),
        msg(
            "12",
            "frank",
            "does anyone know why the CI runners lose their docker cache every night?",
            4 * 3600,
        ),
    ]


def summarize(
    messages: list[ChatMessage], shape: SummaryFormat = SummaryFormat.STRUCTURED, **kw: object
) -> SummaryContent:
    return ExtractiveSummarizer().summarize(messages, CHANNEL, format=shape, **kw)  # type: ignore[arg-type]


def assert_citations_valid(content: SummaryContent, messages: list[ChatMessage]) -> None:
    by_id = {m.id: m for m in messages}
    cited = content.cited_ids()
    assert set(content.citations) == cited
    for message_id, citation in content.citations.items():
        message = by_id[message_id]
        assert citation.message_id == message_id
        assert citation.author == message.author_name
        assert citation.timestamp == message.timestamp
        assert citation.jump_url == jump_url(CHANNEL.guild_id, message.channel_id, message_id)
        assert not message.is_bot
        assert not message.is_system
    id_lists = [
        *(p.message_ids for p in content.key_points),
        *(p.message_ids for p in content.decisions),
        *(p.message_ids for p in content.open_questions),
        *(p.message_ids for p in content.technical),
        *(t.message_ids for t in content.topics),
        *(a.message_ids for a in content.action_items),
        *(p.message_ids for c in content.contributions for p in c.points),
    ]
    for ids in id_lists:
        assert ids
        assert len(ids) == len(set(ids))


def test_structured_summary_finds_decisions_with_citations() -> None:
    content = summarize(conversation())
    texts = [d.text for d in content.decisions]
    assert any(t.startswith("carol: agreed, let's use dkms") for t in texts)
    assert any(t.startswith("erin: we decided to ship release 2.4") for t in texts)
    carol = next(d for d in content.decisions if d.text.startswith("carol"))
    assert carol.message_ids == ["3", "4"]  # the decision and what it agreed to
    assert_citations_valid(content, conversation())


def test_questions_answered_by_replies_are_not_open_and_unanswered_ones_are() -> None:
    content = summarize(conversation())
    assert [q.message_ids for q in content.open_questions] == [["12"]]
    assert content.open_questions[0].text.startswith("frank: does anyone know why the CI runners")


def test_a_question_answered_without_a_reply_link_is_not_open() -> None:
    messages = [
        msg("1", "alice", "how do I list the installed kernels on this box?", 0),
        msg("2", "bob", "alice: dpkg --list | grep linux-image", 20),
    ]
    assert summarize(messages).open_questions == []


def test_action_items_have_owners_and_due_dates() -> None:
    messages = [
        *conversation(),
        msg(
            "13",
            "gina",
            "carol: please rotate the staging API keys before 2024-05-20",
            4 * 3600 + 60,
        ),
        msg("14", "gina", "TODO: archive the old build logs", 4 * 3600 + 90),
    ]
    content = summarize(messages)
    items = {item.message_ids[0]: item for item in content.action_items}
    assert items["5"].owner == "bob"
    assert items["5"].due == "by friday"
    assert items["5"].task.startswith("bob: I'll update the wiki page")
    assert items["8"].owner == "erin"
    assert items["8"].due == "tomorrow"
    assert items["13"].owner == "carol"
    assert items["13"].due == "before 2024-05-20"
    assert items["14"].owner == "gina"
    assert items["14"].due is None
    assert_citations_valid(content, messages)


def test_a_request_answered_to_a_reply_goes_to_the_replied_author() -> None:
    messages = [
        msg("1", "alice", "the nightly backup job failed again on the database host", 0),
        msg("2", "bob", "could you check the disk quota on that database host", 30, reply_to="1"),
    ]
    content = summarize(messages)
    assert [(i.owner, i.message_ids) for i in content.action_items] == [("alice", ["2"])]


def test_conditional_and_questioning_phrases_are_not_action_items() -> None:
    messages = [
        msg("1", "alice", "if you need to restart the service, use systemctl", 0),
        msg("2", "bob", "will I need to reboot after the kernel upgrade?", 30),
    ]
    assert summarize(messages).action_items == []


def test_bots_and_system_messages_are_skipped_and_counted() -> None:
    messages = conversation()
    content = summarize(messages, skipped=5)
    cov = content.coverage
    assert cov.messages_total == len(messages) + 5
    assert cov.messages_used == len(messages) - 2
    assert cov.messages_skipped == 5 + 2
    assert cov.start == messages[0].timestamp
    assert cov.end == messages[-1].timestamp
    assert (cov.channel_id, cov.channel_name, cov.guild_id) == ("c1", "dev", "g1")
    assert "10" not in content.cited_ids()
    assert "11" not in content.cited_ids()
    assert all(p.name not in ("ci-bot", "system") for p in content.participants)
    assert content.backend == "extractive"
    assert content.degraded is False


def test_participants_are_sorted_by_message_count() -> None:
    content = summarize(conversation())
    counts = [p.messages for p in content.participants]
    assert counts == sorted(counts, reverse=True)
    assert content.participants[0].messages == 2
    assert {p.name for p in content.participants} == {
        "alice",
        "bob",
        "carol",
        "dave",
        "erin",
        "frank",
    }
    assert next(p for p in content.participants if p.name == "alice").id == "u-alice"


def test_topics_are_titled_by_their_terms_and_summarised_by_an_author_extract() -> None:
    content = summarize(conversation())
    titles = [t.title for t in content.topics]
    kernel = next(t for t in content.topics if "kernel" in t.title or "module" in t.title)
    assert "release" in " ".join(titles)
    assert re.match(r"^(alice|bob|carol): ", kernel.summary)
    assert "1" in kernel.message_ids  # topics cite where they start
    assert len(kernel.message_ids) <= 5


def test_overview_names_the_main_topics_not_the_counts() -> None:
    # Counts, time span and participants are in every rendering's header: the overview says
    # what the talk was about and what is listed below.
    content = summarize(conversation())
    assert content.overview.startswith("Main topics: kernel module")
    assert "; release" in content.overview
    assert "2 decisions and 1 open question below." in content.overview
    assert "messages from" not in content.overview


def test_mmr_keeps_near_duplicates_out_of_the_key_points() -> None:
    messages = []
    for i in range(4):
        messages.append(
            msg(
                f"d{i}",
                f"user{i}",
                "the staging database migration is blocked by a table lock on orders",
                i * 20,
                reactions=10,
            )
        )
    messages += [
        msg("x1", "zoe", "the payment webhook retries are now exponential with jitter", 100),
        msg("x2", "yan", "zoe: webhook retries look good in the dashboard graphs", 120),
        msg("y1", "wes", "frontend bundle size dropped by forty percent after the split", 3 * 3600),
        msg("y2", "vic", "wes: bundle splitting also fixed the slow first paint", 3 * 3600 + 60),
    ]
    content = summarize(messages)
    duplicates = [p for p in content.key_points if p.message_ids[0].startswith("d")]
    assert len(duplicates) == 1
    assert len(content.key_points) >= 3
    assert_citations_valid(content, messages)


def test_formats_differ_as_specified() -> None:
    messages = conversation()
    brief = summarize(messages, SummaryFormat.BRIEF)
    structured = summarize(messages, SummaryFormat.STRUCTURED)
    detailed = summarize(messages, SummaryFormat.DETAILED)
    technical = summarize(messages, SummaryFormat.TECHNICAL)

    assert brief.format is SummaryFormat.BRIEF
    assert 1 <= len(brief.key_points) <= 3
    assert 1 <= len(brief.topics) <= 3
    assert brief.decisions == []
    assert brief.action_items == []
    assert brief.open_questions == []
    assert brief.contributions == []
    assert brief.technical == []

    assert structured.decisions and structured.action_items and structured.open_questions
    assert len(structured.key_points) <= 7
    assert structured.contributions == []
    assert structured.technical == []

    assert detailed.contributions
    top = {c.participant for c in detailed.contributions}
    assert {"alice", "bob"} <= top
    assert all(1 <= len(c.points) <= 3 for c in detailed.contributions)
    for contribution in detailed.contributions:
        assert all(p.text.startswith(contribution.participant + ": ") for p in contribution.points)
    assert detailed.technical == []

    labels = {p.text.split("]")[0] + "]" for p in technical.technical}
    assert {"[problem]", "[fix]"} <= labels
    problem = next(p for p in technical.technical if p.text.startswith("[problem]"))
    assert problem.message_ids == ["1"]
    assert any(
        "apt-get install linux-headers" in p.text or "dkms 3.0.11" in p.text
        for p in technical.technical
    )
    assert technical.contributions == []
    for content in (brief, structured, detailed, technical):
        assert_citations_valid(content, messages)


def test_technical_section_labels_commands_and_versions() -> None:
    messages = [
        msg("1", "alice", "run `make -j4 install` in the build dir", 0),
        msg("2", "bob", "we are on postgres 16.2.1 in production", 20),
        msg("3", "carol", "any idea why pip3 install fails on the runner?", 40),
        msg("4", "dave", "check /var/log/syslog for the details", 60),
    ]
    content = summarize(messages, SummaryFormat.TECHNICAL)
    kinds = {p.message_ids[0]: p.text.split("]")[0][1:] for p in content.technical}
    assert kinds == {"1": "fix", "2": "version", "3": "problem", "4": "command"}


def test_bullets_are_shortened_extracts_prefixed_with_the_author() -> None:
    long_text = "the rollout of the new cache layer " + "went fine across regions " * 30
    messages = [
        msg("1", "alice", long_text, 0, reactions=5),
        msg("2", "bob", "alice: great, the cache layer hit rate is at ninety percent", 30),
    ]
    content = ExtractiveSummarizer(bullet_chars=80).summarize(
        messages, CHANNEL, format=SummaryFormat.STRUCTURED
    )
    point = next(p for p in content.key_points if p.message_ids == ["1"])
    assert point.text.startswith("alice: the rollout of the new cache layer")
    assert point.text.endswith("…")
    assert len(point.text) <= len("alice: ") + 80
    assert point.text[len("alice: ") : -1].strip() in " ".join(long_text.split())


def test_attachment_only_messages_are_described_not_invented() -> None:
    messages = [
        msg("1", "alice", "", 0, attachments=("crash.log",)),
        msg("2", "bob", "alice: that crash log shows an out of memory kill", 30),
    ]
    content = summarize(messages)
    assert_citations_valid(content, messages)
    texts = [p.text for p in content.key_points] + [t.summary for t in content.topics]
    assert all("[file: crash.log]" in t or "out of memory" in t for t in texts)


def test_empty_input_returns_a_valid_summary_saying_so() -> None:
    content = summarize([], skipped=0)
    assert content.overview.startswith("Nothing to summarize")
    assert content.citations == {} and content.key_points == [] and content.topics == []
    assert content.coverage.messages_total == 0
    assert content.coverage.start is None


def test_all_system_input_counts_what_was_skipped() -> None:
    messages = [
        msg("1", "system", "alice joined", 0, kind="GuildMemberJoin"),
        msg("2", "deploy-bot", "deployed", 10, is_bot=True),
    ]
    content = summarize(messages, SummaryFormat.DETAILED, skipped=1)
    assert content.overview.startswith("Nothing to summarize")
    assert "3 system, bot or filtered messages skipped" in content.overview
    assert content.coverage.messages_total == 3
    assert content.coverage.messages_used == 0
    assert content.coverage.start == messages[0].timestamp
    assert content.participants == []


def test_a_dm_links_with_at_me() -> None:
    channel = ChannelInfo(channel_id="dm1", channel_name="dm", guild_id=None)
    messages = [msg("1", "alice", "remember to renew the TLS certificate for the api host", 0)]
    content = ExtractiveSummarizer().summarize(messages, channel, format=SummaryFormat.STRUCTURED)
    assert content.citations["1"].jump_url == "https://discord.com/channels/@me/c1/1"


def test_bad_arguments_are_rejected_with_a_clear_message() -> None:
    summarizer = ExtractiveSummarizer()
    with pytest.raises(InvalidInputError, match="unknown summary format 'poem'"):
        summarizer.summarize([], CHANNEL, format="poem")  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError, match="skipped must be 0 or more"):
        summarizer.summarize([], CHANNEL, format=SummaryFormat.BRIEF, skipped=-1)
    naive = ChatMessage(
        id="9",
        channel_id="c1",
        timestamp=datetime(2024, 1, 1),
        author_id="a",
        author_name="a",
        content="hello there",
    )
    with pytest.raises(InvalidInputError, match="naive timestamp"):
        summarizer.summarize([naive], CHANNEL, format=SummaryFormat.BRIEF)
    with pytest.raises(InvalidInputError, match="bullet_chars must be at least 40"):
        ExtractiveSummarizer(bullet_chars=10)
    assert summarizer.name == "extractive"
    # A plain string naming a format is accepted.
    content = summarizer.summarize(conversation(), CHANNEL, format="brief", language="de")  # type: ignore[arg-type]
    assert content.format is SummaryFormat.BRIEF


def _parse_irc(path: Path) -> list[ChatMessage]:
    """``[HH:MM] <nick> text`` lines; ``=== ...`` lines become join notices."""
    day = datetime(2009, 3, 3, tzinfo=UTC)
    messages = []
    when = day
    for line_no, line in enumerate(path.read_text(encoding="utf-8").splitlines()):
        match = re.match(r"^\[(\d\d):(\d\d)\]\s+<([^>]+)>\s?(.*)$", line)
        if match:
            when = day.replace(hour=int(match.group(1)), minute=int(match.group(2)))
            author, text, kind = match.group(3), match.group(4), "Default"
        else:
            author, text, kind = "server", line, "GuildMemberJoin"
        messages.append(
            ChatMessage(
                id=str(10_000 + line_no),
                channel_id="c1",
                timestamp=when + timedelta(milliseconds=line_no),
                author_id=author,
                author_name=author,
                content=text,
                kind=kind,
            )
        )
    return messages


@pytest.mark.parametrize("shape", list(SummaryFormat))
def test_a_real_irc_log_gives_sane_sizes_and_valid_citations(shape: SummaryFormat) -> None:
    messages = _parse_irc(IRC_LOG)
    assert len(messages) == 1250
    content = summarize(messages, shape)
    limits = LIMITS[shape]
    assert content.coverage.messages_used > 1150
    assert content.coverage.messages_skipped == sum(m.is_system for m in messages)
    assert len(content.topics) == limits.topics
    assert len(content.key_points) == limits.key_points
    assert len(content.decisions) <= limits.decisions
    assert len(content.open_questions) <= limits.open_questions
    assert len(content.action_items) <= limits.action_items
    assert len(content.technical) <= limits.technical
    assert len(content.contributions) <= limits.contributors
    if shape is SummaryFormat.TECHNICAL:
        assert len(content.technical) >= 8
    if shape is SummaryFormat.DETAILED:
        assert content.contributions[0].participant == content.participants[0].name
    assert len(content.participants) > 50
    assert len(content.overview) < 600
    assert_citations_valid(content, messages)
    for topic in content.topics:
        assert 3 <= len(topic.title) <= 80
    for point in content.key_points:
        assert len(point.text) <= 240


def test_twenty_thousand_messages_summarize_with_valid_citations() -> None:
    # Speed is measured by the benchmarks under tests/perf, not asserted here.
    rng = random.Random(5)
    vocabulary = [f"term{i}" for i in range(4000)]
    names = [f"user{i}" for i in range(400)]
    messages = []
    for i in range(20_000):
        text = " ".join(rng.choices(vocabulary, k=rng.randint(2, 14)))
        if rng.random() < 0.1:
            text += "?"
        reply = str(rng.randrange(i)) if i > 10 and rng.random() < 0.1 else None
        messages.append(msg(str(i), rng.choice(names), text, i * 2.5, reply_to=reply))
    content = summarize(messages, SummaryFormat.DETAILED)
    assert content.coverage.messages_used == 20_000
    assert_citations_valid(content, messages)


@pytest.mark.parametrize(
    ("text", "due"),
    [
        ("I'll send the invoice by 5pm", "by 5pm"),
        ("I will rerun the benchmark on monday", "on monday"),
        ("I'll merge the branch eod", "eod"),
        ("I'll finish the migration by the end of the week", "by the end of the week"),
        ("I'll deploy the fix on 2 servers first", None),
    ],
)
def test_due_dates_are_read_from_the_message(text: str, due: str | None) -> None:
    content = summarize([msg("1", "alice", text, 0)])
    assert [(i.owner, i.due) for i in content.action_items] == [("alice", due)]


def test_filler_only_chat_still_gives_a_valid_summary() -> None:
    messages = [
        msg("1", "alice", "lol", 0),
        msg("2", "bob", "ok", 20),
        msg("3", "alice", "", 40, embeds=("https://example.com/cat.gif",)),
    ]
    content = summarize(messages, SummaryFormat.DETAILED)
    assert content.key_points == []
    assert content.contributions == []
    # Nothing worth quoting: no topic titled "lol", and the overview says why.
    assert content.topics == []
    assert content.overview.startswith("Only greetings, fillers, links and other chatter")
    assert "3 messages from 2 participants" in content.overview
    assert_citations_valid(content, messages)
