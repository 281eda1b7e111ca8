"""Tests of the JSON shape guard (shared.sources.json_guard)."""

from __future__ import annotations

import json
import random
from typing import Any

import pytest

from shared.errors import InvalidInputError
from shared.sources.json_guard import JsonGuard, JsonLimits


def _feed(
    raw: bytes, limits: JsonLimits, *, sizes: random.Random | None = None, fast: bool = True
) -> str | None:
    """Feed ``raw`` in chunks (random sizes when ``sizes`` is given); the error, or None."""
    guard = JsonGuard("f.json", limits=limits, how_to_fix="fix it", fast=fast)
    pos = 0
    try:
        while pos < len(raw):
            step = sizes.randrange(1, 24) if sizes else 65536
            guard.feed(raw[pos : pos + step])
            pos += step
    except InvalidInputError as exc:
        message = str(exc)
        assert "\n" not in message and message.startswith("f.json: ")
        assert message.endswith("fix it")
        return message
    return None


def _value(rnd: random.Random, depth: int) -> Any:
    roll = rnd.random()
    if depth > 6 or roll < 0.3:
        kind = rnd.choice("snl")
        if kind == "s":
            return "".join(rnd.choice('ab"\\\n{}[]é,: ') for _ in range(rnd.randrange(30)))
        if kind == "n":
            return rnd.choice([0, 1.5, -3e10, 10 ** rnd.randrange(1, 40)])
        return rnd.choice([True, False, None])
    if roll < 0.65:
        return [_value(rnd, depth + 1) for _ in range(rnd.randrange(4))]
    keys = ("".join(rnd.choice('ab"\\') for _ in range(3)) for _ in range(rnd.randrange(4)))
    return {key: _value(rnd, depth + 1) for key in keys}


def _depth(value: Any) -> int:
    if isinstance(value, dict):
        value = list(value.values())
    if isinstance(value, list):
        return 1 + max(map(_depth, value), default=0)
    return 0


def _longest_string(value: Any) -> int:
    """Longest string as written (quotes and escapes included)."""
    if isinstance(value, dict):
        return max((_longest_string(v) for v in [*value, *value.values()]), default=0)
    if isinstance(value, list):
        return max((_longest_string(v) for v in value), default=0)
    return len(json.dumps(value, ensure_ascii=False).encode()) if isinstance(value, str) else 0


@pytest.mark.parametrize("fast", [True, False])
def test_random_documents_fail_exactly_when_a_limit_is_exceeded(fast: bool) -> None:
    rnd = random.Random(20240514)
    failures = 0
    for _ in range(1500):
        doc = {"guild": _value(rnd, 0), "messages": [_value(rnd, 1) for _ in range(6)]}
        raw = json.dumps(doc, ensure_ascii=False, indent=rnd.choice([None, 1])).encode()
        limits = JsonLimits(max_depth=rnd.randrange(3, 12), max_string_bytes=rnd.randrange(8, 80))
        expected = _depth(doc) > limits.max_depth or _longest_string(doc) > limits.max_string_bytes
        error = _feed(raw, limits, sizes=rnd, fast=fast)
        assert (error is not None) == expected, (raw[:300], limits, error)
        failures += expected
    assert 200 < failures < 1300, failures  # both outcomes are exercised


def test_fast_and_exact_paths_report_the_same_error() -> None:
    rnd = random.Random(7)
    for _ in range(300):
        doc = {"guild": {}, "messages": [_value(rnd, 1) for _ in range(20)]}
        raw = json.dumps(doc, ensure_ascii=False).encode()
        limits = JsonLimits(max_depth=rnd.randrange(3, 8), max_string_bytes=rnd.randrange(8, 40))
        seed = rnd.random()
        fast = _feed(raw, limits, sizes=random.Random(seed))
        exact = _feed(raw, limits, sizes=random.Random(seed), fast=False)
        assert fast == exact


def test_depth_error_names_the_byte() -> None:
    raw = b'{"messages": ' + b"[" * 1000 + b"]" * 1000 + b"}"
    error = _feed(raw, JsonLimits(max_depth=32))
    assert error is not None
    assert "nested more than 32 levels deep at byte 44" in error  # the 33rd bracket


@pytest.mark.parametrize("fast", [True, False])
def test_strings_split_anywhere_are_followed(fast: bool) -> None:
    raw = b'{"messages": [{"a": "x\\\\", "b": "\\"[[[[\\\\\\"]]]]"}, [[1]]]}'
    for cut in range(1, len(raw)):
        for second in range(cut, len(raw)):
            guard = JsonGuard("f", limits=JsonLimits(max_depth=4), how_to_fix="x", fast=fast)
            guard.feed(raw[:cut])  # the brackets are inside strings: no depth change
            guard.feed(raw[cut:second])
            guard.feed(raw[second:])


def test_a_long_string_is_refused_before_it_ends() -> None:
    guard = JsonGuard("f", limits=JsonLimits(max_string_bytes=1024), how_to_fix="x")
    guard.feed(b'{"a": "')
    for _ in range(5):
        guard.feed(b"y" * 200)  # 1001 bytes with the quote: not yet too long
    with pytest.raises(InvalidInputError, match="string starting at byte 6 is longer than 1 KiB"):
        guard.feed(b"y" * 200)


@pytest.mark.parametrize("fast", [True, False])
def test_a_long_number_across_chunks_is_refused(fast: bool) -> None:
    guard = JsonGuard("f", limits=JsonLimits(max_token_bytes=100), how_to_fix="x", fast=fast)
    guard.feed(b'{"messages": [1')
    for _ in range(3):
        guard.feed(b"0" * 30)  # 91 bytes
    with pytest.raises(InvalidInputError, match="literal at byte 14 is longer than 100 bytes"):
        guard.feed(b"0" * 30)


@pytest.mark.parametrize("fast", [True, False])
def test_a_number_ending_a_chunk_may_continue_up_to_the_limit(fast: bool) -> None:
    guard = JsonGuard("f", limits=JsonLimits(max_token_bytes=100), how_to_fix="x", fast=fast)
    guard.feed(b'{"messages": [{"a": "x"}, ' + b"1" * 60)
    guard.feed(b"2" * 40 + b', {"b": 1')
    with pytest.raises(InvalidInputError, match="literal at byte 134 is longer"):
        guard.feed(b"3" * 100 + b"}]}")


@pytest.mark.parametrize("fast", [True, False])
def test_whitespace_and_many_short_numbers_are_fine(fast: bool) -> None:
    raw = b'{"messages": [' + b" " * 100_000 + b",".join(b"1234" for _ in range(10_000)) + b"]}"
    limits = JsonLimits(max_token_bytes=8, max_item_values=10)
    assert _feed(raw, limits, sizes=random.Random(1), fast=fast) is None


def _items_doc(message: Any, header: Any = None) -> bytes:
    return json.dumps({"guild": header or {}, "messages": [message, message]}).encode()


@pytest.mark.parametrize("fast", [True, False])
def test_one_message_may_not_exceed_the_item_limits(fast: bool) -> None:
    limits = JsonLimits(max_item_bytes=4096, max_item_values=100)
    small = {"id": "1", "content": "x" * 1000, "tags": list(range(50))}
    assert _feed(_items_doc(small), limits, fast=fast) is None
    big = {"id": "1", "content": "x" * 5000}
    error = _feed(_items_doc(big), limits, fast=fast)
    assert error is not None and "starting around byte 27 is longer than 4 KiB" in error
    many = {"users": [{"id": str(i)} for i in range(40)]}
    error = _feed(_items_doc(many), limits, fast=fast)
    assert error is not None and "holds more than 100 strings, objects and arrays" in error


def test_item_limits_hold_across_many_small_chunks() -> None:
    limits = JsonLimits(max_item_bytes=4096, max_item_values=100)
    messages = [{"id": str(i), "roles": [{"id": "r"}] * (i % 30)} for i in range(200)]
    raw = json.dumps({"guild": {}, "messages": messages}).encode()
    assert _feed(raw, limits, sizes=random.Random(3)) is None
    messages[150]["roles"] = [{"id": "r"}] * 60
    raw = json.dumps({"guild": {}, "messages": messages}).encode()
    error = _feed(raw, limits, sizes=random.Random(3))
    assert error is not None and "holds more than 100" in error


@pytest.mark.parametrize("fast", [True, False])
def test_header_values_are_items_but_the_messages_array_is_not(fast: bool) -> None:
    limits = JsonLimits(max_item_bytes=4096, max_item_values=100)
    messages = [{"id": str(i), "content": "hello"} for i in range(2000)]
    raw = json.dumps({"guild": {"id": "1"}, "messages": messages}).encode()
    assert len(raw) > 10 * 4096 and _feed(raw, limits, fast=fast) is None
    header = {"roles": [{"id": str(i)} for i in range(60)]}
    error = _feed(_items_doc({"id": "1"}, header), limits, fast=fast)
    assert error is not None and "starting around byte 10 holds more" in error
    # Only the top-level "messages" key is exempt, not one spelled differently or nested.
    raw = json.dumps({"message": messages}).encode()
    assert _feed(raw, limits, fast=fast) is not None


def test_byte_order_mark_counts_in_offsets() -> None:
    guard = JsonGuard("f", limits=JsonLimits(max_depth=1), how_to_fix="x")
    guard.skip(3)
    with pytest.raises(InvalidInputError, match="at byte 4;"):
        guard.feed(b"[[")
