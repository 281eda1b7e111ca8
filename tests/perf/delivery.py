"""Delivery benchmark: webhook overhead, throughput across 4 deliver workers, an outage.

Run ``python -m tests.perf.delivery`` with PostgreSQL and Redis on 127.0.0.1 (Redis database
``TEST_REDIS_DB``, default 11; it is flushed).  Three phases:

1. overhead: one process sends 300 ``summary.completed`` webhooks to a local receiver, timing
   the webhook path (endpoint lookup, event, encoding, signing, HTTP round trip) and the whole
   deliver stage (claim, send, record);
2. throughput: 1,000 deliveries across 4 ``summarybot worker -Q deliver`` processes;
3. outage: the receiver refuses connections for the first ``--down-seconds`` (default 150) of
   300 deliveries, then comes back; the retry schedule (production's shape, compressed to
   ``OUTAGE_RETRY_SCHEDULE``: 0, 5, 15 s, then every 30 s for five minutes) and the delivery
   sweep bring every one of them through.

    python -m tests.perf.delivery [--down-seconds 150]

The last line is one JSON object: ``webhook_overhead_p50_ms``, ``webhook_overhead_p99_ms``,
``deliver_p99_ms``, ``deliveries``, ``per_second``, ``duplicates``, ``outage_deliveries``,
``down_seconds``, ``lost``, ``drained_after_up_s``, ``retries_during_outage``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

import psycopg
import redis
from sqlalchemy import func, select

from schema.models.delivery_log import DeliveryAttempt
from shared.crypto import SecretBox, generate_key
from shared.db.engine import make_engine, make_sessionmaker
from shared.db.migrate import upgrade
from shared.delivery.outbox import Claim, RetryRules, claim_item, record_outcome
from shared.delivery.webhook_target import send_webhook
from shared.logging import configure_logging
from tests.fakes.enqueuer import RecordingEnqueuer
from tests.fakes.webhook_receiver import WebhookReceiver
from tests.integration.delivery.harness import (
    DeliverWorkers,
    Sweeper,
    counts,
    deliver_env,
    publish,
    publisher,
    settings_from,
    wait_until,
)
from tests.unit.delivery.helpers import (
    add_endpoint,
    add_summary,
    deliver,
    make_runtime,
    make_services,
)

PG = os.environ.get("TEST_PG_HOST", "127.0.0.1")
REDIS_DB = int(os.environ.get("TEST_REDIS_DB", "11"))
OVERHEAD_SENDS = 300
THROUGHPUT = 1000
WORKERS = 4
OUTAGE = 300
DOWN_SECONDS = 150.0
#: Seconds between attempts: immediately, 5 s, 15 s, then every 30 s (about 5 minutes in all).
OUTAGE_RETRY_SCHEDULE = "0,5,15," + ",".join(["30"] * 10)


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def _overhead(url: str, key: str, receiver: WebhookReceiver) -> dict[str, float]:
    engine = make_engine(url)
    factory = make_sessionmaker(engine)
    box = SecretBox([key])
    runtime = make_runtime(box)
    settings = settings_from(
        deliver_env(url, f"redis://127.0.0.1:6379/{REDIS_DB}", key, Path(tempfile.gettempdir()))
    )
    services = make_services(settings, factory, enqueuer=RecordingEnqueuer(), runtime=runtime)
    endpoint_id, secret = add_endpoint(factory, box, f"{receiver.url}/overhead")
    receiver.secrets = [secret]
    target = [{"kind": "webhook", "endpoint_id": str(endpoint_id)}]
    rules = RetryRules(
        schedule=runtime.settings.webhook_retry_schedule,
        jitter=runtime.settings.webhook_retry_jitter,
        disable_after=timedelta(days=runtime.settings.webhook_disable_after_days),
        rng=runtime.rng,
    )
    webhook_ms: list[float] = []
    for index in range(OVERHEAD_SENDS + 20):
        fan = add_summary(factory, target)
        claim = claim_item(factory, fan.delivery_ids[0], now=services.clock(), lease=_lease())
        assert isinstance(claim, Claim), claim
        started = time.perf_counter()
        outcome = send_webhook(
            claim,
            session_factory=factory,
            http=runtime.http,
            box=box,
            now=services.clock(),
            timeout=15,
            max_payload_bytes=runtime.settings.webhook_max_payload_bytes,
        )
        elapsed = (time.perf_counter() - started) * 1000
        assert outcome.ok, outcome.error
        if index >= 20:  # warm-up: connections, caches
            webhook_ms.append(elapsed)
        # Recorded (untimed), so no lease runs out later and the sweep sends it again in the
        # outage phase, to a receiver that is gone.
        with factory() as session, session.begin():
            record_outcome(
                session,
                claim,
                outcome,
                now=services.clock(),
                started_at=services.clock(),
                rules=rules,
            )
    deliver_ms: list[float] = []
    for _ in range(OVERHEAD_SENDS // 2):
        fan = add_summary(factory, target)
        started = time.perf_counter()
        deliver(services, fan.job_id, fan.delivery_ids[0])
        deliver_ms.append((time.perf_counter() - started) * 1000)
    runtime.close()
    engine.dispose()
    return {
        "webhook_overhead_p50_ms": round(statistics.median(webhook_ms), 2),
        "webhook_overhead_p99_ms": round(_pct(webhook_ms, 0.99), 2),
        "deliver_p99_ms": round(_pct(deliver_ms, 0.99), 2),
    }


def _lease() -> timedelta:
    return timedelta(seconds=60)


def _fan_out(
    factory: Any, endpoint_id: uuid.UUID, count: int
) -> list[tuple[uuid.UUID, uuid.UUID, uuid.UUID]]:
    target = [{"kind": "webhook", "endpoint_id": str(endpoint_id)}]
    fans = [add_summary(factory, target) for _ in range(count)]
    return [(f.job_id, f.delivery_ids[0], f.summary_id) for f in fans]


def main(argv: list[str] | None = None) -> None:
    """Run the three phases; the last line printed is the JSON of figures."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--down-seconds", type=float, default=DOWN_SECONDS)
    down_seconds = parser.parse_args(argv).down_seconds
    configure_logging(level="WARNING", fmt="console")
    name = f"sb_perf_delivery_{uuid.uuid4().hex[:8]}"
    admin = f"host={PG} port=5432 user=postgres dbname=postgres"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = f"postgresql+psycopg://postgres@{PG}:5432/{name}"
    redis_url = f"redis://127.0.0.1:6379/{REDIS_DB}"
    broker = redis.Redis.from_url(redis_url)
    broker.flushdb()
    tmp = Path(tempfile.mkdtemp(prefix="sb-perf-delivery-"))
    figures: dict[str, Any] = {}
    try:
        upgrade(url)
        key = generate_key()
        with WebhookReceiver() as receiver:
            figures.update(_overhead(url, key, receiver))
            print(f"overhead: {figures}", file=sys.stderr)

        env = deliver_env(
            url, redis_url, key, tmp / "data", WEBHOOK_RETRY_SCHEDULE=OUTAGE_RETRY_SCHEDULE
        )
        settings = settings_from(env)
        engine = make_engine(url)
        factory = make_sessionmaker(engine)
        box = SecretBox([key])
        with WebhookReceiver() as receiver:
            endpoint_id, secret = add_endpoint(factory, box, f"{receiver.url}/bench")
            receiver.secrets = [secret]
            workers = DeliverWorkers(env, tmp, count=WORKERS, concurrency=1)
            try:
                with publisher(settings) as app:
                    warm = _fan_out(factory, endpoint_id, 2 * WORKERS)
                    publish(app, [(j, d) for j, d, _ in warm])
                    assert wait_until(
                        lambda: (
                            counts(factory, [s for _, _, s in warm]).get("sent", 0) == len(warm)
                        ),
                        timeout=120,
                    ), "the workers did not start"
                    batch = _fan_out(factory, endpoint_id, THROUGHPUT)
                    ids = [s for _, _, s in batch]
                    started = time.perf_counter()
                    publish(app, [(j, d) for j, d, _ in batch])
                    assert wait_until(
                        lambda: counts(factory, ids).get("sent", 0) == THROUGHPUT,
                        timeout=300,
                        step=0.05,
                    ), f"throughput phase stuck: {counts(factory, ids)}"
                    seconds = time.perf_counter() - started
                    figures["deliveries"] = THROUGHPUT
                    figures["workers"] = WORKERS
                    figures["seconds"] = round(seconds, 2)
                    figures["per_second"] = round(THROUGHPUT / seconds, 1)
                    figures["duplicates"] = receiver.duplicates
                    print(f"throughput: {figures}", file=sys.stderr)

                    outage = _fan_out(factory, endpoint_id, OUTAGE)
                    outage_ids = [s for _, _, s in outage]
                    before = receiver.accepted()
                    receiver.down()
                    with Sweeper(settings, factory, app, interval=1.0):
                        publish(app, [(j, d) for j, d, _ in outage])
                        time.sleep(down_seconds)
                        receiver.up()
                        up_at = time.perf_counter()
                        wait_until(
                            lambda: counts(factory, outage_ids).get("sent", 0) == OUTAGE,
                            timeout=240,
                            step=0.1,
                        )
                        drained = time.perf_counter() - up_at
                    final = counts(factory, outage_ids)
                    with factory() as session:
                        retries = session.scalar(
                            select(func.count())
                            .select_from(DeliveryAttempt)
                            .where(
                                DeliveryAttempt.outcome == "retry",
                                DeliveryAttempt.delivery_id.in_([d for _, d, _ in outage]),
                            )
                        )
                    figures["outage_deliveries"] = OUTAGE
                    figures["down_seconds"] = down_seconds
                    figures["lost"] = OUTAGE - (receiver.accepted() - before)
                    figures["not_sent"] = OUTAGE - final.get("sent", 0)
                    figures["drained_after_up_s"] = round(drained, 2)
                    figures["retries_during_outage"] = int(retries or 0)
                    figures["duplicates"] = receiver.duplicates
            finally:
                workers.stop()
        engine.dispose()
    except BaseException:
        print(f"the deliver workers' logs are kept in {tmp}", file=sys.stderr)
        raise
    else:
        shutil.rmtree(tmp, ignore_errors=True)
    finally:
        broker.flushdb()
        broker.close()
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
