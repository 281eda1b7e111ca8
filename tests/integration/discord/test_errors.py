"""Every error kind, and the rate-limit, retry and breaker behaviour, end to end."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis as redis_lib
from prometheus_client import CollectorRegistry

from shared.discord import (
    BadRequest,
    DiscordClient,
    DiscordSettings,
    EdgeBlocked,
    Forbidden,
    Message,
    MessageLimitsError,
    NetworkError,
    NotFound,
    RateLimited,
    ServerError,
    Unauthorized,
    UnknownRoute,
    build_discord_client,
    routes,
)
from shared.errors import ErrorKind, InvalidInputError, classify
from tests.fakes.discord_limits import Fault, RouteLimit
from tests.fakes.discord_server import FakeDiscordServer, World

pytestmark = pytest.mark.integration

SEND = "POST /channels/{channel_id}/messages"
READ = "GET /channels/{channel_id}/messages"


def events(server: FakeDiscordServer, route: str | None = None) -> list[tuple[int, str | None]]:
    return [(e[2], e[3]) for e in server.fake.limits.events if route is None or e[1] == route]


def test_bad_request_lists_discord_form_errors(client: DiscordClient, world: World) -> None:
    route = routes.CREATE_MESSAGE.compile(channel_id=str(world.general.id))
    with pytest.raises(BadRequest) as caught:
        client.session.request(route, json={"content": "x" * 2001})
    error = caught.value
    assert (error.status, error.code) == (400, 50035)
    assert error.errors == ("content: BASE_TYPE_MAX_LENGTH Must be 2000 or fewer in length.",)
    assert not error.is_retryable
    assert classify(error) is ErrorKind.PERMANENT
    with pytest.raises(BadRequest) as empty:
        client.session.request(route, json={"content": ""})
    assert empty.value.code == 50006


@pytest.mark.parametrize("cursor", [{"before": "abc"}, {"after": "-1"}, {"around": "x1"}])
def test_a_cursor_that_is_no_snowflake_is_a_bad_request_not_a_server_error(
    client: DiscordClient, world: World, server: FakeDiscordServer, cursor: dict[str, str]
) -> None:
    with pytest.raises(BadRequest) as caught:
        client.get_messages(str(world.general.id), limit=5, **cursor)
    error = caught.value
    ((name, value),) = cursor.items()
    assert (error.status, error.code) == (400, 50035)
    assert error.errors == (f'{name}: NUMBER_TYPE_COERCE Value "{value}" is not snowflake.',)
    assert not error.is_retryable
    assert events(server, READ) == [(400, None)]  # sent once: a 400 is not retried


#: (route, query, body, the one form error Discord reports) of requests Discord refuses.
_REFUSED_INPUT = [
    (
        routes.GET_MESSAGES,
        {"limit": "abc"},
        None,
        'limit: NUMBER_TYPE_COERCE Value "abc" is not int.',
    ),
    (
        routes.LIST_PUBLIC_ARCHIVED_THREADS,
        {"before": "1700059153"},
        None,
        "before: DATE_TIME_TYPE_PARSE Could not parse 1700059153. Should be ISO8601.",
    ),
    (
        routes.LIST_PUBLIC_ARCHIVED_THREADS,
        {"limit": "many"},
        None,
        'limit: NUMBER_TYPE_COERCE Value "many" is not int.',
    ),
    (
        routes.CREATE_MESSAGE,
        None,
        {"content": "x", "embeds": ["not an object"]},
        "embeds.0: MODEL_TYPE_CONVERT Only dictionaries may be used in a ModelType",
    ),
]


@pytest.mark.parametrize(
    ("route", "query", "body", "problem"),
    _REFUSED_INPUT,
    ids=["history-limit", "archived-before", "archived-limit", "embed-not-object"],
)
def test_input_discord_refuses_is_a_permanent_bad_request_naming_the_field(
    client: DiscordClient,
    world: World,
    server: FakeDiscordServer,
    route: routes.Route,
    query: dict[str, str] | None,
    body: dict[str, Any] | None,
    problem: str,
) -> None:
    compiled = route.compile(channel_id=str(world.general.id))
    with pytest.raises(BadRequest) as caught:
        client.session.request(compiled, params=query, json=body)
    error = caught.value
    assert (error.status, error.code, error.errors) == (400, 50035, (problem,))
    assert problem in str(error) and problem in error.user_message
    assert not error.is_retryable
    assert classify(error) is ErrorKind.PERMANENT
    assert events(server) == [(400, None)]  # sent once: a 400 is not retried


def test_an_archived_threads_limit_discord_refuses_is_refused_before_sending(
    client: DiscordClient, world: World, server: FakeDiscordServer
) -> None:
    for limit in (1, 101):
        with pytest.raises(InvalidInputError, match=f"limit {limit} is out of range"):
            client.list_archived_threads(str(world.general.id), limit=limit)
    assert events(server) == []
    threads, more = client.list_archived_threads(str(world.general.id), limit=2)
    assert (threads, more) == ([], False)


def test_discords_own_limit_checks_reach_the_caller_as_one_bad_request(
    client: DiscordClient, world: World, server: FakeDiscordServer
) -> None:
    # What the adapter would refuse itself, sent raw: Discord lists every problem at once.
    route = routes.CREATE_MESSAGE.compile(channel_id=str(world.general.id))
    body = {
        "content": "x",
        "embeds": [{"description": "d" * 4097, "fields": [{"name": "n", "value": "v" * 1025}]}],
        "allowed_mentions": {"parse": ["users"], "users": [str(world.bob.id)]},
    }
    with pytest.raises(BadRequest) as caught:
        client.session.request(route, json=body)
    error = caught.value
    assert (error.status, error.code) == (400, 50035)
    assert sorted(error.errors) == [
        'allowed_mentions: MESSAGE_ALLOWED_MENTIONS_PARSE_EXCLUSIVE parse:["users"] and users: '
        "[ids...] are mutually exclusive.",
        "embeds.0.description: BASE_TYPE_MAX_LENGTH Must be 4096 or fewer in length.",
        "embeds.0.fields.0.value: BASE_TYPE_MAX_LENGTH Must be 1024 or fewer in length.",
    ]
    assert events(server, SEND) == [(400, None)]


def test_a_browser_user_agent_is_refused_by_discords_edge_with_a_clear_error(
    settings: DiscordSettings, http: httpx.Client, server: FakeDiscordServer
) -> None:
    browser = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131"
    # The settings refuse this agent at startup; model_copy skips that check, as a settings
    # object built before it would have.
    with build_discord_client(
        settings.model_copy(update={"user_agent": browser}), http, None, None
    ) as client:
        with pytest.raises(EdgeBlocked) as caught:
            client.get_current_user()
        error = caught.value
        assert not isinstance(error, Forbidden)  # no permission is involved
        assert (error.status, error.code) == (403, 40333)
        assert "DISCORD_USER_AGENT" in str(error)
        assert "permissions" not in error.user_message
        assert not error.is_retryable
        assert server.fake.limits.invalid_count("127.0.0.1") == 1
        assert client.session.limiter.invalid_count() == 1
    assert events(server) == [(403, None)]


def test_limits_are_checked_before_any_request(
    client: DiscordClient, world: World, server: FakeDiscordServer
) -> None:
    with pytest.raises(MessageLimitsError) as caught:
        client.send_message(str(world.general.id), Message(content="x" * 2500, nonce="n" * 30))
    assert len(caught.value.violations) == 2
    assert events(server) == []


def test_forbidden_and_not_found(client: DiscordClient, world: World) -> None:
    with pytest.raises(Forbidden) as denied:
        client.send_message(str(world.readonly.id), Message(content="nope"))
    assert denied.value.code == 50013
    with pytest.raises(Forbidden) as hidden:
        client.get_channel(str(world.hidden.id))
    assert hidden.value.code == 50001
    with pytest.raises(NotFound) as missing:
        client.get_channel("1102565102059520999")
    assert (missing.value.status, missing.value.code) == (404, 10003)
    assert client.session.limiter.invalid_count() == 2


def test_a_refused_channel_is_not_asked_again_at_once(
    client: DiscordClient, world: World, server: FakeDiscordServer
) -> None:
    # Every 403 counts toward the invalid-request limit of the whole deployment; a caller
    # can have many summaries sent to a channel the bot may read but not write in (each
    # destination of each job one POST), or name channels it cannot see.  A channel that
    # just answered 403 is refused locally for a while, with the same error.
    readonly = str(world.readonly.id)
    before = server.fake.limits.invalid_count("127.0.0.1")
    for _ in range(5):
        with pytest.raises(Forbidden) as denied:
            client.send_message(readonly, Message(content="nope"))
        assert denied.value.code == 50013
        with pytest.raises(Forbidden) as hidden:
            client.get_channel(str(world.hidden.id))
        assert hidden.value.code == 50001
    assert server.fake.limits.invalid_count("127.0.0.1") - before == 2
    # Other channels are unaffected.
    client.send_message(str(world.general.id), Message(content="fine"))


def test_unauthorized_stops_all_traffic_with_that_token(
    settings: DiscordSettings,
    http: httpx.Client,
    redis_client: redis_lib.Redis,
    server: FakeDiscordServer,
    world: World,
) -> None:
    bad = settings.model_copy(update={"token": "not-a-token"})
    with build_discord_client(bad, http, redis_client, None) as client:
        with pytest.raises(Unauthorized) as caught:
            client.get_channel(str(world.general.id))
        assert caught.value.status == 401
        before = len(events(server))
        with pytest.raises(Unauthorized, match="rotated"):
            client.send_message(str(world.general.id), Message(content="x"))
        assert len(events(server)) == before
    # Another process with the same (dead) token is refused too: the flag is in Redis.
    with build_discord_client(bad, http, redis_client, None) as other, pytest.raises(Unauthorized):
        other.get_current_user()
    assert len(events(server)) == before


def test_token_rotation_through_the_secret_file(
    settings: DiscordSettings,
    http: httpx.Client,
    redis_client: redis_lib.Redis,
    server: FakeDiscordServer,
    world: World,
    tmp_path: Path,
) -> None:
    secret = tmp_path / "discord_token"
    secret.write_text(world.token + "\n")
    rotating = settings.model_copy(update={"token": None, "token_file": secret})
    with build_discord_client(rotating, http, redis_client, None) as client:
        assert client.get_current_user().id == str(world.bot.id)
        server.fake.revoke_token(world.token)
        with pytest.raises(Unauthorized):
            client.get_current_user()
        server.fake.add_token("rotated-token", world.bot)
        secret.write_text("rotated-token")
        assert client.get_current_user().id == str(world.bot.id)


def test_server_errors_are_retried_then_raised(
    client: DiscordClient, world: World, server: FakeDiscordServer
) -> None:
    server.fake.inject(Fault("status", route=READ, times=2, status=502))
    page = client.get_messages(str(world.general.id), limit=1)
    assert page == []
    assert [s for s, _ in events(server, READ)] == [502, 502, 200]
    server.fake.inject(Fault("status", route=READ, times=10, status=500))
    with pytest.raises(ServerError) as caught:
        client.get_messages(str(world.general.id), limit=1)
    assert caught.value.is_retryable
    assert classify(caught.value) is ErrorKind.TRANSIENT
    assert [s for s, _ in events(server, READ)][3:] == [500, 500, 500, 500]


def test_a_5xx_retry_after_is_waited_within_the_deadline(
    client: DiscordClient, world: World, server: FakeDiscordServer
) -> None:
    # The settings' backoff is 10 ms: only the header can make the retry wait a second.
    server.fake.inject(Fault("status", route=READ, status=503, retry_after_header="1"))
    started = time.monotonic()
    assert client.get_messages(str(world.general.id), limit=1) == []
    assert time.monotonic() - started >= 0.95
    assert [s for s, _ in events(server, READ)] == [503, 200]
    # A wait past the caller's deadline is not slept: the error says when to come back.
    server.fake.inject(Fault("status", route=READ, status=503, retry_after_header="120"))
    route = routes.GET_MESSAGES.compile(channel_id=str(world.general.id))
    started = time.monotonic()
    waits = r"with Retry-After 120\.00 s, more than the \d\.\d\d s left before the caller"
    with pytest.raises(ServerError, match=waits) as caught:
        client.session.request(route, params={"limit": 1}, max_wait_s=5)
    assert time.monotonic() - started < 3  # not the 120 s, nor the 5 s deadline
    assert (caught.value.status, caught.value.retry_after) == (503, 120.0)
    assert caught.value.is_retryable
    assert [s for s, _ in events(server, READ)] == [503, 200, 503]


def test_a_5xx_after_discord_acted_repeats_only_what_cannot_double(
    client: DiscordClient, world: World, server: FakeDiscordServer
) -> None:
    # Discord created the message, then its edge answered 502.  A webhook execution has no
    # nonce: sending it again would post it twice, so it is not repeated here.
    hook = "POST /webhooks/{webhook_id}/{webhook_token}"
    before = len(world.general.message_ids)
    server.fake.inject(Fault("status_after", route=hook, status=502))
    with pytest.raises(ServerError, match="may have been carried out") as caught:
        client.execute_webhook(world.webhook_url, Message(content="part 1"))
    assert caught.value.is_retryable
    assert len(world.general.message_ids) == before + 1
    assert [s for s, _ in events(server, hook)] == [502]
    # With nonce + enforce_nonce the repeat finds the message Discord already made.
    server.fake.inject(Fault("status_after", route=SEND, status=502))
    sent = client.send_message(str(world.general.id), Message(content="once", nonce="n-5xx"))
    assert sent.content == "once"
    assert len(world.general.message_ids) == before + 2
    assert [s for s, _ in events(server, SEND)] == [502, 200]


def test_connection_resets_are_retried_for_safe_requests_only(
    client: DiscordClient, world: World, server: FakeDiscordServer
) -> None:
    server.fake.inject(Fault("reset", route=READ, times=1))
    assert client.get_messages(str(world.general.id), limit=1) == []
    server.fake.limits.clear_faults()
    server.fake.inject(Fault("reset", route=READ, times=10))
    with pytest.raises(NetworkError) as caught:
        client.get_messages(str(world.general.id), limit=1)
    assert "RemoteProtocolError" in str(caught.value)
    assert caught.value.is_retryable
    server.fake.limits.clear_faults()
    # A POST without a nonce may have been processed: not retried after the request left.
    server.fake.inject(Fault("reset", route=SEND, times=1))
    with pytest.raises(NetworkError, match="1 attempt"):
        client.send_message(str(world.general.id), Message(content="maybe sent"))
    # With a nonce it is idempotent, so retried.
    server.fake.inject(Fault("reset", route=SEND, times=1))
    sent = client.send_message(str(world.general.id), Message(content="sent once", nonce="n-9"))
    assert sent.content == "sent once"


def test_refused_connection_is_a_network_error(
    settings: DiscordSettings, http: httpx.Client
) -> None:
    closed = settings.model_copy(update={"api_base": "http://127.0.0.1:9/api/v10"})
    with (
        build_discord_client(closed, http, None, None) as client,
        pytest.raises(NetworkError, match="4 attempt"),
    ):
        client.get_current_user()


def test_every_429_scope_is_waited_out_transparently(
    client: DiscordClient, world: World, server: FakeDiscordServer
) -> None:
    channel = str(world.general.id)
    for kind in ("user429", "shared429", "sublimit429", "global429"):
        server.fake.inject(Fault(kind, route=READ, retry_after=0.2))  # type: ignore[arg-type]
        started = time.monotonic()
        assert client.get_messages(channel, limit=1) == []
        assert time.monotonic() - started >= 0.15, kind
    scopes = [scope for status, scope in events(server, READ) if status == 429]
    assert scopes == ["user", "shared", "sublimit", "global"]


def test_the_fake_and_the_adapter_count_the_same_invalid_requests(
    client: DiscordClient, world: World, server: FakeDiscordServer, registry: CollectorRegistry
) -> None:
    channel = str(world.general.id)
    fake = server.fake.limits
    # A hidden sub-limit of the bot's own route: scope user, requests left in the bucket.
    server.fake.inject(Fault("sublimit429", route=READ, times=3, retry_after=0.05))
    assert client.get_messages(channel, limit=1) == []
    assert fake.invalid_count("127.0.0.1") == client.session.limiter.invalid_count() == 3
    # A shared limit (also with a code, as the channel-write-limit example) counts on neither.
    server.fake.inject(Fault("shared429", route=READ, times=2, retry_after=0.05, code=20028))
    assert client.get_messages(channel, limit=1) == []
    assert fake.invalid_count("127.0.0.1") == client.session.limiter.invalid_count() == 3
    scopes = {
        scope: registry.get_sample_value("summarybot_discord_429_total", {"scope": scope})
        for scope in ("sublimit", "shared")
    }
    assert scopes == {"sublimit": 3.0, "shared": 2.0}


def test_real_bucket_exhaustion_produces_no_429(
    client: DiscordClient, world: World, server: FakeDiscordServer
) -> None:
    server.fake.config.limits[SEND] = RouteLimit("messages-write", 2, 0.3)
    started = time.monotonic()
    for n in range(6):
        client.send_message(str(world.general.id), Message(content=f"m{n}"))
    assert time.monotonic() - started >= 0.6  # three windows of 2
    assert [s for s, _ in events(server, SEND)] == [200] * 6


def test_hidden_webhook_channel_limit_is_obeyed(
    client: DiscordClient, world: World, server: FakeDiscordServer
) -> None:
    # A window the three posts fit in even on a loaded machine: the third is refused.
    server.fake.config.webhook_channel_limit = (2, 1.5)
    for n in range(3):
        client.execute_webhook(world.webhook_url, Message(content=f"w{n}"))
    statuses = [s for s, _ in events(server, "POST /webhooks/{webhook_id}/{webhook_token}")]
    assert statuses == [200, 200, 429, 200]


def test_wait_beyond_the_deadline_raises_rate_limited(
    client: DiscordClient, world: World, server: FakeDiscordServer
) -> None:
    server.fake.inject(Fault("shared429", route=READ, retry_after=1337))
    with pytest.raises(RateLimited) as caught:
        client.session.request(
            routes.GET_MESSAGES.compile(channel_id=str(world.general.id)), max_wait_s=1
        )
    assert caught.value.scope == "shared"
    assert caught.value.retry_after > 1000
    assert classify(caught.value) is ErrorKind.TRANSIENT
    # Another channel is not affected.
    assert client.get_messages(str(world.readonly.id), limit=1) == []


def test_cloudflare_ban_is_never_retried_and_stops_everything(
    client: DiscordClient, world: World, server: FakeDiscordServer
) -> None:
    server.fake.inject(Fault("ban", route=READ))
    with pytest.raises(RateLimited) as caught:
        client.get_messages(str(world.general.id), limit=1)
    assert caught.value.scope == "cloudflare"
    before = len(events(server))
    with pytest.raises(RateLimited, match="Cloudflare"):
        client.get_current_user()
    assert len(events(server)) == before


def test_fake_bans_an_ip_past_its_invalid_request_threshold(
    settings: DiscordSettings, http: httpx.Client, server: FakeDiscordServer, world: World
) -> None:
    server.fake.config.invalid_ban_threshold = 3
    loose = settings.model_copy(update={"invalid_request_limit": 100})
    with build_discord_client(loose, http, None, None) as client:
        # Three refused requests on different resources (one that just answered 403 is
        # refused locally for a while, without asking Discord again).
        with pytest.raises(Forbidden):
            client.get_channel(str(world.hidden.id))
        with pytest.raises(Forbidden):
            client.send_message(str(world.readonly.id), Message(content="x"))
        with pytest.raises(Forbidden):
            client.send_message(str(world.hidden.id), Message(content="x"))
        with pytest.raises(RateLimited) as caught:
            client.get_current_user()
    assert caught.value.scope == "cloudflare"


def test_breaker_trips_far_below_the_ban(
    settings: DiscordSettings,
    http: httpx.Client,
    redis_client: redis_lib.Redis,
    server: FakeDiscordServer,
    world: World,
    registry: CollectorRegistry,
) -> None:
    server.fake.config.invalid_ban_threshold = 10
    strict = settings.model_copy(update={"invalid_request_limit": 3})
    with build_discord_client(strict, http, redis_client, registry) as client:
        # Three refused requests on different resources (see the test above).
        with pytest.raises(Forbidden):
            client.send_message(str(world.readonly.id), Message(content="x"))
        with pytest.raises(Forbidden):
            client.get_channel(str(world.hidden.id))
        with pytest.raises(Forbidden):
            client.send_message(str(world.hidden.id), Message(content="x"))
        with pytest.raises(RateLimited) as caught:
            client.get_current_user()
    assert caught.value.scope == "breaker"
    assert not server.fake.limits.banned("127.0.0.1")
    assert (
        registry.get_sample_value("summarybot_discord_refused_total", {"reason": "breaker"}) == 1.0
    )


def test_too_many_429s_surface_as_rate_limited(
    settings: DiscordSettings, http: httpx.Client, server: FakeDiscordServer, world: World
) -> None:
    impatient = settings.model_copy(update={"max_retries": 0})
    server.fake.inject(Fault("user429", route=READ, times=20, retry_after=0.01))
    with (
        build_discord_client(impatient, http, None, None) as client,
        pytest.raises(RateLimited) as caught,
    ):
        client.get_messages(str(world.general.id), limit=1)
    assert caught.value.scope == "user"
    assert len(events(server, READ)) == 6


def test_a_base_url_without_the_api_path_gets_a_guided_error(
    settings: DiscordSettings,
    http: httpx.Client,
    redis_client: redis_lib.Redis,
    client: DiscordClient,
    server: FakeDiscordServer,
    world: World,
) -> None:
    wrong = settings.model_copy(update={"api_base": server.url})  # no /api/v10
    with (
        build_discord_client(wrong, http, redis_client, None) as misled,
        pytest.raises(UnknownRoute) as caught,
    ):
        misled.get_channel(str(world.general.id))
    text = str(caught.value)
    assert f"GET /channels/{{channel_id}} at {server.url} answered 404" in text
    assert "'404: Not Found'" in text
    assert "check DISCORD_API_BASE" in text and "/api/v10" in text
    assert isinstance(caught.value, NotFound)
    assert classify(caught.value) is ErrorKind.PERMANENT
    assert "DISCORD_API_BASE" in caught.value.user_message
    # A plain-text 404 is not Discord's "Unknown Webhook": the webhook is not marked dead.
    with (
        build_discord_client(wrong, http, redis_client, None) as misled,
        pytest.raises(UnknownRoute),
    ):
        misled.execute_webhook(world.webhook_url, Message(content="x"))
    assert client.execute_webhook(world.webhook_url, Message(content="still alive")) is not None


def test_the_guild_name_is_optional(
    client: DiscordClient, world: World, server: FakeDiscordServer
) -> None:
    channel = str(world.general.id)
    for mode, status in (("forbidden", 403), ("off", 404)):
        server.fake.config.guild_route = mode  # type: ignore[assignment]
        # The channel is remembered; a guild name that could not be read is asked again.
        info = client.channel_info(channel)
        assert (info.channel_name, info.guild_id, info.guild_name) == (
            "release-eng",
            str(world.guild.id),
            None,
        )
        assert events(server, "GET /guilds/{guild_id}")[-1] == (status, None)
    server.fake.config.guild_route = "on"
    assert client.channel_info(channel).guild_name == "Release Eng"


def test_the_guild_name_is_remembered_for_a_while(
    client: DiscordClient, world: World, server: FakeDiscordServer
) -> None:
    now = [1000.0]
    remembering = DiscordClient(
        client.session, guild_name_ttl_s=300, channel_ttl_s=60, clock=lambda: now[0]
    )
    channel = str(world.general.id)
    earlier = len(events(server, "GET /channels/{channel_id}"))
    server.fake.config.guild_route = "forbidden"  # type: ignore[assignment]
    assert remembering.channel_info(channel).guild_name is None
    server.fake.config.guild_route = "on"
    # A refusal is not remembered: the next job asks again.
    assert remembering.channel_info(channel).guild_name == "Release Eng"
    asked = len(events(server, "GET /guilds/{guild_id}"))
    read = len(events(server, "GET /channels/{channel_id}"))
    assert read == earlier + 1  # the channel was read once, for the first job
    now[0] += 59
    assert remembering.channel_info(channel).channel_name == "release-eng"
    assert len(events(server, "GET /channels/{channel_id}")) == read
    # After its time the channel is read again (a rename shows); the guild's name is not.
    now[0] += 240
    assert remembering.channel_info(channel).guild_name == "Release Eng"
    assert len(events(server, "GET /guilds/{guild_id}")) == asked
    assert len(events(server, "GET /channels/{channel_id}")) == read + 1
    now[0] += 2
    assert remembering.channel_info(channel).guild_name == "Release Eng"
    assert len(events(server, "GET /guilds/{guild_id}")) == asked + 1


def test_injected_global_429s_never_surface_and_block_the_whole_token(
    client: DiscordClient, world: World, server: FakeDiscordServer
) -> None:
    fake = server.fake
    start = fake.now_ms() - 3_600_000
    channels = [world.general, world.readonly]
    for channel in channels:
        fake.add_history(channel, [world.alice, world.bob], 300, start_ms=start, step_ms=1000)
    fake.inject(Fault("global429", duration_s=0.5))
    with ThreadPoolExecutor(max_workers=4) as pool:
        counts = list(
            pool.map(lambda c: sum(1 for _ in client.iter_history(str(c.id))), channels + channels)
        )
    assert counts == [300, 300, 300, 300]
    scopes = [scope for status, scope in events(server) if status == 429]
    assert scopes and set(scopes) == {"global"}
    # Each caller meets the block at most once: the first 429 blocks the token for everyone.
    assert len(scopes) <= 4
