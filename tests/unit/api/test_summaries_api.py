"""GET /v1/summaries/{id}: the JSON document (valid against its published schema) or Markdown."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import jsonschema
import pytest

from producers.api.routes.summaries import preferred_type
from tests.unit.api.conftest import Api, insert_summary

pytestmark = pytest.mark.integration

SCHEMA = json.loads(
    (Path(__file__).parents[3] / "schema" / "json" / "summary-document.v1.json").read_text()
)


def test_json_document_matches_the_published_schema(api: Api) -> None:
    job_id, summary_id = insert_summary(api.session_factory, api.guild)
    token = api.key(("summaries:read",))
    response = api.client.get(f"/v1/summaries/{summary_id}", headers=api.auth(token))
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    document = response.json()
    jsonschema.validate(document, SCHEMA)
    assert document["$schema"].endswith("summary-document.v1.json")
    assert document["job_id"] == str(job_id)
    assert document["summary_id"] == str(summary_id)
    assert document["prompt_version"] == "test-1"
    assert document["duration_seconds"] == pytest.approx(3, abs=0.5)
    assert document["summary"]["participants"][0]["name"] == "alice"


@pytest.mark.parametrize(
    ("query", "accept"),
    [
        ("?format=markdown", None),
        ("", "text/markdown"),
        ("", "application/json;q=0.5, text/markdown"),
        ("?format=markdown", "application/json"),
    ],
)
def test_markdown_by_query_or_accept(api: Api, query: str, accept: str | None) -> None:
    _job, summary_id = insert_summary(api.session_factory, api.guild)
    token = api.key(("summaries:read",))
    headers = api.auth(token) | ({"Accept": accept} if accept else {})
    response = api.client.get(f"/v1/summaries/{summary_id}{query}", headers=headers)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/markdown")
    text = response.text
    assert text.startswith("# Summary of #general")
    assert "https://discord.com/channels/" in text


def test_json_wins_unless_markdown_is_preferred_and_406_otherwise(api: Api) -> None:
    _job, summary_id = insert_summary(api.session_factory, api.guild)
    token = api.key(("summaries:read",))
    url = f"/v1/summaries/{summary_id}"
    for accept in ("*/*", "application/json, text/markdown", "text/*;q=0.2, */*;q=0.5"):
        response = api.client.get(url, headers=api.auth(token) | {"Accept": accept})
        assert response.headers["content-type"] == "application/json", accept
    refused = api.client.get(url, headers=api.auth(token) | {"Accept": "image/png"})
    assert refused.status_code == 406
    assert refused.headers["content-type"] == "application/problem+json"
    forced = api.client.get(url + "?format=json", headers=api.auth(token) | {"Accept": "image/png"})
    assert forced.status_code == 200
    bad = api.client.get(url + "?format=pdf", headers=api.auth(token))
    assert bad.status_code == 422
    assert bad.json()["errors"][0]["location"] == "query"
    assert (
        api.client.get(f"/v1/summaries/{uuid.uuid4()}", headers=api.auth(token)).status_code == 404
    )


def test_preferred_type() -> None:
    assert preferred_type(None) == "application/json"
    assert preferred_type("text/markdown;q=0.9, application/json;q=0.8") == "text/markdown"
    assert preferred_type("text/markdown;q=abc, application/json") == "application/json"
    assert preferred_type("application/*") == "application/json"
    assert preferred_type("text/plain") is None
    assert preferred_type(" , ") == "application/json"
