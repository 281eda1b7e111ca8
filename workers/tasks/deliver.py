"""Tasks of the ``deliver`` queue."""

from shared.jobs import DELIVER
from shared.pipeline.deliver import run_deliver
from workers.base import pipeline_task

deliver = pipeline_task(DELIVER, queue="deliver")(run_deliver)
