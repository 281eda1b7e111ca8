"""Schemathesis against the API's own OpenAPI document, in process (ASGI), on real services.

Every operation gets ``--examples`` positive and as many negative cases (schemathesis makes
invalid inputs from the schema), sent with a valid admin key of a fresh guild over a migrated
temporary PostgreSQL database and the test Redis.  A case counts as a server error when the API
answers 5xx, and as a schema violation when the status code, content type or body is not what
the document says.  Operations on an id also run against a real job, summary, schedule and
endpoint.  Accepted jobs are recorded in the database; their fetch tasks go to an in-process
recorder instead of the broker, since no worker would ever run them.

    python -m tests.perf.api_fuzz [--examples 25] [--seed 1]

Last line: ``{"server_errors": 0, "schema_violations": 0, "cases": N}``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import redis
from hypothesis import HealthCheck, Phase, given, seed, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode, openapi
from schemathesis.checks import not_a_server_error
from schemathesis.core.failures import FailureGroup
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from producers.api.app import create_app
from producers.api.resources import ApiOptions
from shared.apikeys import create_api_key
from shared.crypto import SecretBox, generate_key
from shared.db.engine import make_engine, make_sessionmaker
from shared.settings import load_settings
from tests.fakes.enqueuer import RecordingEnqueuer
from tests.integration.api.server import redis_url, temporary_database
from tests.support.discord_tenants import DiscordTenants, open_tenants

CONFORMANCE = (status_code_conformance, content_type_conformance, response_schema_conformance)


@dataclass
class FuzzReport:
    """What the run found."""

    cases: int = 0
    server_errors: int = 0
    schema_violations: int = 0
    statuses: Counter[int] = field(default_factory=Counter)
    failures: list[str] = field(default_factory=list)


def fuzz_app(
    app: Any,
    *,
    headers: dict[str, str],
    examples: int,
    seed_value: int = 1,
    existing: dict[str, str] | None = None,
    log: Callable[[str], None] = lambda _line: None,
) -> FuzzReport:
    """Run ``examples`` positive and negative cases per operation of ``app``'s schema.

    ``existing`` maps path parameter names to ids of real resources: operations with such a
    parameter get a third pass on that resource (updates, rotations, deletions that succeed).
    """
    schema = openapi.from_asgi("/openapi.json", app)
    report = FuzzReport()
    for result in schema.get_all_operations():
        operation = result.ok()
        fixed = {
            name: value
            for name, value in (existing or {}).items()
            if "{" + name + "}" in operation.path
        }
        passes: list[tuple[GenerationMode, dict[str, str] | None]] = [
            (GenerationMode.POSITIVE, None),
            (GenerationMode.NEGATIVE, None),
        ]
        if fixed:
            passes.append((GenerationMode.POSITIVE, fixed))
        for mode, path_parameters in passes:

            @seed(seed_value)
            @settings(
                max_examples=examples,
                deadline=None,
                database=None,
                phases=[Phase.explicit, Phase.generate],
                suppress_health_check=list(HealthCheck),
                derandomize=False,
            )
            @given(
                case=operation.as_strategy(generation_mode=mode, path_parameters=path_parameters)
            )
            def run(case: Any) -> None:
                response = case.call(headers=headers)
                report.cases += 1
                report.statuses[response.status_code] += 1
                if response.status_code >= 500:
                    report.server_errors += 1
                    report.failures.append(
                        f"{case.method} {case.formatted_path} -> {response.status_code}: "
                        f"{response.text[:300]}"
                    )
                for checks, kind in (((not_a_server_error,), "server"), (CONFORMANCE, "schema")):
                    try:
                        case.validate_response(response, checks=list(checks), headers=headers)
                    except FailureGroup as exc:
                        if kind == "schema":
                            report.schema_violations += 1
                            report.failures.append(
                                f"{case.method} {case.formatted_path} ({response.status_code}): "
                                + "; ".join(f.title for f in exc.exceptions)
                            )

            started = time.perf_counter()
            try:
                run()
            except Unsatisfiable:
                # No invalid input exists (an operation without parameters or body).
                continue
            label = f"{mode.value}{' (existing)' if path_parameters else ''}"
            log(f"{operation.label:<55} {label:<20} {time.perf_counter() - started:5.1f} s")
    return report


def existing_resources(target: FuzzTarget) -> dict[str, str]:
    """Make one job, summary, schedule and webhook endpoint in the target's guild; their ids by
    path parameter name."""
    from fastapi.testclient import TestClient

    from tests.unit.api.conftest import insert_summary

    app, headers, channel = target.app, target.headers, target.channel
    with TestClient(app) as client:
        job = client.post("/v1/jobs", headers=headers, json={"channel_id": channel})
        endpoint = client.post(
            "/v1/webhook-endpoints", headers=headers, json={"url": "https://example.com/fuzz"}
        )
        schedule = client.post(
            "/v1/schedules",
            headers=headers,
            json={
                "channel_id": channel,
                "schedule": "daily 09:00 Europe/Berlin",
                "destination": {"kind": "webhook", "endpoint_id": endpoint.json()["id"]},
            },
        )
    _job, summary = insert_summary(
        target.factory, target.guild, member=("123456789012345670", "fuzzy")
    )
    return {
        "job_id": job.json()["id"],
        "summary_id": str(summary),
        "schedule_id": schedule.json()["id"],
        "endpoint_id": endpoint.json()["id"],
        "user_id": "123456789012345670",
    }


@dataclass
class FuzzTarget:
    """A fresh app on a migrated database, with an admin key of a guild of the fake Discord."""

    app: Any
    factory: sessionmaker[Session]
    engine: Engine
    headers: dict[str, str]
    guild: str
    channel: str


def fuzz_target(
    database_url: str, redis_url: str, client: Any, prefix: str, tenants: DiscordTenants
) -> FuzzTarget:
    """Build the app to fuzz: its Redis keys under ``prefix``, fetch tasks recorded, not sent,
    the guild boundary checked against ``tenants``' fake Discord."""
    engine = make_engine(database_url)
    factory = make_sessionmaker(engine)
    guild, channel = tenants.tenant()
    _row, token = create_api_key(
        factory,
        guild_id=guild,
        scopes=["admin"],
        name="fuzz",
        now=datetime.now(UTC),
        rate_limit_per_minute=1_000_000,
    )
    app = create_app(
        load_settings(database_url=database_url, redis_url=redis_url),
        session_factory=factory,
        redis=client,
        enqueuer=RecordingEnqueuer(),
        box=SecretBox([generate_key()]),
        directory=tenants.directory,
        options=ApiOptions(redis_prefix=prefix),
    )
    headers = {"Authorization": f"Bearer {token}"}
    return FuzzTarget(app, factory, engine, headers, guild, channel)


def main(argv: list[str] | None = None) -> None:
    """Fuzz a fresh app and print the figures (last line JSON)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=25, help="cases per operation and mode")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)

    url = redis_url()
    client: redis.Redis[Any] = redis.Redis.from_url(url)
    prefix = f"sbperf:fuzz:{uuid.uuid4().hex[:8]}"
    tenants = open_tenants()
    with temporary_database("fuzz") as database:
        target = fuzz_target(database, url, client, prefix, tenants)
        started = time.perf_counter()
        try:
            report = fuzz_app(
                target.app,
                headers=target.headers,
                examples=args.examples,
                seed_value=args.seed,
                existing=existing_resources(target),
                log=print,
            )
        finally:
            keys = list(client.scan_iter(match=f"{prefix}:*", count=1000))
            if keys:
                client.delete(*keys)
            client.close()
            target.engine.dispose()
            tenants.close()
    for line in report.failures[:20]:
        print("FAIL", line, file=sys.stderr)
    print(
        f"{report.cases} cases in {time.perf_counter() - started:.1f} s; statuses "
        + ", ".join(f"{code}: {n}" for code, n in sorted(report.statuses.items()))
    )
    print(
        json.dumps(
            {
                "server_errors": report.server_errors,
                "schema_violations": report.schema_violations,
                "cases": report.cases,
            }
        )
    )


if __name__ == "__main__":
    main()
