"""Access to the Discord example payloads in ``tests/fixtures/discord`` (copies of the fact
sheet's ``discord_fixtures/``)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx

__all__ = ["FIXTURES", "envelope", "fixture"]

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "discord"


def fixture(name: str) -> Any:
    """The JSON of one fixture file."""
    return json.loads((FIXTURES / name).read_text(encoding="utf-8"))


def envelope(name: str) -> httpx.Response:
    """An ``httpx.Response`` built from a ``{status, headers, body}`` fixture."""
    data = fixture(name)
    body = data["body"]
    if isinstance(body, str):
        return httpx.Response(data["status"], headers=data["headers"], text=body)
    return httpx.Response(data["status"], headers=data["headers"], json=body)
