"""POST /v1/digests and /v1/catchups, and the digest view of GET /v1/jobs/{id}, against real
PostgreSQL and Redis and the fake Discord (no worker runs: the job row and its FETCH task)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select

from schema.models.jobs import Job
from shared.jobs import FETCH, DiscordServerSource, parse_params
from tests.unit.api.conftest import Api

pytestmark = pytest.mark.integration


def _job(api: Api, job_id: str) -> Job:
    with api.session_factory() as session:
        job = session.get(Job, uuid.UUID(job_id))
    assert job is not None
    return job


def _source(api: Api, job_id: str) -> DiscordServerSource:
    source = parse_params(_job(api, job_id).params).source
    assert isinstance(source, DiscordServerSource)
    return source


def _guild_jobs(api: Api) -> list[Job]:
    with api.session_factory() as session:
        return list(
            session.scalars(select(Job).where(Job.guild_id == api.guild, Job.origin != "bot"))
        )


def _asked_the_bot(api: Api, member: str) -> str:
    """``member``, after asking the bot for a summary in the guild (a bot job of theirs)."""
    with api.session_factory() as session, session.begin():
        session.add(
            Job(
                id=uuid.uuid4(),
                origin="bot",
                status="completed",
                guild_id=api.guild,
                channel_id=api.channel,
                requested_by=member,
                params={"source": {"kind": "discord_channel", "channel_id": api.channel}},
                progress={},
            )
        )
    return member


def _endpoint(api: Api, token: str) -> str:
    response = api.client.post(
        "/v1/webhook-endpoints", headers=api.auth(token), json={"url": "https://example.com/d"}
    )
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


def test_a_server_digest_is_read_by_its_destination_channels_viewers(api: Api) -> None:
    token = api.key(("jobs:write",))
    before = datetime.now(UTC)
    response = api.client.post(
        "/v1/digests",
        headers=api.auth(token),
        json={
            "window": {"hours": 12},
            "format": "brief",
            "destinations": [{"kind": "channel", "channel_id": api.channel}],
        },
    )
    assert response.status_code == 202, response.text
    body = response.json()
    assert response.headers["location"] == f"/v1/jobs/{body['id']}"
    assert body["status"] == "queued" and body["guild_id"] == api.guild
    assert body["channel_id"] is None and body["format"] == "brief"
    assert body["channels"] is None and body["left_out"] == []
    job = _job(api, body["id"])
    assert job.origin == "api" and job.requested_by == f"api:{token.split('_')[1]}"
    source = _source(api, body["id"])
    assert source.guild_id == api.guild
    assert source.category_id is None and source.channel_ids == []
    assert [a.model_dump() for a in source.audience] == [
        {"kind": "channel", "channel_id": api.channel}
    ]
    assert before - timedelta(hours=12, seconds=5) <= source.after
    assert source.after <= datetime.now(UTC) - timedelta(hours=12)
    assert source.before is None and not source.since_last_message
    assert api.enqueuer.sent == [(FETCH, (body["id"],))]


def test_a_digest_of_listed_channels_to_a_webhook_names_its_audience(api: Api) -> None:
    admin = api.key(("admin",))
    endpoint = _endpoint(api, admin)
    second = api.discord.channel(api.guild, "second")
    reader = api.discord.member(api.guild, "reader")
    response = api.client.post(
        "/v1/digests",
        headers=api.auth(admin),
        json={
            "channel_ids": [api.channel, second],
            "window": {"after": "2026-03-01T00:00:00Z", "before": "2026-03-02T00:00:00+01:00"},
            "destinations": [{"kind": "webhook", "endpoint_id": endpoint}],
            "audience": [{"kind": "member", "user_id": reader}],
        },
    )
    assert response.status_code == 202, response.text
    source = _source(api, response.json()["id"])
    assert source.channel_ids == [api.channel, second]
    assert [a.model_dump() for a in source.audience] == [{"kind": "member", "user_id": reader}]
    assert source.after == datetime(2026, 3, 1, tzinfo=UTC)
    assert source.before == datetime(2026, 3, 1, 23, tzinfo=UTC)


def test_a_digest_sent_only_to_a_webhook_needs_an_audience(api: Api) -> None:
    admin = api.key(("admin",))
    endpoint = _endpoint(api, admin)
    response = api.client.post(
        "/v1/digests",
        headers=api.auth(admin),
        json={"destinations": [{"kind": "webhook", "endpoint_id": endpoint}]},
    )
    assert response.status_code == 422, response.text
    assert "needs an audience" in response.json()["detail"]
    assert _guild_jobs(api) == [] and api.enqueuer.sent == []


@pytest.mark.parametrize(
    ("body", "words"),
    [
        ({"window": {"messages": 500}}, "not messages"),
        ({"window": {"after_message_id": "123456789012345678"}}, "not after_message_id"),
        ({"window": {"hours": 2, "after": "2026-03-01T00:00:00Z"}}, "not both"),
        ({"window": {}}, "give hours"),
        ({"window": {"hours": 200}}, "less than or equal to 168"),
        ({"channel_ids": ["123456789012345678"] * 51}, "at most 50"),
        ({"audience": []}, "at least 1"),
        ({"audience": [{"kind": "role", "role_id": "123456789012345678"}]}, "does not match"),
    ],
)
def test_digest_requests_that_cannot_be_a_digest_are_422(
    api: Api, body: dict[str, Any], words: str
) -> None:
    token = api.key(("jobs:write",))
    payload = {"destinations": [{"kind": "channel", "channel_id": api.channel}], **body}
    response = api.client.post("/v1/digests", headers=api.auth(token), json=payload)
    assert response.status_code == 422, response.text
    assert words in response.text
    assert api.enqueuer.sent == []


def test_digest_rules_of_the_core_answer_as_problems(api: Api) -> None:
    token = api.key(("jobs:write",))
    destination = [{"kind": "channel", "channel_id": api.channel}]
    both = api.client.post(
        "/v1/digests",
        headers=api.auth(token),
        json={
            "category_id": api.channel,
            "channel_ids": [api.channel],
            "destinations": destination,
        },
    )
    assert both.status_code == 422 and "not both" in both.json()["detail"]
    foreign = api.client.post(
        "/v1/digests",
        headers=api.auth(token),
        json={"channel_ids": [api.other_channel], "destinations": destination},
    )
    assert foreign.status_code == 404, foreign.text
    assert foreign.json()["detail"] == f"no channel {api.other_channel} in this server"
    reader = api.discord.member(api.guild, "reader")
    narrow = api.client.post(
        "/v1/digests",
        headers=api.auth(token),
        json={"destinations": destination, "audience": [{"kind": "member", "user_id": reader}]},
    )
    assert narrow.status_code == 422, narrow.text
    assert f"add channel {api.channel}" in narrow.json()["detail"]
    assert _guild_jobs(api) == [] and api.enqueuer.sent == []


def test_a_digest_needs_jobs_write_and_replays_with_its_idempotency_key(api: Api) -> None:
    body = {"destinations": [{"kind": "channel", "channel_id": api.channel}]}
    reader = api.key(("summaries:read",))
    assert api.client.post("/v1/digests", headers=api.auth(reader), json=body).status_code == 403
    assert api.client.post("/v1/catchups", headers=api.auth(reader), json={}).status_code == 403
    token = api.key(("jobs:write",))
    headers = api.auth(token) | {"Idempotency-Key": "digest-1"}
    first = api.client.post("/v1/digests", headers=headers, json=body)
    second = api.client.post("/v1/digests", headers=headers, json=body)
    assert first.status_code == second.status_code == 202
    assert first.json()["id"] == second.json()["id"]
    assert len(_guild_jobs(api)) == 1 and len(api.enqueuer.sent) == 1


def test_a_catchup_goes_to_the_members_dms_by_default(api: Api) -> None:
    token = api.key(("jobs:write",))
    member = _asked_the_bot(api, api.discord.member(api.guild, "reader"))
    now = datetime.now(UTC)
    response = api.client.post(
        "/v1/catchups", headers=api.auth(token), json={"user_id": member, "language": "de"}
    )
    assert response.status_code == 202, response.text
    body = response.json()
    assert body["format"] == "brief"
    params = parse_params(_job(api, body["id"]).params)
    assert [d.model_dump() for d in params.destinations] == [
        {"kind": "dm", "user_id": member, "fallback": None}
    ]
    assert params.language == "de"
    source = params.source
    assert isinstance(source, DiscordServerSource)
    assert [a.model_dump() for a in source.audience] == [{"kind": "member", "user_id": member}]
    assert source.focus_user_id == member and source.since_last_message
    assert now - timedelta(days=7, seconds=5) <= source.after <= now - timedelta(days=7, seconds=-5)
    assert api.enqueuer.sent == [(FETCH, (body["id"],))]


def test_no_key_makes_the_bot_dm_a_member_who_never_used_it(api: Api) -> None:
    # A key could have the bot direct-message any member of its guild, over and over
    # (catch-ups go to the member's DMs by default): unsolicited DMs from the bot, which
    # Discord treats as spam for the whole application.
    token = api.key(("jobs:write",))
    stranger = api.discord.member(api.guild, "stranger")
    for body in (
        {"user_id": stranger},
        {"user_id": stranger, "destinations": [{"kind": "dm", "user_id": stranger}]},
    ):
        response = api.client.post("/v1/catchups", headers=api.auth(token), json=body)
        assert response.status_code == 422, response.text
        assert "never asked the bot" in response.json()["detail"]
    assert _guild_jobs(api) == [] and api.enqueuer.sent == []
    # Once the member has asked the bot for something, a catch-up may go to their DMs.
    _asked_the_bot(api, stranger)
    response = api.client.post("/v1/catchups", headers=api.auth(token), json={"user_id": stranger})
    assert response.status_code == 202, response.text


def test_a_catchup_since_a_time_to_a_webhook(api: Api) -> None:
    admin = api.key(("admin",))
    endpoint = _endpoint(api, admin)
    member = api.discord.member(api.guild, "reader")
    since = (datetime.now(UTC) - timedelta(hours=3)).replace(microsecond=0)
    response = api.client.post(
        "/v1/catchups",
        headers=api.auth(admin),
        json={
            "user_id": member,
            "since": since.isoformat(),
            "format": "structured",
            "destinations": [{"kind": "webhook", "endpoint_id": endpoint}],
        },
    )
    assert response.status_code == 202, response.text
    params = parse_params(_job(api, response.json()["id"]).params)
    assert [d.kind for d in params.destinations] == ["webhook"]
    assert isinstance(params.source, DiscordServerSource)
    assert params.source.after == since and not params.source.since_last_message


def test_catchups_that_cannot_be_done_are_refused(api: Api) -> None:
    token = api.key(("jobs:write",))
    member = _asked_the_bot(api, api.discord.member(api.guild, "reader"))
    other = _asked_the_bot(api, api.discord.member(api.guild, "other"))
    now = datetime.now(UTC)
    cases: list[tuple[dict[str, Any], int, str]] = [
        ({"user_id": member, "since": (now - timedelta(days=8)).isoformat()}, 422, "7 days"),
        ({"user_id": member, "since": (now + timedelta(hours=2)).isoformat()}, 422, "future"),
        ({"user_id": member, "since": "2026-03-01T08:00:00"}, 422, "timezone"),
        ({"user_id": "123456789012345678"}, 404, "no member 123456789012345678"),
        (
            {"user_id": member, "destinations": [{"kind": "dm", "user_id": other}]},
            422,
            f"add member {other}",
        ),
        (
            {"user_id": member, "destinations": [{"kind": "channel", "channel_id": api.channel}]},
            422,
            "does not match",
        ),
        ({"user_id": member, "destinations": []}, 422, "at least 1"),
    ]
    for body, status, words in cases:
        response = api.client.post("/v1/catchups", headers=api.auth(token), json=body)
        assert response.status_code == status, (body, response.text)
        assert words in response.text, (body, response.text)
    assert _guild_jobs(api) == [] and api.enqueuer.sent == []


def test_a_digest_job_shows_its_channels_and_what_it_left_out(api: Api) -> None:
    token = api.key(("summaries:read",))
    parent, part = uuid.uuid4(), uuid.uuid4()
    hidden = api.discord.channel(api.guild, "mods")
    plan = {
        "scope_name": "Tenant",
        "since": "2026-03-01T00:00:00+00:00",
        "parts": [
            {"channel_id": api.channel, "name": "general", "parent": None, "job_id": str(part)}
        ],
        "quiet": [{"channel_id": "123456789012345670", "name": "old", "parent": None}],
        "left_out": [{"channel_id": hidden, "name": "mods", "reason": "reader cannot read it"}],
    }
    source = {
        "kind": "discord_server",
        "guild_id": api.guild,
        "after": "2026-03-01T00:00:00Z",
        "audience": [{"kind": "channel", "channel_id": api.channel}],
    }
    with api.session_factory() as session, session.begin():
        session.add(
            Job(
                id=parent,
                origin="api",
                status="summarizing",
                guild_id=api.guild,
                params={"source": source},
                progress={"plan": plan},
            )
        )
        session.add(
            Job(
                id=part,
                origin="part",
                status="queued",
                guild_id=api.guild,
                channel_id=api.channel,
                params={"source": {"kind": "discord_channel", "channel_id": api.channel}},
                progress={},
            )
        )
    body = api.client.get(f"/v1/jobs/{parent}", headers=api.auth(token)).json()
    assert body["channels"] == 2
    assert body["left_out"] == [
        {"channel_id": hidden, "name": "mods", "reason": "reader cannot read it"}
    ]
    part_body = api.client.get(f"/v1/jobs/{part}", headers=api.auth(token))
    assert part_body.status_code == 200, part_body.text
    assert part_body.json()["channels"] is None and part_body.json()["left_out"] == []


def test_the_openapi_document_has_the_digest_operations_with_examples(api: Api) -> None:
    doc = api.client.get("/openapi.json").json()
    for path in ("/v1/digests", "/v1/catchups"):
        operation = doc["paths"][path]["post"]
        assert {"202", "401", "403", "404", "422", "429"} <= set(operation["responses"])
    schemas = doc["components"]["schemas"]
    assert schemas["DigestCreate"]["examples"][0]["window"] == {"hours": 24}
    assert schemas["CatchupCreate"]["examples"][0]["user_id"]
    assert "messages" not in schemas["DigestWindow"]["properties"]
    assert {"left_out", "channels"} <= set(schemas["JobOut"]["properties"])
    assert schemas["LeftOutChannel"]["required"] == ["channel_id", "name", "reason"]
