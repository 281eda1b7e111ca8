"""Render a summary as Discord embeds: one per section, a colour per format, cited jump links.

Citations are numbered in order of first use, and every number is a link to the cited message
(``[1](https://discord.com/channels/...)``); the summary's own text is escaped
(:func:`~shared.summarize.render.escape_markdown`), so no link in it can pass for one.
Participants and coverage (messages read and skipped, time range, backend) go in the footer of
the last embed.  Long sections continue in further embeds; embeds are packed into messages of
at most 10 embeds and 6,000 characters, so every message is within Discord's limits (the
adapter checks them again before sending).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from shared.discord.message_limits import (
    EMBED_DESCRIPTION_LIMIT,
    EMBED_FOOTER_LIMIT,
    EMBED_TITLE_LIMIT,
    EMBED_TOTAL_LIMIT,
    NONCE_LIMIT,
    embed_length,
)
from shared.discord.models import AllowedMentions, Embed, EmbedFooter, Message
from shared.discord.splitting import cluster_floor, pack_embeds, split_text
from shared.summarize.content import SummaryContent, SummaryFormat
from shared.summarize.render import escape_markdown, summary_sections, summary_title

__all__ = ["FORMAT_COLOURS", "render_embeds", "render_messages", "short_text"]

#: Embed colour per summary format (Discord's palette).
FORMAT_COLOURS: dict[SummaryFormat, int] = {
    SummaryFormat.BRIEF: 0x5865F2,
    SummaryFormat.STRUCTURED: 0x57F287,
    SummaryFormat.DETAILED: 0xFEE75C,
    SummaryFormat.TECHNICAL: 0xEB459E,
}
_DEGRADED_COLOUR = 0x99AAB5


class _Citations:
    """Numbers cited messages in order of first use and renders them as jump links."""

    def __init__(self, content: SummaryContent) -> None:
        self._content = content
        self.order: dict[str, int] = {}

    def links(self, ids: Sequence[str]) -> str:
        parts = []
        for message_id in ids:
            number = self.order.setdefault(message_id, len(self.order) + 1)
            cite = self._content.citations.get(message_id)
            parts.append(
                f"[[{number}]]({cite.jump_url})" if cite and cite.jump_url else f"[{number}]"
            )
        return "".join(parts)


def short_text(text: str, limit: int) -> str:
    """``text`` cut to ``limit`` characters with an ellipsis."""
    if len(text) <= limit:
        return text
    return text[: cluster_floor(text, limit - 1)].rstrip() + "…"


def _when(value: datetime | None) -> str:
    return f"{value:%Y-%m-%d %H:%M}" if value is not None else "?"


def _footer(content: SummaryContent, cited: int, duration_seconds: float | None) -> str:
    cov = content.coverage
    span = "no messages" if cov.start is None else f"{_when(cov.start)} → {_when(cov.end)} UTC"
    coverage = (
        f"{cov.messages_total:,} messages read, {cov.messages_skipped:,} skipped · {span} · "
        f"{cited} cited · {content.backend}"
    )
    if duration_seconds is not None:
        coverage += f" · {duration_seconds:.1f} s"
    names = [f"{p.name} ({p.messages})" for p in content.participants]
    budget = EMBED_FOOTER_LIMIT - len(coverage) - 20
    shown: list[str] = []
    for name in names:
        if len(", ".join([*shown, name])) > budget:
            break
        shown.append(name)
    people = ", ".join(shown)
    if len(shown) < len(names):
        people += f" and {len(names) - len(shown)} more"
    return f"Participants: {people}\n{coverage}" if names else coverage


def render_embeds(content: SummaryContent, *, duration_seconds: float | None = None) -> list[Embed]:
    """Embeds of a summary, in reading order (see module docstring)."""
    colour = _DEGRADED_COLOUR if content.degraded else FORMAT_COLOURS[content.format]
    citations = _Citations(content)
    title = summary_title(content)
    if content.degraded:
        title += " · offline fallback"
    embeds = [
        Embed(title=short_text(title, EMBED_TITLE_LIMIT), description=part, color=colour)
        if index == 0
        else Embed(description=part, color=colour)
        for index, part in enumerate(
            split_text(
                escape_markdown(content.overview) or "(no overview)",
                limit=EMBED_DESCRIPTION_LIMIT,
            )
        )
    ]
    for section, rows in summary_sections(content, strong="**", escape=escape_markdown):
        text = "\n".join(f"• {row} {citations.links(ids)}" for row, ids in rows)
        for index, part in enumerate(split_text(text, limit=EMBED_DESCRIPTION_LIMIT)):
            name = section if index == 0 else f"{section} (continued)"
            embeds.append(
                Embed(title=short_text(name, EMBED_TITLE_LIMIT), description=part, color=colour)
            )
    last = embeds[-1]
    footer = EmbedFooter(
        text=short_text(_footer(content, len(citations.order), duration_seconds), 2048)
    )
    closing = Embed(
        title=last.title,
        description=last.description,
        color=last.color,
        footer=footer,
        timestamp=content.coverage.end,
    )
    if embed_length(closing.to_json()) <= EMBED_TOTAL_LIMIT:
        embeds[-1] = closing
    else:
        embeds.append(
            Embed(title="Coverage", color=colour, footer=footer, timestamp=content.coverage.end)
        )
    return embeds


def render_messages(
    content: SummaryContent,
    *,
    nonce_prefix: str | None = None,
    duration_seconds: float | None = None,
) -> list[Message]:
    """The messages that carry a summary.

    With ``nonce_prefix`` (at most 22 characters) part ``i`` gets the nonce
    ``prefix + f"{i:03d}"``, so a retried send of the same part is not posted twice.
    """
    if nonce_prefix is not None and len(nonce_prefix) > NONCE_LIMIT - 3:
        raise ValueError(f"nonce_prefix is longer than {NONCE_LIMIT - 3} characters")
    groups = pack_embeds(render_embeds(content, duration_seconds=duration_seconds))
    messages = []
    for index, group in enumerate(groups):
        nonce = f"{nonce_prefix}{index:03d}" if nonce_prefix is not None else None
        messages.append(
            Message(embeds=tuple(group), allowed_mentions=AllowedMentions.none(), nonce=nonce)
        )
    return messages
