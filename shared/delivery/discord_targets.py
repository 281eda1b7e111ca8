"""Send a claimed item to a Discord target: channel, new thread, DM, Discord webhook, followup.

A summary may need several messages.  Each part is sent, then recorded in the item's progress
(with the lease extended), so a retry resumes after the last recorded part.  Parts created with
the bot's token carry ``nonce`` + ``enforce_nonce`` (derived from the item id and part number),
so a part that was created but not yet recorded when a worker died is not posted again either.
The thread target posts its first part in the channel and starts the thread *from* that message:
a message has at most one thread, so a retried creation finds the thread instead of making a
second one.

Discord webhooks and interaction followups accept no nonce.  When such a part's outcome is in
doubt (Discord took the request but no answer came back, or the worker sending it stopped and
its lease ran out), the item's progress says so (``in_doubt``), and the next attempt first
reads the channel for that part (the webhook's, or the interaction's, messages since the
send): found, it is recorded as sent; not there, it is sent.  When the bot cannot read the
channel (or the followup is ephemeral) the part is not sent again: the delivery fails, saying
why, rather than risk posting the summary twice (celery.md, "Discord webhooks have no
idempotency nonce").
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

import structlog
from pydantic import SecretStr

from shared.crypto import SecretBox
from shared.delivery.discord_render import render_messages, short_text
from shared.delivery.events import JOB_FAILED
from shared.delivery.guard import refusal
from shared.delivery.outbox import Claim, Outcome
from shared.delivery.targets import (
    ChannelTarget,
    DirectMessageTarget,
    DiscordWebhookTarget,
    InteractionFollowupTarget,
    ThreadTarget,
)
from shared.discord.client import DiscordClient
from shared.discord.errors import BadRequest, DiscordPermanentError, NetworkError, ServerError
from shared.discord.history import time_snowflake
from shared.discord.models import AllowedMentions, Embed, Message, MessageEdit, MessageReference
from shared.discord.objects import WebhookRef
from shared.errors import ErrorKind, PermanentError, PipelineError, classify
from shared.summarize.content import SummaryContent
from shared.summarize.render import escape_markdown
from shared.tenancy import ChannelDirectory

__all__ = ["DISCORD_KINDS", "ProgressSaver", "nonce_prefix", "send_discord"]

log = structlog.get_logger(__name__)

DISCORD_KINDS = ("channel", "thread", "dm", "discord_webhook", "followup")
_THREAD_EXISTS = 160004
_FAILED_COLOUR = 0xED4245

#: ``saver(progress)`` records progress and extends the lease; False when the lease was lost.
ProgressSaver = Callable[[dict[str, Any]], bool]
#: Holds the fence of the job's interaction reply while the summary is written into it
#: (:class:`shared.delivery.reply_fence.ReplyFence`).
ReplyFenceFor = Callable[[], AbstractContextManager[object]]


class _LeaseLost(PipelineError):
    """Another worker took the item over; stop without recording anything."""


def nonce_prefix(item_id: Any) -> str:
    """22 characters of the item id: with a 3-digit part number, a 25-character nonce."""
    return str(getattr(item_id, "hex", item_id)).replace("-", "")[:22]


def _messages(claim: Claim) -> list[Message]:
    prefix = nonce_prefix(claim.id)
    if claim.event == JOB_FAILED:
        job = claim.job
        embed = Embed(
            title="A summary job failed",
            # The error quotes what others wrote; like a summary's text it may form no link.
            description=short_text(escape_markdown(job.error or "the job failed"), 4000),
            color=_FAILED_COLOUR,
            timestamp=job.finished_at,
        )
        return [
            Message(embeds=(embed,), allowed_mentions=AllowedMentions.none(), nonce=f"{prefix}000")
        ]
    summary = claim.summary
    assert summary is not None
    return render_messages(
        SummaryContent.model_validate(summary.content),
        nonce_prefix=prefix,
        duration_seconds=(summary.created_at - claim.job.created_at).total_seconds(),
    )


def _thread_name(target: ThreadTarget, claim: Claim, now: datetime) -> str:
    if target.name:
        return target.name
    channel = "channel"
    if claim.summary is not None:
        channel = str(claim.summary.content.get("coverage", {}).get("channel_name") or channel)
    return short_text(f"Summary of #{channel} · {now:%Y-%m-%d %H:%M}", 100)


#: Kinds whose messages carry no nonce, so that a repeated part would be posted twice.
_NO_NONCE = ("discord_webhook", "followup")
#: Messages read back, at most, when looking for a part whose outcome is in doubt.
_LOOKBACK = 100


class _Unverifiable(PermanentError):
    """A part may have been posted and the bot cannot check: it is not sent again."""


def _same(found: dict[str, Any], part: Message) -> bool:
    """True when the message ``found`` (Discord's JSON) is ``part`` as it was posted."""
    embeds = [(e.get("title"), e.get("description")) for e in found.get("embeds") or ()]
    return (found.get("content") or "") == (part.content or "") and embeds == [
        (e.title, e.description) for e in part.embeds
    ]


def _where_posted(client: DiscordClient, claim: Claim, box: SecretBox) -> tuple[str, str, str]:
    """(channel, metadata field, value) that mark the target's messages: the webhook's id,
    or the interaction's id in ``interaction_metadata``."""
    if claim.kind == "discord_webhook":
        hook = DiscordWebhookTarget.model_validate(claim.params)
        ref = WebhookRef(id=hook.webhook_id, token=SecretStr(box.decrypt(hook.token_encrypted)))
        return hook.thread_id or client.webhook_channel(ref), "webhook_id", hook.webhook_id
    followup = InteractionFollowupTarget.model_validate(claim.params)
    if followup.ephemeral:
        raise _Unverifiable("an ephemeral followup cannot be read back")
    token = SecretStr(box.decrypt(followup.token_encrypted))
    original = client.get_original_response(followup.application_id, token)
    return original.channel_id, "interaction_metadata", followup.interaction_id


def _find_posted(
    client: DiscordClient, claim: Claim, box: SecretBox, part: Message, since: datetime
) -> str | None:
    """The id of ``part`` if its channel shows it posted since ``since``; None if it does not.

    Raises :class:`_Unverifiable` when the channel cannot be read.
    """
    # A minute early: our clock and Discord's may differ.
    after = str(time_snowflake(since - timedelta(minutes=1)))
    try:
        channel, field, value = _where_posted(client, claim, box)
        page = client.get_messages(channel, limit=_LOOKBACK, after=after)
        # Discord answers a reader without Read Message History with an empty page, as it
        # answers one with nothing new: the channel's last message tells them apart.
        if not page and not client.get_messages(channel, limit=1):
            raise _Unverifiable("the bot sees no message there (no Read Message History?)")
    except DiscordPermanentError as exc:
        raise _Unverifiable(str(exc)) from exc

    def marked(found: dict[str, Any]) -> bool:
        mark = found.get(field)
        return str(mark.get("id") if isinstance(mark, dict) else mark) == value

    # Oldest first: the first copy is the one the failed attempt made.
    for found in sorted(page, key=lambda m: int(m["id"])):
        if marked(found) and _same(found, part):
            return str(found["id"])
    return None


def _send_parts(
    client: DiscordClient,
    claim: Claim,
    box: SecretBox,
    save: ProgressSaver,
    now: datetime,
    reply_fence: ReplyFenceFor,
) -> str:
    """Send every part not yet recorded; returns the remote id (first message, or thread)."""
    messages = _messages(claim)
    progress = dict(claim.progress)
    sent: list[str] = list(progress.get("sent") or [])

    def saved() -> None:
        if not save(progress):
            raise _LeaseLost("the lease on this delivery was lost mid-send")

    def record(message_id: str, **extra: Any) -> None:
        sent.append(message_id)
        progress.update(extra, sent=sent)
        # After the last part the outcome itself is recorded next (sent, with its id): saving
        # the progress first would be one more transaction for the same crash window.
        if len(sent) < len(messages):
            saved()

    in_doubt = progress.pop("in_doubt", None) if claim.kind in _NO_NONCE else None

    def settle_doubt(index: int) -> bool:
        """True when part ``index``, whose outcome was in doubt, turned out posted."""
        if not isinstance(in_doubt, dict) or in_doubt.get("part") != index:
            return False
        since = datetime.fromisoformat(str(in_doubt["since"]))
        try:
            found = _find_posted(client, claim, box, messages[index], since)
        except _Unverifiable as exc:
            raise _Unverifiable(
                f"part {index + 1} of {len(messages)} may already be posted (Discord did not "
                f"confirm it) and the bot cannot read the channel to check ({exc}); it was not "
                "sent again, so as not to post it twice. Look in the channel, and ask for the "
                "summary again if it is missing",
            ) from None
        log.info("deliver.in_doubt_settled", part=index, found=found is not None)
        if found is None:
            return False
        record(found)
        return True

    def send_rest(send: Callable[[int, Message], str]) -> str:
        """Send the parts not yet recorded with ``send(index, part)``, recording each id.

        Returns the first part's id: the remote id of every target but a new thread.
        """
        for index in range(len(sent), len(messages)):
            if settle_doubt(index):
                continue
            try:
                message_id = send(index, messages[index])
            except (ServerError, NetworkError) as exc:
                if claim.kind in _NO_NONCE and exc.maybe_done:
                    progress["in_doubt"] = {"part": index, "since": now.isoformat()}
                    saved()
                raise
            record(message_id)
        return sent[0]

    kind = claim.kind
    if kind == "channel":
        channel = ChannelTarget.model_validate(claim.params)
        # The first part answers the message that asked (the reaction trigger), even if it
        # has been deleted since.
        reply = (
            None
            if channel.reply_to is None
            else MessageReference(channel.reply_to, channel_id=channel.channel_id)
        )

        def to_channel(index: int, part: Message) -> str:
            if index == 0 and reply is not None:
                part = replace(part, reply_to=reply)
            return client.send_message(channel.channel_id, part).id

        return send_rest(to_channel)
    if kind == "thread":
        thread = ThreadTarget.model_validate(claim.params)
        if not sent:
            record(client.send_message(thread.channel_id, messages[0]).id)
        thread_id = progress.get("thread_id")
        if thread_id is None:
            try:
                thread_id = client.create_thread(
                    thread.channel_id,
                    _thread_name(thread, claim, now),
                    message_id=sent[0],
                    auto_archive_minutes=thread.auto_archive_minutes,
                ).id
            except BadRequest as exc:
                if exc.code != _THREAD_EXISTS:
                    raise
                thread_id = sent[0]  # a thread started from a message has the message's id
            progress["thread_id"] = thread_id
            saved()
        send_rest(lambda _, part: client.send_to_thread(str(thread_id), part).id)
        return str(thread_id)
    if kind == "dm":
        dm = DirectMessageTarget.model_validate(claim.params)
        return send_rest(lambda _, part: client.send_dm(dm.user_id, part).id)
    if kind == "discord_webhook":
        hook = DiscordWebhookTarget.model_validate(claim.params)
        ref = WebhookRef(id=hook.webhook_id, token=SecretStr(box.decrypt(hook.token_encrypted)))

        def to_webhook(index: int, part: Message) -> str:
            answer = client.execute_webhook(
                ref,
                part,
                wait=True,
                thread_id=hook.thread_id,
                username=hook.username,
                avatar_url=hook.avatar_url,
            )
            return answer.id if answer is not None else f"part{index}"

        return send_rest(to_webhook)
    if kind == "followup":
        followup = InteractionFollowupTarget.model_validate(claim.params)
        token = SecretStr(box.decrypt(followup.token_encrypted))
        if not sent:
            first = messages[0]
            edit = MessageEdit(
                content=None, embeds=first.embeds, allowed_mentions=first.allowed_mentions
            )
            # The bot edits this reply with the job's progress; the fence keeps its last
            # edit from landing after the summary.
            with reply_fence():
                record(client.edit_original_response(followup.application_id, token, edit).id)
        return send_rest(
            lambda _, part: (
                client.create_followup(
                    followup.application_id, token, part, ephemeral=followup.ephemeral
                ).id
            )
        )
    raise PipelineError(f"{kind!r} is not a Discord target kind")


def send_discord(
    claim: Claim,
    *,
    client: Callable[[], DiscordClient],
    directory: Callable[[], ChannelDirectory],
    box: SecretBox,
    save: ProgressSaver,
    now: datetime,
    reply_fence: ReplyFenceFor = nullcontext,
) -> Outcome:
    """Send the item to its Discord target; Discord's errors become an :class:`Outcome`.

    ``reply_fence`` is held while the summary is written into an interaction's reply.  The
    target is first checked against the job's guild (:func:`shared.delivery.guard.refusal`):
    a destination outside it fails the delivery for good, before anything is posted; one that
    no longer exists fails it too, and its fallback takes the summary.
    """
    fallback = claim.params.get("fallback")
    try:
        refused = refusal(
            directory(), box, guild_id=claim.job.guild_id, kind=claim.kind, params=claim.params
        )
        if refused is not None and refused.missing:
            log.warning("deliver.destination_missing", target=claim.target, reason=refused.reason)
            return Outcome.failure(refused.reason, retryable=False, fallback=fallback)
        if refused is not None:
            log.warning("deliver.cross_guild", target=claim.target, reason=refused.reason)
            return Outcome.failure(refused.reason, retryable=False)
        remote_id = _send_parts(client(), claim, box, save, now, reply_fence)
    except _LeaseLost as exc:
        return Outcome.failure(str(exc), retryable=True, lease_lost=True)
    except _Unverifiable as exc:
        # No fallback either: it would post the summary again, elsewhere.
        log.warning("deliver.in_doubt_unverifiable", target=claim.target, reason=str(exc))
        return Outcome.failure(exc.user_message, retryable=False)
    except PipelineError as exc:
        return Outcome.failure(
            exc.user_message,
            retryable=classify(exc) is ErrorKind.TRANSIENT,
            retry_after=getattr(exc, "retry_after", None),
            status_code=getattr(exc, "status", None),
            fallback=fallback,
        )
    return Outcome.sent(remote_id)
