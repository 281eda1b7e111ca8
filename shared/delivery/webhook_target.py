"""Send one claimed item to an HTTP webhook endpoint and say how it went.

The endpoint row gives the URL, the signing secrets (current, plus previous ones until they
expire) and the optional auth, all decrypted only here, only for the request.  The event body is
encoded once and exactly those bytes are signed and posted; the ``webhook-id`` comes from the
item id, so every retry of the same item carries the same id.  Only a 2xx is a success; 410
disables the endpoint; a 3xx is a failure (redirects are never followed); every other answer or
transport error is retried on the schedule, no sooner than a ``Retry-After`` asks.
"""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from schema.models.tenancy import WebhookEndpoint
from shared.crypto import SecretBox
from shared.delivery.endpoint_auth import auth_header
from shared.delivery.events import (
    JOB_FAILED,
    SUMMARY_COMPLETED,
    JobFailedData,
    JobFailedEvent,
    SummaryCompletedEvent,
    encode_event,
    job_failed_event,
    summary_completed_event,
)
from shared.delivery.http_sender import WebhookHttpClient
from shared.delivery.outbox import Claim, Outcome
from shared.delivery.ssrf import parse_webhook_url
from shared.delivery.targets import WebhookTarget
from shared.errors import ConfigError, PipelineError, TransientError
from shared.signing import signed_headers, webhook_id_for
from shared.summarize.content import SummaryContent
from shared.tenancy import tenant_guild

__all__ = [
    "build_event",
    "endpoint_secrets",
    "parse_retry_after",
    "send_webhook",
]


def parse_retry_after(value: str | None, *, now: datetime) -> float | None:
    """Seconds a ``Retry-After`` header asks for (delta-seconds or an HTTP date), if valid.

    The receiver writes this header, so whatever it holds yields a number or None, never an
    error (a date beyond what a datetime holds overflows instead of raising ValueError).
    """
    if not value:
        return None
    text = value.strip()
    if text.isdigit():
        return float(text)
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError, OverflowError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - now).total_seconds())


def endpoint_secrets(endpoint: WebhookEndpoint, box: SecretBox, *, now: datetime) -> list[str]:
    """The secrets to sign with: the current one, then previous ones not yet expired."""
    secrets = [box.decrypt(endpoint.secret_encrypted)]
    for previous in endpoint.previous_secrets or []:
        expires = previous.get("expires_at")
        try:
            until = datetime.fromisoformat(str(expires)) if expires else None
        except ValueError:
            until = None
        if until is not None and until.tzinfo is None:
            until = until.replace(tzinfo=UTC)
        if until is not None and until > now and previous.get("secret_encrypted"):
            secrets.append(box.decrypt(str(previous["secret_encrypted"])))
    return secrets


def build_event(claim: Claim) -> SummaryCompletedEvent | JobFailedEvent:
    """The event an item carries (its summary, or its failed job)."""
    if claim.event == SUMMARY_COMPLETED:
        summary = claim.summary
        assert summary is not None, "a summary.completed item belongs to a summary"
        content = SummaryContent.model_validate(summary.content)
        return summary_completed_event(
            content=content,
            job_id=str(claim.job.id),
            summary_id=str(summary.id),
            guild_id=tenant_guild(claim.job.guild_id, content.coverage.guild_id),
            created_at=summary.created_at,
            language=summary.language,
            model=summary.model,
            prompt_version=summary.prompt_version,
            duration_seconds=(summary.created_at - claim.job.created_at).total_seconds(),
        )
    if claim.event == JOB_FAILED:
        job = claim.job
        return job_failed_event(
            JobFailedData(
                job_id=str(job.id),
                origin=job.origin,
                guild_id=job.guild_id,
                channel_id=job.channel_id,
                error=job.error or "the job failed",
                created_at=job.created_at,
                failed_at=job.finished_at or job.created_at,
            )
        )
    raise ConfigError(f"unknown event {claim.event!r}")


def _load_endpoint(
    session_factory: sessionmaker[Session], endpoint_id: uuid.UUID
) -> WebhookEndpoint | None:
    with session_factory() as session:
        return session.get(WebhookEndpoint, endpoint_id)


def _failure(endpoint: WebhookEndpoint | None, error: str, **kw: Any) -> Outcome:
    return Outcome.failure(
        error,
        endpoint_id=endpoint.id if endpoint else None,
        fallback=endpoint.fallback if endpoint else None,
        **kw,
    )


def send_webhook(
    claim: Claim,
    *,
    session_factory: sessionmaker[Session],
    http: WebhookHttpClient,
    box: SecretBox,
    now: datetime,
    timeout: float,
    max_payload_bytes: int,
) -> Outcome:
    """POST the item's event to its endpoint; every result becomes an :class:`Outcome`."""
    target = WebhookTarget.model_validate(claim.params)
    endpoint = _load_endpoint(session_factory, target.endpoint_id)
    if endpoint is None:
        return Outcome.failure(
            f"webhook endpoint {target.endpoint_id} no longer exists", retryable=False
        )
    if endpoint.guild_id != claim.job.guild_id:
        return Outcome.failure(f"no webhook endpoint {endpoint.id} in this server", retryable=False)
    if claim.event not in (endpoint.events or []):
        # Whether the endpoint takes the event comes first: an event it never wanted is not
        # its fallback's either, enabled or not.
        return Outcome.sent(None, skipped=True, endpoint_id=None)
    if not endpoint.enabled:
        return _failure(
            endpoint,
            f"the webhook endpoint is disabled: {endpoint.disabled_reason or 'by an admin'}",
            retryable=False,
        )
    try:
        url = parse_webhook_url(endpoint.url, http.policy)
        secrets = endpoint_secrets(endpoint, box, now=now)
        extra = auth_header(endpoint, box)
        body = encode_event(build_event(claim), max_bytes=max_payload_bytes)
    except PipelineError as exc:
        return _failure(endpoint, exc.user_message, retryable=False)
    message_id = webhook_id_for(claim.id)
    headers = {**extra, **signed_headers(message_id, int(now.timestamp()), body, secrets).as_dict()}
    started = time.perf_counter()
    try:
        answer = http.post(url, body, headers, timeout=timeout)
    except PipelineError as exc:
        return _failure(
            endpoint,
            exc.user_message,
            retryable=isinstance(exc, TransientError),
            duration_ms=(time.perf_counter() - started) * 1000,
        )
    common: dict[str, Any] = {
        "status_code": answer.status,
        "excerpt": answer.excerpt or None,
        "duration_ms": answer.elapsed_ms,
    }
    if 200 <= answer.status < 300:
        return Outcome.sent(message_id, endpoint_id=endpoint.id, **common)
    if answer.status == 410:
        return _failure(
            endpoint,
            "the webhook answered 410 Gone",
            retryable=False,
            disable_endpoint=f"the receiver answered 410 Gone on {now:%Y-%m-%d %H:%M} UTC",
            **common,
        )
    if 300 <= answer.status < 400:
        where = answer.headers.get("location", "(no Location)")
        error = (
            f"the webhook answered {answer.status} redirect to {where[:200]}; redirects are "
            "not followed, update the endpoint URL"
        )
    else:
        error = f"the webhook answered HTTP {answer.status}"
    return _failure(
        endpoint,
        error,
        retryable=True,
        retry_after=parse_retry_after(answer.headers.get("retry-after"), now=now),
        **common,
    )
