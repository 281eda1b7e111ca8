"""Delivery's part of a worker's resources: settings, the guarded HTTP pool, the secret box,
and the process's Discord client (with the guild boundary's directory over it).

Built with the rest of a worker's resources after fork (:func:`build_runtime`) and handed to the
deliver stage in them; tests build their own (a resolver and TLS context of their choosing, a
short retry schedule).
"""

from __future__ import annotations

import random
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

from shared.crypto import SecretBox, deferred_secret_box
from shared.delivery.config import DeliverySettings
from shared.delivery.http_sender import WebhookHttpClient
from shared.discord.client import DiscordClient
from shared.errors import ConfigError
from shared.settings import Settings
from shared.tenancy import ChannelDirectory, DiscordDirectory

__all__ = ["DeliveryRuntime", "build_runtime"]


@dataclass
class DeliveryRuntime:
    """What delivery code needs besides the pipeline's :class:`Services`."""

    settings: DeliverySettings
    http: WebhookHttpClient
    box: SecretBox
    rng: random.Random = field(default_factory=random.Random)
    discord_factory: Callable[[], DiscordClient] | None = None
    _discord: DiscordClient | None = field(default=None, repr=False)
    _directory: ChannelDirectory | None = field(default=None, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def discord(self) -> DiscordClient:
        """The Discord client of this process (built on first use)."""
        with self._lock:
            return self._client_locked()

    def _client_locked(self) -> DiscordClient:
        if self._discord is None:
            if self.discord_factory is None:
                raise ConfigError(
                    "DISCORD_TOKEN is not set: Discord destinations need the bot token; "
                    "set DISCORD_TOKEN or DISCORD_TOKEN_FILE for the deliver workers"
                )
            self._discord = self.discord_factory()
        return self._discord

    def directory(self) -> ChannelDirectory:
        """The guild boundary's directory over this process's Discord client."""
        with self._lock:
            if self._directory is None:
                self._directory = DiscordDirectory(self._client_locked())
            return self._directory

    def close(self) -> None:
        """Close the HTTP pool (the Discord client belongs to whoever built it)."""
        self.http.close()


def build_runtime(
    settings: Settings,
    delivery: DeliverySettings | None = None,
    *,
    discord: DiscordClient | None = None,
    http: WebhookHttpClient | None = None,
) -> DeliveryRuntime:
    """A runtime from the application settings (``delivery`` overrides their delivery group).

    ``discord`` is the process's Discord client (None without Discord access): delivery uses
    the same one as the rest of the worker, with its shared limits and metrics.
    """
    delivery = delivery or settings.delivery
    http = http or WebhookHttpClient(policy=delivery.egress_policy)
    return DeliveryRuntime(
        settings=delivery,
        http=http,
        box=deferred_secret_box(settings),
        discord_factory=(lambda: discord) if discord is not None else None,
    )
