"""Tasks of the ``summarize`` queue: the stage itself, and the LLM map and reduce steps."""

import uuid

from schema.models.jobs import Job
from shared.jobs import SUMMARIZE
from shared.lifecycle import RUNS_IN
from shared.pipeline.llm.map_step import run_map
from shared.pipeline.llm.mapreduce import MAP_CHUNK, REDUCE
from shared.pipeline.llm.reduce_step import run_reduce
from shared.pipeline.services import Services
from shared.pipeline.summarize import run_summarize
from workers.base import pipeline_task

summarize = pipeline_task(SUMMARIZE, queue="summarize", runs_in=RUNS_IN[SUMMARIZE])(run_summarize)


def _map(services: Services, job: Job, chunk_id: uuid.UUID) -> None:
    run_map(services, job.id, chunk_id)


def _reduce(services: Services, job: Job) -> None:
    run_reduce(services, job.id)


summarize_map = pipeline_task(MAP_CHUNK, queue="summarize")(_map)
summarize_reduce = pipeline_task(REDUCE, queue="summarize")(_reduce)
