"""``summarybot replay`` and ``summarybot rotate-keys``: operator commands around delivery.

``replay`` re-drives what ended badly: dead letters (tasks that exhausted their retries or hit a
bug, after the cause is fixed) and failed deliveries (e.g. after a receiver came back).  Each item
is reset in the database first (the item to ``pending`` and due now, its job back to
``delivering`` or ``queued``), then enqueued; the stages are idempotent, so replaying something
twice still has its effect once.

``rotate-keys`` re-encrypts every stored secret (webhook signing secrets, previous secrets still
in their rotation window, custom auth, API request-signing secrets) under the newest key of
``SECRET_KEYS``; ``--generate`` prints a new key to put first in ``SECRET_KEYS``.

The functions print one line per result on ``out`` and return a report; ``producers.cli.main``
wires them to the command line.  Bad input raises :class:`~shared.errors.InvalidInputError`.
"""

from __future__ import annotations

import sys
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TextIO

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from schema.models.delivery_log import DeliverySchedule, JobNotification
from schema.models.jobs import DeadLetter, Delivery, DeliveryStatus, Job, JobStatus, Summary
from schema.models.tenancy import ApiKey, WebhookEndpoint
from shared.crypto import SecretBox, generate_key, secret_box
from shared.errors import ConfigError, InvalidInputError
from shared.jobs import DELIVER, FETCH, SUMMARIZE, Enqueuer
from shared.settings import Settings

__all__ = [
    "ReplayReport",
    "RotateReport",
    "reencrypt_secrets",
    "replay",
    "replay_items",
    "rotate_keys",
]


@dataclass
class ReplayReport:
    """What ``replay`` did (or, with ``dry_run``, would do)."""

    dead_letters: int = 0
    deliveries: int = 0
    jobs: int = 0
    skipped: list[str] = field(default_factory=list)


@dataclass
class RotateReport:
    """How many secrets were re-encrypted, and which could not be decrypted."""

    rotated: int = 0
    failed: list[str] = field(default_factory=list)


def _uuid(text: str, what: str) -> uuid.UUID:
    try:
        return uuid.UUID(str(text))
    except ValueError:
        raise InvalidInputError(
            f"{what} {text!r} is not an id; give the UUID shown by the API or the logs"
        ) from None


def _reopen_job(job: Job, status: JobStatus, now: datetime) -> bool:
    """Put a finished job back to work; False when it is still running (nothing to do)."""
    if job.status not in (JobStatus.FAILED.value, JobStatus.COMPLETED.value):
        return job.status == status.value
    job.status = status.value
    job.error = job.error_detail = job.finished_at = None
    job.heartbeat_at = job.updated_at = job.stage_started_at = now
    return True


def _reset_item(session: Session, item_id: uuid.UUID, now: datetime) -> uuid.UUID | None:
    """Make a delivery or notification pending and due now; returns its job id."""
    delivery = session.get(Delivery, item_id, with_for_update=True)
    if delivery is not None:
        delivery.status = DeliveryStatus.PENDING.value
        delivery.lease_until = None
        delivery.attempts = 0
        schedule = session.get(DeliverySchedule, item_id)
        if schedule is not None:
            schedule.failures, schedule.next_attempt_at, schedule.redriven_at = 0, None, None
        summary = session.get(Summary, delivery.summary_id)
        assert summary is not None
        job = session.get(Job, summary.job_id, with_for_update=True)
        assert job is not None
        _reopen_job(job, JobStatus.DELIVERING, now)
        return job.id
    note = session.get(JobNotification, item_id, with_for_update=True)
    if note is not None:
        note.status = DeliveryStatus.PENDING.value
        note.lease_until = None
        note.attempts = note.failures = 0
        note.next_attempt_at, note.redriven_at = now, now
        return note.job_id
    return None


def _replay_dead_letter(
    session: Session, letter: DeadLetter, now: datetime
) -> tuple[str, tuple[str, ...]] | str:
    """The task to enqueue for a dead letter, or why it cannot be replayed."""
    args = [str(a) for a in letter.args or []]
    if letter.task_name == DELIVER and len(args) >= 2:
        job_id = _reset_item(session, _uuid(args[1], "delivery"), now)
        if job_id is None:
            return f"dead letter {letter.id}: its delivery no longer exists"
        return DELIVER, (str(job_id), args[1])
    if letter.task_name in (FETCH, SUMMARIZE) and letter.job_id is not None:
        job = session.get(Job, letter.job_id, with_for_update=True)
        if job is None:
            return f"dead letter {letter.id}: its job no longer exists"
        has_summary = session.scalar(select(Summary.id).where(Summary.job_id == job.id))
        if has_summary is not None:
            _reopen_job(job, JobStatus.DELIVERING, now)
            return SUMMARIZE, (str(job.id),)
        _reopen_job(job, JobStatus.QUEUED, now)
        return FETCH, (str(job.id),)
    return f"dead letter {letter.id}: task {letter.task_name} cannot be replayed by this version"


def replay_items(
    session_factory: sessionmaker[Session],
    enqueuer: Enqueuer,
    *,
    dead_letter_ids: Sequence[int] = (),
    all_dead_letters: bool = False,
    delivery_ids: Sequence[str] = (),
    failed_since: datetime | None = None,
    now: datetime | None = None,
    dry_run: bool = False,
) -> ReplayReport:
    """Reset and re-enqueue the selected dead letters and failed deliveries."""
    if not (dead_letter_ids or all_dead_letters or delivery_ids or failed_since):
        raise InvalidInputError(
            "nothing selected; give --dead-letter ID, --all-dead-letters, --delivery ID or "
            "--failed-since TIME"
        )
    if failed_since is not None and failed_since.tzinfo is None:
        raise InvalidInputError("--failed-since needs a time zone, e.g. 2026-01-01T00:00:00Z")
    now = now or datetime.now(UTC)
    report = ReplayReport()
    tasks: list[tuple[str, tuple[str, ...]]] = []
    wanted = [_uuid(d, "delivery") for d in delivery_ids]
    with session_factory() as session, session.begin():
        query = select(DeadLetter).where(DeadLetter.replayed_at.is_(None))
        if not all_dead_letters:
            query = query.where(DeadLetter.id.in_(list(dead_letter_ids)))
        seen: set[int] = set()
        for letter in session.scalars(query.order_by(DeadLetter.id).with_for_update()):
            seen.add(letter.id)
            outcome = _replay_dead_letter(session, letter, now)
            if isinstance(outcome, str):
                report.skipped.append(outcome)
                continue
            letter.replayed_at = now
            tasks.append(outcome)
            report.dead_letters += 1
        for missing in sorted(set(dead_letter_ids) - seen):
            report.skipped.append(f"dead letter {missing}: not found or already replayed")
        if failed_since is not None:
            wanted += list(
                session.scalars(
                    select(Delivery.id).where(
                        Delivery.status == DeliveryStatus.FAILED.value,
                        Delivery.created_at >= failed_since,
                    )
                )
            )
        for item_id in dict.fromkeys(wanted):
            job_id = _reset_item(session, item_id, now)
            if job_id is None:
                report.skipped.append(f"delivery {item_id}: not found")
                continue
            tasks.append((DELIVER, (str(job_id), str(item_id))))
            report.deliveries += 1
        report.jobs = len({args[0] for _, args in tasks})
        if dry_run:
            session.rollback()
            return report
    for name, args in tasks:
        enqueuer.enqueue(name, *args)
    return report


def replay(
    settings: Settings,
    *,
    dead_letter_ids: Sequence[int] = (),
    all_dead_letters: bool = False,
    delivery_ids: Sequence[str] = (),
    failed_since: datetime | None = None,
    dry_run: bool = False,
    out: TextIO = sys.stdout,
) -> ReplayReport:
    """``summarybot replay``: needs Redis (a worker must pick the tasks up)."""
    if settings.embedded:
        raise ConfigError(
            "REDIS_URL is not set: replayed tasks are picked up by separately started workers; "
            "set REDIS_URL and DATABASE_URL"
        )
    from celery import Celery

    import celeryconfig
    from shared.db.engine import make_engine, make_sessionmaker
    from workers.enqueue import CeleryEnqueuer

    # A publishing-only app: routes and broker as the workers have them, no tasks imported.
    app = Celery("summarybot-replay", set_as_current=False)
    app.config_from_object(celeryconfig)
    app.conf.update(
        broker_url=settings.broker_url, **celeryconfig.time_bounds(settings.visibility_timeout)
    )
    engine = make_engine(settings.effective_database_url)
    try:
        report = replay_items(
            make_sessionmaker(engine),
            CeleryEnqueuer(app),
            dead_letter_ids=dead_letter_ids,
            all_dead_letters=all_dead_letters,
            delivery_ids=delivery_ids,
            failed_since=failed_since,
            dry_run=dry_run,
        )
    finally:
        engine.dispose()
        app.close()
    verb = "would replay" if dry_run else "replayed"
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


def rotate_keys(
    settings: Settings, *, generate: bool = False, out: TextIO = sys.stdout
) -> RotateReport:
    """``summarybot rotate-keys [--generate]`` (see module docstring)."""
    if generate:
        print(generate_key(), file=out)
        print(
            "put this key first in SECRET_KEYS (keep the old keys after it), restart every "
            "process, then run `summarybot rotate-keys`; remove the old keys afterwards",
            file=sys.stderr,
        )
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
