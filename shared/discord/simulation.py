"""Simulation ("CI/CD without Discord"): record real traffic to JSONL, replay it without Discord.

**Record** (:class:`Recorder`): the REST client appends one JSON line per request: route
template, redacted path, query, request body, status, the rate-limit headers and body of the
answer, and the limiter's view (how long it waited and why).  Secrets never reach the file:
no request headers are written (so no ``Authorization``), webhook and interaction tokens in
paths become ``<redacted:fingerprint>``, and ``token``/webhook ``url`` fields of bodies are
replaced.

**Replay** (:class:`ReplayTransport`): an ``httpx`` transport that answers from a recording.
Requests are matched on method, redacted path and query, in recorded order (a repeated read
gets the last answer again).  A create or edit that was not recorded (a message the new run
sends) is answered deterministically from the request body with a generated snowflake that
follows the recording's newest one; an unrecorded delete or reaction succeeds; an unrecorded
read raises :class:`ReplayMiss`, because making data up there would hide a gap in the recording.
"""

from __future__ import annotations

import json
import re
import threading
from collections import deque
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any
from urllib.parse import urlsplit

import httpx

from shared.discord.routes import CompiledRoute, secret_fingerprint
from shared.domain.messages import DISCORD_EPOCH_MS
from shared.errors import ConfigError

__all__ = ["Recorder", "ReplayMiss", "ReplayTransport", "redact_body", "redact_path"]

_TOKEN_PATH = re.compile(r"/(webhooks|interactions)/(\d+)/([^/?]+)")
_SNOWFLAKE = re.compile(r"^\d{15,22}$")
_KEPT_HEADERS = ("content-type", "via", "retry-after")
_SECRET_KEYS = frozenset({"token", "access_token", "refresh_token"})


def redact_path(path: str) -> str:
    """Replace the token after ``/webhooks/{id}/`` and ``/interactions/{id}/``."""

    def _sub(match: re.Match[str]) -> str:
        token = match.group(3)
        if token.startswith("<redacted:") or token in ("@original", "messages"):
            return match.group(0)
        return f"/{match.group(1)}/{match.group(2)}/<redacted:{secret_fingerprint(token)}>"

    return _TOKEN_PATH.sub(_sub, path)


def redact_body(value: Any) -> Any:
    """A copy of a JSON value with token fields and webhook URLs replaced."""
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for key, item in value.items():
            if key in _SECRET_KEYS and isinstance(item, str):
                out[key] = "<redacted>"
            elif isinstance(item, str) and "/webhooks/" in item:
                out[key] = redact_path(item)
            else:
                out[key] = redact_body(item)
        return out
    if isinstance(value, list):
        return [redact_body(v) for v in value]
    return value


def _query_key(params: Iterable[tuple[str, str]]) -> str:
    return "&".join(f"{k}={v}" for k, v in sorted(params))


class Recorder:
    """Appends one redacted JSON line per exchange to ``path`` (thread-safe)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._seq = 0
        path.parent.mkdir(parents=True, exist_ok=True)
        self._file: IO[str] = path.open("a", encoding="utf-8")

    def __repr__(self) -> str:
        return f"Recorder({str(self.path)!r})"

    def record(
        self,
        route: CompiledRoute,
        query: Mapping[str, str],
        request_body: Any,
        waited_s: float,
        denials: Iterable[str],
        *,
        status: int | None = None,
        headers: Mapping[str, str] | None = None,
        response_body: Any = None,
        error: BaseException | None = None,
    ) -> None:
        """Write one exchange: the answer's fields, or the ``error`` that stopped the request.

        Only the error's type is written; ``route.path`` may hold tokens and is redacted here.
        """
        kept = {
            k.lower(): v
            for k, v in (headers or {}).items()
            if k.lower() in _KEPT_HEADERS or k.lower().startswith("x-ratelimit-")
        }
        entry = {
            "at": datetime.now(UTC).isoformat(),
            "route": route.label,
            "method": route.method,
            "path": redact_path(route.path),
            "query": _query_key(query.items()),
            "request": redact_body(request_body),
            "status": status,
            "headers": kept,
            "response": redact_body(response_body),
            "limiter": {"waited_s": round(waited_s, 4), "denials": list(denials)},
        }
        if error is not None:
            entry["error"] = type(error).__name__
        line = json.dumps(entry, ensure_ascii=False, sort_keys=True)
        with self._lock:
            self._seq += 1
            self._file.write(line + "\n")
            self._file.flush()

    def close(self) -> None:
        """Close the file."""
        with self._lock:
            self._file.close()


class ReplayMiss(ConfigError):
    """A read the recording cannot answer: record the scenario again with mode=record."""


class ReplayTransport(httpx.BaseTransport):
    """Answers requests from a JSONL recording (see module docstring)."""

    def __init__(self, recording: Path, *, api_base: str) -> None:
        if not recording.is_file():
            raise ConfigError(
                f"Discord recording {recording} does not exist; record one with "
                "mode=record or point recording_path at an existing .jsonl file"
            )
        self.recording = recording
        self._base_path = urlsplit(api_base).path.rstrip("/")
        self._lock = threading.Lock()
        self._answers: dict[tuple[str, str, str], deque[dict[str, Any]]] = {}
        self._last: dict[tuple[str, str, str], dict[str, Any]] = {}
        self._templates: dict[tuple[str, str], dict[str, Any]] = {}
        newest = 0
        with recording.open(encoding="utf-8") as fh:
            for number, line in enumerate(fh, 1):
                if not line.strip():
                    continue
                try:
                    entry = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise ConfigError(
                        f"{recording}:{number} is not JSON ({exc.msg}); re-record the file"
                    ) from exc
                if entry.get("status") is None:
                    continue
                key = (entry["method"], entry["path"], entry.get("query", ""))
                self._answers.setdefault(key, deque()).append(entry)
                template_key = (entry["method"], _template_of(entry["path"]))
                if isinstance(entry.get("response"), dict):
                    self._templates.setdefault(template_key, entry)
                newest = max(newest, _newest_snowflake(entry.get("response")))
        base_ms = (newest >> 22) + DISCORD_EPOCH_MS if newest else 1767225600000
        self._next_ms = base_ms + 1000
        self._generated = 0

    def __repr__(self) -> str:
        return f"ReplayTransport({str(self.recording)!r})"

    def _snowflake(self) -> str:
        self._generated += 1
        return str(((self._next_ms + self._generated) - DISCORD_EPOCH_MS) << 22)

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        """Answer from the recording, or synthesize a create/delete (see module docstring)."""
        path = request.url.path
        if path.startswith(self._base_path):
            path = path[len(self._base_path) :]
        path = redact_path(path)
        query = _query_key(request.url.params.multi_items())
        key = (request.method, path, query)
        with self._lock:
            queue = self._answers.get(key)
            if queue:
                entry = queue.popleft()
                self._last[key] = entry
                return _response(entry["status"], entry["headers"], entry["response"])
            if key in self._last:
                entry = self._last[key]
                return _response(entry["status"], entry["headers"], entry["response"])
            return self._synthesize(request, path, query)

    def _synthesize(self, request: httpx.Request, path: str, query: str) -> httpx.Response:
        method = request.method
        if method in ("DELETE", "PUT"):
            return httpx.Response(204)
        if method not in ("POST", "PATCH"):
            where = f"{method} {path}" + (f"?{query}" if query else "")
            raise ReplayMiss(
                f"{where} is not in the recording {self.recording}; record this scenario "
                "again with mode=record"
            )
        body = json.loads(request.content) if request.content else {}
        template = self._templates.get((method, _template_of(path)), {})
        base = template.get("response") if isinstance(template.get("response"), dict) else {}
        message: dict[str, Any] = dict(base or {})
        parts = path.strip("/").split("/")
        if method == "POST":
            message["id"] = self._snowflake()
            stamp = (int(message["id"]) >> 22) + DISCORD_EPOCH_MS
            message["timestamp"] = datetime.fromtimestamp(stamp / 1000, tz=UTC).isoformat()
            message["edited_timestamp"] = None
        else:
            message.setdefault("id", parts[-1] if _SNOWFLAKE.match(parts[-1]) else "0")
            message["edited_timestamp"] = datetime.fromtimestamp(
                (self._next_ms + self._generated) / 1000, tz=UTC
            ).isoformat()
        if parts[0] == "channels":
            message["channel_id"] = parts[1]
        for field in ("content", "embeds", "components", "flags", "name", "type"):
            if isinstance(body, dict) and field in body:
                message[field] = body[field]
        webhook_execute = method == "POST" and parts[0] == "webhooks" and len(parts) == 3
        if webhook_execute and "wait=false" in query:
            return httpx.Response(204)
        status = 201 if path.endswith("/threads") else 200
        return httpx.Response(status, json=message)


def _template_of(path: str) -> str:
    parts = []
    for part in path.split("/"):
        if _SNOWFLAKE.match(part):
            parts.append("{id}")
        elif part.startswith("<redacted:"):
            parts.append("{token}")
        else:
            parts.append(part)
    return "/".join(parts)


def _newest_snowflake(value: Any) -> int:
    if isinstance(value, dict):
        own = value.get("id")
        best = int(own) if isinstance(own, str) and _SNOWFLAKE.match(own) else 0
        return max([best, *(_newest_snowflake(v) for v in value.values())])
    if isinstance(value, list):
        return max([0, *(_newest_snowflake(v) for v in value)])
    return 0


def _response(status: int, headers: Mapping[str, str], body: Any) -> httpx.Response:
    if body is None:
        return httpx.Response(status, headers=dict(headers))
    if isinstance(body, str):
        return httpx.Response(status, headers=dict(headers), text=body)
    hdrs = {k: v for k, v in headers.items() if k != "content-length"}
    return httpx.Response(status, headers=hdrs, json=body)
