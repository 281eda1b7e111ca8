"""Benchmark: recover IRC conversations against the irc-dev gold reply links.

For each ``tests/fixtures/irc-dev/*.raw.txt`` (Kummerfeld et al., ACL 2019, CC BY 4.0) every line
becomes a :class:`ChatMessage` (``=== ...`` lines become system messages).  A seeded random 50 %
of the gold links are given as ``reply_to`` (Discord users mark some replies explicitly, not
all); the rest must be recovered.  Scoring is on the annotated lines only:

* gold conversations = connected components of all gold links, restricted to annotated lines;
* predicted = segments restricted to the same lines;
* exact-conversation precision/recall/F1 (a predicted conversation counts only if it equals a
  gold one), micro-averaged over the logs, and the variation-of-information score
  ``1 - VI / ln(n)`` per log, averaged.

``time_gap_baseline`` is scored with the best of several gaps (chosen on the gold, which only
favours the baseline).  Finally the speed: one technical extractive summary of 20,000
messages (time and peak extra RSS) and segmentation of 100,000 messages (the logs repeated,
shifted in time).  Run ``python -m tests.perf.segmentation [--data DIR]``; the last line is
JSON.  ``--data`` scores another folder of the corpus, such as its ``data/test`` split, which
no rule here was tuned on (from github.com/jkkummerfeld/irc-disentanglement; the ``*.raw.txt``
and ``*.annotation.txt`` files are all it reads).
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
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

from shared.domain.messages import ChannelInfo, ChatMessage
from shared.summarize.content import SummaryFormat
from shared.summarize.extractive.summarizer import ExtractiveSummarizer
from shared.summarize.segment import Segment, segment_messages, time_gap_baseline
from tests.support.irc import log_lines

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "irc-dev"
SEED = 20190728
REPLY_SHARE = 0.5
BASELINE_GAPS = (15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0)
SCALE_MESSAGES = 100_000
SUMMARY_MESSAGES = 20_000
CHANNEL_ID = "900000000000000001"
SYNTHETIC_ID_BASE = 100_000_000_000_000_000

_MESSAGE_RE = re.compile(r"^\[(\d\d):(\d\d)\]\s+(?:<([^>]+)>\s?(.*)|\*\s+(\S+)\s?(.*))$")


@dataclass
class Log:
    """One parsed log: its messages (line number = list index) and gold links."""

    name: str
    messages: list[ChatMessage]
    links: list[tuple[int, int]]


def _synthetic_id(log_number: int, line: int) -> str:
    # The logs predate Discord's epoch, so no real snowflake fits; ids only need to be unique.
    return str(SYNTHETIC_ID_BASE + log_number * 100_000 + line)


def parse_log(raw: Path, *, log_number: int = 0) -> list[ChatMessage]:
    """Parse ``[HH:MM] <nick> text`` / ``[HH:MM] * nick action`` / ``=== event`` lines."""
    day = datetime.strptime(raw.name[:10], "%Y-%m-%d").replace(tzinfo=UTC)
    rows: list[tuple[datetime, str | None, str, str]] = []
    when = day
    for line in log_lines(raw.read_text(encoding="utf-8", errors="replace")):
        match = _MESSAGE_RE.match(line)
        if match is None:
            rows.append((when, None, "system", line.lstrip("= ")))
            continue
        stamp = day.replace(hour=int(match.group(1)), minute=int(match.group(2)))
        while stamp < when - timedelta(minutes=1):  # the log ran past midnight
            stamp += timedelta(days=1)
            day += timedelta(days=1)
        when = stamp
        nick = match.group(3) or match.group(5)
        text = match.group(4) if match.group(3) else match.group(6)
        rows.append((when, nick, nick, text or ""))
    # Spread the lines of one minute over that minute so that order survives sorting.
    per_minute = Counter(row[0] for row in rows)
    seen: Counter[datetime] = Counter()
    messages = []
    for number, (stamp, nick, author, text) in enumerate(rows):
        offset = 60.0 * seen[stamp] / per_minute[stamp]
        seen[stamp] += 1
        timestamp = stamp + timedelta(seconds=offset)
        messages.append(
            ChatMessage(
                id=_synthetic_id(log_number, number),
                channel_id=CHANNEL_ID,
                timestamp=timestamp,
                author_id=author,
                author_name=author,
                content=text,
                kind="Default" if nick else "GuildMemberJoin",
            )
        )
    return messages


def load_logs(folder: Path = FIXTURES, *, seed: int = SEED) -> list[Log]:
    """All logs of ``folder`` with ``REPLY_SHARE`` of the gold links set as ``reply_to``."""
    rng = random.Random(seed)
    logs = []
    for number, raw in enumerate(sorted(folder.glob("*.raw.txt"))):
        messages = parse_log(raw, log_number=number)
        annotation = raw.with_name(raw.name.replace(".raw.txt", ".annotation.txt"))
        links = []
        for line in log_lines(annotation.read_text(encoding="utf-8")):
            parts = line.split()
            if len(parts) >= 2:
                links.append((int(parts[0]), int(parts[1])))
        given: dict[int, int] = {}
        for parent, child in sorted(links):
            if parent != child and rng.random() < REPLY_SHARE and child not in given:
                given[child] = parent
        for child, parent in given.items():
            messages[child] = replace(messages[child], reply_to=messages[parent].id)
        logs.append(Log(raw.name[: -len(".raw.txt")], messages, links))
    return logs


def gold_conversations(log: Log) -> list[frozenset[int]]:
    """Connected components of the gold links, restricted to the annotated lines."""
    parent: dict[int, int] = {}

    def find(x: int) -> int:
        parent.setdefault(x, x)
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for a, b in log.links:
        parent[find(a)] = find(b)
    annotated = {b for _, b in log.links}
    groups: dict[int, set[int]] = {}
    for line in annotated:
        groups.setdefault(find(line), set()).add(line)
    return [frozenset(group) for group in groups.values()]


def predicted_conversations(
    log: Log, segments: Iterable[Segment], annotated: set[int]
) -> list[frozenset[int]]:
    """Segments as sets of line numbers, restricted to the annotated lines."""
    line_of = {m.id: line for line, m in enumerate(log.messages)}
    result = []
    for segment in segments:
        lines = frozenset(line_of[i] for i in segment.message_ids) & annotated
        if lines:
            result.append(lines)
    return result


def vi_score(gold: Sequence[frozenset[int]], predicted: Sequence[frozenset[int]]) -> float:
    """``1 - VI / ln(n)``: 1.0 for identical clusterings (Kummerfeld et al.'s VI measure)."""
    n = sum(len(g) for g in gold)
    gold_of = {x: k for k, g in enumerate(gold) for x in g}
    joint: Counter[tuple[int, int]] = Counter()
    for k, cluster in enumerate(predicted):
        for x in cluster:
            joint[(gold_of[x], k)] += 1
    vi = 0.0
    for (g, p), count in joint.items():
        r = count / n
        vi -= r * (math.log(r / (len(gold[g]) / n)) + math.log(r / (len(predicted[p]) / n)))
    return 1.0 - vi / math.log(n)


@dataclass
class Score:
    """Exact-conversation counts and VI over a set of logs."""

    matched: int = 0
    predicted: int = 0
    gold: int = 0
    vi_sum: float = 0.0
    logs: int = 0

    def add(self, gold: Sequence[frozenset[int]], predicted: Sequence[frozenset[int]]) -> None:
        """Count one log."""
        self.vi_sum += vi_score(gold, predicted)
        self.logs += 1
        self.count(gold, predicted)

    def count(self, gold: Sequence[frozenset[int]], predicted: Sequence[frozenset[int]]) -> None:
        """Add exact-match counts only (no VI)."""
        self.matched += len(set(gold) & set(predicted))
        self.predicted += len(predicted)
        self.gold += len(gold)

    @property
    def precision(self) -> float:
        """Share of predicted conversations that exactly equal a gold one."""
        return self.matched / self.predicted if self.predicted else 0.0

    @property
    def recall(self) -> float:
        """Share of gold conversations predicted exactly."""
        return self.matched / self.gold if self.gold else 0.0

    @property
    def f1(self) -> float:
        """Harmonic mean of precision and recall."""
        p, r = self.precision, self.recall
        return 2 * p * r / (p + r) if p + r else 0.0

    @property
    def vi(self) -> float:
        """Mean ``1 - VI/ln n`` over the logs."""
        return self.vi_sum / self.logs if self.logs else 0.0


def without_system(log: Log, conversations: Sequence[frozenset[int]]) -> list[frozenset[int]]:
    """Conversations with at least one real message (join/part singletons left out)."""
    return [c for c in conversations if any(not log.messages[x].is_system for x in c)]


def scale_corpus(logs: Sequence[Log], size: int) -> list[ChatMessage]:
    """``size`` messages: the logs repeated back to back, shifted so that time keeps going."""
    corpus: list[ChatMessage] = []
    shift = timedelta(0)
    round_no = 0
    while len(corpus) < size:
        for log in logs:
            base = log.messages[0].timestamp
            for m in log.messages:
                if len(corpus) >= size:
                    break
                corpus.append(
                    replace(
                        m,
                        id=f"{round_no}-{m.id}",
                        timestamp=m.timestamp - base + shift + logs[0].messages[0].timestamp,
                        reply_to=f"{round_no}-{m.reply_to}" if m.reply_to else None,
                    )
                )
            shift += log.messages[-1].timestamp - base + timedelta(hours=2)
        round_no += 1
    return corpus


def _status_mb(field: str) -> float | None:
    """A memory figure of this process from /proc (Linux), in MiB."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def summarize_figures(logs: Sequence[Log], size: int) -> tuple[float, float | None]:
    """Seconds and peak extra RSS (MiB) of one technical extractive summary of ``size``
    messages."""
    corpus = scale_corpus(logs, size)
    channel = ChannelInfo(channel_id=CHANNEL_ID, channel_name="ubuntu", guild_id="1")
    try:  # reset the peak-RSS mark so VmHWM measures this call only
        with open("/proc/self/clear_refs", "w", encoding="ascii") as refs:
            refs.write("5")
    except OSError:
        pass
    before = _status_mb("VmRSS")
    started = time.perf_counter()
    ExtractiveSummarizer().summarize(corpus, channel, format=SummaryFormat.TECHNICAL)
    seconds = time.perf_counter() - started
    peak = _status_mb("VmHWM")
    extra = peak - before if peak is not None and before is not None else None
    return seconds, extra


def main(argv: list[str] | None = None) -> dict[str, float | int]:
    """Score ours and the baseline, time the scale run, print figures (JSON last)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument(
        "--data",
        type=Path,
        default=FIXTURES,
        help="a folder of irc-disentanglement *.raw.txt logs with their *.annotation.txt gold "
        "links (default: the development split), e.g. the test split held out from tuning",
    )
    logs = load_logs(parser.parse_args(argv).data)
    ours, ours_chat, unaided = Score(), Score(), Score()
    baselines = {gap: (Score(), Score()) for gap in BASELINE_GAPS}
    started = time.perf_counter()
    for log in logs:
        gold = gold_conversations(log)
        annotated = {line for g in gold for line in g}
        predicted = predicted_conversations(log, segment_messages(log.messages), annotated)
        ours.add(gold, predicted)
        ours_chat.count(without_system(log, gold), without_system(log, predicted))
        # Ablation: the same text with no reply links at all (pure IRC, nothing explicit).
        bare = [replace(m, reply_to=None) for m in log.messages]
        unaided.add(gold, predicted_conversations(log, segment_messages(bare), annotated))
        for gap, (score, chat) in baselines.items():
            base = time_gap_baseline(log.messages, gap_seconds=gap)
            base_predicted = predicted_conversations(log, base, annotated)
            score.add(gold, base_predicted)
            chat.count(without_system(log, gold), without_system(log, base_predicted))
        print(
            f"{log.name}: gold={len(gold)} predicted={len(predicted)} "
            f"exact={len(set(gold) & set(predicted))}"
        )
    seconds_logs = time.perf_counter() - started
    best_gap, (best, _) = max(baselines.items(), key=lambda item: item[1][0].f1)
    best_chat = max((chat for _, chat in baselines.values()), key=lambda chat: chat.f1)
    for gap, (score, chat) in baselines.items():
        print(
            f"baseline gap={gap:>6.0f}s  F1={score.f1:.3f}  VI={score.vi:.3f}  "
            f"F1 without join/part singletons={chat.f1:.3f}"
        )
    print(
        f"ours: P={ours.precision:.3f} R={ours.recall:.3f} F1={ours.f1:.3f} VI={ours.vi:.3f}; "
        f"best baseline gap={best_gap:.0f}s F1={best.f1:.3f} VI={best.vi:.3f}"
    )
    print(
        f"without join/part singletons: ours F1={ours_chat.f1:.3f}, "
        f"best baseline F1={best_chat.f1:.3f} ({ours_chat.gold} gold conversations)"
    )
    print(f"ours with no reply links given: F1={unaided.f1:.3f} VI={unaided.vi:.3f}")
    summary_seconds, summary_mb = summarize_figures(logs, SUMMARY_MESSAGES)
    print(
        f"extractive summary (technical) of {SUMMARY_MESSAGES} messages: "
        f"{summary_seconds:.1f}s, peak extra RSS {summary_mb or 0:.0f} MiB"
    )
    corpus = scale_corpus(logs, SCALE_MESSAGES)
    started = time.perf_counter()
    segments = segment_messages(corpus)
    seconds_scale = time.perf_counter() - started
    print(f"{len(corpus)} messages -> {len(segments)} segments in {seconds_scale:.1f}s")
    figures: dict[str, float | int] = {
        "f1": round(ours.f1, 4),
        "baseline_f1": round(best.f1, 4),
        "precision": round(ours.precision, 4),
        "recall": round(ours.recall, 4),
        "vi": round(ours.vi, 4),
        "baseline_vi": round(best.vi, 4),
        "baseline_gap_seconds": best_gap,
        "f1_chat_only": round(ours_chat.f1, 4),
        "baseline_f1_chat_only": round(best_chat.f1, 4),
        "f1_no_reply_links": round(unaided.f1, 4),
        "logs": len(logs),
        "messages": sum(len(log.messages) for log in logs),
        "seconds_logs": round(seconds_logs, 2),
        "scale_messages": len(corpus),
        "seconds_scale": round(seconds_scale, 2),
        "summary_messages": SUMMARY_MESSAGES,
        "summary_seconds": round(summary_seconds, 2),
        "summary_peak_extra_rss_mb": round(summary_mb, 1) if summary_mb is not None else -1,
    }
    print(json.dumps(figures))
    return figures


if __name__ == "__main__":
    figures = main()
    sys.exit(0 if figures["f1"] > figures["baseline_f1"] else 1)
