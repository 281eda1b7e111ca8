"""Small text utilities for chat: tokens, stop words, TF-IDF vectors, cosine, shortening.

Everything here is pure Python and linear in the text it reads, so segmentation and the
extractive summarizer can run on 100k messages without numpy.  Vectors are sparse
``dict[str, float]`` maps; :class:`Idf` turns token lists into L2-normalised TF-IDF vectors.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence

__all__ = [
    "STOP_WORDS",
    "Idf",
    "SparseVector",
    "add_into",
    "content_terms",
    "cosine",
    "dot",
    "is_question",
    "normalize",
    "shorten",
    "tokenize",
]

SparseVector = dict[str, float]

# Words that carry no topic: English function words plus the filler of chat ("lol", "ok",
# "thanks").  Kept here, not downloaded, so the project works offline.
_STOP_TEXT = """
    a about above after again against all also am an and any anyone anything are aren't as at
    be because been before being below between both but by can can't cannot could couldn't did
    didn't do does doesn't doing don't down during each either else even ever every few for from
    further had hadn't has hasn't have haven't having he he'd he'll he's her here hers herself him
    himself his how i i'd i'll i'm i've if in into is isn't it it's its itself just let let's
    maybe me might more most much must my myself no nor not now of off on once one only or other
    our ours ourselves out over own really same she she'd she'll she's should shouldn't so some
    something still such than that that's the their theirs them themselves then there there's
    these they they'd they'll they're they've this those though through thing things to too
    under until up upon us very was wasn't we we'd we'll we're we've were weren't what what's
    when where which while who whom why will with won't would wouldn't yet you you'd you'll
    you're you've your yours yourself yourselves im ive dont doesnt cant wont didnt isnt thats
    whats youre
    hi hello hey heya yo sup hiya bye cya thanks thank thx ty tnx np cheers welcome ok okay
    k kk yes yeah yea yep yup no nope nah sure right well oh ah uh um umm hmm hm heh hehe haha
    lol lmao rofl xd btw imo imho idk afaik iirc fyi pls plz please sorry anyway anyways guys
    folks everyone somebody someone got get gets getting go going gonna wanna gotta like know
    think see say said tell try want need way lot kind sort
"""
STOP_WORDS: frozenset[str] = frozenset(_STOP_TEXT.split())

# A token is a run of word characters, optionally joined by . - + ' so that versions
# (2.6.8), package names (apt-get, libc6-dev, g++) and contractions stay whole.
_TOKEN_RE = re.compile(r"\w+(?:[.\-+'’]\w+)*\+*")
_SPACE_RE = re.compile(r"\s+")
_URL_RE = re.compile(r"https?://\S+|www\.\S+", re.IGNORECASE)
# Greetings and "nick:" addressing in front of a question ("hi all, how do I ...").
_LEAD_RE = re.compile(
    r"^(?:(?:hi|hello|hey|yo|ok|so|also|btw|guys|all|everyone|folks)\b[\s,.!:]*|"
    r"@?[^\s:,]{2,32}[:,]\s+)+",
    re.IGNORECASE,
)
_QUESTION_START_RE = re.compile(
    r"^(?:how (?:do|can|to|does|would|should|is|are)|what(?:'s| is| are| does| do)?|why|where|"
    r"when|which|who|is (?:there|it|this|that|any(?:one|body))|are (?:there|you)|"
    r"does (?:any(?:one|body)|it|this)|has any(?:one|body)|do (?:you|i|we)|"
    r"can (?:i|you|we|some(?:one|body)|any(?:one|body))|"
    r"could (?:i|you|we|some(?:one|body)|any(?:one|body))|should (?:i|we)|"
    r"any(?:one|body)\b|any (?:idea|ideas|way|chance)|did (?:you|any(?:one|body)))\b",
    re.IGNORECASE,
)


def tokenize(text: str) -> list[str]:
    """Lower-cased word tokens of ``text``; identifiers and versions stay one token.

    >>> tokenize("Try apt-get install linux-headers-2.6.28, OK?")
    ['try', 'apt-get', 'install', 'linux-headers-2.6.28', 'ok']
    """
    return [token.replace("’", "'") for token in _TOKEN_RE.findall(text.lower())]


def is_question(text: str, *, min_tokens: int = 3) -> bool:
    """True for a real question: a question mark outside links, or a question opener
    ("how do I", "anyone know", "is there") after any greeting or ``nick:`` addressing.

    Fragments shorter than ``min_tokens`` words ("and?", "wat?") do not count.
    """
    bare = _URL_RE.sub(" ", text).strip()
    if len(tokenize(bare)) < min_tokens:
        return False
    if "?" in bare:
        return True
    return _QUESTION_START_RE.match(_LEAD_RE.sub("", bare, count=1)) is not None


def content_terms(text: str) -> list[str]:
    """Tokens that can tell topics apart: no stop words, no single characters, no bare numbers."""
    return [
        token
        for token in tokenize(text)
        if len(token) > 1 and token not in STOP_WORDS and not token.isdigit()
    ]


class Idf:
    """Inverse document frequencies fitted on a collection of tokenised documents.

    ``idf(t) = ln((1 + N) / (1 + df(t))) + 1`` (smoothed, always positive).  Terms never seen
    in the collection get the weight of a term seen once.
    """

    __slots__ = ("_default", "_weights", "documents")

    def __init__(self, documents: Iterable[Iterable[str]]) -> None:
        df: Counter[str] = Counter()
        count = 0
        for terms in documents:
            df.update(set(terms))
            count += 1
        self.documents = count
        self._weights = {term: math.log((1 + count) / (1 + n)) + 1.0 for term, n in df.items()}
        self._default = math.log((1 + count) / 2) + 1.0

    @classmethod
    def from_counts(cls, df: Mapping[str, int], documents: int) -> Idf:
        """The same weights from document frequencies counted elsewhere (one streaming pass
        instead of keeping every document's terms)."""
        idf = cls(())
        idf.documents = documents
        idf._weights = {term: math.log((1 + documents) / (1 + n)) + 1.0 for term, n in df.items()}
        idf._default = math.log((1 + documents) / 2) + 1.0
        return idf

    def weight(self, term: str) -> float:
        """The idf weight of ``term``."""
        return self._weights.get(term, self._default)

    def vector(self, terms: Sequence[str]) -> SparseVector:
        """L2-normalised TF-IDF vector of one document's terms (empty for no terms)."""
        if not terms:
            return {}
        weights = self._weights
        default = self._default
        vec: SparseVector = {}
        for term, tf in Counter(terms).items():
            vec[term] = tf * weights.get(term, default)
        return normalize(vec)


def normalize(vec: Mapping[str, float]) -> SparseVector:
    """A copy of ``vec`` scaled to unit length (empty stays empty)."""
    length = math.sqrt(sum(value * value for value in vec.values()))
    if length == 0.0:
        return {}
    return {term: value / length for term, value in vec.items()}


def dot(a: Mapping[str, float], b: Mapping[str, float]) -> float:
    """Dot product of two sparse vectors (iterates over the shorter one)."""
    if len(a) > len(b):
        a, b = b, a
    return sum(value * b.get(term, 0.0) for term, value in a.items())


def cosine(a: Mapping[str, float], b: Mapping[str, float]) -> float:
    """Cosine similarity of two sparse vectors; 0.0 when either is empty."""
    denominator = math.sqrt(dot(a, a) * dot(b, b))
    if denominator == 0.0:
        return 0.0
    return dot(a, b) / denominator


def add_into(acc: dict[str, float], vec: Mapping[str, float], scale: float = 1.0) -> None:
    """Add ``scale * vec`` to ``acc`` in place (centroids, running sums)."""
    for term, value in vec.items():
        acc[term] = acc.get(term, 0.0) + scale * value


def shorten(text: str, limit: int = 200, *, ellipsis: str = "…") -> str:
    """Collapse whitespace and cut ``text`` to at most ``limit`` characters on a word boundary.

    A single word longer than the limit is cut hard.  The ellipsis counts towards the limit.
    """
    if limit < len(ellipsis) + 1:
        raise ValueError(f"limit must be at least {len(ellipsis) + 1}, got {limit}")
    flat = _SPACE_RE.sub(" ", text).strip()
    if len(flat) <= limit:
        return flat
    room = limit - len(ellipsis)
    cut = flat[: room + 1]
    space = cut.rfind(" ")
    head = cut[:space] if space > 0 else flat[:room]
    return head.rstrip(" ,;:-") + ellipsis
