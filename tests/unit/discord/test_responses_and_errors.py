"""Reading Discord's answers (fixture envelopes) and the error tree."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from shared.discord import errors, routes
from shared.discord.responses import error_for, read_answer, server_retry_after
from shared.errors import ErrorKind, PermanentError, RateLimitedError, TransientError, classify
from tests.fakes.discord_fixtures import envelope, fixture

MESSAGES = routes.GET_MESSAGES.compile(channel_id="1102565102059520001")
HOOK = routes.EXECUTE_WEBHOOK.compile(webhook_id="1246251869798400003", webhook_token="secret")
FOLLOWUP = routes.CREATE_FOLLOWUP.compile(application_id="1", interaction_token="itok")


@pytest.mark.parametrize(
    ("name", "scope", "retry_after", "invalid"),
    [
        ("ratelimit_429_user.json", "user", 3.123, True),
        ("ratelimit_429_shared.json", "shared", 41.72, False),
        ("ratelimit_429_global.json", "global", 0.412, True),
        ("ratelimit_429_with_code_illustrative.json", "shared", 7.5, False),
        ("cloudflare_ban_429.json", "cloudflare", None, True),
    ],
)
def test_429_scopes_from_fixtures(
    name: str, scope: str, retry_after: float | None, invalid: bool
) -> None:
    answer = read_answer(envelope(name), MESSAGES, authed=True)
    assert answer.rate_limited
    assert answer.outcome.scope == scope
    assert answer.outcome.retry_after == retry_after
    assert answer.outcome.invalid is invalid
    error = error_for(answer, MESSAGES)
    assert isinstance(error, errors.RateLimited)
    assert error.scope == scope
    assert classify(error) is ErrorKind.TRANSIENT


def test_headers_of_a_success_are_read() -> None:
    response = envelope("ratelimit_headers_200_example.json")
    answer = read_answer(response, MESSAGES, authed=True)
    assert answer.ok
    outcome = answer.outcome
    assert (outcome.bucket, outcome.limit, outcome.remaining, outcome.reset_after) == (
        "80c17d2f203122d936070c88c8d10f33",
        5,
        4,
        4.998,
    )
    assert outcome.has_bucket
    assert outcome.scope is None


def test_429_shapes_that_mean_a_ban_or_a_sublimit() -> None:
    html = httpx.Response(429, headers={"Via": "1.1 google"}, text="error code: 1015")
    assert read_answer(html, MESSAGES, authed=True).outcome.scope == "cloudflare"
    no_via = httpx.Response(429, json={"message": "x", "retry_after": 1, "global": False})
    assert read_answer(no_via, MESSAGES, authed=True).outcome.scope == "cloudflare"
    spare = httpx.Response(
        429,
        headers={"Via": "1.1 google", "X-RateLimit-Remaining": "3"},
        json={"message": "x", "retry_after": 2.5, "global": False},
    )
    assert read_answer(spare, MESSAGES, authed=True).outcome.scope == "sublimit"
    slowmode = httpx.Response(
        400,
        headers={"Via": "1.1 google"},
        json={"message": "slow", "code": 20016, "retry_after": 4},
    )
    answer = read_answer(slowmode, MESSAGES, authed=True)
    assert answer.outcome.scope == "sublimit"
    assert answer.outcome.retry_after == 4
    assert not answer.outcome.invalid


@pytest.mark.parametrize(
    ("name", "kind", "code"),
    [
        ("error_401_unauthorized.json", errors.Unauthorized, 0),
        ("error_50001_missing_access.json", errors.Forbidden, 50001),
        ("error_50013_missing_permissions.json", errors.Forbidden, 50013),
        ("error_50007_cannot_dm.json", errors.Forbidden, 50007),
        ("error_10003_unknown_channel.json", errors.NotFound, 10003),
        ("error_10008_unknown_message.json", errors.NotFound, 10008),
        ("error_10062_unknown_interaction.json", errors.NotFound, 10062),
        ("error_10014_unknown_emoji.json", errors.BadRequest, 10014),
        ("error_50006_empty_message.json", errors.BadRequest, 50006),
        ("error_40060_already_acknowledged.json", errors.BadRequest, 40060),
        ("error_40005_entity_too_large.json", errors.BadRequest, 40005),
        ("error_50035_content_too_long.json", errors.BadRequest, 50035),
    ],
)
def test_status_to_error(name: str, kind: type[errors.DiscordError], code: int) -> None:
    answer = read_answer(envelope(name), MESSAGES, authed=True)
    error = error_for(answer, MESSAGES)
    assert type(error) is kind
    assert error.code == code
    assert error.status == fixture(name)["status"]
    assert error.route == "GET /channels/{channel_id}/messages"
    assert not error.is_retryable
    assert isinstance(error, PermanentError)
    assert answer.outcome.invalid is (error.status in (401, 403))
    assert answer.outcome.dead_token is (error.status == 401)


def test_webhook_answers_mark_the_webhook_dead_but_not_the_token() -> None:
    for name in ("error_10015_unknown_webhook.json", "error_50027_invalid_webhook_token.json"):
        answer = read_answer(envelope(name), HOOK, authed=False)
        assert answer.outcome.dead_webhook
        assert not answer.outcome.dead_token
        assert isinstance(error_for(answer, HOOK), errors.InvalidWebhook)
    unknown_message = read_answer(envelope("error_10008_unknown_message.json"), HOOK, authed=False)
    assert not unknown_message.outcome.dead_webhook
    assert type(error_for(unknown_message, HOOK)) is errors.NotFound
    plain_404 = httpx.Response(404, json={"message": "404: Not Found", "code": 0})
    assert read_answer(plain_404, HOOK, authed=False).outcome.dead_webhook
    expired = read_answer(
        envelope("error_50027_invalid_webhook_token.json"), FOLLOWUP, authed=False
    )
    assert not expired.outcome.dead_webhook
    assert isinstance(error_for(expired, FOLLOWUP), errors.InvalidWebhook)


def test_server_error_and_nested_form_errors() -> None:
    error = error_for(
        read_answer(httpx.Response(503, text="upstream"), MESSAGES, authed=True), MESSAGES
    )
    assert isinstance(error, errors.ServerError)
    assert error.is_retryable
    nested = error_for(
        read_answer(envelope("error_50035_nested_embed_field.json"), MESSAGES, authed=True),
        MESSAGES,
    )
    assert isinstance(nested, errors.BadRequest)
    assert nested.errors == ("embeds.0.fields.1.value: BASE_TYPE_REQUIRED This field is required",)
    assert "embeds.0.fields.1.value" in str(nested)
    assert errors.flatten_form_errors({"_errors": [{"code": "X", "message": "bad"}]}) == [
        "(request): X bad"
    ]


def test_error_tree_sorts_into_the_pipeline_classes() -> None:
    limited = errors.RateLimited("slow down", retry_after=2.0, scope="user", route="GET /x")
    assert isinstance(limited, RateLimitedError)
    assert isinstance(limited, errors.DiscordError)
    assert limited.retry_after == 2.0
    assert "2 s" in limited.user_message
    for cls in (errors.ServerError, errors.NetworkError):
        assert issubclass(cls, TransientError)
    for cls in (
        errors.BadRequest,
        errors.Unauthorized,
        errors.Forbidden,
        errors.NotFound,
        errors.InvalidWebhook,
    ):
        assert issubclass(cls, PermanentError)
        assert classify(cls("x")) is ErrorKind.PERMANENT
    assert "route='GET /x'" in repr(limited)
    limits = errors.MessageLimitsError(["a", "b"])
    assert limits.violations == ("a", "b")
    assert "- a\n- b" in str(limits)


def test_answer_without_body() -> None:
    answer = read_answer(httpx.Response(204), MESSAGES, authed=True)
    assert answer.ok
    assert answer.body is None
    error: Any = error_for(read_answer(httpx.Response(405), MESSAGES, authed=True), MESSAGES)
    assert isinstance(error, errors.BadRequest)
    assert error.message == "HTTP 405"


BASE = "http://user:hunter2@127.0.0.1:8080/api/v10"


def test_plain_text_404_is_an_unknown_route_with_guidance() -> None:
    answer = read_answer(httpx.Response(404, text="404: Not Found"), MESSAGES, authed=True)
    error = error_for(answer, MESSAGES, api_base=BASE)
    assert isinstance(error, errors.UnknownRoute)
    assert isinstance(error, errors.NotFound)  # callers that expect NotFound still see one
    assert not error.is_retryable
    text = str(error)
    assert "GET /channels/{channel_id}/messages at http://127.0.0.1:8080/api/v10" in text
    assert "'404: Not Found'" in text
    assert "DISCORD_API_BASE" in text and "https://discord.com/api/v10" in text
    assert "hunter2" not in text
    assert "DISCORD_API_BASE" in error.user_message
    empty = error_for(read_answer(httpx.Response(404), MESSAGES, authed=True), MESSAGES)
    assert isinstance(empty, errors.UnknownRoute)
    assert "an empty body" in str(empty)


def test_json_404_without_a_code_is_an_unknown_route() -> None:
    answer = read_answer(
        httpx.Response(404, json={"message": "404: Not Found", "code": 0}), MESSAGES, authed=True
    )
    error = error_for(answer, MESSAGES, api_base=BASE)
    assert isinstance(error, errors.UnknownRoute)
    assert error.code == 0
    assert "no such route" in str(error) and "DISCORD_API_BASE" in str(error)
    # Discord's own 404s name what is missing: those stay plain NotFound.
    unknown = error_for(
        read_answer(envelope("error_10003_unknown_channel.json"), MESSAGES, authed=True), MESSAGES
    )
    assert type(unknown) is errors.NotFound


def test_non_json_error_bodies_are_explained_not_bare() -> None:
    html = "<html><head><title>403 Forbidden</title></head><body>nginx</body></html>"
    forbidden = error_for(
        read_answer(
            httpx.Response(403, headers={"Server": "nginx"}, text=html), MESSAGES, authed=True
        ),
        MESSAGES,
        api_base=BASE,
    )
    assert isinstance(forbidden, errors.UnexpectedAnswer)
    assert "403 Forbidden" in str(forbidden)
    assert "not Discord's API" in str(forbidden)
    long_text = "x" * 1000
    long_error = error_for(
        read_answer(httpx.Response(400, text=long_text), MESSAGES, authed=True), MESSAGES
    )
    assert len(str(long_error)) < 600
    echoed = f"Cannot POST /api/webhooks/{HOOK.params['webhook_id']}/secret"
    hook_error = error_for(read_answer(httpx.Response(405, text=echoed), HOOK, authed=False), HOOK)
    assert "secret" not in str(hook_error)


def test_plain_text_404_on_a_webhook_does_not_kill_it() -> None:
    answer = read_answer(httpx.Response(404, text="404: Not Found"), HOOK, authed=False)
    assert not answer.outcome.dead_webhook
    assert isinstance(error_for(answer, HOOK), errors.UnknownRoute)


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        ("3", 3.0),
        ("1.5", 1.5),
        ("0", 0.0),
        ("Thu, 01 Jan 2026 00:00:30 GMT", 30.0),  # an HTTP date, 30 s after "now"
        ("Wed, 31 Dec 2025 23:59:00 GMT", 0.0),  # a date already past: now
        (None, None),
        ("", None),
        ("-1", None),
        ("nan", None),
        ("inf", None),
        ("soon", None),
    ],
)
def test_a_5xx_retry_after_is_read_as_seconds_or_an_http_date(
    value: str | None, seconds: float | None
) -> None:
    headers = httpx.Headers({} if value is None else {"Retry-After": value})
    assert server_retry_after(headers, now=1767225600.0) == seconds  # 2026-01-01T00:00:00Z


CLOUDFLARE_1020 = (
    "<!DOCTYPE html><html><head><title>Access denied | discord.com used Cloudflare to restrict "
    "access</title></head><body><h1>Error 1020</h1><p>Access denied</p>"
    "<p>error code: 1020</p></body></html>"
)


@pytest.mark.parametrize(
    ("headers", "body", "which"),
    [
        ({}, "error code: 1020", " (Cloudflare error 1020)"),  # the plain-text page
        (
            {"Server": "cloudflare", "CF-Ray": "8f1c2d3e4a5b6c7d-FRA"},
            CLOUDFLARE_1020,
            " (Cloudflare error 1020)",
        ),
        ({"CF-Ray": "8f1c2d3e4a5b6c7d-FRA"}, "<html><body>Access denied</body></html>", ""),
    ],
)
def test_cloudflares_own_403_says_discords_edge_blocks_this_host(
    headers: dict[str, str], body: str, which: str
) -> None:
    answer = read_answer(httpx.Response(403, headers=headers, text=body), MESSAGES, authed=True)
    assert answer.outcome.invalid  # it still counts toward the invalid-request limit
    error = error_for(answer, MESSAGES, api_base=BASE)
    text = str(error)
    assert f"Discord's edge (Cloudflare) blocked this host{which}, before the request" in text
    assert "too many invalid requests (401/403/429: 10,000 in 10 minutes" in text
    assert "DISCORD_USER_AGENT" in text and "'DiscordBot (url, version)'" in text
    assert "wait for the block to lift" in text
    assert "DISCORD_API_BASE" not in text and "not Discord's API" not in text
    assert "hunter2" not in text
    assert "DISCORD_USER_AGENT" in error.user_message
    assert "DISCORD_API_BASE" not in error.user_message
    assert (error.status, error.is_retryable) == (403, False)
    assert classify(error) is ErrorKind.PERMANENT
    assert type(error).__name__ == "EdgeBlocked"
    assert not isinstance(error, errors.Forbidden)  # no permission of the bot is involved


@pytest.mark.parametrize(
    ("status", "headers", "body", "kind"),
    [
        # discord.com without /api: Cloudflare passes it on and the website answers 404.
        (404, {"Server": "cloudflare", "CF-Ray": "8f1c-FRA"}, "<html>Not Found</html>", "route"),
        # Some other server's 403 page: not Discord's edge, so the base URL is suspect.
        (403, {"Server": "nginx"}, "<html>403 Forbidden</html>", "unexpected"),
        (403, {}, "Forbidden", "unexpected"),
        # Cloudflare's page, but not a 403: the wrong-base wording stays.
        (400, {"Server": "cloudflare"}, "<html>400 Bad Request</html>", "unexpected"),
    ],
)
def test_only_answers_that_point_at_a_wrong_base_blame_the_base_url(
    status: int, headers: dict[str, str], body: str, kind: str
) -> None:
    answer = read_answer(httpx.Response(status, headers=headers, text=body), MESSAGES, authed=True)
    error = error_for(answer, MESSAGES, api_base=BASE)
    expected = errors.UnknownRoute if kind == "route" else errors.UnexpectedAnswer
    assert type(error) is expected
    assert "not Discord's API answering" in str(error) and "DISCORD_API_BASE" in str(error)
    assert "DISCORD_API_BASE" in error.user_message
