"""Reply embeds: what they show, and that they always fit Discord's limits."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import discord

from producers.bot.responses import (
    EMBED_TOTAL,
    LEFT_OUT_SHOWN,
    RequestSummary,
    config_embed,
    fit,
    job_list_embed,
    schedule_list_embed,
    status_embed,
)
from producers.bot.store import GuildConfig
from schema.models.jobs import JobStatus
from schema.models.tenancy import PrivateChannelPolicy
from shared.job_view import JobView, LeftOutChannel
from shared.services.schedules import LastRun, ScheduleView
from shared.summarize.content import SummaryFormat

NOW = datetime(2026, 3, 14, 15, 0, tzinfo=UTC)
JOB = uuid.UUID("0b6a7a8e-2f7c-4a55-9d3e-1d4f2f0c8a11")


def within_limits(embed: discord.Embed) -> None:
    assert len(embed) <= EMBED_TOTAL
    assert len(embed.title or "") <= 256
    assert len(embed.description or "") <= 4096
    assert len(embed.fields) <= 25
    for item in embed.fields:
        assert 0 < len(item.name or "") <= 256
        assert 0 < len(item.value or "") <= 1024
    assert len(embed.footer.text or "") <= 2048


def request() -> RequestSummary:
    return RequestSummary(
        job_id=JOB,
        source="<#1>",
        window="The last 24 hours",
        destination="this reply",
        messages="≈ 120",
        cost="offline summarizer: free",
        ready_at=NOW + timedelta(seconds=42),
    )


def job(status: JobStatus, **fields: Any) -> JobView:
    values: dict[str, Any] = {
        "id": JOB,
        "origin": "bot",
        "status": status,
        "guild_id": "9",
        "channel_id": "1",
        "requested_by": "2",
        "params": {},
        "progress": {},
        "message_count": None,
        "error": None,
        "created_at": NOW,
        "updated_at": NOW,
        "finished_at": None,
    }
    return JobView(**values | fields)


def field(embed: discord.Embed, name: str) -> str:
    return next(f.value for f in embed.fields if f.name == name) or ""


def test_first_reply_shows_job_count_cost_and_relative_time() -> None:
    embed = status_embed(request(), None)
    within_limits(embed)
    assert embed.title == "Summarizing…"
    assert field(embed, "Job") == f"`{JOB}`"
    assert field(embed, "Messages") == "≈ 120"
    assert field(embed, "Cost") == "offline summarizer: free"
    assert field(embed, "Ready") == f"<t:{int((NOW + timedelta(seconds=42)).timestamp())}:R>"
    assert field(embed, "Progress").startswith("⏳ Queued")
    assert embed.footer.text == f"/summary-status job:{JOB.hex[:8]}"


def test_progress_marks_stages_and_fetch_counts() -> None:
    fetching = job(JobStatus.FETCHING, progress={"messages_fetched": 500, "messages_total": 1200})
    progress = field(status_embed(request(), fetching), "Progress")
    assert progress.splitlines()[:2] == ["✅ Queued", "⏳ Reading messages (500/1200)"]
    partial = job(JobStatus.FETCHING, progress={"messages_fetched": 7})
    assert "(7)" in field(status_embed(request(), partial), "Progress")
    done = job(JobStatus.COMPLETED, finished_at=NOW + timedelta(seconds=30))
    embed = status_embed(request(), done)
    assert embed.title == "Summary ready"
    assert field(embed, "Progress").endswith("✅ Done")
    assert field(embed, "Finished").startswith("<t:")


def test_failures_show_the_reason() -> None:
    failed = job(JobStatus.FAILED, error="Cannot send messages to this user")
    embed = status_embed(request(), failed)
    assert embed.title == "Summary failed"
    assert field(embed, "Why") == "Cannot send messages to this user"
    assert field(embed, "Progress").endswith("❌ Failed")
    cancelled = status_embed(request(), job(JobStatus.CANCELLED))
    assert cancelled.title == "Summary cancelled"


def test_fit_clips_everything_to_discords_limits() -> None:
    embed = discord.Embed(title="t" * 300, description="d" * 5000)
    for _ in range(30):
        embed.add_field(name="n" * 300, value="v" * 2000)
    embed.set_footer(text="f" * 3000)
    within_limits(fit(embed))
    assert embed.description and embed.description.endswith("…")


def test_a_huge_error_still_fits() -> None:
    failed = job(JobStatus.FAILED, error="x" * 10_000)
    within_limits(status_embed(request(), failed))


def test_job_list() -> None:
    empty = job_list_embed([], title="Your latest summaries")
    assert "No summaries yet" in (empty.description or "")
    jobs = [
        job(JobStatus.COMPLETED, message_count=42),
        job(JobStatus.FAILED, error="boom", progress={"messages_fetched": 3}),
    ]
    embed = job_list_embed(jobs, title="Your latest summaries")
    within_limits(embed)
    first, second = (str(f.value) for f in embed.fields)
    assert "**completed**" in first and "42 messages" in first
    assert "boom" in second


def test_config_embed() -> None:
    config = GuildConfig(
        guild_id=9,
        default_format=SummaryFormat.DETAILED,
        allowed_role_ids=frozenset({5, 6}),
        excluded_channel_ids=frozenset({7}),
        monthly_token_budget=1_000_000,
        reaction_emoji="🧾",
        private_channel_policy=PrivateChannelPolicy.DENY,
    )
    embed = config_embed(config, limits="60 s between a member's requests", llm="gpt-4o-mini")
    within_limits(embed)
    assert field(embed, "Allowed roles") == "<@&5>, <@&6>"
    assert field(embed, "Excluded channels") == "<#7>"
    assert field(embed, "Monthly token budget") == "1,000,000 tokens"
    assert field(embed, "Private channels") == "deny"
    defaults = config_embed(GuildConfig(guild_id=9), limits="-", llm="offline")
    assert field(defaults, "Allowed roles") == "everyone"
    assert field(defaults, "Reaction trigger") == "off"


def schedule(**values: Any) -> ScheduleView:
    """A daily digest of channel 100 posted there, with ``values`` changed."""
    fields: dict[str, Any] = {
        "id": uuid.uuid4(),
        "channel_id": "100",
        "spec": "daily 09:00",
        "cron": "0 9 * * *",
        "timezone": "UTC",
        "format": "brief",
        "language": None,
        "destination": {"kind": "channel", "channel_id": "100"},
        "empty_policy": "skip",
        "enabled": True,
        "next_run_at": NOW,
        "created_by": "1",
        "created_at": NOW,
        "updated_at": NOW,
    }
    return ScheduleView(**(fields | values))


def test_schedule_list_fits_even_when_long() -> None:
    items = [
        schedule(
            channel_id=str(100 + n),
            spec="daily 09:00 Europe/Berlin " + "x" * 300,
            timezone="Europe/Berlin",
            destination={"kind": "channel", "channel_id": str(200 + n)}
            if n % 2
            else {"kind": "webhook", "endpoint_id": "e"},
            enabled=n % 3 != 0,
        )
        for n in range(30)
    ]
    embed = schedule_list_embed(items)
    within_limits(embed)
    first, second = str(embed.fields[0].value), str(embed.fields[1].value)
    assert "paused" in first and "webhook endpoint" in first
    assert "<#201>" in second
    assert "No digests yet" in (schedule_list_embed([]).description or "")


def test_schedule_list_shows_a_scoped_digest_and_what_it_left_out() -> None:
    def item(
        scope: str, left_out: list[LeftOutChannel] | None = None, **values: Any
    ) -> ScheduleView:
        last_run = LastRun(
            window_start=NOW - timedelta(days=1),
            window_end=NOW,
            job_id=None,
            status=None,
            left_out=left_out or [],
        )
        return schedule(scope=scope, last_run=last_run, **values)

    staff = LeftOutChannel("7", "staff-only", "3 of the 40 members who can see #general cannot")
    many = [LeftOutChannel(str(n), f"room-{n}", "bot cannot read it") for n in range(8)]
    embed = schedule_list_embed(
        [
            item("server", left_out=[staff]),
            item("category", category_id="5", left_out=many),
            item("channels", channel_ids=("8", "9")),
            item("channel"),
        ]
    )
    within_limits(embed)
    server, category, listed, single = (str(f.value) for f in embed.fields)
    assert server.startswith("the whole server → <#100>")
    assert f"left out last time: #staff-only ({staff.reason})" in server
    assert category.startswith("category <#5> → <#100>")
    assert category.count("left out last time") == LEFT_OUT_SHOWN
    assert "and 3 more left out" in category
    assert listed.startswith("<#8> <#9> → <#100>") and "left out" not in listed
    assert single.startswith("<#100> → <#100>") and "left out" not in single


def test_schedule_list_names_every_digest_of_a_full_server() -> None:
    """A server at the cap, each digest with a long schedule and channels left out: the list
    may shorten the details but must name every digest, or managers cannot find the ids to
    pause or delete the ones it drops."""
    reasons = [
        LeftOutChannel(str(n), f"private-room-{n}", "12 of the 40 members who can see it cannot")
        for n in range(5)
    ]
    listed = tuple(str(300_000_000_000_000_000 + n) for n in range(50))
    items = [
        schedule(
            scope="channels" if n % 2 else "server",
            channel_ids=listed if n % 2 else (),
            channel_id=str(100 + n),
            destination={"kind": "channel", "channel_id": str(100 + n)},
            spec="cron " + ",".join(str(m) for m in range(0, 60, 5)) + " * * * * " + "y" * 150,
            last_run=LastRun(
                window_start=NOW - timedelta(days=1),
                window_end=NOW,
                job_id=None,
                status=None,
                left_out=reasons,
            ),
        )
        for n in range(25)
    ]
    embed = schedule_list_embed(items)
    within_limits(embed)
    shown = " ".join(str(f.name) for f in embed.fields)
    assert all(item.short_id in shown for item in items)
    assert all("left out" in str(f.value) for f in embed.fields)
