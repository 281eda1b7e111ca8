"""Reading a guild's shape: its channels, its members page by page, its active threads."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from shared.discord import Forbidden, TooManyMembers
from shared.errors import InvalidInputError

GUILD = "1102565081088000000"


def _members(count: int) -> list[dict[str, Any]]:
    # Ids spaced out and not starting at 1, so "after" must be the highest id, not a count.
    return [{"user": {"id": str(5000 + 7 * n)}, "roles": []} for n in range(count)]


def _member_pages(members: list[dict[str, Any]]) -> Any:
    """Discord's paging: ``limit`` (1-1000, default 1) members with a user id above ``after``."""

    def answer(request: httpx.Request) -> httpx.Response:
        limit = int(request.url.params.get("limit", "1"))
        after = int(request.url.params.get("after", "0"))
        assert 1 <= limit <= 1000
        page = [m for m in members if int(m["user"]["id"]) > after][:limit]
        return httpx.Response(200, json=page)

    return answer


def test_guild_channels_returns_the_raw_list(make_client: Any) -> None:
    channels = [
        {"id": "1", "type": 4, "name": "Community", "permission_overwrites": []},
        {"id": "2", "type": 0, "name": "general", "parent_id": "1", "permission_overwrites": []},
    ]
    client, seen = make_client(lambda r: httpx.Response(200, json=channels))
    assert client.guild_channels(GUILD) == channels
    assert [(r.method, r.url.path) for r in seen.requests] == [
        ("GET", f"/api/v10/guilds/{GUILD}/channels")
    ]


def test_members_are_read_in_pages_of_1000_after_the_highest_id(make_client: Any) -> None:
    members = _members(2500)
    client, seen = make_client(_member_pages(members))
    got = list(client.iter_members(GUILD, max_members=10_000))
    assert got == members
    queries = [dict(r.url.params) for r in seen.requests]
    assert queries == [
        {"limit": "1000", "after": "0"},
        {"limit": "1000", "after": members[999]["user"]["id"]},
        {"limit": "1000", "after": members[1999]["user"]["id"]},
    ]
    assert {r.url.path for r in seen.requests} == {f"/api/v10/guilds/{GUILD}/members"}


def test_a_full_last_page_costs_one_more_request_that_comes_back_empty(make_client: Any) -> None:
    client, seen = make_client(_member_pages(_members(2000)))
    assert len(list(client.iter_members(GUILD, max_members=5000))) == 2000
    assert len(seen.requests) == 3


def test_more_members_than_the_cap_raise_after_yielding_the_cap(make_client: Any) -> None:
    members = _members(5)
    client, seen = make_client(_member_pages(members))
    got: list[dict[str, Any]] = []
    with pytest.raises(TooManyMembers, match="more than 3 members") as caught:
        got.extend(client.iter_members(GUILD, max_members=3))
    assert got == members[:3]
    assert caught.value.max_members == 3
    assert caught.value.guild_id == GUILD
    # One page of cap + 1 proves the cap is passed.
    assert [dict(r.url.params) for r in seen.requests] == [{"limit": "4", "after": "0"}]


def test_exactly_the_cap_is_not_too_many(make_client: Any) -> None:
    client, seen = make_client(_member_pages(_members(3)))
    assert len(list(client.iter_members(GUILD, max_members=3))) == 3
    assert len(seen.requests) == 1


def test_a_negative_cap_is_refused_before_any_request(make_client: Any) -> None:
    client, seen = make_client(_member_pages(_members(1)))
    with pytest.raises(InvalidInputError, match="max_members"):
        client.iter_members(GUILD, max_members=-1)
    assert seen.requests == []


def test_without_the_members_intent_listing_is_forbidden(make_client: Any) -> None:
    client, _ = make_client(
        lambda r: httpx.Response(403, json={"message": "Missing Access", "code": 50001})
    )
    with pytest.raises(Forbidden) as caught:
        list(client.iter_members(GUILD, max_members=100))
    assert caught.value.code == 50001


def test_guild_active_threads_lists_every_parent_and_active_threads_filters(
    make_client: Any,
) -> None:
    threads = [
        {"id": "31", "type": 11, "guild_id": GUILD, "parent_id": "2", "name": "a"},
        {"id": "32", "type": 11, "guild_id": GUILD, "parent_id": "3", "name": "b"},
        {"id": "33", "type": 12, "guild_id": GUILD, "parent_id": "2", "name": "c"},
    ]

    def answer(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/threads/active"):
            return httpx.Response(200, json={"threads": threads, "members": []})
        return httpx.Response(200, json={"id": "2", "type": 0, "guild_id": GUILD})

    client, seen = make_client(answer)
    every = client.guild_active_threads(GUILD)
    assert [(t.id, t.parent_id, t.type) for t in every] == [
        ("31", "2", 11),
        ("32", "3", 11),
        ("33", "2", 12),
    ]
    assert seen.requests[0].url.path == f"/api/v10/guilds/{GUILD}/threads/active"
    assert [t.id for t in client.active_threads("2")] == ["31", "33"]
