"""One notion of "looks the same": the visual skeleton of user text, from Unicode data alone.

:func:`skeleton` is what a reader (or a model) takes ``text`` for: compatibility forms
unfolded (fullwidth, mathematical, circled letters), every character whose Unicode name says
it is drawn as a Latin letter mapped to that letter (``CYRILLIC CAPITAL LETTER TE`` → ``t``,
``GREEK CAPITAL LETTER NU`` → ``n``, ``LATIN LETTER SMALL CAPITAL R`` → ``r``), case folded,
combining marks and invisible format characters dropped.  Mapping happens *before* case
folding, because capitals and small letters look different (``Ν`` reads N, ``ν`` reads v).

No confusables table ships with the installed packages, so the table is derived at import from
:mod:`unicodedata`: Latin-script letters by the letter their name ends in, Greek, Cyrillic and
Armenian letters through a short table of letter *names*, never of characters.  Scripts whose
letter names say nothing about their shapes (Lisu, Cherokee: ``LISU LETTER ZHA`` is drawn as
an R) stay unmapped; :func:`imitates` therefore treats such a letter as able to stand for
*any* letter, so a tag spelled in them is caught without listing them.  Wide characters
(ideographs, kana, Hangul) can never pass for a Latin letter and are not wildcards.
"""

from __future__ import annotations

import re
import unicodedata

__all__ = ["LOOKALIKE_CLASSES", "imitates", "skeleton"]

# Brackets and slashes a reader takes for "<", ">" and "/" (punctuation has no letter names).
_PUNCTUATION = {
    "<": "‹〈〈⟨＜﹤˂ᐸ❮❬⧼≺❰⟪《",
    ">": "›〉〉⟩＞﹥˃ᐳ❯❭⧽≻❱⟫》",
    "/": "／⁄∕⧸╱⟋",
}
# Cyrillic letter names whose capital and small glyphs are both drawn like one Latin letter.
_CYRILLIC: dict[str, str] = {
    "A": "a",
    "VE": "b",
    "IE": "e",
    "KA": "k",
    "EM": "m",
    "EN": "h",
    "O": "o",
    "ER": "p",
    "ES": "c",
    "TE": "t",
    "U": "y",
    "HA": "x",
    "DZE": "s",
    "JE": "j",
    "SHHA": "h",
    "BYELORUSSIAN-UKRAINIAN I": "i",
    "PALOCHKA": "i",
    "QA": "q",
    "WE": "w",
}
# Letter names (by script and case) whose glyphs are drawn like one Latin letter.
_NAMED_SHAPES: dict[tuple[str, str], dict[str, str]] = {
    ("GREEK", "CAPITAL"): {
        "ALPHA": "a",
        "BETA": "b",
        "EPSILON": "e",
        "ZETA": "z",
        "ETA": "h",
        "IOTA": "i",
        "KAPPA": "k",
        "MU": "m",
        "NU": "n",
        "OMICRON": "o",
        "RHO": "p",
        "TAU": "t",
        "UPSILON": "y",
        "CHI": "x",
    },
    ("GREEK", "SMALL"): {
        "ALPHA": "a",
        "EPSILON": "e",
        "ETA": "n",
        "IOTA": "i",
        "KAPPA": "k",
        "NU": "v",
        "OMICRON": "o",
        "RHO": "p",
        "TAU": "t",
        "UPSILON": "u",
        "CHI": "x",
        "LUNATE SIGMA": "c",
    },
    ("CYRILLIC", "CAPITAL"): _CYRILLIC,
    # Small ghe and Komi de are drawn like r and d; their capitals like nothing Latin.
    ("CYRILLIC", "SMALL"): {**_CYRILLIC, "GHE": "r", "KOMI DE": "d"},
    ("ARMENIAN", "CAPITAL"): {"OH": "o", "SEH": "u"},
    ("ARMENIAN", "SMALL"): {"OH": "o", "SEH": "u", "VO": "n", "HO": "h"},
}
_SCRIPT_LETTER = re.compile(
    r"(GREEK|CYRILLIC|ARMENIAN) (CAPITAL|SMALL) LETTER ([A-Z -]+?)(?: WITH .+)?"
)
# Latin-script letters named after one Latin letter: "LATIN SMALL LETTER R WITH TAIL",
# "LATIN LETTER SMALL CAPITAL N", "MODIFIER LETTER CAPITAL T", "LATIN SMALL LETTER DOTLESS I".
_LATIN_LETTER = re.compile(
    r"(?:LATIN (?:CAPITAL |SMALL )?LETTER|MODIFIER LETTER(?: CAPITAL| SMALL)?)"
    r" (?:SMALL CAPITAL |CAPITAL |DOTLESS )?([A-Z])(?: WITH .+)?"
)
# Ranges with no Latin look-alike (ideographs, Hangul, surrogates, private use): not scanned.
_SKIP = ((0x3400, 0x4DBF), (0x4E00, 0x9FFF), (0xAC00, 0xD7AF), (0xD800, 0xF8FF))
_WIDE = frozenset("WF")
_DROPPED = frozenset(("Mn", "Me", "Cf"))
_NAMED_SCRIPTS = ("LATIN", "MODIFIER", "GREEK", "CYRILLIC", "ARMENIAN")


def _shape(char: str) -> str | None:
    name = unicodedata.name(char, "")
    if not name.startswith(_NAMED_SCRIPTS):
        return None
    latin = _LATIN_LETTER.fullmatch(name)
    if latin is not None:
        return latin.group(1).lower()
    script = _SCRIPT_LETTER.fullmatch(name)
    if script is not None:
        return _NAMED_SHAPES[script.group(1), script.group(2)].get(script.group(3))
    return None


def _scanned() -> list[str]:
    chars: list[str] = []
    start = 0x80
    for low, high in _SKIP:
        chars.extend(map(chr, range(start, low)))
        start = high + 1
    chars.extend(map(chr, range(start, 0x20000)))
    return chars


def _build() -> tuple[dict[int, str | None], dict[str, str]]:
    table: dict[int, str | None] = {
        ord(char): target for target, chars in _PUNCTUATION.items() for char in chars
    }
    table.update(dict.fromkeys((*range(0xE0000, 0xE0080), *range(0xE0100, 0xE01F0))))
    decomposable: list[str] = []
    category = unicodedata.category
    for char in _scanned():
        kind = category(char)
        if kind in _DROPPED:
            table[ord(char)] = None
        elif kind[0] == "L" and ord(char) not in table:
            shape = _shape(char)
            if shape is not None:
                table[ord(char)] = shape
        if unicodedata.decomposition(char):
            decomposable.append(char)
    # Every single character whose skeleton is "<", ">", "/" or "m": the classes a regex needs
    # to find a tag or a header imitation in raw text without folding all of it.
    members: dict[str, list[str]] = {key: [key] for key in "<>/m"}
    members["m"].append("M")
    for code, target in table.items():
        if target in members:
            members[target].append(chr(code))
    for char in decomposable:
        folded = unicodedata.normalize("NFKD", char).translate(table).casefold()
        if folded in members:
            members[folded].append(char)
    classes = {key: "".join(map(re.escape, dict.fromkeys(chars))) for key, chars in members.items()}
    return table, classes


#: Regex character-class bodies (escaped) of every character that reads as ``<``, ``>``,
#: ``/`` or ``m``.
_TABLE, LOOKALIKE_CLASSES = _build()


def skeleton(text: str) -> str:
    """``text`` as a reader sees it, reduced to ASCII wherever a look-alike exists."""
    if text.isascii():
        return text.casefold()
    return unicodedata.normalize("NFKD", text).translate(_TABLE).casefold()


def _wildcard(char: str) -> bool:
    # A letter of unknown shape (no look-alike by name) that is drawn narrow like a Latin one.
    return not char.isascii() and char.isalpha() and unicodedata.east_asian_width(char) not in _WIDE


def imitates(word: str, names: tuple[str, ...]) -> bool:
    """Whether ``word`` could be read as one of ``names`` (lower-case ASCII words).

    A letter whose skeleton is ASCII must equal the name's letter at its place; a narrow letter
    of unknown shape may stand for any letter.  The word may go on after the name with
    anything but a letter (``<transcript2``), as the tag regexes of ASCII text allow.
    """
    view = skeleton(word)
    for name in names:
        size = len(name)
        if len(view) < size or (len(view) > size and view[size].isalpha()):
            continue
        if all(a == b or _wildcard(a) for a, b in zip(view, name, strict=False)):
            return True
    return False
