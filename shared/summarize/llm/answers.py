"""Reading a model's summary or notes answer, whatever shape it came back in.

Servers that do not enforce a schema (no ``json_schema`` support, or a ``response_format`` they
ignore) return what their model felt like writing: JSON of its own shape ("Key Points" as a
list of strings with "(m3)" in them, topics with ``name``/``description``/``messages``),
JSON inside prose or a code fence, or plain Markdown with headings and bullets.
:class:`SummaryReader` is the :class:`~shared.llm.structured.AnswerReader` of the summarize
steps; it turns all of these into data of the requested schema (:data:`prompts.NOTES_SCHEMA`
or a :func:`prompts.final_schema`):

* JSON that fits the schema is taken as it is (shape ``json``);
* JSON of another shape is mapped onto the schema (shape ``coerced``): section and field names
  matched by name, spelling and synonyms; an item written as a string becomes an item whose
  citations are the aliases in it; owners, due dates and categories are picked out;
* text is parsed by its headings and bullets (shape ``prose``): this is also what the ladder's
  text rung asks for (:meth:`SummaryReader.instructions`; :mod:`~shared.summarize.llm.answer_text`).

Items are built the same way from JSON and from text (:mod:`~shared.summarize.llm.answer_items`).

In every shape, aliases written inside the text ("fixed [m22]") are lifted into
``message_ids`` (:mod:`shared.summarize.llm.aliases`).  Whether those aliases are real is not
decided here: :mod:`shared.summarize.llm.validate` checks every citation against the transcript,
exactly as for an answer that fitted the schema.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from shared.llm.structured import (
    AnswerShape,
    Reading,
    StructuredMode,
    parse_json_text,
    schema_check,
    schema_instruction,
    strip_reasoning,
)
from shared.summarize.llm.aliases import extract_aliases
from shared.summarize.llm.answer_items import Layout, flatten, items_from, layout_of, match_name
from shared.summarize.llm.answer_text import read_text, text_instructions

__all__ = ["SummaryReader", "coerce", "lift_citations"]


# -- JSON of another shape ----------------------------------------------------------------------


def coerce(data: Mapping[str, Any], schema: Mapping[str, Any]) -> dict[str, Any]:
    """``data`` (JSON of any shape) mapped onto ``schema``'s sections; missing ones empty."""
    layout = layout_of(schema)
    inner = _unwrap(data, layout)
    out: dict[str, Any] = {p: ([] if p in layout.arrays else "") for p in layout.props}
    filled: set[str] = set()
    used: set[str] = set()
    for loose in (False, True):  # exact names and synonyms first, then looser matches
        for key, value in inner.items():
            if key in used:
                continue
            target = match_name(str(key), [p for p in layout.props if p not in filled], loose=loose)
            if target is None:
                continue
            used.add(key)
            filled.add(target)
            if target in layout.arrays:
                out[target] = items_from(value, layout.arrays[target])
            else:
                out[target] = _strip_aliases(value if isinstance(value, str) else flatten(value))
    if not filled:
        prose = [v for v in inner.values() if isinstance(v, str) and "\n" in v.strip()]
        if prose:
            return read_text(max(prose, key=len), schema)
    return out


def _unwrap(data: Mapping[str, Any], layout: Layout) -> Mapping[str, Any]:
    """The object holding the sections (``{"summary": {...}}`` wraps them once, sometimes)."""
    if any(match_name(str(k), layout.props) for k in data):
        nested = [v for v in data.values() if isinstance(v, Mapping)]
        if len(data) == 1 and nested and any(match_name(str(k), layout.props) for k in nested[0]):
            return nested[0]
        return data
    for value in data.values():
        if isinstance(value, Mapping) and any(match_name(str(k), layout.props) for k in value):
            return value
    return data


def _strip_aliases(text: str) -> str:
    return extract_aliases(text)[0]


def lift_citations(data: Any) -> Any:
    """A copy of ``data`` whose items cite the aliases written in their text, text cleaned.

    Strings outside items (the overview) lose their aliases: there is nothing to attach them
    to.
    """
    if isinstance(data, list):
        return [lift_citations(v) for v in data]
    if not isinstance(data, Mapping):
        return _strip_aliases(data) if isinstance(data, str) else data
    ids = data.get("message_ids")
    out: dict[str, Any] = {}
    found: list[str] = []
    for key, value in data.items():
        if key == "message_ids":
            continue
        if isinstance(value, str):
            text, aliases = extract_aliases(value)
            out[key] = text
            found.extend(aliases)
        else:
            out[key] = lift_citations(value)
    if isinstance(ids, list):
        out["message_ids"] = list(dict.fromkeys([*(str(v) for v in ids), *found]))
    return out


# -- the reader -------------------------------------------------------------------------------


def _cited_count(data: Mapping[str, Any]) -> tuple[int, int]:
    """(items, items that cite something) anywhere in ``data``."""
    items = cited = 0

    def walk(node: Any) -> None:
        nonlocal items, cited
        if isinstance(node, Mapping):
            ids = node.get("message_ids")
            if isinstance(ids, list):
                items += 1
                cited += bool(ids)
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(data)
    return items, cited


def _problems(data: Mapping[str, Any], layout: Layout) -> list[str]:
    """What makes an answer that did not come as the schema unusable: nothing cited.

    Prose without a single cited point cannot become a cited summary, however well written.
    """
    items, cited = _cited_count(data)
    if not layout.arrays or cited:
        return []
    if items:
        return [
            "no point names the messages it rests on: end each one with their aliases in "
            "square brackets, such as [m12]"
        ]
    return [
        "the answer has no points under the headings asked for ("
        + ", ".join(layout.arrays)
        + "), each ending with the aliases of its messages such as [m12]"
    ]


class SummaryReader:
    """The :class:`~shared.llm.structured.AnswerReader` of notes and summaries."""

    def instructions(self, mode: StructuredMode, schema: Mapping[str, Any]) -> str | None:
        """Nothing for ``json_schema``; the schema for ``json_object``; headings for text."""
        if mode == "json_schema":
            return None
        if mode == "json_object":
            return schema_instruction(schema)
        return text_instructions(schema)

    def read(self, text: str, schema: Mapping[str, Any]) -> Reading:
        """Data of ``schema`` from an answer of any shape (see the module docstring)."""
        layout = layout_of(schema)
        try:
            data = parse_json_text(text)
        except ValueError:
            data = None
        if isinstance(data, list):
            data = {next(iter(layout.arrays), "items"): data}
        if isinstance(data, dict):
            lifted = lift_citations(data)
            if schema_check(schema).fits(lifted):
                shape: AnswerShape = "json" if _is_bare_json(text) else "coerced"
                return Reading(lifted, shape, fits_schema=True)
            shaped = coerce(data, schema)
            return Reading(shaped, "coerced", _problems(shaped, layout))
        parsed = read_text(strip_reasoning(text, opened_only=True), schema)
        return Reading(parsed, "prose", _problems(parsed, layout))


def _is_bare_json(text: str) -> bool:
    """True when the whole answer is one JSON value (no fence, no prose around it), after
    any reasoning block the model wrote first (it kept to the format in what it answered)."""
    for candidate in (text.strip(), strip_reasoning(text.strip())):
        try:
            json.loads(candidate)
        except ValueError:
            continue
        return True
    return False
