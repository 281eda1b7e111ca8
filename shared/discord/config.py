"""Settings of the Discord adapter: the ``discord`` group of the settings root.

Every field is read from ``DISCORD_<FIELD>`` (``DISCORD_TOKEN``, ``DISCORD_TOKEN_FILE``,
``DISCORD_API_BASE`` ...) like every other group (:mod:`shared.settings_group`), and handed to
:func:`shared.discord.factory.build_discord_client`.  Every invalid value fails validation with
a message that says what is wrong and how to fix it.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import SettingsConfigDict

from shared.discord.rest import DEFAULT_USER_AGENT
from shared.settings_group import SettingsGroup

__all__ = ["DiscordSettings"]

#: Discord's documented form ``DiscordBot ($url, $versionNumber)``; more may follow the ``)``.
#: The comma is optional: discord.py has sent ``DiscordBot (url version)`` for years, and
#: Discord accepts it.
_BOT_AGENT = re.compile(r"DiscordBot \((?P<url>[^,()\s]*)(?:, ?| )(?P<version>[^()]*)\)(?: .*)?")
#: What an HTTP header can carry (printable ASCII; no CR/LF to end the header early).
_HEADER_TEXT = re.compile(r"[\x20-\x7e]+")


def _user_agent_problem(value: str) -> str | None:
    """What is wrong with ``value`` as the bot's User-Agent, or None when Discord accepts it."""
    if not value.strip():
        return "it is empty"
    if not _HEADER_TEXT.fullmatch(value):
        return f"{value!r} holds characters an HTTP header cannot carry"
    if value.startswith("Mozilla/"):
        return (
            f"{value!r} is a browser's User-Agent; Discord's edge blocks browser-like agents on "
            "the bot API (403, code 40333)"
        )
    match = _BOT_AGENT.fullmatch(value)
    if match is None:
        return f"{value!r} is not of Discord's required form 'DiscordBot ($url, $versionNumber)'"
    url, version = match.group("url").strip(), match.group("version").strip()
    if not re.fullmatch(r"https?://\S+", url):
        return f"{value!r} names no http(s) URL of the bot before the version (got {url!r})"
    if not version or " " in version:
        return f"{value!r} has no one-word version after the URL (got {version!r})"
    return None


#: The version at the end of an API base URL's path.
_API_VERSION = re.compile(r"/v(\d+)$")


class DiscordSettings(SettingsGroup):
    """Everything the Discord adapter can be told.

    ``mode``: ``live`` talks to Discord; ``record`` also writes every exchange (redacted) to
    ``recording_path``; ``replay`` answers from that file without any network.
    """

    model_config = SettingsConfigDict(env_prefix="DISCORD_")

    token: SecretStr | None = Field(default=None, description="bot token")
    token_file: Path | None = Field(
        default=None, description="file holding the bot token, re-read when it changes"
    )
    api_base: str = "https://discord.com/api/v10"
    mode: Literal["live", "record", "replay"] = "live"
    recording_path: Path | None = None
    user_agent: str = DEFAULT_USER_AGENT
    request_timeout_s: float = Field(default=10.0, gt=0, le=300)
    max_wait_s: float = Field(
        default=30.0, ge=0, le=3600, description="longest a call waits for rate limits"
    )
    max_retries: int = Field(default=3, ge=0, le=10)
    backoff_base_s: float = Field(default=0.5, ge=0, le=60)
    global_limit: int = Field(default=50, ge=1, le=100_000, description="requests per second")
    global_margin: float = Field(default=0.06, ge=0, lt=1)
    global_burst: int = Field(
        default=5, ge=1, le=100_000, description="requests that may leave at once after a pause"
    )
    bucket_safety_ms: float = Field(
        default=0.0,
        ge=0,
        le=5000,
        description="added to every bucket reset; 0 uses Discord's Reset-After exactly",
    )
    invalid_request_limit: int = Field(
        default=2500, ge=1, le=9000, description="breaker threshold per 10 minutes (ban: 10,000)"
    )
    ban_backoff_s: float = Field(default=900.0, ge=1, le=86400)
    key_prefix: str = Field(default="{drl}", min_length=1)

    @field_validator("api_base")
    @classmethod
    def _check_api_base(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError(
                f"{value!r} is not an http(s) URL; use https://discord.com/api/v10 "
                "(or the fake server's URL in tests)"
            )
        # Without a version Discord still answers as v6 (decommissioned), where retry_after
        # counts milliseconds and threads do not exist: a 1.5 s 429 would block a bucket for
        # 25 minutes.  This adapter speaks v9 and v10.
        version = _API_VERSION.search(parts.path.rstrip("/"))
        if version is None or int(version.group(1)) not in (9, 10):
            raise ValueError(
                f"{value!r} does not end in the API version this adapter speaks; use "
                "https://discord.com/api/v10 (v9 works too)"
            )
        return value.rstrip("/")

    @field_validator("user_agent")
    @classmethod
    def _check_user_agent(cls, value: str) -> str:
        problem = _user_agent_problem(value)
        if problem is not None:
            raise ValueError(
                f"{problem}; set DISCORD_USER_AGENT to 'DiscordBot (<url of the bot>, "
                f"<version>)', e.g. {DEFAULT_USER_AGENT!r}, or unset it to send that default"
            )
        return value

    @property
    def configured(self) -> bool:
        """True when the adapter can be used (a token, or replaying a recording)."""
        return bool(self.token or self.token_file or self.mode == "replay")

    @model_validator(mode="after")
    def _consistent(self) -> DiscordSettings:
        if self.token is not None and self.token_file is not None:
            raise ValueError(
                "DISCORD_TOKEN_FILE: DISCORD_TOKEN is set as well; keep one of the two"
            )
        if self.mode in ("record", "replay") and self.recording_path is None:
            raise ValueError(
                f"DISCORD_RECORDING_PATH: not set, and DISCORD_MODE {self.mode!r} needs it "
                "(the .jsonl file of the recording)"
            )
        return self
