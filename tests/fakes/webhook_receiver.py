"""A webhook receiver on 127.0.0.1 for tests and benchmarks: verifies, deduplicates, counts.

Every POST is checked with the independent ``standardwebhooks`` package (the PyPI reference
implementation), so what we send is verified by code we did not write.  The receiver counts each
``webhook-id``: ``effects`` holds the first body per id (what a real receiver would act on once),
``arrivals`` every delivery attempt that reached it, so a test can tell duplicates at the
transport level (allowed: at-least-once) from duplicated effects (never allowed).

It can answer scripted statuses and headers, be slow, serve TLS with a given certificate, and go
down (the port refuses connections) and come back up on the same port.
"""

from __future__ import annotations

import contextlib
import json
import socket
import ssl
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from standardwebhooks.webhooks import Webhook

__all__ = ["Received", "Reply", "WebhookReceiver"]


@dataclass(frozen=True)
class Reply:
    """One scripted answer."""

    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b"ok"
    delay: float = 0.0


@dataclass(frozen=True)
class Received:
    """One request as it arrived."""

    path: str
    headers: dict[str, str]
    body: bytes
    verified: bool
    error: str | None
    at: float


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A sender killed mid-request resets the connection: expected in these tests.
        return


class WebhookReceiver:
    """Start with ``with WebhookReceiver(secrets=[...]) as receiver:``; ``receiver.url``."""

    def __init__(
        self,
        *,
        secrets: list[str] | None = None,
        port: int = 0,
        tls: ssl.SSLContext | None = None,
        host_name: str = "127.0.0.1",
    ) -> None:
        self.secrets = list(secrets or [])
        self._tls = tls
        self._host_name = host_name
        self._lock = threading.Lock()
        self._script: list[Reply] = []
        self.default = Reply()
        self.requests: list[Received] = []
        self.arrivals: Counter[str] = Counter()
        self.effects: dict[str, Any] = {}
        self.connections = 0
        self._open: set[socket.socket] = set()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self.port = port
        self._start()

    # --- lifecycle ------------------------------------------------------------------------------

    def _start(self) -> None:
        server = _Server(("127.0.0.1", self.port), self._handler())
        if self._tls is not None:
            server.socket = self._tls.wrap_socket(server.socket, server_side=True)
        self.port = server.server_address[1]
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
        self._thread.daemon = True
        self._thread.start()

    def down(self) -> None:
        """Stop listening and drop open connections: the port refuses until :meth:`up`."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        with self._lock:
            open_connections, self._open = list(self._open), set()
        for conn in open_connections:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
            with contextlib.suppress(OSError):
                conn.close()

    def up(self) -> None:
        """Listen again on the same port."""
        if self._server is None:
            deadline = time.monotonic() + 10
            while True:
                try:
                    self._start()
                    return
                except OSError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.1)

    def close(self) -> None:
        """Stop for good."""
        self.down()

    def __enter__(self) -> WebhookReceiver:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def url(self) -> str:
        """Base URL (``http://127.0.0.1:PORT`` or ``https://HOST:PORT``)."""
        scheme = "https" if self._tls is not None else "http"
        return f"{scheme}://{self._host_name}:{self.port}"

    # --- behaviour ------------------------------------------------------------------------------

    def script(self, *replies: Reply) -> None:
        """Answer the next requests with ``replies``, in order, then with :attr:`default`."""
        with self._lock:
            self._script.extend(replies)

    def _next_reply(self) -> Reply:
        with self._lock:
            return self._script.pop(0) if self._script else self.default

    def _record(self, path: str, headers: dict[str, str], body: bytes, reply: Reply) -> None:
        verified, error = True, None
        if self.secrets:
            verified, error = False, "no secret matched"
            for secret in self.secrets:
                try:
                    Webhook(secret).verify(body, headers)
                except Exception as exc:  # the package raises several types on bad input
                    error = f"{type(exc).__name__}: {exc}"
                    continue
                verified, error = True, None
                break
        message_id = headers.get("webhook-id", "")
        with self._lock:
            self.requests.append(Received(path, headers, body, verified, error, time.time()))
            if verified and 200 <= reply.status < 300 and message_id:
                self.arrivals[message_id] += 1
                if message_id not in self.effects:
                    self.effects[message_id] = json.loads(body)

    # --- figures -------------------------------------------------------------------------------

    @property
    def duplicates(self) -> int:
        """Accepted arrivals beyond the first per ``webhook-id`` (transport-level repeats)."""
        with self._lock:
            return sum(count - 1 for count in self.arrivals.values())

    def accepted(self) -> int:
        """Distinct ``webhook-id``s accepted (each acted on once)."""
        with self._lock:
            return len(self.effects)

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            # Headers and body are written separately: without this, Nagle's algorithm and
            # the client's delayed ACK add ~40 ms to every response.
            disable_nagle_algorithm = True

            def setup(self) -> None:
                super().setup()
                with receiver._lock:
                    receiver.connections += 1
                    receiver._open.add(self.connection)

            def finish(self) -> None:
                with receiver._lock:
                    receiver._open.discard(self.connection)
                with contextlib.suppress(OSError):
                    super().finish()

            def log_message(self, format: str, *args: Any) -> None:
                return

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                body = self.rfile.read(length)
                if len(body) < length:
                    # The sender died mid-request (a killed worker): nothing was delivered,
                    # as a real HTTP server would see it.
                    self.close_connection = True
                    return
                headers = {k.lower(): v for k, v in self.headers.items()}
                reply = receiver._next_reply()
                if reply.delay:
                    time.sleep(reply.delay)
                receiver._record(self.path, headers, body, reply)
                try:
                    self.send_response(reply.status)
                    for name, value in reply.headers.items():
                        self.send_header(name, value)
                    self.send_header("Content-Length", str(len(reply.body)))
                    self.end_headers()
                    self.wfile.write(reply.body)
                except (TimeoutError, BrokenPipeError, ConnectionResetError):
                    self.close_connection = True

        return Handler
