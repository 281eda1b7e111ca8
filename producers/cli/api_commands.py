"""``summarybot api`` (serve the HTTP API) and ``summarybot keys create|list|revoke``.

:func:`run_api` and :data:`keys_app` are wired into the main ``summarybot`` command.  Every
failure prints one line saying what is wrong and how to fix it, and exits with code 2.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Annotated

import structlog
import typer
from sqlalchemy.exc import OperationalError, ProgrammingError
from sqlalchemy.orm import Session, sessionmaker

from producers.cli.common import command_app, fail, load_cli_settings
from shared.apikeys import (
    Scope,
    create_api_key,
    key_state,
    list_api_keys,
    revoke_api_key,
)
from shared.db.engine import make_engine, make_sessionmaker
from shared.errors import ConfigError, InvalidInputError
from shared.settings import Settings

__all__ = ["keys_app", "run_api"]

log = structlog.get_logger("summarybot.api")

keys_app = command_app("keys", "Manage API keys (sb_<id>_<secret>) for the HTTP API.")


def run_api(settings: Settings) -> None:
    """Serve the API with uvicorn until stopped; refuse the embedded mode with one line.

    Where and how come from the ``api`` group (``API_HOST``, ``API_PORT``, ``API_WORKERS``,
    ``FORWARDED_ALLOW_IPS``).  More than one worker starts that many server processes on one
    socket, each building its own app from the environment, which is where ``settings`` came
    from.  ``X-Forwarded-For``/``-Proto`` are believed only from the listed proxies: the client
    address decides per-key IP allowlists, so by default no peer may claim another address.
    """
    import uvicorn

    from producers.api.app import check_settings, create_app
    from producers.api.listener import balanced_listening_supported
    from shared.crypto import secret_box
    from shared.dependencies import check_redis, check_schema_at_start
    from shared.discord.factory import token_source

    api = settings.api
    try:
        check_settings(settings)
        secret_box(settings)
        token_source(settings.discord)  # a token file that cannot be read: one line, now
        # A Redis that is down is shown by /readyz and the process starts all the same; one
        # that refuses the URL's credentials or database never gets better.
        assert settings.redis_url is not None  # check_settings refused the embedded mode
        check_redis(settings.redis_url, allow_unreachable=True)
        assert settings.database_url is not None  # likewise
        # Every request would fail on a database that was never migrated or is behind.
        check_schema_at_start(settings.database_url)
        app = create_app(settings) if api.workers == 1 else None
    except ConfigError as exc:
        fail(exc.user_message)
    proxies = ",".join(api.forwarded_allow_ips)
    options: dict[str, object] = {
        "host": api.host,
        "port": api.port,
        "proxy_headers": bool(proxies),
        # uvicorn reads FORWARDED_ALLOW_IPS itself when this is None; say it explicitly.
        "forwarded_allow_ips": proxies or "",
        "log_config": None,
        "access_log": False,
        "server_header": False,
        "timeout_graceful_shutdown": 30,
    }
    if app is not None:
        _serve_one(app, api.host, api.port, options)
    elif not balanced_listening_supported():
        uvicorn.run(
            "producers.api.app:app_from_environment",
            factory=True,
            workers=api.workers,
            **options,  # type: ignore[arg-type]
        )
    else:
        _serve_balanced(api.host, api.port, api.workers, options)


def _serve_one(app: object, host: str, port: int, options: dict[str, object]) -> None:
    """One server process on ``(host, port)``; a port that is taken is one line, as with
    several workers, not uvicorn's log line and exit 3 (the port is tried first, then
    uvicorn binds it as it always does)."""
    import socket

    import uvicorn

    from producers.api.listener import address_family

    with socket.socket(address_family(host), socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            fail(
                f"cannot listen on {host}:{port} ({exc.strerror}); choose a free --port or API_PORT"
            )
    uvicorn.run(app, **options)  # type: ignore[arg-type]


def _serve_balanced(host: str, port: int, workers: int, options: dict[str, object]) -> None:
    """``workers`` server processes under uvicorn's supervisor, each on a listening socket of
    its own (:mod:`producers.api.listener`), so connections spread evenly over them."""
    from uvicorn import Config
    from uvicorn.supervisors import Multiprocess

    from producers.api.listener import SharedPort

    config = Config(
        "producers.api.app:app_from_environment",
        factory=True,
        workers=workers,
        **options,  # type: ignore[arg-type]
    )
    try:
        held = SharedPort.bind_to(host, port)
    except OSError as exc:
        fail(f"cannot listen on {host}:{port} ({exc.strerror}); choose a free --port or API_PORT")
    log.info("api.listening", host=host, port=held.getsockname()[1], workers=workers)
    try:
        Multiprocess(config, sockets=[held]).run()
    finally:
        held.close()


@contextmanager
def _database(settings: Settings) -> Iterator[sessionmaker[Session]]:
    engine = make_engine(settings.effective_database_url)
    try:
        yield make_sessionmaker(engine)
    except (OperationalError, ProgrammingError):
        fail(
            "the database is not reachable or has no api_keys table; check DATABASE_URL and "
            "run `summarybot migrate`"
        )
    finally:
        engine.dispose()


ScopeOpt = Annotated[
    list[Scope],
    typer.Option("--scope", "-s", help="A scope to grant (repeat for several)."),
]


@keys_app.command("create")
def create(
    guild: Annotated[str, typer.Option("--guild", "-g", help="The Discord guild (server) id.")],
    scope: ScopeOpt,
    name: Annotated[str, typer.Option("--name", help="What the key is for.")] = "api key",
    expires_in_days: Annotated[
        int | None, typer.Option("--expires-in-days", min=1, help="Expire after N days.")
    ] = None,
    rate_limit: Annotated[
        int | None,
        typer.Option("--rate-limit", min=1, help="Requests per minute (default: the API's)."),
    ] = None,
    allow_ip: Annotated[
        list[str] | None,
        typer.Option("--allow-ip", help="Only accept requests from this IP or CIDR (repeat)."),
    ] = None,
    sign_requests: Annotated[
        bool,
        typer.Option(
            "--sign-requests", help="Require Standard Webhooks signatures on every request."
        ),
    ] = False,
) -> None:
    """Create a key and print it once (only its hash is stored)."""
    from shared.crypto import secret_box
    from shared.signing import generate_secret

    settings = load_cli_settings(quiet=True)
    signing_secret = None
    encrypted = None
    if sign_requests:
        signing_secret = generate_secret()
        try:
            encrypted = secret_box(settings).encrypt(signing_secret)
        except ConfigError as exc:
            fail(exc.user_message)
    with _database(settings) as factory:
        try:
            row, token = create_api_key(
                factory,
                guild_id=guild,
                scopes=[s.value for s in scope],
                name=name,
                now=datetime.now(UTC),
                expires_in=timedelta(days=expires_in_days) if expires_in_days else None,
                ip_allowlist=allow_ip or None,
                signing_secret_encrypted=encrypted,
                rate_limit_per_minute=rate_limit,
            )
        except InvalidInputError as exc:
            fail(exc.user_message)
    print(f"key id:  {row.id}")
    print(f"guild:   {row.guild_id}")
    print(f"scopes:  {' '.join(row.scopes)}")
    if row.expires_at is not None:
        print(f"expires: {row.expires_at:%Y-%m-%d %H:%M} UTC")
    print(f"api key: {token}")
    if signing_secret is not None:
        print(f"signing secret: {signing_secret}")
    print("Store the key now: it is not shown again (only its hash is kept).")


@keys_app.command("list")
def list_keys(
    guild: Annotated[str | None, typer.Option("--guild", "-g", help="Only this guild's.")] = None,
) -> None:
    """List keys (never their secrets): id, guild, state, scopes, dates, name."""
    settings = load_cli_settings(quiet=True)
    with _database(settings) as factory:
        rows = list_api_keys(factory, guild_id=guild)
    if not rows:
        print("no API keys")
        return
    now = datetime.now(UTC)

    def when(value: datetime | None) -> str:
        return f"{value:%Y-%m-%d %H:%M}" if value else "-"

    print(
        f"{'ID':<14}{'GUILD':<22}{'STATE':<9}{'CREATED':<18}{'EXPIRES':<18}{'LAST USED':<18}"
        "SCOPES / NAME"
    )
    for row in rows:
        print(
            f"{row.id:<14}{row.guild_id:<22}{key_state(row, now=now):<9}"
            f"{when(row.created_at):<18}{when(row.expires_at):<18}{when(row.last_used_at):<18}"
            f"{','.join(row.scopes)} / {row.name}"
        )


@keys_app.command("revoke")
def revoke(key_id: Annotated[str, typer.Argument(help="The key id (from `keys list`).")]) -> None:
    """Revoke a key at once; requests with it are refused from now on."""
    settings = load_cli_settings(quiet=True)
    with _database(settings) as factory:
        revoked = revoke_api_key(factory, key_id, now=datetime.now(UTC))
    if not revoked:
        fail(f"no active API key {key_id!r}; see `summarybot keys list`")
    print(f"revoked {key_id}")
