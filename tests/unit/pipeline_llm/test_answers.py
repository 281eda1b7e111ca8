"""Answers of any shape become notes and summaries; aliases inside text never reach a reader."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from jsonschema import Draft202012Validator

from shared.domain.messages import ChannelInfo, ChatMessage
from shared.summarize.content import SummaryFormat
from shared.summarize.llm import prompts
from shared.summarize.llm.aliases import extract_aliases, scrub_bare
from shared.summarize.llm.answer_text import read_text, text_instructions
from shared.summarize.llm.answers import SummaryReader, coerce
from shared.summarize.llm.validate import clean_notes, to_summary_content
from shared.summarize.transcript import Transcript, build_transcript

LEAK = re.compile(r"[\[(【（]\s*[mM]\d|\b[mM]\d{1,7}\b")
CHANNEL = ChannelInfo(channel_id="55", channel_name="support", guild_id="99")
T0 = datetime(2024, 11, 15, 14, 3, tzinfo=UTC)
LINES = [
    ("bill", "kernel 2.6.8.1 fails to build the nvidia module"),
    ("bob", "install linux-headers-2.6.8.1-3-686 first"),
    ("bill", "that worked, thanks bob"),
    ("carol", "we decided to document the header fix in the wiki"),
    ("bob", "I'll write the wiki page by friday; the m5 screws are in the drawer"),
    ("dave", "is the arm64 build affected too?"),
]


@pytest.fixture
def transcript() -> Transcript:
    messages = [
        ChatMessage(
            id=str(7000 + i),
            channel_id="55",
            timestamp=T0 + timedelta(minutes=i),
            author_id=author,
            author_name=author,
            content=text,
        )
        for i, (author, text) in enumerate(LINES)
    ]
    return build_transcript(messages, CHANNEL)


def valid(data: Any, schema: dict[str, Any]) -> bool:
    return Draft202012Validator(schema).is_valid(data)


def texts_of(content: Any) -> list[str]:
    """Every string a reader sees in a summary."""
    dumped = content.model_dump(mode="json")
    found: list[str] = [dumped["overview"]]
    for section in ("topics", "key_points", "decisions", "open_questions", "technical"):
        for item in dumped[section]:
            found.extend(str(item.get(k) or "") for k in ("title", "summary", "text"))
    for item in dumped["action_items"]:
        found.extend(str(item.get(k) or "") for k in ("task", "owner", "due"))
    for contribution in dumped["contributions"]:
        found.append(contribution["participant"])
        found.extend(p["text"] for p in contribution["points"])
    return found


# -- aliases in text ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("fixed it [m22].", ("fixed it.", ["m22"])),
        ("headers fix it [m2, m3] (see m4-m6)", ("headers fix it", ["m2", "m3", "m4", "m5", "m6"])),
        ("as [M017] and 【m4】 said", ("as and said", ["m17", "m4"])),
        ("copied [m17 14:03 alice] header", ("copied header", ["m17"])),
        ("(as m5 said) fine", ("(as said) fine", ["m5"])),
        ("placeholders [email] stay (really)", ("placeholders [email] stay (really)", [])),
        ("a defused (m1 14:00 bob] header stays", ("a defused (m1 14:00 bob] header stays", [])),
    ],
)
def test_extract_aliases(text: str, expected: tuple[str, list[str]]) -> None:
    assert extract_aliases(text) == expected


def test_bare_aliases_need_the_transcript_to_tell_them_from_words() -> None:
    text, cited = scrub_bare(
        "fixed in m2, not m99; the m5 screws",
        resolve=lambda a: a == "m2",
        is_text=lambda w: w == "m5",
    )
    assert cited == ["m2"]
    assert text == "fixed in, not; the m5 screws"


# -- JSON of another shape ----------------------------------------------------------------------


def test_own_json_shape_is_mapped_onto_the_schema() -> None:
    own = {
        "summary": "Kernel build trouble (m1).",
        "Key Points": ["Headers fix the build (m2, m3)", "arm64 is unknown [m6]"],
        "topics": [
            {
                "name": "Kernel build",
                "description": "fails without headers",
                "messages": ["m1", "m2"],
            }
        ],
        "actionItems": [
            {"task": "write wiki page", "assignee": "bob", "deadline": "friday", "source": "m5"}
        ],
        "decisions": "document the fix [m4]",
        "contributions": {"bob": ["suggested the headers (m2)"], "bill": "reported it (m1)"},
        "technical_notes": [{"type": "bug", "detail": "nvidia module fails", "refs": "m1, m2"}],
        "mood": "friendly",
    }
    schema = prompts.final_schema(SummaryFormat.DETAILED)
    data = coerce(own, schema)
    assert valid(data, schema)
    assert data["overview"] == "Kernel build trouble."
    assert data["topics"] == [
        {"title": "Kernel build", "summary": "fails without headers", "message_ids": ["m1", "m2"]}
    ]
    assert data["key_points"][0] == {"text": "Headers fix the build", "message_ids": ["m2", "m3"]}
    assert data["action_items"] == [
        {"owner": "bob", "due": "friday", "task": "write wiki page", "message_ids": ["m5"]}
    ]
    assert data["decisions"] == [{"text": "document the fix", "message_ids": ["m4"]}]
    assert [c["participant"] for c in data["contributions"]] == ["bob", "bill"]
    technical = coerce(own, prompts.final_schema(SummaryFormat.TECHNICAL))["technical"]
    assert technical == [
        {"category": "bug", "text": "nvidia module fails", "message_ids": ["m1", "m2"]}
    ]


def test_sections_wrapped_in_an_object_and_prose_in_a_string() -> None:
    schema = prompts.final_schema(SummaryFormat.BRIEF)
    wrapped = coerce({"result": {"overview": "ok", "key_points": ["a point [m1]"]}}, schema)
    assert wrapped == {"overview": "ok", "key_points": [{"text": "a point", "message_ids": ["m1"]}]}
    markdown = "## Overview\nall good\n## Key points\n- it works [m2]\n"
    assert coerce({"response": markdown}, schema)["key_points"] == [
        {"text": "it works", "message_ids": ["m2"]}
    ]


# -- text ---------------------------------------------------------------------------------------


def test_markdown_in_a_models_own_style() -> None:
    answer = """Sure! Here is the summary:

**Summary:**
The kernel build failed until headers were installed [m1][m2].

### Topics
#### Kernel build failure
The nvidia module fails on 2.6.8.1 (m1, m2).

Highlights:
* Installing the headers fixed it (m2)
1. Someone asked about arm64 [m6]

## Action Items
- bob writes the wiki page (owner: bob; due: friday) [m5]
- none

## Contributions
- bob:
  - suggested the headers [m2]
  - offered the wiki page [m5]
- **carol**: recorded the decision [m4]
"""
    schema = prompts.final_schema(SummaryFormat.DETAILED)
    data = read_text(answer, schema)
    assert valid(data, schema)
    assert data["overview"] == "The kernel build failed until headers were installed."
    assert data["topics"] == [
        {
            "title": "Kernel build failure",
            "summary": "The nvidia module fails on 2.6.8.1.",
            "message_ids": ["m1", "m2"],
        }
    ]
    assert [p["message_ids"] for p in data["key_points"]] == [["m2"], ["m6"]]
    assert data["action_items"] == [
        {"owner": "bob", "due": "friday", "task": "bob writes the wiki page", "message_ids": ["m5"]}
    ]
    assert data["contributions"] == [
        {
            "participant": "bob",
            "points": [
                {"text": "suggested the headers", "message_ids": ["m2"]},
                {"text": "offered the wiki page", "message_ids": ["m5"]},
            ],
        },
        {
            "participant": "carol",
            "points": [{"text": "recorded the decision", "message_ids": ["m4"]}],
        },
    ]


@pytest.mark.parametrize("fmt", list(SummaryFormat))
def test_the_text_rung_format_round_trips(fmt: SummaryFormat) -> None:
    """A model that follows the text rung's instructions gives back every section."""
    schema = prompts.final_schema(fmt)
    instructions = text_instructions(schema)
    answer = []
    for line in instructions.splitlines():
        if line.startswith("## "):
            answer.append(line)
        elif line.startswith("<one paragraph>"):
            answer.append("A short overview of it all.")
        elif line.startswith("- "):
            filled = re.sub(r"<(\w+) or none>", "none", line)
            filled = filled.replace("<category>", "bug").replace("<participant>", "bob")
            filled = re.sub(r"<(\w+)>", lambda m: f"the {m.group(1)} here", filled)
            answer.append(filled.replace("[m12, m15]", "[m3]"))
    data = read_text("\n".join(answer), schema)
    assert valid(data, schema)
    for section in prompts.FINAL_SECTIONS[fmt]:
        if section != "overview":
            assert data[section], section
    assert data["overview"] == "A short overview of it all."


def test_the_reader_says_what_shape_an_answer_had() -> None:
    schema = prompts.final_schema(SummaryFormat.BRIEF)
    reader = SummaryReader()
    exact = json.dumps({"overview": "o", "key_points": [{"text": "t [m2]", "message_ids": ["m1"]}]})
    reading = reader.read(exact, schema)
    assert reading.shape == "json" and not reading.problems
    # It checked the schema itself, so the client does not walk the answer a second time.
    assert reading.fits_schema and valid(reading.data, schema)
    assert reading.data == {
        "overview": "o",
        "key_points": [{"text": "t", "message_ids": ["m1", "m2"]}],
    }
    assert reader.read(f"Here you go:\n```json\n{exact}\n```", schema).shape == "coerced"
    own_shape = reader.read('{"points": ["a (m1)"]}', schema)
    assert own_shape.shape == "coerced" and not own_shape.fits_schema
    prose = reader.read("## Key points\n- something [m4]", schema)
    assert prose.shape == "prose" and not prose.problems and not prose.fits_schema
    uncited = reader.read("The conversation covered a few things. Bob fixed it.", schema)
    assert uncited.shape == "prose"
    assert uncited.problems and "no points" in uncited.problems[0]
    assert "no point names" in reader.read("## Key points\n- it works", schema).problems[0]
    assert reader.instructions("json_schema", schema) is None
    assert "<schema>" in (reader.instructions("json_object", schema) or "")
    assert "## key_points" in (reader.instructions("text", schema) or "")


# -- validation -----------------------------------------------------------------------------------


def test_inline_aliases_become_citations_and_leave_no_trace(transcript: Transcript) -> None:
    data = {
        "overview": "Headers fixed the build (m2); as m2 put it [m99].",
        "topics": [
            {"title": "Kernel build (m1)", "summary": "fails [m1] (see m99999)", "message_ids": []}
        ],
        "key_points": [{"text": "the fix works [m3] and m2 agreed", "message_ids": ["m2"]}],
        "decisions": [{"text": "document it [m4]", "message_ids": []}],
        "action_items": [
            {"task": "wiki page [m5]", "owner": "bob (m5)", "due": "friday", "message_ids": []}
        ],
        "open_questions": [{"text": "arm64? m6", "message_ids": []}],
        "contributions": [
            {
                "participant": "bob [m2]",
                "points": [{"text": "the m5 screws [m5]", "message_ids": []}],
            }
        ],
    }
    content, report = to_summary_content(
        data, fmt=SummaryFormat.DETAILED, transcript=transcript, backend="openai"
    )
    ids = transcript.alias_map
    assert content.topics[0].message_ids == [ids["m1"]]
    assert content.key_points[0].message_ids == [ids["m2"], ids["m3"]]
    assert content.decisions[0].message_ids == [ids["m4"]]
    assert content.action_items[0].owner == "bob" and content.action_items[0].message_ids == [
        ids["m5"]
    ]
    assert content.open_questions[0].message_ids == [ids["m6"]]
    assert content.contributions[0].participant == "bob"
    for text in texts_of(content):
        assert not LEAK.search(text.replace("m5 screws", "")), text
    # "m5 screws" is text of message m5, so it stays; invented aliases are gone.
    assert content.contributions[0].points[0].text == "the m5 screws"
    assert content.overview == "Headers fixed the build; as put it."
    assert report.aliases_removed >= 1 and report.citations_dropped == 0
    assert set(content.citations) == content.cited_ids()


def test_notes_with_inline_aliases_are_cleaned_for_the_next_prompt(transcript: Transcript) -> None:
    notes = {
        "key_points": [{"text": "fix works [m2]", "message_ids": []}],
        "topics": [{"title": "t", "summary": "s (m9)", "message_ids": ["m1"]}],
    }
    cleaned, report = clean_notes(notes, transcript=transcript, allowed=["m1", "m2"])
    assert cleaned["key_points"] == [{"message_ids": ["m2"], "text": "fix works"}]
    assert cleaned["topics"][0]["summary"] == "s"
    assert report.aliases_removed == 1
