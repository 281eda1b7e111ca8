"""Loading the LLM settings from the environment; the in-process notes cache and scratch."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

from shared.llm.config import LLMSettings
from shared.settings import SettingsError, load_settings
from shared.summarize.llm.notes_cache import (
    MemoryNotesCache,
    MemoryScratchStore,
    line_from_wire,
    line_to_wire,
    notes_key,
)
from shared.summarize.transcript import TranscriptLine


def _load(monkeypatch: pytest.MonkeyPatch, env: dict[str, str]) -> LLMSettings:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return load_settings().llm


def test_no_llm_without_key_url_or_key_file(monkeypatch: pytest.MonkeyPatch) -> None:
    assert not _load(monkeypatch, {}).configured
    assert _load(monkeypatch, {"LLM_API_KEY_FILE": "/run/secrets/openai"}).configured


@pytest.mark.parametrize("variable", ["LLM_MODEL", "LLM_PROVIDER"])
def test_a_chosen_llm_without_an_endpoint_is_refused(
    monkeypatch: pytest.MonkeyPatch, variable: str
) -> None:
    # It used to summarize offline without a word: the operator meant the LLM.
    value = "gpt-4o" if variable == "LLM_MODEL" else "openai"
    with pytest.raises(SettingsError) as info:
        _load(monkeypatch, {variable: value})
    assert info.value.lines == [
        f"{variable}: set, but no LLM endpoint is configured; set OPENAI_API_KEY (or "
        f"LLM_API_KEY_FILE), or LLM_BASE_URL for a local server; or unset {variable} to "
        "summarize offline"
    ]


def test_fields_come_from_their_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    loaded = _load(
        monkeypatch,
        {
            "OPENAI_API_KEY": "sk-abc",
            "LLM_MODEL": "gpt-4.1-mini",
            "LLM_FALLBACK_MODEL": "gpt-4o-mini",
            "OPENAI_ORG_ID": "org-1",
            "LLM_PROJECT": "proj-2",
            "LLM_MAP_INPUT_TOKENS": "4000",
            "LLM_DEGRADED_FALLBACK_GUILDS": "11, 22",
            "LLM_OVER_BUDGET": "degrade",
            "LLM_MODELS": '{"llama3.1:8b": {"context_window": 131072, "max_output_tokens": 4096}}',
            "LLM_TEMPERATURE": " ",  # blank is unset
            "API_KEY": "not-ours",  # only OPENAI_API_KEY names the key
        },
    )
    assert loaded.configured
    assert loaded.api_key is not None and loaded.api_key.get_secret_value() == "sk-abc"
    assert (loaded.model, loaded.fallback_model) == ("gpt-4.1-mini", "gpt-4o-mini")
    assert (loaded.organization, loaded.project) == ("org-1", "proj-2")
    assert loaded.map_input_tokens == 4000 and loaded.temperature == 0.2
    assert loaded.degraded_fallback_guilds == frozenset({"11", "22"})
    assert loaded.degraded_allowed("22") and not loaded.degraded_allowed("33")
    assert not loaded.degraded_allowed(None)
    assert loaded.over_budget == "degrade"
    assert loaded.models["llama3.1:8b"]["context_window"] == 131072


def test_local_server_needs_no_key_and_reads_dotenv(tmp_path: Path) -> None:
    # The tests run in a fresh working directory: ``.env`` there is the one every group reads.
    Path(".env").write_text(
        "LLM_BASE_URL=http://localhost:11434/v1\nLLM_MODEL=llama3.1:8b\n"
        "LLM_DEGRADED_FALLBACK=true\n"
    )
    loaded = load_settings().llm
    assert loaded.configured and loaded.effective_provider == "ollama"
    assert loaded.model == "llama3.1:8b" and loaded.degraded_allowed("any")


def test_bad_values_name_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(SettingsError) as info:
        _load(monkeypatch, {"LLM_MAP_INPUT_TOKENS": "lots", "LLM_OVER_BUDGET": "maybe"})
    assert [line.split(":")[0] for line in info.value.lines] == [
        "LLM_MAP_INPUT_TOKENS",
        "LLM_OVER_BUDGET",
    ]
    monkeypatch.delenv("LLM_MAP_INPUT_TOKENS")
    monkeypatch.delenv("LLM_OVER_BUDGET")
    with pytest.raises(SettingsError, match="LLM_MODELS: not valid JSON") as info:
        _load(monkeypatch, {"LLM_MODELS": "{nope", "LLM_MAX_OUTPUT_TOKENS": "many"})
    # A variable that is not JSON hides no other problem of its group.
    assert [line.split(":")[0] for line in info.value.lines] == [
        "LLM_MODELS",
        "LLM_MAX_OUTPUT_TOKENS",
    ]
    assert "(Expecting property name enclosed in double quotes at line 1 column 2)" in str(
        info.value
    )
    monkeypatch.delenv("LLM_MODELS")
    monkeypatch.delenv("LLM_MAX_OUTPUT_TOKENS")
    loaded = _load(monkeypatch, {"LLM_MODELS": '{"m": {"context_window": 8192}}'})
    assert loaded.models == {"m": {"context_window": 8192}}
    assert LLMSettings.env_name("api_key") == "OPENAI_API_KEY"
    assert LLMSettings.env_name("organization") == "OPENAI_ORG_ID"
    assert LLMSettings.env_name("map_input_tokens") == "LLM_MAP_INPUT_TOKENS"


def test_memory_notes_cache_expires_and_stays_bounded() -> None:
    cache = MemoryNotesCache(ttl=1, max_entries=2)
    key = notes_key(kind="map", channel_id="c", content_hash="h", prompt_version="p", model="m")
    assert key == "map:c:m:p:h"
    cache.put(key, {"key_points": []})
    cache.put("b", {"n": 2})
    cache.put("c", {"n": 3})  # evicts the least recently used
    assert cache.get_many([key, "b", "c"]) == [None, {"n": 2}, {"n": 3}]
    cache._entries["b"] = (time.monotonic() - 1, cache._entries["b"][1])
    assert cache.get_many(["b"]) == [None]
    off = MemoryNotesCache(ttl=0)
    off.put("x", {"n": 1})
    assert off.get_many(["x"]) == [None]


def test_scratch_keeps_chunks_and_cited_lines_per_job() -> None:
    line = TranscriptLine(
        alias="m3",
        message_id="903",
        timestamp=datetime(2024, 1, 1, tzinfo=UTC),
        author_id="u1",
        author="ann",
        reply_alias="m1",
        text="short[…]",
        source_text="the whole text",
        reactions=2,
        is_pinned=True,
        mentions=("bob",),
    )
    assert line_from_wire(line_to_wire(line)) == line
    store = MemoryScratchStore()
    store.put_chunk("j", 0, [line])
    store.put_cited("j", [line])
    assert store.get_chunk("j", 0) == [line] and store.get_chunk("j", 1) is None
    assert store.get_cited("j", ["903", "904"]) == {"903": line}
    store.delete("j")
    assert store.get_chunk("j", 0) is None and store.get_cited("j", ["903"]) == {}
