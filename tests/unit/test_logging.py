from __future__ import annotations

import io
import json
import logging

import pytest
import structlog

import shared.logging
from shared.logging import REDACTED, configure_logging, redact_secrets
from shared.summarize.redact import RedactionResult
from tests.support.canaries import canaries, kind_of


def test_redacts_secret_keys_and_secret_looking_values() -> None:
    event = redact_secrets(
        None,
        "info",
        {
            "event": "sent",
            "token": "abc",
            "api_key": "k",
            "url": "https://discord.com/api/webhooks/123/AbC-def_ghi",
            "note": "key sk-abcdefghijklmnopqrstu and Bearer abcdefgh12345",
            "nested": {"password": "p", "ok": "fine"},
            "dsn": "postgresql://user:hunter2@db/x",
            "count": 3,
        },
    )
    assert event["token"] == REDACTED and event["api_key"] == REDACTED
    assert "AbC-def_ghi" not in event["url"]
    assert "sk-abc" not in event["note"] and "abcdefgh12345" not in event["note"]
    assert event["nested"] == {"password": REDACTED, "ok": "fine"}
    assert "hunter2" not in event["dsn"]
    assert event["count"] == 3


def test_json_lines_off_a_terminal_with_bound_context() -> None:
    stream = io.StringIO()
    configure_logging(level="INFO", fmt="auto", stream=stream)
    structlog.contextvars.bind_contextvars(job_id="j1", task_id="t1")
    try:
        structlog.get_logger("x").info("stage.done", messages=5, secret="s3cr3t")
        logging.getLogger("celery.worker").warning("from stdlib %s", "arg")
    finally:
        structlog.contextvars.clear_contextvars()
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert lines[0]["event"] == "stage.done"
    assert lines[0]["job_id"] == "j1" and lines[0]["task_id"] == "t1"
    assert lines[0]["secret"] == REDACTED
    assert lines[1]["event"] == "from stdlib arg" and lines[1]["level"] == "warning"
    assert "s3cr3t" not in stream.getvalue()


@pytest.mark.parametrize("name", ["httpx", "httpx2", "httpcore", "httpcore2"])
def test_http_client_request_lines_stay_below_info(name: str) -> None:
    # The OpenAI SDK's client (httpx2 since openai 3) logs every request at INFO: one line
    # per LLM call with nothing our own ``llm.*`` and stage lines do not say.
    stream = io.StringIO()
    configure_logging(level="INFO", fmt="json", stream=stream)
    logging.getLogger(f"{name}._client").info("HTTP Request: POST http://llm/v1 200 OK")
    assert stream.getvalue() == ""
    logging.getLogger(name).warning("the pool is full")
    assert json.loads(stream.getvalue())["event"] == "the pool is full"


def test_celery_per_task_lines_stay_below_info_but_its_errors_show() -> None:
    stream = io.StringIO()
    configure_logging(level="INFO", fmt="json", stream=stream)
    logging.getLogger("celery.worker.strategy").info("Task summarybot.fetch[t1] received")
    logging.getLogger("celery.app.trace").info("Task summarybot.fetch[t1] succeeded in 0.01s")
    assert stream.getvalue() == ""
    logging.getLogger("celery.app.trace").error("Task summarybot.fetch[t1] raised: boom")
    assert json.loads(stream.getvalue())["level"] == "error"


class _CountingDict(dict[str, int]):
    """A field value that counts how often a processor walks it."""

    walked = 0

    def items(self):  # type: ignore[override]
        type(self).walked += 1
        return super().items()


def test_an_event_below_the_level_is_not_processed() -> None:
    stream = io.StringIO()
    configure_logging(level="WARNING", fmt="json", stream=stream)
    log = structlog.get_logger("x")
    _CountingDict.walked = 0
    log.info("quiet", data=_CountingDict(a=1))
    assert _CountingDict.walked == 0 and stream.getvalue() == ""
    log.warning("loud", data=_CountingDict(a=1))
    assert _CountingDict.walked > 0
    assert json.loads(stream.getvalue())["data"] == {"a": 1}


def test_console_format_is_readable() -> None:
    stream = io.StringIO()
    configure_logging(level="DEBUG", fmt="console", stream=stream)
    structlog.get_logger("x").debug("hello", n=1)
    out = stream.getvalue()
    assert "hello" in out and "n=1" in out and not out.startswith("{")


def test_no_canary_survives_in_any_part_of_a_line() -> None:
    stream = io.StringIO()
    configure_logging(level="INFO", fmt="json", stream=stream)
    found = canaries()
    texts = [c.text for c in found.values()]
    log = structlog.get_logger("x")
    log.info(" ".join(texts[:5]), note=texts[5], nested={"inner": texts[6:10]}, items=texts[10:])
    logging.getLogger("celery.worker").warning("stdlib %s", " | ".join(texts))
    try:
        raise ValueError(f"export.json: malformed JSON near {texts[0]!r} and {texts[-1]!r}")
    except ValueError:
        log.exception("task.bug")
    configure_logging(level="INFO", fmt="console", stream=stream)
    try:
        raise ValueError(" ".join(texts))
    except ValueError:
        log.exception("task.bug")
    out = stream.getvalue()
    assert out.count("task.bug") == 2 and "Traceback" in out
    # IP addresses stay in logs on purpose (operators need them; docs/redaction.md): the
    # message door redacts them before any message text can reach a log line.
    leaked = [name for name, c in found.items() if c.secret in out and kind_of(name) != "ip"]
    assert leaked == []
    assert found["ip"].secret in out


def test_a_recurring_clean_value_is_scanned_once_and_a_secret_every_time(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    redactor = shared.logging._redactor()
    scanned: list[str] = []
    real = redactor.redact

    def counting(text: str) -> RedactionResult:
        scanned.append(text)
        return real(text)

    monkeypatch.setattr(redactor, "redact", counting)
    stream = io.StringIO()
    configure_logging(level="INFO", fmt="json", stream=stream)
    log = structlog.get_logger("x")
    secret = canaries()["email"].secret
    for _ in range(3):
        log.info("deliver.attempt", kind="channel-8c1f", note=f"mail {secret}")
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert all(secret not in line["note"] for line in lines)
    assert scanned.count("channel-8c1f") == 1 and scanned.count("deliver.attempt") <= 1
    assert sum(secret in text for text in scanned) == 3
    # The timestamp the processors write is nobody's text: never scanned.
    assert not any(text == lines[0]["timestamp"] for text in scanned)
