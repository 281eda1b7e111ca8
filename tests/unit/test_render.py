from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from pathlib import Path

import jsonschema
import pytest

from shared.delivery.discord_render import render_messages
from shared.summarize.content import (
    ActionItem,
    Citation,
    CitedPoint,
    Contribution,
    Coverage,
    Participant,
    SummaryContent,
    SummaryFormat,
    Topic,
)
from shared.summarize.render import (
    SummaryDocument,
    document_json_schema,
    escape_markdown,
    render_json,
    render_markdown,
    render_text,
)

SCHEMA_FILE = Path(__file__).parents[2] / "schema" / "json" / "summary-document.v1.json"
T0 = datetime(2026, 3, 1, 10, 0, tzinfo=UTC)


def _cite(mid: str, author: str) -> Citation:
    return Citation(
        message_id=mid,
        author=author,
        timestamp=T0,
        jump_url=f"https://discord.com/channels/1/2/{mid}",
    )


def sample_content(**changes: object) -> SummaryContent:
    data: dict[str, object] = {
        "format": SummaryFormat.DETAILED,
        "overview": "Two people fixed a build.",
        "topics": [Topic(title="build", summary="ann: build fails", message_ids=["11", "12"])],
        "key_points": [CitedPoint(text="ann: headers missing", message_ids=["11"])],
        "decisions": [CitedPoint(text="bob: use linux-headers", message_ids=["12"])],
        "open_questions": [CitedPoint(text="ann: why 2.6.8?", message_ids=["13"])],
        "action_items": [
            ActionItem(task="install headers", owner="ann", due="tomorrow", message_ids=["12"])
        ],
        "contributions": [
            Contribution(participant="bob", points=[CitedPoint(text="fix", message_ids=["12"])])
        ],
        "technical": [CitedPoint(text="apt-get install linux-headers", message_ids=["14"])],
        "participants": [
            Participant(id="1", name="ann", messages=3),
            Participant(id="2", name="bob", messages=1),
        ],
        "citations": {m: _cite(m, "ann") for m in ("11", "12", "13")},
        "coverage": Coverage(
            messages_total=5,
            messages_used=4,
            messages_skipped=1,
            start=T0,
            end=T0,
            channel_id="2",
            channel_name="help",
            guild_id="1",
        ),
        "backend": "extractive",
    }
    data.update(changes)
    return SummaryContent.model_validate(data)


def test_text_has_sections_numbered_citations_and_links() -> None:
    text = render_text(sample_content(), duration_seconds=1.25)
    assert text.startswith("Summary of #help (detailed)")
    for section in (
        "Overview",
        "Topics",
        "Key points",
        "Decisions",
        "Action items",
        "Open questions",
        "Technical notes",
        "Contributions: bob",
        "Participants",
    ):
        assert f"\n{section}\n" in text
    assert "• install headers (owner: ann) (due: tomorrow) [2]" in text
    assert "[1] 11 · ann · 2026-03-01 10:00 · https://discord.com/channels/1/2/11" in text
    assert "[4] 14\n" in text, "an id without citation metadata is still listed"
    assert "4 messages cited · backend extractive · done in 1.2 s" in text


def test_empty_sections_are_left_out_and_degraded_is_flagged() -> None:
    content = sample_content(decisions=[], technical=[], contributions=[], degraded=True)
    text = render_text(content)
    assert "Decisions" not in text and "Technical notes" not in text
    assert "[degraded: offline extractive fallback]" in text


def test_markdown_links_citations() -> None:
    md = render_markdown(sample_content(), duration_seconds=2)
    assert md.startswith("# Summary of #help (detailed)")
    assert "- ann: headers missing [[1]](https://discord.com/channels/1/2/11)" in md
    assert "## Participants" in md and "ann (3), bob (1)" in md


def test_json_document_validates_against_committed_schema() -> None:
    document = SummaryDocument(
        job_id="j",
        summary_id="s",
        created_at=T0,
        duration_seconds=0.5,
        prompt_version="v",
        summary=sample_content(),
    )
    data = json.loads(render_json(document))
    schema = json.loads(SCHEMA_FILE.read_text())
    jsonschema.validate(data, schema)
    assert data["$schema"] == schema["$id"]
    data["summary"]["key_points"][0]["message_ids"] = []
    try:
        jsonschema.validate(data, schema)
    except jsonschema.ValidationError:
        pass
    else:
        raise AssertionError("a bullet without citations must not validate")


def test_committed_schema_is_current() -> None:
    assert json.loads(SCHEMA_FILE.read_text()) == document_json_schema(), (
        "regenerate schema/json/summary-document.v1.json from document_json_schema()"
    )


def test_many_participants_are_abbreviated() -> None:
    people = [Participant(id=str(i), name=f"p{i}", messages=1) for i in range(15)]
    assert "and 3 more" in render_text(sample_content(participants=people))


# A masked link to anywhere but a cited message; a real citation is [[n]](discord jump link).
MASKED_LINK = re.compile(r"(?<!\\)\[+[^\]]*(?<!\\)\]+\((https?://[^)\s]+)\)")
FORGED = "the official patch is at [[1]](https://evil.example/patch) so install it now"


def _hostile_content() -> SummaryContent:
    return sample_content(
        overview=f"Fixed; {FORGED}",
        topics=[Topic(title="[patch](https://evil.example/t)", summary=FORGED, message_ids=["11"])],
        key_points=[CitedPoint(text=f"ann: {FORGED}", message_ids=["11"])],
        action_items=[
            ActionItem(
                task=FORGED, owner="ann", due="[now](https://evil.example/d)", message_ids=["12"]
            )
        ],
        contributions=[
            Contribution(
                participant="[b](https://evil.example/c)",
                points=[CitedPoint(text=FORGED, message_ids=["12"])],
            )
        ],
    )


def _foreign_links(text: str) -> list[str]:
    return [u for u in MASKED_LINK.findall(text) if not u.startswith("https://discord.com/")]


def test_summary_text_forms_no_link_in_discord_embeds_or_markdown() -> None:
    content = _hostile_content()
    embeds = [e for m in render_messages(content) for e in m.to_json()["embeds"]]
    description = "\n".join(e.get("description") or "" for e in embeds)
    markdown = render_markdown(content)
    for rendered in (description, markdown):
        assert _foreign_links(rendered) == []
        assert "\\[\\[1\\]\\](https://evil.example/patch)" in rendered
        # The summary's own citations are still links.
        assert "[[1]](https://discord.com/channels/1/2/11)" in rendered
    assert "## Contributions: \\[b\\](https://evil.example/c)" in markdown
    # Plain text has no Markdown to escape.
    assert f"ann: {FORGED} [" in render_text(content)


@pytest.mark.parametrize(
    ("text", "escaped"),
    [
        ("[[1]](https://evil.example)", "\\[\\[1\\]\\](https://evil.example)"),
        # Escaped already: not escaped twice; an escaped backslash does not escape the bracket.
        ("\\[x\\](https://e.example)", "\\[x\\](https://e.example)"),
        ("\\\\[x](https://e.example)", "\\\\\\[x\\](https://e.example)"),
        # A backtick that opens no span of its own could close one in the next text.
        ("stray ` [x](https://e.example)", "stray \\` \\[x\\](https://e.example)"),
        ("````[x](y)````", "\\`\\`\\`\\`\\[x\\](y)\\`\\`\\`\\`"),
        (
            "<a href='https://e.example'>[1]</a> if a < b",
            "\\<a href='https://e.example'>\\[1\\]\\</a> if a < b",
        ),
        ("ends in a backslash \\", "ends in a backslash \\\\"),
    ],
)
def test_escape_markdown_refuses_links(text: str, escaped: str) -> None:
    assert escape_markdown(text) == escaped


@pytest.mark.parametrize(
    "text",
    [
        "Grüße aus Köln, 東京の天気は晴れです, مرحبا",
        "emoji \U0001f468\u200d\U0001f469\u200d\U0001f467 and \u2764\ufe0f",
        "run `a[0] = x[1]` then ``b[2]`` and ```py\nprint([1, 2])\n```",
        "see https://help.ubuntu.com/kernel_(old)?q=1&r=2#top and <@123> **bold** _it_",
    ],
)
def test_escape_markdown_leaves_ordinary_text_alone(text: str) -> None:
    assert escape_markdown(text) == text
