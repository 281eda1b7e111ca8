"""What every ``summarybot`` sub-command module shares: how a Typer app is built and the exit.

Every failure prints one line saying what is wrong and how to fix it, and exits with code 2
unless the caller says otherwise.
"""

from __future__ import annotations

import sys
from typing import NoReturn

import typer

__all__ = ["command_app", "fail"]


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
