"""Faithfulness checks of model output against the transcript it came from.

Models miscopy aliases, cite messages they never saw, and add names, numbers and links that
were never said.  This module checks notes and summaries deterministically:

* **citations** — every alias must exist in the transcript and, for a map step, in the
  segment that was sent (``allowed``).  Near-misses are repaired (``[M017]`` → ``m17``, a raw
  message id → its alias); the rest are dropped, and an item left without any valid citation
  is dropped with them;
* **entities** — URLs, versions and multi-digit numbers in an item must appear in the
  messages it cites (else somewhere in the transcript); a URL that does not becomes
  "(link removed)" in every text a reader sees: titles, summaries, points, tasks, due dates
  and the overview; people named with ``@`` and action
  owners must be participants or mentioned users; text in backticks or double quotes must be a
  verbatim part of a cited message;
* **owners/participants** — normalised to the transcript's spelling, or cleared;
* **inline aliases** — an alias written inside any text ("fixed [m22]", "see m3") becomes a
  citation of its item when it names a message of the input, and is removed from the text
  either way (:mod:`shared.summarize.llm.aliases`): no reader ever sees one.

:func:`clean_notes` and :func:`to_summary_content` repair or drop deterministically whatever is
wrong after the model's one repair round (whose prompt
:func:`shared.summarize.llm.backend.citation_problems` phrases), so what reaches a reader cites
only real messages.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from shared.summarize.content import (
    ActionItem,
    CitedPoint,
    Contribution,
    Coverage,
    SummaryContent,
    SummaryFormat,
    Topic,
)
from shared.summarize.llm.aliases import extract_aliases, scrub_bare
from shared.summarize.llm.prompts import CITING_SECTIONS, FINAL_SECTIONS
from shared.summarize.transcript import Transcript, normalize_alias

__all__ = [
    "ValidationReport",
    "clean_notes",
    "to_summary_content",
]

_URL_RE = re.compile(r"https?://[^\s<>()\"'`]+")
_NUMBER_RE = re.compile(r"(?<![\w.])v?\d+(?:[.,:]\d+)+[a-z0-9-]*|(?<![\w.])\d{2,}(?![\w])")
_MENTION_RE = re.compile(r"(?<![\w@])@([\w.\-]{2,32})")
_QUOTE_RE = re.compile(r"`([^`]{4,})`|\"([^\"]{12,})\"|“([^”]{12,})”")
_MARKDOWN_RE = re.compile(r"[*_~`|>]+")
_REDACTED = re.compile(r"\[(?:email|phone|ip|card|secret|secret-url)\]")


@dataclass(slots=True)
class ValidationReport:
    """What cleaning changed and what still looks unsupported."""

    items_kept: int = 0
    items_dropped: int = 0
    citations_kept: int = 0
    citations_dropped: int = 0
    citations_repaired: int = 0
    owners_cleared: int = 0
    urls_removed: int = 0
    aliases_removed: int = 0
    problems: list[str] = field(default_factory=list)

    @property
    def citations_valid_pct(self) -> float:
        """Share of the model's citations that survived (100 when it cited nothing)."""
        total = self.citations_kept + self.citations_dropped
        return 100.0 if total == 0 else 100.0 * self.citations_kept / total

    def merge(self, other: ValidationReport) -> None:
        """Add ``other``'s counts and problems to this report."""
        self.items_kept += other.items_kept
        self.items_dropped += other.items_dropped
        self.citations_kept += other.citations_kept
        self.citations_dropped += other.citations_dropped
        self.citations_repaired += other.citations_repaired
        self.owners_cleared += other.owners_cleared
        self.urls_removed += other.urls_removed
        self.aliases_removed += other.aliases_removed
        self.problems.extend(other.problems)


def _norm(text: str) -> str:
    text = unicodedata.normalize("NFKC", text)
    text = _MARKDOWN_RE.sub("", text)
    return " ".join(text.split()).casefold()


class _Checker:
    """Shared state for checking one output against one transcript (and segment)."""

    def __init__(self, transcript: Transcript, allowed: Iterable[str] | None) -> None:
        self.transcript = transcript
        self.allowed = set(allowed) if allowed is not None else None
        self.names = transcript.known_names()
        self.canonical = {line.author.casefold(): line.author for line in transcript.lines}
        for line in transcript.lines:
            for name in line.mentions:
                self.canonical.setdefault(name.casefold(), name)
        self._source: str | None = None

    @property
    def source(self) -> str:
        if self._source is None:
            self._source = "\n".join(_norm(line.source_text) for line in self.transcript.lines)
        return self._source

    def resolve(self, value: object) -> tuple[str | None, bool]:
        """(alias, repaired) for a cited value, or (None, False) when it cannot be used."""
        alias = normalize_alias(value)
        repaired = alias is not None and alias != value
        if alias is None or alias not in self.transcript:
            text = str(value).strip().strip("[]<>")
            by_id = self.transcript.alias_for(text)
            if by_id is None:
                return None, False
            alias, repaired = by_id, True
        if self.allowed is not None and alias not in self.allowed:
            return None, False
        return alias, repaired

    def in_source(self, word: str) -> bool:
        """True when ``word`` is a word of some message (so it is text, not an alias)."""
        pattern = rf"(?<![\w.]){re.escape(word.casefold())}(?![\w])"
        return re.search(pattern, self.source) is not None

    def cited_text(self, aliases: Sequence[str]) -> str:
        return "\n".join(_norm(self.transcript.line(a).source_text) for a in aliases)

    def unsupported(self, text: str, aliases: Sequence[str]) -> list[str]:
        """Facts in ``text`` (URLs, numbers, @names, quotes) that the source does not hold."""
        cited = self.cited_text(aliases)
        issues: list[str] = []
        for url in _URL_RE.findall(text):
            url = url.rstrip(".,;:!?")
            if _norm(url) not in cited and _norm(url) not in self.source:
                issues.append(f"URL {url} appears in no message")
        for match in _NUMBER_RE.finditer(_REDACTED.sub("", _URL_RE.sub("", text))):
            number = match.group(0)
            if _norm(number) not in cited and _norm(number.lstrip("v")) not in cited:
                where = ", ".join(aliases[:4]) or "the cited messages"
                issues.append(f"'{number}' is not in {where}")
        for name in _MENTION_RE.findall(text):
            if name.casefold() not in self.names and name.casefold() not in ("someone",):
                issues.append(f"@{name} is not a participant")
        for match in _QUOTE_RE.finditer(text):
            quoted = next(g for g in match.groups() if g)
            if _norm(quoted) not in cited:
                issues.append(f"quoted '{quoted[:40]}' is not verbatim in the cited messages")
        return issues

    def owner(self, value: object) -> str | None:
        if not isinstance(value, str) or not value.strip():
            return None
        name = value.strip().lstrip("@")
        return self.canonical.get(name.casefold())


def _ids_of(item: Mapping[str, Any]) -> list[Any]:
    ids = item.get("message_ids")
    return list(ids) if isinstance(ids, list) else []


def _item_text(section: str, item: Mapping[str, Any]) -> str:
    keys = {"topics": ("title", "summary"), "action_items": ("task",)}.get(section, ("text",))
    return " ".join(str(item.get(k) or "") for k in keys)


#: The text fields of an item of each section (the rest hold aliases).
_TEXT_FIELDS: dict[str, tuple[str, ...]] = {
    "topics": ("title", "summary"),
    "action_items": ("task", "owner", "due"),
}


class _Cleaner:
    def __init__(self, checker: _Checker) -> None:
        self.checker = checker
        self.report = ValidationReport()

    def inline(self, value: object) -> tuple[str, list[str]]:
        """A text field without the aliases written in it, and those aliases (unchecked)."""
        text = " ".join(str(value or "").split())
        text, found = extract_aliases(text)
        text, bare = scrub_bare(
            text,
            resolve=lambda alias: self.checker.resolve(alias)[0] is not None,
            is_text=self.checker.in_source,
        )
        return text, [*found, *bare]

    def aliases(self, item: Mapping[str, Any], inline: Sequence[str] = ()) -> list[str]:
        """The item's valid citations: its ``message_ids``, then aliases from its text.

        An alias in the text that names no message of the input is not a citation the model
        made; it is counted as removed text, not as a dropped citation.
        """
        out: list[str] = []
        written = [(v, False) for v in _ids_of(item)] + [(v, True) for v in inline]
        for value, in_text in written:
            alias, repaired = self.checker.resolve(value)
            if alias is None:
                if in_text:
                    self.report.aliases_removed += 1
                else:
                    self.report.citations_dropped += 1
                continue
            if repaired and not in_text:
                self.report.citations_repaired += 1
            if alias not in out:
                out.append(alias)
                self.report.citations_kept += 1
        return out

    def text(self, value: object, aliases: Sequence[str]) -> str:
        text = " ".join(str(value or "").split())
        cited = self.checker.cited_text(aliases)

        def strip_url(match: re.Match[str]) -> str:
            url = match.group(0).rstrip(".,;:!?")
            if _norm(url) in cited or _norm(url) in self.checker.source:
                return match.group(0)
            self.report.urls_removed += 1
            return "(link removed)"

        return _URL_RE.sub(strip_url, text)

    def item(self, section: str, item: object) -> dict[str, Any] | None:
        if not isinstance(item, Mapping):
            self.report.items_dropped += 1
            return None
        texts: dict[str, str] = {}
        inline: list[str] = []
        for name in _TEXT_FIELDS.get(section, ("text",)):
            if item.get(name) is None and name in ("owner", "due"):
                continue
            texts[name], found = self.inline(item.get(name))
            inline.extend(found)
        aliases = self.aliases(item, inline)
        if not aliases:
            self.report.items_dropped += 1
            self.report.problems.append(f"{section}: dropped an item without valid citations")
            return None
        cleaned: dict[str, Any] = {"message_ids": aliases}
        if section == "topics":
            cleaned["title"] = self.text(texts["title"], aliases)
            cleaned["summary"] = self.text(texts["summary"], aliases)
        elif section == "action_items":
            cleaned["task"] = self.text(texts["task"], aliases)
            owner = texts.get("owner")
            cleaned["owner"] = self.checker.owner(owner)
            if owner and cleaned["owner"] is None:
                self.report.owners_cleared += 1
            due = texts.get("due")
            cleaned["due"] = self.text(due, aliases) if due and due.strip() else None
        else:
            cleaned["text"] = self.text(texts["text"], aliases)
            if section == "technical":
                category = item.get("category")
                cleaned["category"] = category if isinstance(category, str) else "problem"
        body = " ".join(str(v) for k, v in cleaned.items() if k != "message_ids" and v)
        if not body.strip():
            self.report.items_dropped += 1
            return None
        self.report.problems.extend(
            f"{section}: {issue}"
            for issue in self.checker.unsupported(_item_text(section, cleaned), aliases)
        )
        self.report.items_kept += 1
        return cleaned

    def section(self, name: str, items: object) -> list[dict[str, Any]]:
        out = []
        for item in items if isinstance(items, list) else []:
            cleaned = self.item(name, item)
            if cleaned is not None:
                out.append(cleaned)
        return out

    def contributions(self, items: object) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        for item in items if isinstance(items, list) else []:
            if not isinstance(item, Mapping):
                continue
            name = self.checker.owner(self.inline(item.get("participant"))[0])
            if name is None:
                self.report.problems.append(
                    f"contributions: dropped unknown participant {item.get('participant')!r}"
                )
                self.report.items_dropped += 1
                continue
            points = self.section("points", item.get("points"))
            if points:
                out.append({"participant": name, "points": points})
        return out


def clean_notes(
    notes: Mapping[str, Any], *, transcript: Transcript, allowed: Iterable[str] | None = None
) -> tuple[dict[str, Any], ValidationReport]:
    """Notes with every citation repaired or dropped (and uncited items dropped)."""
    cleaner = _Cleaner(_Checker(transcript, allowed))
    cleaned: dict[str, Any] = {
        section: cleaner.section(section, notes.get(section)) for section in CITING_SECTIONS
    }
    cleaned["contributions"] = cleaner.contributions(notes.get("contributions"))
    return cleaned, cleaner.report


def _cited(items: Sequence[Mapping[str, Any]], ids: Mapping[str, str]) -> list[CitedPoint]:
    return [
        CitedPoint(text=i["text"], message_ids=[ids[a] for a in i["message_ids"]]) for i in items
    ]


def to_summary_content(
    data: Mapping[str, Any],
    *,
    fmt: SummaryFormat,
    transcript: Transcript,
    backend: str,
    degraded: bool = False,
    skipped: int = 0,
) -> tuple[SummaryContent, ValidationReport]:
    """The final model output as :class:`SummaryContent`: aliases become message ids.

    Sections the format does not ask for are ignored; every kept item cites at least one
    message of the transcript; ``citations`` holds author, time and jump link of each.
    ``skipped`` adds messages left out before the transcript was built (for coverage).
    """
    wanted = FINAL_SECTIONS[fmt]
    subset = {k: v for k, v in data.items() if k in wanted}
    cleaned, report = clean_notes(subset, transcript=transcript)
    ids = transcript.alias_map
    # The overview cites nothing: aliases written in it are only removed, and a link stays
    # only when some message of the transcript holds it.
    overview_cleaner = _Cleaner(_Checker(transcript, None))
    overview, written = overview_cleaner.inline(data.get("overview"))
    overview = overview_cleaner.text(overview, [])
    report.aliases_removed += len(written)
    report.urls_removed += overview_cleaner.report.urls_removed
    technical = [
        {**item, "text": f"{str(item['category']).capitalize()}: {item['text']}"}
        for item in cleaned["technical"]
    ]
    cited_aliases: set[str] = set()
    for section in (*CITING_SECTIONS, "contributions"):
        for item in cleaned[section]:
            if section == "contributions":
                for point in item["points"]:
                    cited_aliases.update(point["message_ids"])
            else:
                cited_aliases.update(item["message_ids"])
    lines = transcript.lines
    stats = transcript.stats
    content = SummaryContent(
        format=fmt,
        overview=overview,
        topics=[
            Topic(
                title=t["title"],
                summary=t["summary"],
                message_ids=[ids[a] for a in t["message_ids"]],
            )
            for t in cleaned["topics"]
        ],
        key_points=_cited(cleaned["key_points"], ids),
        decisions=_cited(cleaned["decisions"], ids),
        open_questions=_cited(cleaned["open_questions"], ids),
        action_items=[
            ActionItem(
                task=a["task"],
                owner=a["owner"],
                due=a["due"],
                message_ids=[ids[x] for x in a["message_ids"]],
            )
            for a in cleaned["action_items"]
        ],
        contributions=[
            Contribution(participant=c["participant"], points=_cited(c["points"], ids))
            for c in cleaned["contributions"]
        ],
        technical=_cited(technical, ids),
        participants=transcript.participants(),
        citations={ids[a]: transcript.citation(a) for a in sorted(cited_aliases, key=_alias_key)},
        coverage=Coverage(
            messages_total=stats.messages_total + skipped,
            messages_used=stats.kept,
            messages_skipped=stats.dropped_total + skipped,
            start=lines[0].timestamp if lines else None,
            end=lines[-1].timestamp if lines else None,
            channel_id=transcript.channel.channel_id,
            channel_name=transcript.channel.channel_name,
            guild_id=transcript.channel.guild_id,
        ),
        backend=backend,
        degraded=degraded,
    )
    return content, report


def _alias_key(alias: str) -> int:
    return int(alias[1:])
