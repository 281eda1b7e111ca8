"""Structured output: the rungs of the ladder, and how an answer is read back into data.

:meth:`shared.llm.client.LLMClient.complete_json` asks for JSON in the best mode a server keeps
its promise in (see :mod:`shared.llm.capabilities`)::

    json_schema (strict)  →  json_object + the schema in the prompt  →  text

An :class:`AnswerReader` decides what each rung adds to the prompt and how an answer becomes
data.  :class:`JsonReader`, the default, wants JSON on every rung (in the text rung, fenced or
surrounded by prose).  Callers that know their domain can do better: the summarizer's reader
(:mod:`shared.summarize.llm.answers`) asks for plain text with headings and bullets on the text
rung, and maps JSON of another shape onto its schema.

A :class:`Reading` says what shape the answer had, which is what the client learns from: a
strict ``json_schema`` answer that is not JSON of the schema's shape means the server ignores
``json_schema``; a JSON-mode answer that is not JSON means it ignores ``json_object``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, Literal, Protocol

import jsonschema_rs
from jsonschema import Draft202012Validator

__all__ = [
    "LADDER",
    "AnswerReader",
    "AnswerShape",
    "JsonReader",
    "Reading",
    "SchemaCheck",
    "StructuredMode",
    "parse_json_text",
    "schema_check",
    "schema_instruction",
    "strip_reasoning",
]

StructuredMode = Literal["json_schema", "json_object", "text"]

#: The rungs, best first.
LADDER: tuple[StructuredMode, ...] = ("json_schema", "json_object", "text")

#: How an answer was read: ``json`` as sent, ``coerced`` (JSON of another shape mapped onto the
#: schema), ``prose`` (no JSON at all, read as text) or ``none`` (nothing could be read).
AnswerShape = Literal["json", "coerced", "prose", "none"]


@dataclass(frozen=True)
class Reading:
    """What a reader made of one answer: data (or None), its shape, and problems it saw."""

    data: dict[str, Any] | None
    shape: AnswerShape
    problems: list[str] = field(default_factory=list)
    #: The reader has validated ``data`` against the schema it was given and it fits: the
    #: client need not walk it again (a summary's schema check costs milliseconds).
    fits_schema: bool = False


class AnswerReader(Protocol):
    """Prompts and parsing of one kind of structured answer."""

    def instructions(self, mode: StructuredMode, schema: Mapping[str, Any]) -> str | None:
        """A system message to add for ``mode`` (None: nothing; the request says enough)."""
        ...

    def read(self, text: str, schema: Mapping[str, Any]) -> Reading:
        """The data of an answer; the client validates it against ``schema`` afterwards,
        unless the reading says it already fits (:attr:`Reading.fits_schema`)."""
        ...


#: A fenced block, anywhere in an answer (``json`` or no language after the opening fence).
_FENCE = re.compile(r"```[ \t]*(?:json)?[ \t]*\n?(.*?)```", re.DOTALL | re.IGNORECASE)

#: Reasoning a model wrote before its answer: ``<think>…</think>``, or only the closing tag
#: where the chat template opened the block itself (Qwen3, DeepSeek-R1 on llama.cpp, vLLM
#: without a reasoning parser, LM Studio leave it in ``content``).
_REASONING = re.compile(r"\s*(?:<think(?:ing)?>)?(?:(?!<think).)*?</think(?:ing)?>\s*", re.DOTALL)
_OPENED_REASONING = re.compile(r"\s*<think(?:ing)?>.*?</think(?:ing)?>\s*", re.DOTALL)


def strip_reasoning(text: str, *, opened_only: bool = False) -> str:
    """``text`` without the reasoning block a model may write before its answer.

    The block opens the answer: ``<think>`` up to the first ``</think>``, or, without an
    opening tag (the chat template wrote it), everything up to the first ``</think>``.  Callers
    try an answer as it stands first, so a JSON value that quotes the tag is left alone; a
    prose answer, which could quote it too, passes ``opened_only`` and loses only a block
    that opens with the tag.
    """
    match = (_OPENED_REASONING if opened_only else _REASONING).match(text)
    return text[match.end() :] if match else text


def _loads_lenient(text: str) -> Any:
    """``text`` as JSON, or the outermost ``{…}`` in it, with trailing commas forgiven."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        pass
    start = text.find("{")
    end = text.rfind("}")
    if start == -1 or end <= start:
        raise ValueError("the answer contains no JSON object")
    candidate = text[start : end + 1]
    try:
        return json.loads(candidate)
    except json.JSONDecodeError:
        repaired = re.sub(r",\s*([}\]])", r"\1", candidate)
        try:
            return json.loads(repaired)
        except json.JSONDecodeError as exc:
            raise ValueError(
                f"the answer is not valid JSON ({exc.msg} at char {exc.pos})"
            ) from None


def parse_json_text(text: str) -> Any:
    """Parse a model's JSON answer, tolerating code fences, prose around it, trailing commas
    and a reasoning block before it.

    The answer as it stands comes first: a strict ``json_schema`` answer is exactly JSON, and
    its strings may hold code fences (a transcript's commands, copied as the prompt asks), so
    a fence is only looked for in an answer that is not JSON already.
    """
    stripped = text.strip()
    try:
        return json.loads(stripped)
    except json.JSONDecodeError:
        pass
    body = strip_reasoning(stripped)
    error: ValueError | None = None
    for block in [*(m.group(1).strip() for m in _FENCE.finditer(body)), body]:
        try:
            return _loads_lenient(block)
        except ValueError as exc:
            error = error or exc
    assert error is not None  # the body itself is always tried
    raise error


#: Keywords whose meaning the two validators read differently: regex dialects (``\d`` and
#: ``$`` in Rust's regex and Python's ``re``), float remainders in ``multipleOf``, and which
#: ``format`` values are checked.  A schema using any of them is judged by ``jsonschema`` alone.
_DIALECT_KEYWORDS = frozenset({"pattern", "patternProperties", "format", "multipleOf"})


def _uses_dialect_keywords(node: Any) -> bool:
    # A property *named* "pattern" counts too: that costs speed, never a wrong answer.
    if isinstance(node, Mapping):
        return any(
            key in _DIALECT_KEYWORDS or _uses_dialect_keywords(value) for key, value in node.items()
        )
    if isinstance(node, list):
        return any(_uses_dialect_keywords(item) for item in node)
    return False


class SchemaCheck:
    """One JSON Schema (draft 2020-12), compiled once: whether data fits it, and how not.

    Every answer is checked, so the yes/no is ``jsonschema_rs`` (compiled; a summary's schema
    took 0.3–3 ms per answer in the pure-Python validator, and microseconds here).  The
    problems of an answer that does not fit come from ``jsonschema``, built on first need:
    its messages are what the repair prompt quotes to the model.  The two agree on the
    keywords the fast path is used for; a schema with keywords they read differently
    (:data:`_DIALECT_KEYWORDS`), or one ``jsonschema_rs`` does not compile, is checked by
    ``jsonschema`` alone, so ``fits`` is true exactly when ``problems`` is empty.
    """

    def __init__(self, schema: Mapping[str, Any]) -> None:
        self._schema = dict(schema)
        self._fast: jsonschema_rs.Draft202012Validator | None = None
        if not _uses_dialect_keywords(self._schema):
            try:
                self._fast = jsonschema_rs.Draft202012Validator(self._schema)
            except ValueError:  # jsonschema_rs.ValidationError: a schema it cannot compile
                self._fast = None
        self._full: Draft202012Validator | None = None

    def fits(self, data: Any) -> bool:
        """True when ``data`` validates against the schema."""
        if self._fast is None:
            return not self.problems(data)
        try:
            return self._fast.is_valid(data)
        except ValueError:  # a value JSON cannot hold (not from json.loads): ask the other one
            return not self.problems(data)

    def problems(self, data: Any) -> list[str]:
        """At most 20 schema violations of ``data``, as ``path: what the schema wants`` lines.

        They go into the repair prompt, outside any fence, so they are phrased from the schema
        alone: nothing the model wrote is repeated (``jsonschema``'s own messages quote the
        offending value), and a key of the answer that the schema does not name is shown as
        ``(another field)``.
        """
        if self._full is None:
            self._full = Draft202012Validator(self._schema)
        problems = []
        for error in sorted(self._full.iter_errors(data), key=lambda e: list(e.absolute_path)):
            where = "/".join(_segment(p) for p in error.absolute_path) or "(root)"
            problems.append(f"{where}: {_wanted(error.validator, error.validator_value)}")
            if len(problems) >= 20:
                break
        return problems


_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,40}")


def _segment(part: str | int) -> str:
    return str(part) if isinstance(part, int) or _NAME.fullmatch(part) else "(another field)"


def _wanted(keyword: Any, value: Any) -> str:
    """What the schema keyword ``keyword`` (with the schema's ``value``) asks for."""
    if keyword == "required":
        return f"needs the fields {json.dumps(value)}"
    if keyword == "additionalProperties":
        return "holds a field the schema does not allow"
    if keyword == "type":
        return f"should be of type {json.dumps(value)}"
    if keyword in ("enum", "const"):
        return f"should be {'one of ' if keyword == 'enum' else ''}{json.dumps(value)}"
    if keyword in ("anyOf", "oneOf"):
        return "matches none of the shapes the schema allows"
    shown = json.dumps(value) if isinstance(value, (int, float, str, bool)) else "…"
    return f'does not meet the schema\'s "{keyword}" ({shown})'


@lru_cache(maxsize=64)
def _check_of(schema_json: str) -> SchemaCheck:
    return SchemaCheck(json.loads(schema_json))


def schema_check(schema: Mapping[str, Any]) -> SchemaCheck:
    """The compiled check of ``schema`` (shared by equal schemas: prompts reuse a few)."""
    return _check_of(json.dumps(schema, sort_keys=True))


def schema_instruction(schema: Mapping[str, Any]) -> str:
    """The system message that carries the schema when the server does not take it."""
    return (
        "Reply with one JSON object and nothing else. It must validate against this JSON "
        "Schema:\n<schema>\n" + json.dumps(schema, separators=(",", ":")) + "\n</schema>"
    )


class JsonReader:
    """JSON on every rung: the schema goes into the prompt where ``json_schema`` is not used."""

    def instructions(self, mode: StructuredMode, schema: Mapping[str, Any]) -> str | None:
        """Nothing for ``json_schema``; the schema in the prompt otherwise."""
        return None if mode == "json_schema" else schema_instruction(schema)

    def read(self, text: str, schema: Mapping[str, Any]) -> Reading:
        """The JSON object of the answer, or the reason there is none."""
        del schema  # validated by the client
        try:
            data = parse_json_text(text)
        except ValueError as exc:
            return Reading(None, "none", [str(exc)])
        if not isinstance(data, dict):
            return Reading(None, "none", ["the answer must be a JSON object"])
        return Reading(data, "json")
