"""Exact, offline token counting for OpenAI's encodings (``o200k_base``, ``cl100k_base``).

``tiktoken`` downloads its BPE rank files on first use; this module never does.  The two rank
files are vendored in ``shared/llm/data/`` (gzip, from the MIT-licensed ``bpe-openai`` 0.1.4
wheel, byte-identical to OpenAI's published files) and checked against the SHA-256 tiktoken
pins before an :class:`tiktoken.Encoding` is built from them, so counts are exactly the API's.

Chat requests cost a few tokens more than their text: :func:`count_chat_tokens` applies
OpenAI's per-message framing (3 tokens per message, 1 per ``name``, 3 to prime the reply), and
:func:`estimate_prompt_tokens` adds the JSON schema of a structured request.  Servers that run
other model families (vLLM, Ollama, llama.cpp) use other tokenizers: treat counts there as
estimates and let ``usage`` from the response correct them.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import json
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import tiktoken

__all__ = [
    "ENCODINGS",
    "count_chat_tokens",
    "count_tokens",
    "encoding_for_model",
    "estimate_prompt_tokens",
    "get_encoding",
    "preload",
]

DATA_DIR = Path(__file__).with_name("data")

_ENDOFTEXT = "<|endoftext|>"
_ENDOFPROMPT = "<|endofprompt|>"


@dataclass(frozen=True, slots=True)
class _Spec:
    file: str
    sha256: str
    pat_str: str
    special_tokens: Mapping[str, int]


# The split patterns and special tokens are those of tiktoken_ext.openai_public; the tests
# check the resulting token ids against known API counts.
_O200K_PATTERN = "|".join(
    [
        r"""[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?""",
        r"""[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?""",
        r"""\p{N}{1,3}""",
        r""" ?[^\s\p{L}\p{N}]+[\r\n/]*""",
        r"""\s*[\r\n]+""",
        r"""\s+(?!\S)""",
        r"""\s+""",
    ]
)
_CL100K_PATTERN = (
    r"""'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}++|\p{N}{1,3}+| ?[^\s\p{L}\p{N}]++[\r\n]*+"""
    r"""|\s++$|\s*[\r\n]|\s+(?!\S)|\s"""
)

_SPECS: dict[str, _Spec] = {
    "o200k_base": _Spec(
        file="o200k_base.tiktoken.gz",
        sha256="446a9538cb6c348e3516120d7c08b09f57c36495e2acfffe59a5bf8b0cfb1a2d",
        pat_str=_O200K_PATTERN,
        special_tokens={_ENDOFTEXT: 199999, _ENDOFPROMPT: 200018},
    ),
    "cl100k_base": _Spec(
        file="cl100k_base.tiktoken.gz",
        sha256="223921b76ee99bde995b7ff738513eef100fb51d18c93597a113bcffe865b2a7",
        pat_str=_CL100K_PATTERN,
        special_tokens={
            _ENDOFTEXT: 100257,
            "<|fim_prefix|>": 100258,
            "<|fim_middle|>": 100259,
            "<|fim_suffix|>": 100260,
            _ENDOFPROMPT: 100276,
        },
    ),
}

#: Encodings available offline.
ENCODINGS: tuple[str, ...] = tuple(_SPECS)

# Model-name prefixes → encoding, most specific first (tiktoken/model.py, 0.14.0).
_MODEL_PREFIXES: tuple[tuple[str, str], ...] = (
    ("ft:gpt-4o", "o200k_base"),
    ("ft:gpt-4", "cl100k_base"),
    ("ft:gpt-3.5-turbo", "cl100k_base"),
    ("gpt-4o", "o200k_base"),
    ("chatgpt-4o", "o200k_base"),
    ("gpt-4.1", "o200k_base"),
    ("gpt-4.5", "o200k_base"),
    ("gpt-5", "o200k_base"),
    ("o1", "o200k_base"),
    ("o3", "o200k_base"),
    ("o4", "o200k_base"),
    ("gpt-4", "cl100k_base"),
    ("gpt-3.5", "cl100k_base"),
    ("gpt-35", "cl100k_base"),
    ("text-embedding-3", "cl100k_base"),
    ("text-embedding-ada-002", "cl100k_base"),
)

_lock = threading.Lock()
_cache: dict[str, tiktoken.Encoding] = {}


def _load_ranks(spec: _Spec) -> dict[bytes, int]:
    path = DATA_DIR / spec.file
    try:
        raw = gzip.decompress(path.read_bytes())
    except FileNotFoundError:
        raise RuntimeError(
            f"tokenizer data {path} is missing; reinstall the package "
            "(the files ship in shared/llm/data)"
        ) from None
    digest = hashlib.sha256(raw).hexdigest()
    if digest != spec.sha256:
        raise RuntimeError(
            f"tokenizer data {path} is corrupt (sha256 {digest}, expected {spec.sha256}); "
            "restore it from the repository"
        )
    ranks: dict[bytes, int] = {}
    for line in raw.splitlines():
        if line:
            token, rank = line.split()
            ranks[base64.b64decode(token)] = int(rank)
    return ranks


def get_encoding(name: str) -> tiktoken.Encoding:
    """The tiktoken encoding ``name``, built from vendored data (no network, cached)."""
    encoding = _cache.get(name)
    if encoding is not None:
        return encoding
    spec = _SPECS.get(name)
    if spec is None:
        raise ValueError(f"unknown encoding {name!r}; available offline: {', '.join(ENCODINGS)}")
    with _lock:
        encoding = _cache.get(name)
        if encoding is None:
            encoding = tiktoken.Encoding(
                name=name,
                pat_str=spec.pat_str,
                mergeable_ranks=_load_ranks(spec),
                special_tokens=dict(spec.special_tokens),
            )
            _cache[name] = encoding
    return encoding


def preload(models: Iterable[str]) -> tuple[str, ...]:
    """Load the encodings of ``models`` now; returns their names.

    A prefork worker calls this in its parent before the pool forks: every child (and every
    child that replaces one after ``worker_max_tasks_per_child`` tasks) then starts with the
    tables in memory it shares with its siblings, instead of each spending ~0.3 s and ~70 MB
    of its own on its first summary.
    """
    names = tuple(dict.fromkeys(encoding_for_model(model) for model in models))
    for name in names:
        get_encoding(name)
    return names


def encoding_for_model(model: str) -> str:
    """Encoding name for an OpenAI model name or snapshot; modern default ``o200k_base``."""
    lowered = model.strip().lower()
    for prefix, encoding in _MODEL_PREFIXES:
        if lowered.startswith(prefix):
            return encoding
    return "o200k_base"


def _resolve(model: str | None, encoding: str | None) -> tiktoken.Encoding:
    if encoding is not None:
        return get_encoding(encoding)
    return get_encoding(encoding_for_model(model or ""))


def count_tokens(text: str, *, model: str | None = None, encoding: str | None = None) -> int:
    """Number of tokens of ``text``; special-token strings count as ordinary text."""
    if not text:
        return 0
    return len(_resolve(model, encoding).encode_ordinary(text))


def _message_text(content: Any) -> Iterable[str]:
    if isinstance(content, str):
        yield content
    elif isinstance(content, list):
        for part in content:
            if isinstance(part, Mapping) and isinstance(part.get("text"), str):
                yield part["text"]


def count_chat_tokens(
    messages: Iterable[Mapping[str, Any]],
    *,
    model: str | None = None,
    encoding: str | None = None,
) -> int:
    """Prompt tokens of a chat request, with OpenAI's per-message framing.

    Each message costs 3 tokens plus its role, content and name (1 more when ``name`` is set);
    the reply is primed with 3 more.  gpt-3.5-turbo-0301 used 4 per message and -1 for a name.
    """
    enc = _resolve(model, encoding)
    legacy = bool(model) and str(model).startswith("gpt-3.5-turbo-0301")
    per_message, per_name = (4, -1) if legacy else (3, 1)
    total = 3
    for message in messages:
        total += per_message
        for key, value in message.items():
            if key == "content":
                total += sum(len(enc.encode_ordinary(t)) for t in _message_text(value))
            elif isinstance(value, str):
                total += len(enc.encode_ordinary(value))
                if key == "name":
                    total += per_name
    return total


def estimate_prompt_tokens(
    messages: Iterable[Mapping[str, Any]],
    *,
    model: str | None = None,
    encoding: str | None = None,
    response_format: Mapping[str, Any] | None = None,
) -> int:
    """Prompt tokens to reserve for a request: the chat count plus a structured-output schema.

    ``encoding`` is the model's when the registry knows it: a proxy's alias or a deployment
    name does not say which tokenizer the server counts with.  The API's exact charge for a
    ``json_schema`` response format is not published; counting the compact schema JSON is a
    close, slightly generous stand-in.
    """
    total = count_chat_tokens(messages, model=model, encoding=encoding)
    if response_format and response_format.get("type") == "json_schema":
        schema = json.dumps(response_format.get("json_schema", {}), separators=(",", ":"))
        total += count_tokens(schema, model=model, encoding=encoding)
    return total
