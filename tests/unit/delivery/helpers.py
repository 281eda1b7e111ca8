"""Builders shared by the delivery tests and the delivery benchmark.

Rows are written the way the summarize stage writes them (job ``completed`` with its summary,
one pending delivery per target), so the deliver stage runs exactly as in production.
"""

from __future__ import annotations

import datetime as dt
import io
import random
import ssl
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from sqlalchemy.orm import Session, sessionmaker

from schema.models.jobs import Delivery, DeliveryStatus, Job, JobStatus, Summary
from schema.models.tenancy import WebhookAuthKind, WebhookEndpoint
from shared.cache import MemoryMessageCache
from shared.crypto import SecretBox
from shared.delivery.config import DeliverySettings
from shared.delivery.http_sender import WebhookHttpClient
from shared.delivery.redrive import RedriveReport, redrive_deliveries
from shared.delivery.runtime import DeliveryRuntime
from shared.delivery.ssrf import Resolver
from shared.jobs import Step
from shared.pipeline.deliver import run_deliver
from shared.pipeline.services import Services
from shared.services.core import Actor, Core
from shared.services.webhook_endpoints import EndpointAuth, EndpointRequest, create_endpoint
from shared.settings import Settings
from shared.summarize.content import (
    Citation,
    CitedPoint,
    Coverage,
    Participant,
    SummaryContent,
    SummaryFormat,
    Topic,
)
from shared.summarize.extractive.summarizer import ExtractiveSummarizer
from tests.fakes.enqueuer import RecordingEnqueuer

T0 = datetime(2026, 3, 1, 10, 0, tzinfo=UTC)


def sample_content(
    channel: str = "2", overview: str = "Two people fixed a build."
) -> SummaryContent:
    """A small but complete summary with citations."""
    cites = {
        m: Citation(
            message_id=m,
            author="ann",
            timestamp=T0,
            jump_url=f"https://discord.com/channels/1/{channel}/{m}",
        )
        for m in ("11", "12", "13")
    }
    return SummaryContent(
        format=SummaryFormat.STRUCTURED,
        overview=overview,
        topics=[Topic(title="build", summary="the build fails", message_ids=["11", "12"])],
        key_points=[CitedPoint(text="headers are missing", message_ids=["11"])],
        decisions=[CitedPoint(text="use linux-headers", message_ids=["12"])],
        open_questions=[CitedPoint(text="why 2.6.8?", message_ids=["13"])],
        participants=[
            Participant(id="1", name="ann", messages=3),
            Participant(id="2", name="bob", messages=1),
        ],
        citations=cites,
        coverage=Coverage(
            messages_total=4,
            messages_used=4,
            messages_skipped=0,
            start=T0,
            end=T0 + timedelta(minutes=5),
            channel_id=channel,
            channel_name="support",
            guild_id="1",
        ),
        backend="extractive",
    )


class Clock:
    """A settable clock for :class:`Services` (starts at the real now)."""

    def __init__(self, start: datetime | None = None) -> None:
        self.now = start or datetime.now(UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        """Move time forward."""
        self.now += timedelta(seconds=seconds)


def make_services(
    settings: Settings,
    session_factory: sessionmaker[Session],
    *,
    enqueuer: Any = None,
    clock: Any = None,
    runtime: DeliveryRuntime | None = None,
) -> Services:
    """Services of one in-test worker (delivering through ``runtime`` when given)."""
    services = Services(
        settings=settings,
        session_factory=session_factory,
        cache=MemoryMessageCache(ttl=60),
        enqueuer=enqueuer or RecordingEnqueuer(),
        summarizer=ExtractiveSummarizer(),
        console=io.StringIO(),
        delivery=runtime,
    )
    if clock is not None:
        services.clock = clock
    return services


#: Every runtime :func:`make_runtime` made; the package's autouse fixture closes them.
MADE_RUNTIMES: list[DeliveryRuntime] = []


def make_runtime(
    box: SecretBox,
    *,
    allowed: Sequence[str] = ("127.0.0.1",),
    resolver: Resolver | None = None,
    ssl_context: ssl.SSLContext | None = None,
    seed: int = 7,
    **delivery: Any,
) -> DeliveryRuntime:
    """A runtime whose SSRF allowlist admits the local receiver."""
    settings = DeliverySettings(webhook_allowed_hosts=list(allowed), **delivery)
    kwargs: dict[str, Any] = {"policy": settings.egress_policy, "ssl_context": ssl_context}
    if resolver is not None:
        kwargs["resolver"] = resolver
    runtime = DeliveryRuntime(
        settings=settings, http=WebhookHttpClient(**kwargs), box=box, rng=random.Random(seed)
    )
    MADE_RUNTIMES.append(runtime)
    return runtime


def deliver(services: Services, job_id: uuid.UUID, item_id: uuid.UUID) -> list[Step]:
    """Run the deliver stage as its task does: send, publish the next steps."""
    steps = run_deliver(services, job_id, item_id)
    for step in steps:
        services.enqueuer.enqueue(step.task, *step.args)
    return steps


def redrive(services: Services, settings: DeliverySettings) -> RedriveReport:
    """One pass of the redrive sweep, publishing what it found as its task does."""
    report = redrive_deliveries(services.session_factory, settings, now=services.clock())
    for step in report.steps:
        services.enqueuer.enqueue(step.task, *step.args)
    return report


def add_endpoint(
    session_factory: sessionmaker[Session],
    box: SecretBox,
    url: str,
    *,
    guild_id: str = "1",
    secret: str | None = None,
    events: Sequence[str] = ("summary.completed", "job.failed"),
    auth_kind: WebhookAuthKind = WebhookAuthKind.NONE,
    auth_secret: str | None = None,
    fallback: dict[str, Any] | None = None,
    allowed: Sequence[str] = ("127.0.0.1",),
) -> tuple[uuid.UUID, str]:
    """Register an endpoint through the use case; returns its id and plain signing secret.

    ``secret`` replaces the generated one (for fixed test vectors).
    """
    core = Core(
        session_factory=session_factory,
        enqueuer=RecordingEnqueuer(),
        box=box,
        egress=DeliverySettings(webhook_allowed_hosts=list(allowed)).egress_policy,
    )
    auth = EndpointAuth(auth_kind, auth_secret) if auth_secret is not None else None
    row, plain = create_endpoint(
        core,
        Actor(origin="api", guild_id=guild_id),
        EndpointRequest(url=url, events=events, auth=auth, fallback=fallback),
    )
    if secret is not None:
        with session_factory() as session, session.begin():
            stored = session.get(WebhookEndpoint, row.id)
            assert stored is not None
            stored.secret_encrypted = box.encrypt(secret)
        plain = secret
    return row.id, plain


@dataclass(frozen=True)
class Fanout:
    """Ids of one summarized job and its deliveries (in target order)."""

    job_id: uuid.UUID
    summary_id: uuid.UUID
    delivery_ids: list[uuid.UUID]


def add_summary(
    session_factory: sessionmaker[Session],
    targets: Sequence[dict[str, Any]],
    *,
    guild_id: str | None = "1",
    content: SummaryContent | None = None,
    now: datetime | None = None,
) -> Fanout:
    """A job ``completed`` with its summary and one pending delivery per target."""
    from shared.jobs import parse_params

    now = now or datetime.now(UTC)
    content = content or sample_content()
    params = parse_params(
        {
            "source": {"kind": "export_file", "path": "/tmp/export.json"},
            "destinations": list(targets),
        }
    )
    job = Job(
        id=uuid.uuid4(),
        origin="api",
        status=JobStatus.COMPLETED.value,
        guild_id=guild_id,
        channel_id=content.coverage.channel_id,
        params=params.model_dump(mode="json"),
        progress={},
        created_at=now - timedelta(seconds=3),
        heartbeat_at=now,
    )
    summary = Summary(
        id=uuid.uuid4(),
        job_id=job.id,
        guild_id=content.coverage.guild_id,
        channel_id=content.coverage.channel_id,
        format=content.format.value,
        content=content.model_dump(mode="json"),
        backend=content.backend,
        prompt_version="extractive-1",
        message_count=content.coverage.messages_total,
        window_start=content.coverage.start,
        window_end=content.coverage.end,
        created_at=now,
    )
    job.progress = {"summary_id": str(summary.id)}
    deliveries = [
        Delivery(
            id=uuid.uuid4(),
            summary_id=summary.id,
            target=target.key,
            kind=target.kind,
            params=target.model_dump(mode="json"),
            status=DeliveryStatus.PENDING.value,
            created_at=now,
        )
        for target in params.destinations
    ]
    with session_factory() as session, session.begin():
        session.add(job)
        session.flush()
        session.add(summary)
        session.flush()
        session.add_all(deliveries)
    return Fanout(job.id, summary.id, [d.id for d in deliveries])


@dataclass(frozen=True)
class TlsPair:
    """A throwaway CA and a server certificate for some host names, as SSL contexts."""

    server: ssl.SSLContext
    client: ssl.SSLContext


def make_tls(tmp: Path, names: Sequence[str]) -> TlsPair:
    """Issue a server certificate for ``names`` from a new CA; contexts for both ends."""
    now = datetime.now(UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "summarybot test CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=2))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(
            x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=2))
        .add_extension(
            x509.SubjectAlternativeName([x509.DNSName(n) for n in names]), critical=False
        )
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
        .add_extension(
            x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    cert_file, key_file, ca_file = tmp / "server.pem", tmp / "server.key", tmp / "ca.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    ca_file.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.load_cert_chain(cert_file, key_file)
    client = ssl.create_default_context(cafile=str(ca_file))
    return TlsPair(server=server, client=client)
