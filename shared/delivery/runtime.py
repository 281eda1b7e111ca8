"""Per-process delivery resources: settings, the guarded HTTP pool, the secret box, and the
Discord client (built on first use by a Discord target).

Built on first use in each process (after a fork a child builds its own, so no connection is
shared across processes) and kept for the life of the process.  Tests install their own with
:func:`install_runtime` (a resolver and TLS context of their choosing, a short retry schedule).
"""

from __future__ import annotations

import os
import random
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

from shared.crypto import SecretBox, deferred_secret_box
from shared.delivery.config import DeliverySettings, load_delivery_settings
from shared.delivery.http_sender import WebhookHttpClient
from shared.discord.client import DiscordClient
from shared.errors import ConfigError
from shared.settings import Settings

__all__ = ["DeliveryRuntime", "build_runtime", "install_runtime", "runtime_for"]


@dataclass
class DeliveryRuntime:
    """What delivery code needs besides the pipeline's :class:`Services`."""

    settings: DeliverySettings
    http: WebhookHttpClient
    box: SecretBox
    rng: random.Random = field(default_factory=random.Random)
    discord_factory: Callable[[], DiscordClient] | None = None
    _discord: DiscordClient | None = field(default=None, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def discord(self) -> DiscordClient:
        """The Discord client of this process (built on first use)."""
        with self._lock:
            if self._discord is None:
                if self.discord_factory is None:
                    raise ConfigError(
                        "DISCORD_TOKEN is not set: Discord destinations need the bot token; "
                        "set DISCORD_TOKEN for the deliver workers"
                    )
                self._discord = self.discord_factory()
            return self._discord

    def close(self) -> None:
        """Close the HTTP pool and the Discord client."""
        self.http.close()
        if self._discord is not None:
            self._discord.close()


def _discord_factory(
    settings: Settings, delivery: DeliverySettings
) -> Callable[[], DiscordClient] | None:
    token = settings.discord_token
    if token is None:
        return None

    def build() -> DiscordClient:
        import redis

        from shared.discord.config import DiscordSettings
        from shared.discord.factory import build_discord_client

        shared_limits = redis.Redis.from_url(settings.redis_url) if settings.redis_url else None
        config = DiscordSettings(token=token, api_base=delivery.discord_api_base)
        return build_discord_client(config, None, shared_limits, None)

    return build


def build_runtime(
    settings: Settings,
    delivery: DeliverySettings | None = None,
    *,
    http: WebhookHttpClient | None = None,
) -> DeliveryRuntime:
    """A runtime from the application settings (and ``DeliverySettings`` read from the env)."""
    delivery = delivery or load_delivery_settings()
    http = http or WebhookHttpClient(policy=delivery.egress_policy)
    return DeliveryRuntime(
        settings=delivery,
        http=http,
        box=deferred_secret_box(settings),
        discord_factory=_discord_factory(settings, delivery),
    )


_lock = threading.Lock()
_current: tuple[int, DeliveryRuntime] | None = None


def runtime_for(settings: Settings) -> DeliveryRuntime:
    """This process's runtime, built on first use."""
    global _current
    with _lock:
        if _current is None or _current[0] != os.getpid():
            _current = (os.getpid(), build_runtime(settings))
        return _current[1]


def install_runtime(runtime: DeliveryRuntime | None) -> None:
    """Use ``runtime`` in this process from now on (None: build from settings again)."""
    global _current
    with _lock:
        if _current is not None and _current[0] == os.getpid() and _current[1] is not runtime:
            _current[1].close()
        _current = (os.getpid(), runtime) if runtime is not None else None
