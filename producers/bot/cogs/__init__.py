"""The bot's command handlers, one cog per area."""

__all__: list[str] = []
