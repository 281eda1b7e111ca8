"""Delivery settings: webhook retries, timeouts, payload cap, the SSRF allowlist, leases.

The ``delivery`` group of the settings root, read like every group (:mod:`shared.settings_group`)
at a process's start, never at import.  Each invalid value is reported as one line naming the
variable, what is wrong and how to fix it (:class:`~shared.errors.SettingsError`, exit code 2
in the CLI).
"""

from __future__ import annotations

from pydantic import Field, field_validator

from shared.delivery.ssrf import EgressPolicy, UrlRefused
from shared.settings_group import CommaSeparated, SettingsGroup

__all__ = ["DEFAULT_RETRY_SCHEDULE", "DeliverySettings"]

#: Seconds to wait after each failed attempt: 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h.  With
#: the first attempt made immediately that is 8 attempts over about 27.6 hours.
DEFAULT_RETRY_SCHEDULE = (5, 300, 1800, 7200, 18000, 36000, 36000)

_HINTS = {
    "WEBHOOK_ALLOWED_HOSTS": "give comma-separated host or host:port entries, e.g. "
    "hooks.internal:8080,127.0.0.1",
    "WEBHOOK_RETRY_SCHEDULE": "give comma-separated seconds, e.g. "
    "5,300,1800,7200,18000,36000,36000",
    "WEBHOOK_RETRY_JITTER": "give a fraction between 0 and 0.5, e.g. 0.2",
    "WEBHOOK_TIMEOUT": "give seconds between 1 and 60",
    "WEBHOOK_MAX_PAYLOAD_BYTES": "give a size in bytes between 1024 and 1048576",
    "WEBHOOK_DISABLE_AFTER_DAYS": "give days between 0.01 and 60",
    "DELIVERY_LEASE_SECONDS": "give seconds between 5 and 180, longer than any one send",
    "DELIVERY_REDRIVE_GRACE_SECONDS": "give seconds between 1 and 86400",
    "DELIVERY_MAX_CLAIMS": "give a whole number between 1 and 1000",
    "JOB_FAILED_LOOKBACK_HOURS": "give hours between 1 and 720",
}


class DeliverySettings(SettingsGroup):
    """Every delivery tunable; variable names are the upper-cased field names."""

    hints = _HINTS

    webhook_allowed_hosts: CommaSeparated[list[str]] = Field(
        default_factory=list,
        description="hosts (or host:port) that may use http and resolve to internal addresses",
    )
    webhook_retry_schedule: CommaSeparated[list[float]] = Field(
        default_factory=lambda: [float(s) for s in DEFAULT_RETRY_SCHEDULE],
        description="seconds to wait after each failed attempt",
    )
    webhook_retry_jitter: float = Field(default=0.2, ge=0, le=0.5)
    webhook_timeout: float = Field(default=15.0, ge=1, le=60)
    webhook_max_payload_bytes: int = Field(default=65536, ge=1024, le=1_048_576)
    webhook_disable_after_days: float = Field(default=5.0, ge=0.01, le=60)
    # A part a dead worker was sending is sent again once its lease ends, with the same
    # nonce; Discord only remembers a nonce for "a few minutes", so a longer lease could post
    # that part twice.
    delivery_lease_seconds: float = Field(default=120.0, ge=5, le=180)
    delivery_redrive_grace_seconds: float = Field(default=300.0, ge=1, le=86400)
    delivery_max_claims: int = Field(default=25, ge=1, le=1000)
    job_failed_lookback_hours: float = Field(default=24.0, ge=1, le=720)

    @field_validator("webhook_allowed_hosts")
    @classmethod
    def _check_hosts(cls, value: list[str]) -> list[str]:
        try:
            EgressPolicy.from_entries(value)
        except (UrlRefused, ValueError) as exc:
            message = exc.user_message if isinstance(exc, UrlRefused) else str(exc)
            raise ValueError(message.replace("the webhook URL ", "an entry ")) from None
        return value

    @field_validator("webhook_retry_schedule")
    @classmethod
    def _check_schedule(cls, value: list[float]) -> list[float]:
        if not value:
            raise ValueError("the schedule is empty")
        if len(value) > 30:
            raise ValueError("more than 30 retries")
        if any(not 0 <= v <= 7 * 86400 for v in value):
            raise ValueError("every delay must be between 0 and 604800 seconds")
        return value

    @property
    def egress_policy(self) -> EgressPolicy:
        """The SSRF guard's policy built from ``WEBHOOK_ALLOWED_HOSTS``."""
        return EgressPolicy.from_entries(self.webhook_allowed_hosts)
