"""Topic titles a person would write: key noun phrases of the topic, never filler pairs.

A title is built from candidate phrases of the topic's messages: maximal runs of content words
(split at stop words, fillers, punctuation, numbers and participant names, as RAKE does),
and their sub-phrases of up to three words.  A phrase scores

    (messages of the topic that contain it) x (mean IDF of its words over the channel)
    x (1.6 for two words, 1.9 for three)

so frequent-here-but-rare-elsewhere phrases win; generic words ("thing", "problem", "good",
"work", "try") may sit inside a phrase but never start or end one.  In a topic of several
messages a phrase must occur in at least two of them (unless nothing does).  The best phrase
and the next one that shares no word with it (if it scores at least 40 % of the best) make
the title ("nvidia drivers and xorg.conf");
a phrase gives way to a longer one that contains it and occurs at least half as often,
each written in the spelling most used in the topic ("TIMIT", "Python.h").
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Collection, Iterable

from shared.summarize.extractive.noise import FILLER_WORDS, FRAGMENT_WORDS, strip_markup
from shared.summarize.text import STOP_WORDS

__all__ = ["GENERIC_WORDS", "MAX_TITLE_CHARS", "candidate_phrases", "topic_title"]

MAX_TITLE_CHARS = 80
MAX_PHRASE_WORDS = 3
# A second phrase joins the title only if it scores at least this share of the first.
SECOND_PHRASE_SHARE = 0.4

# Words that are content words to a tokenizer but say nothing about a topic on their own.
_GENERIC_WORDS_TEXT = """
    thing things stuff bit lot lots kind sort way ways point points part parts question
    questions answer idea ideas problem problems issue issues time times day days today
    tomorrow yesterday minute minutes moment people person guy guys someone something
    anything everything nothing else one ones two three first second last next new old good
    bad great nice fine better best big small little sure actually probably basically pretty
    quite different same whole real certain able mean means meant guess thought think
    thinking say says saying said tell told ask asked talk talking talked look looks looking
    looked see seen seem seems want wanted wants need needed needs use used uses using work
    works working worked make makes making made try tried trying tries run running ran get
    getting give gave take took put come came go goes went done doing let help start
    started stop find found keep show call called maybe also still even much many lot
    able wrong right left okay yeah else instead though already always never often
    sometimes again anyway etc lol hmm sorry thanks please hello hi hey four five six seven
    eight nine ten eleven twelve twenty thirty forty fifty sixty seventy eighty ninety hundred
    thousand million half couple number numbers another other others eleven thirteen
    everythings everything's somethings something's nothing's thats
    fourteen fifteen sixteen seventeen eighteen nineteen may might must shall perhaps certainly
    whatever whenever wherever whoever away least less more most within without across
    around ahead behind beyond cuz coz cause because th equal set sets mention mentioned
    discuss discussed understand understood enter free reach hope hoped hopes close open
    connected relevant important current simple easy hard possible likely unlikely
    interesting obviously clearly exactly totally completely entirely rather almost enough
    usually generally especially particular particularly specific specifically certain
    general whole bunch stuff gonna wanna gotta kinda sorta dunno yes no ok okay agree
    agreed remember forget forgot believe suppose supposed happen happens happened change
    changes changed wait waiting read reading write writing wrote written keep kept seems
    seemed feel felt felt fact example reason reasons case cases sense end ends side sides
    top bottom front back left hand hands level levels step steps far long short high low
    early late soon ago later recently today tonight week weeks month months year years
    morning afternoon evening fun cool awesome amazing terrible horrible weird strange
    funny crazy stupid silly glad happy sad sorry afraid worried advise advice suggest
    suggestion recommend recommended
    """
GENERIC_WORDS: frozenset[str] = frozenset(_GENERIC_WORDS_TEXT.split())
_LY_NOUNS = frozenset({"assembly", "supply", "family", "reply", "anomaly", "butterfly", "italy"})
_WORD_RE = re.compile(r"[\w][\w.+#'’\-]*[\w+#]|[\w]")
_BREAK_RE = re.compile(r"[,;:!?()\[\]{}\"“”<>|=/\\]|\.(?:\s|$)|\s-\s|https?://\S+|www\.\S+")


def _words(segment: str) -> list[str]:
    return [w.rstrip(".'’") for w in _WORD_RE.findall(segment)]


def candidate_phrases(
    text: str, excluded: Collection[str]
) -> list[tuple[tuple[str, ...], tuple[str, ...]]]:
    """(lower-cased words, words as written) of every candidate phrase in ``text``."""
    found: list[tuple[tuple[str, ...], tuple[str, ...]]] = []
    for chunk in _BREAK_RE.split(strip_markup(text)):
        run: list[str] = []
        for word in [*_words(chunk), ""]:
            key = word.lower().replace("’", "'")
            if (
                not key
                or key in STOP_WORDS
                or key in FILLER_WORDS
                or key in FRAGMENT_WORDS
                or key in excluded
                or len(key) < 2
                or key.isdigit()
                or not any(ch.isalpha() for ch in key)
            ):
                found.extend(_sub_phrases(run))
                run = []
                continue
            run.append(word)
    return found


def _sub_phrases(run: list[str]) -> Iterable[tuple[tuple[str, ...], tuple[str, ...]]]:
    for size in range(1, MAX_PHRASE_WORDS + 1):
        for start in range(len(run) - size + 1):
            words = tuple(run[start : start + size])
            keys = tuple(w.lower().replace("’", "'") for w in words)
            if _weak_edge(keys[0]) or _weak_edge(keys[-1]):
                continue
            if len(set(keys)) < len(keys):
                continue
            yield keys, words


def _stem(key: str) -> str:
    """A crude singular, so that "button" and "buttons" are one word for a title."""
    if len(key) > 3 and key.endswith("s") and not key.endswith("ss"):
        return key[:-2] if key.endswith("es") and key[-3] in "sxz" else key[:-1]
    return key


def _weak_edge(key: str) -> bool:
    """A word that may not start or end a title phrase: generic, an adverb in -ly, a past
    participle in -ed, or a two-letter fragment that is no acronym."""
    if key in GENERIC_WORDS or len(key) < 3:
        return True
    if key.endswith("ly") and len(key) > 5 and key not in _LY_NOUNS:
        return True
    return key.endswith("ed") and len(key) > 5 and not key.endswith("eed")


def topic_title(
    texts: Iterable[str],
    weight: Callable[[str], float],
    *,
    excluded: Collection[str] = (),
    phrases: int = 2,
) -> str | None:
    """The title of a topic whose messages are ``texts``; ``weight`` gives a word's IDF over
    the channel, ``excluded`` lower-cased words never used (participant names).  ``None``
    when no message has a content word."""
    counts: Counter[tuple[str, ...]] = Counter()
    spellings: Counter[tuple[str, ...]] = Counter()
    messages = 0
    for text in texts:
        messages += 1
        seen: set[tuple[str, ...]] = set()
        for keys, words in candidate_phrases(text, excluded):
            spellings[words] += 1
            seen.add(keys)
        counts.update(seen)
    if not counts:
        return None
    bonus = {1: 1.0, 2: 1.6, 3: 1.9}
    scored = []
    repeated = messages > 1 and any(n >= 2 for n in counts.values())
    for keys, n in counts.items():
        if repeated and n < 2:
            continue
        idf = sum(weight(k) for k in keys) / len(keys)
        scored.append((n * idf * bonus[len(keys)], keys))
    scored.sort(key=lambda item: (-item[0], item[1]))
    written: dict[tuple[str, ...], tuple[str, ...]] = {}
    for words, _ in spellings.most_common():
        written.setdefault(tuple(w.lower().replace("’", "'") for w in words), words)
    containing: dict[tuple[str, ...], list[tuple[float, tuple[str, ...]]]] = {}
    for value, keys in scored:
        for size in range(1, len(keys)):
            for start in range(len(keys) - size + 1):
                containing.setdefault(keys[start : start + size], []).append((value, keys))
    picked: list[tuple[str, ...]] = []
    used: set[str] = set()
    top = scored[0][0] if scored else 0.0
    for value, keys in scored:
        if picked and value < SECOND_PHRASE_SHARE * top:
            break
        if used.intersection(map(_stem, keys)):
            continue
        keys = _longer(keys, counts, containing)
        if used.intersection(map(_stem, keys)):
            continue
        picked.append(keys)
        used.update(map(_stem, keys))
        if len(picked) == phrases:
            break
    titles = [" ".join(written[keys]) for keys in picked]
    title = " and ".join(titles)
    if len(title) > MAX_TITLE_CHARS:
        title = titles[0][:MAX_TITLE_CHARS]
    return title


def _longer(
    keys: tuple[str, ...],
    counts: Counter[tuple[str, ...]],
    containing: dict[tuple[str, ...], list[tuple[float, tuple[str, ...]]]],
) -> tuple[str, ...]:
    """The best longer phrase that contains ``keys`` and occurs at least half as often
    ("nvidia drivers" rather than "drivers"), else ``keys``."""
    need = max(2, counts[keys] / 2)
    longer = [(value, other) for value, other in containing.get(keys, ()) if counts[other] >= need]
    return max(longer)[1] if longer else keys
