"""Tasks of the ``summarize`` queue: the stage itself, and the LLM map and reduce steps."""

from shared.jobs import SUMMARIZE
from shared.pipeline.llm.map_step import run_map
from shared.pipeline.llm.mapreduce import MAP_CHUNK, REDUCE
from shared.pipeline.llm.reduce_step import run_reduce
from shared.pipeline.summarize import run_summarize
from workers.base import pipeline_task

summarize = pipeline_task(SUMMARIZE, queue="summarize")(run_summarize)
summarize_map = pipeline_task(MAP_CHUNK, queue="summarize")(run_map)
summarize_reduce = pipeline_task(REDUCE, queue="summarize")(run_reduce)
