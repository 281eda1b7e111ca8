"""``summarybot replay`` and ``summarybot rotate-keys``: operator commands around delivery.

``replay`` re-drives what ended badly: dead letters (tasks that exhausted their retries or hit a
bug, after the cause is fixed) and failed deliveries (e.g. after a receiver came back), through
:func:`shared.services.replay.replay`.

``rotate-keys`` re-encrypts every stored secret (webhook signing secrets, previous secrets still
in their rotation window, custom auth, API request-signing secrets) under the newest key of
``SECRET_KEYS``; ``--generate`` prints a new key to put first in ``SECRET_KEYS``.

The functions print one line per result on ``out`` and return a report; ``producers.cli.main``
wires them to the command line.  Bad input raises :class:`~shared.errors.InvalidInputError`.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from typing import Any, TextIO

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from schema.models.tenancy import ApiKey, WebhookEndpoint
from shared.context import open_process_context
from shared.crypto import SecretBox, generate_key, secret_box
from shared.errors import ConfigError
from shared.jobs import CeleryEnqueuer, publisher_app
from shared.services.replay import ReplayReport, ReplaySelection
from shared.services.replay import replay as replay_selected
from shared.settings import Settings

__all__ = [
    "ReplayReport",
    "RotateReport",
    "reencrypt_secrets",
    "replay",
    "rotate_keys",
]


@dataclass
class RotateReport:
    """How many secrets were re-encrypted, and which could not be decrypted."""

    rotated: int = 0
    failed: list[str] = field(default_factory=list)


def replay(
    settings: Settings,
    selection: ReplaySelection,
    *,
    out: TextIO = sys.stdout,
) -> ReplayReport:
    """``summarybot replay``: needs Redis (a worker must pick the tasks up)."""
    if settings.embedded:
        raise ConfigError(
            "REDIS_URL is not set: replayed tasks are picked up by separately started workers; "
            "set REDIS_URL and DATABASE_URL"
        )
    publisher = publisher_app(settings.broker_url, visibility_timeout=settings.visibility_timeout)
    context = open_process_context(settings, enqueuer=CeleryEnqueuer(publisher), with_discord=False)
    try:
        report = replay_selected(context.core(), selection)
    finally:
        context.close()
        publisher.close()
    verb = "would replay" if selection.dry_run else "replayed"
    print(
        f"{verb} {report.dead_letters} dead letters and {report.deliveries} deliveries "
        f"of {report.jobs} jobs",
        file=out,
    )
    for line in report.skipped:
        print(f"skipped: {line}", file=out)
    return report


def _rotate(box: SecretBox, token: str, where: str, report: RotateReport) -> str:
    try:
        rotated = box.rotate(token)
    except ConfigError:
        report.failed.append(where)
        return token
    report.rotated += 1
    return rotated


def reencrypt_secrets(session_factory: sessionmaker[Session], box: SecretBox) -> RotateReport:
    """Re-encrypt every stored secret under the box's newest key, one row at a time."""
    report = RotateReport()
    with session_factory() as session, session.begin():
        for endpoint in session.scalars(
            select(WebhookEndpoint).order_by(WebhookEndpoint.id).with_for_update()
        ):
            where = f"webhook endpoint {endpoint.id}"
            endpoint.secret_encrypted = _rotate(
                box, endpoint.secret_encrypted, f"{where} secret", report
            )
            if endpoint.auth_encrypted is not None:
                endpoint.auth_encrypted = _rotate(
                    box, endpoint.auth_encrypted, f"{where} auth", report
                )
            previous: list[dict[str, Any]] = []
            for index, entry in enumerate(endpoint.previous_secrets or []):
                token = entry.get("secret_encrypted")
                if token:
                    entry = {
                        **entry,
                        "secret_encrypted": _rotate(
                            box, str(token), f"{where} previous secret {index}", report
                        ),
                    }
                previous.append(entry)
            endpoint.previous_secrets = previous
        for key in session.scalars(
            select(ApiKey).where(ApiKey.signing_secret_encrypted.is_not(None)).with_for_update()
        ):
            assert key.signing_secret_encrypted is not None
            key.signing_secret_encrypted = _rotate(
                box, key.signing_secret_encrypted, f"API key {key.id} signing secret", report
            )
    return report


def new_key_message(out: TextIO = sys.stdout) -> None:
    """``summarybot rotate-keys --generate``: a new key on ``out``, what to do with it on
    stderr (so ``export SECRET_KEYS=$(summarybot rotate-keys --generate)`` takes the key)."""
    print(generate_key(), file=out)
    print(
        "put this key first in SECRET_KEYS (keep the old keys after it), restart every "
        "process, then run `summarybot rotate-keys`; remove the old keys afterwards",
        file=sys.stderr,
    )


def rotate_keys(
    settings: Settings, *, generate: bool = False, out: TextIO = sys.stdout
) -> RotateReport:
    """``summarybot rotate-keys [--generate]`` (see module docstring)."""
    if generate:
        new_key_message(out)
        return RotateReport()
    from shared.db.engine import make_engine, make_sessionmaker

    engine = make_engine(settings.effective_database_url)
    try:
        report = reencrypt_secrets(make_sessionmaker(engine), secret_box(settings))
    finally:
        engine.dispose()
    print(f"re-encrypted {report.rotated} secrets under the newest key", file=out)
    if report.failed:
        raise ConfigError(
            f"{len(report.failed)} secrets cannot be decrypted with SECRET_KEYS ("
            + ", ".join(report.failed[:5])
            + "); add the key they were encrypted with to SECRET_KEYS and run again"
        )
    return report
