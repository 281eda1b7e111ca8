"""``summarybot bot``: run the Discord bot (one process per shard group).

:func:`run_bot` is wired into the main ``summarybot`` command.  It checks what the bot needs
(``DISCORD_TOKEN``, ``REDIS_URL`` for the broker and the shared cooldowns), builds the runtime
and runs the gateway client until stopped.  A missing or invalid setting prints one line saying
what is wrong and how to fix it and exits with code 2.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from typing import Any, NoReturn

import typer
from pydantic import ValidationError

from producers.bot.config import BotSettings
from shared.crypto import secret_box
from shared.errors import ConfigError
from shared.llm.config import LLMSettings
from shared.llm.models import ModelInfo, ModelRegistry
from shared.settings import Settings

__all__ = ["bot_settings_of", "check_bot_settings", "llm_model_of", "run_bot"]


def _fail(message: str, code: int = 2) -> NoReturn:
    print(f"summarybot: {message}", file=sys.stderr)
    raise typer.Exit(code)


def bot_settings_of(*, environ: Mapping[str, str] | None = None) -> BotSettings:
    """The bot's settings from ``BOT_<FIELD>`` variables (lists comma-separated).

    The bot's own options are not part of the shared settings object (``shared`` must not know
    the bot).  Every invalid value is reported in one :class:`ConfigError` naming the variable.
    """
    env = os.environ if environ is None else environ
    values: dict[str, Any] = {}
    for name, field in BotSettings.model_fields.items():
        raw = env.get(f"BOT_{name.upper()}")
        if raw is None:
            continue
        values[name] = (
            [part.strip() for part in raw.split(",") if part.strip()]
            if "list" in str(field.annotation)
            else raw
        )
    try:
        return BotSettings.model_validate(values)
    except ValidationError as exc:
        problems = "; ".join(
            f"BOT_{str(e['loc'][0]).upper()}: {e['msg']}" for e in exc.errors() if e["loc"]
        )
        raise ConfigError(problems or str(exc)) from None


def llm_model_of(settings: Settings) -> tuple[ModelInfo | None, int]:
    """The LLM the workers use (None: the offline summarizer) and its output allowance."""
    nested: Any = getattr(settings, "llm", None)
    llm = nested if isinstance(nested, LLMSettings) else None
    if llm is None:
        if settings.openai_api_key is None and settings.llm_base_url is None:
            return None, 0
        llm = LLMSettings(base_url=settings.llm_base_url)
    elif llm.base_url is None and llm.api_key is None and settings.openai_api_key is None:
        return None, 0
    model = ModelRegistry().extend(llm.models).get(llm.model)
    return model, llm.max_output_tokens


def check_bot_settings(settings: Settings) -> str:
    """The bot token; :class:`ConfigError` names what is missing and how to fix it."""
    if settings.discord_token is None or not settings.discord_token.get_secret_value().strip():
        raise ConfigError(
            "DISCORD_TOKEN is not set: give the bot token from the Discord developer portal "
            "(Bot → Reset Token)"
        )
    if settings.embedded:
        raise ConfigError(
            "REDIS_URL is not set: the bot needs Redis for the job queue and the cooldowns its "
            "shards share; set REDIS_URL (and DATABASE_URL) and start workers"
        )
    return settings.discord_token.get_secret_value().strip()


def run_bot(settings: Settings, bot_settings: BotSettings | None = None) -> None:
    """Run the bot until stopped (Ctrl-C or SIGTERM)."""
    import redis.asyncio as aioredis

    from producers.bot.client import SummaryBot
    from producers.bot.runtime import build_runtime
    from shared.db.engine import make_engine, make_sessionmaker
    from shared.jobs import CeleryEnqueuer, publisher_app

    try:
        bot_settings = bot_settings or bot_settings_of()
        token = check_bot_settings(settings)
        model, max_output = llm_model_of(settings)
        box = secret_box(settings)
    except ConfigError as exc:
        _fail(exc.user_message)
    config = bot_settings
    assert settings.redis_url is not None
    engine = make_engine(settings.effective_database_url)
    runtime = build_runtime(
        config,
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
        # ``log_handler=None``: structlog (configured by the CLI) already owns the root logger.
        bot.run(token, log_handler=None)
    finally:
        engine.dispose()
