"""The pieces of the structured-output ladder that do not talk to the server.

:meth:`shared.llm.client.LLMClient.complete_json` walks the rungs ``json_schema`` →
``json_object`` → ``text`` (:data:`~shared.llm.structured.LADDER`).  This module decides where a
call starts (:func:`plan_rungs`: the configured rung, minus what the server is known not to do),
waits for another worker's probe of an unknown rung (:func:`await_probe`), judges what an answer
says about the server (:func:`learn`), and words the repair prompt and the final failure.

When to step down, per rung:

* the server rejects the rung's ``response_format`` (a 400): at once, and the rejection is
  recorded for every worker;
* the server answers 500 to a ``response_format`` not known to work (no ``ok`` verdict): at
  once; it is recorded as rejected only if a lower rung then answers, since a server that is
  simply down fails every rung (the call then ends in that first 500, to be retried);
* the answer breaks the rung's promise (a strict ``json_schema`` answer of another shape, a
  JSON-mode answer that is prose) and cannot be read into the schema either: at once — a repair
  in the same mode would be ignored the same way; recorded as ``ignored``;
* the answer keeps the promise but does not fit (or fails the caller's check): after one repair
  round; when that fails too, the rung is recorded as ``ignored`` for this server (the model
  does not follow it), unless the answer was cut off (``length``), which a rung cannot fix.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from shared.llm.capabilities import CapabilityStore, ModeVerdict, Verdict
from shared.llm.structured import LADDER, AnswerReader, Reading, StructuredMode

__all__ = [
    "RungOutcome",
    "await_probe",
    "describe_problems",
    "learn",
    "plan_rungs",
    "repair_prompt",
    "response_format",
    "rung_messages",
    "unusable_detail",
]

#: Pause between looks at another worker's probe.
_PROBE_POLL = 0.1


def plan_rungs(
    configured: str, verdicts: Mapping[str, ModeVerdict], *, supports_json_schema: bool
) -> tuple[StructuredMode, ...]:
    """The rungs to try, best first: from the configured one down, minus known failures.

    ``auto`` starts at ``json_schema`` unless the model registry says the model cannot; the
    text rung is always kept, so the ladder never ends before it.
    """
    named: dict[str, int] = {mode: index for index, mode in enumerate(LADDER)}
    start = named.get(configured, 0 if supports_json_schema else 1)
    rungs = [m for m in LADDER[start:] if m == "text" or m not in verdicts or verdicts[m].usable]
    return tuple(rungs)


def await_probe(
    store: CapabilityStore,
    server: str,
    mode: StructuredMode,
    *,
    lease: float,
    wait: float,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> tuple[bool, ModeVerdict | None]:
    """Take the probe of an unknown ``mode``, or wait (up to ``wait`` s) for another's verdict.

    Returns (True, None) when this caller probes (it must :meth:`~CapabilityStore.end_probe`),
    (False, verdict) when another caller's verdict arrived, and (False, None) when the wait ran
    out (the caller then goes ahead without the lease).
    """
    deadline = clock() + wait
    while True:
        known = store.verdicts(server).get(mode)
        if known is not None:
            return False, known
        if store.try_probe(server, mode, lease):
            # The prober before us may have recorded its verdict and left in between.
            known = store.verdicts(server).get(mode)
            if known is None:
                return True, None
            store.end_probe(server, mode)
            return False, known
        if clock() >= deadline:
            return False, None
        sleep(_PROBE_POLL)


def learn(
    mode: StructuredMode, reading: Reading, *, fits: bool, finish: str
) -> tuple[Verdict | None, str]:
    """What one answer says about the server's ``mode``: a verdict (or None) and why."""
    if mode == "text" or finish == "length":
        return None, ""
    if mode == "json_schema":
        if reading.shape == "json" and fits:
            return "ok", "strict json_schema answers fit the schema"
        if reading.shape in ("coerced", "prose"):
            return "ignored", f"a strict json_schema request was answered with {reading.shape}"
        return None, ""
    if reading.shape == "prose":
        return "ignored", "a json_object request was answered with prose"
    if reading.shape in ("json", "coerced"):
        return "ok", "json_object answers are JSON"
    return None, ""


def response_format(
    mode: StructuredMode, name: str, schema: Mapping[str, Any]
) -> dict[str, Any] | None:
    """The ``response_format`` of a rung (None for the text rung)."""
    if mode == "json_schema":
        return {
            "type": "json_schema",
            "json_schema": {"name": name, "schema": dict(schema), "strict": True},
        }
    if mode == "json_object":
        return {"type": "json_object"}
    return None


def rung_messages(
    messages: Sequence[Mapping[str, Any]],
    mode: StructuredMode,
    reader: AnswerReader,
    schema: Mapping[str, Any],
) -> list[Mapping[str, Any]]:
    """The request of one rung: the caller's messages plus what the reader adds for it.

    The addition joins the first system message (or becomes one, first): chat templates such
    as Qwen3's, Gemma's and Mistral's refuse a system message after a user turn, so one at
    the end would fail every rung below ``json_schema`` on those servers.
    """
    extra = reader.instructions(mode, schema)
    request = list(messages)
    if extra is None:
        return request
    first = request[0] if request else None
    if (
        first is not None
        and first.get("role") == "system"
        and isinstance(first.get("content"), str)
    ):
        request[0] = {**first, "content": f"{first['content']}\n\n{extra}"}
    else:
        request.insert(0, {"role": "system", "content": extra})
    return request


def repair_prompt(problems: Sequence[str], *, truncated: bool, mode: StructuredMode) -> str:
    """The one repair round's request: what was wrong, and to answer again in the same form."""
    lines = ["Your previous answer cannot be used:"]
    if truncated:
        lines.append("- it was cut off before it ended; be more concise")
    lines.extend(f"- {p}" for p in problems[:20])
    if mode == "text":
        lines.append("Reply again with the complete corrected answer, in the format asked for.")
    else:
        lines.append("Reply again with the complete corrected JSON object only.")
    return "\n".join(lines)


@dataclass(frozen=True, slots=True)
class RungOutcome:
    """Why one rung gave no usable answer, for the final error."""

    mode: StructuredMode
    reason: str

    def __str__(self) -> str:
        return f"{self.mode}: {self.reason}"


def unusable_detail(outcomes: Sequence[RungOutcome]) -> str:
    """One line naming what every rung did (``json_schema: rejected (400) ...; text: ...``)."""
    return "; ".join(str(o) for o in outcomes) or "no output mode was tried"


def describe_problems(problems: Sequence[str]) -> str:
    """The first few problems of an answer, compactly."""
    shown = "; ".join(problems[:3])
    more = len(problems) - 3
    return shown + (f" (+{more} more)" if more > 0 else "") if shown else "unusable"
