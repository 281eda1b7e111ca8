"""The fake OpenAI judges a strict ``json_schema`` as OpenAI does (Structured Outputs guide,
"Supported schemas"; errors as observed from the API): what OpenAI refuses it refuses with the
same 400, what OpenAI serves it serves with an answer valid against the schema."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from tests.fakes.openai_server import FakeOpenAIServer

ASK = [{"role": "user", "content": "Summarize: [m1 alice] ship the fix on friday"}]


def _obj(**props: Any) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": props,
        "required": list(props),
        "additionalProperties": False,
    }


def _post(fake: FakeOpenAIServer, schema: dict[str, Any]) -> httpx.Response:
    body = {
        "model": "gpt-4o-mini",
        "messages": ASK,
        "max_completion_tokens": 400,
        "response_format": {
            "type": "json_schema",
            "json_schema": {"name": "answer", "strict": True, "schema": schema},
        },
    }
    return httpx.post(
        f"{fake.base_url}/chat/completions",
        json=body,
        headers={"Authorization": "Bearer sk-test"},
        timeout=10,
    )


_STRING = {"type": "string"}
_LOOSE_BRANCH = {"type": "object", "properties": {"a": _STRING}, "required": ["a"]}


@pytest.mark.parametrize(
    ("schema", "message"),
    [
        (
            {"type": "array", "items": _STRING},
            """schema must be a JSON Schema of 'type: "object"', got 'type: "array"'.""",
        ),
        ({"anyOf": [_obj(a=_STRING), _obj(b=_STRING)]}, "got 'type: \"anyOf\"'"),
        (
            _obj(u={"anyOf": [_LOOSE_BRANCH, {"type": "null"}]}),
            "In context=('properties', 'u', 'anyOf', '0'), 'additionalProperties' is required",
        ),
        (
            {**_obj(a=_STRING, b=_STRING), "required": ["a"]},
            "In context=(), 'required' is required to be supplied and to be an array including "
            "every key in properties. Missing 'b'.",
        ),
        (_obj(a={"allOf": [_STRING]}), "In context=('properties', 'a'), 'allOf' is not permitted."),
        (_obj(a={"not": _STRING, "type": "string"}), "'not' is not permitted."),
        (_obj(a={"type": "array", "items": _STRING, "uniqueItems": True}), "'uniqueItems'"),
        (_obj(a={"description": "anything"}), "schema must have a 'type' key."),
        (_obj(a={"type": "string", "format": "uri"}), "'uri' is not a valid format."),
        (_obj(**{f"p{i}": _STRING for i in range(5001)}), "above the limit of 5000"),
        (
            _obj(a={"type": "string", "enum": [f"v{i}" for i in range(1001)]}),
            "1001 enum values in total",
        ),
        (
            _obj(a={"type": "string", "enum": [f"{i:03d}" + "x" * 60 for i in range(251)]}),
            "may have at most 15000 characters",
        ),
    ],
)
def test_the_fake_refuses_what_openai_refuses(
    fake: FakeOpenAIServer, schema: dict[str, Any], message: str
) -> None:
    answer = _post(fake, schema)
    assert answer.status_code == 400, answer.text
    error = answer.json()["error"]
    assert error["message"].startswith("Invalid schema for response_format 'answer': ")
    assert message in error["message"]
    # Chat Completions names the parameter and sends no code with this error.
    assert (error["type"], error["param"], error["code"]) == (
        "invalid_request_error",
        "response_format",
        None,
    )


def _depth(levels: int) -> dict[str, Any]:
    schema = _obj(leaf=_STRING)
    for _ in range(levels):
        schema = _obj(inner=schema)
    return schema


def test_nesting_counts_object_levels_not_arrays(fake: FakeOpenAIServer) -> None:
    assert _post(fake, _depth(9)).status_code == 200
    assert "more than 10 levels" in _post(fake, _depth(10)).json()["error"]["message"]
    # Arrays of objects are as deep as their objects.
    listed = _obj(leaf=_STRING)
    for _ in range(9):
        listed = _obj(items={"type": "array", "items": listed})
    assert _post(fake, listed).status_code == 200


@pytest.mark.parametrize(
    "schema",
    [
        # Recursion through the root, as the guide's UI example does.
        _obj(name=_STRING, children={"type": "array", "items": {"$ref": "#"}}),
        _obj(
            when={"type": "string", "format": "date-time"},
            id={"type": "string", "format": "uuid"},
            score={"type": "integer", "minimum": 3, "maximum": 9},
            ratio={"type": "number", "exclusiveMinimum": 0, "maximum": 1},
            tags={"type": "array", "items": _STRING, "minItems": 5, "maxItems": 6},
            kind={"type": "string", "const": "summary"},
            note={"anyOf": [_STRING, {"type": "null"}]},
        ),
        {
            **_obj(point={"$ref": "#/$defs/point"}),
            "$defs": {"point": _obj(text=_STRING, ids={"type": "array", "items": _STRING})},
        },
    ],
)
def test_the_fake_serves_what_openai_serves(fake: FakeOpenAIServer, schema: dict[str, Any]) -> None:
    answer = _post(fake, schema)
    assert answer.status_code == 200, answer.text
    data = json.loads(answer.json()["choices"][0]["message"]["content"])
    assert set(data) == set(schema["properties"])
    if "score" in data:
        assert 3 <= data["score"] <= 9 and 0 < data["ratio"] <= 1
        assert 5 <= len(data["tags"]) <= 6 and data["kind"] == "summary"
