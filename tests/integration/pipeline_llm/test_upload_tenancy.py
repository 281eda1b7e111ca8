"""An uploaded conversation names any guild it likes; the job's own guild is the one that pays.

A key of guild A uploads messages whose header claims guild B.  The worker must bill A, apply
A's settings and opt-outs, store the summary as A's (so A's erasures reach it), and never read
B's settings into the prompt.  And the upload itself must be A's: a job row of A naming an
upload B stored fails at fetch, as the producers refuse it.
"""

from __future__ import annotations

import json
import random
import uuid
from datetime import UTC, datetime

import pytest
from sqlalchemy import select

from schema.models.jobs import Job, JobStatus, Summary
from schema.models.tenancy import GuildSettings
from shared.jobs import FETCH, JobParams, UploadSource
from shared.services.core import Actor
from shared.services.jobs import submit_job
from shared.services.members import erase_member_data
from shared.uploads import UploadWriter
from tests.integration.pipeline_llm.harness import Harness

pytestmark = pytest.mark.integration


def _snowflake() -> str:
    return str(random.randint(10**17, 10**18 - 1))


def _store_upload(
    harness: Harness, guild: str, conversation: dict[str, object], author: str
) -> uuid.UUID:
    messages = [
        {
            "id": str(10**17 + i),
            "author": {
                "id": author if i % 2 else _snowflake(),
                "name": "Victim" if i % 2 else "Al",
            },
            "time": f"2026-03-01T09:{i:02d}:00Z",
            "content": f"release plan item {i}: ship the arm build before friday",
        }
        for i in range(20)
    ]
    writer = UploadWriter(harness.session_factory, guild_id=guild, now=datetime.now(UTC))
    writer.write(json.dumps({"conversation": conversation, "messages": messages}).encode())
    return writer.finish()


def _submit_upload(
    harness: Harness, guild: str, conversation: dict[str, object], author: str
) -> str:
    upload = _store_upload(harness, guild, conversation, author)
    actor = Actor(origin="api", guild_id=guild, requested_by="api:key")
    params = JobParams(source=UploadSource(upload_id=str(upload)), format="structured")
    return str(submit_job(harness.services.core(), actor, params).job_id)


def test_a_claimed_guild_neither_pays_nor_lends_its_settings(
    make_harness: type[Harness],
) -> None:
    harness = make_harness(single_call_tokens=8000)
    mine, theirs = _snowflake(), _snowflake()
    with harness.session_factory() as session, session.begin():
        session.add(GuildSettings(guild_id=theirs, custom_instructions="SECRET-OF-B xyzzy"))
        session.add(GuildSettings(guild_id=mine, monthly_token_budget=10_000_000))
    claimed = {"name": "ticket", "guild_id": theirs, "channel_id": "123456789012345678"}
    run = harness.wait(_submit_upload(harness, mine, claimed, _snowflake()))
    assert run.job.status == "completed", run.job.error
    assert {row.guild_id for row in run.usage} == {mine}
    assert run.summary is not None and run.summary.guild_id == mine
    prompts = [json.dumps(request["messages"]) for request in harness.fake.requests_seen]
    assert prompts and not any("SECRET-OF-B" in prompt for prompt in prompts)


def test_a_guildless_upload_is_stored_as_the_uploaders_and_erasure_reaches_it(
    make_harness: type[Harness],
) -> None:
    harness = make_harness(single_call_tokens=8000)
    mine, member = _snowflake(), _snowflake()
    run = harness.wait(_submit_upload(harness, mine, {"name": "ticket"}, member))
    assert run.summary is not None and run.summary.guild_id == mine
    actor = Actor(origin="api", guild_id=mine, requested_by="api:key")
    report = erase_member_data(harness.services.core(), actor, member)
    assert report.summaries == 1
    with harness.session_factory() as session:
        content = session.scalar(select(Summary.content).where(Summary.id == run.summary.id))
    assert member not in json.dumps(content)


def test_a_job_row_naming_another_guilds_upload_fails_before_reading_it(
    make_harness: type[Harness],
) -> None:
    harness = make_harness(single_call_tokens=8000)
    mine, theirs = _snowflake(), _snowflake()
    upload = _store_upload(harness, theirs, {"name": "b-only"}, _snowflake())
    job_id = uuid.uuid4()
    params = JobParams(source=UploadSource(upload_id=str(upload)), format="structured")
    with harness.session_factory() as session, session.begin():
        # Written by hand: submit_job refuses another guild's upload.
        session.add(
            Job(
                id=job_id,
                origin="api",
                status=JobStatus.QUEUED.value,
                guild_id=mine,
                params=params.model_dump(mode="json"),
                progress={},
            )
        )
    harness.services.enqueuer.enqueue(FETCH, str(job_id))
    run = harness.wait(job_id)
    assert run.job.status == "failed"
    assert run.job.error == "upload is not in this server"
    assert run.summary is None and run.usage == []
    assert harness.fake.requests_seen == []
    assert harness.keys("fetch:*") == []
