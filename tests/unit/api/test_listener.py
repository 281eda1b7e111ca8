"""The API's listening sockets: one per server process, on one port, connections spread."""

from __future__ import annotations

import errno
import pickle
import socket
from collections.abc import Iterator

import pytest
import typer
from typer.testing import CliRunner

from producers.api.listener import SharedPort, balanced_listening_supported
from producers.cli.api_commands import run_api
from shared.crypto import generate_key
from shared.settings import ApiSettings, load_settings

pytestmark = pytest.mark.skipif(
    not balanced_listening_supported(), reason="SO_REUSEPORT balances connections on Linux only"
)


def _as_worker_receives(held: SharedPort) -> socket.socket:
    """``held`` as a spawned worker process unpickles it (uvicorn passes sockets that way)."""
    from multiprocessing.reduction import ForkingPickler

    received = pickle.loads(ForkingPickler.dumps(held))
    assert isinstance(received, socket.socket)
    return received


@pytest.fixture
def held() -> Iterator[SharedPort]:
    port = SharedPort.bind_to("127.0.0.1", 0)
    yield port
    port.close()


def _listening(sock: socket.socket) -> bool:
    return bool(sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN))


def test_each_worker_receives_a_socket_of_its_own_on_the_held_port(held: SharedPort) -> None:
    first, second = _as_worker_receives(held), _as_worker_receives(held)
    try:
        # Nobody listens yet: the supervisor never, a worker once its server starts serving.
        assert not _listening(held)
        for received in (first, second):
            assert not _listening(received)
            assert received.getsockname() == held.getsockname()
            assert received.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT) == 1
        assert first.fileno() != second.fileno()
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(held.getsockname()[:2], timeout=1).close()
    finally:
        first.close()
        second.close()


def test_connections_are_spread_over_the_workers_sockets(held: SharedPort) -> None:
    workers = [_as_worker_receives(held) for _ in range(2)]
    for listener in workers:
        listener.listen()
    clients = [socket.create_connection(held.getsockname()[:2]) for _ in range(64)]
    accepted = []
    try:
        for listener in workers:
            listener.setblocking(False)
            count = 0
            while True:
                try:
                    connection, _ = listener.accept()
                except BlockingIOError:
                    break
                connection.close()
                count += 1
            accepted.append(count)
    finally:
        for sock in (*clients, *workers):
            sock.close()
    assert sum(accepted) == 64
    # By a hash of each connection's addresses: fewer than 8 of 64 on one side is ~1e-10.
    assert min(accepted) >= 8, accepted


def test_a_port_in_use_is_refused_rather_than_shared(held: SharedPort) -> None:
    worker = _as_worker_receives(held)
    worker.listen()
    try:
        with pytest.raises(OSError) as refused:
            SharedPort.bind_to("127.0.0.1", held.getsockname()[1])
        assert refused.value.errno == errno.EADDRINUSE
    finally:
        worker.close()
    with socket.socket() as other:
        other.bind(("127.0.0.1", 0))
        other.listen()
        with pytest.raises(OSError) as taken:
            SharedPort.bind_to("127.0.0.1", other.getsockname()[1])
        assert taken.value.errno == errno.EADDRINUSE


@pytest.mark.parametrize("workers", [1, 2])
def test_api_on_a_taken_port_fails_with_one_line(
    monkeypatch: pytest.MonkeyPatch, workers: int
) -> None:
    # One worker (compose and k8s run one) ended with uvicorn's log line and exit 3.
    monkeypatch.setenv("DATABASE_URL", "postgresql+psycopg://postgres@127.0.0.1:1/x")
    monkeypatch.setenv("REDIS_URL", "redis://127.0.0.1:6379/9")
    monkeypatch.setenv("SECRET_KEYS", generate_key())
    with socket.socket() as other:
        other.bind(("127.0.0.1", 0))
        other.listen()
        port = other.getsockname()[1]
        app = typer.Typer()

        @app.command()
        def api() -> None:
            run_api(
                load_settings(api=ApiSettings.load(host="127.0.0.1", port=port, workers=workers))
            )

        result = CliRunner().invoke(app, [])
    assert result.exit_code == 2
    assert result.output == (
        f"summarybot: cannot listen on 127.0.0.1:{port} (Address already in use); "
        "choose a free --port or API_PORT\n"
    )
