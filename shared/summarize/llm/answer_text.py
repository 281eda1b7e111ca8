"""Plain-text answers: the text rung's heading-and-bullet format, and reading text back.

:func:`text_instructions` tells a model how to answer without JSON (``## key_points`` then
``- <text> [m12, m15]``); :func:`read_text` reads that back, and also the Markdown a model
writes of its own accord: ``#`` headings, ``**Bold:**`` and ``Name:`` lines, bullets and
numbered lists, indented sub-bullets, sub-headings that name topics.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from shared.summarize.llm.aliases import extract_aliases, has_alias
from shared.summarize.llm.answer_items import (
    BULLET,
    Entry,
    Shape,
    entries_to_items,
    layout_of,
    match_name,
    plain,
    split_entries,
)

__all__ = ["read_text", "text_instructions"]

_HASH_HEADING = re.compile(r"^\s{0,3}#{1,6}\s+(.*?)\s*#*\s*$")
_BOLD_HEADING = re.compile(r"^\s*(?:\*\*|__)([^*_]{2,60}?)(?::\s*)?(?:\*\*|__)\s*:?\s*(.*)$")
_PLAIN_HEADING = re.compile(r"^\s*([A-Za-z][\w &/'-]{1,40}?)\s*:\s*(.*)$")


def _heading(line: str, props: Sequence[str]) -> tuple[str | None, str, str] | None:
    """(section or None, title, rest of line) when ``line`` is a heading."""
    match = _HASH_HEADING.match(line)
    if match is not None:
        title = plain(match.group(1)).strip(" :")
        return match_name(title, props), title, ""
    match = _BOLD_HEADING.match(line)
    if match is not None and BULLET.match(line) is None:
        title = match.group(1).strip(" :")
        section = match_name(title, props)
        if section is not None or not match.group(2):
            return section, title, match.group(2)
    match = _PLAIN_HEADING.match(line)
    if match is not None:
        section = match_name(match.group(1), props, loose=False)
        if section is not None:
            return section, match.group(1), match.group(2)
    return None


def read_text(text: str, schema: Mapping[str, Any]) -> dict[str, Any]:
    """Data of ``schema`` from a plain-text answer, by its headings and bullets.

    Text before the first heading is the overview (or, for notes, key points); a sub-heading
    inside a section of labelled items (topics) starts an item with that label.
    """
    layout = layout_of(schema)
    props = layout.props
    first_array = "key_points" if "key_points" in layout.arrays else next(iter(layout.arrays), None)
    preamble = layout.strings[0] if layout.strings else first_array
    sections: dict[str, list[str]] = {p: [] for p in props}
    labelled: dict[str, list[Entry]] = {p: [] for p in layout.arrays}
    current = preamble
    for line in text.splitlines():
        heading = _heading(line, props)
        if heading is None:
            if current is not None:
                sections[current].append(line)
            continue
        section, title, rest = heading
        if section is not None:
            if section == preamble and current == preamble:
                # The answer names this section itself: what came before it was chatter
                # ("Sure! Here is the summary:"), unless it cites something.
                sections[section] = [ln for ln in sections[section] if has_alias(ln)]
            current = section
            if rest.strip():
                sections[current].append(rest)
            continue
        shape = layout.arrays.get(current or "")
        if shape is not None and shape.label is not None and current is not None:
            _flush_label(sections, labelled, current)
            labelled[current].append(Entry("", label=title))
        # An unknown heading elsewhere (a title line) carries no content of its own.
    out: dict[str, Any] = {}
    for prop in props:
        if prop in layout.arrays:
            _flush_label(sections, labelled, prop)
            entries = [e for e in labelled[prop] if e.text or e.children or e.label]
            out[prop] = entries_to_items(entries, layout.arrays[prop])
        else:
            paragraph = " ".join(
                (BULLET.sub(r"\2", ln) if BULLET.match(ln) else ln).strip()
                for ln in sections[prop]
                if ln.strip()
            )
            out[prop] = extract_aliases(plain(paragraph))[0]
    return out


def _flush_label(
    sections: dict[str, list[str]], labelled: dict[str, list[Entry]], prop: str
) -> None:
    """Move the lines gathered for ``prop`` into its entries (under the last label, if any)."""
    lines = sections[prop]
    if not lines:
        return
    sections[prop] = []
    found = split_entries(lines)
    if labelled[prop] and not labelled[prop][-1].text:
        target = labelled[prop][-1]
        target.text = " ".join(e.text for e in found)
        target.children.extend(c for e in found for c in e.children)
        return
    labelled[prop].extend(found)


# -- the text rung's instructions -------------------------------------------------------------


def _bullet_format(shape: Shape) -> str:
    cite = " [m12, m15]" if shape.ids else ""
    if shape.nested:
        inner = next(iter(shape.nested.values()))
        cite = " [m12, m15]" if inner.ids else cite
        return f"- <{shape.label or 'name'}>: <{inner.body or 'text'}>{cite}"
    parts = []
    for name in shape.enums:
        parts.append(f"<{name}>:")
    if shape.label and shape.body:
        parts.append(f"<{shape.label}>: <{shape.body}>")
    elif shape.body:
        parts.append(f"<{shape.body}>")
    if shape.nullable:
        notes = "; ".join(f"{n}: <{n} or none>" for n in shape.nullable)
        parts.append(f"({notes})")
    return "- " + " ".join(parts) + cite


def text_instructions(schema: Mapping[str, Any]) -> str:
    """How to answer in plain text so that :func:`read_text` gets every section back."""
    layout = layout_of(schema)
    lines = [
        "Answer format: plain text, not JSON (this replaces the JSON answer described above).",
        "Write these headings, each on a line of its own, in this order, leaving none out:",
    ]
    for prop in layout.props:
        lines.append(f"## {prop}")
        shape = layout.arrays.get(prop)
        if shape is None:
            lines.append("<one paragraph>")
            continue
        lines.append(_bullet_format(shape))
        for name, values in shape.enums.items():
            lines.append(f"  ({name} is one of: {', '.join(values)})")
        if shape.nested:
            lines.append("  (one bullet per point; repeat the name for each)")
    lines.append(
        "Under a heading with nothing to report write '- none'. End every bullet with the "
        "aliases of the messages it rests on, in square brackets, such as [m12, m15]."
    )
    return "\n".join(lines)
