"""The outbound HTTP client of webhooks: connects only to vetted addresses, never redirects.

:class:`VettingBackend` is an ``httpcore`` network backend: when the pool needs a connection to
``host:port`` it resolves the name *once*, refuses unless every address is public
(:func:`shared.delivery.ssrf.vet_addresses`), and opens the socket to one of exactly those
addresses.  TLS is then negotiated by ``httpcore`` with the host *name* as SNI and as the name the
certificate must match.  Pooled connections are keyed by (scheme, host name, port), so a
connection opened for one host name is never reused for another.

No redirect is ever followed (``httpcore`` has no such feature) and no proxy environment variable
is read, so nothing can silently route a request around the guard.

A request's ``timeout`` bounds the whole request, not each socket operation: the name's
resolution and every connect, TLS handshake, read and write of the sockets this backend opens
are given only what is left of the deadline of the request in progress, so neither a receiver
that drips its answer a byte at a time nor a slow DNS server can hold a worker past it.
"""

from __future__ import annotations

import contextlib
import ssl
import threading
import time
from collections.abc import Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from contextvars import ContextVar
from dataclasses import dataclass, field

import certifi
import httpcore

from shared.delivery.ssrf import (
    EgressPolicy,
    IPAddress,
    NameResolutionError,
    Resolver,
    WebhookUrl,
    system_resolver,
    vet_addresses,
)
from shared.errors import TransientError

__all__ = [
    "EXCERPT_BYTES",
    "HttpResult",
    "VettingBackend",
    "WebhookHttpClient",
    "WebhookTransportError",
    "default_ssl_context",
]

#: How much of a response body is kept for the attempt log.
EXCERPT_BYTES = 1024
_CONNECT_TIMEOUT = 5.0


class WebhookTransportError(TransientError):
    """The request did not complete: connection refused or reset, TLS failure, timeout."""


def default_ssl_context() -> ssl.SSLContext:
    """Certificate and host name verification against the Mozilla CA bundle (``certifi``)."""
    context = ssl.create_default_context(cafile=certifi.where())
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    return context


#: When the request in progress in this thread must end (``time.monotonic()``), if any.
_DEADLINE: ContextVar[float | None] = ContextVar("webhook_deadline", default=None)
# Writes are cut into pieces so that each piece is bounded by what is left of the deadline.
_WRITE_PIECE = 16384


def _left(timeout: float | None, expired: type[httpcore.TimeoutException]) -> float | None:
    """``timeout`` cut to what is left of the current request's deadline; ``expired`` once
    nothing is left."""
    deadline = _DEADLINE.get()
    if deadline is None:
        return timeout
    left = deadline - time.monotonic()
    if left <= 0:
        raise expired("the request's total timeout ran out")
    return left if timeout is None else min(timeout, left)


class _DeadlineStream(httpcore.NetworkStream):
    """A socket stream whose every operation ends by the current request's deadline."""

    def __init__(self, inner: httpcore.NetworkStream) -> None:
        self._inner = inner

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        """Read at most ``max_bytes``, by the deadline."""
        return self._inner.read(max_bytes, _left(timeout, httpcore.ReadTimeout))

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        """Write all of ``buffer``, by the deadline."""
        view = memoryview(buffer)
        for start in range(0, len(view), _WRITE_PIECE) or (0,):
            piece = bytes(view[start : start + _WRITE_PIECE])
            self._inner.write(piece, _left(timeout, httpcore.WriteTimeout))

    def close(self) -> None:
        """Close the socket."""
        self._inner.close()

    def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,
    ) -> httpcore.NetworkStream:
        """Negotiate TLS (the handshake as a whole bounded by the deadline)."""
        inner = self._inner.start_tls(
            ssl_context, server_hostname, _left(timeout, httpcore.ConnectTimeout)
        )
        return _DeadlineStream(inner)

    def get_extra_info(self, info: str) -> object:
        """What the wrapped stream says (the socket, the TLS object ...)."""
        return self._inner.get_extra_info(info)


class VettingBackend(httpcore.NetworkBackend):
    """Resolve once, vet every address, connect to a vetted address (see module docstring)."""

    def __init__(
        self,
        policy: EgressPolicy,
        resolver: Resolver = system_resolver,
        inner: httpcore.NetworkBackend | None = None,
    ) -> None:
        self._policy = policy
        self._resolver = resolver
        self._inner = inner or httpcore.SyncBackend()
        # getaddrinfo cannot be interrupted: a lookup that outlives its request's deadline
        # is left to finish on its own thread, and the request fails at the deadline.
        self._lookups: ThreadPoolExecutor | None = None
        self._lookups_lock = threading.Lock()

    def _vetted(self, host: str, port: int) -> list[IPAddress]:
        """:func:`vet_addresses` for ``host``, by the current request's deadline."""
        deadline = _DEADLINE.get()
        if deadline is None:
            return vet_addresses(host, port, policy=self._policy, resolver=self._resolver)
        with self._lookups_lock:
            if self._lookups is None:
                self._lookups = ThreadPoolExecutor(4, thread_name_prefix="webhook-dns")
            lookups = self._lookups
        future = lookups.submit(
            vet_addresses, host, port, policy=self._policy, resolver=self._resolver
        )
        try:
            return future.result(timeout=max(0.0, deadline - time.monotonic()))
        except FutureTimeout:
            raise NameResolutionError(
                f"resolving {host} outlasted the request's timeout",
                user_message=f"the webhook host {host} did not resolve in time; check its DNS",
            ) from None

    def close(self) -> None:
        """Stop the lookup threads (a lookup still running ends on its own)."""
        with self._lookups_lock:
            lookups, self._lookups = self._lookups, None
        if lookups is not None:
            lookups.shutdown(wait=False, cancel_futures=True)

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.NetworkStream:
        """Connect to the first reachable vetted address of ``host``."""
        addresses = self._vetted(host, port)
        error: Exception | None = None
        for address in addresses:
            try:
                stream = self._inner.connect_tcp(
                    str(address),
                    port,
                    timeout=_left(timeout, httpcore.ConnectTimeout),
                    local_address=local_address,
                    socket_options=socket_options,
                )
                return _DeadlineStream(stream)
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                error = exc
        assert error is not None
        raise error

    def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,  # noqa: ARG002 - the backend's signature
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,  # noqa: ARG002
    ) -> httpcore.NetworkStream:
        """Refused: webhooks never go to local sockets."""
        raise httpcore.ConnectError(f"unix sockets are not webhook targets ({path})")

    def sleep(self, seconds: float) -> None:
        """Delegate to the wrapped backend."""
        self._inner.sleep(seconds)


@dataclass(frozen=True)
class HttpResult:
    """What came back: status, headers (lower-case names), a short body excerpt, time taken."""

    status: int
    headers: dict[str, str] = field(default_factory=dict)
    excerpt: str = ""
    elapsed_ms: float = 0.0


def _timeouts(total: float) -> dict[str, float]:
    return {
        "connect": min(_CONNECT_TIMEOUT, total),
        "read": total,
        "write": total,
        "pool": total,
    }


class WebhookHttpClient:
    """A pool of guarded HTTP/1.1 connections; thread-safe, one per process.

    ``ssl_context`` defaults to :func:`default_ssl_context`; tests pass one that trusts their
    own CA.  ``resolver`` defaults to the system resolver; tests inject one, and may wrap the
    socket layer (``connector``) to observe every connection attempt.
    """

    def __init__(
        self,
        *,
        policy: EgressPolicy,
        resolver: Resolver = system_resolver,
        ssl_context: ssl.SSLContext | None = None,
        max_connections: int = 64,
        keepalive_expiry: float = 30.0,
        user_agent: str = "SummaryBot-Webhooks/1",
        connector: httpcore.NetworkBackend | None = None,
    ) -> None:
        self.policy = policy
        self.user_agent = user_agent
        self._backend = VettingBackend(policy, resolver, connector)
        self._pool = httpcore.ConnectionPool(
            ssl_context=ssl_context or default_ssl_context(),
            max_connections=max_connections,
            max_keepalive_connections=max_connections,
            keepalive_expiry=keepalive_expiry,
            http1=True,
            http2=False,
            retries=0,
            network_backend=self._backend,
        )

    def close(self) -> None:
        """Close every pooled connection."""
        self._pool.close()
        self._backend.close()

    def post(
        self,
        url: WebhookUrl,
        body: bytes,
        headers: Mapping[str, str],
        *,
        timeout: float,
    ) -> HttpResult:
        """POST ``body`` to ``url`` within ``timeout`` seconds; any status is returned as is.

        Raises :class:`~shared.delivery.ssrf.AddressRefused` (nothing was sent),
        :class:`~shared.delivery.ssrf.NameResolutionError`, or
        :class:`WebhookTransportError` when no status line and headers arrived in time (a
        status that did is returned even if its body was still coming).
        """
        deadline = time.monotonic() + timeout
        request_headers = [
            (b"Host", url.host_header.encode("ascii")),
            (b"User-Agent", self.user_agent.encode("ascii")),
            (b"Content-Type", b"application/json"),
            (b"Content-Length", str(len(body)).encode("ascii")),
            *((k.encode("latin-1"), v.encode("latin-1")) for k, v in headers.items()),
        ]
        target = httpcore.URL(
            scheme=url.scheme.encode("ascii"),
            host=url.host.encode("ascii"),
            port=url.port,
            target=url.target.encode("ascii"),
        )
        started = time.perf_counter()
        bounded = _DEADLINE.set(deadline)
        try:
            with self._pool.stream(
                "POST",
                target,
                headers=request_headers,
                content=body,
                extensions={"timeout": _timeouts(timeout)},
            ) as response:
                excerpt = bytearray()
                # The status has arrived, and it is the answer: the body is only read (its
                # first KB, while time is left and the connection holds) for the attempt log.
                with contextlib.suppress(
                    httpcore.TimeoutException, httpcore.NetworkError, httpcore.ProtocolError
                ):
                    for chunk in response.iter_stream():
                        excerpt += chunk
                        if len(excerpt) >= EXCERPT_BYTES or time.monotonic() > deadline:
                            break
                status = response.status
                response_headers = {
                    k.decode("latin-1").lower(): v.decode("latin-1") for k, v in response.headers
                }
        except httpcore.TimeoutException as exc:
            raise WebhookTransportError(
                f"no response from {url.host} within {timeout:g} s ({type(exc).__name__})",
                user_message=f"the webhook at {url.host} did not answer within {timeout:g} s",
            ) from None
        except (httpcore.NetworkError, httpcore.ProtocolError) as exc:
            raise WebhookTransportError(
                f"request to {url.host} failed: {type(exc).__name__}: {exc}",
                user_message=f"the webhook at {url.host} could not be reached ({exc})",
            ) from None
        finally:
            _DEADLINE.reset(bounded)
        elapsed = (time.perf_counter() - started) * 1000
        return HttpResult(
            status=status,
            headers=response_headers,
            excerpt=bytes(excerpt[:EXCERPT_BYTES]).decode("utf-8", "replace"),
            elapsed_ms=elapsed,
        )
