"""Who the client is, on the real API process: ``X-Forwarded-For`` counts only from a proxy
listed in ``FORWARDED_ALLOW_IPS`` (none by default).

A key restricted to 10.9.9.9 is used from 127.0.0.1 (the test's own address) claiming to be
10.9.9.9.  By default the claim is ignored (403); when 127.0.0.1 is a configured proxy the
claim is believed (202); when another address is the proxy it is ignored again.
"""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest

from shared.apikeys import create_api_key
from shared.crypto import generate_key
from shared.db.engine import make_engine, make_sessionmaker
from shared.db.migrate import upgrade
from tests.integration.api.server import api_server
from tests.support.discord_tenants import DiscordTenants

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def setup(
    postgres_url: str,
    redis_url: str,
    discord_tenants: DiscordTenants,
    tmp_path_factory: pytest.TempPathFactory,
) -> tuple[dict[str, str], str, str, Path]:
    upgrade(postgres_url)
    guild, channel = discord_tenants.tenant()
    engine = make_engine(postgres_url)
    _row, token = create_api_key(
        make_sessionmaker(engine),
        guild_id=guild,
        scopes=["jobs:write"],
        name="proxy-test",
        now=datetime.now(UTC),
        ip_allowlist=["10.9.9.9/32"],
    )
    engine.dispose()
    tmp = tmp_path_factory.mktemp("forwarding")
    env = {
        **{k: v for k, v in os.environ.items() if k != "FORWARDED_ALLOW_IPS"},
        "DATABASE_URL": postgres_url,
        "REDIS_URL": redis_url,
        "SECRET_KEYS": generate_key(),
        "SUMMARYBOT_DATA_DIR": str(tmp / "data"),
        "LOG_LEVEL": "WARNING",
        "DISCORD_TOKEN": discord_tenants.token,
        "DISCORD_API_BASE": discord_tenants.server.api_base,
    }
    return env, token, channel, tmp


def _claiming_to_be_allowed(url: str, token: str, channel: str) -> httpx.Response:
    return httpx.post(
        f"{url}/v1/jobs",
        headers={"Authorization": f"Bearer {token}", "X-Forwarded-For": "10.9.9.9"},
        json={"channel_id": channel, "window": {"hours": 1}},
        timeout=10,
    )


@pytest.mark.parametrize(
    ("proxies", "expected"),
    [(None, 403), ("127.0.0.1", 202), ("10.0.0.1,192.168.0.0/16", 403)],
    ids=["no-proxy-configured", "loopback-is-the-proxy", "another-host-is-the-proxy"],
)
def test_forwarded_addresses_count_only_from_configured_proxies(
    setup: tuple[dict[str, str], str, str, Path], proxies: str | None, expected: int
) -> None:
    env, token, channel, tmp = setup
    if proxies is not None:
        env = {**env, "FORWARDED_ALLOW_IPS": proxies}
    with api_server(env, tmp / f"api-{len(list(tmp.iterdir()))}.log") as running:
        response = _claiming_to_be_allowed(running.url, token, channel)
    assert response.status_code == expected, response.text
    if expected == 403:
        assert "127.0.0.1" in response.json()["detail"]


def test_a_bad_proxy_list_stops_the_api_with_one_line(
    setup: tuple[dict[str, str], str, str, Path],
) -> None:
    env, *_ = setup
    result = subprocess.run(
        [sys.executable, "-m", "producers.cli.main", "api", "--port", "1"],
        env={**env, "FORWARDED_ALLOW_IPS": "proxy.internal"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert result.stderr.startswith("summarybot: FORWARDED_ALLOW_IPS: 'proxy.internal' is not")
    assert result.stderr.count("\n") == 1, result.stderr
