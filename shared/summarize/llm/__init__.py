"""LLM summarization: prompts, planning, output checks, notes caches and the backend."""
