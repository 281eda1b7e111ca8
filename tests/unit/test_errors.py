from __future__ import annotations

import httpx
import pytest
import redis.exceptions
import sqlalchemy.exc
from celery.exceptions import SoftTimeLimitExceeded

from shared.errors import (
    ErrorKind,
    InvalidInputError,
    PermanentError,
    RateLimitedError,
    TransientError,
    classify,
)


@pytest.mark.parametrize(
    ("exc", "kind"),
    [
        (TransientError("x"), ErrorKind.TRANSIENT),
        (RateLimitedError("x", retry_after=2), ErrorKind.TRANSIENT),
        (PermanentError("x"), ErrorKind.PERMANENT),
        (InvalidInputError("x"), ErrorKind.PERMANENT),
        (ConnectionResetError(), ErrorKind.TRANSIENT),
        (TimeoutError(), ErrorKind.TRANSIENT),
        (httpx.ConnectError("refused"), ErrorKind.TRANSIENT),
        (httpx.ReadTimeout("slow"), ErrorKind.TRANSIENT),
        (redis.exceptions.ConnectionError(), ErrorKind.TRANSIENT),
        (sqlalchemy.exc.OperationalError("select 1", {}, Exception("gone")), ErrorKind.TRANSIENT),
        (sqlalchemy.exc.IntegrityError("insert", {}, Exception("dup")), ErrorKind.PERMANENT),
        (SoftTimeLimitExceeded(), ErrorKind.TRANSIENT),
        (KeyError("bug"), ErrorKind.PERMANENT),
        (ValueError("bug"), ErrorKind.PERMANENT),
    ],
)
def test_classify(exc: BaseException, kind: ErrorKind) -> None:
    assert classify(exc) is kind


def test_user_message_defaults_to_the_message() -> None:
    assert PermanentError("plain").user_message == "plain"
    assert PermanentError("detail", user_message="for users").user_message == "for users"
