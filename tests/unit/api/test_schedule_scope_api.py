"""/v1/schedules with a scope: digests of the server, a category or listed channels, and the
latest run's left-out channels in the schedule's view (real PostgreSQL, the fake Discord)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from schema.models.jobs import Job
from schema.models.schedules import ScheduleRun
from tests.unit.api.conftest import Api

pytestmark = pytest.mark.integration


def _create(api: Api, token: str, **body: Any) -> Any:
    payload = {
        "schedule": "daily 09:00",
        "destination": {"kind": "channel", "channel_id": api.channel},
        **body,
    }
    return api.client.post("/v1/schedules", headers=api.auth(token), json=payload)


def test_a_server_digest_is_created_and_changed_through_its_scope(api: Api) -> None:
    token = api.key(("admin",))
    created = _create(api, token, scope="server")
    assert created.status_code == 201, created.text
    body = created.json()
    assert (body["scope"], body["channel_id"], body["category_id"], body["channel_ids"]) == (
        "server",
        api.channel,
        None,
        [],
    )
    assert body["last_run"] is None
    category, inside = api.discord.category(api.guild, "Team", channels=2)
    url = f"/v1/schedules/{body['id']}"
    narrowed = api.client.patch(
        url, headers=api.auth(token), json={"scope": "category", "category_id": category}
    )
    assert narrowed.status_code == 200, narrowed.text
    assert (narrowed.json()["scope"], narrowed.json()["category_id"]) == ("category", category)
    listed = api.client.patch(
        url, headers=api.auth(token), json={"scope": "channels", "channel_ids": inside}
    ).json()
    assert (listed["category_id"], listed["channel_ids"]) == (None, inside)
    got = api.client.get(url, headers=api.auth(token)).json()
    assert got == listed
    wrong = api.client.patch(url, headers=api.auth(token), json={"category_id": category})
    assert wrong.status_code == 422
    assert wrong.json()["errors"][0]["pointer"] == "/category_id"


@pytest.mark.parametrize(
    ("body", "pointer", "words"),
    [
        ({"scope": "server", "category_id": "CATEGORY"}, "/category_id", "not 'server'"),
        ({"scope": "category"}, "/category_id", "needs category_id"),
        ({"scope": "category", "category_id": "CHANNEL"}, "/category_id", "not a category"),
        (
            {"scope": "category", "category_id": "CATEGORY", "channel_ids": ["CHANNEL"]},
            "/channel_ids",
            "not 'category'",
        ),
        ({"scope": "channels"}, "/channel_ids", "needs channel_ids"),
        ({"scope": "channels", "channel_ids": ["CHANNEL", "CHANNEL"]}, "/channel_ids", "twice"),
        ({"channel_ids": ["CHANNEL"], "channel_id": "CHANNEL"}, "/channel_ids", "'channel'"),
        ({}, "/channel_id", "give channel_id"),
        ({"scope": "server", "channel_id": "OTHER"}, "/channel_id", "posted in"),
        (
            {
                "scope": "server",
                "destination": {"kind": "webhook", "endpoint_id": str(uuid.UUID(int=7))},
            },
            "/destination",
            "channel or thread",
        ),
    ],
)
def test_scopes_that_do_not_go_together_are_422_with_a_pointer(
    api: Api, body: dict[str, Any], pointer: str, words: str
) -> None:
    token = api.key(("admin",))
    category, _ = api.discord.category(api.guild)
    other = api.discord.channel(api.guild, "other")
    names = {"CATEGORY": category, "CHANNEL": api.channel, "OTHER": other}

    def fill(value: Any) -> Any:
        if isinstance(value, list):
            return [fill(v) for v in value]
        return names.get(value, value) if isinstance(value, str) else value

    response = _create(api, token, **{k: fill(v) for k, v in body.items()})
    assert response.status_code == 422, response.text
    problem = response.json()
    assert problem["errors"][0]["pointer"] == pointer
    assert words in problem["detail"]


def test_a_category_of_another_server_is_not_found(api: Api) -> None:
    token = api.key(("admin",))
    foreign, _ = api.discord.category(api.other_guild)
    response = _create(api, token, scope="category", category_id=foreign)
    assert response.status_code == 404, response.text
    assert response.json()["detail"] == f"no category {foreign} in this server"


def _run(api: Api, schedule_id: str, *, days: int, progress: dict[str, Any]) -> uuid.UUID:
    job_id = uuid.uuid4()
    start = datetime(2026, 6, 1, tzinfo=UTC) + timedelta(days=days)
    with api.session_factory() as session, session.begin():
        session.add(
            Job(
                id=job_id,
                origin="digest",
                status="completed",
                guild_id=api.guild,
                params={},
                progress=progress,
                redeliveries=0,
            )
        )
        session.flush()
        session.add(
            ScheduleRun(
                schedule_id=uuid.UUID(schedule_id),
                window_start=start,
                window_end=start + timedelta(days=1),
                job_id=job_id,
            )
        )
    return job_id


def test_the_schedule_view_names_what_the_last_digest_left_out(api: Api) -> None:
    token = api.key(("admin",))
    scoped = _create(api, token, scope="server").json()["id"]
    single = _create(api, token, channel_id=api.channel).json()["id"]
    staff = {"channel_id": "1" * 18, "name": "staff-only", "reason": "2 of 9 cannot read it"}
    _run(api, scoped, days=0, progress={"plan": {"left_out": []}})
    latest = _run(api, scoped, days=1, progress={"plan": {"left_out": [staff]}})
    _run(api, single, days=1, progress={"summary_id": None})
    got = api.client.get(f"/v1/schedules/{scoped}", headers=api.auth(token)).json()
    assert got["last_run"]["job_id"] == str(latest)
    assert got["last_run"]["status"] == "completed"
    assert got["last_run"]["window_start"].startswith("2026-06-02")
    assert got["last_run"]["left_out"] == [staff]
    listed = api.client.get("/v1/schedules", headers=api.auth(token)).json()["items"]
    runs = {item["id"]: item["last_run"] for item in listed}
    assert runs[scoped] == got["last_run"]
    assert runs[single]["left_out"] == []
