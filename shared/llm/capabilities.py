"""What a server does with each structured-output mode, learnt once and shared by every worker.

OpenAI-compatible servers differ where structured output is concerned: OpenAI enforces a
strict ``json_schema``; many vLLM, llama.cpp and proxy versions reject it with a 400; Ollama and
some proxies accept any ``response_format`` and ignore it.  The first caller that finds out
records a :class:`Verdict` for (server, mode), where a server is one base URL and model
(:func:`server_key`); every other caller reads it and starts the ladder at the right rung, so no
second worker pays the same 400 or the same unusable answer.

* ``ok`` — the mode worked;
* ``rejected`` — the server answered 400 to the ``response_format`` of this mode, or 500 while a
  lower rung then answered (vLLM fails that way on formats it cannot handle, vllm#35438);
* ``ignored`` — the server took the request but its answer did not keep the mode's promise (a
  strict ``json_schema`` answer that does not fit the schema, a JSON-mode answer that is not
  JSON).

Verdicts expire after ``ttl`` seconds, so an upgraded server is probed again.  While the verdict
of a mode is unknown, one caller holds a short *probe lease* (:meth:`CapabilityStore.try_probe`)
and the others wait for its verdict instead of all sending the same request at once.

:class:`RedisCapabilityStore` keeps verdicts in one Redis hash per server;
:class:`LocalCapabilityStore` is the in-process twin for the embedded mode.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal, Protocol, cast

from redis import Redis

__all__ = [
    "CapabilityStore",
    "LocalCapabilityStore",
    "ModeVerdict",
    "RedisCapabilityStore",
    "Verdict",
    "server_key",
]

Verdict = Literal["ok", "rejected", "ignored"]
_VERDICTS: frozenset[str] = frozenset({"ok", "rejected", "ignored"})


def server_key(base_url: str, model: str) -> str:
    """Identity of one server for capabilities: its base URL and the model it serves."""
    return f"{base_url.rstrip('/')}|{model}"


@dataclass(frozen=True, slots=True)
class ModeVerdict:
    """What was learnt about one mode: the verdict, why, and until when it is trusted."""

    verdict: Verdict
    reason: str
    until: float

    @property
    def usable(self) -> bool:
        """False when the mode must be skipped (rejected or ignored)."""
        return self.verdict == "ok"


class CapabilityStore(Protocol):
    """What the LLM client needs to share capabilities."""

    def verdicts(self, server: str) -> dict[str, ModeVerdict]:
        """Unexpired verdicts of ``server``, by mode."""
        ...

    def record(self, server: str, mode: str, verdict: Verdict, reason: str) -> None:
        """Remember ``verdict`` for ``mode`` of ``server`` for the store's TTL."""
        ...

    def try_probe(self, server: str, mode: str, lease: float) -> bool:
        """Take the probe lease of an unknown mode for ``lease`` seconds; False if taken."""
        ...

    def end_probe(self, server: str, mode: str) -> None:
        """Give the probe lease back (the verdict is recorded, or the probe failed)."""
        ...


def _check(verdict: str, ttl: float) -> None:
    if verdict not in _VERDICTS:
        raise ValueError(f"unknown verdict {verdict!r}; use one of {sorted(_VERDICTS)}")
    if ttl <= 0:
        raise ValueError("ttl must be positive")


class RedisCapabilityStore:
    """Verdicts in one Redis hash per server (field = mode, value = JSON), with a TTL."""

    def __init__(
        self,
        redis: Redis[Any],
        *,
        ttl: float,
        prefix: str = "sb:cap:llm",
        clock: Callable[[], float] = time.time,
    ) -> None:
        if ttl <= 0:
            raise ValueError("ttl must be positive")
        self._redis = redis
        self._ttl = ttl
        self._prefix = prefix
        self._clock = clock

    def _key(self, server: str) -> str:
        return f"{self._prefix}:{server}"

    def verdicts(self, server: str) -> dict[str, ModeVerdict]:
        """Unexpired verdicts of ``server``; unreadable entries are ignored."""
        raw: dict[Any, Any] = self._redis.hgetall(self._key(server))
        now = self._clock()
        found: dict[str, ModeVerdict] = {}
        for field, value in raw.items():
            mode = field.decode() if isinstance(field, bytes) else str(field)
            try:
                data = json.loads(value)
                name, reason = str(data["verdict"]), str(data["reason"])
                until = float(data["until"])
            except (ValueError, KeyError, TypeError):
                continue
            if name in _VERDICTS and until > now:
                found[mode] = ModeVerdict(cast(Verdict, name), reason, until)
        return found

    def record(self, server: str, mode: str, verdict: Verdict, reason: str) -> None:
        """Store the verdict; the hash lives as long as its newest entry."""
        _check(verdict, self._ttl)
        until = self._clock() + self._ttl
        value = json.dumps({"verdict": verdict, "reason": reason[:500], "until": until})
        key = self._key(server)
        pipe = self._redis.pipeline(transaction=True)
        pipe.hset(key, mode, value)
        pipe.pexpire(key, int(self._ttl * 1000))
        pipe.execute()

    def try_probe(self, server: str, mode: str, lease: float) -> bool:
        """SET NX with an expiry: exactly one caller probes at a time, a dead one is replaced."""
        key = f"{self._key(server)}:probe:{mode}"
        return bool(self._redis.set(key, b"1", nx=True, px=max(1, int(lease * 1000))))

    def end_probe(self, server: str, mode: str) -> None:
        """Drop the lease."""
        self._redis.delete(f"{self._key(server)}:probe:{mode}")


class LocalCapabilityStore:
    """The same store inside one process (embedded mode)."""

    def __init__(self, *, ttl: float, clock: Callable[[], float] = time.monotonic) -> None:
        if ttl <= 0:
            raise ValueError("ttl must be positive")
        self._ttl = ttl
        self._clock = clock
        self._lock = threading.Lock()
        self._verdicts: dict[str, dict[str, ModeVerdict]] = {}
        self._probes: dict[tuple[str, str], float] = {}

    def verdicts(self, server: str) -> dict[str, ModeVerdict]:
        """Unexpired verdicts of ``server``."""
        now = self._clock()
        with self._lock:
            known = self._verdicts.get(server, {})
            return {mode: v for mode, v in known.items() if v.until > now}

    def record(self, server: str, mode: str, verdict: Verdict, reason: str) -> None:
        """Store the verdict for the TTL."""
        _check(verdict, self._ttl)
        with self._lock:
            self._verdicts.setdefault(server, {})[mode] = ModeVerdict(
                verdict, reason[:500], self._clock() + self._ttl
            )

    def try_probe(self, server: str, mode: str, lease: float) -> bool:
        """Take the lease unless another thread holds an unexpired one."""
        now = self._clock()
        with self._lock:
            if self._probes.get((server, mode), 0.0) > now:
                return False
            self._probes[(server, mode)] = now + lease
            return True

    def end_probe(self, server: str, mode: str) -> None:
        """Drop the lease."""
        with self._lock:
            self._probes.pop((server, mode), None)
