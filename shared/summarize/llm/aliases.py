"""Message aliases a model writes inside text: found, turned into citations, removed from the text.

Models asked to cite in ``message_ids`` often cite inline as well, or instead: "the build was
fixed [m22]", "(m3, m5)", "see m12", a copied transcript header "[m17 14:03 alice]".  A reader
must never see those.  :func:`extract_aliases` takes out every bracketed citation group and
returns the aliases it named; :func:`scrub_bare` handles aliases written without brackets, which
needs the transcript to tell an alias ("m12") from ordinary text ("m5 screws").  Both leave
the text tidy (no doubled spaces, no space before punctuation, no empty brackets).
"""

from __future__ import annotations

import re
from collections.abc import Callable

from shared.summarize.transcript import normalize_alias

__all__ = ["extract_aliases", "has_alias", "scrub_bare", "tidy"]

_ALIAS = r"[mM]0*\d{1,7}"
_INSIDE = r"[^\[\]()【】（）]{0,160}?"
_CONTENT = r"\s*(" + _INSIDE + r"\b" + _ALIAS + r"\b" + _INSIDE + r")\s*"
#: A bracket or parenthesis group (not nested) that mentions at least one alias.  Brackets must
#: match: "(m1 14:00 bob]" is a header imitation the transcript defused, not a citation.
_GROUP = re.compile(
    r"\[" + _CONTENT + r"\]|\(" + _CONTENT + r"\)|【" + _CONTENT + r"】|（" + _CONTENT + r"）"
)
_ALIAS_TOKEN = re.compile(
    r"(?<![\w@#/.-])(" + _ALIAS + r")(?:\s*[-–—]\s*(" + _ALIAS + r"))?(?![\w-])"
)
_BARE = re.compile(r"(?<![\w@#/.\-\[(])m0*(\d{1,7})(?![\w\-\])])")
#: What may stand around aliases in a citation group: separators, a few words, times.
_FILLER = re.compile(
    r"(?i)\b(?:see|cf|also|and|msgs?|messages?|refs?|sources?|via|in|from|e\.g|i\.e)\b"
    r"|\d{1,2}:\d{2}|[,;:&/+.↩\s–—-]"
)
_RANGE_LIMIT = 30


def has_alias(text: str) -> bool:
    """True when ``text`` mentions something shaped like an alias."""
    return _ALIAS_TOKEN.search(text) is not None


def _aliases_in(text: str) -> list[str]:
    found: list[str] = []
    for match in _ALIAS_TOKEN.finditer(text):
        first = normalize_alias(match.group(1))
        if first is None:
            continue
        last = normalize_alias(match.group(2)) if match.group(2) else None
        if last is None:
            found.append(first)
            continue
        low, high = int(first[1:]), int(last[1:])
        if low <= high and high - low < _RANGE_LIMIT:
            found.extend(f"m{n}" for n in range(low, high + 1))
        else:
            found.extend([first, last])
    return found


def _is_citation(content: str) -> bool:
    """A group is a citation when it starts with an alias, or holds nothing but aliases."""
    stripped = content.strip()
    start = _ALIAS_TOKEN.match(stripped)
    if start is not None:
        return True
    rest = _FILLER.sub(" ", _ALIAS_TOKEN.sub(" ", stripped))
    return not rest.strip()


def tidy(text: str) -> str:
    """Whitespace and punctuation left right after something was cut out of ``text``."""
    text = re.sub(r"[\[(]\s*[\])]", "", text)
    text = re.sub(r"\s+([,.;:!?])", r"\1", text)
    text = re.sub(r"([,;:])(?=[,.;:!?])", "", text)
    text = " ".join(text.split())
    return text.strip(" ,;:-–—")


def extract_aliases(text: str) -> tuple[str, list[str]]:
    """``text`` without its bracketed citation groups, and the aliases they named (in order).

    ``"fixed it [m22] (see m3-m5)"`` → ``("fixed it", ["m22", "m3", "m4", "m5"])``.  Groups
    that merely mention an alias among other words ("(as m5 said)") keep their words; only the
    alias goes.
    """
    found: list[str] = []

    def group(match: re.Match[str]) -> str:
        content = next(g for g in match.groups() if g is not None)
        aliases = _aliases_in(content)
        if not aliases:
            return match.group(0)
        found.extend(aliases)
        if _is_citation(content):
            return " "
        opening, closing = match.group(0)[0], match.group(0)[-1]
        return f"{opening}{tidy(_ALIAS_TOKEN.sub(' ', content))}{closing}"

    cleaned = _GROUP.sub(group, text)
    if not found:
        return text, []
    return tidy(cleaned), list(dict.fromkeys(found))


def scrub_bare(
    text: str, *, resolve: Callable[[str], bool], is_text: Callable[[str], bool]
) -> tuple[str, list[str]]:
    """``text`` without aliases written bare (``m12``), and those that ``resolve``.

    A token the source itself uses as a word (``is_text``: "the m5 screws") is ordinary text
    and stays.  Any other bare token is removed; it is cited when it names a message
    (``resolve``).
    """
    cited: list[str] = []
    changed = False

    def bare(match: re.Match[str]) -> str:
        nonlocal changed
        if is_text(match.group(0)):
            return match.group(0)
        alias = f"m{int(match.group(1))}"
        if resolve(alias):
            cited.append(alias)
        changed = True
        return " "

    cleaned = _BARE.sub(bare, text)
    return (tidy(cleaned) if changed else text), list(dict.fromkeys(cited))
