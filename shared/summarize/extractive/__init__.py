"""The offline summarizer: picks and labels real messages, never writes new facts."""

from shared.summarize.extractive.summarizer import ExtractiveSummarizer

__all__ = ["ExtractiveSummarizer"]
