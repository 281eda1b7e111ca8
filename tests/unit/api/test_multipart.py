"""The streaming reader of an upload's ``file`` form part (producers.api.multipart)."""

from __future__ import annotations

import httpx
import pytest

from producers.api.multipart import MultipartFile, boundary_of
from shared.errors import InvalidInputError

CONTENT = b'{"messages": []}\r\n--not-the-boundary\r\n' + bytes(range(256)) * 40


def _form(**files: bytes) -> tuple[bytes, str]:
    request = httpx.Request(
        "POST",
        "http://x/",
        files={name: (f"{name}.json", data, "application/json") for name, data in files.items()},
    )
    return request.read(), request.headers["content-type"]


def _read(body: bytes, content_type: str, size: int) -> bytes:
    parser = MultipartFile(boundary_of(content_type))
    out = b"".join(parser.feed(body[i : i + size]) for i in range(0, len(body), size))
    parser.close()
    return out


@pytest.mark.parametrize("size", [1, 2, 7, 64, 1000, 1 << 20])
def test_the_file_comes_out_whole_however_the_body_is_cut(size: int) -> None:
    body, content_type = _form(file=CONTENT)
    assert _read(body, content_type, size) == CONTENT


def test_another_part_is_refused_saying_options_go_in_the_query() -> None:
    body, content_type = _form(options=b"{}")
    with pytest.raises(InvalidInputError, match="query string"):
        _read(body, content_type, 100)


def test_two_files_are_refused() -> None:
    part = b'--B\r\nContent-Disposition: form-data; name="file"; filename="a.json"\r\n\r\n[]\r\n'
    body = part + part + b"--B--\r\n"
    with pytest.raises(InvalidInputError, match="more than one"):
        _read(body, "multipart/form-data; boundary=B", 50)


def test_a_cut_off_body_and_a_missing_boundary_are_refused() -> None:
    body, content_type = _form(file=CONTENT)
    with pytest.raises(InvalidInputError, match="closing boundary"):
        _read(body[:-30], content_type, 100)
    with pytest.raises(InvalidInputError, match="no boundary"):
        boundary_of("multipart/form-data")
    with pytest.raises(InvalidInputError, match="no 'file' part"):
        _read(b"", content_type, 10)
