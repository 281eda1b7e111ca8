"""Show a job's progress by editing the interaction's reply as its stages finish.

The bot does not listen to Celery: one poller task reads the ``jobs`` rows of every request it
is following in a single query every few seconds and edits a reply only when what it shows has
changed (stage, fetched count, error).  The job row is the source of truth, so this works
whichever worker runs the job and survives broker restarts; a bot restart only stops the
updates (the summary itself is delivered by the deliver stage regardless).

When the summary itself is delivered into the interaction's reply (the default for
``/summarize``), the poller stops editing as soon as the job reaches the summarize stage, so it
never overwrites the summary; only a failure is still shown.  A job can get there between the
poller's read and its edit, so such a reply is edited only under its fence
(:mod:`shared.delivery.reply_fence`, which the deliver stage holds while it writes the summary),
with the job's status read again under it.

An interaction token lives 15 minutes.  A request still running near the end of that time gets
a last edit saying where to follow it (``/summary-status``) and is dropped; the deliver stage
posts the summary to the channel instead of the expired interaction.
"""

from __future__ import annotations

import asyncio
import dataclasses
import uuid
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import discord
import structlog

from producers.bot.responses import RequestSummary, status_embed
from schema.models.jobs import JobStatus
from shared.job_view import JobView
from shared.lifecycle import FINISHED

__all__ = ["Hold", "Holder", "ProgressTracker", "Tracked"]

log = structlog.get_logger(__name__)

Loader = Callable[[Iterable[uuid.UUID]], Awaitable[dict[uuid.UUID, JobView]]]
#: Takes the fence of a job's reply if it is free (:meth:`ReplyFence.try_hold` in a thread):
#: the job's status read under it, and how to let it go; None while the deliver stage holds it.
Holder = Callable[[uuid.UUID], Awaitable["Hold | None"]]
CostRefresher = Callable[[int], str]

# From these on, a summary may be (or have been) written into the interaction's reply.
_DELIVERED_HERE = (
    JobStatus.SUMMARIZING,
    JobStatus.DELIVERING,
    JobStatus.COMPLETED,
    JobStatus.COMPLETED_WITH_ERRORS,
)


@dataclass
class Hold:
    """The fence of one reply, held: the job's status read under it, and its release."""

    status: str | None
    release: Callable[[], Awaitable[None]]


@dataclass
class Tracked:
    """One request being followed: its interaction, what the reply shows, when to stop."""

    interaction: discord.Interaction
    request: RequestSummary
    expires_at: datetime
    refresh_cost: CostRefresher | None = None
    hands_off: bool = False
    shown: tuple[object, ...] | None = field(default=None)
    counted: bool = False


def _state(job: JobView) -> tuple[object, ...]:
    return (
        job.status,
        job.progress.get("messages_fetched"),
        job.progress.get("messages_total"),
        job.message_count,
        job.error,
    )


def _count(job: JobView) -> int | None:
    if job.message_count is not None:
        return job.message_count
    total = job.progress.get("messages_total")
    if isinstance(total, int) and job.status is not JobStatus.FETCHING:
        return total
    return None


class ProgressTracker:
    """Follows requests and edits their replies (see module docstring)."""

    def __init__(
        self,
        load: Loader,
        *,
        interval: float,
        token_lifetime: float,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        hold: Holder | None = None,
    ) -> None:
        self._load = load
        self._hold = hold
        self._interval = interval
        self._lifetime = timedelta(seconds=token_lifetime)
        self._clock = clock
        self._tracked: dict[uuid.UUID, Tracked] = {}
        self._wake = asyncio.Event()

    def __len__(self) -> int:
        return len(self._tracked)

    def __contains__(self, job_id: object) -> bool:
        return job_id in self._tracked

    def track(
        self,
        interaction: discord.Interaction,
        request: RequestSummary,
        *,
        refresh_cost: CostRefresher | None = None,
        hands_off: bool = False,
    ) -> None:
        """Follow ``request``'s job, editing ``interaction``'s reply until it ends.

        ``hands_off``: the deliver stage writes the summary into this reply, so it is left
        alone from the moment the job reaches the summarize stage (a failure is still shown).
        """
        self._tracked[request.job_id] = Tracked(
            interaction=interaction,
            request=request,
            expires_at=interaction.created_at + self._lifetime,
            refresh_cost=refresh_cost,
            hands_off=hands_off,
        )
        self._wake.set()

    async def poll_once(self) -> None:
        """Read every followed job once and edit the replies whose state changed."""
        if not self._tracked:
            return
        jobs = await self._load(list(self._tracked))
        now = self._clock()
        for job_id, item in list(self._tracked.items()):
            job = jobs.get(job_id)
            if job is None:
                continue
            if not item.counted and (count := _count(job)) is not None:
                item.counted = True
                cost = item.refresh_cost(count) if item.refresh_cost else item.request.cost
                item.request = dataclasses.replace(item.request, messages=str(count), cost=cost)
                item.shown = None
            if item.hands_off and job.status in _DELIVERED_HERE:
                if job.status in _DELIVERED_HERE[2:] or now >= item.expires_at:
                    self._tracked.pop(job_id, None)
                continue
            finished = job.status in FINISHED
            expiring = not finished and now >= item.expires_at
            state = _state(job)
            if state == item.shown and not expiring:
                continue
            embed = status_embed(item.request, job)
            if expiring:
                embed.add_field(
                    name="Updates",
                    value=(
                        "This reply stops updating (Discord's 15-minute limit). Follow the job "
                        f"with `/summary-status job:{job_id.hex[:8]}`; the summary is still "
                        "delivered."
                    ),
                    inline=False,
                )
            edited = await self._edit_fenced(job_id, item, embed)
            if edited is None:
                continue
            if not edited:
                self._tracked.pop(job_id, None)
                continue
            item.shown = state
            if finished or expiring:
                self._tracked.pop(job_id, None)

    async def _edit_fenced(
        self, job_id: uuid.UUID, item: Tracked, embed: discord.Embed
    ) -> bool | None:
        """:meth:`_edit` a reply the deliver stage may write the summary into only under its
        fence, and only if the job has not reached the summarize stage since it was read;
        None when the edit was left out (the reply is the deliver stage's now, or soon)."""
        if not item.hands_off or self._hold is None:
            return await self._edit(item, embed)
        held = await self._hold(job_id)
        if held is None:
            return None  # the deliver stage is writing the summary
        try:
            if held.status in _DELIVERED_HERE:
                return None
            return await self._edit(item, embed)
        finally:
            await held.release()

    async def _edit(self, item: Tracked, embed: discord.Embed) -> bool:
        try:
            await item.interaction.edit_original_response(embed=embed)
        except discord.NotFound:
            log.info("progress.reply_gone", job_id=str(item.request.job_id))
            return False
        except discord.HTTPException as exc:
            log.warning(
                "progress.edit_failed",
                job_id=str(item.request.job_id),
                status=exc.status,
                code=exc.code,
            )
            # Expired or invalid token: nothing more can be shown through this interaction.
            return exc.status not in (401, 403, 404)
        return True

    async def run(self) -> None:
        """Poll until cancelled; sleeps while nothing is followed."""
        while True:
            if not self._tracked:
                self._wake.clear()
                await self._wake.wait()
            try:
                await self.poll_once()
            except Exception:
                # A database hiccup must not end the poller; the next round retries.
                log.exception("progress.poll_failed")
            await asyncio.sleep(self._interval)
