"""What erasing a member does to a stored summary (one implementation for API and workers).

The participant entry is removed; every citation whose author is that member (by the display
name recorded with the participant, or an ``author_id`` when a citation has one) is removed; their
message ids are removed from every cited item, and an item left citing nothing (it was drawn only
from their messages) is removed with it; their "contributions" section is removed; an action item
they owned loses its owner; and their display name is replaced by ``[erased member]`` wherever it
appears in the summary's text.  Message counts in ``coverage`` are aggregate numbers and stay.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

__all__ = ["ERASED_NAME", "erase_from_content"]

ERASED_NAME = "[erased member]"

# Keys whose string values are prose a name may appear in.
_TEXT_KEYS = frozenset({"overview", "text", "summary", "title", "task", "due"})


def _name_pattern(names: Iterable[str], user_id: str) -> re.Pattern[str]:
    """Their mentions (``<@id>``, ``<@!id>``) and display names as words in text."""
    usable = sorted({n for n in names if len(n.strip()) >= 2}, key=len, reverse=True)
    alternatives = [rf"<@!?{re.escape(user_id)}>"]
    if usable:
        names_re = "|".join(re.escape(n) for n in usable)
        alternatives.append(rf"(?<!\w)(?:@)?(?:{names_re})(?!\w)")
    return re.compile("|".join(alternatives))


def _prune(node: Any, erased_ids: set[str], pattern: re.Pattern[str]) -> Any:
    """Remove erased message ids (and items left with none) and scrub names in text."""
    if isinstance(node, list):
        kept = []
        for item in node:
            if isinstance(item, dict) and isinstance(item.get("message_ids"), list):
                ids = [m for m in item["message_ids"] if str(m) not in erased_ids]
                if not ids:
                    continue
                item = {**item, "message_ids": ids}
            kept.append(_prune(item, erased_ids, pattern))
        return kept
    if isinstance(node, dict):
        result = {}
        for key, value in node.items():
            if key in _TEXT_KEYS and isinstance(value, str):
                result[key] = pattern.sub(ERASED_NAME, value)
            else:
                result[key] = _prune(value, erased_ids, pattern)
        return result
    return node


def erase_from_content(content: dict[str, Any], user_id: str) -> dict[str, Any] | None:
    """The summary content without the member, or None when they do not appear in it."""
    participants = content.get("participants") or []
    mine = [p for p in participants if isinstance(p, dict) and str(p.get("id")) == user_id]
    names = {str(p["name"]) for p in mine if p.get("name")}
    citations = content.get("citations") or {}
    erased_ids = {
        str(message_id)
        for message_id, citation in citations.items()
        if isinstance(citation, dict)
        and (citation.get("author") in names or str(citation.get("author_id")) == user_id)
    }
    pattern = _name_pattern(names, user_id)
    mentioned = any(isinstance(v, str) and pattern.search(v) for v in _texts(content))
    if not mine and not erased_ids and not mentioned:
        return None
    out = dict(content)
    out["participants"] = [p for p in participants if p not in mine]
    out["citations"] = {k: v for k, v in citations.items() if str(k) not in erased_ids}
    if isinstance(out.get("contributions"), list):
        out["contributions"] = [
            c
            for c in out["contributions"]
            if not (isinstance(c, dict) and c.get("participant") in names)
        ]
    if isinstance(out.get("action_items"), list):
        out["action_items"] = [
            {**a, "owner": None} if isinstance(a, dict) and a.get("owner") in names else a
            for a in out["action_items"]
        ]
    for key, value in list(out.items()):
        if key in ("participants", "citations", "coverage"):
            continue
        if key in _TEXT_KEYS and isinstance(value, str):
            out[key] = pattern.sub(ERASED_NAME, value)
        elif isinstance(value, list | dict):
            out[key] = _prune(value, erased_ids, pattern)
    return out


def _texts(node: Any) -> Iterable[str]:
    """Every prose string of a summary document."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key in _TEXT_KEYS and isinstance(value, str):
                yield value
            elif key not in ("citations", "coverage"):
                yield from _texts(value)
    elif isinstance(node, list):
        for item in node:
            yield from _texts(item)
