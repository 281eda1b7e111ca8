"""Event payloads: stored JSON Schemas equal the models, payloads validate, the cap thins them."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import jsonschema
import pytest

from shared.delivery.events import (
    EVENT_TYPES,
    JobFailedData,
    PayloadTooLarge,
    encode_event,
    event_json_schema,
    event_schema_filename,
    job_failed_event,
    summary_completed_event,
)
from shared.delivery.outbox import next_delay
from shared.delivery.webhook_target import parse_retry_after
from tests.unit.delivery.helpers import T0, sample_content

SCHEMAS = Path(__file__).parents[3] / "schema" / "json"


@pytest.mark.parametrize("event_type", EVENT_TYPES)
def test_stored_schema_matches_the_model(event_type: str) -> None:
    stored = json.loads((SCHEMAS / event_schema_filename(event_type)).read_text())
    assert stored == event_json_schema(event_type)
    assert stored["$id"].endswith(f"webhook-event-{event_type}.v1.json")
    assert "webhook-signature" in stored["description"]
    jsonschema.Draft202012Validator.check_schema(stored)


def _summary_event(overview: str = "Two people fixed a build.") -> object:
    return summary_completed_event(
        content=sample_content(overview=overview),
        job_id="j",
        summary_id="s",
        guild_id=sample_content(overview=overview).coverage.guild_id,
        created_at=T0,
        language=None,
        model=None,
        prompt_version="extractive-1",
        duration_seconds=1.5,
    )


def test_payloads_validate_and_are_compact_utf8() -> None:
    schema = json.loads((SCHEMAS / event_schema_filename("summary.completed")).read_text())
    body = encode_event(_summary_event("Größe ✓"), max_bytes=65536)  # type: ignore[arg-type]
    assert b" " not in body.split(b'"markdown"')[0][:20]
    data = json.loads(body)
    jsonschema.validate(data, schema)
    assert "Größe ✓".encode() in body
    assert data["timestamp"] == "2026-03-01T10:00:00Z"
    failed = job_failed_event(
        JobFailedData(
            job_id="j",
            origin="api",
            guild_id="1",
            channel_id=None,
            error="no messages",
            created_at=T0,
            failed_at=T0 + timedelta(seconds=3),
        )
    )
    schema = json.loads((SCHEMAS / event_schema_filename("job.failed")).read_text())
    jsonschema.validate(json.loads(encode_event(failed, max_bytes=2048)), schema)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(
            {**json.loads(encode_event(failed, max_bytes=2048)), "type": "x"}, schema
        )


def test_cap_drops_markdown_then_summary_then_refuses() -> None:
    event = _summary_event("x" * 3000)
    full = encode_event(event, max_bytes=1_000_000)  # type: ignore[arg-type]
    no_markdown = json.loads(encode_event(event, max_bytes=len(full) - 1))  # type: ignore[arg-type]
    assert no_markdown["data"]["markdown"] is None and no_markdown["data"]["summary"] is not None
    thin = json.loads(encode_event(event, max_bytes=1200))  # type: ignore[arg-type]
    assert thin["data"]["summary"] is None and thin["data"]["truncated"] is True
    with pytest.raises(PayloadTooLarge, match="over the 100 byte cap") as info:
        encode_event(event, max_bytes=100)  # type: ignore[arg-type]
    assert "WEBHOOK_MAX_PAYLOAD_BYTES" in info.value.user_message


def test_retry_schedule_and_retry_after() -> None:
    import random

    rng = random.Random(3)
    schedule = [5, 300, 1800]
    assert next_delay(0, schedule, jitter=0.2, rng=rng) is None
    assert next_delay(4, schedule, jitter=0.2, rng=rng) is None
    for failures, base in enumerate(schedule, start=1):
        delay = next_delay(failures, schedule, jitter=0.2, rng=rng)
        assert delay is not None and base * 0.8 <= delay <= base * 1.2
    assert next_delay(1, schedule, jitter=0, rng=rng, retry_after=90) == 90
    assert next_delay(1, schedule, jitter=0, rng=rng, retry_after=10**9) == 86400
    assert parse_retry_after("30", now=T0) == 30
    assert parse_retry_after("Sun, 01 Mar 2026 10:01:00 GMT", now=T0) == 60
    assert parse_retry_after("Sun, 01 Mar 2026 09:00:00 GMT", now=T0) == 0
    assert parse_retry_after("soon", now=T0) is None
    assert parse_retry_after(None, now=T0) is None
