"""One listening socket per API server process, so the kernel spreads connections over them.

uvicorn's supervisor binds one socket and hands each worker process a copy of it.  Every
worker then waits on the same queue of new connections, and whichever is awake first accepts
all that are pending: a client (or a proxy) that opens its keep-alive connections in a burst
lands most of them on one process.  Measured with ``tests.perf.api_load`` on two workers, one
process did about three times the other's work, so the busy one queued while a core sat idle.

With ``SO_REUSEPORT`` (Linux) every process listens on a socket of its own bound to the same
port, and the kernel assigns each new connection to one of them by a hash of its addresses.
:class:`SharedPort` is what the supervisor holds and passes on: bound, never listening (so it
is given no connections), and pickled (which is how uvicorn's spawned workers receive their
sockets) as the recipe for a fresh socket on its port rather than a copy of itself.  That
socket is only bound: uvicorn's server starts it listening once the app's start-up is done,
so a worker that is starting (or restarting) is given no connections before it can serve.
Connections already queued on a worker that dies are reset with it; clients retry them.
"""

from __future__ import annotations

import socket
import sys
from typing import Any

__all__ = ["SharedPort", "address_family", "balanced_listening_supported", "port_socket"]


def balanced_listening_supported() -> bool:
    """True where ``SO_REUSEPORT`` spreads connections over sockets (Linux); elsewhere the
    option exists with other meanings (the BSDs, macOS) or not at all (Windows)."""
    return sys.platform.startswith("linux") and hasattr(socket, "SO_REUSEPORT")


def address_family(host: str) -> socket.AddressFamily:
    """IPv6 for a host written with colons, else IPv4."""
    return socket.AF_INET6 if ":" in host else socket.AF_INET


def _share_port(sock: socket.socket, host: str, port: int) -> None:
    """Bind ``sock`` to ``(host, port)`` with ``SO_REUSEPORT``; close it if that fails."""
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise


def port_socket(host: str, port: int) -> socket.socket:
    """A socket bound to ``(host, port)`` that shares the port with the others bound with
    ``SO_REUSEPORT`` by the same user; what each server process listens on once it serves."""
    sock = socket.socket(address_family(host), socket.SOCK_STREAM)
    _share_port(sock, host, port)
    sock.set_inheritable(True)
    return sock


class SharedPort(socket.socket):
    """The supervisor's hold on the API's port (see the module docstring).

    :meth:`bind_to` first takes the port without ``SO_REUSEPORT``, so a port that anything else
    listens on (an older API still running, say) fails with "address in use" instead of being
    shared with it; it then holds the port with ``SO_REUSEPORT`` for the workers to join.
    """

    @classmethod
    def bind_to(cls, host: str, port: int) -> SharedPort:
        """Hold ``(host, port)`` for the workers; :class:`OSError` when it is taken."""
        family = address_family(host)
        with socket.socket(family, socket.SOCK_STREAM) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind((host, port))
            port = probe.getsockname()[1]
        held = cls(family, socket.SOCK_STREAM)
        _share_port(held, host, port)
        return held

    def __reduce_ex__(self, protocol: Any) -> tuple[Any, ...]:
        host, port = self.getsockname()[:2]
        return (port_socket, (host, port))
