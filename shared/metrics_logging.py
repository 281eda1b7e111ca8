"""structlog processors for observability with privacy: pseudonymous user ids, trace ids.

- :func:`pseudonymizer` replaces Discord user ids in log fields (``user_id``, ``author_id``,
  ``requested_by``, …) and ``<@id>`` mentions in any string with a keyed hash, ``u:`` plus 16
  hex digits.  The same member gets the same pseudonym in every process that shares the key (so
  operators can follow one member's requests across services) and nobody without the key can
  turn it back into an id.  The key is derived from ``SECRET_KEYS`` (:func:`pseudonym_key`).
- :func:`add_trace_context` adds ``trace_id`` to every line: the one bound by the producer
  (``structlog.contextvars``), or the one the Celery message carried in its ``trace_id``
  header (see ``workers.signals_metrics``), so one request can be followed from the API or bot
  through fetch, summarize and deliver.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
import uuid
from collections.abc import Callable, MutableMapping, Sequence
from typing import Any

import structlog

from shared.domain.messages import SNOWFLAKE_DIGITS, is_snowflake

__all__ = [
    "TRACE_HEADER",
    "USER_ID_FIELDS",
    "add_trace_context",
    "current_trace_id",
    "field_processor",
    "new_trace_id",
    "pseudonym",
    "pseudonym_key",
    "pseudonymizer",
]

#: Celery message header that carries the trace id from producer to every stage.
TRACE_HEADER = "trace_id"

#: Log fields whose values are Discord user ids (or lists of them).
USER_ID_FIELDS = frozenset(
    {
        "user_id",
        "user_ids",
        "author_id",
        "author_ids",
        "member_id",
        "invoker_id",
        "requested_by",
        "created_by",
        "owner_id",
        "participant_ids",
        "target_user_id",
    }
)

_MENTION = re.compile(rf"<@!?({SNOWFLAKE_DIGITS})>")
_CONTEXT = b"summarybot log pseudonyms v1"

Processor = Callable[[Any, str, MutableMapping[str, Any]], MutableMapping[str, Any]]


def field_processor(value: Callable[[str, Any], Any]) -> Processor:
    """A structlog processor that replaces each field of a line with ``value(name, old)``."""

    def process(
        _logger: Any, _method: str, event_dict: MutableMapping[str, Any]
    ) -> MutableMapping[str, Any]:
        for field in list(event_dict):
            event_dict[field] = value(field, event_dict[field])
        return event_dict

    return process


def pseudonym_key(secret_keys: Sequence[str]) -> bytes:
    """The pseudonym key: derived from the newest secret key, or random for this process.

    Without ``SECRET_KEYS`` (the embedded mode) pseudonyms are stable only within one process,
    which is enough there: there is only one.
    """
    if secret_keys:
        return hmac.new(secret_keys[0].encode(), _CONTEXT, hashlib.sha256).digest()
    return os.urandom(32)


def pseudonym(key: bytes, user_id: str) -> str:
    """``u:`` and 16 hex digits of HMAC-SHA256(key, user id)."""
    return "u:" + hmac.new(key, user_id.encode(), hashlib.sha256).hexdigest()[:16]


def pseudonymizer(key: bytes) -> Processor:
    """A structlog processor that pseudonymises user ids and mentions with ``key``."""

    def value(field: str, item: Any) -> Any:
        if field in USER_ID_FIELDS and isinstance(item, int | str):
            text = str(item)
            if is_snowflake(text):
                return pseudonym(key, text)
        if isinstance(item, str):
            return _MENTION.sub(lambda m: f"<@{pseudonym(key, m.group(1))}>", item)
        if isinstance(item, list | tuple):
            return [value(field, v) for v in item]
        if isinstance(item, dict):
            return {k: value(str(k), v) for k, v in item.items()}
        return item

    return field_processor(value)


def new_trace_id() -> str:
    """A fresh trace id (32 hex digits, W3C trace-id sized)."""
    return uuid.uuid4().hex


def _celery_request_trace() -> str | None:
    try:
        from celery import current_task
    except ImportError:  # pragma: no cover - celery is a dependency
        return None
    task = current_task
    request = getattr(task, "request", None) if task else None
    if request is None:
        return None
    trace = getattr(request, TRACE_HEADER, None) or (request.headers or {}).get(TRACE_HEADER)
    return str(trace) if trace else None


def current_trace_id() -> str | None:
    """The trace id of what this thread is doing: bound in context, or from the Celery task."""
    bound = structlog.contextvars.get_contextvars().get(TRACE_HEADER)
    if bound:
        return str(bound)
    return _celery_request_trace()


def add_trace_context(
    _logger: Any, _method: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """structlog processor: add ``trace_id`` when one is known and the line has none."""
    if TRACE_HEADER not in event_dict:
        trace = current_trace_id()
        if trace:
            event_dict[TRACE_HEADER] = trace
    return event_dict
