"""Retention and member erasure on PostgreSQL (and the caches in the real Redis)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import redis
from sqlalchemy import delete, func, select, update
from sqlalchemy.orm import Session, sessionmaker

from schema.models.jobs import Delivery, Job, Summary
from schema.models.schedules import Schedule
from schema.models.tenancy import ApiKey, GuildSettings, UserOptOut
from schema.models.uploads import CHUNK_BYTES, Upload
from shared.cache import CachedFetch, RedisMessageCache
from shared.domain.messages import ChannelInfo
from shared.errors import InvalidInputError
from shared.retention import ERASED, erase_member, purge_expired
from shared.summarize.content import SummaryContent
from shared.uploads import UploadWriter
from tests.unit.ops.helpers import add_schedule, clear

pytestmark = pytest.mark.integration

NOW = datetime(2026, 9, 1, 12, tzinfo=UTC)
SHORT, DEFAULT = "100000000000000001", "100000000000000002"
ALICE, BOB = "400000000000000001", "400000000000000002"


@pytest.fixture(autouse=True)
def _empty(factory: sessionmaker[Session]) -> Iterator[None]:
    clear(factory)
    yield
    clear(factory)


@pytest.fixture
def cache(redis_url: str) -> Iterator[RedisMessageCache]:
    client = redis.Redis.from_url(redis_url)
    prefix = f"test-ops-{uuid.uuid4().hex[:8]}"
    yield RedisMessageCache(client, ttl=3600, prefix=prefix)
    for key in client.scan_iter(f"{prefix}:*"):
        client.delete(key)
    client.close()


def _content(guild_id: str) -> dict[str, Any]:
    stamp = NOW.isoformat()
    return {
        "format": "structured",
        "overview": f"alice and <@{BOB}> talked about the release; <@!{ALICE}> will ship it.",
        "key_points": [
            {"text": "alice fixed the build (thanks @alice)", "message_ids": ["9" * 18]}
        ],
        "action_items": [{"task": "ship 1.2", "owner": "alice", "message_ids": ["9" * 18]}],
        "contributions": [
            {"participant": "alice", "points": [{"text": "fixed it", "message_ids": ["9" * 18]}]}
        ],
        "participants": [
            {"id": ALICE, "name": "alice", "messages": 3},
            {"id": BOB, "name": "bob", "messages": 2},
        ],
        "citations": {
            "9" * 18: {
                "message_id": "9" * 18,
                "author": "alice",
                "timestamp": stamp,
                "jump_url": f"https://discord.com/channels/{guild_id}/1/{'9' * 18}",
            },
            "8" * 18: {
                "message_id": "8" * 18,
                "author": "bob",
                "timestamp": stamp,
                "jump_url": f"https://discord.com/channels/{guild_id}/1/{'8' * 18}",
            },
        },
        "coverage": {
            "messages_total": 5,
            "messages_used": 5,
            "messages_skipped": 0,
            "start": stamp,
            "end": stamp,
            "channel_id": "1",
            "channel_name": "alice-corner",
            "guild_id": guild_id,
        },
        "backend": "extractive",
    }


def _job_with_summary(
    factory: sessionmaker[Session],
    guild_id: str | None,
    age: timedelta,
    *,
    status: str = "completed",
    requested_by: str | None = ALICE,
) -> uuid.UUID:
    created = NOW - age
    job = Job(
        id=uuid.uuid4(),
        origin="bot",
        status=status,
        guild_id=guild_id,
        channel_id="1",
        requested_by=requested_by,
        params={},
        progress={},
        created_at=created,
        updated_at=created,
    )
    summary = Summary(
        job_id=job.id,
        guild_id=guild_id,
        channel_id="1",
        format="structured",
        content=_content(guild_id or "0"),
        backend="extractive",
        prompt_version="t",
        message_count=5,
        created_at=created,
    )
    with factory() as session, session.begin():
        session.add(job)
        session.flush()
        session.add(summary)
        session.flush()
        session.add(
            Delivery(
                summary_id=summary.id,
                target=f"dm:{ALICE}",
                kind="dm",
                params={"kind": "dm", "user_id": ALICE},
                status="sent",
                created_at=created,
            )
        )
    return job.id


def _count(factory: sessionmaker[Session], model: Any) -> int:
    with factory() as session:
        return int(session.scalar(select(func.count()).select_from(model)) or 0)


def test_purge_enforces_each_guilds_retention(
    factory: sessionmaker[Session], cache: RedisMessageCache
) -> None:
    with factory() as session, session.begin():
        session.add(GuildSettings(guild_id=SHORT, retention_days=7))
    expired_short = _job_with_summary(factory, SHORT, timedelta(days=8))
    kept_short = _job_with_summary(factory, SHORT, timedelta(days=6))
    expired_default = _job_with_summary(factory, DEFAULT, timedelta(days=91))
    kept_default = _job_with_summary(factory, DEFAULT, timedelta(days=30))
    running_old = _job_with_summary(factory, SHORT, timedelta(days=30), status="delivering")
    local = _job_with_summary(factory, None, timedelta(days=400))
    # A finished job whose messages are still cached (a stage died before removing them).
    channel = ChannelInfo(channel_id="1", channel_name="x")
    finished = _job_with_summary(factory, DEFAULT, timedelta(minutes=5))
    for job_id in (finished, running_old):
        cache.begin(str(job_id))
        cache.complete(str(job_id), CachedFetch(channel=channel, count=0, skipped=0))

    result = purge_expired(factory, cache, now=NOW, cache_ttl=3600)

    with factory() as session:
        jobs = set(session.scalars(select(Job.id)))
        summarized = set(session.scalars(select(Summary.job_id)))
    assert jobs == summarized == {kept_short, kept_default, running_old, local, finished}
    assert expired_short not in jobs and expired_default not in jobs
    # An unfinished job keeps its row and its summary, which is still being delivered.
    assert (result.jobs, result.guilds) == (2, 2)
    assert result.summaries == 2
    assert _count(factory, Delivery) == 5  # deliveries went with their summaries
    assert cache.get(str(finished)) is None  # finished: cache cleared
    assert cache.get(str(running_old)) is not None  # still running: cache kept
    again = purge_expired(factory, cache, now=NOW, cache_ttl=3600)
    assert (again.summaries, again.jobs) == (0, 0)


def test_erase_member_removes_their_identifiers_and_keeps_the_opt_out(
    factory: sessionmaker[Session],
) -> None:
    mine = _job_with_summary(factory, SHORT, timedelta(days=1))
    elsewhere = _job_with_summary(factory, DEFAULT, timedelta(days=1))
    schedule_id = add_schedule(factory, "daily 09:00", now=NOW)
    with factory() as session, session.begin():
        session.add(UserOptOut(guild_id=SHORT, user_id=ALICE))
        session.add(
            ApiKey(id="key12345", guild_id=SHORT, name="k", secret_hash="h", created_by=ALICE)
        )
        schedule = session.get(Schedule, schedule_id)
        assert schedule is not None
        schedule.guild_id, schedule.created_by = SHORT, ALICE

    result = erase_member(factory, guild_id=SHORT, user_id=ALICE)

    assert (result.summaries, result.jobs, result.schedules, result.api_keys) == (1, 1, 1, 1)
    assert result.deliveries == 1
    assert result.opt_out_kept
    with factory() as session:
        erased = session.scalars(select(Summary).where(Summary.job_id == mine)).one()
        other = session.scalars(select(Summary).where(Summary.job_id == elsewhere)).one()
        text = str(erased.content)
        assert ALICE not in text and "alice" not in text.replace("alice-corner", "")
        content = SummaryContent.model_validate(erased.content)  # still a valid summary
        assert [p.id for p in content.participants] == [BOB]
        # Their messages are no longer cited; items drawn only from them are gone.
        assert "9" * 18 not in content.citations
        assert content.citations["8" * 18].author == "bob"  # others untouched
        assert all("9" * 18 not in item.message_ids for item in content.action_items)
        assert all(c.participant != "alice" for c in content.contributions)
        assert f"<@{BOB}>" in content.overview
        assert content.coverage.channel_name == "alice-corner"
        assert ALICE in str(other.content)  # another guild: untouched
        job = session.get(Job, mine)
        assert job is not None and job.requested_by is None
        other_job = session.get(Job, elsewhere)
        assert other_job is not None and other_job.requested_by == ALICE
        assert session.scalars(select(UserOptOut.user_id)).all() == [ALICE]  # kept
        key = session.get(ApiKey, "key12345")
        assert key is not None and key.created_by is None
        schedule = session.get(Schedule, schedule_id)
        assert schedule is not None and schedule.created_by == ERASED
        delivery = session.scalars(
            select(Delivery).join(Summary).where(Summary.job_id == mine)
        ).one()
        assert ALICE not in str(delivery.params)

    everywhere = erase_member(factory, guild_id="*", user_id=ALICE)
    assert (everywhere.summaries, everywhere.jobs) == (1, 1)
    assert erase_member(factory, guild_id="*", user_id=ALICE).summaries == 0


def test_erase_member_many_summaries_in_batches(factory: sessionmaker[Session]) -> None:
    for _ in range(7):
        _job_with_summary(factory, SHORT, timedelta(hours=1))
    assert erase_member(factory, guild_id=SHORT, user_id=ALICE, batch=3).summaries == 7


def test_erase_member_rejects_ids_that_are_not_discord_ids(
    factory: sessionmaker[Session],
) -> None:
    with pytest.raises(InvalidInputError, match="not a Discord id"):
        erase_member(factory, guild_id=SHORT, user_id="alice")
    with pytest.raises(InvalidInputError, match="guild id"):
        erase_member(factory, guild_id="guild", user_id=ALICE)


def _upload(
    factory: sessionmaker[Session], guild: str, body: bytes, *, at: datetime = NOW
) -> uuid.UUID:
    writer = UploadWriter(factory, guild_id=guild, now=at)
    writer.write(body)
    return writer.finish()


def _uploads(factory: sessionmaker[Session]) -> set[uuid.UUID]:
    with factory() as session:
        return set(session.scalars(select(Upload.id)))


def test_purge_removes_uploads_no_job_claimed_within_the_hour(
    factory: sessionmaker[Session], cache: RedisMessageCache
) -> None:
    with factory() as session, session.begin():
        session.execute(delete(Upload))
    stale = _upload(factory, SHORT, b"[]", at=NOW - timedelta(hours=2))
    young = _upload(factory, SHORT, b"[]", at=NOW - timedelta(minutes=10))
    claimed = _upload(factory, SHORT, b"[]", at=NOW - timedelta(hours=2))
    job = Job(origin="api", guild_id=SHORT, params={}, created_at=NOW, updated_at=NOW)
    with factory() as session, session.begin():
        session.add(job)
        session.flush()
        session.execute(update(Upload).where(Upload.id == claimed).values(job_id=job.id))
    result = purge_expired(factory, cache, now=NOW, cache_ttl=3600)
    assert result.uploads == 1
    assert _uploads(factory) == {young, claimed}
    assert stale not in _uploads(factory)


def test_erasure_deletes_the_uploads_that_hold_the_member_even_across_a_chunk_boundary(
    factory: sessionmaker[Session],
) -> None:
    with factory() as session, session.begin():
        session.execute(delete(Upload))
    # ALICE's id straddles the first chunk's end: the scan must carry the tail over.
    split = b" " * (CHUNK_BYTES - 5) + ALICE.encode() + b" rest"
    straddling = _upload(factory, SHORT, split)
    plain = _upload(factory, SHORT, f'[{{"author": "{ALICE}"}}]'.encode())
    without = _upload(factory, SHORT, f'[{{"author": "{BOB}"}}]'.encode())
    elsewhere = _upload(factory, DEFAULT, f'[{{"author": "{ALICE}"}}]'.encode())
    erase_member(factory, guild_id=SHORT, user_id=ALICE)
    assert _uploads(factory) == {without, elsewhere}
    assert not {straddling, plain} & _uploads(factory)
