"""The settings root: one validated object for every process, from the environment and ``.env``.

Build it once at an entry point with :func:`load_settings` and pass it on; nothing reads the
environment at import time.  The root holds the core settings (database, Redis, data directory,
logging, pipeline bounds, secret keys) and one group per concern, each a
:class:`~shared.settings_group.SettingsGroup` read the same way: ``discord``
(``DISCORD_*``), ``llm`` (``LLM_*``, ``OPENAI_API_KEY``), ``delivery`` (``WEBHOOK_*``,
``DELIVERY_*``), ``bot`` (``BOT_*``), ``api`` (``API_*``) and ``metrics`` (``METRICS_*``).
Every invalid value is reported as one line naming the variable, what is wrong and how to fix
it (:class:`SettingsError`), and secrets are ``SecretStr`` so they never reach a log or a
traceback.

With nothing set, the embedded default applies: SQLite under ``SUMMARYBOT_DATA_DIR``, an
in-process broker and worker, the offline extractive summarizer.
"""

from __future__ import annotations

import ipaddress
import os
import re
from pathlib import Path
from typing import Any, Literal, Self
from urllib.parse import SplitResult, urlsplit

from cryptography.fernet import Fernet
from pydantic import (
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, SettingsConfigDict

from shared.delivery.config import DeliverySettings
from shared.discord.config import DiscordSettings
from shared.errors import ConfigError, SettingsError
from shared.llm.config import LLMSettings
from shared.settings_group import (
    ENV_SOURCES,
    CommaSeparated,
    SettingsGroup,
    drop_blank_values,
    problem_line,
)

__all__ = [
    "ApiSettings",
    "BotSettings",
    "MetricsSettings",
    "Settings",
    "SettingsError",
    "ensure_data_dir",
    "known_variables",
    "load_settings",
]

_DB_SCHEMES = {"postgresql", "postgresql+psycopg", "postgres", "sqlite", "sqlite+pysqlite"}
_REDIS_SCHEMES = {"redis", "rediss", "unix"}

# How to fix each setting, shown after what was wrong with it.
_HINTS: dict[str, str] = {
    "DATABASE_URL": "use postgresql+psycopg://user:pass@host:5432/db or sqlite:///path/to.db, "
    "or unset it for the embedded SQLite database",
    "REDIS_URL": "use redis://host:6379/0 (rediss:// for TLS), or unset it for the embedded broker",
    "SUMMARYBOT_DATA_DIR": "point it at a writable directory",
    "LOG_LEVEL": "use one of DEBUG, INFO, WARNING, ERROR",
    "LOG_FORMAT": "use auto, json or console",
    "MESSAGE_CACHE_TTL": "give a number of seconds between 60 and 604800",
    "MAX_MESSAGES": "give a whole number between 1 and 1000000",
    "STAGE_TIMEOUT_SECONDS": "give a number of seconds between 30 and 86400",
    "JOB_WAIT_TIMEOUT": "give a number of seconds between 1 and 86400",
    "EMBEDDED_CONCURRENCY": "give a whole number between 1 and 16",
    "VISIBILITY_TIMEOUT": "give seconds between 20 and 43200; task time limits are a quarter of it",
    "MAX_TASK_RETRIES": "give a whole number between 0 and 50",
    "MAX_REDELIVERIES": "give a whole number between 1 and 100",
    "SECRET_KEYS": "give comma-separated Fernet keys, newest first; generate one with "
    "`summarybot rotate-keys --generate`",
}


def _check_port(parts: SplitResult) -> None:
    """A URL's port is a number: a password with an unescaped ``@``, ``:`` or ``/`` moves
    part of it into the port (``user:a@b:1x@db``), which drivers report only as a
    traceback at the first connection."""
    try:
        parts.port  # noqa: B018 - parsing the port is the check
    except ValueError:
        raise ValueError(_PORT_PROBLEM.format(host=parts.netloc.rsplit("@", 1)[-1])) from None


_PORT_PROBLEM = (
    "the port in {host!r} is not a number; percent-encode @ : / in a user name or password "
    "(%40 %3A %2F)"
)


class BotSettings(SettingsGroup):
    """The ``bot`` group (``BOT_<FIELD>``): everything the bot process can be told besides its
    token (``DISCORD_TOKEN``).

    Sharding: leave ``shard_count``/``shard_ids`` unset and one process runs every shard Discord
    recommends.  To split a large bot over processes, give every process the same
    ``shard_count`` and its own ``shard_ids`` (e.g. ``0,1`` and ``2,3`` with ``shard_count`` 4).
    """

    model_config = SettingsConfigDict(env_prefix="BOT_")

    application_id: int | None = Field(
        default=None,
        ge=1,
        description="the application's id; read from Discord at login when unset",
    )
    shard_count: int | None = Field(
        default=None, ge=1, le=16_384, description="total shards of the bot (all processes)"
    )
    shard_ids: CommaSeparated[list[int] | None] = Field(
        default=None, description="the shards this process runs; needs shard_count"
    )
    sync_commands: bool = Field(
        default=True, description="register the slash commands with Discord at start"
    )
    command_guild_ids: CommaSeparated[list[int]] = Field(
        default_factory=list,
        description="register commands in these guilds only (instant, for testing)",
    )

    user_cooldown_seconds: float = Field(default=60.0, ge=0, le=86_400)
    guild_cooldown_seconds: float = Field(default=5.0, ge=0, le=86_400)
    user_daily_quota: int = Field(default=25, ge=0, le=100_000, description="0 = no limit")
    guild_daily_quota: int = Field(default=500, ge=0, le=1_000_000, description="0 = no limit")

    max_window_messages: int = Field(default=10_000, ge=1, le=1_000_000)
    default_window_hours: int = Field(default=24, ge=1, le=168)
    progress_interval_seconds: float = Field(default=3.0, gt=0, le=120)
    #: Interaction tokens live 15 minutes; stop using one this long after the interaction.
    interaction_token_seconds: float = Field(default=14 * 60, gt=0, le=15 * 60)
    tokens_per_message: int = Field(
        default=45, ge=1, le=10_000, description="average prompt tokens one message costs"
    )
    activity_ttl_hours: int = Field(default=8 * 24, ge=1, le=24 * 31)
    redis_key_prefix: str = Field(default="sb:bot:", min_length=1, max_length=64)

    @field_validator("shard_ids")
    @classmethod
    def _distinct(cls, value: list[int] | None) -> list[int] | None:
        if value is None:
            return None
        if not value:
            raise ValueError("the list is empty; list the shards this process runs, e.g. 0,1")
        if len(set(value)) != len(value) or min(value) < 0:
            raise ValueError("the shards must be distinct numbers from 0, e.g. 0,1")
        return sorted(value)

    @model_validator(mode="after")
    def _shards(self) -> Self:
        if self.shard_ids is not None:
            if self.shard_count is None:
                raise ValueError(
                    "BOT_SHARD_COUNT: not set, and BOT_SHARD_IDS needs it; set it to the total "
                    "number of shards over all bot processes"
                )
            too_big = [s for s in self.shard_ids if s >= self.shard_count]
            if too_big:
                raise ValueError(
                    f"BOT_SHARD_IDS: {','.join(map(str, too_big))} not below BOT_SHARD_COUNT "
                    f"{self.shard_count}; shards are numbered 0 to BOT_SHARD_COUNT - 1"
                )
        return self


class ApiSettings(SettingsGroup):
    """The ``api`` group (``API_<FIELD>``): where and how ``summarybot api`` serves."""

    model_config = SettingsConfigDict(env_prefix="API_")

    host: str = Field(default="127.0.0.1", min_length=1, description="address to listen on")
    port: int = Field(default=8080, ge=1, le=65535)
    workers: int = Field(
        default=1, ge=1, le=64, description="server processes sharing the port (see operations)"
    )
    forwarded_allow_ips: CommaSeparated[list[str]] = Field(
        default_factory=list,
        validation_alias="FORWARDED_ALLOW_IPS",
        description="proxies whose X-Forwarded-For/-Proto are believed (none by default)",
    )

    @field_validator("forwarded_allow_ips")
    @classmethod
    def _proxy_list(cls, value: list[str]) -> list[str]:
        for entry in value:
            if entry == "*":
                continue
            try:
                ipaddress.ip_network(entry, strict=False)
            except ValueError:
                raise ValueError(
                    f"{entry!r} is not an IP address or network; list the addresses of your "
                    "reverse proxies, comma-separated (e.g. 10.0.0.5,10.1.0.0/16), or '*' "
                    "when every peer is a proxy"
                ) from None
        return value


class MetricsSettings(SettingsGroup):
    """The ``metrics`` group: where a worker or the bot serves Prometheus ``/metrics``.

    Nothing is served unless ``METRICS_PORT`` is set (0 picks a free port); the API serves its
    metrics on its own port.  ``PROMETHEUS_MULTIPROC_DIR`` (read by ``prometheus_client``
    itself) collects prefork children's metrics.
    """

    model_config = SettingsConfigDict(env_prefix="METRICS_")

    port: int | None = Field(default=None, ge=0, le=65535, description="serve /metrics here")
    host: str = Field(
        default="127.0.0.1", min_length=1, description="address of /metrics (0.0.0.0: all)"
    )
    multiproc_dir: Path | None = Field(
        default=None,
        validation_alias="PROMETHEUS_MULTIPROC_DIR",
        description="where prefork pool processes write their samples (read by "
        "prometheus_client itself; checked here so a bad one stops the start)",
    )

    @field_validator("multiproc_dir")
    @classmethod
    def _writable_directory(cls, value: Path | None) -> Path | None:
        # prometheus_client writes a file there on a process's first sample: a directory that
        # is missing or read-only would fail tasks and scrapes later, not the start.
        if value is None:
            return None
        if not value.is_dir():
            raise ValueError(
                f"{str(value)!r} is not a directory; create it (an empty directory every "
                "process can write, e.g. a tmpfs) or unset PROMETHEUS_MULTIPROC_DIR"
            )
        if not os.access(value, os.W_OK | os.X_OK):
            raise ValueError(
                f"{str(value)!r} is not writable by this user; give it to the user the "
                "processes run as, or unset PROMETHEUS_MULTIPROC_DIR"
            )
        return value


#: The groups of the root, each built by :func:`load_settings` from the same sources.
GROUPS: dict[str, type[SettingsGroup]] = {
    "discord": DiscordSettings,
    "llm": LLMSettings,
    "delivery": DeliverySettings,
    "bot": BotSettings,
    "api": ApiSettings,
    "metrics": MetricsSettings,
}


class Settings(BaseSettings):
    """Every setting the processes read.  Variable names are the upper-cased field names."""

    model_config = SettingsConfigDict(**ENV_SOURCES)

    database_url: str | None = Field(
        default=None, description="SQLAlchemy URL of the system of record"
    )
    redis_url: str | None = Field(default=None, description="Redis for the broker and caches")
    data_dir: Path = Field(
        default_factory=lambda: Path.home() / ".local" / "share" / "summarybot",
        # Only SUMMARYBOT_DATA_DIR: a generic DATA_DIR (common in containers) is not ours.
        # load_settings(data_dir=...) still works (it is renamed there).
        validation_alias="SUMMARYBOT_DATA_DIR",
        description="Where the embedded SQLite database, its key file and beat's schedule live",
    )
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_format: Literal["auto", "json", "console"] = "auto"
    message_cache_ttl: int = Field(default=86400, ge=60, le=604800)
    max_messages: int = Field(default=200_000, ge=1, le=1_000_000)
    stage_timeout_seconds: int = Field(default=900, ge=30, le=86400)
    job_wait_timeout: float = Field(default=3600.0, ge=1, le=86400)
    embedded_concurrency: int = Field(default=2, ge=1, le=16)
    visibility_timeout: int = Field(default=3600, ge=20, le=43200)
    max_task_retries: int = Field(default=8, ge=0, le=50)
    max_redeliveries: int = Field(default=5, ge=1, le=100)

    secret_keys: CommaSeparated[list[SecretStr]] = Field(
        default_factory=list, description="Fernet keys for secrets at rest, newest first"
    )

    discord: DiscordSettings = Field(default_factory=DiscordSettings)
    llm: LLMSettings = Field(default_factory=LLMSettings)
    delivery: DeliverySettings = Field(default_factory=DeliverySettings)
    bot: BotSettings = Field(default_factory=BotSettings)
    api: ApiSettings = Field(default_factory=ApiSettings)
    metrics: MetricsSettings = Field(default_factory=MetricsSettings)

    @model_validator(mode="before")
    @classmethod
    def _drop_blank_values(cls, data: Any) -> Any:
        return drop_blank_values(data)

    @field_validator("secret_keys")
    @classmethod
    def _fernet_keys(cls, value: list[SecretStr]) -> list[SecretStr]:
        # Checked here, in every process, not only where a secret is first sealed: a typo'd
        # key would otherwise start a fetch worker or beat and fail deliveries hours later.
        for index, key in enumerate(value, start=1):
            try:
                Fernet(key.get_secret_value().encode())
            except ValueError:
                which = f"key {index} of {len(value)}" if len(value) > 1 else "the key"
                # Never the key itself: it is a secret even when malformed.
                raise ValueError(
                    f"{which} is not a valid Fernet key (32 url-safe base64-encoded bytes, "
                    "44 characters ending in '=')"
                ) from None
        return value

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper_level(cls, value: Any) -> Any:
        return value.upper() if isinstance(value, str) else value

    @field_validator("database_url")
    @classmethod
    def _check_database_url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        parts = urlsplit(value)
        scheme = parts.scheme
        if scheme not in _DB_SCHEMES:
            raise ValueError(f"scheme {scheme or '(none)'!r} is not supported")
        _check_port(parts)
        # SQLAlchemy reads the URL its own way (a password ends at its first "@"): ask it.
        from sqlalchemy.engine import make_url
        from sqlalchemy.exc import ArgumentError

        try:
            _ = make_url(value).port
        except (ValueError, ArgumentError):
            # Not quoting what it took for the port: that may be part of the password.
            raise ValueError(
                "its port is not a number as the driver reads it: a user name or password "
                "holds an @ : or / to percent-encode (%40 %3A %2F)"
            ) from None
        if scheme in ("postgresql", "postgres"):
            return "postgresql+psycopg" + value[len(scheme) :]
        return value

    @field_validator("redis_url")
    @classmethod
    def _check_redis_url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        parts = urlsplit(value)
        if parts.scheme not in _REDIS_SCHEMES:
            raise ValueError(f"scheme {parts.scheme or '(none)'!r} is not a Redis URL")
        if parts.scheme != "unix":
            _check_port(parts)
            if not parts.hostname:
                raise ValueError("it has no host")
            # redis-py ignores a database that is not a number (and uses 0), kombu refuses it
            # at the first connection: both are worse than saying so now.
            database = parts.path.strip("/")
            if database and not re.fullmatch(r"[0-9]+", database):
                raise ValueError(
                    f"the database {database!r} after the host is not a number "
                    "(redis://host:6379/0 uses database 0)"
                )
        return value

    @model_validator(mode="after")
    def _shared_database(self) -> Self:
        if self.redis_url is not None and self.database_url is None:
            # Without it every process would open its own SQLite file in its data directory:
            # a worker would never find the jobs the API wrote.
            raise ValueError(
                "DATABASE_URL: not set while REDIS_URL is; separate processes must share one "
                "database: set DATABASE_URL=postgresql+psycopg://user:pass@host:5432/db, or "
                "unset REDIS_URL for the embedded mode"
            )
        return self

    @property
    def embedded(self) -> bool:
        """True when no Redis is configured: broker and worker run inside the process."""
        return self.redis_url is None

    @property
    def effective_database_url(self) -> str:
        """``DATABASE_URL``, or the embedded SQLite file under the data directory."""
        if self.database_url:
            return self.database_url
        return f"sqlite:///{self.data_dir / 'summarybot.db'}"

    @property
    def broker_url(self) -> str:
        """Celery broker: Redis when configured, else kombu's in-process memory transport."""
        # A host name keeps kombu from warning that it fell back to localhost.
        return self.redis_url or "memory://localhost/"

    @property
    def result_backend(self) -> str | None:
        """Celery result backend (Redis only; the job row is the real record of results)."""
        return self.redis_url


def ensure_data_dir(settings: Settings) -> Path:
    """``SUMMARYBOT_DATA_DIR``, created when missing (the default is under ``$HOME``, which a
    fresh host does not have yet); :class:`ConfigError` in one line when it cannot be used."""
    path = settings.data_dir
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(
            f"SUMMARYBOT_DATA_DIR: {str(path)!r} cannot be created ({exc.strerror}); "
            f"{_HINTS['SUMMARYBOT_DATA_DIR']}"
        ) from None
    if not os.access(path, os.W_OK | os.X_OK):
        raise ConfigError(
            f"SUMMARYBOT_DATA_DIR: {str(path)!r} is not writable by this user; "
            f"{_HINTS['SUMMARYBOT_DATA_DIR']}"
        )
    return path


def known_variables() -> list[str]:
    """Every environment variable the settings root reads, core and groups."""
    core = [_core_env_name((name,)) for name in Settings.model_fields if name not in GROUPS]
    return sorted({*core, *(v for group in GROUPS.values() for v in group.variables())})


def _core_env_name(loc: tuple[int | str, ...]) -> str:
    name = str(loc[0]) if loc else "setting"
    return "SUMMARYBOT_DATA_DIR" if name == "data_dir" else name.upper()


def load_settings(**overrides: Any) -> Settings:
    """Read and validate every setting; raise :class:`SettingsError` with one line per problem.

    ``overrides`` take precedence over the environment (tests and the CLI use them): core fields
    by name, groups as objects (``discord=DiscordSettings(token=...)``).  Every group is read even
    when another fails, so one run reports every bad variable.
    """
    if "data_dir" in overrides:
        overrides["SUMMARYBOT_DATA_DIR"] = overrides.pop("data_dir")
    lines: list[str] = []
    for name, group in GROUPS.items():
        if name in overrides:
            continue
        try:
            overrides[name] = group.load()
        except SettingsError as exc:
            lines.extend(exc.lines)
            # Defaults, unvalidated, so the core fields are still checked and reported.
            overrides[name] = group.model_construct()
    try:
        settings = Settings(**overrides)
    except ValidationError as exc:
        for error in exc.errors():
            message = str(error["msg"])
            if error["loc"]:
                lines.append(problem_line(_core_env_name(error["loc"]), message, _HINTS))
            else:  # a rule across variables: its message names them
                lines.append(message.removeprefix("Value error, "))
    if lines:
        raise SettingsError(lines)
    return settings
