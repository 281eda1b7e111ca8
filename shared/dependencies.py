"""One line for a dependency that is down: PostgreSQL or Redis unreachable, wrong credentials,
missing tables.

Commands a person runs (``summarize``, ``migrate``, ``replay``, ``keys``) turn these failures
into one line naming the variable, what happened and how to fix it (exit code 2) instead of a
driver traceback; :func:`check_redis` lets a command find out *before* it writes anything.
"""

from __future__ import annotations

from typing import TYPE_CHECKING
from urllib.parse import urlsplit

import redis
import sqlalchemy.exc
from kombu.exceptions import OperationalError as BrokerError

from shared.errors import ConfigError

if TYPE_CHECKING:
    from shared.llm.config import LLMSettings

__all__ = [
    "UNREACHABLE",
    "check_llm_at_start",
    "check_redis",
    "check_schema_at_start",
    "dependency_line",
]

#: Exceptions that mean "a dependency is down or refuses us", not a bug.
UNREACHABLE: tuple[type[BaseException], ...] = (
    sqlalchemy.exc.OperationalError,
    sqlalchemy.exc.InterfaceError,
    sqlalchemy.exc.ProgrammingError,
    redis.exceptions.ConnectionError,
    redis.exceptions.TimeoutError,
    BrokerError,
)


def _first_line(exc: BaseException) -> str:
    inner = getattr(exc, "orig", None) or exc
    text = str(inner).strip().splitlines()
    return text[0].strip() if text else type(inner).__name__


def dependency_line(exc: BaseException) -> str | None:
    """The one line for ``exc`` when it is a dependency failure (see module docstring)."""
    if isinstance(exc, sqlalchemy.exc.ProgrammingError):
        if "does not exist" in str(exc):
            return (
                "DATABASE_URL: the database has no tables (or an old schema); "
                "run `summarybot migrate`"
            )
        return None
    if isinstance(exc, sqlalchemy.exc.OperationalError | sqlalchemy.exc.InterfaceError):
        detail = _first_line(exc)
        lowered = detail.lower()
        credentials = (
            "password authentication failed" in lowered
            or "no password supplied" in lowered
            or ("role" in lowered and "does not exist" in lowered)
        )
        if credentials:
            return (
                f"DATABASE_URL: PostgreSQL refused the credentials ({detail}); "
                "fix the user and password in DATABASE_URL"
            )
        if "database" in lowered and "does not exist" in lowered:
            return f"DATABASE_URL: {detail}; create it, then run `summarybot migrate`"
        return (
            f"DATABASE_URL: the database is not reachable ({detail}); start it or fix DATABASE_URL"
        )
    if isinstance(exc, redis.exceptions.AuthenticationError):
        return (
            f"REDIS_URL: Redis refused the credentials ({_first_line(exc)}); "
            "fix the password in REDIS_URL"
        )
    if isinstance(exc, redis.exceptions.ConnectionError | redis.exceptions.TimeoutError):
        return f"REDIS_URL: Redis is not reachable ({_first_line(exc)}); start it or fix REDIS_URL"
    if isinstance(exc, BrokerError):
        return (
            f"REDIS_URL: the broker is not reachable ({_first_line(exc)}); "
            "start Redis or fix REDIS_URL"
        )
    return None


def _refusal(exc: redis.exceptions.ResponseError) -> str:
    """The line for Redis refusing the connection itself (``SELECT``, ``AUTH``, ``HELLO``)."""
    detail = _first_line(exc)
    if "db index" in detail.lower():
        return (
            f"REDIS_URL: Redis refused the database number ({detail}); use one below the "
            "server's `databases` setting (16 by default: 0 to 15)"
        )
    return f"REDIS_URL: Redis refused the connection ({detail}); fix REDIS_URL"


def check_redis(url: str, *, timeout: float = 3.0, allow_unreachable: bool = False) -> None:
    """Raise :class:`ConfigError` with one line when Redis at ``url`` does not answer a PING.

    ``allow_unreachable``: only what retrying cannot fix is raised (wrong credentials, a
    database number the server does not have); a Redis that is down is left to the caller's
    reconnecting (a worker's broker connection retries for ever).
    """
    client = redis.Redis.from_url(url, socket_connect_timeout=timeout, socket_timeout=timeout)
    try:
        client.ping()
    except redis.exceptions.ResponseError as exc:
        raise ConfigError(_refusal(exc)) from None
    except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError) as exc:
        permanent = isinstance(exc, redis.exceptions.AuthenticationError)
        if allow_unreachable and not permanent:
            return
        line = dependency_line(exc)
        raise ConfigError(line or f"REDIS_URL: {urlsplit(url).hostname}: {exc}") from None
    finally:
        client.close()


def check_schema_at_start(url: str) -> None:
    """Raise :class:`ConfigError` when the database answers but cannot serve this release.

    For processes that run for long (workers, the bot, the API): a database that was never
    migrated, or is behind this release, would fail every task or request; a wrong password or
    database name never gets better.  A database that does not answer is left to the process's
    retries, and one migrated by a newer release is accepted (migrations are expand →
    contract, so the previous release keeps working during a rolling update).
    """
    from shared.db.engine import make_engine
    from shared.db.revisions import SCHEMA_HEAD, SCHEMA_REVISIONS, database_revision

    engine = make_engine(url)
    try:
        with engine.connect() as connection:
            at = database_revision(connection)
    except UNREACHABLE as exc:
        line = dependency_line(exc)
        if line is not None and "not reachable" not in line:
            raise ConfigError(line) from None
        return
    finally:
        engine.dispose()
    if at is None:
        raise ConfigError(
            "DATABASE_URL: the database has no tables (it was never migrated); "
            "run `summarybot migrate`, then start this process again"
        )
    if at != SCHEMA_HEAD and at in SCHEMA_REVISIONS:
        raise ConfigError(
            f"DATABASE_URL: the database is at schema revision {at}, this release needs "
            f"{SCHEMA_HEAD}; run `summarybot migrate`, then start this process again"
        )


#: How long a start-up check waits for the LLM endpoint's model list.
LLM_CHECK_TIMEOUT = 10.0


def check_llm_at_start(settings: LLMSettings) -> str | None:
    """Ask a configured LLM endpoint for its models once, before a worker that summarizes.

    Raises :class:`ConfigError` only when the endpoint says the key itself does not exist
    (OpenAI's ``invalid_api_key``): every summary would fail.  A 401 or 403 for another
    reason is not that: a restricted OpenAI key without the models scope cannot list models
    and can still summarize.  Returns a warning line for what may pass or may be fine: an
    endpoint that cannot be reached now (the summarize stage waits and retries), one that
    lists no models (a 404 there often means ``/v1`` is missing from ``LLM_BASE_URL``), or a
    list without ``LLM_MODEL``; None when the endpoint lists ``LLM_MODEL``.
    """
    from shared.llm.client import (
        LLMAuthError,
        LLMClient,
        LLMConnectionError,
        LLMEndpointNotFoundError,
        LLMTimeoutError,
    )

    base = settings.effective_base_url
    quick = settings.model_copy(update={"request_timeout": LLM_CHECK_TIMEOUT})
    with LLMClient.embedded(quick) as client:
        try:
            models = client.list_models()
        except LLMAuthError as exc:
            if exc.code == "invalid_api_key":
                raise ConfigError(
                    f"OPENAI_API_KEY: {base} refused the key ({exc}); give a valid key, or "
                    "LLM_API_KEY_FILE naming a file that holds one"
                ) from None
            return f"LLM: {base} would not list its models ({exc}); summaries go ahead"
        except (LLMConnectionError, LLMTimeoutError) as exc:
            return (
                f"LLM_BASE_URL: {base} cannot be reached now ({exc}); summaries wait for it "
                "and retry"
            )
        except LLMEndpointNotFoundError as exc:
            return (
                f"LLM_BASE_URL: {base} has no model list ({exc}); an OpenAI-compatible URL "
                "usually ends in /v1"
            )
        except Exception as exc:  # noqa: BLE001 - a check that cannot tell says so and stands aside
            return f"LLM: {base} did not list its models ({exc})"
    if models and settings.model not in models:
        shown = ", ".join(models[:10]) + (" …" if len(models) > 10 else "")
        return (
            f"LLM_MODEL: {settings.model!r} is not among the models {base} lists ({shown}); "
            "summaries will fail unless the server accepts it"
        )
    return None
