"""The guild boundary at the API's door: a key of one guild reaches nothing of another.

A channel of another guild, a destination of another guild and a channel that does not exist
are refused alike (404, the same words), before any row is written or task published, and the
only Discord request made is the channel lookup (never history, never a post).
"""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import func, select

from schema.models.jobs import Job
from schema.models.schedules import Schedule
from tests.unit.api.conftest import Api, snowflake


def _jobs(api: Api) -> int:
    with api.session_factory() as session:
        return int(session.scalar(select(func.count()).select_from(Job)) or 0)


def _schedules(api: Api, guild: str) -> int:
    with api.session_factory() as session:
        return int(
            session.scalar(
                select(func.count()).select_from(Schedule).where(Schedule.guild_id == guild)
            )
            or 0
        )


def _discord_calls(api: Api) -> list[str]:
    return [event[1] for event in api.discord.server.fake.limits.events]


def _refused_like_missing(response: Any, channel: str) -> None:
    assert response.status_code == 404, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    assert response.json()["detail"] == f"no channel {channel} in this server"


@pytest.mark.parametrize("where", ["source", "destination"])
def test_a_channel_of_another_guild_is_refused_like_a_missing_one(api: Api, where: str) -> None:
    token = api.key(("admin",))
    missing = snowflake()
    before = _jobs(api)
    seen = len(_discord_calls(api))  # the fake is shared with earlier tests
    answers = {}
    for name, channel in (("other", api.other_channel), ("missing", missing)):
        body: dict[str, Any] = {"channel_id": api.channel, "window": {"hours": 2}}
        if where == "source":
            body["channel_id"] = channel
        else:
            body["destinations"] = [{"kind": "channel", "channel_id": channel}]
        answers[name] = (channel, api.client.post("/v1/jobs", headers=api.auth(token), json=body))
    for channel, response in answers.values():
        _refused_like_missing(response, channel)
    shapes = {
        name: response.json()["detail"].replace(channel, "X")
        for name, (channel, response) in answers.items()
    }
    assert shapes["other"] == shapes["missing"]
    assert _jobs(api) == before
    assert api.enqueuer.sent == []
    history = [c for c in _discord_calls(api)[seen:] if "/messages" in c]
    assert history == [], history


def test_a_guild_id_in_the_body_cannot_name_another_guild(api: Api) -> None:
    token = api.key(("jobs:write",))
    response = api.client.post(
        "/v1/jobs",
        headers=api.auth(token),
        json={"guild_id": api.other_guild, "channel_id": api.other_channel},
    )
    assert response.status_code == 404
    assert api.enqueuer.sent == []


def test_the_same_request_in_its_own_guild_is_accepted(api: Api) -> None:
    token = api.key(("admin",))
    other_key = api.key(("admin",), guild=api.other_guild)
    mine = api.client.post(
        "/v1/jobs",
        headers=api.auth(token),
        json={
            "channel_id": api.channel,
            "destinations": [{"kind": "channel", "channel_id": api.channel}],
        },
    )
    theirs = api.client.post(
        "/v1/jobs",
        headers=api.auth(other_key),
        json={
            "channel_id": api.other_channel,
            "destinations": [{"kind": "channel", "channel_id": api.other_channel}],
        },
    )
    assert mine.status_code == theirs.status_code == 202
    assert mine.json()["guild_id"] == api.guild
    assert theirs.json()["guild_id"] == api.other_guild
    assert len(api.enqueuer.sent) == 2


@pytest.mark.parametrize("where", ["channel", "destination"])
def test_schedules_keep_to_their_guild(api: Api, where: str) -> None:
    token = api.key(("admin",))
    body: dict[str, Any] = {
        "channel_id": api.channel,
        "schedule": "daily 09:00",
        "destination": {"kind": "channel", "channel_id": api.channel},
    }
    if where == "channel":
        body["channel_id"] = api.other_channel
    else:
        body["destination"] = {"kind": "channel", "channel_id": api.other_channel}
    response = api.client.post("/v1/schedules", headers=api.auth(token), json=body)
    _refused_like_missing(response, api.other_channel)
    assert _schedules(api, api.guild) == 0
    created = api.client.post(
        "/v1/schedules",
        headers=api.auth(token),
        json={
            **body,
            "channel_id": api.channel,
            "destination": {"kind": "channel", "channel_id": api.channel},
        },
    )
    assert created.status_code == 201, created.text
    moved = api.client.patch(
        f"/v1/schedules/{created.json()['id']}",
        headers=api.auth(token),
        json={"destination": {"kind": "channel", "channel_id": api.other_channel}},
    )
    _refused_like_missing(moved, api.other_channel)


def test_deployment_without_discord_answers_503_before_writing(make_api: Any) -> None:
    api = make_api(without_discord=True)
    token = api.key(("jobs:write",))
    before = _jobs(api)
    response = api.client.post(
        "/v1/jobs", headers=api.auth(token), json={"channel_id": api.channel}
    )
    assert response.status_code == 503, response.text
    assert "DISCORD_TOKEN" in response.json()["detail"]
    assert _jobs(api) == before and api.enqueuer.sent == []
