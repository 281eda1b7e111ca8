"""One summary request, from any front door (slash command, message command, reaction).

:func:`request_summary` authorizes, applies cooldowns, quotas and the token budget, estimates
size, cost and time, and submits the job through :func:`shared.services.jobs.submit_job`.  It never
fetches messages or calls an LLM, and it never talks to Discord: the caller acknowledged the
interaction before calling it and shows what it returns.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime

import discord
import structlog

from producers.bot.activity import WindowCount
from producers.bot.authorize import AccessRequest, PermissionHints, Refusal, authorize_summary
from producers.bot.destinations import ReplyPlan, to_destinations
from producers.bot.limits import OverLimit
from producers.bot.parsing import Window
from producers.bot.responses import RequestSummary
from producers.bot.runtime import BotRuntime
from producers.bot.snapshots import channel_view, guild_view, member_view
from producers.bot.store import GuildConfig, tokens_used_this_month
from shared.errors import PipelineError
from shared.jobs import HeldEnqueuer, JobParams
from shared.services.core import Actor
from shared.services.jobs import submit_job
from shared.summarize.content import SummaryFormat

__all__ = [
    "BOT_ORIGIN",
    "Accepted",
    "SummaryAsk",
    "refusal_text",
    "request_summary",
]

log = structlog.get_logger(__name__)

#: ``jobs.origin`` of jobs the bot submits.
BOT_ORIGIN = "bot"

GuildChannel = discord.abc.GuildChannel | discord.Thread


@dataclass(frozen=True)
class SummaryAsk:
    """A member's request, resolved against the bot's cache.

    ``reply_channel`` is where the member asked (where an interaction reply is seen);
    ``hints`` are permissions Discord computed (see :class:`AccessRequest`).
    """

    guild: discord.Guild
    member: discord.Member
    source: GuildChannel
    window: Window
    reply: ReplyPlan
    idempotency_key: str
    format: SummaryFormat | None = None
    language: str | None = None
    reply_channel: GuildChannel | None = None
    destination: GuildChannel | None = None
    hints: PermissionHints = field(default_factory=PermissionHints)
    thread_member: bool | None = None


@dataclass(frozen=True)
class Accepted:
    """A submitted request: the job, what the first reply shows, and its held publication.

    Call :meth:`publish` once the first reply is shown (or could not be).
    """

    summary: RequestSummary
    created: bool
    held: HeldEnqueuer

    async def publish(self, runtime: BotRuntime) -> None:
        """Publish the job's first stage (in a thread: it talks to the broker)."""
        await runtime.db(self.held.release)


async def _count(runtime: BotRuntime, ask: SummaryAsk, now: datetime) -> WindowCount | None:
    if ask.window.kind == "messages":
        assert ask.window.messages is not None
        return WindowCount(ask.window.messages, bound="at_most")
    start = ask.window.start(now)
    if start is None:  # pragma: no cover - only message windows have no start
        return None
    return await runtime.activity.count_since(ask.source.id, start, now)


def check_access(
    member: discord.Member,
    source: GuildChannel,
    config: GuildConfig,
    *,
    destination: GuildChannel | None = None,
    reply_channel: GuildChannel | None = None,
    private: bool = False,
    external: bool = False,
    hints: PermissionHints | None = None,
    thread_member: bool | None = None,
) -> Refusal | None:
    """Whether ``member`` may have ``source`` summarized where it is going, and the bot may
    read and post it: the bot's one permission check, for a summary and a digest alike.

    A thread whose parent the bot has not cached is refused (nothing is known of its
    overwrites); the bot's own membership of a thread counts as Discord counts it.
    """
    try:
        source_view = channel_view(source)
        destination_view = channel_view(destination) if destination else None
        reply_view = channel_view(reply_channel) if reply_channel else None
    except ValueError as exc:
        return Refusal("bot", str(exc))
    guild = member.guild
    return authorize_summary(
        AccessRequest(
            guild=guild_view(guild),
            member=member_view(member, thread_member=thread_member),
            bot=member_view(guild.me, thread_member=_bot_joined(source)),
            source=source_view,
            config=config,
            destination=destination_view,
            reply_channel=reply_view,
            private=private,
            external=external,
            hints=hints or PermissionHints(),
        )
    )


async def request_summary(runtime: BotRuntime, ask: SummaryAsk) -> Accepted | Refusal:
    """Authorize and submit ``ask`` (see module docstring)."""
    guild = ask.guild
    config = await runtime.configs.get(guild.id)
    refusal = check_access(
        ask.member,
        ask.source,
        config,
        destination=ask.destination,
        reply_channel=ask.reply_channel,
        private=ask.reply.private,
        hints=ask.hints,
        thread_member=ask.thread_member,
    )
    if refusal is not None:
        return refusal
    outcome = await runtime.limiter.run(
        guild_id=guild.id,
        user_id=ask.member.id,
        submit=lambda: _submit(runtime, ask, config),
        started=lambda done: isinstance(done, Accepted) and done.created,
    )
    if isinstance(outcome, OverLimit):
        return Refusal("policy", outcome.message)
    return outcome


def _bot_joined(channel: GuildChannel) -> bool | None:
    if isinstance(channel, discord.Thread):
        return channel.me is not None
    return None


async def _submit(runtime: BotRuntime, ask: SummaryAsk, config: GuildConfig) -> Accepted | Refusal:
    now = runtime.clock()
    budget = config.monthly_token_budget
    counted = await _count(runtime, ask, now)
    cost = runtime.cost(counted.messages if counted else None)
    if budget is not None and runtime.llm_model is not None:
        used = await runtime.db(
            tokens_used_this_month, runtime.session_factory, guild_id=ask.guild.id, now=now
        )
        if used + cost.max_tokens > budget:
            return Refusal(
                "policy",
                f"This would exceed the server's monthly token budget: {used:,} of "
                f"{budget:,} tokens used, and this summary may take up to "
                f"{cost.max_tokens:,}. Try a shorter window.",
            )
    params = JobParams(
        source=ask.window.to_source(guild_id=ask.guild.id, channel_id=ask.source.id, now=now),
        format=ask.format or config.default_format,
        language=ask.language or config.default_language,
        destinations=to_destinations(ask.reply, runtime.box),
    )
    held = HeldEnqueuer(runtime.enqueuer)
    # The channels and the member the interaction resolved are facts Discord sent: the
    # boundary check needs no REST call for them.
    directory = runtime.directory.knowing(
        [ask.source, ask.destination, ask.reply_channel], [ask.member]
    )
    core = replace(runtime.core(), enqueuer=held, directory=directory)
    actor = Actor(origin=BOT_ORIGIN, guild_id=str(ask.guild.id), requested_by=str(ask.member.id))
    submission = await runtime.db(
        submit_job, core, actor, params, idempotency_key=ask.idempotency_key
    )
    eta = await runtime.eta.get()
    log.info(
        "bot.job_submitted",
        job_id=str(submission.job_id),
        guild_id=str(ask.guild.id),
        channel_id=str(ask.source.id),
        window=ask.window.kind,
        created=submission.created,
    )
    summary = RequestSummary(
        job_id=submission.job_id,
        source=ask.source.mention,
        window=_sentence(ask.window.describe()),
        destination=ask.reply.describe(),
        messages=counted.describe() if counted else "counted when read",
        cost=cost.text,
        ready_at=eta.ready_at(now, counted.messages if counted else None),
        private=ask.reply.private,
    )
    return Accepted(summary=summary, created=submission.created, held=held)


def _sentence(text: str) -> str:
    return text[:1].upper() + text[1:]


def refusal_text(refusal: Refusal | PipelineError) -> str:
    """What to tell the member."""
    if isinstance(refusal, PipelineError):
        return f"⛔ {refusal.user_message}"
    return f"⛔ {refusal.message}"
