"""The LLM summarization steps: map a chunk to notes, merge notes, write the final summary.

:class:`LLMBackend` is what a worker holds when an LLM is configured.  It knows nothing of jobs
or databases (``shared.pipeline.llm.mapreduce`` runs the steps as tasks); each step here takes a
:class:`~shared.summarize.transcript.Transcript`, calls the model through
:class:`~shared.llm.client.LLMClient` with the prompts and strict schemas of
:mod:`shared.summarize.llm.prompts`, and returns cleaned output plus one :class:`CallRecord` per
model call, for the usage ledger.

Faithfulness: every answer is checked for citations that are not in the input (or, for a map
step, not in its chunk).  When there are any, the model is asked once to correct them (the
request names them by alias only, never repeating what the model wrote); whatever
is still wrong after that is dropped deterministically by :mod:`shared.summarize.llm.validate`, so
a reader only ever sees citations of real messages.  Names, numbers and URLs that the cited
messages do not hold are reported (and unsupported URLs removed) by the same validator.

Context overflow (the server's ``context_length_exceeded``, or the client's own check) and a
request larger than the whole tokens-per-minute limit are answered by splitting the chunk in
two and mapping each half, recursively, instead of failing.

Answers are read by :class:`~shared.summarize.llm.answers.SummaryReader`, so a server that
lacks ``json_schema``, ignores ``response_format`` or only writes text still yields notes and
summaries of the schema (the client's ladder steps down to plain text when it must).  Every
call is charged to the step's :class:`~shared.llm.models.Meter` (one :class:`CallRecord` each,
failed calls the server billed included), so the pipeline records what was spent even when a
step fails.

Notes travel between steps and jobs in *id form*: ``message_ids`` hold Discord message ids
(:func:`notes_to_ids`), because aliases (``m17``) are local to one prompt.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

import structlog

from shared.domain.messages import ChannelInfo
from shared.llm.client import BILLING_CODES, ContextLengthError, LLMClient
from shared.llm.models import Charge, Meter
from shared.ratelimit.llm import RequestTooLargeError
from shared.summarize.llm import prompts
from shared.summarize.llm.answers import SummaryReader
from shared.summarize.llm.notes_cache import NotesCache, ScratchStore
from shared.summarize.llm.validate import ValidationReport, clean_notes
from shared.summarize.transcript import Transcript, normalize_alias

__all__ = [
    "NOTES_SECTIONS",
    "CallRecord",
    "FinalResult",
    "LLMBackend",
    "NotesResult",
    "citation_problems",
    "cited_values",
    "combine_notes",
    "empty_notes",
    "map_citations",
    "notes_to_aliases",
    "notes_to_ids",
]

log = structlog.get_logger(__name__)

#: Sections of a notes object (``prompts.NOTES_SCHEMA``), in schema order.
NOTES_SECTIONS: tuple[str, ...] = tuple(prompts.NOTES_SCHEMA["properties"])


# -- notes helpers ----------------------------------------------------------------------------


def empty_notes() -> dict[str, Any]:
    """Notes with every section empty."""
    return {section: [] for section in NOTES_SECTIONS}


def map_citations(value: Any, convert: Callable[[str], str | None]) -> Any:
    """A copy of ``value`` with every ``message_ids`` entry converted (None drops it)."""
    if isinstance(value, Mapping):
        out: dict[str, Any] = {}
        for key, item in value.items():
            if key == "message_ids" and isinstance(item, list):
                converted = (convert(str(v)) for v in item)
                out[key] = [c for c in converted if c is not None]
            else:
                out[key] = map_citations(item, convert)
        return out
    if isinstance(value, list):
        return [map_citations(item, convert) for item in value]
    return value


def cited_values(value: Any) -> list[str]:
    """Every ``message_ids`` entry anywhere in ``value``, first occurrence order, no repeats."""
    seen: dict[str, None] = {}

    def walk(node: Any) -> None:
        if isinstance(node, Mapping):
            for key, item in node.items():
                if key == "message_ids" and isinstance(item, list):
                    seen.update((str(v), None) for v in item)
                else:
                    walk(item)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    walk(value)
    return list(seen)


def notes_to_ids(notes: Mapping[str, Any], alias_map: Mapping[str, str]) -> dict[str, Any]:
    """Notes citing aliases → notes citing message ids (unknown aliases are dropped)."""
    result: dict[str, Any] = map_citations(notes, alias_map.get)
    return result


def notes_to_aliases(notes: Mapping[str, Any], aliases: Mapping[str, str]) -> dict[str, Any]:
    """Notes citing message ids → notes citing the aliases of ``aliases`` (id → alias)."""
    result: dict[str, Any] = map_citations(notes, aliases.get)
    return result


def combine_notes(parts: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """One notes object holding every item of ``parts``, in order (no model call)."""
    combined = empty_notes()
    for part in parts:
        for section in NOTES_SECTIONS:
            items = part.get(section)
            if isinstance(items, list):
                combined[section].extend(items)
    return combined


#: How many problems one repair prompt lists.
_PROBLEMS_SHOWN = 20
# A key of the model's answer that may be named in a repair prompt: a plain field name.
_FIELD = re.compile(r"[a-z_]{1,40}")


def _named(value: object) -> str:
    # The model wrote ``value``: only a value in the alias format is repeated back.
    alias = normalize_alias(value)
    return alias if alias is not None else "a value that is not an alias"


def citation_problems(
    data: Mapping[str, Any], *, transcript: Transcript, allowed: Iterable[str] | None = None
) -> list[str]:
    """Citations of ``data`` that name no message of the input, phrased for a repair prompt.

    A near-miss the validator can repair (``[M017]``, a raw message id) is not a problem.
    Nothing the model wrote is repeated word for word, since the repair prompt is outside the
    transcript's fence: a bad citation is named by its alias (``m99``) when it has the alias
    format and as "a value that is not an alias" otherwise, and a field whose key is not a
    plain name is called "(another field)".
    """
    allowed_set = set(allowed) if allowed is not None else None
    problems: list[str] = []

    def usable(value: object) -> bool:
        alias = normalize_alias(value)
        if alias is None or alias not in transcript:
            alias = transcript.alias_for(str(value).strip().strip("[]<>"))
        return alias is not None and (allowed_set is None or alias in allowed_set)

    def walk(node: Any, where: str) -> None:
        if isinstance(node, Mapping):
            ids = node.get("message_ids")
            if isinstance(ids, list):
                bad = [v for v in ids if not usable(v)]
                named = dict.fromkeys(_named(v) for v in bad)
                problems.extend(f"{where}: {v} is not an alias of the input" for v in named)
                if len(bad) == len(ids):
                    problems.append(f"{where}: cites no message of the input")
            for key, item in node.items():
                if key != "message_ids":
                    field = key if isinstance(key, str) and _FIELD.fullmatch(key) else None
                    field = field or "(another field)"
                    walk(item, f"{where}.{field}" if where else field)
        elif isinstance(node, list):
            for index, item in enumerate(node):
                walk(item, f"{where}[{index}]")

    walk(data, "")
    return problems


def _repair_prompt(problems: Sequence[str]) -> str:
    lines = ["Your previous answer cites messages that are not in the input:"]
    lines.extend(f"- {p}" for p in problems[:_PROBLEMS_SHOWN])
    if len(problems) > _PROBLEMS_SHOWN:
        lines.append(f"(and {len(problems) - _PROBLEMS_SHOWN} more)")
    lines.append(
        "Cite only aliases (such as m12) that appear in the input above. Reply again with the "
        "complete corrected answer."
    )
    return "\n".join(lines)


# -- results ----------------------------------------------------------------------------------


#: One charged model call, for the usage ledger (``kind`` is a ``UsageKind`` value).
CallRecord = Charge


@dataclass(frozen=True)
class NotesResult:
    """Notes (citing the transcript's aliases), the calls they took, what cleaning changed.

    ``model`` is the configured name of the model that wrote them (the fallback model's when
    the main one was overloaded): the notes cache keys on it.
    """

    notes: dict[str, Any]
    calls: tuple[CallRecord, ...]
    report: ValidationReport
    model: str


@dataclass(frozen=True)
class FinalResult:
    """The final summary as the model wrote it (aliases; cleaned later) and its calls."""

    data: dict[str, Any]
    calls: tuple[CallRecord, ...]
    model: str


@dataclass
class _Structured:
    data: dict[str, Any]
    model: str = ""


# -- backend ----------------------------------------------------------------------------------


class LLMBackend:
    """Map, merge and final steps against one configured endpoint.

    ``notes`` (reuse across jobs) and ``scratch`` (a job's chunks and cited lines) are the
    stores of :mod:`shared.summarize.llm.notes_cache`; the pipeline reaches them through here.
    """

    name = "llm"

    def __init__(self, client: LLMClient, *, notes: NotesCache, scratch: ScratchStore) -> None:
        self.client = client
        self.settings = client.settings
        self.notes = notes
        self.scratch = scratch
        self.reader = SummaryReader()

    @property
    def model(self) -> str:
        """The configured main model."""
        return self.settings.model

    @property
    def encoding(self) -> str:
        """The tokenizer the server counts the main model's prompts with: the registry's.

        A proxy's alias or a deployment name does not say which one it is, so every count made
        to size or budget a call uses this, as the client does for the call itself.
        """
        return self.client.model_info(self.model).encoding

    @property
    def provider(self) -> str:
        """Backend label stored with summaries (``openai``, ``vllm``, ``ollama`` ...)."""
        return self.settings.effective_provider

    def close(self) -> None:
        """Close the client's connection pool."""
        self.client.close()

    def quota_exhausted(self) -> bool:
        """True while the breaker is open because the account ran out of quota or credit."""
        state = self.client.breaker(self.model).state()
        return state.state == "open" and state.reason in BILLING_CODES

    def unavailable_reason(self) -> str | None:
        """Why no call can be made right now (breakers open), or None when one can."""
        primary = self.client.breaker(self.model).state()
        if primary.state != "open":
            return None
        if primary.reason in BILLING_CODES:
            return "the LLM account is out of quota or credit"
        fallback = self.settings.fallback_model
        if (
            fallback
            and fallback != self.model
            and self.client.breaker(fallback).state().state != "open"
        ):
            return None
        return (
            f"the LLM endpoint keeps failing ({primary.reason or 'errors'}); "
            f"calls resume in about {primary.retry_after:.0f} s"
        )

    # -- calls ----------------------------------------------------------------------------

    def _model_name(self, fallback: bool) -> str:
        if fallback and self.settings.fallback_model:
            return self.settings.fallback_model
        return self.model

    def _structured(
        self,
        kind: str,
        messages: list[dict[str, str]],
        *,
        schema: Mapping[str, Any],
        name: str,
        max_tokens: int,
        transcript: Transcript,
        allowed: Iterable[str] | None,
        meter: Meter,
    ) -> _Structured:
        allowed_set = set(allowed) if allowed is not None else None
        ask = partial(
            self.client.complete_json,
            schema=schema,
            name=name,
            max_tokens=max_tokens,
            reader=self.reader,
            meter=meter,
        )
        meter.kind = kind
        first = ask(messages)
        result = _Structured(data=first.data, model=self._model_name(first.fallback))
        problems = citation_problems(first.data, transcript=transcript, allowed=allowed_set)
        if not problems:
            return result
        log.info("llm.citation_repair", step=kind, problems=len(problems))
        repair = [
            *messages,
            {"role": "assistant", "content": json.dumps(first.data, ensure_ascii=False)},
            {"role": "user", "content": _repair_prompt(problems)},
        ]
        meter.kind = "repair"
        try:
            second = ask(repair)
        finally:
            meter.kind = kind
        result.data = second.data
        result.model = self._model_name(second.fallback)
        return result

    def map_notes(
        self,
        transcript: Transcript,
        *,
        channel: ChannelInfo,
        aliases: Sequence[str] | None = None,
        meter: Meter | None = None,
    ) -> NotesResult:
        """Notes of ``aliases`` (default: the whole transcript), citing only those aliases.

        A chunk the model cannot take at once is split in two, recursively.  Every call is
        charged to ``meter`` as well, so a caller can record them when this raises.
        """
        meter = meter if meter is not None else Meter()
        start = len(meter)
        selected = list(aliases) if aliases is not None else transcript.aliases
        if not selected:
            return NotesResult(empty_notes(), (), ValidationReport(), self.model)
        try:
            return self._notes(
                "map",
                prompts.map_messages(transcript.render(selected), channel=channel),
                max_tokens=self.settings.map_output_tokens,
                transcript=transcript,
                allowed=selected,
                meter=meter,
            )
        except (ContextLengthError, RequestTooLargeError) as exc:
            if len(selected) < 2:
                raise
            half = len(selected) // 2
            log.info("llm.rechunk", lines=len(selected), reason=type(exc).__name__)
            left = self.map_notes(transcript, channel=channel, aliases=selected[:half], meter=meter)
            right = self.map_notes(
                transcript, channel=channel, aliases=selected[half:], meter=meter
            )
            report = ValidationReport()
            report.merge(left.report)
            report.merge(right.report)
            return NotesResult(
                combine_notes([left.notes, right.notes]),
                meter.since(start),
                report,
                right.model,
            )

    def merge_notes(
        self,
        batch: Sequence[Mapping[str, Any]],
        *,
        transcript: Transcript,
        channel: ChannelInfo,
        meter: Meter | None = None,
    ) -> NotesResult:
        """One notes object from several (each citing ``transcript``'s aliases)."""
        allowed = [a for a in cited_values(list(batch)) if a in transcript]
        return self._notes(
            "reduce",
            prompts.merge_messages(batch, channel=channel),
            max_tokens=self.settings.max_output_tokens,
            transcript=transcript,
            allowed=allowed,
            meter=meter if meter is not None else Meter(),
        )

    def _notes(
        self,
        kind: str,
        messages: list[dict[str, str]],
        *,
        max_tokens: int,
        transcript: Transcript,
        allowed: Sequence[str],
        meter: Meter,
    ) -> NotesResult:
        """One call for a notes object, cleaned to cite only ``allowed``."""
        start = len(meter)
        answer = self._structured(
            kind,
            messages,
            schema=prompts.NOTES_SCHEMA,
            name=prompts.schema_name("notes"),
            max_tokens=max_tokens,
            transcript=transcript,
            allowed=allowed,
            meter=meter,
        )
        notes, report = clean_notes(answer.data, transcript=transcript, allowed=allowed)
        return NotesResult(notes, meter.since(start), report, answer.model)

    def final(
        self,
        *,
        transcript: Transcript,
        channel: ChannelInfo,
        options: prompts.PromptOptions,
        notes: Sequence[Mapping[str, Any]] | None = None,
        meter: Meter | None = None,
    ) -> FinalResult:
        """The summary in ``options.format``: from ``notes``, or from the whole transcript."""
        meter = meter if meter is not None else Meter()
        start = len(meter)
        if notes is None:
            messages = prompts.final_messages(
                channel=channel, options=options, transcript_text=transcript.render()
            )
            kind, allowed = "single", None
        else:
            messages = prompts.final_messages(channel=channel, options=options, notes=notes)
            kind = "reduce"
            allowed = [a for a in cited_values(list(notes)) if a in transcript]
        answer = self._structured(
            kind,
            messages,
            schema=prompts.final_schema(options.format),
            name=prompts.schema_name("final", options.format),
            max_tokens=self.settings.max_output_tokens,
            transcript=transcript,
            allowed=allowed,
            meter=meter,
        )
        return FinalResult(answer.data, meter.since(start), answer.model)
