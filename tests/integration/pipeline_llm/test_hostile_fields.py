"""Hostile text in every field of an export, through the real pipeline (issue 13).

* Injection strings in author names and nicknames, message text, attachment names, embed
  text, mentions, and the channel, guild and topic: every request the capturing fake OpenAI
  receives has exactly one data fence, every injected marker inside it, none in the system
  prompt.
* A canary of every secret and personal-data kind in the same fields: none reaches a prompt,
  the message cache in Redis, the stored summary (read back from PostgreSQL), the job row, or
  any log line — with the LLM backend and with the offline one.
"""

from __future__ import annotations

import io
import json
import logging
import random
import uuid
from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from schema.models.jobs import Job, Summary
from shared import lifecycle
from shared.domain.messages import ChannelInfo, ChatMessage
from shared.jobs import ExportFileSource, JobParams
from shared.logging import configure_logging
from shared.pipeline.fetch import run_fetch
from shared.services.core import OPERATOR
from shared.services.jobs import submit_job
from shared.summarize.content import SummaryFormat
from tests.fakes.enqueuer import RecordingEnqueuer
from tests.integration.pipeline_llm.harness import Harness
from tests.support.canaries import canaries
from tests.support.injections import INJECTIONS, MARKER, fences, fold

pytestmark = pytest.mark.integration

T0 = datetime(2024, 11, 15, 14, 3, tzinfo=UTC)
CANARIES = canaries(seed=1313)


def _channel(guild: str, text: str) -> ChannelInfo:
    return ChannelInfo(
        channel_id="1191512658436472873",
        channel_name=f"support-{text}",
        guild_id=guild,
        guild_name=f"Guild {text}",
        topic=f"help with ubuntu {text}",
    )


def _messages(texts: list[str], channel: ChannelInfo) -> list[ChatMessage]:
    """Each text in the author's name, the body, a file name, an embed and a mention."""
    messages = []
    for index, text in enumerate(texts):
        messages.append(
            ChatMessage(
                id=str(10**17 + index),
                channel_id=channel.channel_id,
                timestamp=T0 + timedelta(minutes=2 * index),
                author_id=str(10**15 + index),
                author_name=f"user {text}",
                content=f"how do I fix the kernel build? {text} thanks",
                attachments=(f"log_{text}.txt",),
                embeds=(f"Release notes {text}",),
                mentions=(f"helper {text}",),
            )
        )
        messages.append(
            ChatMessage(
                id=str(10**17 + 1000 + index),
                channel_id=channel.channel_id,
                timestamp=T0 + timedelta(minutes=2 * index + 1),
                author_id=str(10**15 + 500),
                author_name="helper",
                content=f"install linux-headers first, then rebuild ({index})",
                reply_to=str(10**17 + index),
            )
        )
    return messages


@pytest.fixture
def captured_logs() -> Iterator[io.StringIO]:
    """Every log line of the test (all levels), as JSON lines."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    stream = io.StringIO()
    configure_logging(level="DEBUG", fmt="json", stream=stream)
    yield stream
    root.handlers[:] = handlers
    root.setLevel(level)


def test_injections_in_every_field_stay_inside_the_one_fence(
    make_harness: Callable[..., Harness],
) -> None:
    harness = make_harness(map_input_tokens=400)
    guild = str(random.randrange(10**17, 10**18))
    where = _channel(guild, " ".join(INJECTIONS[:4]))
    run = harness.run(harness.export("injections", _messages(list(INJECTIONS), where), where))
    assert run.job.status == "completed", run.job.error
    assert run.plan is not None and run.plan.chunk_count >= 2
    requests = harness.fake.requests_seen
    assert len(requests) >= 3  # maps and a reduce
    for request in requests:
        system, user = request["messages"][0]["content"], request["messages"][1]["content"]
        tag = "notes" if fences(user)[0] == "<notes>" else "transcript"
        assert fences(user) == [f"<{tag}>", f"</{tag}>"], fences(user)
        assert MARKER.casefold() not in fold(system)
        view = fold(user)
        inside = view[view.index(f"<{tag}>") : view.index(f"</{tag}>")]
        assert view.count("pwned") == inside.count("pwned")
    maps = [r for r in requests if fences(r["messages"][1]["content"])[0] == "<transcript>"]
    assert all(fold(r["messages"][1]["content"]).count("pwned") > 0 for r in maps)


def _forms(secret: str) -> tuple[str, str]:
    """The secret as written, and as it appears inside a JSON string."""
    return secret, json.dumps(secret)[1:-1]


def _assert_no_canary(where: str, text: str) -> None:
    leaked = [
        kind for kind, canary in CANARIES.items() if any(f in text for f in _forms(canary.secret))
    ]
    assert leaked == [], f"{where} holds canaries of {leaked}"


def _canary_export(harness: Harness, name: str) -> Path:
    guild = str(random.randrange(10**17, 10**18))
    texts = [c.text for c in CANARIES.values()]
    where = _channel(guild, " ".join(texts[:6]))
    return harness.export(name, _messages(texts, where), where)


def _stored(harness: Harness, job_id: uuid.UUID) -> str:
    with harness.session_factory() as session:
        job = session.get(Job, job_id)
        summary = session.scalars(select(Summary).where(Summary.job_id == job_id)).one()
        assert job is not None
        return json.dumps(
            {
                "summary": summary.content,
                "job": [job.error, job.progress, job.params, job.channel_id, job.guild_id],
            },
            ensure_ascii=False,
        )


@pytest.mark.parametrize("backend", ["llm", "offline"])
def test_no_canary_reaches_a_prompt_the_summary_or_a_log_line(
    backend: str, make_harness: Callable[..., Harness], captured_logs: io.StringIO
) -> None:
    harness = make_harness(map_input_tokens=400)
    llm = harness.services.llm
    if backend == "offline":
        harness.services.llm = None
    try:
        path = _canary_export(harness, f"canaries-{backend}")
        raw = path.read_text(encoding="utf-8")
        # The input really holds every canary.
        assert all(any(f in raw for f in _forms(c.secret)) for c in CANARIES.values())
        run = harness.run(path, fmt=SummaryFormat.DETAILED)
    finally:
        harness.services.llm = llm
    assert run.job.status == "completed", run.job.error
    content = run.content
    assert content.backend == ("extractive" if backend == "offline" else content.backend)
    if backend == "llm":
        assert harness.fake.requests_seen
        _assert_no_canary("the prompts", json.dumps(harness.fake.requests_seen))
    else:
        assert not harness.fake.requests_seen
    stored = _stored(harness, run.job.id)
    assert "[secret]" in stored or "[email]" in stored  # the summary quotes redacted text
    _assert_no_canary("the stored summary and job", stored)
    logs = captured_logs.getvalue()
    assert "fetch.done" in logs and "summarize.done" in logs
    _assert_no_canary("the logs", logs)


def test_the_message_cache_in_redis_holds_only_redacted_text(
    make_harness: Callable[..., Harness],
) -> None:
    harness = make_harness()
    recorder = RecordingEnqueuer()
    services = replace(harness.services, enqueuer=recorder, _core=None)
    path = _canary_export(harness, "canaries-cache")
    params = JobParams(source=ExportFileSource(path=str(path)), destinations=[])
    job_id = submit_job(services.core(), OPERATOR, params).job_id
    job = lifecycle.load(harness.session_factory, job_id)
    assert job is not None
    steps = run_fetch(services, job)
    assert [step.task for step in steps] == ["summarybot.summarize"]
    keys = harness.keys(f"fetch:{job_id}:*")
    assert len(keys) == 2
    cached = [harness.redis.get(k) for k in keys if k.endswith(b":meta")]
    cached += harness.redis.lrange(f"{harness.prefix}:fetch:{job_id}:m", 0, -1)
    text = b"\n".join(c for c in cached if c).decode("utf-8")
    assert len(cached) == 1 + 2 * len(CANARIES)
    _assert_no_canary("the Redis message cache", text)
    harness.services.cache.delete(str(job_id))
