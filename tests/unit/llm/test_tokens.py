"""Offline token counting: exact ids, chat framing, no network, corrupt data detected."""

from __future__ import annotations

import gzip
import socket
from pathlib import Path

import pytest

from shared.llm import tokens

COOKBOOK = [
    {
        "role": "system",
        "content": "You are a helpful, pattern-following assistant that translates corporate "
        "jargon into plain English.",
    },
    {
        "role": "system",
        "name": "example_user",
        "content": "New synergies will help drive top-line growth.",
    },
    {
        "role": "system",
        "name": "example_assistant",
        "content": "Things working well together will increase revenue.",
    },
    {
        "role": "system",
        "name": "example_user",
        "content": "Let's circle back when we have more bandwidth to touch base on opportunities "
        "for increased leverage.",
    },
    {
        "role": "system",
        "name": "example_assistant",
        "content": "Let's talk later when we're less busy about how to do better.",
    },
    {
        "role": "user",
        "content": "This late pivot means we don't have time to boil the ocean for the client "
        "deliverable.",
    },
]


def test_known_token_ids_without_network(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_network(*args: object, **kwargs: object) -> None:
        raise AssertionError("tokenizer tried to use the network")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    monkeypatch.setattr(tokens, "_cache", {})
    assert tokens.get_encoding("cl100k_base").encode("hello world") == [15339, 1917]
    assert tokens.get_encoding("o200k_base").encode("hello world") == [24912, 2375]


def test_chat_framing_matches_the_api_counts() -> None:
    # The cookbook's example costs 129 prompt tokens on gpt-4/3.5 and 124 on gpt-4o (API-verified).
    assert tokens.count_chat_tokens(COOKBOOK, model="gpt-4") == 129
    assert tokens.count_chat_tokens(COOKBOOK, model="gpt-4o") == 124
    assert tokens.count_chat_tokens(COOKBOOK, model="gpt-4.1-mini") == 124
    assert tokens.count_chat_tokens([{"role": "user", "content": "Hello!"}], model="gpt-4o") == 9
    legacy = tokens.count_chat_tokens(COOKBOOK, model="gpt-3.5-turbo-0301")
    assert legacy == 129 + 6 - 2 * 4  # 4 per message, -1 per name


def test_content_parts_and_special_tokens() -> None:
    parts = [
        {
            "role": "user",
            "content": [{"type": "text", "text": "hello world"}, {"type": "image_url"}],
        }
    ]
    assert tokens.count_chat_tokens(parts, model="gpt-4o") == 3 + 1 + 2 + 3
    # Special-token strings in user text are plain text, never control tokens.
    assert tokens.count_tokens("<|endoftext|>", model="gpt-4o") > 1
    assert tokens.count_tokens("") == 0


@pytest.mark.parametrize(
    ("model", "encoding"),
    [
        ("gpt-4o-mini-2024-07-18", "o200k_base"),
        ("gpt-4.1", "o200k_base"),
        ("o3-mini", "o200k_base"),
        ("gpt-4-turbo", "cl100k_base"),
        ("gpt-3.5-turbo-0125", "cl100k_base"),
        ("ft:gpt-4o-mini:org::id", "o200k_base"),
        ("llama3.1:8b", "o200k_base"),
    ],
)
def test_encoding_for_model(model: str, encoding: str) -> None:
    assert tokens.encoding_for_model(model) == encoding


def test_schema_adds_to_the_prompt_estimate() -> None:
    messages = [{"role": "user", "content": "summarize"}]
    plain = tokens.estimate_prompt_tokens(messages, model="gpt-4o")
    schema = {"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "object"}}}
    assert tokens.estimate_prompt_tokens(messages, model="gpt-4o", response_format=schema) > plain
    assert (
        tokens.estimate_prompt_tokens(
            messages, model="gpt-4o", response_format={"type": "json_object"}
        )
        == plain
    )


def test_the_estimate_counts_with_the_encoding_it_is_given() -> None:
    # An alias names no model: the registry's encoding, not the name's default, decides.
    schema = {"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "object"}}}
    alias = tokens.estimate_prompt_tokens(
        COOKBOOK, model="summarizer", encoding="cl100k_base", response_format=schema
    )
    gpt4 = tokens.estimate_prompt_tokens(COOKBOOK, model="gpt-4", response_format=schema)
    assert alias == gpt4
    assert tokens.estimate_prompt_tokens(COOKBOOK, model="summarizer") == 124  # o200k_base


def test_unknown_encoding_is_refused() -> None:
    with pytest.raises(ValueError, match="available offline"):
        tokens.get_encoding("p50k_base")


def test_corrupt_or_missing_data_fails_loudly(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tokens, "DATA_DIR", tmp_path)
    monkeypatch.setattr(tokens, "_cache", {})
    with pytest.raises(RuntimeError, match="missing"):
        tokens.get_encoding("cl100k_base")
    (tmp_path / "cl100k_base.tiktoken.gz").write_bytes(gzip.compress(b"aGVsbG8= 0\n"))
    with pytest.raises(RuntimeError, match="corrupt"):
        tokens.get_encoding("cl100k_base")
