"""One validated settings object for every process, read from the environment and ``.env``.

Build it once at an entry point with :func:`load_settings` and pass it on; nothing reads the
environment at import time.  Every invalid value is reported as one line naming the variable,
what is wrong and how to fix it (:class:`SettingsError`), and secrets are ``SecretStr`` so they
never reach a log or a traceback.

With nothing set, the embedded default applies: SQLite under ``SUMMARYBOT_DATA_DIR``, an
in-process broker and worker, the offline extractive summarizer.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import AliasChoices, Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from shared.discord.config import DiscordSettings
from shared.errors import ConfigError

__all__ = ["Settings", "SettingsError", "load_settings"]

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
    "SECRET_KEYS": "give comma-separated Fernet keys, newest first",
    "DISCORD_SETTINGS": "set DISCORD_TOKEN or DISCORD_TOKEN_FILE (not both); record/replay modes "
    "need DISCORD_RECORDING_PATH",
}


class SettingsError(ConfigError):
    """Raised by :func:`load_settings`; ``lines`` holds one line per bad variable."""

    def __init__(self, lines: list[str]) -> None:
        super().__init__("\n".join(lines))
        self.lines = lines


class Settings(BaseSettings):
    """Every setting the processes read.  Variable names are the upper-cased field names."""

    model_config = SettingsConfigDict(
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
        case_sensitive=False,
        validate_default=True,
    )

    database_url: str | None = Field(
        default=None, description="SQLAlchemy URL of the system of record"
    )
    redis_url: str | None = Field(default=None, description="Redis for the broker and caches")
    data_dir: Path = Field(
        default_factory=lambda: Path.home() / ".local" / "share" / "summarybot",
        validation_alias=AliasChoices("SUMMARYBOT_DATA_DIR", "data_dir"),
        description="Where the embedded SQLite database lives",
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

    secret_keys: Annotated[list[SecretStr], NoDecode] = Field(
        default_factory=list, description="Fernet keys for secrets at rest, newest first"
    )

    openai_api_key: SecretStr | None = None
    llm_base_url: str | None = None
    discord_token: SecretStr | None = None
    discord_token_file: Path | None = None
    discord_api_base: str = "https://discord.com/api/v10"
    discord_mode: Literal["live", "record", "replay"] = "live"
    discord_recording_path: Path | None = None

    @field_validator("secret_keys", mode="before")
    @classmethod
    def _split_keys(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper_level(cls, value: Any) -> Any:
        return value.upper() if isinstance(value, str) else value

    @field_validator("database_url", "redis_url", "llm_base_url", mode="before")
    @classmethod
    def _blank_is_unset(cls, value: Any) -> Any:
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("database_url")
    @classmethod
    def _check_database_url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        scheme = urlsplit(value).scheme
        if scheme not in _DB_SCHEMES:
            raise ValueError(f"scheme {scheme or '(none)'!r} is not supported")
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
        if parts.scheme != "unix" and not parts.hostname:
            raise ValueError("it has no host")
        return value

    @property
    def discord_configured(self) -> bool:
        """True when the Discord adapter can be used (a token, or replaying a recording)."""
        return bool(self.discord_token or self.discord_token_file or self.discord_mode == "replay")

    def discord_settings(self) -> DiscordSettings:
        """The Discord adapter's settings, from the ``DISCORD_*`` variables."""
        return DiscordSettings(
            token=self.discord_token,
            token_file=self.discord_token_file,
            api_base=self.discord_api_base,
            mode=self.discord_mode,
            recording_path=self.discord_recording_path,
        )

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


def _env_name(loc: tuple[int | str, ...], title: str) -> str:
    name = str(loc[0]) if loc else "setting"
    if title == "DiscordSettings":
        return "DISCORD_SETTINGS" if name == "setting" else f"DISCORD_{name.upper()}"
    return "SUMMARYBOT_DATA_DIR" if name == "data_dir" else name.upper()


def load_settings(**overrides: Any) -> Settings:
    """Read and validate settings; raise :class:`SettingsError` with one line per problem.

    ``overrides`` take precedence over the environment (tests and the CLI use them).
    """
    try:
        settings = Settings(**overrides)
        settings.discord_settings()
        return settings
    except ValidationError as exc:
        lines = []
        for error in exc.errors():
            env = _env_name(error["loc"], exc.title)
            what = str(error["msg"]).removeprefix("Value error, ")
            hint = _HINTS.get(env)
            lines.append(f"{env}: {what}" + (f"; {hint}" if hint else ""))
        raise SettingsError(lines) from None
