"""Reading a job's progress in tests: has it ended, and have its deliveries too?"""

from __future__ import annotations

import uuid

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from schema.models.jobs import Delivery, DeliveryStatus, Job, JobStatus, Summary

__all__ = ["settled"]


def settled(session_factory: sessionmaker[Session], job_id: uuid.UUID) -> Job | None:
    """The job once it has ended and no delivery of its summary is pending or being sent."""
    with session_factory() as session:
        job = session.get(Job, job_id)
        if job is None or not JobStatus(job.status).finished:
            return None
        unsent = session.scalars(
            select(Delivery.id)
            .join(Summary, Summary.id == Delivery.summary_id)
            .where(
                Summary.job_id == job_id,
                Delivery.status.in_([DeliveryStatus.PENDING.value, DeliveryStatus.SENDING.value]),
            )
        ).first()
        return job if unsent is None else None
