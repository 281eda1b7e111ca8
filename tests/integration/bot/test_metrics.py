"""The bot process serves Prometheus ``/metrics`` with the seed metric names."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from shared.settings import MetricsSettings
from tests.integration.bot.harness import running_bot
from tests.integration.bot.test_summarize import option

pytestmark = pytest.mark.integration


def test_bot_metrics_endpoint_counts_summary_requests(database_url: str, redis_url: str) -> None:
    async def scenario() -> str:
        async with running_bot(
            database_url=database_url, redis_url=redis_url, metrics=MetricsSettings(port=0)
        ) as h:
            await h.command(
                "summarize",
                [option("messages", 50, 4), option("format", "brief", 3)],
                user=h.world.bob,
                channel=h.world.general,
            )
            server = h.bot.metrics_server
            assert server is not None
            url = f"http://127.0.0.1:{server.server_port}/metrics"
            response = await asyncio.to_thread(httpx.get, url, timeout=10)
            assert response.status_code == 200
            return response.text

    text = asyncio.run(scenario())
    assert 'summary_requests_total{status="accepted",type="brief"}' in text
    # Queue lengths are the workers' to export (they hold the broker connection).
    assert "summary_processing_seconds" in text
