"""Benchmark: how good are the offline summaries? ROUGE on real meetings against baselines.

Data: the QMSum validation meetings in ``tests/fixtures/qmsum-val`` (Zhong et al., NAACL 2021,
MIT licence; 17 meetings: ICSI research meetings and AMI product-design meetings).  Each
meeting's transcript becomes a channel of :class:`ChatMessage` (one turn = one message, the
speaker as author, turns one after another with no silence, the transcription markup such as
``{disfmarker}`` left in, as a real transcript bot would post it).  The reference is the
answer to the meeting's general query ("Summarize the whole meeting", "What was the meeting
about?", ...: the first of ``general_query_list``).

Systems, all computed in the same run on the same messages:

* ``ours``: :class:`~shared.summarize.extractive.summarizer.ExtractiveSummarizer` in the
  ``structured`` format, read as a person reads the rendered summary: the overview, then
  every section's bullets (topics as "title: gist", key points, decisions, action items, open
  questions), without citation numbers;
* ``lead``: the first turns of the meeting;
* ``random``: turns drawn at random (seeded), in meeting order;
* ``centroid``: the textbook TF-IDF centroid pick (Radev et al., MEAD): a turn scores the
  sum of the meeting centroid's TF-IDF values of its words (lower-cased, English and chat
  stop words left out); turns taken best first, printed in meeting order; no tuning.

Scoring: Google's ``rouge-score`` (ROUGE-1, ROUGE-2, ROUGE-Lsum F-measure, Porter stemming).
Every text, the reference included, has the transcription markup (``{...}``) removed and
letters spelled out in the AMI way joined ("T_V_" → "TV"), and
every system text is cut to the reference's word count, so no system wins by length.

Citations are checked on every meeting: each cited id is a message of the meeting, the
``citations`` map holds exactly the cited ids with the right author and time, and each bullet
of ours is an extract of (one of) its cited messages.

``python -m tests.perf.summary_quality [--show MEETING] [--data DIR]``; ``--data`` scores
another folder of QMSum meetings, such as the 35 of its test split (``data/ALL/test`` of
github.com/Yale-LILY/QMSum), which no rule here was tuned on.  The last line is JSON with
``ours_rouge1``, ``ours_rouge2``, ``centroid_rouge1``, ``centroid_rouge2``, ``lead_rouge1``,
``beats_lead`` (meetings where ours has a higher ROUGE-1 than LEAD) and
``citations_valid_pct``.  Exit 1 unless ours beats the centroid on ROUGE-1 and ROUGE-2, beats
LEAD on at least 14 meetings and every citation is valid.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import re
import sys
import time
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from statistics import mean

from rouge_score import rouge_scorer

from shared.domain.messages import ChannelInfo, ChatMessage
from shared.summarize.content import SummaryContent, SummaryFormat
from shared.summarize.extractive.summarizer import ExtractiveSummarizer
from shared.summarize.text import STOP_WORDS

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "qmsum-val"
SEED = 20210601
METRICS = ("rouge1", "rouge2", "rougeLsum")
SYSTEMS = ("ours", "lead", "random", "centroid")
START = datetime(2024, 3, 4, 10, 0, tzinfo=UTC)
MIN_BEATS_LEAD = 14

_MARKUP_RE = re.compile(r"\{[^{}]*\}")
_SPACE_RE = re.compile(r"\s+")
_SPELLED_RE = re.compile(r"\b(?:[A-Z]_){2,}(?=\W|$)")
_WORD_RE = re.compile(r"[a-z0-9]+")
_REF_RE = re.compile(r"(?:\[\d+\])+")


@dataclass
class Meeting:
    """One meeting: its messages (turn order) and the reference summary."""

    name: str
    messages: list[ChatMessage]
    reference: str


def load_meetings(folder: Path = FIXTURES) -> list[Meeting]:
    """Every ``*.json`` meeting of ``folder`` converted to the message model."""
    meetings = []
    for number, path in enumerate(sorted(folder.glob("*.json"))):
        data = json.loads(path.read_text(encoding="utf-8"))
        reference = data["general_query_list"][0]["answer"]
        messages = []
        when = START
        for turn, row in enumerate(data["meeting_transcripts"]):
            content = row["content"].strip()
            speaker = row["speaker"].strip() or "Unknown"
            messages.append(
                ChatMessage(
                    id=str(10**17 + number * 10**6 + turn),
                    channel_id=str(9 * 10**17 + number),
                    timestamp=when,
                    author_id="spk-" + speaker.lower().replace(" ", "-"),
                    author_name=speaker,
                    content=content,
                )
            )
            # Turns follow each other without silence: about 2.5 words a second.
            when += timedelta(seconds=1.0 + len(content.split()) / 2.5)
        meetings.append(Meeting(path.stem, messages, reference))
    return meetings


def plain(text: str) -> str:
    """Text as scored: transcription markup removed, spelled-out letters joined ("T_V_" →
    "TV"), whitespace collapsed."""
    text = _SPELLED_RE.sub(lambda m: m.group(0).replace("_", ""), text)
    return _SPACE_RE.sub(" ", _MARKUP_RE.sub(" ", text)).strip()


def cut(text: str, words: int) -> str:
    """The first ``words`` words of ``text``."""
    return " ".join(text.split()[:words])


def summary_text(content: SummaryContent) -> str:
    """The summary as a reader reads it: overview, then each section's bullets in order."""
    lines = [content.overview]
    lines += [f"{t.title}: {t.summary}" for t in content.topics]
    lines += [p.text for p in content.key_points]
    lines += [p.text for p in content.decisions]
    lines += [a.task for a in content.action_items]
    lines += [p.text for p in content.open_questions]
    return "\n".join(lines)


def _pick_in_order(turns: list[str], order: list[int], budget: int) -> str:
    """Turns taken in ``order`` until ``budget`` words, then printed in meeting order."""
    chosen: list[int] = []
    words = 0
    for i in order:
        if words >= budget:
            break
        n = len(turns[i].split())
        if n == 0:
            continue
        chosen.append(i)
        words += n
    return "\n".join(turns[i] for i in sorted(chosen))


def lead(turns: list[str], budget: int) -> str:
    """LEAD: the first turns."""
    return _pick_in_order(turns, list(range(len(turns))), budget)


def random_pick(turns: list[str], budget: int, seed: int) -> str:
    """RANDOM: a seeded shuffle of the turns, in meeting order."""
    order = list(range(len(turns)))
    random.Random(seed).shuffle(order)
    return _pick_in_order(turns, order, budget)


def centroid_pick(turns: list[str], budget: int) -> str:
    """CENTROID (Radev et al., 2004): a turn scores the sum of the meeting centroid's TF-IDF
    values of its distinct words; turns are taken best first (no tuning)."""
    docs = [[w for w in _WORD_RE.findall(t.lower()) if w not in STOP_WORDS] for t in turns]
    df = Counter(w for d in docs for w in set(d))
    n = len(docs)
    centroid: Counter[str] = Counter()
    for d in docs:
        for w, tf in Counter(d).items():
            centroid[w] += tf * math.log(n / df[w]) / n
    score = [sum(centroid[w] for w in set(d)) for d in docs]
    order = sorted(range(n), key=lambda i: -score[i])
    return _pick_in_order(turns, order, budget)


def check_citations(content: SummaryContent, messages: list[ChatMessage]) -> tuple[int, int]:
    """(valid, checked): cited ids that exist with the right author and time, and bullets
    whose text is an extract of a cited message."""
    by_id = {m.id: m for m in messages}
    valid = checked = 0
    cited = content.cited_ids()
    for message_id in cited:
        checked += 1
        message = by_id.get(message_id)
        citation = content.citations.get(message_id)
        if (
            message is not None
            and citation is not None
            and citation.author == message.author_name
            and citation.timestamp == message.timestamp
        ):
            valid += 1
    checked += len(set(content.citations) - cited)  # a citation nothing cites is invalid
    bullets = [
        *((p.text, p.message_ids) for p in content.key_points),
        *((p.text, p.message_ids) for p in content.decisions),
        *((p.text, p.message_ids) for p in content.open_questions),
        *((a.task, a.message_ids) for a in content.action_items),
        *((t.summary, t.message_ids) for t in content.topics),
    ]
    for text, ids in bullets:
        checked += 1
        if any(_is_extract(text, by_id[i]) for i in ids if i in by_id):
            valid += 1
    return valid, checked


def _words(text: str) -> list[str]:
    return _WORD_RE.findall(plain(text).lower())


def _is_extract(bullet: str, message: ChatMessage) -> bool:
    """The bullet's words (after the author prefix, without an ellipsis) all occur in the
    message in the same order."""
    body = bullet.split(": ", 1)[1] if bullet.startswith(message.author_name + ": ") else bullet
    body = body.rstrip("…")
    source = _words(message.content)
    at = 0
    for word in _words(body):
        try:
            at = source.index(word, at) + 1
        except ValueError:
            return False
    return True


def main(argv: list[str] | None = None) -> dict[str, float | int]:
    """Score every system on every meeting; print a table and the JSON figures."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--show", help="print each system's text for this meeting")
    parser.add_argument(
        "--data",
        type=Path,
        default=FIXTURES,
        help="a folder of QMSum meeting files (default: the validation meetings), e.g. the "
        "test split held out from tuning",
    )
    args = parser.parse_args(argv)
    scorer = rouge_scorer.RougeScorer(list(METRICS), use_stemmer=True)
    summarizer = ExtractiveSummarizer()
    meetings = load_meetings(args.data)
    scores: dict[str, dict[str, list[float]]] = {s: {m: [] for m in METRICS} for s in SYSTEMS}
    beats_lead = 0
    valid = checked = 0
    seconds = 0.0
    print(f"{'meeting':<10} {'words':>5}  " + "  ".join(f"{s:>14}" for s in SYSTEMS))
    for number, meeting in enumerate(meetings):
        reference = plain(meeting.reference)
        budget = len(reference.split())
        channel = ChannelInfo(
            channel_id=meeting.messages[0].channel_id, channel_name="meeting", guild_id="1"
        )
        started = time.perf_counter()
        content = summarizer.summarize(meeting.messages, channel, format=SummaryFormat.STRUCTURED)
        seconds += time.perf_counter() - started
        ok, total = check_citations(content, meeting.messages)
        valid += ok
        checked += total
        turns = [plain(m.content) for m in meeting.messages]
        texts = {
            "ours": plain(summary_text(content)),
            "lead": lead(turns, budget),
            "random": random_pick(turns, budget, SEED + number),
            "centroid": centroid_pick(turns, budget),
        }
        row: dict[str, dict[str, float]] = {}
        for system, text in texts.items():
            result = scorer.score(reference, cut(text, budget))
            row[system] = {m: result[m].fmeasure for m in METRICS}
            for m in METRICS:
                scores[system][m].append(row[system][m])
        if row["ours"]["rouge1"] > row["lead"]["rouge1"]:
            beats_lead += 1
        print(
            f"{meeting.name:<10} {budget:>5}  "
            + "  ".join(f"{row[s]['rouge1']:.3f}/{row[s]['rouge2']:.3f}".rjust(14) for s in SYSTEMS)
        )
        if args.show == meeting.name:
            print(f"\nREFERENCE: {reference}\n")
            for system, text in texts.items():
                print(f"{system.upper()}:\n{cut(text, budget)}\n")
    means = {s: {m: mean(v) for m, v in scores[s].items()} for s in SYSTEMS}
    print("\nmean (F)    " + "  ".join(f"{s:>14}" for s in SYSTEMS))
    for m in METRICS:
        print(f"{m:<10}  " + "  ".join(f"{means[s][m]:>14.3f}" for s in SYSTEMS))
    figures: dict[str, float | int] = {
        "meetings": len(meetings),
        **{f"{s}_{m}": round(means[s][m], 4) for s in SYSTEMS for m in METRICS},
        "beats_lead": beats_lead,
        "citations_valid_pct": round(100.0 * valid / checked, 2) if checked else 0.0,
        "summarize_seconds": round(seconds, 2),
    }
    print(json.dumps(figures))
    return figures


def passed(figures: dict[str, float | int]) -> bool:
    """The acceptance figures of issue 15."""
    return (
        figures["ours_rouge1"] > figures["centroid_rouge1"]
        and figures["ours_rouge2"] > figures["centroid_rouge2"]
        and figures["beats_lead"] >= MIN_BEATS_LEAD
        and figures["citations_valid_pct"] == 100.0
    )


if __name__ == "__main__":
    sys.exit(0 if passed(main()) else 1)
