"""The Celery floor for ``pipeline_overhead``: three tasks that only pass a value on.

    python -m tests.perf.bare_chain REDIS_URL

runs a worker with the pipeline's Celery settings (``celeryconfig``: acks_late, prefetch 1,
JSON, events) and the same worker options ``summarybot worker`` uses (prefork, concurrency 1,
``--events``, ``--without-mingle``), consuming three queues of its own.  A chain
``hop1 → hop2 → hop3`` is published by :func:`chain_of`; the last hop sets ``bare:done:TOKEN``
in Redis to the time it ended, which the benchmark polls as it polls a job's end in Postgres.
"""

from __future__ import annotations

import sys
import time

import redis
from celery import Celery, Task, chain
from celery.canvas import Signature

import celeryconfig

__all__ = ["DONE_PREFIX", "QUEUES", "chain_of", "make_app"]

QUEUES = ("bare_hop1", "bare_hop2", "bare_hop3")
DONE_PREFIX = "bare:done:"


def make_app(broker_url: str) -> Celery:
    """A Celery app with the pipeline's settings and the three hops registered."""
    app = Celery("bare_chain", set_as_current=False)
    app.config_from_object(celeryconfig)
    app.conf.update(
        broker_url=broker_url,
        task_routes={f"bare.{q}": {"queue": q, "routing_key": q} for q in QUEUES},
        task_queues=(),
        task_default_queue=QUEUES[0],
        **celeryconfig.time_bounds(celeryconfig.VISIBILITY_TIMEOUT),
    )
    # The last hop's own client, built lazily in the pool child (after fork).
    clients: dict[str, redis.Redis[bytes]] = {}

    def passes(value: str) -> str:
        return value

    def done(value: str) -> str:
        client = clients.get("done")
        if client is None:
            client = clients["done"] = redis.Redis.from_url(broker_url)
        # The value is when the chain ended, by this machine's clock: the benchmark reads it
        # to time the chain without its polling interval.
        client.set(DONE_PREFIX + value, repr(time.time()), ex=600)
        return value

    for queue, fn in zip(QUEUES, (passes, passes, done), strict=True):
        app.task(name=f"bare.{queue}", queue=queue, acks_late=True, shared=False)(fn)
    return app


def chain_of(app: Celery, token: str) -> Signature:
    """The three-hop chain for ``token``, ready to ``apply_async()``."""
    hops: list[Task] = [app.tasks[f"bare.{q}"] for q in QUEUES]
    return chain(hops[0].s(token), hops[1].s(), hops[2].s())


def main(argv: list[str] | None = None) -> None:
    """Run the bare worker on ``REDIS_URL`` until it is stopped."""
    args = sys.argv[1:] if argv is None else argv
    app = make_app(args[0])
    app.worker_main(
        [
            "worker",
            f"--queues={','.join(QUEUES)}",
            "--concurrency=1",
            "--pool=prefork",
            "--events",
            "--loglevel=INFO",
            "--without-mingle",
            "--hostname=bare@%h",
        ]
    )


if __name__ == "__main__":
    main()
