"""Schema shapes and the items of an answer, shared by the readers of JSON and of text.

A notes or summary schema (:mod:`shared.summarize.llm.prompts`) has string sections (the
overview) and array sections whose items have a shape: a body (``text``, ``summary``,
``task``), sometimes a label before it (``title``, ``participant``), optional fields
(``owner``, ``due``), an enum (``category``), nested points, and ``message_ids``.
:func:`layout_of` reads that from the schema; :func:`item_from_text`, :func:`item_from_dict` and
:func:`items_from` build items of that shape from whatever a model wrote (a bullet, a string,
an object with other key names, a mapping of names to points), lifting the aliases written in
the text into ``message_ids``.  :data:`SYNONYMS` holds the other names models use.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from shared.summarize.llm.aliases import extract_aliases, tidy
from shared.summarize.transcript import normalize_alias

__all__ = [
    "BULLET",
    "LABEL_SPLIT",
    "SYNONYMS",
    "Entry",
    "Layout",
    "Shape",
    "cite",
    "entries_to_items",
    "flatten",
    "is_none",
    "item_from_dict",
    "item_from_text",
    "items_from",
    "layout_of",
    "match_name",
    "norm_name",
    "plain",
    "split_entries",
    "split_label",
]

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
BULLET = re.compile(r"^(\s*)(?:[-*•+]|\d{1,3}[.)])\s+(.*)$")
LABEL_SPLIT = re.compile(r"\s*(?::|\s[—–-])\s+")
_EMPHASIS = re.compile(r"(\*\*|__)(.+?)\1")


def norm_name(name: str) -> str:
    return " ".join(re.sub(r"[^a-z0-9]+", " ", name.lower()).split())


def match_name(name: str, props: Sequence[str], *, loose: bool = True) -> str | None:
    """The schema property ``name`` stands for (exact, synonym, plural, then containment)."""
    wanted = norm_name(re.sub(r"^\s*\d+[.)]\s*", "", name))
    if not wanted:
        return None
    for prop in props:
        if wanted in (norm_name(prop), norm_name(prop).replace(" ", "")):
            return prop
    for prop in props:
        if wanted in {norm_name(s) for s in SYNONYMS.get(prop, ())}:
            return prop
    for prop in props:
        if wanted.rstrip("s") == norm_name(prop).rstrip("s"):
            return prop
    if not loose:
        return None
    for prop in props:
        if re.search(rf"\b{re.escape(norm_name(prop))}\b", wanted):
            return prop
    for prop in props:
        if any(
            len(s) >= 5 and re.search(rf"\b{re.escape(norm_name(s))}\b", wanted)
            for s in SYNONYMS.get(prop, ())
        ):
            return prop
    return None


def is_none(value: object) -> bool:
    return value is None or (isinstance(value, str) and norm_name(value) in _NONE_WORDS)


# -- schema shapes ----------------------------------------------------------------------------


def _types(schema: Mapping[str, Any]) -> list[str]:
    kind = schema.get("type")
    return [str(t) for t in kind] if isinstance(kind, list) else [str(kind)]


@dataclass(frozen=True)
class Shape:
    """An item of an array section: which property is which."""

    props: tuple[str, ...]
    ids: str | None
    strings: tuple[str, ...]
    nullable: tuple[str, ...]
    enums: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    nested: Mapping[str, Shape] = field(default_factory=dict)

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


def _shape_of(schema: Mapping[str, Any]) -> Shape:
    props: dict[str, Any] = dict(schema.get("properties") or {})
    ids = None
    strings: list[str] = []
    nullable: list[str] = []
    enums: dict[str, tuple[str, ...]] = {}
    nested: dict[str, Shape] = {}
    for name, sub in props.items():
        types = _types(sub)
        if "array" in types:
            items = sub.get("items") or {}
            if "object" in _types(items):
                nested[name] = _shape_of(items)
            else:
                ids = name
        elif "enum" in sub:
            enums[name] = tuple(str(v) for v in sub["enum"])
        elif "null" in types:
            nullable.append(name)
        elif "string" in types:
            strings.append(name)
    return Shape(tuple(props), ids, tuple(strings), tuple(nullable), enums, nested)


@dataclass(frozen=True)
class Layout:
    """The top level of a schema: string sections and array sections (with their item shape)."""

    props: tuple[str, ...]
    strings: tuple[str, ...]
    arrays: Mapping[str, Shape]


@lru_cache(maxsize=32)
def _cached_layout(schema_json: str) -> Layout:
    schema = json.loads(schema_json)
    props: dict[str, Any] = dict(schema.get("properties") or {})
    strings = tuple(n for n, s in props.items() if "string" in _types(s))
    arrays = {
        n: _shape_of(s.get("items") or {})
        for n, s in props.items()
        if "array" in _types(s) and "object" in _types(s.get("items") or {})
    }
    return Layout(tuple(props), strings, arrays)


def layout_of(schema: Mapping[str, Any]) -> Layout:
    """The sections of ``schema`` and the shape of their items (cached per schema)."""
    return _cached_layout(json.dumps(schema))  # property order matters: no sort_keys


# -- items ------------------------------------------------------------------------------------


def plain(text: str) -> str:
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


def _annotations(text: str, shape: Shape) -> tuple[str, dict[str, str | None]]:
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
        value = plain(match.group(1)).strip(" .*_")
        found[prop] = None if is_none(value) else value
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


def split_label(text: str) -> tuple[str, str]:
    """ "Kernel build: it fails on 2.6.8" → ("Kernel build", "it fails on 2.6.8")."""
    parts = LABEL_SPLIT.split(text, maxsplit=1)
    if len(parts) == 2 and parts[0] and len(parts[0].split()) <= 12:
        return plain(parts[0]).strip(" *_"), parts[1].strip()
    words = text.split()
    return " ".join(words[:8]), text


def item_from_text(text: str, shape: Shape) -> dict[str, Any]:
    """One item from a line of text (a bullet, a string in a JSON list)."""
    text, ids = extract_aliases(text)
    text, extra = _annotations(text, shape)
    item: dict[str, Any] = dict.fromkeys(shape.nullable)
    item.update(extra)
    for name, values in shape.enums.items():
        item[name], text = _enum_value(text, values)
    if shape.nested:
        name, inner = next(iter(shape.nested.items()))
        label, rest = split_label(text) if LABEL_SPLIT.search(text) else (text, "")
        if shape.label:
            item[shape.label] = plain(label)
        item[name] = [item_from_text(rest, inner) | cite(inner, ids)] if rest else []
        return item
    if shape.label and shape.body:
        item[shape.label], item[shape.body] = split_label(plain(text))
    elif shape.body:
        item[shape.body] = plain(text)
    return item | cite(shape, ids)


def cite(shape: Shape, ids: Iterable[str]) -> dict[str, Any]:
    return {shape.ids: list(dict.fromkeys(ids))} if shape.ids else {}


def item_from_dict(data: Mapping[str, Any], shape: Shape) -> dict[str, Any]:
    """One item from a JSON object whose keys may not be the schema's."""
    item: dict[str, Any] = dict.fromkeys(shape.nullable)
    ids: list[str] = []
    loose: list[str] = []
    taken: set[str] = set()
    for key, value in data.items():
        target = match_name(str(key), [p for p in shape.props if p not in taken], loose=False)
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
            item[target] = items_from(value, shape.nested[target])
        elif target in shape.nullable:
            item[target] = None if is_none(value) else str(value)
        elif target in shape.enums:
            item[target], _ = _enum_value(str(value), shape.enums[target])
        else:
            item[target] = value if isinstance(value, str) else flatten(value)
    for name in shape.strings:
        if not item.get(name) and loose:
            item[name] = loose.pop(0)
    for name, values in shape.enums.items():
        if name not in item:
            item[name], _ = _enum_value(" ".join(str(v) for v in data.values()), values)
    for name in shape.strings:
        text, found = extract_aliases(str(item.get(name) or ""))
        item[name] = plain(text)
        ids.extend(found)
    for name in shape.nested:
        item.setdefault(name, [])
    return item | cite(shape, ids)


def flatten(value: object) -> str:
    if isinstance(value, Mapping):
        return " ".join(flatten(v) for v in value.values())
    if isinstance(value, list):
        return " ".join(flatten(v) for v in value)
    return "" if value is None else str(value)


def items_from(value: object, shape: Shape) -> list[dict[str, Any]]:
    """The items of an array section, from whatever the model put there."""
    if isinstance(value, list):
        out: list[dict[str, Any]] = []
        for entry in value:
            if isinstance(entry, Mapping):
                out.append(item_from_dict(entry, shape))
            elif isinstance(entry, list):
                out.extend(items_from(entry, shape))
            elif not is_none(entry):
                out.append(item_from_text(str(entry), shape))
        return out
    if isinstance(value, Mapping):
        return _items_from_mapping(value, shape)
    if isinstance(value, str) and not is_none(value):
        return entries_to_items(split_entries(value.splitlines()), shape)
    return []


def _items_from_mapping(value: Mapping[str, Any], shape: Shape) -> list[dict[str, Any]]:
    """``{"bob": ["point (m3)"]}``, ``{"Kernel build": "fails (m2)"}``, ``{"text": [ids]}``."""
    if any(match_name(str(k), shape.props, loose=False) for k in value):
        return [item_from_dict(value, shape)]
    out: list[dict[str, Any]] = []
    for key, entry in value.items():
        if shape.nested:
            name, inner = next(iter(shape.nested.items()))
            item: dict[str, Any] = dict.fromkeys(shape.nullable)
            if shape.label:
                item[shape.label] = str(key)
            item[name] = items_from(entry if isinstance(entry, list) else [entry], inner)
            out.append(item)
        elif isinstance(entry, list) and entry and all(_ids_from(v) for v in entry):
            out.append(item_from_text(str(key), shape) | cite(shape, _ids_from(entry)))
        elif shape.label:
            out.append(item_from_text(f"{key}: {flatten(entry)}", shape))
        else:
            out.append(item_from_text(f"{key} {flatten(entry)}", shape))
    return out


# -- bullets and paragraphs ------------------------------------------------------------------


@dataclass
class Entry:
    """One bullet or paragraph of a section (``children``: its indented bullets)."""

    text: str
    label: str | None = None
    children: list[str] = field(default_factory=list)


def split_entries(lines: Iterable[str]) -> list[Entry]:
    """Bullets (with indented sub-bullets and continuation lines) and paragraphs."""
    entries: list[Entry] = []
    base_indent: int | None = None
    blank = True
    for raw in lines:
        if not raw.strip():
            blank = True
            continue
        bullet = BULLET.match(raw)
        if bullet is not None:
            indent = len(bullet.group(1).expandtabs(4))
            if base_indent is None:
                base_indent = indent
            if indent > base_indent and entries:
                entries[-1].children.append(bullet.group(2).strip())
            else:
                entries.append(Entry(bullet.group(2).strip()))
        elif entries and not blank:
            target = entries[-1]
            if target.children:
                target.children[-1] += " " + raw.strip()
            else:
                target.text += " " + raw.strip()
        else:
            entries.append(Entry(raw.strip()))
        blank = False
    return entries


def entries_to_items(entries: Sequence[Entry], shape: Shape) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    for entry in entries:
        text = entry.text if entry.label is None else f"{entry.label}: {entry.text}".strip()
        if shape.nested and entry.children:
            items.append(_grouped_item(text, entry.children, shape))
            continue
        if entry.children:
            text = " ".join([text, *entry.children])
        if is_none(plain(extract_aliases(text)[0]).strip(" .")):
            continue
        items.append(item_from_text(text, shape))
    return items


def _grouped_item(head: str, children: Sequence[str], shape: Shape) -> dict[str, Any]:
    """A labelled item with points: "- bob:" and indented bullets under it."""
    name, inner = next(iter(shape.nested.items()))
    head, ids = extract_aliases(head)
    label, first = split_label(head) if LABEL_SPLIT.search(head) else (head.strip(" :"), "")
    item: dict[str, Any] = dict.fromkeys(shape.nullable)
    if shape.label:
        item[shape.label] = plain(label).strip(" :*_")
    points = [item_from_text(first, inner) | cite(inner, ids)] if first else []
    points.extend(item_from_text(child, inner) for child in children)
    item[name] = [p for p in points if inner.body is None or p.get(inner.body)]
    return item
