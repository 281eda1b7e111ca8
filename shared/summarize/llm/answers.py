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
  text rung asks for (:meth:`SummaryReader.instructions`).

In every shape, aliases written inside the text ("fixed [m22]") are lifted into
``message_ids`` (:mod:`shared.summarize.llm.aliases`).  Whether those aliases are real is not
decided here: :mod:`shared.summarize.llm.validate` checks every citation against the transcript,
exactly as for an answer that fitted the schema.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from jsonschema import Draft202012Validator

from shared.llm.structured import (
    Reading,
    StructuredMode,
    parse_json_text,
    schema_instruction,
)
from shared.summarize.llm.aliases import extract_aliases, has_alias, tidy
from shared.summarize.transcript import normalize_alias

__all__ = ["SummaryReader", "coerce", "lift_citations", "read_text", "text_instructions"]

#: Other names models give the sections and fields of our schemas.
SYNONYMS: dict[str, tuple[str, ...]] = {
    "overview": ("summary", "overall summary", "tldr", "tl dr", "abstract", "gist", "synopsis"),
    "topics": ("topic", "threads", "themes", "subjects", "discussions", "discussion topics"),
    "key_points": (
        "points",
        "highlights",
        "key takeaways",
        "takeaways",
        "main points",
        "important points",
        "findings",
        "keypoints",
    ),
    "decisions": ("decided", "agreements", "resolutions", "conclusions"),
    "action_items": (
        "actions",
        "tasks",
        "todos",
        "to dos",
        "to do",
        "next steps",
        "follow ups",
        "assignments",
    ),
    "open_questions": ("questions", "unanswered questions", "unresolved", "open issues"),
    "technical": ("technical details", "technical notes", "technical points", "engineering"),
    "contributions": ("participants", "contributors", "by participant", "people"),
    "title": ("name", "topic", "heading", "subject", "label"),
    "summary": ("description", "details", "detail", "gist", "text", "content", "body"),
    "text": (
        "point",
        "content",
        "detail",
        "description",
        "statement",
        "question",
        "decision",
        "item",
        "summary",
        "note",
    ),
    "task": ("action", "todo", "item", "description", "text", "what"),
    "owner": ("assignee", "assigned to", "who", "person", "responsible"),
    "due": ("deadline", "due date", "when", "by when", "date"),
    "category": ("type", "kind", "tag"),
    "participant": ("person", "name", "user", "author", "member", "who"),
    "points": ("contributions", "items", "notes", "said"),
    "message_ids": (
        "messages",
        "message",
        "sources",
        "source",
        "citations",
        "cites",
        "refs",
        "references",
        "ids",
        "evidence",
        "message id",
        "msgs",
    ),
}

_NONE_WORDS = frozenset({"", "none", "null", "n/a", "na", "-", "—", "unknown", "nobody", "no one"})
_HASH_HEADING = re.compile(r"^\s{0,3}#{1,6}\s+(.*?)\s*#*\s*$")
_BOLD_HEADING = re.compile(r"^\s*(?:\*\*|__)([^*_]{2,60}?)(?::\s*)?(?:\*\*|__)\s*:?\s*(.*)$")
_PLAIN_HEADING = re.compile(r"^\s*([A-Za-z][\w &/'-]{1,40}?)\s*:\s*(.*)$")
_BULLET = re.compile(r"^(\s*)(?:[-*•+]|\d{1,3}[.)])\s+(.*)$")
_LABEL_SPLIT = re.compile(r"\s*(?::|\s[—–-])\s+")
_EMPHASIS = re.compile(r"(\*\*|__)(.+?)\1")


def _norm(name: str) -> str:
    return " ".join(re.sub(r"[^a-z0-9]+", " ", name.lower()).split())


def _match(name: str, props: Sequence[str], *, loose: bool = True) -> str | None:
    """The schema property ``name`` stands for (exact, synonym, plural, then containment)."""
    wanted = _norm(re.sub(r"^\s*\d+[.)]\s*", "", name))
    if not wanted:
        return None
    for prop in props:
        if wanted in (_norm(prop), _norm(prop).replace(" ", "")):
            return prop
    for prop in props:
        if wanted in {_norm(s) for s in SYNONYMS.get(prop, ())}:
            return prop
    for prop in props:
        if wanted.rstrip("s") == _norm(prop).rstrip("s"):
            return prop
    if not loose:
        return None
    for prop in props:
        if re.search(rf"\b{re.escape(_norm(prop))}\b", wanted):
            return prop
    for prop in props:
        if any(
            len(s) >= 5 and re.search(rf"\b{re.escape(_norm(s))}\b", wanted)
            for s in SYNONYMS.get(prop, ())
        ):
            return prop
    return None


def _is_none(value: object) -> bool:
    return value is None or (isinstance(value, str) and _norm(value) in _NONE_WORDS)


# -- schema shapes ----------------------------------------------------------------------------


def _types(schema: Mapping[str, Any]) -> list[str]:
    kind = schema.get("type")
    return [str(t) for t in kind] if isinstance(kind, list) else [str(kind)]


@dataclass(frozen=True)
class _Shape:
    """An item of an array section: which property is which."""

    props: tuple[str, ...]
    ids: str | None
    strings: tuple[str, ...]
    nullable: tuple[str, ...]
    enums: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    nested: Mapping[str, _Shape] = field(default_factory=dict)

    @property
    def body(self) -> str | None:
        """The property holding the item's main text (the last required string)."""
        return self.strings[-1] if self.strings else None

    @property
    def label(self) -> str | None:
        """A short leading property (``title``, ``participant``), when the item has one."""
        if self.nested:
            return self.strings[0] if self.strings else None
        return self.strings[0] if len(self.strings) >= 2 else None


def _shape(schema: Mapping[str, Any]) -> _Shape:
    props: dict[str, Any] = dict(schema.get("properties") or {})
    ids = None
    strings: list[str] = []
    nullable: list[str] = []
    enums: dict[str, tuple[str, ...]] = {}
    nested: dict[str, _Shape] = {}
    for name, sub in props.items():
        types = _types(sub)
        if "array" in types:
            items = sub.get("items") or {}
            if "object" in _types(items):
                nested[name] = _shape(items)
            else:
                ids = name
        elif "enum" in sub:
            enums[name] = tuple(str(v) for v in sub["enum"])
        elif "null" in types:
            nullable.append(name)
        elif "string" in types:
            strings.append(name)
    return _Shape(tuple(props), ids, tuple(strings), tuple(nullable), enums, nested)


@dataclass(frozen=True)
class _Layout:
    """The top level of a schema: string sections and array sections (with their item shape)."""

    props: tuple[str, ...]
    strings: tuple[str, ...]
    arrays: Mapping[str, _Shape]


@lru_cache(maxsize=32)
def _layout_of(schema_json: str) -> _Layout:
    schema = json.loads(schema_json)
    props: dict[str, Any] = dict(schema.get("properties") or {})
    strings = tuple(n for n, s in props.items() if "string" in _types(s))
    arrays = {
        n: _shape(s.get("items") or {})
        for n, s in props.items()
        if "array" in _types(s) and "object" in _types(s.get("items") or {})
    }
    return _Layout(tuple(props), strings, arrays)


def _layout(schema: Mapping[str, Any]) -> _Layout:
    return _layout_of(json.dumps(schema))  # property order matters: no sort_keys


@lru_cache(maxsize=32)
def _validator_of(schema_json: str) -> Draft202012Validator:
    return Draft202012Validator(json.loads(schema_json))


# -- items ------------------------------------------------------------------------------------


def _plain(text: str) -> str:
    """Text without Markdown emphasis markers around words."""
    return _EMPHASIS.sub(r"\2", text).strip()


def _ids_from(value: object) -> list[str]:
    """Aliases in a citations value: a list, a string, a number."""
    if isinstance(value, list):
        return [a for item in value for a in _ids_from(item)]
    if isinstance(value, int) and not isinstance(value, bool):
        alias = normalize_alias(value)
        return [alias] if alias else []
    if isinstance(value, str):
        alias = normalize_alias(value)
        if alias is not None:
            return [alias]
        _, found = extract_aliases(f"[{value}]")
        return found
    return []


def _annotations(text: str, shape: _Shape) -> tuple[str, dict[str, str | None]]:
    """Take "owner: bob", "due: friday" (and their synonyms) out of an item's text."""
    found: dict[str, str | None] = {}
    for prop in shape.nullable:
        names = [prop, *SYNONYMS.get(prop, ())]
        pattern = re.compile(
            r"(?i)\b(?:" + "|".join(re.escape(n) for n in names) + r")\s*[:=]\s*([^;,)\]\n]*)"
        )
        match = pattern.search(text)
        if match is None:
            continue
        value = _plain(match.group(1)).strip(" .*_")
        found[prop] = None if _is_none(value) else value
        text = text[: match.start()] + text[match.end() :]
    text = re.sub(r"[(\[]\s*[;,]?\s*[;,]?\s*[)\]]", "", text)
    return tidy(text), found


def _enum_value(text: str, values: Sequence[str]) -> tuple[str, str]:
    """(value, rest): a leading "bug:" / "[bug]" picks the value, else a word of the text."""
    lead = re.match(r"^\s*[\[(]?\s*([A-Za-z]+)\s*[\])]?\s*[:—–-]?\s*(.*)$", text)
    if lead is not None and lead.group(1).lower() in values:
        return lead.group(1).lower(), lead.group(2)
    for value in values:
        if re.search(rf"(?i)\b{re.escape(value)}", text):
            return value, text
    return values[0], text


def _split_label(text: str) -> tuple[str, str]:
    """ "Kernel build: it fails on 2.6.8" → ("Kernel build", "it fails on 2.6.8")."""
    parts = _LABEL_SPLIT.split(text, maxsplit=1)
    if len(parts) == 2 and parts[0] and len(parts[0].split()) <= 12:
        return _plain(parts[0]).strip(" *_"), parts[1].strip()
    words = text.split()
    return " ".join(words[:8]), text


def _item_from_text(text: str, shape: _Shape) -> dict[str, Any]:
    """One item from a line of text (a bullet, a string in a JSON list)."""
    text, ids = extract_aliases(text)
    text, extra = _annotations(text, shape)
    item: dict[str, Any] = dict.fromkeys(shape.nullable)
    item.update(extra)
    for name, values in shape.enums.items():
        item[name], text = _enum_value(text, values)
    if shape.nested:
        name, inner = next(iter(shape.nested.items()))
        label, rest = _split_label(text) if _LABEL_SPLIT.search(text) else (text, "")
        if shape.label:
            item[shape.label] = _plain(label)
        item[name] = [_item_from_text(rest, inner) | _cite(inner, ids)] if rest else []
        return item
    if shape.label and shape.body:
        item[shape.label], item[shape.body] = _split_label(_plain(text))
    elif shape.body:
        item[shape.body] = _plain(text)
    return item | _cite(shape, ids)


def _cite(shape: _Shape, ids: Iterable[str]) -> dict[str, Any]:
    return {shape.ids: list(dict.fromkeys(ids))} if shape.ids else {}


def _item_from_dict(data: Mapping[str, Any], shape: _Shape) -> dict[str, Any]:
    """One item from a JSON object whose keys may not be the schema's."""
    item: dict[str, Any] = dict.fromkeys(shape.nullable)
    ids: list[str] = []
    loose: list[str] = []
    taken: set[str] = set()
    for key, value in data.items():
        target = _match(str(key), [p for p in shape.props if p not in taken], loose=False)
        if target is None:
            if isinstance(value, str):
                loose.append(value)
            elif isinstance(value, list) and value and all(_ids_from(v) for v in value):
                ids.extend(_ids_from(value))
            continue
        taken.add(target)
        if target == shape.ids:
            ids.extend(_ids_from(value))
        elif target in shape.nested:
            item[target] = _items(value, shape.nested[target])
        elif target in shape.nullable:
            item[target] = None if _is_none(value) else str(value)
        elif target in shape.enums:
            item[target], _ = _enum_value(str(value), shape.enums[target])
        else:
            item[target] = value if isinstance(value, str) else _flatten(value)
    for name in shape.strings:
        if not item.get(name) and loose:
            item[name] = loose.pop(0)
    for name, values in shape.enums.items():
        if name not in item:
            item[name], _ = _enum_value(" ".join(str(v) for v in data.values()), values)
    for name in shape.strings:
        text, found = extract_aliases(str(item.get(name) or ""))
        item[name] = _plain(text)
        ids.extend(found)
    for name in shape.nested:
        item.setdefault(name, [])
    return item | _cite(shape, ids)


def _flatten(value: object) -> str:
    if isinstance(value, Mapping):
        return " ".join(_flatten(v) for v in value.values())
    if isinstance(value, list):
        return " ".join(_flatten(v) for v in value)
    return "" if value is None else str(value)


def _items(value: object, shape: _Shape) -> list[dict[str, Any]]:
    """The items of an array section, from whatever the model put there."""
    if isinstance(value, list):
        out: list[dict[str, Any]] = []
        for entry in value:
            if isinstance(entry, Mapping):
                out.append(_item_from_dict(entry, shape))
            elif isinstance(entry, list):
                out.extend(_items(entry, shape))
            elif not _is_none(entry):
                out.append(_item_from_text(str(entry), shape))
        return out
    if isinstance(value, Mapping):
        return _items_from_mapping(value, shape)
    if isinstance(value, str) and not _is_none(value):
        return _entries_to_items(_entries(value.splitlines()), shape)
    return []


def _items_from_mapping(value: Mapping[str, Any], shape: _Shape) -> list[dict[str, Any]]:
    """``{"bob": ["point (m3)"]}``, ``{"Kernel build": "fails (m2)"}``, ``{"text": [ids]}``."""
    if any(_match(str(k), shape.props, loose=False) for k in value):
        return [_item_from_dict(value, shape)]
    out: list[dict[str, Any]] = []
    for key, entry in value.items():
        if shape.nested:
            name, inner = next(iter(shape.nested.items()))
            item: dict[str, Any] = dict.fromkeys(shape.nullable)
            if shape.label:
                item[shape.label] = str(key)
            item[name] = _items(entry if isinstance(entry, list) else [entry], inner)
            out.append(item)
        elif isinstance(entry, list) and entry and all(_ids_from(v) for v in entry):
            out.append(_item_from_text(str(key), shape) | _cite(shape, _ids_from(entry)))
        elif shape.label:
            out.append(_item_from_text(f"{key}: {_flatten(entry)}", shape))
        else:
            out.append(_item_from_text(f"{key} {_flatten(entry)}", shape))
    return out


# -- JSON of another shape ----------------------------------------------------------------------


def coerce(data: Mapping[str, Any], schema: Mapping[str, Any]) -> dict[str, Any]:
    """``data`` (JSON of any shape) mapped onto ``schema``'s sections; missing ones empty."""
    layout = _layout(schema)
    inner = _unwrap(data, layout)
    out: dict[str, Any] = {p: ([] if p in layout.arrays else "") for p in layout.props}
    filled: set[str] = set()
    used: set[str] = set()
    for loose in (False, True):  # exact names and synonyms first, then looser matches
        for key, value in inner.items():
            if key in used:
                continue
            target = _match(str(key), [p for p in layout.props if p not in filled], loose=loose)
            if target is None:
                continue
            used.add(key)
            filled.add(target)
            if target in layout.arrays:
                out[target] = _items(value, layout.arrays[target])
            else:
                out[target] = _strip_aliases(value if isinstance(value, str) else _flatten(value))
    if not filled:
        prose = [v for v in inner.values() if isinstance(v, str) and "\n" in v.strip()]
        if prose:
            return read_text(max(prose, key=len), schema)
    return out


def _unwrap(data: Mapping[str, Any], layout: _Layout) -> Mapping[str, Any]:
    """The object holding the sections (``{"summary": {...}}`` wraps them once, sometimes)."""
    if any(_match(str(k), layout.props) for k in data):
        nested = [v for v in data.values() if isinstance(v, Mapping)]
        if len(data) == 1 and nested and any(_match(str(k), layout.props) for k in nested[0]):
            return nested[0]
        return data
    for value in data.values():
        if isinstance(value, Mapping) and any(_match(str(k), layout.props) for k in value):
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


# -- text -------------------------------------------------------------------------------------


@dataclass
class _Entry:
    """One bullet or paragraph of a section (``children``: its indented bullets)."""

    text: str
    label: str | None = None
    children: list[str] = field(default_factory=list)


def _heading(line: str, props: Sequence[str]) -> tuple[str | None, str, str] | None:
    """(section or None, title, rest of line) when ``line`` is a heading."""
    match = _HASH_HEADING.match(line)
    if match is not None:
        title = _plain(match.group(1)).strip(" :")
        return _match(title, props), title, ""
    match = _BOLD_HEADING.match(line)
    if match is not None and _BULLET.match(line) is None:
        title = match.group(1).strip(" :")
        section = _match(title, props)
        if section is not None or not match.group(2):
            return section, title, match.group(2)
    match = _PLAIN_HEADING.match(line)
    if match is not None:
        section = _match(match.group(1), props, loose=False)
        if section is not None:
            return section, match.group(1), match.group(2)
    return None


def _entries(lines: Iterable[str]) -> list[_Entry]:
    """Bullets (with indented sub-bullets and continuation lines) and paragraphs."""
    entries: list[_Entry] = []
    base_indent: int | None = None
    blank = True
    for raw in lines:
        if not raw.strip():
            blank = True
            continue
        bullet = _BULLET.match(raw)
        if bullet is not None:
            indent = len(bullet.group(1).expandtabs(4))
            if base_indent is None:
                base_indent = indent
            if indent > base_indent and entries:
                entries[-1].children.append(bullet.group(2).strip())
            else:
                entries.append(_Entry(bullet.group(2).strip()))
        elif entries and not blank:
            target = entries[-1]
            if target.children:
                target.children[-1] += " " + raw.strip()
            else:
                target.text += " " + raw.strip()
        else:
            entries.append(_Entry(raw.strip()))
        blank = False
    return entries


def _entries_to_items(entries: Sequence[_Entry], shape: _Shape) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    for entry in entries:
        text = entry.text if entry.label is None else f"{entry.label}: {entry.text}".strip()
        if shape.nested and entry.children:
            items.append(_grouped_item(text, entry.children, shape))
            continue
        if entry.children:
            text = " ".join([text, *entry.children])
        if _is_none(_plain(extract_aliases(text)[0]).strip(" .")):
            continue
        items.append(_item_from_text(text, shape))
    return items


def _grouped_item(head: str, children: Sequence[str], shape: _Shape) -> dict[str, Any]:
    """A labelled item with points: "- bob:" and indented bullets under it."""
    name, inner = next(iter(shape.nested.items()))
    head, ids = extract_aliases(head)
    label, first = _split_label(head) if _LABEL_SPLIT.search(head) else (head.strip(" :"), "")
    item: dict[str, Any] = dict.fromkeys(shape.nullable)
    if shape.label:
        item[shape.label] = _plain(label).strip(" :*_")
    points = [_item_from_text(first, inner) | _cite(inner, ids)] if first else []
    points.extend(_item_from_text(child, inner) for child in children)
    item[name] = [p for p in points if inner.body is None or p.get(inner.body)]
    return item


def read_text(text: str, schema: Mapping[str, Any]) -> dict[str, Any]:
    """Data of ``schema`` from a plain-text answer, by its headings and bullets.

    Text before the first heading is the overview (or, for notes, key points); a sub-heading
    inside a section of labelled items (topics) starts an item with that label.
    """
    layout = _layout(schema)
    props = layout.props
    first_array = "key_points" if "key_points" in layout.arrays else next(iter(layout.arrays), None)
    preamble = layout.strings[0] if layout.strings else first_array
    sections: dict[str, list[str]] = {p: [] for p in props}
    labelled: dict[str, list[_Entry]] = {p: [] for p in layout.arrays}
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
            labelled[current].append(_Entry("", label=title))
        # An unknown heading elsewhere (a title line) carries no content of its own.
    out: dict[str, Any] = {}
    for prop in props:
        if prop in layout.arrays:
            _flush_label(sections, labelled, prop)
            entries = [e for e in labelled[prop] if e.text or e.children or e.label]
            out[prop] = _entries_to_items(entries, layout.arrays[prop])
        else:
            paragraph = " ".join(
                (_BULLET.sub(r"\2", ln) if _BULLET.match(ln) else ln).strip()
                for ln in sections[prop]
                if ln.strip()
            )
            out[prop] = _strip_aliases(_plain(paragraph))
    return out


def _flush_label(
    sections: dict[str, list[str]], labelled: dict[str, list[_Entry]], prop: str
) -> None:
    """Move the lines gathered for ``prop`` into its entries (under the last label, if any)."""
    lines = sections[prop]
    if not lines:
        return
    sections[prop] = []
    entries = _entries(lines)
    if labelled[prop] and not labelled[prop][-1].text:
        target = labelled[prop][-1]
        target.text = " ".join(e.text for e in entries)
        target.children.extend(c for e in entries for c in e.children)
        return
    labelled[prop].extend(entries)


# -- the text rung's instructions -------------------------------------------------------------


def _bullet_format(shape: _Shape) -> str:
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
    layout = _layout(schema)
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


def _problems(data: Mapping[str, Any], layout: _Layout) -> list[str]:
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
        layout = _layout(schema)
        try:
            data = parse_json_text(text)
        except ValueError:
            data = None
        if isinstance(data, list):
            data = {next(iter(layout.arrays), "items"): data}
        if isinstance(data, dict):
            lifted = lift_citations(data)
            if _validator_of(json.dumps(schema, sort_keys=True)).is_valid(lifted):
                return Reading(lifted, "json" if _is_bare_json(text) else "coerced")
            shaped = coerce(data, schema)
            return Reading(shaped, "coerced", _problems(shaped, layout))
        parsed = read_text(text, schema)
        return Reading(parsed, "prose", _problems(parsed, layout))


def _is_bare_json(text: str) -> bool:
    """True when the whole answer is one JSON value (no fence, no prose around it)."""
    try:
        json.loads(text.strip())
    except ValueError:
        return False
    return True
