"""The LLM branch of the summarize stage: start, map and reduce tasks, budgets."""
