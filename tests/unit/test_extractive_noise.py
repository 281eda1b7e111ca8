"""Noise kinds and clean extracts, on real lines.

Chat lines are from the irc-dev logs (``tests/fixtures/irc-dev``, Kummerfeld et al., ACL 2019,
CC BY 4.0) and the demo conversation built from one of them; meeting turns are from the QMSum
validation meetings (``tests/fixtures/qmsum-val``, Zhong et al., NAACL 2021, MIT).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from shared.summarize.extractive.noise import (
    NOISE_KINDS,
    clean_extract,
    noise_kind,
    split_sentences,
    strip_markup,
)

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
NAMES = frozenset({"paulsterio", "crdlb", "jose", "rww", "pyrak", "seper", "the_one", "lolhate"})

# kind -> real lines of that kind
REAL_NOISE: dict[str, list[str]] = {
    "markup": ["{vocalsound} {gap} .", "{gap}", "{vocalsound}"],  # QMSum ES2006a
    "filler": [
        "Mm - hmm .",  # QMSum ES2006a
        "Yeah , yeah .",
        "Okay .",
        "hehe",  # irc-dev 2004-11-15
        "ok",
        ":)",
        "lol why?",  # demo
        "There ya go!",
    ],
    "greeting": [
        "hey guys",  # irc-dev 2004-11-15
        "thanks a lot",
        "hi!",
        "crdlb: thanks",  # demo
        "Seper: Nice. Thank you.",
        "hi folks.",
    ],
    "join": [
        "ivanoats is now known as ivanoats|away",  # demo (a nick change as text)
        "join/#semarang",
        "[saat_koneksi_le: /join #semarang",
        "gladio70: /join #ubuntu-it",
    ],
    "bot": [
        "!jaunty | nilson",  # demo
        "!info airsnort",  # irc-dev
        "!lart CircleofChaos",
        "!resolution | lolhate",
    ],
    "paste": [
        # irc-dev 2009-03-03
        "/usr/lib/policykit/polkit-read-auth-helper: symbol lookup error: "
        "/usr/lib/policykit/polkit-read-auth-helper: undefined symbol: kit_getpwnam",
        # irc-dev 2008-12-11
        "[ 4357.748427]  CIFS VFS: cifs_mount failed w/return code = -110",
        "var=$(cat file) && sed -i 's/searchforthis/$var/g' file_to_mod",  # demo
        'Traceback (most recent call last):\n  File "x.py", line 3, in <module>\n'
        "    import gtk\nImportError: No module named gtk",
    ],
    "link": [
        "http://dpaste.com/5050/",  # demo
        "jose: http://www.ubuntu.com",
        "https://www.ubuntulinux.org/wiki/ConferenceAttendees",  # irc-dev 2004-11-15
        "Seper: this is what I have: http://pastebin.ubuntu.com/",
    ],
    "short": ["eee", "*nod8", "nevermind", "whoami"],  # demo
    "empty": ["", "   "],
}

REAL_CONTENT = [
    # demo: real questions and answers stay quotable
    "paulSterio: heh, because you don't have python-dev :)",
    "what is gcc?",
    "Seper: I think you can use alsa",
    "thanks, the kernel module builds now with dkms",
    "Chaorain: If you want a real noticeable improvement, you might have to use fluxbox",
    # QMSum ES2006a
    "What we're aiming to do is to create a new remote control for a television .",
    "Not at this point .",
]


def test_every_kind_has_real_examples() -> None:
    assert set(REAL_NOISE) == set(NOISE_KINDS)


@pytest.mark.parametrize(
    ("kind", "text"), [(kind, text) for kind, texts in REAL_NOISE.items() for text in texts]
)
def test_real_noise_is_recognised(kind: str, text: str) -> None:
    assert noise_kind(text, names=NAMES) == kind


@pytest.mark.parametrize("text", REAL_CONTENT)
def test_real_content_is_not_noise(text: str) -> None:
    assert noise_kind(text, names=NAMES) is None


def test_a_message_with_files_and_no_text_is_not_noise() -> None:
    assert noise_kind("", has_files=True) is None
    assert noise_kind("http://example.com/cat.gif", has_files=True) is None


def test_qmsum_turns_clean_into_readable_extracts() -> None:
    data = json.loads((FIXTURES / "qmsum-val" / "ES2006a.json").read_text(encoding="utf-8"))
    turns = [row["content"] for row in data["meeting_transcripts"]]
    assert "{disfmarker}" in turns[15]
    cleaned = clean_extract(turns[15])
    assert cleaned == (
        "I think it th we're talking the functional design is more your area of things "
        "where you'll be we want to look at what functions we need in the remote control"
    )
    assert clean_extract(turns[9]) == "So any questions?"  # "S so any any questions ?"
    assert clean_extract("I mean, I 'm I 'm s curious") == "I'm s curious"
    assert clean_extract("so that's, you know, the remote") == "so that's, the remote"
    # ICSI Bmr006 (held out): a non-native speaker's "eh" is a hesitation too.
    assert clean_extract("Eh, eh This information eh, with eh, exactly time marks eh") == (
        "This information with exactly time marks"
    )
    # Nothing but markup and fillers: the cleaned text would be empty, so it stays as it was.
    assert clean_extract("Um .") == "Um ."
    # Ellipses and versions survive.
    assert clean_extract("on lcd...how do I drag a window") == "on lcd...how do I drag a window"


def test_markup_and_spelled_letters() -> None:
    assert strip_markup("how often do people say remote on T_V_ ? {vocalsound}") == (
        "how often do people say remote on TV ?"
    )
    assert strip_markup("plain text stays") == "plain text stays"


def test_sentences_split_on_ends_not_on_versions() -> None:
    assert split_sentences("Okay . So , this is the plan . Version 2.6.28 is out.") == [
        "Okay .",
        "So , this is the plan .",
        "Version 2.6.28 is out.",
    ]
    assert split_sentences("one line\nsecond line") == ["one line", "second line"]
