"""What every ``summarybot`` sub-command module shares: its Typer app, settings and exit.

Every failure prints one line saying what is wrong and how to fix it, and exits with code 2
unless the caller says otherwise.
"""

from __future__ import annotations

import sys
from typing import NoReturn

import typer

from shared.logging import configure_from_settings
from shared.settings import ApiSettings, Settings, SettingsError, load_settings

__all__ = ["command_app", "fail", "load_cli_settings"]


def command_app(name: str, help: str) -> typer.Typer:
    """A Typer app that shows its help when called bare, with no completion and plain errors."""
    return typer.Typer(
        name=name,
        help=help,
        no_args_is_help=True,
        add_completion=False,
        pretty_exceptions_enable=False,
    )


def fail(message: str, code: int = 2) -> NoReturn:
    print(f"summarybot: {message}", file=sys.stderr)
    raise typer.Exit(code)


def load_cli_settings(*, quiet: bool = False, api: dict[str, object] | None = None) -> Settings:
    """Validated settings (exit 2 with one line per problem) and logging configured.

    ``quiet`` commands print a result for a person: their logs stay at WARNING unless
    ``LOG_LEVEL`` asks for more.  ``api`` holds command-line options that win over the
    ``api`` group's variables (validated the same way).
    """
    try:
        groups = {"api": ApiSettings.load(**api)} if api else {}
        settings = load_settings(**groups)
    except SettingsError as exc:
        for line in exc.lines:
            print(f"summarybot: {line}", file=sys.stderr)
        raise typer.Exit(2) from None
    level = settings.log_level
    # Set in the environment or in .env: either is the operator asking.
    if quiet and "log_level" not in settings.model_fields_set:
        level = "WARNING"
    configure_from_settings(settings, level=level)
    return settings
