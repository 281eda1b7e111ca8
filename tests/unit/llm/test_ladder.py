"""The ladder's decisions that need no server: where to start, what an answer teaches, probes."""

from __future__ import annotations

import threading

import pytest

from shared.llm.capabilities import LocalCapabilityStore, ModeVerdict, server_key
from shared.llm.ladder import (
    RungOutcome,
    await_probe,
    learn,
    plan_rungs,
    repair_prompt,
    response_format,
    unusable_detail,
)
from shared.llm.structured import JsonReader, Reading


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def verdict(name: str) -> ModeVerdict:
    return ModeVerdict(name, "because", float("inf"))  # type: ignore[arg-type]


def test_plan_starts_at_the_configured_rung_and_skips_what_the_server_does_not_do() -> None:
    assert plan_rungs("auto", {}, supports_json_schema=True) == (
        "json_schema",
        "json_object",
        "text",
    )
    assert plan_rungs("auto", {}, supports_json_schema=False) == ("json_object", "text")
    assert plan_rungs("json_object", {}, supports_json_schema=True) == ("json_object", "text")
    rejected = {"json_schema": verdict("rejected")}
    assert plan_rungs("auto", rejected, supports_json_schema=True) == ("json_object", "text")
    both = {"json_schema": verdict("rejected"), "json_object": verdict("ignored")}
    assert plan_rungs("auto", both, supports_json_schema=True) == ("text",)
    assert plan_rungs("auto", {"json_schema": verdict("ok")}, supports_json_schema=True)[0] == (
        "json_schema"
    )
    # The text rung is never skipped: the ladder always ends there.
    assert plan_rungs("text", {"text": verdict("ignored")}, supports_json_schema=True) == ("text",)


@pytest.mark.parametrize(
    ("mode", "shape", "fits", "finish", "expected"),
    [
        ("json_schema", "json", True, "stop", "ok"),
        ("json_schema", "coerced", True, "stop", "ignored"),
        ("json_schema", "prose", False, "stop", "ignored"),
        ("json_schema", "none", False, "stop", None),  # broken JSON: no evidence either way
        ("json_schema", "prose", False, "length", None),  # cut off: no evidence
        ("json_object", "json", False, "stop", "ok"),  # JSON mode promises JSON, not the shape
        ("json_object", "coerced", True, "stop", "ok"),
        ("json_object", "prose", True, "stop", "ignored"),
        ("text", "prose", True, "stop", None),
    ],
)
def test_what_an_answer_teaches(
    mode: str, shape: str, fits: bool, finish: str, expected: str | None
) -> None:
    got, why = learn(mode, Reading({}, shape), fits=fits, finish=finish)  # type: ignore[arg-type]
    assert got == expected
    assert bool(why) is (expected is not None)


def test_local_store_expires_verdicts_so_an_upgraded_server_is_probed_again() -> None:
    clock = Clock()
    store = LocalCapabilityStore(ttl=60, clock=clock)
    server = server_key("http://vllm:8000/v1/", "llama")
    assert server == "http://vllm:8000/v1|llama"
    store.record(server, "json_schema", "rejected", "400")
    assert store.verdicts(server)["json_schema"].verdict == "rejected"
    assert store.verdicts("http://other/v1|llama") == {}
    clock.now += 61
    assert store.verdicts(server) == {}
    with pytest.raises(ValueError, match="unknown verdict"):
        store.record(server, "json_schema", "maybe", "?")  # type: ignore[arg-type]


def test_one_caller_probes_an_unknown_rung_the_others_wait_for_its_verdict() -> None:
    clock = Clock()
    store = LocalCapabilityStore(ttl=600, clock=clock)
    server = server_key("http://x/v1", "m")
    assert await_probe(store, server, "json_schema", lease=10, wait=5, clock=clock) == (True, None)

    def verdict_arrives(seconds: float) -> None:
        clock.sleep(seconds)
        store.record(server, "json_schema", "rejected", "400")

    # The second caller polls until the prober's verdict is there.
    got = await_probe(
        store, server, "json_schema", lease=10, wait=5, clock=clock, sleep=verdict_arrives
    )
    assert got[0] is False and got[1] is not None and got[1].verdict == "rejected"


def test_a_wait_that_runs_out_goes_ahead_and_a_dead_probers_lease_expires() -> None:
    clock = Clock()
    store = LocalCapabilityStore(ttl=600, clock=clock)
    server = server_key("http://x/v1", "m")
    assert store.try_probe(server, "json_object", 10)
    assert await_probe(
        store, server, "json_object", lease=10, wait=2, clock=clock, sleep=clock.sleep
    ) == (False, None)
    clock.now += 20  # the prober died without a verdict: its lease lapses
    assert store.try_probe(server, "json_object", 10)
    store.end_probe(server, "json_object")
    assert store.try_probe(server, "json_object", 10)


def test_local_store_is_safe_across_threads() -> None:
    store = LocalCapabilityStore(ttl=600)
    wins: list[bool] = []
    barrier = threading.Barrier(8)

    def race() -> None:
        barrier.wait()
        wins.append(store.try_probe("s", "json_schema", 30))

    threads = [threading.Thread(target=race) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert wins.count(True) == 1


def test_requests_and_messages_of_each_rung() -> None:
    schema = {"type": "object", "properties": {}}
    assert response_format("json_schema", "notes", schema) == {
        "type": "json_schema",
        "json_schema": {"name": "notes", "schema": schema, "strict": True},
    }
    assert response_format("json_object", "notes", schema) == {"type": "json_object"}
    assert response_format("text", "notes", schema) is None
    reader = JsonReader()
    assert reader.instructions("json_schema", schema) is None
    assert "<schema>" in (reader.instructions("text", schema) or "")
    text = repair_prompt(["key_points: cites nothing"], truncated=True, mode="text")
    assert "cut off" in text and "format asked for" in text and "JSON" not in text
    assert "JSON object only" in repair_prompt(["x"], truncated=False, mode="json_object")
    outcomes = [
        RungOutcome("json_schema", "rejected by the server (400)"),
        RungOutcome("text", "answers did not fit (nothing cited)"),
    ]
    assert unusable_detail(outcomes) == (
        "json_schema: rejected by the server (400); text: answers did not fit (nothing cited)"
    )
