"""Tasks of the ``deliver`` queue (an outbox item has a state of its own: any job state runs)."""

from shared.jobs import DELIVER
from shared.pipeline.deliver import run_deliver
from workers.base import pipeline_task

deliver = pipeline_task(DELIVER, queue="deliver")(run_deliver)
