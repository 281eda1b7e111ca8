"""The webhook client's whole request fits its timeout, whatever the receiver does.

A per-read timeout alone lets a receiver that sends one byte now and then keep a worker busy
for as long as it likes; these receivers are raw sockets on 127.0.0.1 that do just that.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Callable, Iterable, Iterator

import httpcore
import pytest

from shared.delivery.http_sender import WebhookHttpClient, WebhookTransportError
from shared.delivery.ssrf import EgressPolicy, NameResolutionError, parse_webhook_url


@contextlib.contextmanager
def raw_server(answer: Callable[[socket.socket], None]) -> Iterator[int]:
    """A one-connection-at-a-time server on 127.0.0.1 running ``answer`` on each connection."""
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.1)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            with conn:
                conn.recv(65536)
                with contextlib.suppress(OSError):
                    answer(conn)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield listener.getsockname()[1]
    finally:
        stop.set()
        thread.join(5)
        listener.close()


def drip(data: bytes, every: float) -> Callable[[socket.socket], None]:
    def answer(conn: socket.socket) -> None:
        for byte in data:
            conn.sendall(bytes([byte]))
            time.sleep(every)

    return answer


def post(port: int, timeout: float) -> float:
    """Time taken by one POST to the server on ``port`` (whatever its result)."""
    http = WebhookHttpClient(policy=EgressPolicy.from_entries(["127.0.0.1"]))
    url = parse_webhook_url(f"http://127.0.0.1:{port}/hook", http.policy)
    started = time.monotonic()
    try:
        with contextlib.suppress(WebhookTransportError):
            http.post(url, b"{}", {}, timeout=timeout)
        return time.monotonic() - started
    finally:
        http.close()


def test_a_status_line_and_headers_dripped_slowly_cannot_outlast_the_timeout() -> None:
    head = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nX-Slow: " + b"x" * 40 + b"\r\n\r\nok"
    with raw_server(drip(head, every=0.1)) as port:
        elapsed = post(port, timeout=1.0)
    assert elapsed < 2.0, f"a 1 s webhook request took {elapsed:.1f} s"


def test_a_slow_drip_is_reported_as_a_timeout() -> None:
    head = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nX-Slow: " + b"x" * 40 + b"\r\n\r\nok"
    with raw_server(drip(head, every=0.1)) as port:
        http = WebhookHttpClient(policy=EgressPolicy.from_entries(["127.0.0.1"]))
        url = parse_webhook_url(f"http://127.0.0.1:{port}/hook", http.policy)
        with pytest.raises(WebhookTransportError, match=r"within 1 s") as info:
            http.post(url, b"{}", {}, timeout=1.0)
        assert "did not answer within 1 s" in info.value.user_message
        http.close()


def test_a_body_dripped_slowly_ends_the_request_at_the_timeout() -> None:
    answer = b"HTTP/1.1 500 Oops\r\nContent-Length: 100\r\n\r\n" + b"y" * 100
    with raw_server(drip(answer, every=0.05)) as port:
        elapsed = post(port, timeout=1.5)
    # Every chunk arrives within the per-read timeout; only a total deadline ends it.
    assert elapsed < 2.5, f"a 1.5 s webhook request took {elapsed:.1f} s"


class BlackHole(httpcore.NetworkBackend):
    """A socket layer where every connection attempt hangs until its timeout."""

    def __init__(self) -> None:
        self.tried: list[str] = []

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.NetworkStream:
        self.tried.append(host)
        time.sleep(timeout or 0)
        raise httpcore.ConnectTimeout(f"{host} did not answer")


def test_a_host_with_many_unreachable_addresses_fails_within_the_timeout() -> None:
    addresses = ["93.184.216.34", "93.184.216.35", "93.184.216.36", "93.184.216.37"]
    hole = BlackHole()
    http = WebhookHttpClient(
        policy=EgressPolicy(), resolver=lambda host, port: addresses, connector=hole
    )
    url = parse_webhook_url("https://many.example/hook", http.policy)
    started = time.monotonic()
    with pytest.raises(WebhookTransportError, match="within 1 s"):
        http.post(url, b"{}", {}, timeout=1.0)
    elapsed = time.monotonic() - started
    http.close()
    assert hole.tried[0] == addresses[0]
    assert elapsed < 1.5, f"a 1 s webhook request took {elapsed:.1f} s over {hole.tried}"


def stall_after(data: bytes) -> Callable[[socket.socket], None]:
    def answer(conn: socket.socket) -> None:
        conn.sendall(data)
        time.sleep(3)

    return answer


def test_a_status_that_arrived_in_time_counts_though_the_body_never_ends() -> None:
    # The answer is the status; the body is only read (up to a KB) for the attempt log.
    answer = b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\naccepted"
    with raw_server(stall_after(answer)) as port:
        http = WebhookHttpClient(policy=EgressPolicy.from_entries(["127.0.0.1"]))
        url = parse_webhook_url(f"http://127.0.0.1:{port}/hook", http.policy)
        started = time.monotonic()
        result = http.post(url, b"{}", {}, timeout=1.0)
        elapsed = time.monotonic() - started
        http.close()
    assert (result.status, result.excerpt) == (200, "accepted")
    assert elapsed < 1.5


def test_a_status_followed_by_a_cut_connection_still_counts() -> None:
    answer = b"HTTP/1.1 202 Accepted\r\nContent-Length: 100\r\n\r\nqueued"
    with raw_server(lambda conn: conn.sendall(answer)) as port:
        http = WebhookHttpClient(policy=EgressPolicy.from_entries(["127.0.0.1"]))
        url = parse_webhook_url(f"http://127.0.0.1:{port}/hook", http.policy)
        result = http.post(url, b"{}", {}, timeout=2.0)
        http.close()
    assert (result.status, result.excerpt) == (202, "queued")


def test_a_name_that_resolves_slowly_fails_within_the_timeout() -> None:
    def slow_dns(host: str, port: int) -> list[str]:
        time.sleep(3)
        return ["127.0.0.1"]

    with raw_server(drip(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", every=0)) as port:
        http = WebhookHttpClient(policy=EgressPolicy.from_entries(["slow.test"]), resolver=slow_dns)
        url = parse_webhook_url(f"http://slow.test:{port}/hook", http.policy)
        started = time.monotonic()
        with pytest.raises(NameResolutionError) as info:
            http.post(url, b"{}", {}, timeout=1.0)
        elapsed = time.monotonic() - started
        http.close()
    assert "slow.test" in info.value.user_message
    assert elapsed < 1.5, f"a 1 s webhook request took {elapsed:.1f} s"
