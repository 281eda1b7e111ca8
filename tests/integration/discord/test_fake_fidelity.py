"""The fake answers in Discord's shapes: the fixture payloads, headers and pagination order."""

from __future__ import annotations

import http.client
import json
import re
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote, urlsplit

import httpx
import pytest

from tests.fakes.discord_api import _ROUTES, FakeDiscord
from tests.fakes.discord_fixtures import fixture
from tests.fakes.discord_limits import FakeConfig, Fault, RouteLimit
from tests.fakes.discord_server import FakeDiscordServer, World, seed_basic

pytestmark = pytest.mark.integration


def _get(world: World, path: str, **kw: Any) -> httpx.Response:
    headers = {"Authorization": f"Bot {world.token}", **kw.pop("headers", {})}
    return httpx.request(kw.pop("method", "GET"), world.api_base + path, headers=headers, **kw)


def test_shapes_match_the_fixtures(world: World, server: FakeDiscordServer) -> None:
    fake = server.fake
    reply_target = fake.add_message(world.general, world.bob, "Deploy 4.2 is out")
    channel = _get(world, f"/channels/{world.general.id}").json()
    assert set(channel) == set(fixture("channel_guild_text.json"))
    sent = _get(
        world,
        f"/channels/{world.general.id}/messages",
        method="POST",
        json={
            "content": f"<@{world.bob.id}> looks good",
            "message_reference": {"message_id": str(reply_target.id)},
        },
    ).json()
    expected = fixture("message_reply_with_thread.json")
    optional = {"thread", "reactions"}
    assert set(expected) - optional <= set(sent)
    assert set(sent["author"]) - {"bot"} == set(expected["author"])  # the bot flag is extra
    assert set(sent["mentions"][0]) == set(expected["mentions"][0])
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}\+00:00", sent["timestamp"])
    thread = _get(
        world,
        f"/channels/{world.general.id}/messages/{sent['id']}/threads",
        method="POST",
        json=fixture("request_start_thread_from_message.json"),
    )
    assert thread.status_code == 201
    assert set(thread.json()) == set(fixture("thread_created_from_message_201.json"))
    private = _get(
        world,
        f"/channels/{world.general.id}/threads",
        method="POST",
        json=fixture("request_start_thread_without_message.json"),
    )
    assert set(private.json()) == set(fixture("thread_private_created_without_message_201.json"))
    assert set(private.json()["thread_metadata"]) == set(
        fixture("thread_private_created_without_message_201.json")["thread_metadata"]
    )
    dm = _get(
        world, "/users/@me/channels", method="POST", json={"recipient_id": str(world.alice.id)}
    )
    assert set(dm.json()) == set(fixture("dm_channel_200.json"))
    hook = httpx.post(
        f"{world.api_base}/webhooks/{world.webhook.id}/{world.webhook.token}",
        params={"wait": "true"},
        json=fixture("request_execute_webhook.json"),
    ).json()
    assert set(hook) == set(fixture("webhook_message_200.json"))
    assert set(hook["author"]) == set(fixture("webhook_message_200.json")["author"])
    assert hook["embeds"][0] == fixture("webhook_message_200.json")["embeds"][0]


def test_rate_limit_headers_and_statuses(world: World) -> None:
    response = _get(world, f"/channels/{world.general.id}/messages", params={"limit": 1})
    headers = response.headers
    assert headers["via"] == "1.1 google"
    assert re.fullmatch(r"[0-9a-f]{32}", headers["x-ratelimit-bucket"])
    assert re.fullmatch(r"\d+\.\d{3}", headers["x-ratelimit-reset"])
    assert re.fullmatch(r"\d+\.\d{3}", headers["x-ratelimit-reset-after"])
    assert headers["x-ratelimit-limit"] == "5"
    assert headers["x-ratelimit-remaining"] == "4"
    other = _get(world, f"/channels/{world.readonly.id}/messages", params={"limit": 1})
    # Same shared limit, another channel: same hash, its own counter.
    assert other.headers["x-ratelimit-bucket"] == headers["x-ratelimit-bucket"]
    assert other.headers["x-ratelimit-remaining"] == "4"
    assert "x-ratelimit-bucket" not in _get(world, "/users/@me").headers
    unknown = _get(world, "/nowhere")
    assert (unknown.status_code, unknown.text) == (404, "404: Not Found")
    assert unknown.headers["content-type"].startswith("text/plain")
    outside = httpx.get(world.api_base.removesuffix("/api/v10") + f"/channels/{world.general.id}")
    assert (outside.status_code, outside.text) == (404, "404: Not Found")
    assert _get(world, f"/channels/{world.general.id}", method="PUT").status_code == 405
    bad_json = _get(
        world,
        f"/channels/{world.general.id}/messages",
        method="POST",
        content=b"{",
        headers={"Content-Type": "application/json"},
    )
    assert bad_json.json()["code"] == 50109
    hook = f"{world.api_base}/webhooks/{world.webhook.id}/{world.webhook.token}"
    assert httpx.post(hook, json={"content": "x"}).status_code == 204


def test_exhausted_bucket_and_global_limit_answer_429(
    world: World, server: FakeDiscordServer
) -> None:
    server.fake.config.limits["GET /channels/{channel_id}/messages"] = RouteLimit("read", 5, 5.0)
    path = f"/channels/{world.general.id}/messages"
    answers = [_get(world, path, params={"limit": 1}) for _ in range(6)]
    assert [a.status_code for a in answers] == [200] * 5 + [429]
    limited = answers[-1]
    assert limited.headers["x-ratelimit-scope"] == "user"
    assert limited.headers["x-ratelimit-remaining"] == "0"
    body = limited.json()
    assert body["global"] is False
    assert 0 < body["retry_after"] <= 5.0
    assert int(limited.headers["retry-after"]) >= body["retry_after"]
    server.fake.config.global_limit = 2
    server.fake.limits.reset_counters()
    statuses = [_get(world, "/users/@me") for _ in range(3)]
    assert [s.status_code for s in statuses] == [200, 200, 429]
    glob = statuses[-1]
    assert glob.headers["x-ratelimit-global"] == "true"
    assert "x-ratelimit-bucket" not in glob.headers
    assert glob.json()["global"] is True


@pytest.mark.parametrize("mode", ["fixed", "sliding"])
def test_global_limit_per_token_fixed_window_or_sliding(mode: str) -> None:
    now = [1000.0]
    config = FakeConfig(global_limit=3, global_window_s=1.0, global_mode=mode)  # type: ignore[arg-type]
    fake = FakeDiscord(config, clock=lambda: now[0])
    world = seed_basic(fake)
    with FakeDiscordServer(fake) as server:
        world.api_base = server.api_base

        def burst(n: int) -> list[int]:
            return [_get(world, "/users/@me").status_code for _ in range(n)]

        assert burst(1) == [200]
        now[0] += 0.6
        assert burst(3) == [200, 200, 429]
        limited = _get(world, "/users/@me").json()
        # Fixed: the window opened with the first request and ends 0.4 s from now; sliding:
        # the oldest request leaves the last second 0.4 s from now too.
        assert limited["retry_after"] == pytest.approx(0.4)
        now[0] += 0.6
        # Fixed: a whole new window is free at once; sliding: the two requests of 0.6 s ago
        # still count.
        assert burst(3) == ([200, 200, 200] if mode == "fixed" else [200, 429, 429])
        other = fake.add_bot("second-token")
        assert other.id != world.bot.id
        answer = httpx.get(
            world.api_base + "/users/@me", headers={"Authorization": "Bot second-token"}
        )
        assert answer.status_code == 200  # another token has its own window


def test_injected_global_429_has_discords_shape(world: World, server: FakeDiscordServer) -> None:
    server.fake.inject(Fault("global429", route="GET /channels/{channel_id}", retry_after=0.25))
    limited = _get(world, f"/channels/{world.general.id}")
    assert limited.status_code == 429
    assert limited.headers["x-ratelimit-global"] == "true"
    assert limited.headers["x-ratelimit-scope"] == "global"
    assert limited.headers["via"] == "1.1 google"
    assert limited.headers["retry-after"] == "1"
    assert "x-ratelimit-bucket" not in limited.headers
    assert limited.json() == {
        "message": "You are being rate limited.",
        "retry_after": 0.25,
        "global": True,
    }
    assert _get(world, f"/channels/{world.general.id}").status_code == 200


def test_guild_route_can_be_switched_off_or_forbidden(
    world: World, server: FakeDiscordServer
) -> None:
    guild = f"/guilds/{world.guild.id}"
    assert _get(world, guild).json()["name"] == "Release Eng"
    server.fake.config.guild_route = "forbidden"
    denied = _get(world, guild)
    assert denied.status_code == 403
    assert denied.json() == {"message": "Missing Access", "code": 50001}
    assert "x-ratelimit-bucket" in denied.headers
    assert _get(world, f"/channels/{world.general.id}").status_code == 200
    server.fake.config.guild_route = "off"
    missing = _get(world, guild)
    assert (missing.status_code, missing.text) == (404, "404: Not Found")
    assert _get(world, f"/channels/{world.general.id}/messages").status_code == 200
    server.fake.config.unknown_route_body = "json"
    assert _get(world, guild).json() == {"message": "404: Not Found", "code": 0}


def test_guild_channels_lists_every_channel_but_no_thread(
    world: World, server: FakeDiscordServer
) -> None:
    fake = server.fake
    fake.add_thread(world.general, "side talk", owner=world.bob)
    answer = _get(world, f"/guilds/{world.guild.id}/channels")
    assert answer.status_code == 200
    assert re.fullmatch(r"[0-9a-f]{32}", answer.headers["x-ratelimit-bucket"])
    listed = answer.json()
    # The hidden channel is listed too: its overwrites are how a client knows it is hidden.
    assert [c["name"] for c in listed] == ["release-eng", "announcements", "staff", "ideas"]
    assert set(listed[0]) == set(fixture("channel_guild_text.json"))
    hidden = next(c for c in listed if c["name"] == "staff")
    assert hidden["permission_overwrites"][0]["deny"] == str(1 << 10)
    outsider_guild = fake.add_guild("Elsewhere", owner=world.alice)
    denied = _get(world, f"/guilds/{outsider_guild.id}/channels")
    assert (denied.status_code, denied.json()) == (
        403,
        {"message": "Missing Access", "code": 50001},
    )
    unknown = _get(world, "/guilds/123/channels")
    assert (unknown.status_code, unknown.json()["code"]) == (404, 10004)


def test_guild_members_page_by_user_id_and_need_the_intent(
    world: World, server: FakeDiscordServer
) -> None:
    path = f"/guilds/{world.guild.id}/members"
    everyone = sorted(int(uid) for uid in world.guild.members)
    assert len(everyone) == 3
    first = _get(world, path)
    assert [m["user"]["id"] for m in first.json()] == [str(everyone[0])]  # limit defaults to 1
    assert "x-ratelimit-bucket" in first.headers
    rest = _get(world, path, params={"limit": 1000, "after": everyone[0]}).json()
    assert [int(m["user"]["id"]) for m in rest] == everyone[1:]
    bob = next(m for m in rest if m["user"]["id"] == str(world.bob.id))
    assert (bob["nick"], bob["communication_disabled_until"]) == ("Tobi", None)
    assert _get(world, path, params={"limit": 5, "after": everyone[-1]}).json() == []
    for limit, code in (
        ("0", "NUMBER_TYPE_MIN"),
        ("1001", "NUMBER_TYPE_MAX"),
        ("x", "NUMBER_TYPE_COERCE"),
    ):
        bad = _get(world, path, params={"limit": limit})
        assert bad.status_code == 400
        body = bad.json()
        assert (body["code"], body["message"]) == (50035, "Invalid Form Body")
        assert body["errors"]["limit"]["_errors"][0]["code"] == code
    server.fake.config.members_intent = False
    denied = _get(world, path, params={"limit": 10})
    assert (denied.status_code, denied.json()) == (
        403,
        {"message": "Missing Access", "code": 50001},
    )
    # Only the list needs the intent: one member by id is still served.
    assert _get(world, f"{path}/{world.bob.id}").status_code == 200


@pytest.mark.parametrize(
    ("name", "value", "code", "message"),
    [
        ("before", "abc", "NUMBER_TYPE_COERCE", 'Value "abc" is not snowflake.'),
        ("after", "-1", "NUMBER_TYPE_COERCE", 'Value "-1" is not snowflake.'),
        ("around", "1e3", "NUMBER_TYPE_COERCE", 'Value "1e3" is not snowflake.'),
        ("after", "\u00b2", "NUMBER_TYPE_COERCE", 'Value "\u00b2" is not snowflake.'),
        (
            "before",
            str(2**63),
            "NUMBER_TYPE_MAX",
            "snowflake value should be less than or equal to 9223372036854775807.",
        ),
    ],
)
def test_history_cursors_must_be_snowflakes(
    world: World, name: str, value: str, code: str, message: str
) -> None:
    path = f"/channels/{world.general.id}/messages"
    bad = _get(world, path, params={"limit": 5, name: value})
    assert bad.status_code == 400
    assert bad.json() == {
        "message": "Invalid Form Body",
        "code": 50035,
        "errors": {name: {"_errors": [{"code": code, "message": message}]}},
    }
    # The edges of the range are snowflakes: 0 ("from the beginning") and the largest one.
    for edge in ("0", str(2**63 - 1)):
        assert _get(world, path, params={"limit": 5, name: edge}).status_code == 200
    members = _get(world, f"/guilds/{world.guild.id}/members", params={"after": value})
    assert members.json()["errors"] == {"after": {"_errors": [{"code": code, "message": message}]}}


def test_a_voice_channels_messages_need_connect(world: World, server: FakeDiscordServer) -> None:
    # Get Channel Messages: in a voice channel the reader "must also have the CONNECT
    # permission" besides View Channel (the fact sheet, section 3.2).
    connect = 1 << 20
    bot = str(world.bot.id)
    closed = server.fake.add_channel(
        world.guild,
        "lounge",
        type=2,
        overwrites=[{"id": bot, "type": 1, "allow": "0", "deny": str(connect)}],
    )
    opened = server.fake.add_channel(
        world.guild,
        "town-hall",
        type=13,
        overwrites=[{"id": bot, "type": 1, "allow": str(connect), "deny": "0"}],
    )
    for channel in (closed, opened):
        server.fake.add_message(channel, world.alice, "text in voice")
    refused = _get(world, f"/channels/{closed.id}/messages", params={"limit": 5})
    assert (refused.status_code, refused.json()["code"]) == (403, 50001)
    assert _get(world, f"/channels/{closed.id}").status_code == 200  # the channel is visible
    assert len(_get(world, f"/channels/{opened.id}/messages", params={"limit": 5}).json()) == 1


@pytest.mark.parametrize(
    ("emoji", "status"),
    [
        ("👍", 204),
        ("👍🏽", 204),
        ("👨\u200d👩\u200d👧", 204),
        ("🏳️\u200d🌈", 204),
        ("1️⃣", 204),
        ("🇫🇷", 204),
        ("🇦", 204),  # a regional indicator letter on its own is an emoji too
        ("🏴\U000e0067\U000e0062\U000e0073\U000e0063\U000e0074\U000e007f", 204),
        ("❤", 204),
        ("ℹ️", 204),
        ("party:1102867070976000123", 204),
        ("ok👍", 400),
        ("👍👍", 400),
        ("é", 400),
        ("👍\u200d", 400),
        ("🇫🇷🇩", 400),
        ("⌘", 400),
        ("1", 400),
        ("a:party:1102867070976000123", 400),
    ],
)
def test_a_reaction_is_one_unicode_emoji_or_name_id(
    world: World, server: FakeDiscordServer, emoji: str, status: int
) -> None:
    message = server.fake.add_message(world.general, world.bob, "react here")
    path = f"/channels/{world.general.id}/messages/{message.id}/reactions/{quote(emoji, safe='')}"
    for method in ("PUT", "DELETE"):
        answer = _get(world, f"{path}/@me", method=method)
        assert answer.status_code == status, method
        if status == 400:
            assert answer.json() == {"message": "Unknown Emoji", "code": 10014}
    assert not any(users for _, users in message.reactions.values())


def _row(n: int) -> dict[str, Any]:
    return {"type": 1, "components": [{"type": 2, "style": 1, "label": "b", "custom_id": f"c{n}"}]}


def _field(name: str = "n", value: str = "v") -> dict[str, Any]:
    return {"name": name, "value": value}


#: (what, body of a given size, where the error is, the limit): one of Discord's message limits.
_LIMITS: list[tuple[str, Any, list[str], int]] = [
    ("content", lambda n: {"content": "x" * n}, ["content"], 2000),
    ("title", lambda n: {"embeds": [{"title": "t" * n}]}, ["embeds", "0", "title"], 256),
    (
        "description",
        lambda n: {"embeds": [{"description": "d" * n}]},
        ["embeds", "0", "description"],
        4096,
    ),
    ("fields", lambda n: {"embeds": [{"fields": [_field()] * n}]}, ["embeds", "0", "fields"], 25),
    (
        "field name",
        lambda n: {"embeds": [{"fields": [_field(name="n" * n)]}]},
        ["embeds", "0", "fields", "0", "name"],
        256,
    ),
    (
        "field value",
        lambda n: {"embeds": [{"fields": [_field(value="v" * n)]}]},
        ["embeds", "0", "fields", "0", "value"],
        1024,
    ),
    (
        "footer",
        lambda n: {"embeds": [{"footer": {"text": "f" * n}}]},
        ["embeds", "0", "footer", "text"],
        2048,
    ),
    (
        "author",
        lambda n: {"embeds": [{"author": {"name": "a" * n}}]},
        ["embeds", "0", "author", "name"],
        256,
    ),
    ("action rows", lambda n: {"components": [_row(i) for i in range(n)]}, ["components"], 5),
    ("nonce", lambda n: {"content": "x", "nonce": "n" * n}, ["nonce"], 25),
]


def _message_writes(world: World, server: FakeDiscordServer) -> tuple[Any, list[tuple[str, str]]]:
    """A message of the bot's, and every route that writes a message's body (create, edit,
    webhook execute)."""
    mine = server.fake.add_message(world.general, world.bot, "mine")
    hook = f"/webhooks/{world.webhook.id}/{world.webhook.token}"
    return mine, [
        ("POST", f"/channels/{world.general.id}/messages"),
        ("PATCH", f"/channels/{world.general.id}/messages/{mine.id}"),
        ("POST", hook),
    ]


@pytest.mark.parametrize(("what", "body", "where", "limit"), _LIMITS, ids=[c[0] for c in _LIMITS])
def test_each_message_limit_is_a_50035_at_its_field(
    world: World, what: str, body: Any, where: list[str], limit: int
) -> None:
    path = f"/channels/{world.general.id}/messages"
    assert _get(world, path, method="POST", json=body(limit)).status_code == 200, what
    over = _get(world, path, method="POST", json=body(limit + 1))
    assert over.status_code == 400
    tree: dict[str, Any] = {
        "_errors": [
            {"code": "BASE_TYPE_MAX_LENGTH", "message": f"Must be {limit} or fewer in length."}
        ]
    }
    for part in reversed(where):
        tree = {part: tree}
    assert over.json() == {"message": "Invalid Form Body", "code": 50035, "errors": tree}


def test_every_broken_limit_is_reported_at_once_on_every_message_route(
    world: World, server: FakeDiscordServer
) -> None:
    body = {
        "content": "x",
        "embeds": [{"title": "t" * 257, "footer": {"text": "f" * 2049}}],
        "components": [_row(i) for i in range(6)],
    }
    expected = {
        "embeds": {
            "0": {
                "title": {
                    "_errors": [
                        {
                            "code": "BASE_TYPE_MAX_LENGTH",
                            "message": "Must be 256 or fewer in length.",
                        }
                    ]
                },
                "footer": {
                    "text": {
                        "_errors": [
                            {
                                "code": "BASE_TYPE_MAX_LENGTH",
                                "message": "Must be 2048 or fewer in length.",
                            }
                        ]
                    }
                },
            }
        },
        "components": {
            "_errors": [
                {"code": "BASE_TYPE_MAX_LENGTH", "message": "Must be 5 or fewer in length."}
            ]
        },
    }
    mine, writes = _message_writes(world, server)
    for method, path in writes:
        answer = _get(world, path, method=method, json=body)
        assert (answer.status_code, answer.json()["errors"]) == (400, expected), (method, path)
    assert server.fake.messages[mine.id].content == "mine"


@pytest.mark.parametrize(
    ("mentions", "status"),
    [
        ({"parse": ["users"], "users": ["1102565081088000001"]}, 400),
        ({"parse": ["roles"], "roles": ["1102565081088000002"]}, 400),
        ({"parse": ["users"], "users": []}, 200),  # an empty list may go along
        ({"parse": ["roles"], "users": ["1102565081088000001"]}, 200),
        ({"parse": ["everyone"], "users": ["1102565081088000001"]}, 200),
    ],
)
def test_allowed_mentions_parse_and_a_list_of_the_same_kind_exclude_each_other(
    world: World, mentions: dict[str, Any], status: int
) -> None:
    body = {"content": "hi", "allowed_mentions": mentions}
    answer = _get(world, f"/channels/{world.general.id}/messages", method="POST", json=body)
    assert answer.status_code == status
    if status == 400:
        kind = "users" if "users" in mentions["parse"] else "roles"
        assert answer.json()["errors"] == {
            "allowed_mentions": {
                "_errors": [
                    {
                        "code": "MESSAGE_ALLOWED_MENTIONS_PARSE_EXCLUSIVE",
                        "message": f'parse:["{kind}"] and {kind}: [ids...] are mutually exclusive.',
                    }
                ]
            }
        }


@pytest.mark.parametrize(
    ("content_type", "status"),
    [
        ("application/json", 200),
        ("application/json; charset=utf-8", 200),
        ("Application/JSON", 200),
        (None, 400),
        ("text/plain", 400),
        ("application/x-www-form-urlencoded", 400),
    ],
)
def test_a_body_needs_a_content_type_discord_reads(
    world: World, content_type: str | None, status: int
) -> None:
    headers = {"Authorization": f"Bot {world.token}"}
    if content_type is not None:
        headers["Content-Type"] = content_type
    answer = httpx.post(
        f"{world.api_base}/channels/{world.general.id}/messages",
        content=b'{"content": "hi"}',
        headers=headers,
    )
    assert answer.status_code == status
    if status == 400:
        assert answer.json() == {
            "message": "Invalid Form Body",
            "code": 50035,
            "errors": {
                "_errors": [
                    {
                        "code": "CONTENT_TYPE_INVALID",
                        "message": 'Expected "Content-Type" header to be one of '
                        "{'application/json', 'multipart/form-data'}.",
                    }
                ]
            },
        }
    # A request without a body needs none (a join, a reaction, a delete).
    hook = f"{world.api_base}/webhooks/{world.webhook.id}/{world.webhook.token}"
    assert httpx.get(hook).status_code == 200


@pytest.mark.parametrize(
    ("agent", "status"),
    [
        ("DiscordBot (https://github.com/summary-bot-ng/summary-bot-ng, 0.1.0)", 200),
        ("python-httpx/0.28", 200),  # not what Discord asks for, but no browser: served
        ("Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) discord/0.0.314 Electron/22.3", 403),
    ],
)
def test_a_browser_user_agent_gets_cloudflares_40333(
    world: World, server: FakeDiscordServer, agent: str, status: int
) -> None:
    answer = _get(world, "/users/@me", headers={"User-Agent": agent})
    assert answer.status_code == status
    if status == 403:
        assert answer.json() == {"message": "internal network error", "code": 40333}
        assert "via" not in answer.headers
        assert server.fake.limits.invalid_count("127.0.0.1") == 1


def test_connections_stay_open_under_load(world: World) -> None:
    url = urlsplit(world.api_base)
    assert url.hostname is not None and url.port is not None
    headers = {"Authorization": f"Bot {world.token}"}
    start = threading.Barrier(120)

    def session(_: int) -> list[tuple[int, bool]]:
        # Everyone connects at once, as discord.py does with one connection per request.
        conn = http.client.HTTPConnection(url.hostname or "", url.port, timeout=30)
        start.wait()
        out = []
        try:
            for _ in range(3):
                sock_before = conn.sock
                conn.request("GET", f"{url.path}/channels/{world.general.id}", headers=headers)
                answer = conn.getresponse()
                answer.read()
                out.append((answer.status, sock_before is None or conn.sock is sock_before))
                assert not answer.will_close
        finally:
            conn.close()
        return out

    with ThreadPoolExecutor(max_workers=120) as pool:
        results = [r for rs in pool.map(session, range(120)) for r in rs]
    assert len(results) == 360
    assert {status for status, _ in results} <= {200, 429}
    assert all(reused for _, reused in results)


def _form(path: list[str], code: str, message: str) -> dict[str, Any]:
    """Discord's 50035 body with one problem at ``path``."""
    tree: dict[str, Any] = {"_errors": [{"code": code, "message": message}]}
    for part in reversed(path):
        tree = {part: tree}
    return {"message": "Invalid Form Body", "code": 50035, "errors": tree}


_MIN = "NUMBER_TYPE_MIN"
_MAX = "NUMBER_TYPE_MAX"
_COERCE = "NUMBER_TYPE_COERCE"

#: (route, query, where, code, message) of query values Discord refuses with 400/50035.
_BAD_QUERIES = [
    ("messages", {"limit": "abc"}, "limit", _COERCE, 'Value "abc" is not int.'),
    ("messages", {"limit": "\u0663"}, "limit", _COERCE, 'Value "\u0663" is not int.'),
    ("messages", {"limit": " 5"}, "limit", _COERCE, 'Value " 5" is not int.'),
    ("messages", {"limit": "0"}, "limit", _MIN, "int value should be greater than or equal to 1."),
    ("messages", {"limit": "101"}, "limit", _MAX, "int value should be less than or equal to 100."),
    ("archived", {"limit": "abc"}, "limit", _COERCE, 'Value "abc" is not int.'),
    ("archived", {"limit": "1"}, "limit", _MIN, "int value should be greater than or equal to 2."),
    ("archived", {"limit": "101"}, "limit", _MAX, "int value should be less than or equal to 100."),
    # A unix time where Discord wants ISO8601 (what serenity-rs/serenity#2664 met).
    (
        "archived",
        {"before": "1700059153"},
        "before",
        "DATE_TIME_TYPE_PARSE",
        "Could not parse 1700059153. Should be ISO8601.",
    ),
    (
        "archived",
        {"before": ""},
        "before",
        "DATE_TIME_TYPE_PARSE",
        "Could not parse . Should be ISO8601.",
    ),
]


@pytest.mark.parametrize(
    ("route", "query", "where", "code", "message"),
    _BAD_QUERIES,
    ids=[f"{c[0]}-{c[2]}={c[1][c[2]]!r}" for c in _BAD_QUERIES],
)
def test_query_numbers_and_timestamps_that_discord_refuses_are_400_not_500(
    world: World, route: str, query: dict[str, str], where: str, code: str, message: str
) -> None:
    paths = {
        "messages": f"/channels/{world.general.id}/messages",
        "archived": f"/channels/{world.general.id}/threads/archived/public",
    }
    answer = _get(world, paths[route], params=query)
    assert (answer.status_code, answer.json()) == (400, _form([where], code, message))


def test_archived_threads_page_before_an_iso8601_timestamp(
    world: World, server: FakeDiscordServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    day = 86400_000
    now = server.fake.now_ms()
    old, older = (
        server.fake.add_thread(
            world.general, name, owner=world.alice, archived=True, archive_ms=now - n * day
        )
        for n, name in ((1, "old"), (3, "older"))
    )
    path = f"/channels/{world.general.id}/threads/archived/public"

    def names(before: str) -> list[str]:
        answer = _get(world, path, params={"before": before, "limit": 2})
        assert answer.status_code == 200, answer.text
        return [t["name"] for t in answer.json()["threads"]]

    two_days_ago = datetime.fromtimestamp((now - 2 * day) / 1000, UTC)
    assert names(two_days_ago.isoformat()) == [older.name]
    assert names(datetime.fromtimestamp(now / 1000, UTC).isoformat()) == [old.name, older.name]
    # Without an offset the time is UTC, whatever the local zone (here 14 hours ahead, where
    # this time would come before the newer thread's archiving).
    monkeypatch.setenv("TZ", "Etc/GMT-14")
    time.tzset()
    try:
        after_old = datetime.fromtimestamp((now - day) / 1000, UTC) + timedelta(hours=2)
        assert names(after_old.replace(tzinfo=None).isoformat()) == [old.name, older.name]
    finally:
        monkeypatch.undo()
        time.tzset()


#: (what, body, errors) of message bodies with a value of the wrong JSON type.
_BAD_TYPES = [
    (
        "embed-not-object",
        {"embeds": ["x"]},
        _form(
            ["embeds", "0"], "MODEL_TYPE_CONVERT", "Only dictionaries may be used in a ModelType"
        ),
    ),
    (
        "embed-null",
        {"content": "x", "embeds": [None]},
        _form(
            ["embeds", "0"],
            "LIST_ITEM_VALUE_REQUIRED",
            "List item values of ModelType are required",
        ),
    ),
    (
        "embeds-not-list",
        {"embeds": {"title": "t"}},
        _form(["embeds"], "LIST_TYPE_CONVERT", "Only iterables may be used in a ListType"),
    ),
    (
        "field-not-object",
        {"embeds": [{"fields": [7]}]},
        _form(
            ["embeds", "0", "fields", "0"],
            "MODEL_TYPE_CONVERT",
            "Only dictionaries may be used in a ModelType",
        ),
    ),
    (
        "footer-not-object",
        {"embeds": [{"footer": "f"}]},
        _form(
            ["embeds", "0", "footer"],
            "MODEL_TYPE_CONVERT",
            "Only dictionaries may be used in a ModelType",
        ),
    ),
    (
        "title-not-string",
        {"embeds": [{"title": []}]},
        _form(
            ["embeds", "0", "title"], "STRING_TYPE_CONVERT", 'Could not interpret "[]" as string.'
        ),
    ),
    (
        "flags-not-int",
        {"content": "x", "flags": "x"},
        _form(["flags"], _COERCE, 'Value "x" is not int.'),
    ),
    (
        "components-not-list",
        {"content": "x", "components": 3},
        _form(["components"], "LIST_TYPE_CONVERT", "Only iterables may be used in a ListType"),
    ),
    (
        "parse-not-list",
        {"content": "x", "allowed_mentions": {"parse": 5}},
        _form(
            ["allowed_mentions", "parse"],
            "LIST_TYPE_CONVERT",
            "Only iterables may be used in a ListType",
        ),
    ),
    (
        "reply-to-no-snowflake",
        {"content": "x", "message_reference": {"message_id": "abc"}},
        _form(["message_reference", "message_id"], _COERCE, 'Value "abc" is not snowflake.'),
    ),
]


@pytest.mark.parametrize(("what", "body", "expected"), _BAD_TYPES, ids=[c[0] for c in _BAD_TYPES])
def test_a_body_value_of_the_wrong_type_is_a_50035_at_its_path(
    world: World, server: FakeDiscordServer, what: str, body: Any, expected: dict[str, Any]
) -> None:
    _, writes = _message_writes(world, server)
    for method, path in writes:
        answer = _get(world, path, method=method, json=body)
        assert (answer.status_code, answer.json()) == (400, expected), (method, path)


def test_thread_and_dm_bodies_of_the_wrong_type_are_400_not_500(world: World) -> None:
    threads = f"/channels/{world.general.id}/threads"
    for field in ("auto_archive_duration", "type"):
        answer = _get(world, threads, method="POST", json={"name": "t", field: "soon"})
        assert (answer.status_code, answer.json()) == (
            400,
            _form([field], _COERCE, 'Value "soon" is not int.'),
        )
    dm = _get(world, "/users/@me/channels", method="POST", json=[str(world.alice.id)])
    assert (dm.status_code, dm.json()) == (
        400,
        _form([], "MODEL_TYPE_CONVERT", "Only dictionaries may be used in a DictType"),
    )


#: Values meant to break a handler that trusts its input: ids ``int`` refuses although
#: ``str.isdigit`` accepts them, numbers too long for ``int``, wrong JSON types everywhere.
_HOSTILE_SEGMENTS = ["\u00b2", "\u0663", "1" * 5000, "-1", "x"]
_HOSTILE_QUERIES = ["\u00b2", "1" * 5000, "", "nan", "-1", "2026-13-01"]
_QUERY_KEYS = ("limit", "before", "after", "around", "wait", "thread_id", "with_response")
_HOSTILE_BODIES: list[Any] = [
    None,
    [],
    "x",
    1e308,
    {"content": "x", "embeds": [["x"]], "flags": 1.5, "nonce": []},
    {"name": "t", "message": {"embeds": "x", "flags": "\u00b2"}, "type": {"a": 1}},
    {"recipient_id": "\u00b2", "type": [4], "data": {"flags": "x", "embeds": [None]}},
    {"content": "x", "allowed_mentions": {"parse": "users", "users": 5, "roles": {}}},
    {"content": "x", "message_reference": {"message_id": "1" * 5000, "channel_id": []}},
    {"content": "x", "username": [], "thread_name": {}},
]


def test_no_hostile_input_gets_a_500_from_the_fake(
    world: World, server: FakeDiscordServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake = server.fake
    # Every request must reach its handler: no bucket, global or ban 429 in between.
    monkeypatch.setattr(fake.limits, "route_limit", lambda route_key: None)
    fake.config.webhook_channel_limit = None
    fake.config.global_limit = 1_000_000
    fake.config.invalid_ban_threshold = 1_000_000
    app = fake.add_bot("app-token", "App")
    interaction = fake.add_interaction(world.general, world.alice, application=app)
    mine = fake.add_message(world.general, world.bot, "mine")
    real = {
        "channel_id": str(world.general.id),
        "message_id": str(mine.id),
        "guild_id": str(world.guild.id),
        "user_id": str(world.alice.id),
        "emoji": "%F0%9F%91%8D",
        "webhook_id": str(world.webhook.id),
        "webhook_token": world.webhook.token,
        "interaction_id": str(interaction.id),
        "interaction_token": interaction.token,
    }
    headers = {
        "authorization": f"Bot {world.token}",
        "content-type": "application/json",
        "user-agent": "DiscordBot (https://example.invalid, 1)",
    }
    statuses: set[int] = set()
    for route in _ROUTES:
        names = re.findall(r"\{(\w+)\}", route.template)
        paths = [route.template.format(**real)]
        for name in names:
            for bad in _HOSTILE_SEGMENTS:
                paths.append(route.template.format(**(real | {name: bad})))
        message = json.dumps({"content": "x"}).encode()
        for path, query, raw in (
            *((p, {}, message) for p in paths),
            *((paths[0], {k: v}, b"") for k in _QUERY_KEYS for v in _HOSTILE_QUERIES),
            *((paths[0], {}, json.dumps(b).encode()) for b in _HOSTILE_BODIES),
        ):
            answer = fake.handle(route.method, f"/api/v10{path}", query, headers, raw)
            assert answer.status < 500, (route.method, path[:80], query, raw[:80], answer.body)
            statuses.add(answer.status)
    assert 429 not in statuses
    send = f"/api/v10/channels/{world.general.id}/messages"
    deep = fake.handle("POST", send, {}, headers, b"[" * 100_000)
    assert (deep.status, deep.body["code"]) == (400, 50109)
    assert {200, 204, 400, 404} <= statuses


@pytest.mark.parametrize("bad", ["\u00b2", "\u0663\u0663", "1" * 5000])
def test_a_path_id_that_is_no_snowflake_is_a_bad_request_not_a_500(
    world: World, server: FakeDiscordServer, bad: str
) -> None:
    # "²" passes str.isdigit() but not int(); "٣٣" passes both, but Discord ids are ASCII.
    # Discord refuses such an id as it refuses a malformed field (400/50035, "is not
    # snowflake"), not as an unknown object.
    mine = server.fake.add_message(world.general, world.bot, "mine")
    general = f"/channels/{world.general.id}"
    for method, path in (
        ("GET", f"/channels/{bad}"),
        ("GET", f"{general}/messages/{bad}"),
        ("DELETE", f"{general}/messages/{bad}"),
        ("PUT", f"{general}/messages/{bad}/reactions/%F0%9F%91%8D/@me"),
        ("GET", f"/guilds/{bad}"),
        ("GET", f"/guilds/{world.guild.id}/members/{bad}"),
        ("POST", f"/webhooks/{bad}/{world.webhook.token}"),
    ):
        answer = _get(world, path, method=method, json={"content": "x"})
        assert (answer.status_code, answer.json()["code"]) == (400, 50035), (method, path[:60])
    dm = _get(world, "/users/@me/channels", method="POST", json={"recipient_id": bad})
    assert dm.status_code == 400
    assert server.fake.messages[mine.id].content == "mine"


@pytest.mark.parametrize("length", ["abc", "-5", "1e3"])
def test_a_content_length_that_is_no_length_gets_a_400_and_a_close(
    world: World, length: str
) -> None:
    url = urlsplit(world.api_base)
    with socket.create_connection((url.hostname or "", url.port or 0), timeout=5) as sock:
        request = (
            f"POST {url.path}/channels/{world.general.id}/messages HTTP/1.1\r\n"
            f"Host: {url.netloc}\r\nContent-Length: {length}\r\n\r\n"
        )
        sock.sendall(request.encode())
        answer = sock.makefile("rb").read()
    assert answer.startswith(b"HTTP/1.1 400 ")
