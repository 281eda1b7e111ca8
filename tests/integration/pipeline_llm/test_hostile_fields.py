"""Hostile text in every field of an export, through the real pipeline (issue 13).

Every field kind an export carries and the pipeline reads gets every hostile string:
message text, author names and nicknames, mentioned names, attachment file names, embed
titles, URLs and descriptions, sticker names, and the channel (or thread) name, guild name
and topic.  Channel-level fields hold one value per export, so the strings are spread over a
few exports, each export's messages carrying the same strings as its channel.

* Every string of :data:`INJECTIONS`: every request the capturing fake OpenAI receives has
  exactly one data fence, every injected marker (and every field's tag) inside it, none in
  the system prompt.
* A canary of every documented redaction kind: no canary, and no 12-character piece of one,
  reaches a prompt, the Redis message cache or any other key of the job, the stored summary
  and job row (read back from PostgreSQL), or any log line at DEBUG — with the LLM backend
  and with the offline one.
"""

from __future__ import annotations

import io
import json
import logging
import random
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from schema.models.jobs import Job, Summary
from shared import lifecycle
from shared.jobs import ExportFileSource, JobParams
from shared.logging import configure_logging
from shared.pipeline.fetch import run_fetch
from shared.services.core import OPERATOR
from shared.services.jobs import submit_job
from shared.summarize.content import SummaryFormat
from shared.summarize.redact import ALL_KINDS
from tests.fakes.enqueuer import RecordingEnqueuer
from tests.integration.pipeline_llm.harness import Harness
from tests.support.canaries import canaries, kind_of
from tests.support.injections import INJECTIONS, MARKER, fences, fold

pytestmark = pytest.mark.integration

T0 = datetime(2024, 11, 15, 14, 3, tzinfo=UTC)
CANARIES = canaries(seed=1313)
#: The same canaries from another seed: what the two share is a fixed prefix, not a secret.
_OTHER = canaries(seed=1414)
_EMBED_CUT = 79  # the export reader keeps this much of an embed description
_PIECE = 12

#: Every field kind of a message an export carries (channel-level ones are in :class:`Place`).
MESSAGE_FIELDS = (
    "content",
    "author_name",
    "nickname",
    "mention",
    "attachment",
    "embed_title",
    "embed_url",
    "embed_description",
    "sticker",
)
CHANNEL_FIELDS = ("channel_name", "guild_name", "topic")


@dataclass(frozen=True)
class Place:
    """Where a value goes: a message field, or the channel (thread) name, guild name, topic."""

    field: str
    thread: bool = False


def _groups(values: list[str], budget: int) -> list[list[str]]:
    """``values`` in order, cut into groups whose joined length stays within ``budget``."""
    groups: list[list[str]] = [[]]
    for value in values:
        if groups[-1] and len(" ".join([*groups[-1], value])) > budget:
            groups.append([])
        groups[-1].append(value)
    return groups


def _user(user_id: str, name: str, nickname: str | None = None) -> dict[str, Any]:
    return {
        "id": user_id,
        "name": name,
        "discriminator": "0000",
        "nickname": nickname or name,
        "color": None,
        "isBot": False,
        "roles": [],
        "avatarUrl": None,
    }


def _embed_description(value: str, secret: str) -> str:
    """``value`` after filler, so the reader's cut of the description falls inside ``secret``."""
    if not secret:
        return value
    at = value.find(secret)
    room = _EMBED_CUT - max(at, 0) - len(secret) // 2
    filler = ("see the release notes " * 6)[: max(room - 1, 0)].rstrip()
    return f"{filler} {value}".strip()


def _dce_message(
    index: int, field: str, value: str, secret: str, *, reply_to: str | None
) -> dict[str, Any]:
    """One DCE message holding ``value`` in the message field ``field``."""
    message_id = str(10**17 + index)
    author = _user(str(10**15 + index % 7), f"member{index % 7}")
    message: dict[str, Any] = {
        "id": message_id,
        "type": "Reply" if reply_to else "Default",
        "timestamp": (T0 + timedelta(seconds=40 * index)).isoformat(),
        "timestampEdited": None,
        "isPinned": False,
        "content": f"install linux-headers first, then rebuild ({index})",
        "author": author,
        "attachments": [],
        "embeds": [],
        "stickers": [],
        "reactions": [],
        "mentions": [],
    }
    if reply_to:
        message["reference"] = {"type": "Default", "messageId": reply_to}
    embed: dict[str, Any] = {"title": None, "url": None, "description": "", "fields": []}
    match field:
        case "content":
            message["content"] = f"how do I fix the kernel build? {value} thanks"
        case "author_name":
            message["author"] = _user(str(10**15 + 100 + index), value, nickname=None)
            message["author"]["nickname"] = None
        case "nickname":
            message["author"] = _user(str(10**15 + 100 + index), "plainname", nickname=value)
        case "mention":
            message["mentions"] = [_user(str(10**15 + 900 + index), "someone", value)]
            message["content"] = f"@{value} can you look at this?"
        case "attachment":
            # The transcript names a file by what follows its last "/": the first word again
            # at the end keeps an injection's tag there.
            message["attachments"] = [
                {
                    "id": message_id,
                    "url": "",
                    "fileName": f"log_{value} {value.split()[0]}.txt",
                    "fileSizeBytes": 9,
                }
            ]
        case "embed_title":
            message["embeds"] = [embed | {"title": f"Release notes {value}"}]
        case "embed_url":
            message["embeds"] = [embed | {"url": value}]
        case "embed_description":
            message["embeds"] = [embed | {"description": _embed_description(value, secret)}]
        case "sticker":
            message["stickers"] = [{"id": message_id, "name": f"sticker {value}"}]
        case _:
            raise AssertionError(field)
    return message


def _in_field(value: str, field: str) -> str:
    """``value`` with its ``{F}`` (if any) naming ``field``: a tag tells where text came from."""
    return value.replace("{F}", field.replace("_", ""))


def tag(field: str, number: int) -> str:
    """The tag injection ``number`` carries in ``field``."""
    return _in_field(f"zq{{F}}x{number}q", field)


def write_hostile_export(
    path: Path, values: list[tuple[str, str]], *, thread: bool, channel_values: list[str]
) -> Path:
    """An export whose messages hold each ``(value, secret)`` in every message field, and
    whose channel (a thread when ``thread``), guild and topic hold ``channel_values``."""
    messages: list[dict[str, Any]] = []
    for value, secret in values:
        for field in MESSAGE_FIELDS:
            index = len(messages)
            reply_to = str(10**17 + index - 1) if index % 3 == 2 else None
            text = _in_field(value, field)
            messages.append(_dce_message(index, field, text, secret, reply_to=reply_to))

    def joined(field: str) -> str:
        return " ".join(_in_field(value, field) for value in channel_values)

    export = {
        "guild": {
            "id": str(random.randrange(10**17, 10**18)),
            "name": f"Guild {joined('guild_name')}",
            "iconUrl": None,
        },
        "channel": {
            "id": "1191512658436472873",
            "type": "GuildPublicThread" if thread else "GuildTextChat",
            "categoryId": "1191512658436470000" if thread else None,
            "category": "support" if thread else None,
            "name": f"{'thread' if thread else 'support'}-{joined('channel_name')}",
            "topic": f"help with {joined('topic')}",
        },
        "dateRange": {"after": None, "before": None},
        "exportedAt": "2030-01-01T00:00:00+00:00",
        "messages": messages,
        "messageCount": len(messages),
    }
    path.write_text(json.dumps(export, ensure_ascii=False, indent=1), encoding="utf-8")
    return path


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


# -- injections -----------------------------------------------------------------------------


def _injection_exports(harness: Harness) -> list[tuple[Path, set[str]]]:
    """Exports holding every injection in every field; each with the tags it must show."""
    templates = [f"zq{{F}}x{number}q {text}" for number, text in enumerate(INJECTIONS)]
    made, first = [], 0
    # The prompt keeps 200 characters of a topic: each export's share fits in it.
    for number, group in enumerate(_groups(templates, 150)):
        path = write_hostile_export(
            harness.tmp / f"injections-{number}.json",
            [(text, "") for text in group],
            thread=number % 2 == 1,
            channel_values=group,
        )
        fields = (*MESSAGE_FIELDS, *CHANNEL_FIELDS)
        made.append((path, {tag(f, first + i) for i in range(len(group)) for f in fields}))
        first += len(group)
    assert first == len(INJECTIONS)
    return made


def _assert_one_fence(request: dict[str, Any]) -> tuple[str, str]:
    """The request's fence tag and the folded text inside it; fails unless there is one fence
    and no injected marker or tag outside it."""
    system, user = request["messages"][0]["content"], request["messages"][1]["content"]
    assert len(request["messages"]) == 2
    found = fences(user)
    tag_name = "notes" if found[:1] == ["<notes>"] else "transcript"
    assert found == [f"<{tag_name}>", f"</{tag_name}>"], found
    for outside in (fold(system), *fold(user).split(f"<{tag_name}>", 1)[:1]):
        assert MARKER.casefold() not in outside and "zq" not in outside
    view = fold(user)
    inside = view[view.index(f"<{tag_name}>") : view.index(f"</{tag_name}>")]
    assert view.count(MARKER.casefold()) == inside.count(MARKER.casefold())
    assert view.count("zq") == inside.count("zq")
    return tag_name, inside


def test_injections_in_every_field_stay_inside_the_one_fence(
    make_harness: Callable[..., Harness],
) -> None:
    harness = make_harness(map_input_tokens=400)
    exports = _injection_exports(harness)
    assert len(exports) >= 3
    for path, tags in exports:
        harness.fake.reset()
        run = harness.run(path)
        assert run.job.status == "completed", run.job.error
        assert run.plan is not None and run.plan.chunk_count >= 2
        requests = harness.fake.requests_seen
        assert len(requests) >= 3  # maps and a reduce
        seen = ""
        for request in requests:
            tag_name, inside = _assert_one_fence(request)
            if tag_name == "transcript":
                seen += inside
        # Each injection of each field reached a prompt, inside its fence.
        missing = sorted(t for t in tags if t not in seen)
        assert missing == [], missing


# -- canaries -------------------------------------------------------------------------------


def _pieces(name: str) -> set[str]:
    """Every 12-character piece of the canary's secret that the same kind's canary of
    another seed lacks (so not a fixed prefix such as ``https://hooks.``)."""
    secret, other = CANARIES[name].secret, _OTHER[name].secret
    found = {secret[i : i + _PIECE] for i in range(len(secret) - _PIECE + 1)}
    return {piece for piece in found if piece not in other}


_PIECES = {name: _pieces(name) for name in CANARIES}


def _assert_no_canary(where: str, text: str) -> None:
    """No canary, whole or as written in JSON, and no piece of one, in ``text``."""
    leaked = []
    for name, canary in CANARIES.items():
        forms = (canary.secret, json.dumps(canary.secret)[1:-1])
        if any(f in text for f in forms) or any(p in text for p in _PIECES[name]):
            leaked.append(name)
    assert leaked == [], f"{where} holds canaries of {leaked}"


def _canary_exports(harness: Harness, name: str, *, thread: bool) -> list[Path]:
    """Exports that together hold every canary in every field kind."""
    values = [(c.text, c.secret) for c in CANARIES.values()]
    paths = []
    for number, group in enumerate(_groups([v for v, _ in values], 400)):
        chosen = [(v, s) for v, s in values if v in group]
        path = write_hostile_export(
            harness.tmp / f"{name}-{number}.json", chosen, thread=thread, channel_values=group
        )
        paths.append(path)
    return paths


def _stored(harness: Harness, job_id: uuid.UUID) -> str:
    """The summary row and every column of the job row, as JSON."""
    with harness.session_factory() as session:
        job = session.get(Job, job_id)
        summary = session.scalars(select(Summary).where(Summary.job_id == job_id)).one()
        assert job is not None
        columns = {c.key: getattr(job, c.key) for c in Job.__mapper__.column_attrs}
        rows = {
            "summary": {c.key: getattr(summary, c.key) for c in Summary.__mapper__.column_attrs}
        }
        return json.dumps({"job": columns, **rows}, ensure_ascii=False, default=str)


def _redis_text(harness: Harness) -> str:
    """Every value under the test's Redis prefix (strings, lists, hashes, sets)."""
    parts: list[bytes] = []
    for key in harness.keys("*"):
        kind = harness.redis.type(key)  # type: ignore[no-untyped-call]
        if kind == b"string":
            parts.append(harness.redis.get(key) or b"")
        elif kind == b"list":
            parts += harness.redis.lrange(key, 0, -1)
        elif kind == b"hash":
            parts += [k + b" " + v for k, v in harness.redis.hgetall(key).items()]
        elif kind in (b"set", b"zset"):
            members = (
                harness.redis.smembers(key) if kind == b"set" else harness.redis.zrange(key, 0, -1)
            )
            parts += list(members)
        parts.append(key)
    return b"\n".join(parts).decode("utf-8", "replace")


def test_the_canaries_cover_every_kind_and_field() -> None:
    assert sorted({kind_of(name) for name in CANARIES}) == sorted(ALL_KINDS)
    assert all(len(_PIECES[name]) > 0 for name, c in CANARIES.items() if len(c.secret) >= 20)


@pytest.mark.parametrize("thread", [False, True], ids=["channel", "thread"])
@pytest.mark.parametrize("backend", ["llm", "offline"])
def test_no_canary_reaches_a_prompt_the_summary_redis_or_a_log_line(
    backend: str, thread: bool, make_harness: Callable[..., Harness], captured_logs: io.StringIO
) -> None:
    harness = make_harness(map_input_tokens=400)
    llm = harness.services.llm
    if backend == "offline":
        harness.services.llm = None
    try:
        paths = _canary_exports(harness, f"canaries-{backend}", thread=thread)
        raw = "".join(path.read_text(encoding="utf-8") for path in paths)
        # The input really holds every canary, in each field kind.
        for canary in CANARIES.values():
            assert raw.count(json.dumps(canary.secret)[1:-1]) >= len(MESSAGE_FIELDS) + 3
        runs = [harness.run(path, fmt=SummaryFormat.DETAILED) for path in paths]
    finally:
        harness.services.llm = llm
    stored = ""
    for run in runs:
        assert run.job.status == "completed", run.job.error
        assert run.content.backend == (
            "extractive" if backend == "offline" else run.content.backend
        )
        stored += _stored(harness, run.job.id)
    if backend == "llm":
        assert len(harness.fake.requests_seen) >= 2 * len(runs)
        _assert_no_canary("the prompts", json.dumps(harness.fake.requests_seen))
    else:
        assert not harness.fake.requests_seen
    assert "[secret]" in stored and "[email]" in stored  # the summaries quote redacted text
    _assert_no_canary("the stored summaries and job rows", stored)
    _assert_no_canary("Redis", _redis_text(harness))
    logs = captured_logs.getvalue()
    assert logs.count("fetch.done") >= len(runs) and "summarize.done" in logs
    assert '"level": "debug"' in logs
    _assert_no_canary("the logs", logs)


def test_the_message_cache_in_redis_holds_only_redacted_text(
    make_harness: Callable[..., Harness],
) -> None:
    harness = make_harness()
    recorder = RecordingEnqueuer()
    services = replace(harness.services, enqueuer=recorder, _core=None)
    texts = []
    for path in _canary_exports(harness, "canaries-cache", thread=False):
        params = JobParams(source=ExportFileSource(path=str(path)), destinations=[])
        job_id = submit_job(services.core(), OPERATOR, params).job_id
        job = lifecycle.load(harness.session_factory, job_id)
        assert job is not None
        steps = run_fetch(services, job)
        assert [step.task for step in steps] == ["summarybot.summarize"]
        assert len(harness.keys(f"fetch:{job_id}:*")) == 2
        texts.append(_redis_text(harness))
        meta = harness.redis.get(f"{harness.prefix}:fetch:{job_id}:meta")
        assert meta and b"topic" in meta
        harness.services.cache.delete(str(job_id))
    assert all("[secret]" in text for text in texts)
    _assert_no_canary("the Redis message cache", "\n".join(texts))
