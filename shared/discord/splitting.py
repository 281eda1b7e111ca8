"""Split long text across messages and embeds on sensible boundaries.

Text is cut at the last paragraph break that fits, else a line break, else the end of a
sentence, else a space, and only as a last resort inside a word.  Wherever it falls, a cut is
never made inside a Markdown link (``[text](url)``, such as a summary's citation
``[[1]](https://discord.com/channels/...)``): it moves to before the link, which then starts
the next part whole.  A cut inside a fenced code block closes the fence and reopens it (with
its language) in the next part, so every part renders on its own.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence

from shared.discord.message_limits import (
    CONTENT_LIMIT,
    EMBED_DESCRIPTION_LIMIT,
    EMBED_TOTAL_LIMIT,
    MAX_EMBEDS,
    embed_length,
)
from shared.discord.models import Embed

__all__ = ["cluster_floor", "pack_embeds", "split_content", "split_embeds", "split_text"]

_FENCE = re.compile(r"^```(\S*)", re.MULTILINE)
# Chinese and Japanese end a sentence with a full-width mark and no space after it.
_SENTENCE_END = re.compile(r"[.!?…][)\]\"']?\s|[。！？；][」』）)]?")
_ZWJ = "\u200d"
# A Markdown link: its text may hold one level of brackets (``[[1]](url)``), its URL no space.
_LINK = re.compile(r"\[(?:[^\[\]\n]|\[[^\[\]\n]*\])*\]\([^()\s]*\)")
# How far before a cut a link that spans it may start (a Discord URL is at most 2048 long).
_LINK_REACH = 2200


def _extends_cluster(char: str) -> bool:
    """True for a character that belongs to the character before it on screen: a combining
    mark, a variation selector, an emoji skin tone, a tag (subdivision flags) or a ZWJ."""
    point = ord(char)
    return (
        unicodedata.category(char) in ("Mn", "Me", "Mc")
        or char == _ZWJ
        or 0xFE00 <= point <= 0xFE0F
        or 0x1F3FB <= point <= 0x1F3FF
        or 0xE0020 <= point <= 0xE007F
        or 0xE0100 <= point <= 0xE01EF
    )


def _regional(char: str) -> bool:
    return 0x1F1E6 <= ord(char) <= 0x1F1FF


def cluster_floor(text: str, at: int) -> int:
    """The last place at or before ``at`` where ``text`` may be cut without breaking what
    shows as one character: an accented letter, an emoji with its skin tone or ZWJ family,
    a flag (two regional indicators).  0 when there is none."""
    while 0 < at < len(text):
        if _extends_cluster(text[at]) or text[at - 1] == _ZWJ:
            at -= 1
            continue
        if _regional(text[at]) and _regional(text[at - 1]):
            run = at
            while run > 0 and _regional(text[run - 1]):
                run -= 1
            if (at - run) % 2 == 1:  # inside a pair
                at -= 1
                continue
        break
    return at


def _outside_links(text: str, at: int) -> int:
    """``at``, or the start of the Markdown link it would cut in two (when that is not 0)."""
    for link in _LINK.finditer(text, max(0, at - _LINK_REACH), at + _LINK_REACH):
        if link.start() < at < link.end():
            return link.start() or at
        if link.start() >= at:
            break
    return at


def _cut_point(text: str, limit: int) -> int:
    """Index where to cut ``text`` so that ``text[:i]`` fits in ``limit``, outside any link."""
    return _outside_links(text, _best_cut(text, limit))


def _best_cut(text: str, limit: int) -> int:
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
    return cluster_floor(text, limit) or limit


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
