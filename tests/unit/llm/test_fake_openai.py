"""The fake OpenAI server writes what the real one does (helpers tested without a socket)."""

from __future__ import annotations

import pytest

from shared.ratelimit.llm import parse_duration
from tests.fakes.openai_server import _go_duration


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0.0, "0s"),
        (0.0004, "0s"),
        (0.02, "20ms"),
        (0.9996, "1s"),
        (1.0, "1s"),
        (1.146, "1.146s"),
        (1.5, "1.5s"),
        (12.345, "12.345s"),
        (59.9996, "1m0s"),
        (60.00001, "1m0s"),
        (237.024, "3m57.024s"),
        (360.0, "6m0s"),
        (3600.0, "1h0m0s"),
        (3723.0, "1h2m3s"),
        (-1.0, "0s"),
    ],
)
def test_waits_are_go_durations_rounded_to_milliseconds(seconds: float, text: str) -> None:
    assert _go_duration(seconds) == text


@pytest.mark.parametrize("seconds", [0.001, 0.0126, 0.999, 1.0005, 59.999, 61.25, 3599.9, 86399.5])
def test_waits_read_back_to_the_millisecond(seconds: float) -> None:
    assert parse_duration(_go_duration(seconds)) == pytest.approx(seconds, abs=0.0005)
