"""Named delivery routes: ``"alerts"`` → a channel, a thread, a user's DMs or a webhook.

Callers deliver to a route name; which channel it means is configuration
(:attr:`DiscordSettings.routes`).  An unknown name goes to the configured fallback route and
is logged (so a typo in a digest schedule still delivers somewhere visible); with no fallback
it is an error that names the known routes.
"""

from __future__ import annotations

from collections.abc import Mapping

import structlog

from shared.discord.client import DiscordClient
from shared.discord.config import DiscordSettings, RouteTarget
from shared.discord.models import Message
from shared.discord.objects import ReceivedMessage, WebhookRef
from shared.errors import ConfigError

__all__ = ["ChannelRouter"]

log = structlog.get_logger(__name__)


class ChannelRouter:
    """Resolves route names to targets and sends messages to them."""

    def __init__(self, routes: Mapping[str, RouteTarget], *, fallback: str | None = None) -> None:
        if fallback is not None and fallback not in routes:
            raise ConfigError(f"fallback route {fallback!r} is not one of {sorted(routes)}")
        self.routes = dict(routes)
        self.fallback = fallback

    @classmethod
    def from_settings(cls, settings: DiscordSettings) -> ChannelRouter:
        """The router described by ``settings.routes`` and ``settings.fallback_route``."""
        return cls(settings.routes, fallback=settings.fallback_route)

    def __repr__(self) -> str:
        return f"ChannelRouter(routes={sorted(self.routes)}, fallback={self.fallback!r})"

    def resolve(self, name: str) -> tuple[str, RouteTarget]:
        """The route actually used for ``name`` (its own, or the fallback) and its target."""
        target = self.routes.get(name)
        if target is not None:
            return name, target
        if self.fallback is None:
            raise ConfigError(
                f"unknown Discord route {name!r}; known routes are {sorted(self.routes)}; "
                "add it to the routes setting or configure fallback_route"
            )
        log.warning("discord.route_unknown", route=name, fallback=self.fallback)
        return self.fallback, self.routes[self.fallback]

    def send(self, client: DiscordClient, name: str, message: Message) -> ReceivedMessage | None:
        """Deliver ``message`` to the route ``name`` (or the fallback)."""
        _, target = self.resolve(name)
        if target.kind == "webhook":
            assert target.webhook_url is not None
            ref = WebhookRef.from_url(target.webhook_url)
            return client.execute_webhook(ref, message, thread_id=target.thread_id)
        assert target.id is not None
        if target.kind == "thread":
            return client.send_to_thread(target.id, message)
        if target.kind == "dm":
            return client.send_dm(target.id, message)
        return client.send_message(target.id, message)
