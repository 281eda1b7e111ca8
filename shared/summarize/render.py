"""Render a :class:`SummaryContent` as plain text (terminals), Markdown, or a JSON document.

Citations are numbered in order of first use; each bullet ends with its numbers and the
citation list at the end gives message id, author, time and jump link.  The JSON document is
the public ``--json`` output; its schema is ``schema/json/summary-document.v1.json``.

Every text of a summary comes from the conversation (a quote, or a model's words about it),
so in Markdown (this module's and Discord's, :mod:`shared.delivery.discord_render`) it is
written through :func:`escape_markdown`: it cannot form a link, so it cannot pass for one of
the summary's own citations (``[[1]](https://discord.com/channels/...)``), which are the only
links a rendering makes.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from shared.summarize.content import ActionItem, ChannelSection, CitedPoint, SummaryContent, Topic

__all__ = [
    "DOCUMENT_SCHEMA_ID",
    "SummaryDocument",
    "document_json_schema",
    "escape_markdown",
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


# What text may not write in Markdown: "[" and "]" of a link (``[text](url)``), "<" opening an
# HTML tag or autolink, and a backtick that opens no code span of its own, since it could
# pair with one in the next text and leave text between them outside code.  Kept as written:
# a backslash escape (already escaped text is not escaped twice) and a code span whose
# backtick runs match and hold no backtick (nothing in it is a link, and every Markdown reads
# it as code).  A backslash at the very end is doubled: it escapes nothing that follows.
_MARKDOWN_UNSAFE = re.compile(
    r"(?P<keep>\\[!-/:-@\[-`{-~]|(?<!`)(?P<run>`{1,3})[^`]+(?P=run)(?!`))"
    r"|[\[\]`]|<(?=[A-Za-z/!?])|\\\Z"
)


def _escape(match: re.Match[str]) -> str:
    return match.group(0) if match.group("keep") else "\\" + match.group(0)


def escape_markdown(text: str) -> str:
    """``text`` as Markdown (Discord's or CommonMark) that shows as written and forms no link.

    Other Markdown (bold, code, quotes) keeps its meaning: only links are refused.
    """
    return _MARKDOWN_UNSAFE.sub(_escape, text)


def _as_is(text: str) -> str:
    return text


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


class _Rows:
    """Builds rows, every text of the summary written through ``escape``."""

    def __init__(self, strong: str, escape: Callable[[str], str]) -> None:
        self.strong = strong
        self.escape = escape

    def topics(self, items: list[Topic]) -> Rows:
        strong, esc = self.strong, self.escape
        return [(f"{strong}{esc(t.title)}{strong}: {esc(t.summary)}", t.message_ids) for t in items]

    def points(self, items: list[CitedPoint], prefix: str = "") -> Rows:
        return [(prefix + self.escape(p.text), p.message_ids) for p in items]

    def actions(self, items: list[ActionItem], prefix: str = "") -> Rows:
        esc = self.escape
        return [
            (
                prefix
                + esc(a.task)
                + (f" (owner: {esc(a.owner)})" if a.owner else "")
                + (f" (due: {esc(a.due)})" if a.due else ""),
                a.message_ids,
            )
            for a in items
        ]

    def channel(self, section: ChannelSection) -> Rows:
        rows: Rows = [(self.escape(section.overview), [])] if section.overview else []
        rows += self.topics(section.topics)
        rows += self.points(section.key_points)
        rows += self.points(section.decisions, "Decision: ")
        rows += self.actions(section.action_items, "To do: ")
        rows += self.points(section.open_questions, "Open question: ")
        return rows


def summary_sections(
    content: SummaryContent, *, strong: str = "", escape: Callable[[str], str] = _as_is
) -> list[tuple[str, Rows]]:
    """Section title → (text, cited ids) rows, in reading order, empty sections left out.

    ``strong`` wraps each topic's title (``"**"`` for Discord's bold); ``escape`` is applied
    to every text of the summary in the rows (:func:`escape_markdown` for Markdown), not to
    the section titles.  A multi-channel summary leads with what matters most across its
    channels, then has one section per channel with activity, and names the quiet channels
    in one line.
    """
    build = _Rows(strong, escape)
    sections: list[tuple[str, Rows]] = [
        ("Topics", build.topics(content.topics)),
        (
            "What matters most" if content.multi_channel else "Key points",
            build.points(content.key_points),
        ),
        ("Decisions", build.points(content.decisions)),
        ("Action items", build.actions(content.action_items)),
        ("Open questions", build.points(content.open_questions)),
        ("Technical notes", build.points(content.technical)),
    ]
    for contribution in content.contributions:
        sections.append(
            (f"Contributions: {contribution.participant}", build.points(contribution.points))
        )
    for section in content.channels:
        sections.append(
            (f"{section.label} · {section.messages:,} messages", build.channel(section))
        )
    if content.quiet_channels:
        quiet = ", ".join(f"#{escape(name)}" for name in content.quiet_channels)
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
    esc = escape_markdown
    lines = [f"# {esc(title)}", "", f"_{stats}_", "", "## Overview", "", esc(content.overview)]

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

    for section, rows in summary_sections(content, escape=esc):
        lines += ["", f"## {esc(section)}", ""]
        lines += [f"- {text} {links(ids)}" for text, ids in rows]
    if content.participants:
        lines += ["", "## Participants", "", esc(_participants(content))]
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
