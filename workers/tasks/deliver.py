"""Tasks of the ``deliver`` queue (an outbox item has a state of its own: any job state runs)."""

from celery import Celery

from shared.jobs import DELIVER
from shared.pipeline.deliver import run_deliver
from workers.base import pipeline_task
from workers.context import WorkerContext


def register(app: Celery, context: WorkerContext) -> None:
    """Register the deliver stage on ``app``."""
    # The stage reads the job with the item it claims: no separate load of the job first.
    pipeline_task(app, context, DELIVER, queue="deliver", loads_job=False)(run_deliver)
