"""Topic titles and action items of the offline summarizer, on real conversations.

Real lines: the demo conversation (``shared/data/demo``, from the irc-dev logs, Kummerfeld et
al., ACL 2019, CC BY 4.0) and QMSum meetings (``tests/fixtures/qmsum-val``, MIT).
"""

from __future__ import annotations

import json
import math
from collections import Counter
from pathlib import Path

import pytest

from shared.domain.messages import ChannelInfo
from shared.sources.export_file import open_export
from shared.summarize.content import SummaryFormat
from shared.summarize.extractive.actions import action_owner, is_decision
from shared.summarize.extractive.noise import FILLER_WORDS
from shared.summarize.extractive.summarizer import ExtractiveSummarizer
from shared.summarize.extractive.titles import GENERIC_WORDS, topic_title
from shared.summarize.text import STOP_WORDS, tokenize
from tests.perf.summary_quality import Meeting, load_meetings

ROOT = Path(__file__).resolve().parents[2]
DEMO = ROOT / "shared" / "data" / "demo" / "ubuntu-support.json"
QMSUM = ROOT / "tests" / "fixtures" / "qmsum-val"


def test_a_real_support_thread_gets_its_noun_phrases() -> None:
    # demo, 07:40-08:20: paulSterio cannot build reportlab (missing python-dev headers).
    texts = [
        "Antioch,  ok took your advice to build-essential. I'm still getting this gcc issue "
        "when I try and easy_install reportlab",
        "paulSterio: heh, because you don't have python-dev :)",
        'the first line "error: Python.h: No such file or directory" is your clue',
        "paulSterio: Looks like you're missing a dev fil for python",
        "paulSterio, I think you need python-dev",
        "paulSterio, it asked for Python.h ; try python2.5-dev",
        "paulSterio: python-dev is what provides the python development headers",
        "paulSterio, what I did was apt-file search Python.h . the apt-file package helps find "
        "what package a file is in",
    ]
    title = topic_title(texts, lambda _: 3.0, excluded={"paulsterio", "antioch"})
    assert title is not None
    assert "python-dev" in title
    assert "Python.h" in title  # the spelling used in the thread, not "python.h"
    assert "paulSterio" not in title


def test_fillers_and_transcript_markup_never_make_a_title() -> None:
    # QMSum Bro005: the old titles were "disfmarker / mmm".
    data = json.loads((QMSUM / "Bro005.json").read_text(encoding="utf-8"))
    texts = [row["content"] for row in data["meeting_transcripts"]][:200]
    df: Counter[str] = Counter()
    for text in texts:
        df.update(set(tokenize(text)))

    def idf(word: str) -> float:
        return math.log((1 + len(texts)) / (1 + df[word])) + 1

    title = topic_title(texts, idf)
    assert title is not None
    words = title.lower().replace(" and ", " ").split()
    for word in words:
        assert word not in FILLER_WORDS
        assert word not in STOP_WORDS
        assert "marker" not in word and "vocalsound" not in word
    assert words[0] not in GENERIC_WORDS and words[-1] not in GENERIC_WORDS


def test_a_longer_phrase_wins_over_its_parts() -> None:
    texts = [
        "check the nvidia drivers are enabled",
        "the nvidia drivers from the restricted manager",
        "which nvidia drivers do you have, 177 or 180?",
        "drivers for the card",
        "my drivers are broken",
    ]
    assert topic_title(texts, lambda _: 3.0, phrases=1) == "nvidia drivers"


def test_no_content_word_no_title() -> None:
    assert topic_title(["ok", "lol", "thanks!"], lambda _: 3.0) is None


def _demo_summary(shape: SummaryFormat = SummaryFormat.STRUCTURED):  # type: ignore[no-untyped-def]
    with open_export(DEMO) as export:
        messages = list(export.iter_messages())
        channel = export.channel
    return ExtractiveSummarizer().summarize(messages, channel, format=shape)


def test_demo_titles_read_like_topics() -> None:
    content = _demo_summary()
    assert len(content.topics) == 6
    for topic in content.topics:
        words = topic.title.lower().replace(" and ", " ").split()
        assert words, topic
        assert not set(words) & FILLER_WORDS, topic.title
        assert words[0] not in GENERIC_WORDS and words[-1] not in GENERIC_WORDS, topic.title
    titles = " | ".join(t.title for t in content.topics)
    assert "nvidia drivers" in titles
    assert "apt-get install" in titles


def test_demo_action_items_are_real_requests_with_owners_or_none() -> None:
    # The old summarizer listed "please stop making random noise", "You will need to feed
    # the output ... into a variable" and "it says Please add yourself to the fuse group".
    for shape in (SummaryFormat.STRUCTURED, SummaryFormat.DETAILED, SummaryFormat.TECHNICAL):
        content = _demo_summary(shape)
        for item in content.action_items:
            assert item.owner, item
            owner = action_owner(item.task.split(": ", 1)[1], author=item.owner, addressee=None)
            assert owner is not None, item
        assert not any("random noise" in d.text for d in content.decisions)
        assert not any("ext2 if you're" in d.text for d in content.decisions)


@pytest.mark.parametrize(
    ("text", "author", "addressee", "owner"),
    [
        # commitments with a task
        ("I'll update the wiki page about kernel headers by friday", "bob", None, "bob"),
        ("I will rerun the benchmark on monday", "alice", None, "alice"),
        ("ok, I'll send the invoice by 5pm", "alice", None, "alice"),
        # requests to a named person with a task verb
        ("@erin can you draft the release changelog tomorrow?", "dave", "erin", "erin"),
        ("carol: please rotate the staging API keys before 2024-05-20", "gina", "carol", "carol"),
        ("TODO: archive the old build logs", "gina", None, "gina"),
        # real demo lines that are conversation, not tasks
        (
            "Prima_zz: this is an ubuntu support channel only - please stop making random noise",
            "ikonia",
            "Prima_zz",
            None,
        ),
        (
            "it says Please add yourself to the fuse group, logout/in and try again.",
            "max82fr",
            "ActionParsnip",
            None,
        ),
        (
            "Witepa: You will need to feed the output of the file/stream into a variable.",
            "Seper",
            "Witepa",
            None,
        ),
        ("Flannel: Thanks...I'll try that.", "TML", "Flannel", None),
        ("ZachFlem: ok - so can you ping your default getway", "ikonia", "ZachFlem", None),
        ("max82fr: can you pastebin the output", "ActionParsnip", "max82fr", None),
        ("tyler_d: thanks, I'll save it", "Witepa", "tyler_d", None),
        ("lolhate: Also, please watch your language.", "Flannel", "lolhate", None),
        ("Seper: good call, I'll look into that for now.", "nayten", "Seper", None),
        # a QMSum (ES2006b) restart with no task in it
        ("So I'll put it I'll put them there as soon as I've written them.", "PM", None, None),
        # held-out meetings and chats: what the speaker does in the conversation, now
        ("I'll finish my response", "Trudeau", None, None),
        ("I will start by saying that we are working hard on this", "Hajdu", None, None),
        ("I'm going to focus my question on the wage subsidy", "Poilievre", None, None),
        ("i'll paste a sample of the config file", "jdoe", None, None),
        ("I will double check that right now on the build server", "mk", None, None),
        ("I'm going to move on to the budget items", "PM", None, None),
        # a request needs someone to do it
        ("please rotate the staging API keys", "gina", None, None),
        ("if you need to restart the service, use systemctl", "alice", None, None),
    ],
)
def test_action_owner(text: str, author: str, addressee: str | None, owner: str | None) -> None:
    assert action_owner(text, author=author, addressee=addressee) == owner


@pytest.mark.parametrize(
    ("text", "decided"),
    [
        ("agreed, let's use dkms for every kernel module we build out of tree", True),
        ("we decided to ship release 2.4 on 2024-06-03 after the freeze", True),
        ("So we've decided on the yellow case with a rubber button", True),
        # demo: advice with "going to use" is no decision
        (
            "pyrak: ext2 if you're only going to use it on linux, fat32 if you're going to use "
            "it on linux and windows",
            False,
        ),
        ("should we go with the rubber case?", False),
        ("I'm going to use the live cd", False),
        # held-out QMSum meetings (ES2009c, covid_4)
        ("We will omit the touch screen in favour of voice recognition", True),
        ("we'll keep the old server for the mail relay", True),
        ("We will move to the next questioner.", False),
        ("We will keep focused on supporting Canadians", False),
    ],
)
def test_is_decision(text: str, decided: bool) -> None:
    assert is_decision(text) is decided


@pytest.mark.parametrize("shape", [SummaryFormat.STRUCTURED, SummaryFormat.DETAILED])
def test_a_message_is_quoted_by_one_bullet_section_only(shape: SummaryFormat) -> None:
    # Held-out meetings showed one turn as a key point and an open question, another as a
    # key point and a decision: the specific section keeps it, the key points move on.
    summaries = [_demo_summary(shape)]
    summaries += [
        ExtractiveSummarizer().summarize(m.messages, _meeting_channel(m), format=shape)
        for m in load_meetings()
    ]
    for content in summaries:
        sections = {
            "key_points": {i for p in content.key_points for i in p.message_ids},
            "decisions": {p.message_ids[-1] for p in content.decisions},
            "open_questions": {i for p in content.open_questions for i in p.message_ids},
            "action_items": {i for a in content.action_items for i in a.message_ids},
        }
        names = sorted(sections)
        for at, first in enumerate(names):
            for second in names[at + 1 :]:
                assert not sections[first] & sections[second], (first, second)


def _meeting_channel(meeting: Meeting) -> ChannelInfo:
    return ChannelInfo(
        guild_id=None, channel_id=meeting.messages[0].channel_id, channel_name=meeting.name
    )
