"""What an API server process opens before it takes connections.

A fresh process otherwise pays for these inside its first requests, all at once: the ORM's
mapper configuration, the publisher app's finalization (Celery builds its built-in tasks and
imports its canvas on the first publish), the database dialect's first-connect queries, the
first database, Redis and broker connections.  The requests that arrive meanwhile queue
behind them: a fresh process answered its first submission in 50-100 ms, then 3-5 ms (22-25
ms first with this warm-up).  Each step is best effort: a dependency that is down at start is
reported by ``/readyz`` and retried by the requests themselves, so a failure here is logged
and the server starts all the same.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import structlog
from kombu.exceptions import OperationalError as BrokerError
from redis.exceptions import RedisError
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import configure_mappers

if TYPE_CHECKING:
    from celery import Celery
    from redis import Redis
    from sqlalchemy.orm import Session, sessionmaker

__all__ = ["warm_up"]

log = structlog.get_logger("summarybot.api")


def warm_up(session_factory: sessionmaker[Session], redis: Redis[Any], publisher: Celery) -> None:
    """Configure the mappers, finalize the publisher and open one database, Redis and broker
    connection (see the module docstring); never raises for a dependency that does not answer."""
    began = time.perf_counter()
    configure_mappers()
    publisher.finalize(auto=True)
    failed: list[str] = []
    try:
        with session_factory() as session:
            session.execute(text("SELECT 1"))
    except SQLAlchemyError:
        failed.append("database")
    try:
        redis.ping()
    except RedisError:
        failed.append("redis")
    try:
        with publisher.producer_or_acquire() as producer:
            producer.connection.ensure_connection(max_retries=1, interval_start=0, interval_step=0)
    except (BrokerError, OSError):
        failed.append("broker")
    elapsed_ms = round((time.perf_counter() - began) * 1000, 1)
    if failed:
        log.warning("api.warm_up_incomplete", unavailable=failed, elapsed_ms=elapsed_ms)
    else:
        log.debug("api.warmed_up", elapsed_ms=elapsed_ms)
