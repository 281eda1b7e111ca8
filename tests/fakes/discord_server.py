"""A fake Discord REST API on a real HTTP server on 127.0.0.1.

The adapter (and discord.py's HTTP client, by pointing ``discord.http.Route.BASE`` at
``server.api_base``) talks to it exactly as to Discord.  Use it in-process::

    with FakeDiscordServer() as server:
        world = seed_basic(server.fake)
        ...  # server.api_base is "http://127.0.0.1:<port>/api/v10"

or in a separate process for benchmarks (``python -m tests.fakes.discord_server``, see
:func:`spawn_server`), driven through the control endpoints under ``/_fake/``:

* ``GET /_fake/stats``: request counts by status, 429s by scope, first/last success times
  (``POST`` with ``{"events": true, "windows": true}`` adds every event and every rate-limit
  window the fake opened)
* ``POST /_fake/reset``: forget counters and events
* ``POST /_fake/fault``: queue a :class:`~tests.fakes.discord_limits.Fault`
* ``POST /_fake/config``: change latency, global limit, route limits
* ``POST /_fake/seed``: build the ``basic``, ``bench`` or ``server_chat`` world (Acme with a
  day of irc-dev chat per channel, :mod:`tests.fakes.server_chat`) and return its ids and secrets
"""

from __future__ import annotations

import argparse
import contextlib
import json
import subprocess
import sys
import threading
import traceback
from dataclasses import asdict, dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import httpx

from tests.fakes.discord_api import FakeDiscord, Response
from tests.fakes.discord_limits import FakeConfig, Fault, RouteLimit
from tests.fakes.discord_state import (
    ADD_REACTIONS,
    DEFAULT_BOT_PERMISSIONS,
    MANAGE_MESSAGES,
    MANAGE_THREADS,
    SEND_MESSAGES,
    VIEW_CHANNEL,
    Channel,
    Guild,
    User,
    Webhook,
)

__all__ = [
    "FakeDiscordServer",
    "World",
    "control",
    "seed_basic",
    "seed_bench",
    "spawn_server",
]


@dataclass
class World:
    """The ``basic`` world: a guild with channels of every kind the adapter touches."""

    token: str
    bot: User
    alice: User
    bob: User
    guild: Guild
    general: Channel
    readonly: Channel
    hidden: Channel
    forum: Channel
    webhook: Webhook
    api_base: str = ""

    @property
    def webhook_url(self) -> str:
        """The webhook's URL as Discord shows it."""
        return f"https://discord.com/api/webhooks/{self.webhook.id}/{self.webhook.token}"

    def to_json(self) -> dict[str, Any]:
        """Ids and secrets, for a benchmark process."""
        return {
            "token": self.token,
            "bot_id": str(self.bot.id),
            "alice_id": str(self.alice.id),
            "bob_id": str(self.bob.id),
            "guild_id": str(self.guild.id),
            "general_id": str(self.general.id),
            "readonly_id": str(self.readonly.id),
            "hidden_id": str(self.hidden.id),
            "forum_id": str(self.forum.id),
            "webhook_id": str(self.webhook.id),
            "webhook_token": self.webhook.token,
        }


def seed_basic(fake: FakeDiscord, *, token: str = "bot-token-basic") -> World:
    """A guild "Release Eng" with a bot role, two people, and channels:

    ``general`` (the bot may do everything it needs), ``readonly`` (the bot may read but not
    send), ``hidden`` (the bot cannot see it), ``forum`` (a forum channel), and a webhook on
    ``general``.  Alice accepts DMs, Bob does not.
    """
    bot = fake.add_bot(token)
    alice = fake.add_user("marisol.k", global_name="Marisol")
    bob = fake.add_user("tobiasw", global_name="Tobias", dm_open=False)
    guild = fake.add_guild(
        "Release Eng", owner=alice, everyone_permissions=VIEW_CHANNEL | SEND_MESSAGES
    )
    role = fake.add_role(
        guild, "RelayBot", DEFAULT_BOT_PERMISSIONS | MANAGE_MESSAGES | MANAGE_THREADS
    )
    fake.add_member(guild, bot, roles=(role,))
    fake.add_member(guild, bob, nick="Tobi")
    general = fake.add_channel(guild, "release-eng", topic="Release coordination")
    readonly = fake.add_channel(
        guild,
        "announcements",
        overwrites=[
            {"id": str(role), "type": 0, "allow": "0", "deny": str(SEND_MESSAGES | ADD_REACTIONS)}
        ],
    )
    hidden = fake.add_channel(
        guild,
        "staff",
        overwrites=[{"id": str(role), "type": 0, "allow": "0", "deny": str(VIEW_CHANNEL)}],
    )
    forum = fake.add_channel(guild, "ideas", type=15)
    webhook = fake.add_webhook(general)
    return World(token, bot, alice, bob, guild, general, readonly, hidden, forum, webhook)


def seed_bench(
    fake: FakeDiscord, *, token: str, channels: int, messages: int, start_ms: int, step_ms: int
) -> dict[str, Any]:
    """``channels`` text channels holding ``messages`` messages each, and a webhook on the first.

    Returns ``channel_ids``, ``webhook_id`` and ``webhook_token``.
    """
    bot = fake.add_bot(token)
    people = [fake.add_user(f"user{n}", global_name=f"User {n}") for n in range(5)]
    guild = fake.add_guild("Bench", owner=people[0], everyone_permissions=VIEW_CHANNEL)
    role = fake.add_role(guild, "bot", DEFAULT_BOT_PERMISSIONS)
    fake.add_member(guild, bot, roles=(role,))
    ids = []
    for n in range(channels):
        channel = fake.add_channel(guild, f"bench-{n}")
        fake.add_history(channel, people, messages, start_ms=start_ms, step_ms=step_ms)
        ids.append(str(channel.id))
    hook = fake.add_webhook(fake.channels[int(ids[0])])
    return {"channel_ids": ids, "webhook_id": str(hook.id), "webhook_token": hook.token}


def _content_length(header: str | None) -> int | None:
    """The body length a request announces (0 without the header); None when it is not a
    length (reading a negative one would wait for the client to hang up)."""
    raw = (header or "0").strip()
    return int(raw) if raw.isascii() and raw.isdigit() else None


class _Handler(BaseHTTPRequestHandler):
    """One keep-alive connection, as Discord's edge serves them.

    HTTP/1.1 connections stay open between requests (until the client closes them, asks for
    ``Connection: close``, or stays idle for ``timeout`` seconds, longer than the idle expiry of
    httpx's and aiohttp's pools, so the server never closes a connection a client is about to
    reuse).  Every answer carries its length and leaves in one write with Nagle off, so a small
    answer never waits for a delayed ACK.  A bug in the fake answers 500 (like Discord's
    ``500: Internal Server Error``) instead of dropping the connection.
    """

    protocol_version = "HTTP/1.1"
    server_version = "FakeDiscord/1.0"
    timeout = 300
    disable_nagle_algorithm = True
    # Buffered: headers and body are flushed together after each request.
    wbufsize = 1 << 16
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: tests read statistics, not access logs."""

    def _dispatch(self) -> None:
        length = _content_length(self.headers.get("Content-Length"))
        if length is None:
            # The edge refuses a request it cannot frame, before the API sees it.
            self.close_connection = True
            self._write(Response(400, "400 Bad Request", {"Content-Type": "text/plain"}))
            return
        body = self.rfile.read(length) if length else b""
        parts = urlsplit(self.path)
        query = dict(parse_qsl(parts.query, keep_blank_values=True))
        try:
            if parts.path.startswith("/_fake/"):
                self._write(self.server.control(self.command, parts.path, body))
                return
            headers = {k.lower(): v for k, v in self.headers.items()}
            response = self.server.fake.handle(
                self.command, parts.path, query, headers, body, ip=self.client_address[0]
            )
        except Exception:
            traceback.print_exc(file=sys.stderr)
            error = {"message": "500: Internal Server Error", "code": 0}
            self._write(Response(500, error, {"Via": "1.1 google"}))
            return
        if response.delay_s > 0:
            threading.Event().wait(response.delay_s)
        if response.reset:
            self.close_connection = True
            return
        self._write(response)

    def _write(self, response: Response) -> None:
        self.send_response(response.status)
        body = response.body
        if body is None:
            payload = b""
        elif isinstance(body, str):
            payload = body.encode()
        else:
            payload = json.dumps(body, separators=(",", ":")).encode()
        for key, value in response.headers.items():
            if not (key == "Content-Type" and body is None):
                self.send_header(key, value)
        if body is not None and "Content-Type" not in response.headers:
            self.send_header("Content-Type", "application/json")
        if response.status != 204:
            self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        if payload and response.status != 204:
            self.wfile.write(payload)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _dispatch


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    # Many clients open their pools at once (discord.py opens one connection per concurrent
    # request); the default backlog of 5 would drop their handshakes.
    request_queue_size = 1024

    def __init__(self, address: tuple[str, int], fake: FakeDiscord) -> None:
        super().__init__(address, _Handler)
        self.fake = fake

    def control(self, method: str, path: str, body: bytes) -> Response:
        data = json.loads(body) if body else {}
        fake = self.fake
        if path == "/_fake/stats":
            stats = fake.limits.stats()
            events = [[e[0], e[1], e[2], e[3], e[5]] for e in fake.limits.events]
            stats["events"] = events if data.get("events") else None
            stats["windows"] = fake.limits.windows() if data.get("windows") else None
            return Response(200, stats)
        if path == "/_fake/reset":
            fake.limits.reset_counters()
            return Response(200, {"ok": True})
        if path == "/_fake/fault" and method == "POST":
            fake.inject(Fault(**data))
            return Response(200, {"ok": True})
        if path == "/_fake/config" and method == "POST":
            for key in (
                "latency_s",
                "global_limit",
                "global_window_s",
                "global_mode",
                "scope_header",
                "ban_s",
                "invalid_ban_threshold",
                "unknown_route_body",
                "guild_route",
                "members_intent",
            ):
                if key in data:
                    setattr(fake.config, key, data[key])
            if "webhook_channel_limit" in data:
                spec = data["webhook_channel_limit"]
                fake.config.webhook_channel_limit = None if spec is None else tuple(spec)
            for route, spec in (data.get("limits") or {}).items():
                fake.config.limits[route] = None if spec is None else RouteLimit(*spec)
            return Response(200, asdict(fake.config) | {"limits": None})
        if path == "/_fake/seed" and method == "POST":
            with fake.lock:
                if data.get("scenario") == "bench":
                    seeded = seed_bench(
                        fake,
                        token=data["token"],
                        channels=int(data["channels"]),
                        messages=int(data["messages"]),
                        start_ms=int(data["start_ms"]),
                        step_ms=int(data["step_ms"]),
                    )
                    return Response(200, seeded)
                if data.get("scenario") == "server_chat":
                    from tests.fakes.server_chat import seed_server_chat

                    return Response(
                        200,
                        seed_server_chat(
                            fake,
                            token=data["token"],
                            min_messages=int(data.get("min_messages", 300)),
                            max_messages=int(data.get("max_messages", 600)),
                        ),
                    )
                return Response(
                    200, seed_basic(fake, token=data.get("token", "bot-token-basic")).to_json()
                )
        return Response(404, {"message": f"unknown control endpoint {method} {path}", "code": 0})


class FakeDiscordServer:
    """Runs a :class:`FakeDiscord` behind HTTP on 127.0.0.1 in a background thread."""

    def __init__(
        self, fake: FakeDiscord | None = None, *, port: int = 0, config: FakeConfig | None = None
    ) -> None:
        self.fake = fake or FakeDiscord(config)
        self._server = _Server(("127.0.0.1", port), self.fake)
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name="fake-discord",
            daemon=True,
        )

    @property
    def url(self) -> str:
        """``http://127.0.0.1:<port>``."""
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    @property
    def api_base(self) -> str:
        """The base URL to give the adapter (``.../api/v10``)."""
        return f"{self.url}/api/v10"

    def start(self) -> FakeDiscordServer:
        """Start serving; returns self."""
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close the socket."""
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> FakeDiscordServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def control(url: str, path: str, payload: dict[str, Any] | None = None) -> Any:
    """Call a control endpoint of a (possibly separate-process) fake server."""
    with httpx.Client(timeout=60) as client:
        if payload is None:
            response = client.get(f"{url}/_fake/{path}")
        else:
            response = client.post(f"{url}/_fake/{path}", json=payload)
        response.raise_for_status()
        return response.json()


def spawn_server() -> tuple[subprocess.Popen[str], str]:
    """Start the fake in its own process; returns the process and its URL."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.fakes.discord_server", "--port", "0"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline().strip()
    if not line.startswith("READY "):
        proc.kill()
        raise RuntimeError(f"fake Discord did not start: {line!r}")
    return proc, line.split(" ", 1)[1]


def main(argv: list[str] | None = None) -> None:
    """Serve until stdin closes or the process is terminated."""
    parser = argparse.ArgumentParser(description="Fake Discord REST API for tests and benchmarks")
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args(argv)
    server = FakeDiscordServer(port=args.port).start()
    print(f"READY {server.url}", flush=True)
    with contextlib.suppress(KeyboardInterrupt):
        sys.stdin.read()
    server.stop()


if __name__ == "__main__":
    main()
