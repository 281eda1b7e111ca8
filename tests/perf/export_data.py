"""Large DiscordChatExporter JSON exports for benchmarks, built from the irc-dev logs.

``build_large_export`` cycles through the ten logs in ``tests/fixtures/irc-dev`` (Kummerfeld et
al., ACL 2019, CC BY 4.0), each log placed on the day after the previous one ended, so ids and
times keep increasing across passes.  The file is written message by message: memory does not
grow with ``n_messages``.

Run ``python -m tests.perf.export_data OUT.json N`` to write one; the last line printed is JSON.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from shared.domain.messages import ChannelInfo, ChatMessage
from tests.support.irc import read_irc_log, write_export

__all__ = ["BENCH_CHANNEL", "FIXTURES", "build_large_export", "build_message_array", "main"]

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "irc-dev"
START_DAY = date(2024, 1, 1)
EXPORTED_AT = datetime(2030, 1, 1, tzinfo=UTC)
BENCH_CHANNEL = ChannelInfo(
    channel_id="1191512658436472873",
    channel_name="ubuntu-help-archive",
    guild_id="1085131932217520185",
    guild_name="Ubuntu Support (benchmark)",
    kind="GuildTextChat",
    topic="Benchmark data: irc-dev logs (Kummerfeld et al., ACL 2019, CC BY 4.0), repeated",
)


def _logs() -> list[tuple[Path, Path]]:
    raws = sorted(FIXTURES.glob("*.raw.txt"))
    if not raws:
        raise FileNotFoundError(f"no *.raw.txt logs in {FIXTURES}")
    return [(raw, raw.with_name(raw.name.replace(".raw.", ".annotation."))) for raw in raws]


def _messages(n_messages: int, seed: int) -> Iterator[ChatMessage]:
    logs = _logs()
    day = START_DAY
    produced = 0
    run = 0
    while produced < n_messages:
        raw, annotation = logs[run % len(logs)]
        log = read_irc_log(
            raw,
            annotation,
            day=day,
            seed=seed * 1000 + run,
            guild_id=BENCH_CHANNEL.guild_id or "",
            channel_id=BENCH_CHANNEL.channel_id,
        )
        for message in log.messages[: n_messages - produced]:
            yield message
            produced += 1
        # The next log starts the day after this one ended: times and ids keep increasing.
        day = log.messages[-1].timestamp.date() + timedelta(days=1)
        run += 1


def build_large_export(path: Path, n_messages: int, *, seed: int = 0) -> Path:
    """Stream a DCE export of exactly ``n_messages`` messages to ``path``; return ``path``.

    Deterministic for a given ``seed`` (which picks the reply links of each pass).
    """
    if n_messages < 0:
        raise ValueError(f"n_messages must be >= 0, not {n_messages}")
    with path.open("w", encoding="utf-8", newline="\n") as out:
        written = write_export(
            _messages(n_messages, seed), BENCH_CHANNEL, out, exported_at=EXPORTED_AT
        )
    if written != n_messages:  # pragma: no cover - guards the generator's arithmetic
        raise RuntimeError(f"wrote {written} messages, expected {n_messages}")
    return path


def message_model(message: ChatMessage, *, prefix: str = "m-") -> dict[str, Any]:
    """``message`` in the API's upload message model, its ids made non-Discord by ``prefix``."""
    data: dict[str, Any] = {
        "id": prefix + message.id,
        "author": {"id": "u-" + message.author_id, "name": message.author_name},
        "time": message.timestamp.isoformat(),
        "content": message.content,
    }
    if message.reply_to:
        data["reply_to"] = prefix + message.reply_to
    return data


def build_message_array(
    path: Path,
    n_messages: int,
    *,
    seed: int = 0,
    name: str = "irc-dev support chat",
    edit: Callable[[int, dict[str, Any]], dict[str, Any]] | None = None,
) -> Path:
    """Stream ``{"conversation": {"name"}, "messages": [...]}`` of ``n_messages`` messages in
    the upload message model (:func:`message_model`) to ``path``, message by message;
    ``edit(index, message)`` may change any message (to break one)."""
    with path.open("w", encoding="utf-8", newline="\n") as out:
        out.write(json.dumps({"conversation": {"name": name}})[:-1] + ', "messages": [\n')
        for index, message in enumerate(_messages(n_messages, seed)):
            data = message_model(message)
            if edit is not None:
                data = edit(index, data)
            out.write(("," if index else "") + json.dumps(data, ensure_ascii=False) + "\n")
        out.write("]}\n")
    return path


def main(argv: list[str]) -> int:
    """CLI: ``python -m tests.perf.export_data OUT.json N [SEED]``."""
    if len(argv) not in (2, 3) or not argv[1].isdigit():
        print("usage: python -m tests.perf.export_data OUT.json N [SEED]", file=sys.stderr)
        return 2
    out = Path(argv[0])
    started = time.perf_counter()
    build_large_export(out, int(argv[1]), seed=int(argv[2]) if len(argv) == 3 else 0)
    figures = {
        "path": str(out),
        "messages": int(argv[1]),
        "bytes": out.stat().st_size,
        "seconds": round(time.perf_counter() - started, 3),
    }
    print(json.dumps(figures))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
