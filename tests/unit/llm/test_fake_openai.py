"""The fake OpenAI server writes what the real one does (helpers tested without a socket)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import tiktoken

from shared.ratelimit.llm import parse_duration
from tests.fakes import openai_usage
from tests.fakes.openai_server import FakeConfig, FakeModel, _go_duration
from tests.unit.llm.test_tokens import COOKBOOK

ROOT = Path(__file__).resolve().parents[3]


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0.0, "0s"),
        (0.0004, "0s"),
        (0.02, "20ms"),
        (0.9996, "1s"),
        (1.0, "1s"),
        (1.146, "1.146s"),
        (1.5, "1.5s"),
        (12.345, "12.345s"),
        (59.9996, "1m0s"),
        (60.00001, "1m0s"),
        (237.024, "3m57.024s"),
        (360.0, "6m0s"),
        (3600.0, "1h0m0s"),
        (3723.0, "1h2m3s"),
        (-1.0, "0s"),
    ],
)
def test_waits_are_go_durations_rounded_to_milliseconds(seconds: float, text: str) -> None:
    assert _go_duration(seconds) == text


@pytest.mark.parametrize("seconds", [0.001, 0.0126, 0.999, 1.0005, 59.999, 61.25, 3599.9, 86399.5])
def test_waits_read_back_to_the_millisecond(seconds: float) -> None:
    assert parse_duration(_go_duration(seconds)) == pytest.approx(seconds, abs=0.0005)


# The fake counts tokens as the API does, sharing nothing with the product's own counting.

ISOLATED = """
import socket, sys

def no_network(*args, **kwargs):
    raise AssertionError("the fake's tokenizer tried to use the network")

socket.socket.connect = no_network
import tests.fakes.openai_server
from tests.fakes.openai_usage import chat_prompt_tokens
counts = [chat_prompt_tokens(COOKBOOK, model=m) for m in ("gpt-4", "gpt-4o")]
product = sorted(m for m in sys.modules if m == "shared" or m.startswith("shared."))
print(counts, product)
"""


def test_the_fake_counts_offline_without_the_products_code(tmp_path: Path) -> None:
    # A fresh process: what the fake imports, and where tiktoken finds its rank files (an
    # empty cache of its own, seeded by the fake, with the network cut).
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TIKTOKEN_CACHE_DIR": str(tmp_path)}
    script = f"COOKBOOK = {COOKBOOK!r}\n{ISOLATED}"
    done = subprocess.run(
        [sys.executable, "-c", script], env=env, cwd=ROOT, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[129, 124] []"  # the cookbook's API-verified counts


def test_the_cookbook_rule_counts_names_and_text_parts() -> None:
    hello = [{"role": "user", "content": "Hello!"}]
    assert openai_usage.chat_prompt_tokens(hello, model="gpt-4o") == 9
    named = [{"role": "user", "name": "bob", "content": "Hello!"}]
    # the name's own token and one more
    assert openai_usage.chat_prompt_tokens(named, model="gpt-4o") == 9 + 1 + 1
    parts = [{"role": "user", "content": [{"type": "text", "text": "Hello!"}]}]
    assert openai_usage.chat_prompt_tokens(parts, model="gpt-4o") == 9
    legacy = openai_usage.chat_prompt_tokens(COOKBOOK, model="gpt-3.5-turbo-0301")
    # six messages at 4 instead of 3, four names at -1 instead of +1
    assert legacy == 129 + 6 - 8


@pytest.mark.parametrize(
    "model",
    [
        *openai_usage.MODEL_LIMITS,
        "gpt-4o-mini-2024-07-18",
        "gpt-4-0613",
        "gpt-3.5-turbo-0125",
        "gpt-35-turbo",
        "chatgpt-4o-latest",
        "ft:gpt-4o-mini-2024-07-18:org::abc",
        "ft:gpt-3.5-turbo:org::abc",
        "gpt-5-mini",
        "o1",
    ],
)
def test_the_fakes_encoding_table_is_tiktokens(model: str) -> None:
    assert openai_usage.encoding_name(model) == tiktoken.encoding_name_for_model(model)


def test_a_served_alias_counts_with_the_encoding_behind_it() -> None:
    alias = FakeModel("summarizer", 8_192, 4_096, encoding="cl100k_base")
    assert alias.tokenizer == "cl100k_base"
    assert FakeModel("llama3", 8_192, 2_048).tokenizer == "o200k_base"
    gpt4 = FakeConfig().models["gpt-4"]
    assert (gpt4.context_window, gpt4.tokenizer) == (8_192, "cl100k_base")
