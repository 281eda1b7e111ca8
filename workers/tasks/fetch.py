"""Tasks of the ``fetch`` queue."""

from shared.jobs import FETCH
from shared.lifecycle import RUNS_IN
from shared.pipeline.fetch import run_fetch
from workers.base import pipeline_task

fetch = pipeline_task(FETCH, queue="fetch", runs_in=RUNS_IN[FETCH])(run_fetch)
