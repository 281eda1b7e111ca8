"""Benchmark: prompt tokens per message of our transcript vs a naive JSON transcript.

Input: the Ubuntu IRC logs in ``tests/fixtures/irc-dev`` (Kummerfeld et al., ACL 2019,
CC BY 4.0), parsed minimally: ``[HH:MM] <nick> text`` is a message, ``[HH:MM] * nick text`` an
action; ``=== ...`` lines (joins, parts) are left out of both transcripts.

* naive: ``json.dumps([{"author", "timestamp" (ISO 8601), "content"}, ...])`` (non-ASCII kept);
* ours: :func:`shared.summarize.transcript.build_transcript` + ``render()``, with the noise and
  emoji rules off so that every message is kept — the comparison is about the format, not
  about dropping messages.  Redaction stays on (it is never off in production).

Both are counted with the real o200k_base tokenizer (gpt-4o / gpt-4o-mini), as the content of
one chat message (so the per-request framing is identical).  "No content lost" is checked per
message: the line's text must equal the redacted original (``content_lost`` counts
differences).  The default options (noise rules on) are reported too.

Run ``python -m tests.perf.token_efficiency``; the last line is one JSON object.
"""

from __future__ import annotations

import json
import re
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from shared.domain.messages import DISCORD_EPOCH_MS, ChannelInfo, ChatMessage
from shared.llm.tokens import count_chat_tokens
from shared.summarize.sanitize import sanitize_messages
from shared.summarize.transcript import TranscriptOptions, build_transcript, neutralize

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "irc-dev"
MODEL = "gpt-4o-mini"
CHANNEL = ChannelInfo(channel_id="900000000000000001", channel_name="ubuntu", guild_id="1")
_LINE = re.compile(r"^\[(\d\d):(\d\d)\] (?:<([^>]+)> ?(.*)|\* (\S+) ?(.*))$")


def parse_logs(folder: Path = FIXTURES) -> list[ChatMessage]:
    """Every chat line of every ``*.raw.txt`` log as a message, in file then line order."""
    messages: list[ChatMessage] = []
    for path in sorted(folder.glob("*.raw.txt")):
        day = datetime.strptime(path.name[:10], "%Y-%m-%d").replace(tzinfo=UTC)
        previous = None
        for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
            match = _LINE.match(line)
            if match is None:
                continue
            hour, minute, nick, text, actor, action = match.groups()
            moment = day + timedelta(hours=int(hour), minutes=int(minute))
            if previous is not None and moment < previous:
                day += timedelta(days=1)  # the log crossed midnight
                moment += timedelta(days=1)
            previous = moment
            author = nick if nick is not None else actor
            content = text if nick is not None else f"* {actor} {action}"
            ms = int(moment.timestamp() * 1000) - DISCORD_EPOCH_MS
            snowflake = (ms << 22) + len(messages) % (1 << 22)
            messages.append(
                ChatMessage(
                    id=str(snowflake),
                    channel_id=CHANNEL.channel_id,
                    timestamp=moment,
                    author_id=author,
                    author_name=author,
                    content=content or "",
                )
            )
    return messages


def _tokens(text: str) -> int:
    return count_chat_tokens([{"role": "user", "content": text}], model=MODEL)


def run() -> dict[str, object]:
    """Measure both transcripts; return the figures."""
    started = time.perf_counter()
    # The fetch stage sanitises (redacts) messages before any transcript is built.
    messages = list(sanitize_messages(parse_logs()))
    naive = json.dumps(
        [
            {"author": m.author_name, "timestamp": m.timestamp.isoformat(), "content": m.content}
            for m in messages
        ],
        ensure_ascii=False,
    )
    keep_all = TranscriptOptions(noise_patterns=(), drop_emoji_only=False)
    transcript = build_transcript(messages, CHANNEL, options=keep_all)
    ours = transcript.render()
    by_id = {m.id: m for m in messages}
    lost = 0
    for line in transcript.lines:
        expected = neutralize(by_id[line.message_id].content.strip())
        if line.text != expected:
            lost += 1
    # Messages that were dropped (empty lines) lose nothing but are counted honestly.
    empty = transcript.stats.dropped.get("empty", 0)
    default = build_transcript(messages, CHANNEL)
    naive_tokens = _tokens(naive)
    our_tokens = _tokens(ours)
    default_tokens = _tokens(default.render())
    count = len(messages)
    return {
        "messages": count,
        "kept": transcript.stats.kept,
        "dropped_empty": empty,
        "content_lost": lost,
        "redactions": transcript.stats.redactions,
        "naive_tokens": naive_tokens,
        "our_tokens": our_tokens,
        "naive_tokens_per_message": round(naive_tokens / count, 2),
        "our_tokens_per_message": round(our_tokens / count, 2),
        "ratio": round(our_tokens / naive_tokens, 4),
        "default_options_tokens": default_tokens,
        "default_options_kept": default.stats.kept,
        "default_options_ratio": round(default_tokens / naive_tokens, 4),
        "model": MODEL,
        "seconds": round(time.perf_counter() - started, 2),
    }


def main() -> None:
    """Print a short report and, last, the JSON figures."""
    figures = run()
    sys.stdout.write(
        f"{figures['messages']} messages: naive {figures['naive_tokens_per_message']} tokens/msg, "
        f"ours {figures['our_tokens_per_message']} tokens/msg\n"
    )
    sys.stdout.write(json.dumps(figures) + "\n")


if __name__ == "__main__":
    main()
