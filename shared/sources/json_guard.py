"""Shape limits for an untrusted JSON byte stream, checked before a parser sees the bytes.

A JSON parser buffers every string and number until it ends, and ijson builds a prefix string
per nesting level for every event: a 200 KB file of ``[[[[…`` 100,000 levels deep made the
export reader allocate about 23 GB.  :class:`JsonGuard` checks each chunk as it is read and
raises one clear :class:`~shared.errors.InvalidInputError` as soon as the stream exceeds a
:class:`JsonLimits`:

* ``max_depth``: objects and arrays nested deeper than this;
* ``max_string_bytes``: one string (as written: quotes and escapes included) longer than this;
* ``max_token_bytes``: a number or literal that runs on across reads for longer than this (the
  parser buffers a token only across reads; within one chunk it reads it in place, and an
  integer too large for 64 bits is a parse error);
* ``max_item_bytes`` and ``max_item_values``: one *item* spanning more bytes, or holding more
  strings, objects and arrays, than this.  Items are what a reader builds in memory at once:
  each value of the top-level object except the array named ``messages``, and each element
  of that array (one message).  Item sizes are checked per chunk, so their error gives the
  item's start to within one chunk.

Together these bound the memory of a streaming parse whatever the file's shape, and keep its
time linear in the file's size.  The guard does not validate JSON; the parser still does, and
the guard is exact only up to the first byte that is not valid JSON, which the parser never
gets past.

Speed: inside the ``messages`` array every chunk is checked with a handful of C-level bytes
operations (escapes dropped, everything but quotes and brackets deleted, closed strings
removed, depth as a running sum), about a fifth of the parser's own time.  The header, the end
of the file, and any chunk that comes near a limit take the exact byte-by-token path.
"""

from __future__ import annotations

import re
from array import array
from dataclasses import dataclass
from itertools import accumulate

from shared.errors import InvalidInputError

__all__ = ["JsonGuard", "JsonLimits"]

_MIB = 1024 * 1024
_STREAM_KEY = b"messages"
_QUOTE, _BACKSLASH = 0x22, 0x5C
_OPENERS = (0x5B, 0x7B)  # [ {

# Exact path: outside strings only quotes and brackets matter; a string body runs to its
# closing quote (or the end of the chunk), escapes skipping one byte.
_STRUCTURAL = re.compile(rb'["\[\]{}]')
_STRING_BODY = re.compile(rb'[^"\\]*(?:\\.[^"\\]*)*', re.DOTALL)
# Numbers and literals: runs of bytes that are not whitespace or punctuation.
_TOKEN_LEAD = re.compile(rb'[^\s,:\[\]{}"]*')
_TOKEN_ENDS = (b" ", b"\t", b"\n", b"\r", b",", b":", b'"', b"[", b"]", b"{", b"}")

# Fast path tables.
_ESCAPE = re.compile(rb"\\.", re.DOTALL)
_NOT_STRUCTURAL = bytes(b for b in range(256) if b not in b'"[]{}')
_STEPS = bytes(1 if b in _OPENERS else 255 if b in (0x5D, 0x7D) else 0 for b in range(256))


def _size(count: int) -> str:
    for unit, name in ((_MIB, "MiB"), (1024, "KiB")):
        if count >= unit and count % unit == 0:
            return f"{count // unit} {name}"
    return f"{count} bytes"


@dataclass(frozen=True, slots=True)
class JsonLimits:
    """Largest shapes a JSON stream may have (see the module docstring)."""

    max_depth: int = 32
    max_string_bytes: int = 1 * _MIB
    max_token_bytes: int = 4096
    max_item_bytes: int = 16 * _MIB
    max_item_values: int = 500_000


class JsonGuard:
    """Feed it every chunk of a JSON stream in order; it raises when a limit is exceeded.

    ``name`` is how errors refer to the stream (a file path); ``how_to_fix`` ends each error.
    ``fast=False`` checks every chunk on the exact path (for tests).
    """

    def __init__(
        self, name: str, *, limits: JsonLimits | None = None, how_to_fix: str, fast: bool = True
    ) -> None:
        self._name = name
        self._limits = limits = limits or JsonLimits()
        self._fix = how_to_fix
        # The fast path relies on every string and item that ends within a chunk being
        # within the limits, so it only takes chunks no longer than the smallest of them.
        self._fast_max = min(limits.max_string_bytes, limits.max_item_bytes) if fast else -1
        self._offset = 0  # absolute offset of the next chunk
        self._depth = 0
        self._in_stream = False  # the open depth-2 container is the "messages" array
        self._in_string = False
        self._escape = False  # the previous chunk ended inside a string right after a backslash
        self._string_start = 0
        self._key = b""  # the last string at depth 1 (the key of what opens next), when short
        self._key_open = False
        self._token_run = 0  # length of the number/literal the previous chunk ended in
        self._item_start: int | None = None
        self._item_depth = 0
        self._item_values = 0

    def skip(self, count: int) -> None:
        """Count ``count`` bytes that precede the JSON (a byte order mark) in offsets."""
        self._offset += count

    def feed(self, chunk: bytes) -> None:
        """Check the next ``chunk`` of the stream."""
        if not chunk:
            return
        if len(chunk) > self._fast_max or not self._fast(chunk):
            self._exact(chunk)

    # -- fast path ------------------------------------------------------------------------

    def _fast(self, chunk: bytes) -> bool:
        """Check a chunk inside the messages array; False (nothing changed) to go exact."""
        limits = self._limits
        if not self._in_stream or self._depth < 2:
            return False
        base, end, pos = self._offset, len(chunk), 0
        item_start, item_values = self._item_start, self._item_values
        if self._in_string:
            body = _STRING_BODY.match(chunk, 1 if self._escape else 0)
            stop = body.end() if body else end
            closed = stop < end and chunk[stop] == _QUOTE
            if base + (stop + 1 if closed else end) - self._string_start > limits.max_string_bytes:
                return False
            if not closed:  # the whole chunk is inside the string
                if item_start is not None and base + end - item_start > limits.max_item_bytes:
                    return False
                self._escape = stop < end  # it ends with a lone backslash
                self._offset = base + end
                return True
            pos = stop + 1
        elif self._token_run:
            lead = _TOKEN_LEAD.match(chunk)
            if lead and self._token_run + lead.end() > limits.max_token_bytes:
                return False
        data = chunk[pos:] if pos else chunk
        if b"\\" in data:
            data = _ESCAPE.sub(b"", data)
        quotes = data.count(b'"')
        # Left: brackets outside strings, and those inside strings that contain one.
        reduced = data.translate(None, _NOT_STRUCTURAL).replace(b'""', b"")
        if b'"' in reduced:
            reduced = b"".join(reduced.split(b'"')[0::2])
        steps = reduced.translate(_STEPS)
        depths = list(accumulate(array("b", steps), initial=self._depth))
        if max(depths) > limits.max_depth or min(depths) < 2:
            return False
        values = (quotes + 1) // 2 + steps.count(1)
        # Values and span of the chunk are upper bounds for those of any item in it.
        if item_start is not None and (
            item_values + values > limits.max_item_values
            or base + end - item_start > limits.max_item_bytes
        ):
            return False
        if 2 in depths:  # the open item (if any) closed; maybe others opened
            item_start, item_values = (base, values) if depths[-1] >= 3 else (None, 0)
        else:
            item_values += values
        ends_in_string = quotes % 2 == 1
        token_run = 0
        if not ends_in_string:
            last = max(chunk.rfind(d) for d in _TOKEN_ENDS)
            token_run = end - last - 1 if last >= 0 else self._token_run + end
            if token_run > limits.max_token_bytes:
                return False
            self._escape = False
        else:
            self._string_start = base + self._last_opening_quote(chunk, pos)
            self._escape = data.endswith(b"\\")
        self._in_string = ends_in_string
        self._token_run = token_run
        self._depth = depths[-1]
        self._item_start, self._item_values = item_start, item_values
        self._offset = base + end
        return True

    @staticmethod
    def _last_opening_quote(chunk: bytes, start: int) -> int:
        """Position of the last quote at or after ``start`` that no backslash escapes."""
        at = chunk.rfind(b'"', start)
        while at > start:
            slashes = 0
            while at - slashes - 1 >= start and chunk[at - slashes - 1] == _BACKSLASH:
                slashes += 1
            if slashes % 2 == 0:
                break
            at = chunk.rfind(b'"', start, at)
        return at

    # -- exact path -----------------------------------------------------------------------

    def _exact(self, chunk: bytes) -> None:
        """Check a chunk token by token: exact offsets, key tracking, every limit."""
        limit = self._limits.max_token_bytes
        base = self._offset
        end = len(chunk)
        carried, self._token_run = self._token_run, 0
        if self._in_string:
            pos = self._scan_string(chunk, 0, base)
        else:
            pos = 0
            lead = _TOKEN_LEAD.match(chunk)
            if carried and lead and carried + lead.end() > limit:
                self._token_error(base - carried)
        while pos < end:
            match = _STRUCTURAL.search(chunk, pos)
            if match is None:
                break
            at = match.start()
            char = chunk[at]
            if char == _QUOTE:
                self._in_string = True
                self._string_start = base + at
                self._key_open = self._depth == 1
                self._key = b""
                self._count_value(base + at)
                pos = self._scan_string(chunk, at + 1, base)
            elif char in _OPENERS:
                self._open(base + at)
                pos = at + 1
            else:  # ] }
                self._depth -= 1
                if self._depth < 2:
                    self._in_stream = False
                if self._item_start is not None and self._depth < self._item_depth:
                    self._check_item(base + at + 1)
                    self._item_start = None
                pos = at + 1
        if not self._in_string:
            last = max(chunk.rfind(d) for d in _TOKEN_ENDS)
            run = end - last - 1 if last >= 0 else carried + end
            if run > limit:
                self._token_error(base + end - run)
            self._token_run = run
        self._offset = base + end
        if self._item_start is not None:
            self._check_item(self._offset)

    def _scan_string(self, chunk: bytes, pos: int, base: int) -> int:
        """Consume a string body from ``pos``; return where scanning continues."""
        if self._escape:
            self._escape = False
            pos += 1
        body = _STRING_BODY.match(chunk, pos)
        stop = body.end() if body else pos
        if self._key_open and len(self._key) <= len(_STREAM_KEY):
            self._key += chunk[pos : min(stop, pos + len(_STREAM_KEY) + 1)]
        if stop < len(chunk) and chunk[stop] == _QUOTE:
            self._in_string = False
            self._key_open = False
            self._check_string(base + stop + 1)
            return stop + 1
        if stop < len(chunk):  # a lone backslash ends the chunk
            self._escape = True
        self._check_string(base + len(chunk))
        return len(chunk)

    def _open(self, at: int) -> None:
        self._depth += 1
        limits = self._limits
        if self._depth > limits.max_depth:
            raise InvalidInputError(
                f"{self._name}: the JSON is nested more than {limits.max_depth} levels deep at "
                f"byte {at}; an export nests fewer than 10, so the file is damaged or not an "
                f"export: {self._fix}"
            )
        if self._depth == 2:
            self._in_stream = self._key == _STREAM_KEY
        if self._item_start is None and (
            self._depth == 3 or (self._depth == 2 and not self._in_stream)
        ):
            self._item_start, self._item_depth, self._item_values = at, self._depth, 0
        self._count_value(at)

    def _count_value(self, at: int) -> None:
        if self._item_start is None:
            return
        self._item_values += 1
        if self._item_values > self._limits.max_item_values:
            raise InvalidInputError(
                f"{self._name}: the JSON value starting around byte {self._item_start} holds "
                f"more than {self._limits.max_item_values} strings, objects and arrays (at "
                f"byte {at}); no message of an export is that large: {self._fix}"
            )

    def _check_item(self, at: int) -> None:
        assert self._item_start is not None
        if at - self._item_start > self._limits.max_item_bytes:
            raise InvalidInputError(
                f"{self._name}: the JSON value starting around byte {self._item_start} is "
                f"longer than {_size(self._limits.max_item_bytes)}; no message of an export "
                f"is that large: {self._fix}"
            )

    def _check_string(self, at: int) -> None:
        limit = self._limits.max_string_bytes
        if at - self._string_start > limit:
            raise InvalidInputError(
                f"{self._name}: the JSON string starting at byte {self._string_start} is longer "
                f"than {_size(limit)}; no field of an export is that long: {self._fix}"
            )

    def _token_error(self, at: int) -> None:
        raise InvalidInputError(
            f"{self._name}: the JSON number or literal at byte {at} is longer than "
            f"{_size(self._limits.max_token_bytes)}; no field of an export is that long: "
            f"{self._fix}"
        )
