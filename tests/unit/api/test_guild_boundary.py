"""The guild boundary at the API's door: a key of one guild reaches nothing of another.

A channel of another guild, a destination of another guild and a channel that does not exist
are refused alike (404, the same words), before any row is written or task published, and the
only Discord request made is the channel lookup (never history, never a post).  Threads, forum
posts, categories and members of another guild are refused like missing ones everywhere a
request can name them, and the ration of refused channel lookups
(:meth:`shared.tenancy.DiscordDirectory.in_guild`) does not tell whether an id exists.
"""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import func, select

from schema.models.jobs import Job
from schema.models.schedules import Schedule
from shared.tenancy import REFUSED_PER_GUILD
from tests.fakes.discord_state import VIEW_CHANNEL
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


def _history(api: Api, channel: str) -> list[str]:
    return [
        e[1]
        for e in api.discord.server.fake.limits.events
        if e[5] == channel and e[1].endswith("/messages")
    ]


def _b_objects(api: Api) -> dict[str, str]:
    """Things of guild B: a thread, a forum post, a category, a member not in guild A."""
    fake = api.discord.server.fake
    with fake.lock:
        guild = fake.guilds[int(api.other_guild)]
        parent = fake.channels[int(api.other_channel)]
        owner = fake.users[guild.owner_id]
        thread = fake.add_thread(parent, "b-thread", owner=owner)
        forum = fake.add_channel(guild, "b-forum", type=15)
        post = fake.add_thread(forum, "b-post", owner=owner)
        fake.add_message(thread, owner, "secret thread talk")
        fake.add_message(post, owner, "secret forum talk")
    category, _ = api.discord.category(api.other_guild, "B-Area")
    member = api.discord.member(api.other_guild, "b-only")
    return {
        "thread": str(thread.id),
        "post": str(post.id),
        "category": category,
        "member": member,
    }


def _shape(response: Any, ident: str) -> tuple[int, str, str]:
    return (
        response.status_code,
        response.headers.get("content-type", ""),
        response.json().get("detail", "").replace(ident, "X"),
    )


def test_ids_of_another_guild_are_refused_like_missing_ones(api: Api) -> None:
    token = api.key(("admin",))
    b = _b_objects(api)
    schedule = api.client.post(
        "/v1/schedules",
        headers=api.auth(token),
        json={
            "scope": "server",
            "schedule": "daily 09:00",
            "destination": {"kind": "channel", "channel_id": api.channel},
        },
    )
    assert schedule.status_code == 201, schedule.text
    endpoint = api.client.post(
        "/v1/webhook-endpoints", headers=api.auth(token), json={"url": "https://example.com/h"}
    )
    assert endpoint.status_code == 201, endpoint.text
    sid, eid = schedule.json()["id"], endpoint.json()["id"]

    def job(src: str) -> tuple[str, str, Any]:
        return ("POST", "/v1/jobs", {"channel_id": src, "window": {"hours": 2}})

    def job_dest(dst: str) -> tuple[str, str, Any]:
        body = {"channel_id": api.channel, "destinations": [{"kind": "channel", "channel_id": dst}]}
        return ("POST", "/v1/jobs", body)

    def digest(**kw: Any) -> tuple[str, str, Any]:
        body = {"destinations": [{"kind": "channel", "channel_id": api.channel}], **kw}
        return ("POST", "/v1/digests", body)

    tricks: dict[str, tuple[str, Any]] = {
        "thread as source": (b["thread"], lambda x: job(x)),
        "forum post as source": (b["post"], lambda x: job(x)),
        "thread as destination": (b["thread"], lambda x: job_dest(x)),
        "forum post as destination": (b["post"], lambda x: job_dest(x)),
        "digest category": (b["category"], lambda x: digest(category_id=x)),
        "digest mixed channel_ids": (b["thread"], lambda x: digest(channel_ids=[api.channel, x])),
        "digest audience": (
            b["post"],
            lambda x: digest(
                audience=[
                    {"kind": "channel", "channel_id": api.channel},
                    {"kind": "channel", "channel_id": x},
                ]
            ),
        ),
        "catchup member of B": (b["member"], lambda x: ("POST", "/v1/catchups", {"user_id": x})),
        "schedule PATCH category": (
            b["category"],
            lambda x: ("PATCH", f"/v1/schedules/{sid}", {"scope": "category", "category_id": x}),
        ),
        "schedule PATCH channel_ids": (
            b["thread"],
            lambda x: ("PATCH", f"/v1/schedules/{sid}", {"scope": "channels", "channel_ids": [x]}),
        ),
        "schedule PATCH destination thread": (
            b["thread"],
            lambda x: (
                "PATCH",
                f"/v1/schedules/{sid}",
                {"destination": {"kind": "channel", "channel_id": x}},
            ),
        ),
        "endpoint PATCH fallback": (
            b["post"],
            lambda x: (
                "PATCH",
                f"/v1/webhook-endpoints/{eid}",
                {"fallback": {"kind": "channel", "channel_id": x}},
            ),
        ),
    }
    mismatched = {}
    for name, (ident, build) in tricks.items():
        missing = snowflake()
        shapes = []
        for target in (ident, missing):
            method, path, body = build(target)
            response = api.client.request(method, path, headers=api.auth(token), json=body)
            shapes.append(_shape(response, target))
        if shapes[0] != shapes[1] or shapes[0][0] not in (404, 422):
            mismatched[name] = shapes
    assert mismatched == {}
    assert api.enqueuer.sent == []
    for ident in (b["thread"], b["post"]):
        assert _history(api, ident) == []


def _probe_then_own_channel(api: Api, probe: str) -> int:
    """A fresh guild A names ids Discord answers 403 until one lookup short of its ration,
    names ``probe`` (refused like missing), then asks for one of its own channels never
    looked up; the status of that last answer."""
    fake = api.discord.server.fake
    guild, _ = api.discord.tenant()
    token = api.key(("jobs:write",), guild=guild)
    with fake.lock:
        owner = fake.add_user("filler-owner")
        elsewhere = fake.add_guild("NoBotHere", owner=owner, everyone_permissions=VIEW_CHANNEL)
        fillers = [
            str(fake.add_channel(elsewhere, f"f{i}").id) for i in range(REFUSED_PER_GUILD - 1)
        ]
    for filler in fillers:
        answer = api.client.post("/v1/jobs", headers=api.auth(token), json={"channel_id": filler})
        assert answer.status_code == 404
    answer = api.client.post("/v1/jobs", headers=api.auth(token), json={"channel_id": probe})
    assert answer.status_code == 404
    assert answer.json()["detail"] == f"no channel {probe} in this server"
    own = api.discord.channel(guild, "brand-new")
    return api.client.post(
        "/v1/jobs", headers=api.auth(token), json={"channel_id": own}
    ).status_code


def test_the_ration_does_not_tell_whether_an_id_of_another_guild_exists(api: Api) -> None:
    """Naming another guild's hidden channel (Discord: 403) or an id of nothing (404) costs
    the same share of the ration: the guild's next request is answered alike after either."""
    fake = api.discord.server.fake
    with fake.lock:
        hidden = fake.add_channel(
            fake.guilds[int(api.other_guild)],
            "b-staff-only",
            overwrites=[
                {"id": api.other_guild, "type": 0, "allow": "0", "deny": str(VIEW_CHANNEL)}
            ],
        )
    after_existing = _probe_then_own_channel(api, str(hidden.id))
    after_missing = _probe_then_own_channel(api, snowflake())
    assert after_existing == after_missing == 404
