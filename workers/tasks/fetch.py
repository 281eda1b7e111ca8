"""Tasks of the ``fetch`` queue."""

from celery import Celery

from shared.jobs import FETCH
from shared.lifecycle import RUNS_IN
from shared.pipeline.fetch import run_fetch
from workers.base import pipeline_task
from workers.context import WorkerContext


def register(app: Celery, context: WorkerContext) -> None:
    """Register the fetch stage on ``app``."""
    pipeline_task(app, context, FETCH, queue="fetch", runs_in=RUNS_IN[FETCH])(run_fetch)
