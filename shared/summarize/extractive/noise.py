"""What is not worth quoting: noise kinds of chat and meeting messages, and clean extracts.

A summary that quotes "Mm - hmm .", "hi all", "ivanoats is now known as ivanoats|away" or a
pasted backtrace wastes the reader's time.  :func:`noise_kind` names why a message is noise
(or returns ``None``); the summarizer still counts such messages and lets them shape the
conversation (segmentation, who answered whom), it only never picks them as extracts.

Kinds (:data:`NOISE_KINDS`):

* ``empty`` – no text at all;
* ``markup`` – only transcription markup (``{vocalsound}``, ``{gap}``);
* ``filler`` – only backchannels and fillers ("Mm - hmm .", "yeah yeah", "lol", "ok");
* ``greeting`` – greetings, thanks and goodbyes ("hi all", "thanks a lot!", "cya");
* ``join`` – join, part and nick-change lines written as text ("X is now known as Y",
  "/join #ubuntu");
* ``bot`` – commands to bots ("!jaunty | nilson", "/msg ubottu ...");
* ``paste`` – pasted logs, backtraces and code (error-line shapes, paths and symbols rather
  than words);
* ``link`` – links and nothing to say about them;
* ``short`` – a one-word reply that carries no topic ("eee", "*nod*", "wat").

:func:`clean_extract` turns a message (or a sentence of one) into what a bullet quotes:
markup and spoken fillers ("um", "uh") removed, stammered repeats ("the the") collapsed,
spaces before punctuation closed.  It only deletes words, so a bullet stays an extract.
Everything is regular expressions over the text: no model, nothing to download.
"""

from __future__ import annotations

import re
from collections.abc import Collection

from shared.summarize.text import STOP_WORDS, tokenize

__all__ = [
    "FILLER_WORDS",
    "FRAGMENT_WORDS",
    "NOISE_KINDS",
    "clean_extract",
    "noise_kind",
    "split_sentences",
    "strip_markup",
]

NOISE_KINDS: tuple[str, ...] = (
    "empty",
    "markup",
    "filler",
    "greeting",
    "join",
    "bot",
    "paste",
    "link",
    "short",
)

# Backchannels, hesitations and acknowledgements of speech and chat.
_FILLER_WORDS_TEXT = """
    um umm uh uhh uhm erm er hmm hm mm mmm mm-hmm mhm uh-huh huh ah oh eh ooh aha yeah yea
    ya yep yup yes no nope nah ok okay k kk alright right sure so well cool nice great good
    fine true exactly indeed lol lmao rofl haha hehe heh xd hah wow whoa yay meh ugh hmmm
    mmhmm anyway anyways agreed absolutely definitely totally really oops damn
    """
FILLER_WORDS: frozenset[str] = frozenset(_FILLER_WORDS_TEXT.split())
#: What a tokenizer leaves of contractions written apart ("we 're", "I 'll").
FRAGMENT_WORDS: frozenset[str] = frozenset({"re", "ll", "ve", "nt", "em"})
_GREETING_WORDS_TEXT = """
    hi hello hey heya hiya yo sup howdy morning evening afternoon night gn gm good bye
    goodbye cya later laters thanks thank thx ty tnx tyvm cheers welcome wb all everyone
    everybody guys folks people peeps you very much lot again o/ \\o np
    """
_GREETING_WORDS: frozenset[str] = frozenset(_GREETING_WORDS_TEXT.split())
_MARKUP_RE = re.compile(r"\{[a-z_]+\}|\[(?:laughter|noise|silence|inaudible)\]", re.IGNORECASE)
_URL_RE = re.compile(r"(?:https?://|www\.)\S+", re.IGNORECASE)
_SPELLED_RE = re.compile(r"\b(?:[A-Z]_){2,}(?=\W|$)")
# "you know" and "I mean" between commas are fillers of speech.
_SPOKEN_RE = re.compile(r"(?:(?<=,)|^)\s*(?:you know|i mean|like)\s*,\s*", re.IGNORECASE)
_ADDRESS_RE = re.compile(r"^\s*@?[^\s:,]{2,32}\s*[:,]\s+")
_JOIN_RE = re.compile(
    r"^\S+ (?:is now known as \S+|has (?:joined|left|quit)\b.*|(?:joined|left) the "
    r"(?:channel|server)\b.*)$|^/(?:join|part|nick|quit|msg|query|me)\b|^join/#\S+$",
    re.IGNORECASE,
)
_BOT_RE = re.compile(r"^[!.](?!\.)\w[\w-]*(?:\s|$)|^/msg \S*bot\b", re.IGNORECASE)
# Lines that look like program output rather than speech.
_LOG_LINE_RE = re.compile(
    r"^\s*(?:\[\s*\d+\.\d+\]|\d{2}:\d{2}:\d{2}\b|[EW]: |Traceback \(most recent|"
    r"File \"[^\"]+\", line \d+|at [\w.$]+\([\w.]+:\d+\)|\$ |# |>>> |[{}\[\]();]+\s*$)"
)
_PATH_RE = re.compile(r"(?:~|\.{1,2})?/[\w.\-+]+(?:/[\w.\-+]*)+|[A-Z]:\\[\w\\.\-]+")
_CODE_CHARS = frozenset("{}[]()<>=;|\\$#&*`\"'/:_")
_FENCE_RE = re.compile(r"```")
_LETTERS_RE = re.compile(r"[^\W\d_]")
_SPACE_RE = re.compile(r"\s+")
_SPACED_PUNCT_RE = re.compile(r"\s+([.,;:!?])")
_HESITATION_RE = re.compile(
    r"(?<![\w'-])(?:um+|uh+|uhm|erm|eh+|ehm|mm+|hmm+|mm-hmm|uh-huh)(?![\w'-])\s*[,.]?\s*",
    re.IGNORECASE,
)
_REPEAT_RE = re.compile(r"\b(\w+(?:'\w+)?(?: \w+(?:'\w+)?)?)(?:\s+\1\b)+", re.IGNORECASE)
# Transcripts write contractions apart ("we 're", "do n't").
_CONTRACTION_RE = re.compile(r"(\w) (n't|'(?:s|re|ll|ve|m|d))\b", re.IGNORECASE)
# A broken-off start of the next word ("s sort of", "w we 'll", "th the").
_FRAGMENT_RE = re.compile(r"(?:(?<=\s)|^)([^\W\d_]{1,2})\s+(?=(\w+))")
_SHORT_TEXT = "a i an am as at be by do go he if in is it me my no of oh on or so to up us we ok"
_SHORT_WORDS = frozenset(_SHORT_TEXT.split())
_LEFT_PUNCT_RE = re.compile(r"([,.;:])(?:\s+[,.;:])+")
_LEADING_JUNK_RE = re.compile(r"^[\s,.;:!?\-]+")
_SENTENCE_RE = re.compile(r"(?<=[.!?])\s+(?=[\"'(\[]?[A-Z0-9])")


def strip_markup(text: str) -> str:
    """``text`` without transcription markup (``{disfmarker}``, ``{vocalsound}``, ...), and
    spelled-out letters joined ("T_V_" → "TV")."""
    if "_ " in text or text.endswith("_"):
        text = _SPELLED_RE.sub(lambda m: m.group(0).replace("_", ""), text)
    if "{" not in text and "[" not in text:
        return text
    return _SPACE_RE.sub(" ", _MARKUP_RE.sub(" ", text)).strip()


def split_sentences(text: str) -> list[str]:
    """Sentences of ``text``: split after ``. ! ?`` before a capital or digit, and at line
    breaks.  Versions ("2.6.28") and paths stay whole."""
    parts: list[str] = []
    for line in text.splitlines():
        for sentence in _SENTENCE_RE.split(line.strip()):
            if sentence.strip():
                parts.append(sentence.strip())
    return parts


def clean_extract(text: str) -> str:
    """What a bullet quotes of ``text``: markup and hesitations removed, stammered repeats
    collapsed, spaces before punctuation closed.  Only deletes words."""
    flat = _SPACE_RE.sub(" ", strip_markup(text)).strip()
    if not flat:
        return flat
    cleaned = _HESITATION_RE.sub(" ", flat)
    cleaned = _SPOKEN_RE.sub(" ", cleaned)
    cleaned = _CONTRACTION_RE.sub(r"\1\2", cleaned)
    cleaned = _FRAGMENT_RE.sub(_drop_fragment, cleaned)
    cleaned = _REPEAT_RE.sub(r"\1", cleaned)
    cleaned = _SPACED_PUNCT_RE.sub(r"\1", cleaned)
    cleaned = _LEADING_JUNK_RE.sub("", _SPACE_RE.sub(" ", cleaned)).strip()
    # Repeated punctuation left where a filler stood (", ," / ". .").
    cleaned = _LEFT_PUNCT_RE.sub(r"\1", cleaned)
    if cleaned and cleaned[0].islower() and flat[:1].isupper():
        cleaned = cleaned[0].upper() + cleaned[1:]
    return cleaned or flat


def _drop_fragment(match: re.Match[str]) -> str:
    fragment, following = match.group(1), match.group(2)
    if fragment.lower() in _SHORT_WORDS or len(following) <= len(fragment):
        return match.group(0)
    return "" if following.lower().startswith(fragment.lower()) else match.group(0)


def _looks_pasted(text: str) -> bool:
    lines = [line for line in text.splitlines() if line.strip()]
    if _FENCE_RE.search(text) and len(lines) >= 3:
        return True
    if len(lines) >= 3 and sum(bool(_LOG_LINE_RE.match(line)) for line in lines) >= 2:
        return True
    if lines and _LOG_LINE_RE.match(lines[0]) and len(lines) == 1 and len(text) > 40:
        return True
    words = text.split()
    if len(words) < 4:
        return False
    code = sum(text.count(ch) for ch in _CODE_CHARS)
    if code == 0:
        return False
    paths = len(_PATH_RE.findall(text))
    letters = len(_LETTERS_RE.findall(text))
    plain_words = sum(1 for w in words if w.isalpha() and w.lower() in STOP_WORDS)
    # Program output: paths or symbols everywhere and hardly any function words.
    if paths >= 2 and plain_words <= len(words) // 5:
        return True
    return code > 0.12 * len(text) and plain_words <= len(words) // 8 and letters < 4 * code


def noise_kind(
    text: str,
    *,
    names: Collection[str] = (),
    has_files: bool = False,
) -> str | None:
    """Why ``text`` is noise (one of :data:`NOISE_KINDS`), or ``None`` for a message worth
    quoting.  ``names`` are lower-cased participant name tokens (addressing is not content);
    ``has_files`` marks a message with attachments or embeds, whose empty text is no noise."""
    stripped = text.strip()
    if not stripped:
        return None if has_files else "empty"
    bare = strip_markup(stripped)
    if not any(ch.isalnum() for ch in bare):
        if bare != stripped and not any(ch.isalnum() for ch in _MARKUP_RE.sub("", stripped)):
            return "markup"
        return None if has_files else "filler"
    unaddressed = _ADDRESS_RE.sub("", bare, count=1)
    if _JOIN_RE.match(bare) or _JOIN_RE.match(unaddressed):
        return "join"
    if _BOT_RE.match(bare) or _BOT_RE.match(unaddressed):
        return "bot"
    if _looks_pasted(bare):
        return "paste"
    without_links = _URL_RE.sub(" ", unaddressed)
    tokens = [t for t in tokenize(without_links) if t not in names]
    if not tokens:
        if _URL_RE.search(unaddressed):
            return None if has_files else "link"
        return "short" if unaddressed.strip() else "empty"
    if all(t in FILLER_WORDS for t in tokens):
        return "filler"
    if all(t in _GREETING_WORDS or t in FILLER_WORDS or t in STOP_WORDS for t in tokens) and any(
        t in _GREETING_WORDS for t in tokens
    ):
        return "greeting"
    if _URL_RE.search(unaddressed) and all(
        t in STOP_WORDS or t in FILLER_WORDS or t in {"see", "here", "link", "look", "this"}
        for t in tokens
    ):
        return "link"
    content = [t for t in tokens if t not in STOP_WORDS and t not in FILLER_WORDS]
    if not content:
        return "filler"
    if len(tokens) == 1 and len(content[0]) <= 12:
        return "short"
    return None
