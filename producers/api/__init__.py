"""The inbound HTTP API (FastAPI): ``create_app`` builds it, ``summarybot api`` serves it."""

from __future__ import annotations

from producers.api.app import create_app

__all__ = ["create_app"]
