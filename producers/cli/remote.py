"""``summarybot summarize EXPORT.json --api URL --key KEY``: summarize on a remote deployment.

The file is streamed to ``POST /v1/jobs/upload`` (never read whole into memory), the job is
polled until it ends, and the stored summary is printed exactly as the local command prints it
(text, or the JSON document with ``--json``; ``--output`` also writes it).  The key is a plain
bearer key with the ``jobs:write`` and ``summaries:read`` scopes.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from producers.cli.jobrun import JobFailed, RunOptions
from schema.models.jobs import JobStatus
from shared.errors import InvalidInputError
from shared.summarize.render import SummaryDocument, render_json, render_markdown, render_text

__all__ = ["RemoteApi", "run_remote_summary"]

_CHUNK = 256 * 1024
_ENDED = frozenset(status.value for status in JobStatus if status.finished)
_FAILED = frozenset({JobStatus.FAILED.value, JobStatus.CANCELLED.value})


@dataclass(frozen=True)
class RemoteApi:
    """Where the deployment's API is and the key to call it with."""

    url: str
    key: str
    timeout: float = 600.0
    poll_seconds: float = 1.0


def _stream(path: Path) -> Iterator[bytes]:
    with path.open("rb") as handle:
        while chunk := handle.read(_CHUNK):
            yield chunk


def _problem(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return f"the API answered {response.status_code}: {response.text[:200]}"
    detail = body.get("detail") if isinstance(body, dict) else None
    return f"the API answered {response.status_code}: {detail or response.text[:200]}"


def _checked(response: httpx.Response) -> Any:
    if response.status_code >= 400:
        raise InvalidInputError(_problem(response))
    return response.json()


def run_remote_summary(api: RemoteApi, options: RunOptions) -> SummaryDocument:
    """Upload ``options.export``, wait for its job, print the summary; the document.

    Raises :class:`InvalidInputError` for a refused request (the API's own words) and
    :class:`JobFailed` when the job fails or does not end within ``api.timeout``.
    """
    assert options.export is not None
    path = options.export.expanduser()
    if not path.is_file():
        raise InvalidInputError(f"{path}: no such file; give the path of the export to upload")
    query: dict[str, Any] = {"format": options.format.value}
    if options.language:
        query["language"] = options.language
    if options.max_messages:
        query["max_messages"] = options.max_messages
    headers = {"Authorization": f"Bearer {api.key}"}
    base = api.url.rstrip("/")
    try:
        with httpx.Client(base_url=base, headers=headers, timeout=api.timeout) as client:
            job = _checked(
                client.post(
                    "/v1/jobs/upload",
                    params=query,
                    headers={"Content-Type": "application/json"},
                    content=_stream(path),
                )
            )
            deadline = time.monotonic() + api.timeout
            while job["status"] not in _ENDED:
                if time.monotonic() > deadline:
                    raise JobFailed(
                        f"job {job['id']} did not finish within {api.timeout:.0f} s; it goes on "
                        f"on the server (GET {base}/v1/jobs/{job['id']})"
                    )
                time.sleep(api.poll_seconds)
                job = _checked(client.get(f"/v1/jobs/{job['id']}"))
            if job["status"] in _FAILED or job.get("summary_id") is None:
                raise JobFailed(job.get("error") or f"job ended {job['status']}")
            document = SummaryDocument.model_validate(
                _checked(client.get(f"/v1/summaries/{job['summary_id']}"))
            )
    except httpx.HTTPError as exc:
        raise InvalidInputError(
            f"cannot reach the API at {base} ({exc}); check --api and that the server runs"
        ) from None
    if options.as_json:
        sys.stdout.write(render_json(document))
    else:
        sys.stdout.write(render_text(document.summary, duration_seconds=document.duration_seconds))
    if options.output is not None:
        rendered = (
            render_json(document)
            if options.as_json
            else render_markdown(document.summary, duration_seconds=document.duration_seconds)
        )
        options.output.expanduser().write_text(rendered, encoding="utf-8")
    return document
