"""Tokens, stop words, TF-IDF vectors, cosine and shortening."""

from __future__ import annotations

import math

import pytest

from shared.summarize.text import (
    STOP_WORDS,
    Idf,
    add_into,
    content_terms,
    cosine,
    dot,
    is_question,
    normalize,
    shorten,
    tokenize,
)


def test_tokenize_keeps_versions_identifiers_and_package_names() -> None:
    tokens = tokenize(
        "Try apt-get install linux-headers-2.6.28 (kernel 2.6.8), use g++ and my_var!"
    )
    assert tokens == [
        "try",
        "apt-get",
        "install",
        "linux-headers-2.6.28",
        "kernel",
        "2.6.8",
        "use",
        "g++",
        "and",
        "my_var",
    ]


def test_tokenize_lowercases_and_normalises_curly_apostrophes() -> None:
    assert tokenize("Don’t PANIC. End.") == ["don't", "panic", "end"]
    assert tokenize("") == []
    assert tokenize("Ünïcode wörds ok") == ["ünïcode", "wörds", "ok"]


def test_stop_words_cover_english_and_chat_filler() -> None:
    assert len(STOP_WORDS) >= 150
    for word in ("the", "and", "lol", "ok", "thanks", "hi", "yeah", "i'll", "btw"):
        assert word in STOP_WORDS
    for word in ("kernel", "install", "postgres", "error"):
        assert word not in STOP_WORDS


def test_content_terms_drop_stop_words_single_letters_and_bare_numbers() -> None:
    assert content_terms("ok so I think the kernel 42 x module broke lol, v2.1 though") == [
        "kernel",
        "module",
        "broke",
        "v2.1",
    ]


def test_idf_weights_rare_terms_higher_and_unseen_terms_like_a_singleton() -> None:
    idf = Idf([["kernel", "build"], ["kernel", "headers"], ["kernel", "module"]])
    assert idf.documents == 3
    assert idf.weight("kernel") < idf.weight("headers")
    assert idf.weight("never-seen") == pytest.approx(idf.weight("headers"))
    assert idf.weight("kernel") > 0


def test_idf_vectors_are_unit_length_and_weight_term_frequency() -> None:
    idf = Idf([["a1", "b1"], ["a1"], ["c1"]])
    vec = idf.vector(["b1", "b1", "a1"])
    assert math.sqrt(sum(v * v for v in vec.values())) == pytest.approx(1.0)
    assert vec["b1"] > vec["a1"]
    assert idf.vector([]) == {}


def test_cosine_dot_and_normalize() -> None:
    a = {"x": 1.0, "y": 1.0}
    b = {"x": 2.0, "y": 2.0}
    c = {"z": 3.0}
    assert cosine(a, b) == pytest.approx(1.0)
    assert cosine(a, c) == 0.0
    assert cosine(a, {}) == 0.0
    assert dot({"x": 2.0}, a) == pytest.approx(2.0)
    assert dot(a, {"x": 2.0, "q": 1.0, "r": 1.0}) == pytest.approx(2.0)
    unit = normalize({"x": 3.0, "y": 4.0})
    assert unit == {"x": pytest.approx(0.6), "y": pytest.approx(0.8)}
    assert normalize({"x": 0.0}) == {}


def test_add_into_accumulates_scaled_vectors() -> None:
    acc: dict[str, float] = {"x": 1.0}
    add_into(acc, {"x": 1.0, "y": 2.0})
    add_into(acc, {"y": 1.0}, scale=-1.0)
    assert acc == {"x": 2.0, "y": 1.0}


def test_shorten_leaves_short_text_but_collapses_whitespace() -> None:
    assert shorten("  hello \n  world  ", 50) == "hello world"


def test_shorten_cuts_on_a_word_boundary_within_the_limit() -> None:
    text = "the quick brown fox jumps over the lazy dog, again and again"
    short = shorten(text, 30)
    assert len(short) <= 30
    assert short.endswith("…")
    assert text.startswith(short[:-1])
    assert short == "the quick brown fox jumps…"


def test_shorten_cuts_a_single_long_word_hard() -> None:
    short = shorten("x" * 100, 10)
    assert short == "x" * 9 + "…"


def test_shorten_rejects_a_limit_too_small_for_the_ellipsis() -> None:
    with pytest.raises(ValueError, match="limit must be at least 2"):
        shorten("anything", 1)


@pytest.mark.parametrize(
    "text",
    [
        "how do I mount a usb stick",
        "hi all, anyone know a good irc client",
        "alice: is there a way to pin the kernel version",
        "can someone help me with grub",
        "does it work with 2.6.8?",
        "see https://example.com/page?id=3 -- is that the right one?",
    ],
)
def test_is_question_recognises_questions(text: str) -> None:
    assert is_question(text)


@pytest.mark.parametrize(
    "text",
    [
        "wat?",
        "and?",
        "the fix is to reinstall the headers",
        "see https://example.com/page?id=3 for details",
        "bob: I'll update the docs",
    ],
)
def test_is_question_ignores_statements_and_fragments(text: str) -> None:
    assert not is_question(text)
