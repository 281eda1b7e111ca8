"""``summarybot replay`` and ``rotate-keys`` against a migrated SQLite database."""

from __future__ import annotations

import io
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography.fernet import Fernet
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from producers.cli.delivery_commands import reencrypt_secrets, replay, rotate_keys
from schema.models.jobs import DeadLetter, Delivery, Job
from schema.models.tenancy import ApiKey, WebhookAuthKind, WebhookEndpoint
from shared.crypto import SecretBox, generate_key
from shared.errors import ConfigError, InvalidInputError
from shared.jobs import DELIVER, FETCH, SUMMARIZE
from shared.services.core import Core
from shared.services.replay import ReplayReport, ReplaySelection
from shared.services.replay import replay as replay_selected
from shared.settings import load_settings
from tests.fakes.enqueuer import RecordingEnqueuer
from tests.unit.delivery.helpers import add_endpoint, add_summary


def replay_items(
    factory: sessionmaker[Session], enqueuer: RecordingEnqueuer, **selection: Any
) -> ReplayReport:
    core = Core(session_factory=factory, enqueuer=enqueuer, box=SecretBox([generate_key()]))
    return replay_selected(core, ReplaySelection(**selection))


def _fail_delivery(factory: sessionmaker[Session], delivery_id: uuid.UUID) -> uuid.UUID:
    with factory() as session, session.begin():
        row = session.get(Delivery, delivery_id)
        assert row is not None
        row.status, row.last_error, row.attempts = "failed", "HTTP 500", 8
        job = row.summary.job
        job.status, job.error, job.finished_at = "failed", "delivery failed", datetime.now(UTC)
        return job.id


def _letter(factory: sessionmaker[Session], task: str, job_id: uuid.UUID, *args: str) -> int:
    with factory() as session, session.begin():
        letter = DeadLetter(
            task_id=str(uuid.uuid4()),
            task_name=task,
            job_id=job_id,
            args=[str(job_id), *args],
            error="boom",
        )
        session.add(letter)
        session.flush()
        return letter.id


def test_replay_dead_letters_and_failed_deliveries(
    session_factory: sessionmaker[Session],
) -> None:
    fan = add_summary(session_factory, [{"kind": "terminal"}, {"kind": "file", "path": "/tmp/x"}])
    job_id = _fail_delivery(session_factory, fan.delivery_ids[0])
    letter = _letter(session_factory, DELIVER, job_id, str(fan.delivery_ids[0]))
    enqueuer = RecordingEnqueuer()

    dry = replay_items(session_factory, enqueuer, dead_letter_ids=[letter], dry_run=True)
    assert (dry.dead_letters, dry.jobs, enqueuer.sent) == (1, 1, [])
    with session_factory() as session:
        assert session.get(Delivery, fan.delivery_ids[0]).status == "failed"  # type: ignore[union-attr]

    report = replay_items(session_factory, enqueuer, dead_letter_ids=[letter, 999])
    assert report.dead_letters == 1
    assert report.skipped == ["dead letter 999: not found or already replayed"]
    assert enqueuer.take() == [(str(job_id), str(fan.delivery_ids[0]))]
    with session_factory() as session:
        row = session.get(Delivery, fan.delivery_ids[0])
        job = session.get(Job, job_id)
        letter_row = session.get(DeadLetter, letter)
        assert row is not None and job is not None and letter_row is not None
        assert (row.status, row.attempts) == ("pending", 0)
        # The summary is stored, so the job is completed again while the delivery is retried.
        assert (job.status, job.error) == ("completed", None)
        assert letter_row.replayed_at is not None
    again = replay_items(session_factory, enqueuer, all_dead_letters=True)
    assert again.dead_letters == 0

    _fail_delivery(session_factory, fan.delivery_ids[1])
    since = replay_items(
        session_factory, enqueuer, failed_since=datetime.now(UTC) - timedelta(hours=1)
    )
    assert since.deliveries == 1
    assert enqueuer.take() == [(str(job_id), str(fan.delivery_ids[1]))]
    by_id = replay_items(session_factory, enqueuer, delivery_ids=[str(uuid.uuid4())])
    assert by_id.skipped and "not found" in by_id.skipped[0]


def test_replay_of_earlier_stages(session_factory: sessionmaker[Session]) -> None:
    with session_factory() as session, session.begin():
        # Failed by the poison cap: its count of redeliveries starts again when replayed.
        early = Job(
            origin="api", status="failed", params={}, progress={}, error="x", redeliveries=7
        )
        session.add(early)
    fan = add_summary(session_factory, [{"kind": "terminal"}])
    job_id = _fail_delivery(session_factory, fan.delivery_ids[0])
    fetch = _letter(session_factory, FETCH, early.id)
    summarize = _letter(session_factory, SUMMARIZE, job_id)
    odd = _letter(session_factory, "summarybot.something_else", early.id)
    enqueuer = RecordingEnqueuer()
    report = replay_items(session_factory, enqueuer, dead_letter_ids=[fetch, summarize, odd])
    assert report.dead_letters == 2
    assert "cannot be replayed" in report.skipped[0]
    # No summary yet: fetched again.  A summary stored: its failed delivery waits for a
    # replay of its own (the job is completed, nothing pending to publish).
    assert sorted(enqueuer.sent) == sorted([(FETCH, (str(early.id),))])
    with session_factory() as session:
        reopened = session.get(Job, early.id)
        assert reopened is not None and (reopened.status, reopened.redeliveries) == ("queued", 0)
        assert session.get(Job, job_id).status == "completed"  # type: ignore[union-attr]


def test_replay_input_errors(session_factory: sessionmaker[Session], tmp_path: Path) -> None:
    enqueuer = RecordingEnqueuer()
    with pytest.raises(InvalidInputError, match="nothing selected"):
        replay_items(session_factory, enqueuer)
    with pytest.raises(InvalidInputError, match="not an id"):
        replay_items(session_factory, enqueuer, delivery_ids=["nope"])
    with pytest.raises(InvalidInputError, match="time zone"):
        replay_items(session_factory, enqueuer, failed_since=datetime(2026, 1, 1))
    with pytest.raises(ConfigError, match="REDIS_URL is not set"):
        replay(load_settings(data_dir=tmp_path), ReplaySelection(all_dead_letters=True))


def test_rotate_keys_reencrypts_every_secret(
    session_factory: sessionmaker[Session], engine: Engine, tmp_path: Path
) -> None:
    old_key, new_key = generate_key(), generate_key()
    old = SecretBox([old_key])
    endpoint_id, plain = add_endpoint(
        session_factory,
        old,
        "https://hooks.example/x",
        auth_kind=WebhookAuthKind.BEARER,
        auth_secret="tok",
    )
    with session_factory() as session, session.begin():
        endpoint = session.get(WebhookEndpoint, endpoint_id)
        assert endpoint is not None
        endpoint.previous_secrets = [
            {
                "secret_encrypted": old.encrypt("whsec_old"),
                "expires_at": "2099-01-01T00:00:00+00:00",
            }
        ]
        session.add(
            ApiKey(
                id="abcdefgh12",
                guild_id="1",
                name="k",
                secret_hash="h",
                signing_secret_encrypted=old.encrypt("sign"),
            )
        )
    url = str(engine.url)
    settings = load_settings(
        database_url=url, secret_keys=f"{new_key},{old_key}", data_dir=tmp_path
    )
    out = io.StringIO()
    report = rotate_keys(settings, out=out)
    assert report.rotated == 4 and report.failed == []
    assert "re-encrypted 4 secrets" in out.getvalue()
    only_new = SecretBox([new_key])
    with session_factory() as session:
        endpoint = session.get(WebhookEndpoint, endpoint_id)
        key = session.get(ApiKey, "abcdefgh12")
        assert endpoint is not None and key is not None
        assert only_new.decrypt(endpoint.secret_encrypted) == plain
        assert only_new.decrypt(endpoint.auth_encrypted or "") == "tok"
        assert only_new.decrypt(endpoint.previous_secrets[0]["secret_encrypted"]) == "whsec_old"
        assert only_new.decrypt(key.signing_secret_encrypted or "") == "sign"

    stranger = SecretBox([Fernet.generate_key().decode()])
    with session_factory() as session, session.begin():
        endpoint = session.get(WebhookEndpoint, endpoint_id)
        assert endpoint is not None
        endpoint.secret_encrypted = stranger.encrypt("lost")
    partial = reencrypt_secrets(session_factory, only_new)
    assert partial.failed == [f"webhook endpoint {endpoint_id} secret"]
    with pytest.raises(ConfigError, match="cannot be decrypted"):
        rotate_keys(settings, out=io.StringIO())

    generated = io.StringIO()
    rotate_keys(settings, generate=True, out=generated)
    assert SecretBox([generated.getvalue().strip()])
