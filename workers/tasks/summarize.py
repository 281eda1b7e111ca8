"""Tasks of the ``summarize`` queue: the stage itself, and the LLM map and reduce steps."""

import uuid

from celery import Celery

from schema.models.jobs import Job
from shared.jobs import SUMMARIZE
from shared.lifecycle import RUNS_IN
from shared.pipeline.llm.map_step import run_map
from shared.pipeline.llm.mapreduce import MAP_CHUNK, REDUCE
from shared.pipeline.llm.reduce_step import run_reduce
from shared.pipeline.services import Services
from shared.pipeline.summarize import run_summarize
from workers.base import pipeline_task
from workers.context import WorkerContext

#: The queue of the summarize stage and of the LLM steps (the workers that count tokens).
QUEUE = "summarize"


def _map(services: Services, job: Job, chunk_id: uuid.UUID) -> None:
    run_map(services, job.id, chunk_id)


def _reduce(services: Services, job: Job) -> None:
    run_reduce(services, job.id)


def register(app: Celery, context: WorkerContext) -> None:
    """Register the summarize stage and its LLM map and reduce steps on ``app``."""
    runs_in = RUNS_IN[SUMMARIZE]
    pipeline_task(app, context, SUMMARIZE, queue=QUEUE, runs_in=runs_in)(run_summarize)
    pipeline_task(app, context, MAP_CHUNK, queue=QUEUE)(_map)
    pipeline_task(app, context, REDUCE, queue=QUEUE)(_reduce)
