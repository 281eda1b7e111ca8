"""Render a :class:`SummaryContent` as plain text (terminals), Markdown, or a JSON document.

Citations are numbered in order of first use; each bullet ends with its numbers and the
citation list at the end gives message id, author, time and jump link.  The JSON document is
the public ``--json`` output; its schema is ``schema/json/summary-document.v1.json``.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from shared.summarize.content import ActionItem, ChannelSection, CitedPoint, SummaryContent

__all__ = [
    "DOCUMENT_SCHEMA_ID",
    "SummaryDocument",
    "document_json_schema",
    "render_json",
    "render_markdown",
    "render_text",
    "summary_sections",
    "summary_title",
]

DOCUMENT_SCHEMA_ID = "https://summarybot.dev/schemas/summary-document.v1.json"


class SummaryDocument(BaseModel):
    """The machine-readable result of a job, as printed by ``--json`` and served by the API."""

    model_config = ConfigDict(extra="forbid")

    schema_: str = Field(default=DOCUMENT_SCHEMA_ID, alias="$schema")
    job_id: str
    summary_id: str
    created_at: datetime
    duration_seconds: float | None = Field(default=None, ge=0)
    model: str | None = None
    prompt_version: str
    summary: SummaryContent


class _Numbering:
    """Assigns citation numbers in order of first use."""

    def __init__(self) -> None:
        self.order: dict[str, int] = {}

    def refs(self, ids: Iterable[str]) -> str:
        numbers = []
        for message_id in ids:
            if message_id not in self.order:
                self.order[message_id] = len(self.order) + 1
            numbers.append(self.order[message_id])
        return "".join(f"[{n}]" for n in numbers)


Rows = list[tuple[str, list[str]]]


def _points(items: list[CitedPoint], prefix: str = "") -> Rows:
    return [(prefix + p.text, p.message_ids) for p in items]


def _actions(items: list[ActionItem], prefix: str = "") -> Rows:
    return [
        (
            prefix
            + a.task
            + (f" (owner: {a.owner})" if a.owner else "")
            + (f" (due: {a.due})" if a.due else ""),
            a.message_ids,
        )
        for a in items
    ]


def _channel_rows(section: ChannelSection, strong: str) -> Rows:
    rows: Rows = [(section.overview, [])] if section.overview else []
    rows += [(f"{strong}{t.title}{strong}: {t.summary}", t.message_ids) for t in section.topics]
    rows += _points(section.key_points)
    rows += _points(section.decisions, "Decision: ")
    rows += _actions(section.action_items, "To do: ")
    rows += _points(section.open_questions, "Open question: ")
    return rows


def summary_sections(content: SummaryContent, *, strong: str = "") -> list[tuple[str, Rows]]:
    """Section title → (text, cited ids) rows, in reading order, empty sections left out.

    ``strong`` wraps each topic's title (``"**"`` for Discord's bold).  A multi-channel
    summary leads with what matters most across its channels, then has one section per
    channel with activity, and names the quiet channels in one line.
    """
    sections: list[tuple[str, Rows]] = [
        (
            "Topics",
            [(f"{strong}{t.title}{strong}: {t.summary}", t.message_ids) for t in content.topics],
        ),
        (
            "What matters most" if content.multi_channel else "Key points",
            _points(content.key_points),
        ),
        ("Decisions", _points(content.decisions)),
        ("Action items", _actions(content.action_items)),
        ("Open questions", _points(content.open_questions)),
        ("Technical notes", _points(content.technical)),
    ]
    for contribution in content.contributions:
        sections.append(
            (f"Contributions: {contribution.participant}", _points(contribution.points))
        )
    for section in content.channels:
        sections.append(
            (f"{section.label} · {section.messages:,} messages", _channel_rows(section, strong))
        )
    if content.quiet_channels:
        quiet = ", ".join(f"#{name}" for name in content.quiet_channels)
        sections.append(("Nothing new", [(quiet, [])]))
    return [(title, rows) for title, rows in sections if rows]


def summary_title(content: SummaryContent) -> str:
    """``Summary of #channel (format)``, or ``Digest of <server or category>`` for several."""
    cov = content.coverage
    if content.multi_channel:
        return f"Digest of {cov.channel_name} ({content.format.value})"
    return f"Summary of #{cov.channel_name} ({content.format.value})"


def _span(content: SummaryContent) -> str:
    cov = content.coverage
    if cov.start is None or cov.end is None:
        return "no messages"
    return f"{cov.start:%Y-%m-%d %H:%M} → {cov.end:%Y-%m-%d %H:%M} UTC"


def _header(content: SummaryContent) -> tuple[str, str]:
    cov = content.coverage
    title = summary_title(content)
    if content.degraded:
        title += " [degraded: offline extractive fallback]"
    stats = (
        f"{cov.messages_total:,} messages ({cov.messages_used:,} used, "
        f"{cov.messages_skipped:,} skipped) · {_span(content)} · "
        f"{len(content.participants)} participants"
    )
    return title, stats


def _participants(content: SummaryContent, limit: int = 12) -> str:
    shown = [f"{p.name} ({p.messages})" for p in content.participants[:limit]]
    rest = len(content.participants) - limit
    return ", ".join(shown) + (f", and {rest} more" if rest > 0 else "")


def render_text(content: SummaryContent, *, duration_seconds: float | None = None) -> str:
    """Plain text for a terminal: sections, numbered citations with jump links, participants."""
    numbering = _Numbering()
    title, stats = _header(content)
    lines = [title, stats, "", "Overview", f"  {content.overview}"]
    for section, rows in summary_sections(content):
        lines += ["", section]
        lines += [f"  • {text} {numbering.refs(ids)}" for text, ids in rows]
    if content.participants:
        lines += ["", "Participants", f"  {_participants(content)}"]
    lines += ["", "Citations"]
    for message_id, number in numbering.order.items():
        cite = content.citations.get(message_id)
        if cite is None:
            lines.append(f"  [{number}] {message_id}")
            continue
        link = f" · {cite.jump_url}" if cite.jump_url else ""
        lines.append(
            f"  [{number}] {message_id} · {cite.author} · {cite.timestamp:%Y-%m-%d %H:%M}{link}"
        )
    footer = f"{len(numbering.order)} messages cited · backend {content.backend}"
    if duration_seconds is not None:
        footer += f" · done in {duration_seconds:.1f} s"
    lines += ["", footer]
    return "\n".join(lines) + "\n"


def render_markdown(content: SummaryContent, *, duration_seconds: float | None = None) -> str:
    """Markdown for files, webhooks and the API: citations link straight to the messages."""
    numbering = _Numbering()
    title, stats = _header(content)
    lines = [f"# {title}", "", f"_{stats}_", "", "## Overview", "", content.overview]

    def links(ids: list[str]) -> str:
        numbering.refs(ids)
        parts = []
        for message_id in ids:
            cite = content.citations.get(message_id)
            label = numbering.order[message_id]
            parts.append(
                f"[[{label}]]({cite.jump_url})" if cite and cite.jump_url else f"[{label}]"
            )
        return "".join(parts)

    for section, rows in summary_sections(content):
        lines += ["", f"## {section}", ""]
        lines += [f"- {text} {links(ids)}" for text, ids in rows]
    if content.participants:
        lines += ["", "## Participants", "", _participants(content)]
    footer = f"{len(numbering.order)} messages cited · backend {content.backend}"
    if duration_seconds is not None:
        footer += f" · done in {duration_seconds:.1f} s"
    lines += ["", f"_{footer}_"]
    return "\n".join(lines) + "\n"


def render_json(document: SummaryDocument) -> str:
    """The JSON document, pretty-printed, one object."""
    data: dict[str, Any] = document.model_dump(mode="json", by_alias=True)
    return json.dumps(data, ensure_ascii=False, indent=2) + "\n"


def document_json_schema() -> dict[str, Any]:
    """JSON Schema of :class:`SummaryDocument` (kept in ``schema/json``; a test checks it)."""
    schema = SummaryDocument.model_json_schema(by_alias=True, mode="serialization")
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": DOCUMENT_SCHEMA_ID,
        **schema,
    }
