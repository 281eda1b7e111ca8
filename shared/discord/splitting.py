"""Split long text across messages and embeds on sensible boundaries.

Text is cut at the last paragraph break that fits, else a line break, else the end of a
sentence, else a space, and only as a last resort inside a word.  A cut inside a fenced code
block closes the fence and reopens it (with its language) in the next part, so every part
renders on its own.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from shared.discord.message_limits import (
    CONTENT_LIMIT,
    EMBED_DESCRIPTION_LIMIT,
    EMBED_TOTAL_LIMIT,
    MAX_EMBEDS,
    embed_length,
)
from shared.discord.models import Embed

__all__ = ["pack_embeds", "split_content", "split_embeds", "split_text"]

_FENCE = re.compile(r"^```(\S*)", re.MULTILINE)
_SENTENCE_END = re.compile(r"[.!?…][)\]\"']?\s")


def _cut_point(text: str, limit: int) -> int:
    """Index where to cut ``text`` so that ``text[:i]`` fits in ``limit``."""
    window = text[: limit + 1]
    for sep in ("\n\n", "\n"):
        at = window.rfind(sep, 0, limit)
        if at > limit // 4:
            return at + len(sep)
    ends = [m.end() for m in _SENTENCE_END.finditer(window) if m.end() <= limit]
    if ends and ends[-1] > limit // 4:
        return ends[-1]
    at = window.rfind(" ", 0, limit)
    if at > limit // 4:
        return at + 1
    return limit


def _open_fence(text: str) -> str | None:
    """The language tag of a code fence left open at the end of ``text`` (``""`` if none)."""
    fences = _FENCE.findall(text)
    if len(fences) % 2 == 1:
        return str(fences[-1])
    return None


def split_text(text: str, *, limit: int) -> list[str]:
    """Split ``text`` into parts of at most ``limit`` characters (see module docstring)."""
    if limit < 20:
        raise ValueError("limit must be at least 20 characters to leave room for code fences")
    parts: list[str] = []
    rest = text
    reopen = ""
    while rest:
        rest = reopen + rest
        if len(rest) <= limit:
            parts.append(rest)
            break
        budget = limit - 4  # room for a closing "\n```"
        cut = max(_cut_point(rest, budget), len(reopen) + 1)
        head, rest = rest[:cut], rest[cut:]
        lang = _open_fence(head)
        if lang is not None:
            head = head.rstrip("\n") + "\n```"
            reopen = f"```{lang}\n" if len(lang) < limit // 4 - 4 else "```\n"
        else:
            reopen = ""
        if head.strip():
            parts.append(head.rstrip() if lang is None else head)
        rest = rest.lstrip("\n") if lang is None else rest
    return parts


def split_content(text: str, *, limit: int = CONTENT_LIMIT) -> list[str]:
    """Split message content into parts Discord accepts (2000 characters each by default)."""
    return split_text(text, limit=limit)


def split_embeds(
    text: str,
    *,
    title: str | None = None,
    color: int | None = None,
    limit: int = EMBED_DESCRIPTION_LIMIT,
) -> list[Embed]:
    """Embeds carrying ``text`` as descriptions; only the first one has the title."""
    parts = split_text(text, limit=limit) or [""]
    return [
        Embed(title=title if i == 0 else None, description=part or None, color=color)
        for i, part in enumerate(parts)
    ]


def pack_embeds(embeds: Sequence[Embed]) -> list[list[Embed]]:
    """Group embeds, in order, into messages of at most 10 embeds and 6000 characters each."""
    groups: list[list[Embed]] = []
    current: list[Embed] = []
    size = 0
    for embed in embeds:
        length = embed_length(embed.to_json())
        if length > EMBED_TOTAL_LIMIT:
            raise ValueError(
                f"one embed holds {length} characters, more than Discord's {EMBED_TOTAL_LIMIT} "
                "per message; split its description with split_embeds first"
            )
        if current and (len(current) == MAX_EMBEDS or size + length > EMBED_TOTAL_LIMIT):
            groups.append(current)
            current, size = [], 0
        current.append(embed)
        size += length
    if current:
        groups.append(current)
    return groups
