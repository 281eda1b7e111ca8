"""How the fake OpenAI server counts tokens, independently of the product's own counting.

A fake that counted with ``shared.llm.tokens`` would agree with every mistake the product makes,
so this module shares nothing with it but OpenAI's published BPE data:

* tokenizing is ``tiktoken``'s own (its split patterns, special tokens and pinned SHA-256 of the
  rank files, from ``tiktoken_ext.openai_public``).  The rank files are copied from the
  repository's vendored gzip into tiktoken's cache directory, where tiktoken looks before it
  downloads; tiktoken refuses them if their hash is not the one it pins;
* model → encoding is this module's table, from tiktoken 0.14.0's ``model.py``;
* a chat request costs what the OpenAI cookbook says the API charges ("How to count tokens with
  tiktoken", verified there against the API: 129 tokens on gpt-4, 124 on gpt-4o for its
  example): 3 tokens per message plus its fields, 1 more per ``name``, 3 to prime the reply
  (gpt-3.5-turbo-0301: 4 per message, -1 per ``name``);
* the context window and output limit of each model are this module's table (OpenAI's model
  pages, as listed in the reference sheet).

What the API charges for a ``json_schema`` response format is not published.  The fake counts
the schema's compact JSON and its name: a stand-in, chosen without looking at how the product
estimates it.
"""

from __future__ import annotations

import functools
import gzip
import hashlib
import json
import os
import tempfile
import threading
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import tiktoken

__all__ = [
    "DEFAULT_ENCODING",
    "MODEL_LIMITS",
    "chat_prompt_tokens",
    "encoding_name",
    "load",
    "text_tokens",
    "truncate",
]

#: Model → (context window, max output tokens, reasoning model).  OpenAI's model pages:
#: developers.openai.com/api/docs/models/* and the provider tables cited in openai-api.md §6.
MODEL_LIMITS: dict[str, tuple[int, int, bool]] = {
    "gpt-4o": (128_000, 16_384, False),
    "gpt-4o-2024-05-13": (128_000, 4_096, False),
    "gpt-4o-mini": (128_000, 16_384, False),
    "gpt-4.1": (1_047_576, 32_768, False),
    "gpt-4.1-mini": (1_047_576, 32_768, False),
    "gpt-4.1-nano": (1_047_576, 32_768, False),
    "gpt-4-turbo": (128_000, 4_096, False),
    "gpt-4": (8_192, 8_192, False),
    "gpt-3.5-turbo": (16_385, 4_096, False),
    "o3-mini": (200_000, 100_000, True),
    "o4-mini": (200_000, 100_000, True),
}

# tiktoken 0.14.0 model.py: exact names first, then prefixes in its order (the first match wins).
_EXACT = {
    "o1": "o200k_base",
    "o3": "o200k_base",
    "o4-mini": "o200k_base",
    "gpt-5": "o200k_base",
    "gpt-4.1": "o200k_base",
    "gpt-4o": "o200k_base",
    "gpt-4": "cl100k_base",
    "gpt-3.5-turbo": "cl100k_base",
    "gpt-3.5": "cl100k_base",
    "gpt-35-turbo": "cl100k_base",
}
_PREFIXES = (
    ("o1-", "o200k_base"),
    ("o3-", "o200k_base"),
    ("o4-mini-", "o200k_base"),
    ("gpt-5", "o200k_base"),
    ("gpt-4.5-", "o200k_base"),
    ("gpt-4.1-", "o200k_base"),
    ("chatgpt-4o-", "o200k_base"),
    ("gpt-4o-", "o200k_base"),
    ("gpt-4-", "cl100k_base"),
    ("gpt-3.5-turbo-", "cl100k_base"),
    ("gpt-35-turbo-", "cl100k_base"),
    ("gpt-oss-", "o200k_harmony"),
    ("ft:gpt-4o", "o200k_base"),
    ("ft:gpt-4", "cl100k_base"),
    ("ft:gpt-3.5-turbo", "cl100k_base"),
)
#: Names tiktoken does not know (local models): the modern encoding.
DEFAULT_ENCODING = "o200k_base"

_BLOB = "https://openaipublic.blob.core.windows.net/encodings/{name}.tiktoken"
_VENDORED = Path(__file__).resolve().parents[2] / "shared" / "llm" / "data"
_seed_lock = threading.Lock()


def encoding_name(model: str) -> str:
    """The encoding OpenAI tokenizes ``model``'s requests with (o200k_base when unknown)."""
    if model in _EXACT:
        return _EXACT[model]
    for prefix, name in _PREFIXES:
        if model.startswith(prefix):
            return name
    return DEFAULT_ENCODING


def _tiktoken_cache() -> Path | None:
    """The directory tiktoken reads rank files from (tiktoken/load.py); None when disabled."""
    for variable in ("TIKTOKEN_CACHE_DIR", "DATA_GYM_CACHE_DIR"):
        if variable in os.environ:
            return Path(os.environ[variable]) if os.environ[variable] else None
    return Path(tempfile.gettempdir()) / "data-gym-cache"


def _seed(name: str) -> None:
    """Put the rank file of ``name`` where tiktoken looks before downloading it."""
    base = "o200k_base" if name == "o200k_harmony" else name
    cache = _tiktoken_cache()
    source = _VENDORED / f"{base}.tiktoken.gz"
    if cache is None or not source.exists():
        return  # tiktoken downloads it, or says why it cannot
    target = cache / hashlib.sha1(_BLOB.format(name=base).encode()).hexdigest()
    with _seed_lock:
        if target.exists():
            return
        cache.mkdir(parents=True, exist_ok=True)
        partial = target.with_name(f"{target.name}.{os.getpid()}.fake.tmp")
        partial.write_bytes(gzip.decompress(source.read_bytes()))
        os.replace(partial, target)  # other processes may seed the same cache


@functools.cache
def load(name: str) -> tiktoken.Encoding:
    """tiktoken's encoding ``name`` (``o200k_base``, ``cl100k_base``), loaded without network.

    Kept once loaded: seeding looks at the cache directory on disk, which a fake that counts
    every request's tokens must not do per call (it added most of a millisecond per chat
    request, charged to the client being measured).
    """
    _seed(name)
    return tiktoken.get_encoding(name)


def text_tokens(text: str, encoding: str) -> int:
    """Tokens of ``text``; special-token strings in it are plain text, as the API treats them."""
    return len(load(encoding).encode(text, disallowed_special=())) if text else 0


def truncate(text: str, tokens: int, encoding: str) -> str:
    """``text`` cut to its first ``tokens`` tokens."""
    enc = load(encoding)
    ids = enc.encode(text, disallowed_special=())
    return enc.decode(ids[:tokens]) if len(ids) > tokens else text


def _field_texts(value: Any) -> Iterable[str]:
    """The text a message field holds: a string, or the text parts of a content list."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, list):
        for part in value:
            if isinstance(part, Mapping) and isinstance(part.get("text"), str):
                yield part["text"]


def chat_prompt_tokens(
    messages: Iterable[Mapping[str, Any]],
    *,
    model: str,
    encoding: str | None = None,
    response_format: Mapping[str, Any] | None = None,
) -> int:
    """Prompt tokens of a chat request to ``model`` by the cookbook's rule, plus the
    json_schema stand-in; ``encoding`` overrides the one the model's name implies."""
    name = encoding or encoding_name(model)
    legacy = model.startswith("gpt-3.5-turbo-0301")
    per_message, per_name = (4, -1) if legacy else (3, 1)
    total = 3  # every reply is primed with <|start|>assistant<|message|>
    for message in messages:
        total += per_message
        for key, value in message.items():
            total += sum(text_tokens(text, name) for text in _field_texts(value))
            if key == "name":
                total += per_name
    return total + _schema_tokens(response_format, name)


def _schema_tokens(response_format: Mapping[str, Any] | None, encoding: str) -> int:
    if not response_format or response_format.get("type") != "json_schema":
        return 0
    spec = response_format.get("json_schema")
    if not isinstance(spec, Mapping):
        return 0
    schema = json.dumps(spec.get("schema"), separators=(",", ":"), ensure_ascii=False)
    return text_tokens(str(spec.get("name", "")), encoding) + text_tokens(schema, encoding)
