"""CRUD of /v1/schedules and /v1/webhook-endpoints, and member data erasure."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import select

from schema.models.jobs import Job, Summary
from schema.models.schedules import Schedule
from schema.models.tenancy import ALL_GUILDS, ApiKey, UserOptOut, WebhookEndpoint
from shared.delivery.config import DeliverySettings
from shared.digests.spec import next_run, parse_schedule
from shared.erasure import ERASED_NAME
from shared.settings import Settings
from tests.unit.api.conftest import Api, insert_summary, snowflake

pytestmark = pytest.mark.integration


def test_schedule_crud(api: Api) -> None:
    token = api.key(("admin",))
    channel = api.channel
    created = api.client.post(
        "/v1/schedules",
        headers=api.auth(token),
        json={
            "channel_id": channel,
            "schedule": "weekly mon 08:00",
            "timezone": "Europe/Berlin",
            "format": "detailed",
            "language": "de",
            "destination": {"kind": "channel", "channel_id": api.channel},
            "empty_policy": "notice",
        },
    )
    assert created.status_code == 201, created.text
    body = created.json()
    assert created.headers["location"] == f"/v1/schedules/{body['id']}"
    assert body["cron"] == "0 8 * * 1"
    assert body["timezone"] == "Europe/Berlin"
    assert "Europe/Berlin" in body["description"]
    spec = parse_schedule("weekly mon 08:00", default_timezone="Europe/Berlin")
    next_at = datetime.fromisoformat(body["next_run_at"])
    assert next_at == next_run(spec, datetime.fromisoformat(body["created_at"]))
    with api.session_factory() as session:
        row = session.get(Schedule, uuid.UUID(body["id"]))
        assert row is not None
        assert row.guild_id == api.guild
        assert row.created_by == f"api:{token.split('_')[1]}"
        assert row.destination["kind"] == "channel"

    listed = api.client.get("/v1/schedules", headers=api.auth(token)).json()
    assert [s["id"] for s in listed["items"]] == [body["id"]]
    assert listed["next_cursor"] is None
    got = api.client.get(f"/v1/schedules/{body['id']}", headers=api.auth(token)).json()
    assert got == body

    paused = api.client.patch(
        f"/v1/schedules/{body['id']}", headers=api.auth(token), json={"enabled": False}
    ).json()
    assert paused["enabled"] is False
    assert paused["next_run_at"] is None
    resumed = api.client.patch(
        f"/v1/schedules/{body['id']}",
        headers=api.auth(token),
        json={"enabled": True, "schedule": "daily 18:30 America/New_York", "language": None},
    ).json()
    assert resumed["cron"] == "30 18 * * *"
    assert resumed["timezone"] == "America/New_York"
    assert resumed["language"] is None
    assert resumed["next_run_at"] is not None
    retimed = api.client.patch(
        f"/v1/schedules/{body['id']}", headers=api.auth(token), json={"timezone": "Asia/Tokyo"}
    ).json()
    # The schedule names its own zone, which wins over the default.
    assert retimed["timezone"] == "America/New_York"
    nulled = api.client.patch(
        f"/v1/schedules/{body['id']}", headers=api.auth(token), json={"format": None}
    )
    assert nulled.status_code == 422

    deleted = api.client.delete(f"/v1/schedules/{body['id']}", headers=api.auth(token))
    assert deleted.status_code == 204
    assert api.client.get(f"/v1/schedules/{body['id']}", headers=api.auth(token)).status_code == 404


@pytest.mark.parametrize(
    "text", ["", "sometimes", "daily 25:00", "cron * * * * *", "daily 09:00 Mars/Olympus"]
)
def test_bad_schedules_are_422_with_a_hint(api: Api, text: str) -> None:
    token = api.key(("admin",))
    response = api.client.post(
        "/v1/schedules",
        headers=api.auth(token),
        json={
            "channel_id": api.channel,
            "schedule": text,
            "destination": {"kind": "channel", "channel_id": api.channel},
        },
    )
    assert response.status_code == 422, response.text
    assert response.json()["errors"][0]["pointer"] == "/schedule"


def test_schedule_list_pages_and_filters(api: Api) -> None:
    token = api.key(("admin",))
    channel = api.channel
    second = api.discord.channel(api.guild)
    ids = []
    for index in range(5):
        response = api.client.post(
            "/v1/schedules",
            headers=api.auth(token),
            json={
                "channel_id": channel if index % 2 == 0 else second,
                "schedule": "hourly",
                "destination": {"kind": "channel", "channel_id": channel},
                "enabled": index != 4,
            },
        )
        ids.append(response.json()["id"])
    seen: list[str] = []
    cursor = None
    while True:
        query = {"limit": 2} | ({"cursor": cursor} if cursor else {})
        page = api.client.get("/v1/schedules", headers=api.auth(token), params=query).json()
        seen += [s["id"] for s in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == ids
    filtered = api.client.get(
        "/v1/schedules", headers=api.auth(token), params={"channel_id": channel}
    ).json()
    assert [s["id"] for s in filtered["items"]] == ids[0::2]
    bad = api.client.get("/v1/schedules", headers=api.auth(token), params={"cursor": "zzz"})
    assert bad.status_code == 422


@pytest.mark.parametrize("name", ["Host", "content-length", "Webhook-Signature"])
def test_a_custom_auth_header_may_not_replace_a_header_the_delivery_sets(
    api: Api, name: str
) -> None:
    # Refused when registered or changed, by the rule the delivery applies before sending,
    # rather than accepted and then failing every delivery.
    token = api.key(("admin",))
    auth = {"kind": "header", "name": name, "value": "abc"}
    with api.session_factory() as session:
        before = session.query(WebhookEndpoint).count()
    created = api.client.post(
        "/v1/webhook-endpoints",
        headers=api.auth(token),
        json={"url": "https://hooks.example.com/in", "auth": auth},
    )
    assert created.status_code == 422, created.text
    problem = created.json()
    assert "a header name other than" in problem["detail"]
    assert problem["errors"][0]["pointer"] == "/auth"
    with api.session_factory() as session:
        assert session.query(WebhookEndpoint).count() == before
    endpoint = api.client.post(
        "/v1/webhook-endpoints",
        headers=api.auth(token),
        json={"url": "https://hooks.example.com/in"},
    ).json()
    changed = api.client.patch(
        f"/v1/webhook-endpoints/{endpoint['id']}", headers=api.auth(token), json={"auth": auth}
    )
    assert changed.status_code == 422, changed.text
    with api.session_factory() as session:
        row = session.get(WebhookEndpoint, uuid.UUID(endpoint["id"]))
        assert row is not None
        assert row.auth_encrypted is None


def test_webhook_endpoint_crud_and_secret_shown_once(api: Api) -> None:
    token = api.key(("admin",))
    created = api.client.post(
        "/v1/webhook-endpoints",
        headers=api.auth(token),
        json={
            "url": "https://hooks.example.com/in",
            "description": "wiki",
            "events": ["summary.completed"],
            "auth": {"kind": "header", "name": "X-Token", "value": "abc"},
        },
    )
    assert created.status_code == 201, created.text
    body = created.json()
    secret = body["secret"]
    assert secret.startswith("whsec_")
    assert body["auth_kind"] == "header"
    with api.session_factory() as session:
        row = session.get(WebhookEndpoint, uuid.UUID(body["id"]))
        assert row is not None
        assert secret not in row.secret_encrypted
        assert api.box.decrypt(row.secret_encrypted) == secret
        assert row.auth_encrypted is not None
        assert api.box.decrypt(row.auth_encrypted) == "X-Token: abc"
    got = api.client.get(f"/v1/webhook-endpoints/{body['id']}", headers=api.auth(token)).json()
    assert "secret" not in got
    assert got["events"] == ["summary.completed"]
    listed = api.client.get("/v1/webhook-endpoints", headers=api.auth(token)).json()
    assert [e["id"] for e in listed["items"]] == [body["id"]]
    assert all("secret" not in e for e in listed["items"])

    rotated = api.client.post(
        f"/v1/webhook-endpoints/{body['id']}/rotate-secret", headers=api.auth(token)
    )
    assert rotated.status_code == 200
    new_secret = rotated.json()["secret"]
    assert new_secret != secret
    with api.session_factory() as session:
        row = session.get(WebhookEndpoint, uuid.UUID(body["id"]))
        assert row is not None
        assert api.box.decrypt(row.secret_encrypted) == new_secret
        assert [api.box.decrypt(p["secret_encrypted"]) for p in row.previous_secrets] == [secret]

    other = api.client.post(
        "/v1/webhook-endpoints", headers=api.auth(token), json={"url": "https://b.example.com/"}
    ).json()
    with api.session_factory() as session, session.begin():
        row = session.get(WebhookEndpoint, uuid.UUID(body["id"]))
        assert row is not None
        row.enabled = False
        row.disabled_reason = "410 Gone"
        row.failing_since = datetime.now(UTC)
    patched = api.client.patch(
        f"/v1/webhook-endpoints/{body['id']}",
        headers=api.auth(token),
        json={
            "enabled": True,
            "auth": None,
            "description": None,
            "url": "https://hooks.example.com/v2",
            "events": ["job.failed", "job.failed"],
            "fallback": {"kind": "webhook", "endpoint_id": other["id"]},
        },
    ).json()
    assert patched["enabled"] is True
    assert patched["disabled_reason"] is None
    assert patched["failing_since"] is None
    assert patched["auth_kind"] == "none"
    assert patched["description"] is None
    assert patched["events"] == ["job.failed"]
    assert patched["fallback"] == {"kind": "webhook", "endpoint_id": other["id"]}
    itself = api.client.patch(
        f"/v1/webhook-endpoints/{body['id']}",
        headers=api.auth(token),
        json={"fallback": {"kind": "webhook", "endpoint_id": body["id"]}},
    )
    assert itself.status_code == 422
    assert (
        api.client.delete(
            f"/v1/webhook-endpoints/{body['id']}", headers=api.auth(token)
        ).status_code
        == 204
    )
    assert (
        api.client.get(f"/v1/webhook-endpoints/{body['id']}", headers=api.auth(token)).status_code
        == 404
    )


@pytest.mark.parametrize(
    "url",
    [
        "http://example.com/hook",
        "https://127.0.0.1/hook",
        "https://10.0.0.5/hook",
        "https://[::1]/hook",
        "https://169.254.169.254/latest",
        "https://localhost/hook",
        "https://printer.local/x",
        "https://user:pw@example.com/",
        "https://example.com/#frag",
        "https://example.com:99999/",
        "https:///nohost",
        "https://exa mple.com/",
        "ftp://example.com/",
    ],
)
def test_webhook_urls_must_be_public_https(api: Api, url: str) -> None:
    token = api.key(("admin",))
    response = api.client.post("/v1/webhook-endpoints", headers=api.auth(token), json={"url": url})
    assert response.status_code == 422, response.text
    assert response.json()["errors"][0]["pointer"] == "/url"


def test_erase_member_data(api: Api) -> None:
    member = ("444444444444444444", "dana")
    admin = api.key(("admin",))
    job_id, summary_id = insert_summary(
        api.session_factory, api.guild, member=member, requested_by=member[0]
    )
    _other_job, other_summary = insert_summary(api.session_factory, api.other_guild, member=member)
    _clean_job, clean_summary = insert_summary(api.session_factory, api.guild)
    with api.session_factory() as session, session.begin():
        session.add(UserOptOut(guild_id=ALL_GUILDS, user_id=member[0]))
        session.add(
            Schedule(
                guild_id=api.guild,
                channel_id=snowflake(),
                created_by=member[0],
                spec="hourly",
                cron="0 * * * *",
                timezone="UTC",
                destination={"kind": "channel", "channel_id": api.channel},
            )
        )
        key = session.get(ApiKey, admin.split("_")[1])
        assert key is not None
        key.created_by = member[0]
    with api.session_factory() as session:
        untouched_before = session.get(Summary, clean_summary)
        assert untouched_before is not None
        clean_content = untouched_before.content

    response = api.client.delete(f"/v1/users/{member[0]}/data", headers=api.auth(admin))
    assert response.status_code == 200, response.text
    assert response.json() == {
        "user_id": member[0],
        "guild_id": api.guild,
        "summaries_updated": 1,
        "jobs_updated": 1,
        "schedules_updated": 1,
        "api_keys_updated": 1,
        "opt_out_kept": True,
    }
    with api.session_factory() as session:
        summary = session.get(Summary, summary_id)
        job = session.get(Job, job_id)
        other = session.get(Summary, other_summary)
        clean = session.get(Summary, clean_summary)
        assert summary is not None and job is not None and other is not None and clean is not None
        content = summary.content
        text = str(content)
        assert member[0] not in text
        assert "'dana'" not in text and "dana " not in text
        assert ERASED_NAME in content["overview"]
        assert [p["name"] for p in content["participants"]] == ["bob"]
        assert list(content["citations"]) == ["902"]
        assert [t["message_ids"] for t in content["topics"]] == [["902"]]
        assert content["decisions"] == []
        assert content["action_items"] == [
            {"task": "tag v2", "owner": None, "due": None, "message_ids": ["902"]}
        ]
        assert [c["participant"] for c in content["contributions"]] == ["bob"]
        assert job.requested_by is None
        assert member[0] in str(other.content)  # another guild's data is not this key's
        assert clean.content == clean_content
        assert (
            session.scalars(select(UserOptOut).where(UserOptOut.user_id == member[0])).one_or_none()
            is not None
        )
    again = api.client.delete(f"/v1/users/{member[0]}/data", headers=api.auth(admin)).json()
    assert again["summaries_updated"] == again["jobs_updated"] == 0
    assert api.client.delete("/v1/users/alice/data", headers=api.auth(admin)).status_code == 422


def test_an_internal_receiver_registers_when_the_operator_allows_its_host(
    make_api: Any, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The API applies the delivery guard's own rule, WEBHOOK_ALLOWED_HOSTS included."""
    url = "http://127.0.0.1:8123/hook"
    strict = make_api()
    token = strict.key(("admin",))
    refused = strict.client.post(
        "/v1/webhook-endpoints", headers=strict.auth(token), json={"url": url}
    )
    assert refused.status_code == 422
    assert refused.json()["errors"][0]["pointer"] == "/url"
    assert "WEBHOOK_ALLOWED_HOSTS" in refused.json()["detail"]
    monkeypatch.setenv("WEBHOOK_ALLOWED_HOSTS", "127.0.0.1")
    operator = settings.model_copy(update={"delivery": DeliverySettings.load()})
    allowed = make_api(settings_for=operator)
    token = allowed.key(("admin",))
    created = allowed.client.post(
        "/v1/webhook-endpoints", headers=allowed.auth(token), json={"url": url}
    )
    assert created.status_code == 201, created.text
    assert created.json()["url"] == url
