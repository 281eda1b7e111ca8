"""Per-guild monthly token budgets, enforced before a job spends anything.

A job's tokens are estimated from its plan (:func:`estimate_job`): every map call's prompt is
counted exactly (transcript plus the prompt and schema around it); completions are expected to
use half their allowance; the reduce steps are estimated from the size notes usually have.  The
budget check (:func:`check_budget`) compares that with what the guild has left this calendar
month (UTC): its ``usage_ledger`` rows, plus what other jobs of the guild that are still being
summarized have planned but not yet spent.  The guild's settings row is locked for the check,
so two jobs starting at once cannot both take the last of the budget.
"""

from __future__ import annotations

import functools
import math
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import case, func, select
from sqlalchemy.orm import Session

from schema.models.chunks import SummaryPlan
from schema.models.jobs import Job, JobStatus
from schema.models.tenancy import GuildSettings
from schema.models.usage import UsageLedger
from shared.domain.messages import ChannelInfo
from shared.errors import PermanentError
from shared.llm.config import LLMSettings
from shared.llm.tokens import estimate_prompt_tokens
from shared.summarize.llm import prompts

__all__ = [
    "EXPECTED_COMPLETION_RATIO",
    "BudgetExceededError",
    "BudgetStatus",
    "TokenEstimate",
    "check_budget",
    "estimate_job",
    "month_start",
    "step_overhead",
]

#: Share of a completion allowance a call is expected to use.
EXPECTED_COMPLETION_RATIO = 0.5


class BudgetExceededError(PermanentError):
    """The job would take the guild over its monthly token budget."""


@dataclass(frozen=True, slots=True)
class TokenEstimate:
    """Tokens a job is expected to spend, before it runs."""

    calls: int
    prompt_tokens: int
    completion_tokens: int
    max_completion_tokens: int

    @property
    def total(self) -> int:
        """Expected prompt plus completion tokens (what the budget is checked against)."""
        return self.prompt_tokens + self.completion_tokens


@functools.lru_cache(maxsize=512)
def step_overhead(kind: str, channel: ChannelInfo, *, encoding: str) -> int:
    """Prompt tokens of a ``map`` or ``reduce`` call besides its data (prompt, schema).

    Memoised: tokenizing the prompt and schema took about a third of a one-call summarize
    task's CPU, and the answer depends only on the arguments (prompts are code constants).
    """
    if kind == "map":
        messages = prompts.map_messages("", channel=channel)
        schema = prompts.NOTES_SCHEMA
    else:
        messages = prompts.final_messages(
            channel=channel, options=prompts.PromptOptions(), notes=[]
        )
        schema = prompts.final_schema(prompts.PromptOptions().format)
    response_format = {"type": "json_schema", "json_schema": {"name": kind, "schema": schema}}
    return estimate_prompt_tokens(messages, encoding=encoding, response_format=response_format)


def estimate_job(
    *,
    uncached_chunk_tokens: Sequence[int],
    total_chunks: int,
    channel: ChannelInfo,
    settings: LLMSettings,
    encoding: str,
) -> TokenEstimate:
    """Expected tokens of a map/reduce job whose uncached chunks have these token counts.

    Notes of a chunk are taken as half the map allowance; merges happen while the notes exceed
    ``reduce_input_tokens``, each merge producing half the final allowance.
    """
    map_fixed = step_overhead("map", channel, encoding=encoding)
    reduce_fixed = step_overhead("reduce", channel, encoding=encoding)
    calls = len(uncached_chunk_tokens)
    prompt = sum(uncached_chunk_tokens) + map_fixed * calls
    max_out = settings.map_output_tokens * calls
    notes = total_chunks * settings.map_output_tokens // 2
    levels = 0
    while notes > settings.reduce_input_tokens and levels < settings.max_reduce_levels:
        merges = math.ceil(notes / settings.reduce_input_tokens)
        prompt += notes + reduce_fixed * merges
        max_out += settings.max_output_tokens * merges
        calls += merges
        notes = merges * settings.max_output_tokens // 2
        levels += 1
    prompt += notes + reduce_fixed
    max_out += settings.max_output_tokens
    calls += 1
    return TokenEstimate(
        calls=calls,
        prompt_tokens=prompt,
        completion_tokens=math.ceil(max_out * EXPECTED_COMPLETION_RATIO),
        max_completion_tokens=max_out,
    )


def month_start(now: datetime) -> datetime:
    """Midnight UTC of the first day of ``now``'s month."""
    moment = now.astimezone(UTC)
    return moment.replace(day=1, hour=0, minute=0, second=0, microsecond=0)


@dataclass(frozen=True, slots=True)
class BudgetStatus:
    """A guild's monthly budget (None: unlimited), spent and reserved tokens."""

    limit: int | None
    spent: int
    reserved: int

    @property
    def remaining(self) -> int | None:
        """Tokens left this month, or None without a budget."""
        if self.limit is None:
            return None
        return max(0, self.limit - self.spent - self.reserved)

    def allows(self, tokens: int) -> bool:
        """True when ``tokens`` more fit the budget."""
        remaining = self.remaining
        return remaining is None or tokens <= remaining

    def explain(self, tokens: int) -> str:
        """The reason a user reads when a job does not fit."""
        return (
            f"this summary needs about {tokens:,} tokens but the server has "
            f"{self.remaining or 0:,} of its monthly budget of {self.limit or 0:,} tokens left "
            f"({self.spent:,} spent this month"
            + (f", {self.reserved:,} reserved by running summaries" if self.reserved else "")
            + "); summarize a shorter window or ask an admin to raise the budget"
        )


def check_budget(
    session: Session, *, guild_id: str | None, job_id: uuid.UUID, now: datetime
) -> BudgetStatus:
    """The budget of ``guild_id`` as seen by job ``job_id``; call inside a transaction.

    Locks the guild's settings row until the transaction ends, so the caller can record its
    own reservation (its plan) before another job checks.
    """
    if guild_id is None:
        return BudgetStatus(limit=None, spent=0, reserved=0)
    row = session.get(GuildSettings, guild_id, with_for_update=True)
    if row is None or row.monthly_token_budget is None:
        return BudgetStatus(limit=None, spent=0, reserved=0)
    tokens = UsageLedger.prompt_tokens + UsageLedger.completion_tokens
    spent = session.scalar(
        select(func.coalesce(func.sum(tokens), 0)).where(
            UsageLedger.guild_id == guild_id, UsageLedger.created_at >= month_start(now)
        )
    )
    per_job = (
        select(UsageLedger.job_id, func.sum(tokens).label("spent"))
        .group_by(UsageLedger.job_id)
        .subquery()
    )
    outstanding = SummaryPlan.estimated_tokens - func.coalesce(per_job.c.spent, 0)
    reserved = session.scalar(
        select(func.coalesce(func.sum(case((outstanding > 0, outstanding), else_=0)), 0))
        .select_from(SummaryPlan)
        .join(Job, Job.id == SummaryPlan.job_id)
        .outerjoin(per_job, per_job.c.job_id == SummaryPlan.job_id)
        .where(
            Job.guild_id == guild_id,
            Job.status == JobStatus.SUMMARIZING.value,
            Job.id != job_id,
        )
    )
    return BudgetStatus(
        limit=int(row.monthly_token_budget), spent=int(spent or 0), reserved=int(reserved or 0)
    )
