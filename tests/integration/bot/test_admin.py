"""``/summary-config``, ``/summary-optout``/``optin`` and ``/digest``: stored in Postgres,
driven through real interactions."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select

from schema.models.jobs import Job
from schema.models.schedules import Schedule, ScheduleRun
from schema.models.tenancy import ALL_GUILDS, GuildSettings, UserOptOut, WebhookEndpoint
from tests.fakes.discord_state import VIEW_CHANNEL
from tests.integration.bot.harness import BotHarness, running_bot

pytestmark = pytest.mark.integration

EPHEMERAL = 1 << 6
MANAGE_GUILD = 1 << 5


def sub(name: str, *options: dict[str, Any]) -> list[dict[str, Any]]:
    return [{"name": name, "type": 1, "options": list(options)}]


def opt(name: str, value: Any, kind: int = 3) -> dict[str, Any]:
    return {"name": name, "type": kind, "value": value}


def told(h: BotHarness, token: str) -> str:
    original = h.original(token)
    assert original is not None, h.replies(token)
    assert original.flags & EPHEMERAL
    return original.content


def fields(h: BotHarness, token: str) -> dict[str, str]:
    original = h.original(token)
    assert original is not None and original.embeds
    return {f["name"]: f["value"] for f in original.embeds[0]["fields"]}


def run(database_url: str, redis_url: str, body: Any) -> None:
    async def scenario() -> None:
        settings = {"user_cooldown_seconds": 0, "guild_cooldown_seconds": 0}
        async with running_bot(
            database_url=database_url, redis_url=redis_url, settings=settings
        ) as h:
            await body(h)

    asyncio.run(scenario())


def test_config_is_for_managers_and_is_stored(database_url: str, redis_url: str) -> None:
    async def body(h: BotHarness) -> None:
        w = h.world
        token = await h.command("summary-config", sub("show"), user=w.bob, channel=w.general)
        assert "Only members with Manage Server" in told(h, token)
        token = await h.command(
            "summary-config",
            sub(
                "set",
                opt("default_format", "detailed"),
                opt("default_language", "de"),
                opt("retention_days", 30, 4),
                opt("monthly_token_budget", 500_000, 4),
                opt("reaction_emoji", "🧾"),
                opt("private_channels", "deny"),
            ),
            user=w.alice,
            channel=w.general,
        )
        shown = fields(h, token)
        assert shown["Default format"] == "detailed"
        assert shown["Default language"] == "de"
        assert shown["Monthly token budget"] == "500,000 tokens"
        assert shown["Reaction trigger"] == "🧾"
        assert shown["Summarizer"].startswith("offline")
        with h.session_factory() as session:
            row = session.get(GuildSettings, str(w.guild.id))
            assert row is not None
            assert (row.default_format, row.default_language, row.retention_days) == (
                "detailed",
                "de",
                30,
            )
            assert row.monthly_token_budget == 500_000
            assert row.private_channel_policy == "deny"
        # The new defaults apply to the next summary.
        await h.command("summarize", [], user=w.bob, channel=w.general)
        with h.session_factory() as session:
            job = session.scalars(select(Job).where(Job.guild_id == str(w.guild.id))).one()
            assert job.params["format"] == "detailed" and job.params["language"] == "de"
        token = await h.command(
            "summary-config",
            sub("set", opt("monthly_token_budget", 0, 4), opt("default_language", "as-written")),
            user=w.alice,
            channel=w.general,
        )
        shown = fields(h, token)
        assert shown["Monthly token budget"] == "none"
        assert shown["Default language"] == "as written"
        bad = await h.command(
            "summary-config",
            sub("set", opt("reaction_emoji", "hello")),
            user=w.alice,
            channel=w.general,
        )
        assert "not an emoji" in told(h, bad)
        empty = await h.command("summary-config", sub("set"), user=w.alice, channel=w.general)
        assert "Nothing to change" in told(h, empty)

    run(database_url, redis_url, body)


def test_roles_and_excluded_channels(database_url: str, redis_url: str) -> None:
    async def body(h: BotHarness) -> None:
        w = h.world
        readers = h.fake.add_role(w.guild, "readers", 0)
        managers = h.fake.add_role(w.guild, "managers", MANAGE_GUILD)
        w.guild.members[w.bob.id].roles.add(managers)
        guild = h.sync_guild()
        role = guild.get_role(readers)
        assert role is not None
        resolved_role = {
            "roles": {
                str(readers): {
                    "id": str(readers),
                    "name": "readers",
                    "permissions": "0",
                    "position": 1,
                    "color": 0,
                    "hoist": False,
                    "managed": False,
                    "mentionable": False,
                    "flags": 0,
                }
            }
        }
        token = await h.command(
            "summary-config",
            sub("roles", opt("action", "allow"), opt("role", str(readers), 8)),
            user=w.bob,  # Manage Server through a role
            channel=w.general,
            resolved=resolved_role,
        )
        assert fields(h, token)["Allowed roles"] == f"<@&{readers}>"
        w.guild.members[w.bob.id].roles.discard(managers)
        h.sync_guild()
        refused = await h.command("summarize", [], user=w.bob, channel=w.general)
        [message] = [m for m in h.replies(refused) if m.flags & EPHEMERAL]
        assert f"<@&{readers}>" in message.content
        missing_role = await h.command(
            "summary-config", sub("roles", opt("action", "allow")), user=w.alice, channel=w.general
        )
        assert "Pick the role" in told(h, missing_role)
        cleared = await h.command(
            "summary-config",
            sub("roles", opt("action", "everyone")),
            user=w.alice,
            channel=w.general,
        )
        assert fields(h, cleared)["Allowed roles"] == "everyone"

        channel_option = {"channels": {str(w.general.id): h.resolved_channel(w.general, w.alice)}}
        token = await h.command(
            "summary-config",
            sub("channels", opt("action", "exclude"), opt("channel", str(w.general.id), 7)),
            user=w.alice,
            channel=w.general,
            resolved=channel_option,
        )
        assert fields(h, token)["Excluded channels"] == f"<#{w.general.id}>"
        refused = await h.command("summarize", [], user=w.bob, channel=w.general)
        [message] = [m for m in h.replies(refused) if m.flags & EPHEMERAL]
        assert "excluded from summaries" in message.content
        token = await h.command(
            "summary-config",
            sub("channels", opt("action", "include"), opt("channel", str(w.general.id), 7)),
            user=w.alice,
            channel=w.general,
            resolved=channel_option,
        )
        assert fields(h, token)["Excluded channels"] == "none"
        again = await h.command(
            "summary-config",
            sub("channels", opt("action", "include-all")),
            user=w.alice,
            channel=w.general,
        )
        assert fields(h, again)["Excluded channels"] == "none"
        nothing = await h.command(
            "summary-config",
            sub("channels", opt("action", "exclude")),
            user=w.alice,
            channel=w.general,
        )
        assert "Pick the channel" in told(h, nothing)

    run(database_url, redis_url, body)


def test_opt_out_and_back_in(database_url: str, redis_url: str) -> None:
    async def body(h: BotHarness) -> None:
        w = h.world

        def scopes() -> list[str]:
            with h.session_factory() as session:
                return sorted(
                    session.scalars(
                        select(UserOptOut.guild_id).where(UserOptOut.user_id == str(w.bob.id))
                    )
                )

        token = await h.command("summary-optout", [], user=w.bob, channel=w.general)
        assert "left out of summaries in this server" in told(h, token)
        again = await h.command("summary-optout", [], user=w.bob, channel=w.general)
        assert "already opted out" in told(h, again)
        everywhere = await h.command(
            "summary-optout", [opt("scope", "all-servers")], user=w.bob, channel=w.general
        )
        assert "every server" in told(h, everywhere)
        assert scopes() == sorted([str(w.guild.id), ALL_GUILDS])
        back = await h.command("summary-optin", [], user=w.bob, channel=w.general)
        assert "included in summaries in this server again" in told(h, back)
        not_out = await h.command("summary-optin", [], user=w.bob, channel=w.general)
        assert "were not opted out" in told(h, not_out)
        assert scopes() == [ALL_GUILDS]

    run(database_url, redis_url, body)


def test_digest_of_a_thread_whose_parent_the_bot_lost_is_refused(
    database_url: str, redis_url: str
) -> None:
    """The digest command checks access with the bot's one check: a thread whose parent is
    not in the bot's cache is refused with the reason, as /summarize refuses it."""

    async def body(h: BotHarness) -> None:
        w = h.world
        thread = h.fake.add_thread(w.general, "release-42", owner=w.alice)
        lobby = h.fake.add_channel(w.guild, "lobby")
        h.sync_guild()
        # The bot's cache holds the thread but not its parent (as after a gateway gap).
        guild = h.bot.get_guild(w.guild.id)
        assert guild is not None
        parent = guild.get_channel(w.general.id)
        assert parent is not None and guild.get_thread(thread.id) is not None
        guild._remove_channel(parent)
        token = await h.command(
            "digest",
            sub("create", opt("channel", str(thread.id), 7), opt("schedule", "daily 09:00")),
            user=w.alice,
            channel=lobby,
            resolved={"channels": {str(thread.id): h.resolved_channel(thread, w.alice)}},
        )
        assert f"the parent channel of thread {thread.id} is unknown to the bot" in told(h, token)
        with h.session_factory() as session:
            # This guild's schedules only: the database is shared with other tests.
            mine = select(Schedule).where(Schedule.guild_id == str(w.guild.id))
            assert session.scalars(mine).all() == []

    run(database_url, redis_url, body)


def test_digest_lifecycle(database_url: str, redis_url: str) -> None:
    async def body(h: BotHarness) -> None:
        w = h.world
        general = {"channels": {str(w.general.id): h.resolved_channel(w.general, w.alice)}}
        refused = await h.command(
            "digest",
            sub("create", opt("channel", str(w.general.id), 7), opt("schedule", "daily 09:00")),
            user=w.bob,
            channel=w.general,
            resolved={"channels": {str(w.general.id): h.resolved_channel(w.general, w.bob)}},
        )
        assert "Only members with Manage Server" in told(h, refused)
        bad = await h.command(
            "digest",
            sub("create", opt("channel", str(w.general.id), 7), opt("schedule", "sometimes")),
            user=w.alice,
            channel=w.general,
            resolved=general,
        )
        assert "try 'daily 09:00 Europe/Berlin'" in told(h, bad)
        token = await h.command(
            "digest",
            sub(
                "create",
                opt("channel", str(w.general.id), 7),
                opt("schedule", "weekly mon 08:00 Europe/Berlin"),
                opt("format", "structured"),
            ),
            user=w.alice,
            channel=w.general,
            resolved=general,
        )
        assert "Digest created: every Monday at 08:00 (Europe/Berlin)" in told(h, token)
        with h.session_factory() as session:
            row = session.scalars(
                select(Schedule).where(Schedule.guild_id == str(w.guild.id))
            ).one()
            assert row.cron == "0 8 * * 1" and row.timezone == "Europe/Berlin"
            assert row.destination == {"kind": "channel", "channel_id": str(w.general.id)}
            assert row.format == "structured" and row.enabled and row.next_run_at is not None
            short = row.id.hex[:8]
        listing = await h.command("digest", sub("list"), user=w.alice, channel=w.general)
        original = h.original(listing)
        assert original is not None and original.embeds[0]["fields"][0]["name"].startswith(short)
        paused = await h.command(
            "digest", sub("pause", opt("digest", short)), user=w.alice, channel=w.general
        )
        assert "Digest paused" in told(h, paused)
        resumed = await h.command(
            "digest", sub("resume", opt("digest", short)), user=w.alice, channel=w.general
        )
        assert "Digest resumed" in told(h, resumed) and "next <t:" in told(h, resumed)
        unknown = await h.command(
            "digest", sub("pause", opt("digest", "abcdef12")), user=w.alice, channel=w.general
        )
        assert "no digest 'abcdef12'" in told(h, unknown)
        deleted = await h.command(
            "digest", sub("delete", opt("digest", short)), user=w.alice, channel=w.general
        )
        assert "Digest deleted" in told(h, deleted)
        with h.session_factory() as session:
            assert session.get(Schedule, row.id) is None

    run(database_url, redis_url, body)


def test_digest_to_a_webhook_endpoint(database_url: str, redis_url: str) -> None:
    async def body(h: BotHarness) -> None:
        w = h.world
        endpoint_id = uuid.uuid4()
        with h.session_factory() as session, session.begin():
            session.add(
                WebhookEndpoint(
                    id=endpoint_id,
                    guild_id=str(w.guild.id),
                    url="https://hooks.example.com/summaries",
                    secret_encrypted="gAAAA-not-used-here",
                )
            )
        general = {"channels": {str(w.general.id): h.resolved_channel(w.general, w.alice)}}
        token = await h.command(
            "digest",
            sub(
                "create",
                opt("channel", str(w.general.id), 7),
                opt("schedule", "cron 0 9 * * 1-5"),
                opt("webhook_endpoint", str(endpoint_id)),
            ),
            user=w.alice,
            channel=w.general,
            resolved=general,
        )
        assert "Digest created" in told(h, token)
        with h.session_factory() as session:
            row = session.scalars(
                select(Schedule).where(Schedule.guild_id == str(w.guild.id))
            ).one()
            assert row.destination == {"kind": "webhook", "endpoint_id": str(endpoint_id)}
        missing = await h.command(
            "digest",
            sub(
                "create",
                opt("channel", str(w.general.id), 7),
                opt("schedule", "hourly"),
                opt("webhook_endpoint", str(uuid.uuid4())),
            ),
            user=w.alice,
            channel=w.general,
            resolved=general,
        )
        assert "destination: no webhook endpoint" in told(h, missing)
        malformed = await h.command(
            "digest",
            sub(
                "create",
                opt("channel", str(w.general.id), 7),
                opt("schedule", "hourly"),
                opt("webhook_endpoint", "nope"),
            ),
            user=w.alice,
            channel=w.general,
            resolved=general,
        )
        assert "must be an endpoint id" in told(h, malformed)
        # A private channel's digest may not leave Discord under the same-channel policy
        # (for a manager who is not an administrator).
        managers = h.fake.add_role(w.guild, "managers", MANAGE_GUILD)
        w.guild.members[w.bob.id].roles.add(managers)
        [bot_role] = w.guild.members[w.bot.id].roles
        staff = h.fake.add_channel(
            w.guild,
            "staff-only",
            overwrites=[
                {"id": str(w.guild.id), "type": 0, "allow": "0", "deny": str(VIEW_CHANNEL)},
                {"id": str(managers), "type": 0, "allow": str(VIEW_CHANNEL), "deny": "0"},
                {"id": str(bot_role), "type": 0, "allow": str(VIEW_CHANNEL), "deny": "0"},
            ],
        )
        h.sync_guild()
        leak = await h.command(
            "digest",
            sub(
                "create",
                opt("channel", str(staff.id), 7),
                opt("schedule", "hourly"),
                opt("webhook_endpoint", str(endpoint_id)),
            ),
            user=w.bob,
            channel=w.general,
            resolved={"channels": {str(staff.id): h.resolved_channel(staff, w.bob)}},
        )
        assert f"<#{staff.id}> is private" in told(h, leak)
        inside = await h.command(
            "digest",
            sub("create", opt("channel", str(staff.id), 7), opt("schedule", "hourly")),
            user=w.bob,
            channel=w.general,
            resolved={"channels": {str(staff.id): h.resolved_channel(staff, w.bob)}},
        )
        assert "Digest created" in told(h, inside)

    run(database_url, redis_url, body)


def test_digests_of_several_channels(database_url: str, redis_url: str) -> None:
    async def body(h: BotHarness) -> None:
        w = h.world
        team = h.fake.add_channel(w.guild, "Team", type=4)
        inside = h.fake.add_channel(w.guild, "team-chat", category=team)
        h.sync_guild()
        guild = str(w.guild.id)

        async def create(*options: dict[str, Any], resolved: Any = None) -> str:
            token = await h.command(
                "digest",
                sub("create", opt("schedule", "daily 09:00"), *options),
                user=w.alice,
                channel=w.general,
                resolved=resolved,
            )
            return told(h, token)

        def latest() -> Schedule:
            with h.session_factory() as session:
                return session.scalars(
                    select(Schedule)
                    .where(Schedule.guild_id == guild)
                    .order_by(Schedule.created_at.desc())
                ).first()  # type: ignore[return-value]

        # The whole server, posted here: the schedule's channel is where it is posted.
        assert "Digest created" in await create(opt("scope", "server"))
        server = latest()
        assert (server.scope, server.channel_id) == ("server", str(w.general.id))
        assert server.destination == {"kind": "channel", "channel_id": str(w.general.id)}
        # A category given with the default scope makes a category digest.
        category = {"channels": {str(team.id): h.resolved_channel(team, w.alice)}}
        told_category = await create(opt("category", str(team.id), 7), resolved=category)
        assert "Digest created" in told_category and f"category <#{team.id}>" in told_category
        assert (latest().scope, latest().scope_category_id) == ("category", str(team.id))
        # Mentioned channels make a digest of those.
        listed = await create(opt("channels", f"<#{inside.id}> <#{w.general.id}>"))
        assert "Digest created" in listed
        assert latest().scope_channel_ids == [str(inside.id), str(w.general.id)]
        # Options that do not go together are refused by the core, or by the parser.
        mixed = await create(
            opt("scope", "server"), opt("category", str(team.id), 7), resolved=category
        )
        assert "category_id goes with scope 'category', not 'server'" in mixed
        twice = await create(opt("channels", f"<#{inside.id}> <#{inside.id}>"))
        assert "the same channel is listed twice" in twice
        assert "is not a channel" in await create(opt("channels", "#general"))
        general = {"channels": {str(w.general.id): h.resolved_channel(w.general, w.alice)}}
        both = await create(
            opt("scope", "server"), opt("channel", str(w.general.id), 7), resolved=general
        )
        assert "leave `channel` out" in both
        with h.session_factory() as session:
            assert (
                len(session.scalars(select(Schedule).where(Schedule.guild_id == guild)).all()) == 3
            )

        # /digest list tells the managers what the last server digest left out, and why.
        job_id = uuid.uuid4()
        reason = "1 of the 3 members who can see #release-eng cannot read it"
        with h.session_factory() as session, session.begin():
            session.add(
                Job(
                    id=job_id,
                    origin="digest",
                    status="completed",
                    guild_id=guild,
                    params={},
                    progress={
                        "plan": {
                            "left_out": [
                                {"channel_id": "1" * 18, "name": "staff-only", "reason": reason}
                            ]
                        }
                    },
                    redeliveries=0,
                )
            )
            session.flush()
            run_start = datetime(2026, 6, 1, tzinfo=UTC)
            session.add(
                ScheduleRun(
                    schedule_id=server.id,
                    window_start=run_start,
                    window_end=run_start + timedelta(days=1),
                    job_id=job_id,
                )
            )
        listing = await h.command("digest", sub("list"), user=w.alice, channel=w.general)
        original = h.original(listing)
        assert original is not None and original.flags & EPHEMERAL
        shown = {f["name"].split(" · ")[0]: f["value"] for f in original.embeds[0]["fields"]}
        value = shown[server.id.hex[:8]]
        assert value.startswith(f"the whole server → <#{w.general.id}>")
        assert f"left out last time: #staff-only ({reason})" in value
        assert "left out" not in shown[latest().id.hex[:8]]

    run(database_url, redis_url, body)
