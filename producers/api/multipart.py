"""A streaming reader of the one file part of a ``multipart/form-data`` body (RFC 7578).

The upload route feeds the body as it arrives and gets the file's bytes back piece by piece:
nothing but the delimiter's length of look-behind is buffered, whatever the file's size.  Only
one part, named ``file``, is accepted; the job's options travel in the query string, so any
other part is refused with a message saying so.
"""

from __future__ import annotations

import re
from enum import Enum, auto

from shared.errors import InvalidInputError

__all__ = ["FILE_FIELD", "MultipartFile", "boundary_of"]

#: The name of the form field that carries the file.
FILE_FIELD = "file"

_MAX_HEADERS = 16 * 1024
_BOUNDARY = re.compile(r'boundary="?([^";]{1,70})"?', re.IGNORECASE)
_NAME = re.compile(rb'\bname="([^"]*)"', re.IGNORECASE)
_HOW = f"send the export as one form field named {FILE_FIELD!r} (curl -F {FILE_FIELD}=@export.json)"


def boundary_of(content_type: str) -> bytes:
    """The boundary parameter of a ``multipart/form-data`` Content-Type."""
    found = _BOUNDARY.search(content_type)
    if found is None:
        raise InvalidInputError(
            "the multipart/form-data Content-Type has no boundary parameter; let your HTTP "
            f"client build the form: {_HOW}"
        )
    return found.group(1).encode("latin-1")


class _State(Enum):
    PREAMBLE = auto()
    AFTER_BOUNDARY = auto()
    HEADERS = auto()
    BODY = auto()
    DONE = auto()


class MultipartFile:
    """Feed it the body's chunks in order; :meth:`feed` returns the file bytes they held."""

    def __init__(self, boundary: bytes) -> None:
        self._first = b"--" + boundary
        self._delimiter = b"\r\n--" + boundary
        self._state = _State.PREAMBLE
        self._buffer = bytearray()
        self._files = 0

    def feed(self, data: bytes) -> bytes:
        """Consume ``data``; the bytes of the file part it completed or continued."""
        self._buffer += data
        out = bytearray()
        while self._step(out):
            pass
        return bytes(out)

    def _step(self, out: bytearray) -> bool:
        """Advance one state if the buffer allows; False when more input is needed."""
        buffer = self._buffer
        if self._state is _State.PREAMBLE:
            at = buffer.find(self._first)
            if at < 0:
                # Keep only what could be the start of the first boundary.
                del buffer[: max(0, len(buffer) - len(self._first))]
                return False
            del buffer[: at + len(self._first)]
            self._state = _State.AFTER_BOUNDARY
            return True
        if self._state is _State.AFTER_BOUNDARY:
            if len(buffer) < 2:
                return False
            if buffer[:2] == b"--":
                self._state = _State.DONE
                buffer.clear()
                return False
            end = buffer.find(b"\r\n")
            if end < 0:
                return len(buffer) > _MAX_HEADERS and self._malformed("a boundary line")
            del buffer[: end + 2]  # transport padding after the boundary is allowed
            self._state = _State.HEADERS
            return True
        if self._state is _State.HEADERS:
            end = buffer.find(b"\r\n\r\n")
            if end < 0:
                if len(buffer) > _MAX_HEADERS:
                    return self._malformed("part headers longer than 16 KiB")
                return False
            self._part(bytes(buffer[:end]))
            del buffer[: end + 4]
            self._state = _State.BODY
            return True
        if self._state is _State.BODY:
            at = buffer.find(self._delimiter)
            if at < 0:
                safe = len(buffer) - len(self._delimiter) + 1
                if safe > 0:
                    out += buffer[:safe]
                    del buffer[:safe]
                return False
            out += buffer[:at]
            del buffer[: at + len(self._delimiter)]
            self._state = _State.AFTER_BOUNDARY
            return True
        buffer.clear()  # the epilogue after the last boundary is ignored
        return False

    def _part(self, headers: bytes) -> None:
        disposition = next(
            (
                line
                for line in headers.split(b"\r\n")
                if line.lower().startswith(b"content-disposition:")
            ),
            None,
        )
        name = _NAME.search(disposition or b"")
        field = name.group(1).decode("utf-8", "replace") if name else None
        if field != FILE_FIELD:
            raise InvalidInputError(
                f"the form has a part named {field!r}; this route reads only the {FILE_FIELD!r} "
                "part (give the job's options in the query string): " + _HOW,
                field=FILE_FIELD,
            )
        self._files += 1
        if self._files > 1:
            raise InvalidInputError(
                f"the form has more than one {FILE_FIELD!r} part; send one conversation per job",
                field=FILE_FIELD,
            )

    def _malformed(self, what: str) -> bool:
        raise InvalidInputError(f"the multipart body is malformed ({what}); {_HOW}")

    def close(self) -> None:
        """Check the body ended properly with exactly one file part."""
        if self._files == 0:
            raise InvalidInputError(
                f"the form has no {FILE_FIELD!r} part; {_HOW}", field=FILE_FIELD
            )
        if self._state is not _State.DONE:
            raise InvalidInputError(
                f"the multipart body ends before its closing boundary (a cut-off upload?); {_HOW}"
            )
