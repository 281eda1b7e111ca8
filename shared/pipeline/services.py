"""What the pipeline stages need, built once per process and passed in.

``workers.resources`` builds a :class:`Services` in each worker process (and the CLI builds one
for the embedded worker thread); stage functions receive it explicitly and never build clients
themselves.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Protocol, TextIO

from sqlalchemy.orm import Session, sessionmaker

from shared.cache import MessageCache
from shared.discord.client import DiscordClient
from shared.domain.messages import ChannelInfo, ChatMessage
from shared.jobs import Enqueuer
from shared.settings import Settings
from shared.summarize.content import SummaryContent, SummaryFormat
from shared.summarize.llm.backend import LLMBackend

__all__ = ["Services", "Summarizer"]


class Summarizer(Protocol):
    """A summarization backend (the offline extractive one, or an LLM)."""

    name: str

    def summarize(
        self,
        messages: Sequence[ChatMessage],
        channel: ChannelInfo,
        *,
        format: SummaryFormat,
        language: str | None = None,
        skipped: int = 0,
    ) -> SummaryContent:
        """Summarize ``messages`` of ``channel`` in the requested format."""


def _utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass
class Services:
    """Per-process resources of the pipeline.

    ``llm`` is set when an LLM endpoint is configured: the summarize stage then runs the
    map/reduce pipeline of :mod:`shared.pipeline.llm.mapreduce`, and ``summarizer`` (the offline
    extractive backend) serves empty windows and the degraded fallback.
    """

    settings: Settings
    session_factory: sessionmaker[Session]
    cache: MessageCache
    enqueuer: Enqueuer
    summarizer: Summarizer
    console: TextIO
    clock: Callable[[], datetime] = field(default=_utcnow)
    llm: LLMBackend | None = None
    discord: DiscordClient | None = None
