"""Action items and decisions by cue, with precision over recall: a wrong item is worse than none.

An **action item** is one of:

* a *commitment*: the author says they will do a task ("I'll update the wiki page about
  kernel headers by friday"); the owner is the author.  "I'll try that", "I'll look into it",
  "I'll put it in there" are conversation, not tasks: a weak verb, or fewer than two content
  words after the verb, is no commitment;
* a *request* to a named person (a mention, ``nick:`` addressing or a reply) with a request
  form ("please …", "can you …", "could you …") followed by a task verb ("draft", "rotate",
  "update", "review", …); the owner is that person.  Instructions to do something right away
  in the conversation ("can you pastebin the output", "please stop", "please watch your
  language", "you should try …") are not tasks;
* a *to-do* marker ("TODO: …", "action item: …"); the owner is the addressee or the author.

Nothing counts inside quotes or after "it says", in a conditional ("if you need to …"), or
in a question that is not a request.  Items without an owner are not reported.

A **decision** is a group's settlement: "we decided …", "let's go with …", "agreed, let's
use …", "we'll switch to …", "the plan is …"; never a question, a conditional ("if you're
going to use it on linux, …"), one person's choice ("i decided to jump on Ubuntu") or a bare
"agreed with X".
"""

from __future__ import annotations

import re

__all__ = ["action_owner", "is_decision"]

_I = re.IGNORECASE
_QUOTED_RE = re.compile(r"\"[^\"]*\"|“[^”]*”|(?<!\w)'[^']{12,}'(?!\w)|`[^`]*`")
_REPORTED_RE = re.compile(
    r"\b(?:it|that|this|error|message|log|screen) (?:says?|said|shows?)\b.*", _I
)
_CONDITIONAL_RE = re.compile(r"\b(?:if|unless|whether|when(?:ever)?)\b", _I)
_LEAD_RE = re.compile(
    r"^(?:(?:ok(?:ay)?|sure|yes|yeah|yep|alright|right|so|and|then|also|fine|great|cool|"
    r"thanks|thank you)\b[\s,.!:-]*)+",
    _I,
)
_ADDRESS_RE = re.compile(
    r"^\s*(?:(?!(?:todo|to-do|action items?|ai)\s*:)@?[^\s:,]{2,32}\s*[:,]\s+|(?:@\S+\s+)+)", _I
)
_CLAUSE_SPLIT_RE = re.compile(
    r"(?<=[.!?;])\s+|\s+-\s+|,\s+(?=(?:and |so |then )?i(?:'ll| will)\b)", _I
)

_COMMIT_RE = re.compile(
    r"^(?:i(?:'ll| will| shall)|i(?:'m| am) going to|i can take care of|i(?:'ll| will) take "
    r"care of)\s+(?:(?:also|then|now|quickly|just|definitely|first)\s+)?([a-z][\w-]*)(.*)$",
    _I,
)
_COMMIT_START_RE = re.compile(r"(?:^|(?<=\s))i(?:'ll| will| shall|'m going to| am going to)\b", _I)
_REQUEST_RE = re.compile(
    r"^(?:please|pls|plz|can you|could you|would you(?: mind)?|will you)\s+"
    r"(?:please\s+|also\s+|quickly\s+)?([a-z][\w-]*)(.*)$",
    _I,
)
_TODO_RE = re.compile(r"^(?:todo|to-do|action items?|ai)\s*[:\-]\s*(\S.*)$", _I)

# Verbs that make a commitment conversation rather than a task.
_WEAK_VERBS_TEXT = """
    try see think guess be have bet let look wait go get give ask tell say answer reply
    talk leave brb bbl stay keep do come check read google search figure play use need
    want like love hate know remember believe hope wonder mean probably just never not
    start begin focus paste pastebin catch attempt continue repeat explain mention
    """
_WEAK_VERBS = frozenset(_WEAK_VERBS_TEXT.split())
# Verbs a request must start with to be a task for its addressee.
_TASK_VERBS_TEXT = """
    add archive book build change check clean create deploy document draft email file
    finish fix implement investigate merge migrate move organise organize plan post prepare
    publish push rebase release remove rename renew replace report rerun review revert
    rewrite rotate schedule send set ship sign submit summarize summarise test update
    upgrade upload write arrange collect compile contact coordinate design evaluate order
    price present prototype research circulate confirm
    """
_TASK_VERBS = frozenset(_TASK_VERBS_TEXT.split())
_CONTENT_RE = re.compile(r"[a-z0-9][\w.+\-']*", _I)
# What the speaker does in the conversation itself, now: no task ("I'll finish my response",
# "I will start by saying", "I will double check that right now", "I'm going to move on").
_SPEECH_ACT_RE = re.compile(
    r"\b(?:right (?:now|away)|my (?:response|answer|question|questions|point|remarks|"
    r"statement|comments?|time)|by saying|move on|moving on)\b",
    _I,
)
_SMALL_TEXT = (
    "a an the it this that these those them to of for on in at by with from and or my your "
    "our their its me you him her us up out all some any there here then now soon as so too "
    "very well back again later also just really i've i'm it's that's when once after done "
    "first one thing things stuff bit something"
)
_SMALL = frozenset(_SMALL_TEXT.split())

_DECISION_RE = re.compile(
    r"\b(?:we(?:'ve| have)? (?:decided|agreed|settled)|"
    r"(?:the )?decision (?:is|was)|(?:it'?s|is) decided|"
    r"(?:^|(?<=[,;:] )|(?<=\bso )|(?<=\band )|(?<=\bthen ))we(?:'ll| will| are going to|"
    r"'re going to| should) (?:go with|go for|go ahead with|stick with|switch to|move to|"
    r"ship|drop|keep|use|omit|opt for|choose|adopt)\b|let'?s (?:go with|go for|go ahead with|"
    r"use|stick with|switch to|move to|ship|keep|drop|merge|omit|opt for)|settled on|"
    r"the plan is|ship it|approved)\b",
    _I,
)
# A chair moving the meeting on, or a resolve to keep at something, settles nothing ("we will
# move to the next questioner", "we will keep focused on supporting Canadians").
_NOT_SETTLED_RE = re.compile(
    r"^\W*(?:move to (?:the )?(?:next|following|last)|keep (?:focused|focusing|working|going|"
    r"trying|an eye|in mind|in touch|doing))\b",
    _I,
)


def _clauses(text: str) -> list[str]:
    """Clauses of ``text`` with quotes and reported speech removed, leading fillers and
    addressing stripped."""
    text = _QUOTED_RE.sub(" ", text)
    text = _REPORTED_RE.sub(" ", text)
    text = _ADDRESS_RE.sub("", text.strip(), count=1)
    result = []
    for clause in _CLAUSE_SPLIT_RE.split(text):
        clause = _LEAD_RE.sub("", clause.strip()).strip()
        if clause:
            result.append(clause)
    return result


def _content_words(rest: str) -> int:
    return sum(1 for w in _CONTENT_RE.findall(rest) if w.lower().rstrip(".'-+") not in _SMALL)


def action_owner(text: str, *, author: str, addressee: str | None) -> str | None:
    """The owner of the action item ``text`` states, or ``None`` when it states none.

    ``author`` wrote it; ``addressee`` is the person it speaks to (mention, ``nick:`` or the
    author of the message it replies to), if any."""
    for clause in _clauses(text):
        todo = _TODO_RE.match(clause)
        if todo and _content_words(todo.group(1)) >= 2:
            return addressee or author
        if _CONDITIONAL_RE.match(clause):
            continue
        # A restart ("I'll put it I'll put them there") counts from its last start.
        starts = [m.start() for m in _COMMIT_START_RE.finditer(clause)]
        commit = _COMMIT_RE.match(clause[starts[-1] :] if starts and starts[0] == 0 else clause)
        if commit and not clause.rstrip().endswith("?"):
            verb, rest = commit.group(1).lower(), commit.group(2)
            if (
                verb not in _WEAK_VERBS
                and _content_words(rest) >= 2
                and not _SPEECH_ACT_RE.search(verb + rest)
            ):
                return author
            continue
        request = _REQUEST_RE.match(clause)
        if request and addressee is not None and addressee != author:
            verb, rest = request.group(1).lower(), request.group(2)
            if verb in _TASK_VERBS and _content_words(rest) >= 2:
                return addressee
    return None


def is_decision(text: str) -> bool:
    """True when ``text`` states something settled (see the module docstring)."""
    if text.rstrip().endswith("?"):
        return False
    for clause in _clauses(text):
        match = _DECISION_RE.search(clause)
        if match is None:
            continue
        if _CONDITIONAL_RE.search(clause[: match.start()]):
            continue
        verb_at = re.search(r"\b(?:move|keep)\b", clause[match.start() :], _I)
        if verb_at and _NOT_SETTLED_RE.match(clause[match.start() + verb_at.start() :]):
            continue
        return True
    return False
