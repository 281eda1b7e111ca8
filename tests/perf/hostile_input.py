"""Benchmark: what the hostile-input defences cost on ordinary data.

* ``parse``: reading a DiscordChatExporter export (count, then iterate, as the fetch stage
  does) with the JSON shape guard and with the guard switched off, in MB/s;
* ``sanitize``: cleaning and redacting the same messages (every field), in messages/s and
  microseconds per message;
* ``deep``: the time to refuse a 200 KB export nested 100,000 deep (in-process).

Run ``python -m tests.perf.hostile_input [N_MESSAGES]`` (default 20,000); the last line
printed is one JSON object of figures.  Each figure is the best of three runs.
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from shared.errors import InvalidInputError
from shared.sources.export_file import count_messages, open_export
from shared.sources.json_guard import JsonGuard
from shared.summarize.sanitize import sanitize_message
from tests.perf.export_data import build_large_export


def _best(run: Callable[[], object], repeat: int = 3) -> float:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        run()
        times.append(time.perf_counter() - started)
    return min(times)


def _read(path: Path) -> int:
    count_messages(path)
    with open_export(path) as export:
        return sum(1 for _ in export.iter_messages())


def main(n_messages: int = 20_000) -> dict[str, object]:
    """Measure and return the figures."""
    with tempfile.TemporaryDirectory() as tmp:
        path = build_large_export(Path(tmp) / "export.json", n_messages)
        size_mb = path.stat().st_size / 1e6
        guarded = _best(lambda: _read(path))
        feed = JsonGuard.feed
        JsonGuard.feed = lambda self, chunk: None  # type: ignore[method-assign]
        try:
            unguarded = _best(lambda: _read(path))
        finally:
            JsonGuard.feed = feed  # type: ignore[method-assign]
        with open_export(path) as export:
            messages = list(export.iter_messages())
        sanitizing = _best(lambda: [sanitize_message(m) for m in messages])
        deep = Path(tmp) / "deep.json"
        head = '{"guild": {"id": "1"}, "channel": {"id": "2", "name": "c"}, "messages": '
        deep.write_text(head + "[" * 100_000 + "]" * 100_000 + "}", encoding="utf-8")

        def refuse() -> None:
            try:
                _read(deep)
            except InvalidInputError:
                return
            raise AssertionError("the deep export was accepted")

        deep_seconds = _best(refuse)
    return {
        "messages": n_messages,
        "export_mb": round(size_mb, 1),
        "parse_mb_per_s_guarded": round(2 * size_mb / guarded, 1),
        "parse_mb_per_s_unguarded": round(2 * size_mb / unguarded, 1),
        "guard_overhead": round(guarded / unguarded - 1, 3),
        "sanitize_messages_per_s": round(len(messages) / sanitizing),
        "sanitize_us_per_message": round(sanitizing / len(messages) * 1e6, 1),
        "deep_refused_seconds": round(deep_seconds, 4),
    }


if __name__ == "__main__":
    figures = main(int(sys.argv[1]) if len(sys.argv) > 1 else 20_000)
    print(json.dumps(figures))
