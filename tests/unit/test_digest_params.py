"""The parameters of digests and catch-ups (:mod:`shared.services.digests`), and their submission
through :func:`shared.services.jobs.submit_job` on the fake Discord."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy.orm import Session, sessionmaker

from schema.models.jobs import Job
from shared.crypto import SecretBox, generate_key
from shared.db.engine import make_engine, make_sessionmaker
from shared.db.migrate import upgrade
from shared.errors import InvalidInputError, NotFoundError
from shared.jobs import (
    FETCH,
    AudienceChannel,
    AudienceMember,
    ChannelTarget,
    DirectMessageTarget,
    DiscordChannelSource,
    DiscordServerSource,
    WebhookTarget,
)
from shared.pipeline.plan import part_share
from shared.services.core import Actor, Core
from shared.services.digests import (
    CATCHUP_LOOKBACK,
    DigestScope,
    catchup_params,
    digest_params,
)
from shared.services.jobs import submit_job
from shared.summarize.content import SummaryFormat
from tests.fakes.enqueuer import RecordingEnqueuer
from tests.support.discord_tenants import DiscordTenants

NOW = datetime(2026, 3, 8, 12, 0, tzinfo=UTC)
GUILD, USER, CHANNEL = "111111111111111111", "222222222222222222", "333333333333333333"


def _catchup(since: datetime | None, **kw: object) -> DiscordServerSource:
    params = catchup_params(
        guild_id=GUILD,
        user_id=USER,
        since=since,
        now=NOW,
        format=SummaryFormat.BRIEF,
        language="de",
        destinations=kw.pop("destinations", [DirectMessageTarget(user_id=USER)]),  # type: ignore[arg-type]
    )
    assert params.format is SummaryFormat.BRIEF and params.language == "de"
    assert isinstance(params.source, DiscordServerSource)
    return params.source


def test_a_catchup_without_since_starts_at_the_members_last_message_within_the_lookback() -> None:
    source = _catchup(None)
    assert source.guild_id == GUILD
    assert source.category_id is None and source.channel_ids == []
    assert source.audience == [AudienceMember(user_id=USER)]
    assert source.focus_user_id == USER
    assert source.since_last_message is True
    assert source.after == NOW - CATCHUP_LOOKBACK
    assert source.before is None


def test_a_catchup_since_a_time_starts_there() -> None:
    since = NOW - timedelta(hours=5)
    source = _catchup(since)
    assert source.after == since
    assert source.since_last_message is False
    assert source.focus_user_id == USER


@pytest.mark.parametrize(
    ("since", "words"),
    [
        (NOW + timedelta(hours=1), "in the future"),
        (NOW - CATCHUP_LOOKBACK - timedelta(minutes=1), "7 days at most"),
        (datetime(2026, 3, 8, 10, 0), "time zone"),
    ],
)
def test_a_catchup_refuses_a_since_it_cannot_use(since: datetime, words: str) -> None:
    with pytest.raises(InvalidInputError, match=words):
        _catchup(since)


def test_a_since_a_little_ahead_of_the_clock_is_now() -> None:
    assert _catchup(NOW + timedelta(seconds=30)).after == NOW


def _digest(scope: DigestScope | None = None, **kw: object) -> DiscordServerSource:
    args: dict[str, object] = {
        "after": NOW - timedelta(hours=24),
        "before": None,
        "format": SummaryFormat.STRUCTURED,
        "language": None,
        "destinations": [ChannelTarget(channel_id=CHANNEL)],
        "audience": None,
        **kw,
    }
    params = digest_params(scope or DigestScope(guild_id=GUILD), **args)  # type: ignore[arg-type]
    assert isinstance(params.source, DiscordServerSource)
    return params.source


def test_a_digest_is_read_by_its_destinations_readers_by_default() -> None:
    source = _digest(
        destinations=[
            ChannelTarget(channel_id=CHANNEL),
            {"kind": "dm", "user_id": USER},
            WebhookTarget(endpoint_id=uuid.uuid4()),
        ]
    )
    assert source.audience == [AudienceChannel(channel_id=CHANNEL), AudienceMember(user_id=USER)]
    assert source.since_last_message is False and source.focus_user_id is None


def test_a_digest_keeps_the_audience_it_is_given_and_its_scope() -> None:
    source = _digest(
        DigestScope(guild_id=GUILD, channel_ids=(CHANNEL,)),
        destinations=[WebhookTarget(endpoint_id=uuid.uuid4())],
        audience=[{"kind": "member", "user_id": USER}],
    )
    assert source.audience == [AudienceMember(user_id=USER)]
    assert source.channel_ids == [CHANNEL]
    assert _digest(DigestScope(guild_id=GUILD, category_id=CHANNEL)).category_id == CHANNEL


def test_a_digest_of_one_channel_is_a_job_of_that_channel() -> None:
    window = (NOW - timedelta(hours=24), NOW)
    params = digest_params(
        DigestScope(guild_id=GUILD, channel_id=CHANNEL),
        after=window[0],
        before=window[1],
        format=SummaryFormat.BRIEF,
        language="fr",
        destinations=[WebhookTarget(endpoint_id=uuid.uuid4())],
    )
    assert params.source == DiscordChannelSource(
        guild_id=GUILD, channel_id=CHANNEL, after=window[0], before=window[1]
    )
    assert params.format is SummaryFormat.BRIEF and params.language == "fr"
    with pytest.raises(InvalidInputError, match="read by that channel's readers"):
        _digest(
            DigestScope(guild_id=GUILD, channel_id=CHANNEL),
            audience=[{"kind": "member", "user_id": USER}],
        )
    with pytest.raises(ValueError, match="no category or channel list"):
        DigestScope(guild_id=GUILD, channel_id=CHANNEL, category_id=CHANNEL)


def test_a_digest_sent_only_outside_discord_needs_an_audience() -> None:
    with pytest.raises(InvalidInputError, match="needs an audience"):
        _digest(destinations=[WebhookTarget(endpoint_id=uuid.uuid4())])
    with pytest.raises(InvalidInputError, match="needs an audience"):
        _digest(destinations=[])


def test_a_digest_refuses_a_category_and_channels_together() -> None:
    with pytest.raises(InvalidInputError, match="not both"):
        _digest(DigestScope(guild_id=GUILD, category_id=CHANNEL, channel_ids=(USER,)))


# Submission: the rules of ``submit_job`` apply to what the helpers build.


@pytest.fixture
def factory(tmp_path: Path) -> Iterator[sessionmaker[Session]]:
    url = f"sqlite:///{tmp_path / 'digests.db'}"
    upgrade(url)
    engine = make_engine(url)
    yield make_sessionmaker(engine)
    engine.dispose()


def test_a_catchup_is_recorded_for_its_member_and_its_fetch_published(
    factory: sessionmaker[Session], discord_tenants: DiscordTenants
) -> None:
    guild, _channel = discord_tenants.tenant()
    member = discord_tenants.member(guild, "reader")
    enqueuer = RecordingEnqueuer()
    core = Core(
        session_factory=factory,
        enqueuer=enqueuer,
        box=SecretBox([generate_key()]),
        directory=discord_tenants.directory,
    )
    # The member's own /catchup (the bot direct-messages only members who asked it).
    actor = Actor(origin="bot", guild_id=guild, requested_by=member)
    now = datetime.now(UTC)
    params = catchup_params(
        guild_id=guild,
        user_id=member,
        since=None,
        now=now,
        format=SummaryFormat.BRIEF,
        language=None,
        destinations=[DirectMessageTarget(user_id=member)],
    )
    submission = submit_job(core, actor, params, idempotency_key="catchup-1")
    assert enqueuer.sent == [(FETCH, (str(submission.job_id),))]
    with factory() as session:
        job = session.get(Job, submission.job_id)
    assert job is not None and job.guild_id == guild and job.channel_id is None
    assert job.params["source"]["audience"] == [{"kind": "member", "user_id": member}]

    other = discord_tenants.member(guild, "someone-else")
    with factory() as session, session.begin():
        session.add(  # someone who asked the bot for a summary once
            Job(
                id=uuid.uuid4(),
                origin="bot",
                status="completed",
                guild_id=guild,
                requested_by=other,
                params={},
                progress={},
            )
        )
    to_other = catchup_params(
        guild_id=guild,
        user_id=member,
        since=None,
        now=now,
        format=SummaryFormat.BRIEF,
        language=None,
        destinations=[DirectMessageTarget(user_id=other)],
    )
    with pytest.raises(InvalidInputError, match=f"add member {other}"):
        submit_job(core, actor, to_other)
    _stranger_guild, stranger_channel = discord_tenants.tenant()
    elsewhere = digest_params(
        DigestScope(guild_id=guild, channel_ids=(stranger_channel,)),
        after=now - timedelta(hours=2),
        before=None,
        format=SummaryFormat.BRIEF,
        language=None,
        destinations=[DirectMessageTarget(user_id=member)],
    )
    with pytest.raises(NotFoundError):
        submit_job(core, actor, elsewhere)
    assert len(enqueuer.sent) == 1


@pytest.mark.parametrize(
    ("asked", "deployment", "parts", "share"),
    [
        (None, 200_000, 4, 50_000),  # the deployment's limit, shared
        (1_000, 200_000, 4, 500),  # the job's own limit, shared, floored
        (None, 200_000, 1000, 500),  # many channels: the floor
        (None, 300, 10, 300),  # a deployment limit below the floor caps it
        (500_000, 200_000, 2, 100_000),  # the job cannot ask for more than the deployment
        (None, 200_000, 0, 200_000),
    ],
)
def test_a_multi_channel_job_shares_its_message_limit(
    asked: int | None, deployment: int, parts: int, share: int
) -> None:
    assert part_share(asked, deployment, parts) == share
