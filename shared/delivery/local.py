"""Targets on this machine: the terminal of the delivering process, and files."""

from __future__ import annotations

import os
import tempfile
import threading
from pathlib import Path
from typing import TextIO

from shared.errors import PermanentError
from shared.jobs import FileTarget, TerminalTarget
from shared.summarize.content import SummaryContent
from shared.summarize.render import (
    SummaryDocument,
    render_json,
    render_markdown,
    render_text,
)

__all__ = ["render_for", "write_file", "write_terminal"]

_console_lock = threading.Lock()


def render_for(render: str, content: SummaryContent, document: SummaryDocument) -> str:
    """Render ``content`` as ``text``, ``markdown`` or ``json`` (the full document)."""
    if render == "json":
        return render_json(document)
    if render == "markdown":
        return render_markdown(content, duration_seconds=document.duration_seconds)
    return render_text(content, duration_seconds=document.duration_seconds)


def write_terminal(target: TerminalTarget, document: SummaryDocument, stream: TextIO) -> str:
    """Print the summary on ``stream``; one summary is never interleaved with another."""
    text = render_for(target.render, document.summary, document)
    with _console_lock:
        stream.write(text)
        stream.flush()
    return "terminal"


def write_file(target: FileTarget, document: SummaryDocument) -> str:
    """Write the summary to ``target.path`` atomically (temporary file, then rename)."""
    path = Path(target.path)
    text = render_for(target.render, document.summary, document)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.replace(tmp, path)
    except OSError as exc:
        raise PermanentError(
            f"cannot write {path}: {exc.strerror or exc}",
            user_message=f"cannot write the summary to {path}: {exc.strerror or exc}; "
            "choose a writable path",
        ) from exc
    return str(path)
