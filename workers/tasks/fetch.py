"""Tasks of the ``fetch`` queue."""

from shared.jobs import FETCH
from shared.pipeline.fetch import run_fetch
from workers.base import pipeline_task

fetch = pipeline_task(FETCH, queue="fetch")(run_fetch)
