"""Embeds the bot replies with, always within Discord's limits.

Limits (inclusive): title 256, description 4096, 25 fields, field name 256 and value 1024,
footer 2048, and 6000 characters over all of them; :func:`fit` enforces them on every embed
built here, so a long channel list or error text is clipped instead of making Discord answer
400.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import discord

from producers.bot.store import GuildConfig
from schema.models.jobs import JobStatus
from shared.job_view import JobView
from shared.services.schedules import ScheduleView

__all__ = [
    "EMBED_TOTAL",
    "RequestSummary",
    "config_embed",
    "fit",
    "job_list_embed",
    "schedule_list_embed",
    "status_embed",
]

TITLE, DESCRIPTION, FIELDS, FIELD_NAME, FIELD_VALUE, FOOTER = 256, 4096, 25, 256, 1024, 2048
EMBED_TOTAL = 6000

BLURPLE = 0x5865F2
GREEN = 0x57F287
RED = 0xED4245
GREY = 0x99AAB5

_STAGES = (
    (JobStatus.QUEUED, "Queued"),
    (JobStatus.FETCHING, "Reading messages"),
    (JobStatus.SUMMARIZING, "Summarizing"),
    (JobStatus.DELIVERING, "Delivering"),
)
_ORDER = {status: n for n, (status, _) in enumerate(_STAGES)} | {JobStatus.COMPLETED: len(_STAGES)}


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def fit(embed: discord.Embed) -> discord.Embed:
    """Clip every part of ``embed`` to its limit and the whole to 6000 characters."""
    if embed.title:
        embed.title = _clip(embed.title, TITLE)
    if embed.description:
        embed.description = _clip(embed.description, DESCRIPTION)
    fields = embed.fields[:FIELDS]
    embed.clear_fields()
    for item in fields:
        embed.add_field(
            name=_clip(item.name or "\u200b", FIELD_NAME),
            value=_clip(item.value or "\u200b", FIELD_VALUE),
            inline=bool(item.inline),
        )
    if embed.footer.text:
        embed.set_footer(text=_clip(embed.footer.text, FOOTER))
    excess = len(embed) - EMBED_TOTAL
    if excess > 0 and embed.description:
        embed.description = _clip(embed.description, max(1, len(embed.description) - excess))
        excess = len(embed) - EMBED_TOTAL
    while excess > 0 and embed.fields:
        embed.remove_field(len(embed.fields) - 1)
        excess = len(embed) - EMBED_TOTAL
    return embed


def _ts(moment: datetime, style: str = "R") -> str:
    return f"<t:{int(moment.timestamp())}:{style}>"


@dataclass(frozen=True)
class RequestSummary:
    """What the first reply states about a request; progress edits keep it and add the job."""

    job_id: uuid.UUID
    source: str
    window: str
    destination: str
    messages: str
    cost: str
    ready_at: datetime
    private: bool = False


def _progress(job: JobView | None) -> str:
    status = job.status if job else JobStatus.QUEUED
    reached = _ORDER.get(status, -1)
    lines = []
    for n, (stage, label) in enumerate(_STAGES):
        if status in (JobStatus.FAILED, JobStatus.CANCELLED) or n > reached:
            mark = "▫️"
        elif n < reached:
            mark = "✅"
        else:
            mark = "⏳"
        detail = ""
        if job is not None and stage is JobStatus.FETCHING and n <= reached:
            fetched = job.progress.get("messages_fetched")
            total = job.progress.get("messages_total")
            if fetched is not None and total:
                detail = f" ({fetched}/{total})"
            elif fetched is not None:
                detail = f" ({fetched})"
        lines.append(f"{mark} {label}{detail}")
    if status is JobStatus.COMPLETED:
        lines.append("✅ Done")
    elif status is JobStatus.FAILED:
        lines.append("❌ Failed")
    elif status is JobStatus.CANCELLED:
        lines.append("⏹️ Cancelled")
    return "\n".join(lines)


def status_embed(request: RequestSummary, job: JobView | None) -> discord.Embed:
    """The request's status: window, where it goes, messages, cost, ETA and progress."""
    status = job.status if job else JobStatus.QUEUED
    if status is JobStatus.COMPLETED:
        title, colour = "Summary ready", GREEN
    elif status is JobStatus.FAILED:
        title, colour = "Summary failed", RED
    elif status is JobStatus.CANCELLED:
        title, colour = "Summary cancelled", GREY
    else:
        title, colour = "Summarizing…", BLURPLE
    embed = discord.Embed(
        title=title,
        colour=colour,
        description=f"{request.window} of {request.source} → {request.destination}",
    )
    embed.add_field(name="Job", value=f"`{request.job_id}`", inline=False)
    embed.add_field(name="Messages", value=request.messages, inline=True)
    embed.add_field(name="Cost", value=request.cost, inline=True)
    if job is not None and job.finished_at is not None:
        embed.add_field(name="Finished", value=_ts(job.finished_at), inline=True)
    else:
        embed.add_field(name="Ready", value=_ts(request.ready_at), inline=True)
    embed.add_field(name="Progress", value=_progress(job), inline=False)
    if job is not None and job.error:
        embed.add_field(name="Why", value=job.error, inline=False)
    embed.set_footer(text=f"/summary-status job:{request.job_id.hex[:8]}")
    return fit(embed)


def job_list_embed(jobs: Sequence[JobView], *, title: str) -> discord.Embed:
    """Recent jobs, newest first, one field each."""
    embed = discord.Embed(title=title, colour=BLURPLE)
    if not jobs:
        embed.description = "No summaries yet. Start one with /summarize."
    for job in jobs[:10]:
        parts = [f"**{job.status.value}**"]
        if job.channel_id:
            parts.append(f"<#{job.channel_id}>")
        parts.append(f"asked {_ts(job.created_at)}")
        count = job.message_count or job.progress.get("messages_fetched")
        if count is not None:
            parts.append(f"{count} messages")
        value = " · ".join(parts)
        if job.error:
            value += f"\n{job.error}"
        embed.add_field(name=f"Job {job.id.hex[:8]}", value=value, inline=False)
    return fit(embed)


def _names(ids: frozenset[int], prefix: str) -> str:
    return ", ".join(f"<{prefix}{i}>" for i in sorted(ids)) or "none"


def config_embed(config: GuildConfig, *, limits: str, llm: str) -> discord.Embed:
    """``/summary-config show``."""
    embed = discord.Embed(title="Summary settings", colour=BLURPLE)
    embed.add_field(name="Default format", value=config.default_format.value, inline=True)
    embed.add_field(
        name="Default language", value=config.default_language or "as written", inline=True
    )
    embed.add_field(name="Retention", value=f"{config.retention_days} days", inline=True)
    embed.add_field(
        name="Allowed roles",
        value=_names(config.allowed_role_ids, "@&") if config.allowed_role_ids else "everyone",
        inline=False,
    )
    embed.add_field(
        name="Excluded channels", value=_names(config.excluded_channel_ids, "#"), inline=False
    )
    budget = config.monthly_token_budget
    embed.add_field(
        name="Monthly token budget",
        value=f"{budget:,} tokens" if budget is not None else "none",
        inline=True,
    )
    embed.add_field(name="Reaction trigger", value=config.reaction_emoji or "off", inline=True)
    embed.add_field(name="Private channels", value=config.private_channel_policy.value, inline=True)
    embed.add_field(name="Limits", value=limits, inline=False)
    embed.add_field(name="Summarizer", value=llm, inline=False)
    return fit(embed)


def _destination_text(destination: dict[str, object]) -> str:
    kind = destination.get("kind")
    if kind == "channel" and destination.get("channel_id"):
        return f"<#{destination['channel_id']}>"
    if kind == "webhook":
        return f"webhook endpoint `{destination.get('endpoint_id')}`"
    return str(kind)


#: Left-out channels named per digest in ``/digest list`` (the API lists them all).
LEFT_OUT_SHOWN = 5


def schedule_covers(item: ScheduleView) -> str:
    """What a digest summarizes, e.g. ``<#1>``, ``the whole server`` or ``category <#2>``."""
    if item.scope == "server":
        return "the whole server"
    if item.scope == "category":
        return f"category <#{item.category_id}>"
    if item.scope == "channels":
        return " ".join(f"<#{c}>" for c in item.channel_ids)
    return f"<#{item.channel_id}>"


def _left_out_lines(item: ScheduleView, *, brief: bool = False) -> list[str]:
    if brief and item.left_out:
        count = len(item.left_out)
        return [f"left out last time: {count} channel{'s' if count != 1 else ''}"]
    lines = [
        f"left out last time: #{entry.name} ({entry.reason})"
        for entry in item.left_out[:LEFT_OUT_SHOWN]
    ]
    if len(item.left_out) > LEFT_OUT_SHOWN:
        lines.append(f"and {len(item.left_out) - LEFT_OUT_SHOWN} more left out")
    return lines


#: How much of a digest's schedule text the shortened list shows.
_BRIEF_SPEC = 60


def schedule_list_embed(schedules: Sequence[ScheduleView]) -> discord.Embed:
    """``/digest list``, for the members who manage digests (an ephemeral answer): each
    digest with what it covers, and what its latest digest left out and why.

    When that is longer than an embed may be, the schedule texts are shortened and the
    left-out channels counted rather than named, so that every digest (and its id, which
    /digest pause and delete take) is still listed.
    """
    embed = _schedule_list(schedules, brief=False)
    if len(embed) > EMBED_TOTAL or any(len(f.value or "") > FIELD_VALUE for f in embed.fields):
        embed = _schedule_list(schedules, brief=True)
    return fit(embed)


def _schedule_list(schedules: Sequence[ScheduleView], *, brief: bool) -> discord.Embed:
    embed = discord.Embed(title="Digests", colour=BLURPLE)
    if not schedules:
        embed.description = "No digests yet. Create one with /digest create."
    for item in schedules[:FIELDS]:
        state = (
            f"next {_ts(item.next_run_at)}"
            if item.enabled and item.next_run_at is not None
            else "paused"
        )
        spec = _clip(item.spec, _BRIEF_SPEC) if brief else item.spec
        covers = schedule_covers(item)
        if brief and item.scope == "channels" and len(item.channel_ids) > 1:
            covers = f"{len(item.channel_ids)} listed channels"
        embed.add_field(
            name=f"{item.short_id} · {spec}",
            value="\n".join(
                [
                    f"{covers} → {_destination_text(item.destination)} · {item.format} · {state}",
                    *_left_out_lines(item, brief=brief),
                ]
            ),
            inline=False,
        )
    if len(schedules) > FIELDS:
        embed.set_footer(text=f"{len(schedules) - FIELDS} more not shown")
    return embed
