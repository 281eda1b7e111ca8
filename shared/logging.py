"""structlog configuration: JSON lines off a terminal, readable lines on one, secrets redacted.

Every string a line carries (the event, each value, a formatted traceback) passes the
message redactor (:mod:`shared.summarize.redact`, all kinds but IP addresses) and a few
log-specific patterns; values of secret-named keys (``token``, ``password`` …) are replaced
whole.

Call :func:`configure_logging` once per process (CLI start, worker process init).  Context such as
``job_id`` and ``task_id`` is bound with ``structlog.contextvars`` by the task decorator, so every
line a task logs carries it without repeating it.
"""

from __future__ import annotations

import logging
import os
import re
import sys
from collections.abc import Mapping
from functools import lru_cache
from typing import TYPE_CHECKING, Any, TextIO

import structlog

from shared.metrics_logging import Processor, field_processor
from shared.summarize.redact import ALL_KINDS, Redactor

if TYPE_CHECKING:
    from shared.settings import Settings

__all__ = ["REDACTED", "configure_from_settings", "configure_logging", "redact_secrets"]

REDACTED = "[redacted]"

_SECRET_KEYS = re.compile(
    r"(token|secret|password|passwd|api[_-]?key|authorization|auth|webhook_url|signature|cookie)",
    re.IGNORECASE,
)
_SECRET_VALUES = [
    # Discord webhook URLs carry their token in the path.
    re.compile(r"https?://(?:\w+\.)?discord(?:app)?\.com/api/(?:v\d+/)?webhooks/\d+/[\w-]+"),
    # Discord bot tokens: three base64url parts separated by dots.
    re.compile(r"\b[MNO][\w-]{23,27}\.[\w-]{6}\.[\w-]{27,40}\b"),
    re.compile(r"\bsk-[A-Za-z0-9_-]{16,}\b"),  # OpenAI keys
    re.compile(r"\bsb_[A-Za-z0-9]+_[A-Za-z0-9_-]{16,}\b"),  # our own API keys
    re.compile(r"\b(?:ghp|gho|ghu|ghs|ghr|github_pat)_[A-Za-z0-9_]{20,}\b"),
    re.compile(r"\bAKIA[0-9A-Z]{16}\b"),
    re.compile(r"\beyJ[\w-]+\.eyJ[\w-]+\.[\w-]+\b"),  # JWTs
    re.compile(r"(?i)\b(bearer|basic)\s+[A-Za-z0-9._~+/=-]{8,}"),
    re.compile(r"(?<=://)[^/@\s:]+:[^/@\s]+(?=@)"),  # user:password in URLs
]


@lru_cache(maxsize=1)
def _redactor() -> Redactor:
    # The message redactor's whole table, less IP addresses: operators need those in logs.
    return Redactor(kinds=[kind for kind in ALL_KINDS if kind != "ip"])


#: Strings found to hold nothing to redact, remembered so a line's recurring values (event
#: names, kinds, ids bound for a whole task) are scanned once, not on every line: the full scan
#: costs tens of microseconds per string.  Only clean strings are kept, so no secret stays in
#: memory because of it; short ones only, and the whole set is dropped when it is full.
_CLEAN: dict[str, None] = {}
_CLEAN_MAX_ENTRIES = 4096
_CLEAN_MAX_CHARS = 256
#: Fields the processors write themselves (never anyone's text): not scanned.
_OWN_FIELDS = frozenset({"timestamp", "level"})


def _scrub(text: str) -> str:
    if text in _CLEAN:
        return text
    scrubbed = text
    for pattern in _SECRET_VALUES:
        scrubbed = pattern.sub(REDACTED, scrubbed)
    scrubbed = _redactor().redact(scrubbed).text
    if scrubbed == text and len(text) <= _CLEAN_MAX_CHARS:
        if len(_CLEAN) >= _CLEAN_MAX_ENTRIES:
            _CLEAN.clear()
        _CLEAN[text] = None
    return scrubbed


def _redact_value(key: str, value: Any) -> Any:
    if isinstance(value, str):
        if key in _OWN_FIELDS:
            return value
        return REDACTED if _SECRET_KEYS.search(key) and value else _scrub(value)
    if isinstance(value, Mapping):
        return {k: _redact_value(str(k), v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_redact_value(key, v) for v in value]
    return value


#: structlog processor: mask values of secret-looking keys and secret-looking strings.
redact_secrets: Processor = field_processor(_redact_value)


#: Loggers that write a line per request or per task at INFO, saying nothing our own lines do
#: not: kept at WARNING or above, whatever the level (their warnings and errors still show).
#: - ``httpx2``/``httpcore2`` are the OpenAI SDK's own HTTP client (openai 3), a line per call.
#: - ``celery.worker.strategy`` and ``celery.app.trace`` write "Task … received" and "Task …
#:   succeeded in …s" for every task: two lines per stage beside the stage's own line (which
#:   carries the job and task ids), and two per maintenance sweep every few seconds: six of
#:   a job's nine lines, and (with a unique task id to redact in each) three quarters of the
#:   worker's logging CPU per job.  A task that raises is still logged by ``celery.app.trace``
#:   at ERROR, a retry by the task decorator at WARNING.
_CHATTY_LOGGERS = (
    "httpx",
    "httpx2",
    "httpcore",
    "httpcore2",
    "kombu",
    "amqp",
    "celery.bootsteps",
    "celery.worker.strategy",
    "celery.app.trace",
)


def configure_logging(
    *,
    level: str = "INFO",
    fmt: str = "auto",
    stream: TextIO | None = None,
    pseudonym_key: bytes | None = None,
) -> None:
    """Configure structlog and the standard library logging for this process.

    ``fmt`` is ``json``, ``console`` or ``auto`` (console on a terminal, JSON elsewhere).
    Standard-library loggers (Celery, SQLAlchemy, httpx) go through the same processors.
    Discord user ids are replaced by keyed pseudonyms (``pseudonym_key``; random per process
    when not given), so logs can be correlated without naming anyone.
    """
    from shared.metrics_logging import add_trace_context, pseudonymizer

    key = pseudonym_key if pseudonym_key is not None else os.urandom(32)
    stream = stream or sys.stderr
    use_json = fmt == "json" or (fmt == "auto" and not stream.isatty())
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        add_trace_context,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        pseudonymizer(key),
    ]
    renderer: Any = (
        structlog.processors.JSONRenderer()
        if use_json
        else structlog.dev.ConsoleRenderer(colors=stream.isatty())
    )
    structlog.configure(
        processors=[
            # First: an event below its logger's level costs no further processing (the
            # standard library would drop it anyway, after every processor had run).
            structlog.stdlib.filter_by_level,
            *shared,
            structlog.processors.StackInfoRenderer(),
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=False,
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared,
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            # Tracebacks become text here so they are redacted too: an exception's message
            # may quote the input (a file snippet, a message, a name).
            structlog.processors.format_exc_info,
            redact_secrets,
            renderer,
        ],
    )
    handler = logging.StreamHandler(stream)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for noisy in _CHATTY_LOGGERS:
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))


def configure_from_settings(settings: Settings, *, level: str | None = None) -> None:
    """:func:`configure_logging` with the level, format and pseudonym key of ``settings``.

    The pseudonym key derives from the newest ``SECRET_KEYS`` key, so every process of a
    deployment writes the same pseudonym for the same user.
    """
    from shared.metrics_logging import pseudonym_key

    configure_logging(
        level=level or settings.log_level,
        fmt=settings.log_format,
        pseudonym_key=pseudonym_key([k.get_secret_value() for k in settings.secret_keys]),
    )
