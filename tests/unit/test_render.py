from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import jsonschema

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
