"""The delivery sweep on the ``maintenance`` queue, driven by beat every few seconds.

Register in ``workers.app.TASK_MODULES`` and give beat an entry for
``summarybot.maintenance.redrive_deliveries`` (every 5-10 s; expired beats are dropped).
"""

from __future__ import annotations

import structlog

from shared.delivery.redrive import redrive_deliveries
from workers import resources
from workers.app import app

__all__ = ["REDRIVE_DELIVERIES", "redrive_deliveries_task"]

log = structlog.get_logger(__name__)

REDRIVE_DELIVERIES = "summarybot.maintenance.redrive_deliveries"


@app.task(name=REDRIVE_DELIVERIES, queue="maintenance", ignore_result=True)  # type: ignore[untyped-decorator]
def redrive_deliveries_task() -> int:
    """Re-enqueue due and orphaned deliveries; a missed tick is caught up by the next."""
    services = resources.current()
    report = redrive_deliveries(
        services.session_factory, services.delivery_runtime().settings, now=services.clock()
    )
    for step in report.steps:
        services.enqueuer.enqueue(step.task, *step.args)
    return report.enqueued
