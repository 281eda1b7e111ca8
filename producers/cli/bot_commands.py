"""``summarybot bot``: run the Discord bot (one process per shard group).

:func:`run_bot` is wired into the main ``summarybot`` command.  It checks what the bot needs
(``DISCORD_TOKEN``, ``REDIS_URL`` for the broker and the shared cooldowns), builds the runtime
and runs the gateway client until stopped.  A missing or invalid setting prints one line saying
what is wrong and how to fix it and exits with code 2.
"""

from __future__ import annotations

from typing import Any

from producers.cli.common import fail
from shared.crypto import secret_box
from shared.discord.tokens import FileToken
from shared.errors import ConfigError
from shared.llm.models import ModelInfo, ModelRegistry
from shared.settings import Settings

__all__ = ["check_bot_settings", "llm_model_of", "run_bot"]


def llm_model_of(settings: Settings) -> tuple[ModelInfo | None, int]:
    """The LLM the workers use (None: the offline summarizer) and its output allowance."""
    llm = settings.llm
    if not llm.configured:
        return None, 0
    model = ModelRegistry().extend(llm.models).get(llm.model)
    return model, llm.max_output_tokens


def check_bot_settings(settings: Settings) -> str:
    """The bot token; :class:`ConfigError` names what is missing and how to fix it."""
    discord = settings.discord
    token = discord.token.get_secret_value() if discord.token is not None else None
    if token is None and discord.token_file is not None:
        token = FileToken(discord.token_file).current()
    if token is None or not token.strip():
        raise ConfigError(
            "DISCORD_TOKEN is not set: give the bot token from the Discord developer portal "
            "(Bot → Reset Token), or DISCORD_TOKEN_FILE naming a file that holds it"
        )
    if settings.embedded:
        raise ConfigError(
            "REDIS_URL is not set: the bot needs Redis for the job queue and the cooldowns its "
            "shards share; set REDIS_URL (and DATABASE_URL) and start workers"
        )
    return token.strip()


def run_bot(settings: Settings) -> None:
    """Run the bot until stopped (Ctrl-C or SIGTERM)."""
    import aiohttp
    import discord
    import redis.asyncio as aioredis

    from producers.bot.client import SummaryBot
    from producers.bot.runtime import build_runtime
    from shared.db.engine import make_engine, make_sessionmaker
    from shared.dependencies import check_redis, check_schema_at_start
    from shared.jobs import CeleryEnqueuer, publisher_app

    try:
        token = check_bot_settings(settings)
        model, max_output = llm_model_of(settings)
        box = secret_box(settings)
        assert settings.redis_url is not None  # check_bot_settings refused the embedded mode
        check_redis(settings.redis_url, allow_unreachable=True)
        check_schema_at_start(settings.effective_database_url)
    except ConfigError as exc:
        fail(exc.user_message)
    engine = make_engine(settings.effective_database_url)
    runtime = build_runtime(
        settings,
        session_factory=make_sessionmaker(engine),
        enqueuer=CeleryEnqueuer(
            publisher_app(settings.broker_url, visibility_timeout=settings.visibility_timeout)
        ),
        redis=aioredis.Redis.from_url(settings.redis_url, health_check_interval=25),
        box=box,
        llm_model=model,
        llm_max_output_tokens=max_output,
    )
    bot = SummaryBot(runtime)
    try:
        bot.metrics_server = _metrics_server(settings)
        # ``log_handler=None``: structlog (configured by the CLI) already owns the root logger.
        bot.run(token, log_handler=None)
    except ConfigError as exc:
        fail(exc.user_message)
    except discord.LoginFailure:
        fail(
            "DISCORD_TOKEN: Discord refused the token (401); reset it in the developer portal "
            "(your application → Bot → Reset Token) and set the new one"
        )
    except discord.PrivilegedIntentsRequired:
        fail(
            "Discord refused the Message Content intent the bot asks for; turn it on in the "
            "developer portal (your application → Bot → Privileged Gateway Intents)"
        )
    except (aiohttp.ClientConnectionError, discord.GatewayNotFound) as exc:
        fail(
            f"Discord could not be reached ({type(exc).__name__}: {exc}); check this host's "
            "network and DNS, and DISCORD_API_BASE if set",
            code=1,
        )
    finally:
        engine.dispose()


def _metrics_server(settings: Settings) -> Any:
    """``/metrics`` served from the start (before logging in), or None without METRICS_PORT;
    :class:`ConfigError` when the port cannot be served, as the worker says it."""
    from shared.metrics import start_worker_metrics_server

    metrics = settings.metrics
    if metrics.port is None:
        return None
    try:
        server, _ = start_worker_metrics_server(metrics.port, addr=metrics.host)
    except OSError as exc:
        raise ConfigError(
            f"METRICS_PORT: {metrics.port} on {metrics.host} cannot be served "
            f"({exc.strerror}); pick a free port, or unset METRICS_PORT"
        ) from None
    return server
