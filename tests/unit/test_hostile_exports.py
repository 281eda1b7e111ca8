"""Hostile export files: bounded memory, one-line errors, exit 2, timestamps checked at the door."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from producers.cli.main import cli
from shared.errors import InvalidInputError
from shared.sources.export_file import count_messages, open_export

runner = CliRunner()
HEADER = '{"guild": {"id": "1", "name": "g"}, "channel": {"id": "2", "name": "c"}, "messages": '


def _message(index: int, **overrides: Any) -> dict[str, Any]:
    message: dict[str, Any] = {
        "id": str(1239986130686980096 + index),
        "timestamp": "2024-05-14T19:02:11.384+02:00",
        "content": f"message {index}",
        "author": {"id": "402155861512617986", "name": "alice"},
    }
    message.update(overrides)
    return message


def _export(tmp_path: Path, messages: list[Any]) -> Path:
    path = tmp_path / "export.json"
    path.write_text(HEADER + json.dumps(messages) + "}", encoding="utf-8")
    return path


# Runs the command from a small fresh interpreter and reports its peak RSS.  Measuring the
# child of the test process directly would count the test process itself: on exec, Linux
# carries the old image's high-water mark into ru_maxrss, and pytest is large.
_MEASURE = (
    "import resource, subprocess, sys; "
    "done = subprocess.run(sys.argv[1:]); "
    "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, file=sys.stderr); "
    "sys.exit(done.returncode)"
)


def _run_measured(args: list[str], env: dict[str, str]) -> tuple[int, str, int]:
    """Run a command; its exit code, stderr and peak RSS in KiB."""
    done = subprocess.run(
        [sys.executable, "-c", _MEASURE, *args],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        timeout=120,
        check=False,
    )
    *lines, peak = done.stderr.rstrip("\n").split("\n")
    return done.returncode, "\n".join(lines), int(peak)


def test_a_200_kb_export_nested_100000_deep_fails_in_one_line_in_bounded_memory(
    tmp_path: Path,
) -> None:
    depth = 100_000
    path = tmp_path / "deep.json"
    path.write_text(HEADER + "[" * depth + "]" * depth + "}", encoding="utf-8")
    assert 195_000 < path.stat().st_size < 205_000
    env = {"PATH": "/usr/bin:/bin", "SUMMARYBOT_DATA_DIR": str(tmp_path), "HOME": str(tmp_path)}
    code, stderr, peak_kib = _run_measured(
        [sys.executable, "-m", "producers.cli.main", "summarize", str(path)], env
    )
    lines = stderr.strip().splitlines()
    assert code == 2, stderr
    assert len(lines) == 1 and "nested more than 32 levels deep" in lines[0], stderr
    assert peak_kib < 200 * 1024, f"peak RSS {peak_kib // 1024} MiB"


@pytest.mark.parametrize(
    ("stamp", "reason"),
    [
        ("9999-12-31T23:59:59-23:59", "9999-12-31T23:59:59-23:59 is outside the supported range"),
        ("9999-12-31T23:59:59Z", "9999-12-31T23:59:59+00:00 is outside the supported range"),
        ("0001-01-01T00:00:00+14:00", "0001-01-01T00:00:00+14:00 is outside the supported range"),
        ("2100-01-01T00:00:00Z", "is outside the supported range 1970-01-01 to 2100-01-01"),
    ],
)
def test_out_of_range_timestamps_are_refused_at_the_door(
    tmp_path: Path, stamp: str, reason: str
) -> None:
    path = _export(tmp_path, [_message(0), _message(1, timestamp=stamp)])
    with pytest.raises(InvalidInputError) as info, open_export(path) as export:
        list(export.iter_messages())
    message = str(info.value)
    assert "\n" not in message
    assert 'message at index 1 (id 1239986130686980097) has a "timestamp" that ' in message
    assert reason in message
    result = runner.invoke(cli, ["summarize", str(path)])
    assert result.exit_code == 2
    assert len(result.stderr.strip().splitlines()) == 1 and reason in result.stderr


def test_a_repeated_message_id_is_refused_at_the_door(tmp_path: Path) -> None:
    # The segmenter refuses a repeated id too, but only once a job is written and running.
    messages = [_message(0), _message(1), _message(2, id=_message(0)["id"])]
    path = _export(tmp_path, messages)
    with pytest.raises(InvalidInputError) as info, open_export(path) as export:
        export.check()
    assert "message at index 2 (id 1239986130686980096) repeats the id of an earlier" in str(
        info.value
    )
    assert info.value.field == "messages/2"
    result = runner.invoke(cli, ["summarize", str(path)])
    assert result.exit_code == 2
    assert len(result.stderr.strip().splitlines()) == 1
    assert "repeats the id of an earlier message" in result.stderr


def test_check_counts_what_it_read(tmp_path: Path) -> None:
    path = _export(tmp_path, [_message(0), _message(1, id="not-a-snowflake"), _message(2)])
    with open_export(path) as export:
        assert export.check() == 3
    with open_export(_export(tmp_path, [])) as export:
        assert export.check() == 0


def test_a_huge_string_or_message_is_refused(tmp_path: Path) -> None:
    path = _export(tmp_path, [_message(0, content="x" * (2 * 1024 * 1024))])
    with pytest.raises(
        InvalidInputError, match=r"string starting at byte \d+ is longer than 1 MiB"
    ):
        count_messages(path)
    users = [{"id": str(i), "name": f"user{i}"} for i in range(200_000)]
    reactions = [{"emoji": {"name": "+1"}, "count": 200_000, "users": users}]
    path = _export(tmp_path, [_message(0, reactions=reactions)])
    with pytest.raises(InvalidInputError, match="holds more than 500000 strings, objects"):
        count_messages(path)


def test_real_sized_messages_pass(tmp_path: Path) -> None:
    users = [{"id": str(10**17 + i), "name": f"user{i}", "nickname": None} for i in range(5000)]
    reactions = [{"emoji": {"name": "+1"}, "count": 5000, "users": users}]
    embeds = [{"title": "t", "description": "d" * 4096, "fields": [{"name": "n", "value": "v"}]}]
    messages = [_message(0, content="é" * 4000, reactions=reactions, embeds=embeds), _message(1)]
    path = _export(tmp_path, messages)
    with open_export(path) as export:
        parsed = list(export.iter_messages())
    assert [m.reactions for m in parsed] == [5000, 0]


def test_errors_quote_no_secret_from_the_file(tmp_path: Path) -> None:
    key = "sk_live_" + "Ab1" * 8
    path = _export(tmp_path, [_message(0, id=key, timestamp=f"when {key}")])
    with pytest.raises(InvalidInputError) as info, open_export(path) as export:
        list(export.iter_messages())
    assert key not in str(info.value) and "[secret]" in str(info.value)
    broken = tmp_path / "broken.json"
    broken.write_text(HEADER + '[{"id": "1", "content": "' + key + '" oops}]}', encoding="utf-8")
    with pytest.raises(InvalidInputError, match="malformed JSON") as info:
        count_messages(broken)
    assert key not in str(info.value)
