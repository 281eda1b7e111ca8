"""``/v1/summaries/{id}``: a stored summary as a JSON document or as Markdown."""

from __future__ import annotations

import uuid
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Header, Path, Query
from sqlalchemy import select
from starlette.responses import Response

from producers.api.auth import Caller, require_scope
from producers.api.problems import Problem
from producers.api.routes.common import AUTH_ERRORS, Resources, errors, not_found
from schema.models.jobs import Job, Summary
from shared.apikeys import Scope
from shared.summarize.content import SummaryContent
from shared.summarize.render import SummaryDocument, render_markdown

__all__ = ["preferred_type", "router"]

router = APIRouter(tags=["summaries"])

MARKDOWN = "text/markdown"
JSON = "application/json"


def _quality(part: str) -> tuple[str, float]:
    media, *params = (p.strip() for p in part.split(";"))
    quality = 1.0
    for param in params:
        name, _, value = param.partition("=")
        if name.strip().lower() == "q":
            try:
                quality = float(value)
            except ValueError:
                quality = 0.0
    return media.lower(), quality


def preferred_type(accept: str | None) -> str | None:
    """``text/markdown`` or ``application/json`` by the Accept header (JSON when it does not
    care); None when it accepts neither."""
    if not accept:
        return JSON
    weights: dict[str, float] = {}
    for part in accept.split(","):
        if part.strip():
            media, quality = _quality(part)
            weights[media] = max(weights.get(media, 0.0), quality)
    if not weights:
        return JSON

    def weight_of(media: str, *fallback: str) -> float:
        # The most specific range that names the type decides (RFC 9110, 12.5.1): a
        # "application/*;q=0" refuses JSON whatever "*/*" says.
        main = media.split("/", 1)[0]
        for candidate in (media, f"{main}/*", "*/*", *fallback):
            if candidate in weights:
                return weights[candidate]
        return 0.0

    json_q = weight_of(JSON, "application/problem+json")
    markdown_q = weight_of(MARKDOWN)
    if json_q <= 0 and markdown_q <= 0:
        return None
    return MARKDOWN if markdown_q > json_q else JSON


@router.get(
    "/v1/summaries/{summary_id}",
    summary="Read a summary (JSON document or Markdown)",
    description=(
        "The summary as a `SummaryDocument` (JSON, the default), or as Markdown with "
        "`Accept: text/markdown` or `?format=markdown`.  Needs `summaries:read`."
    ),
    responses={
        200: {
            "description": "The summary",
            "model": SummaryDocument,
            "content": {MARKDOWN: {"schema": {"type": "string"}}},
        },
        **errors(404, 406, *AUTH_ERRORS),
    },
)
def get_summary(
    summary_id: Annotated[uuid.UUID, Path(description="The summary's id (a job's summary_id)")],
    caller: Annotated[Caller, Depends(require_scope(Scope.SUMMARIES_READ))],
    resources: Resources,
    format: Annotated[
        Literal["json", "markdown"] | None,
        Query(description="Overrides the Accept header"),
    ] = None,
    accept: Annotated[str | None, Header(include_in_schema=False)] = None,
) -> Response:
    """A summary of the key's guild."""
    with resources.session_factory() as session:
        row = session.execute(
            select(Summary, Job.created_at)
            .join(Job, Job.id == Summary.job_id)
            .where(Summary.id == summary_id, Job.guild_id == caller.guild_id)
        ).one_or_none()
    if row is None:
        raise not_found("summary", summary_id)
    summary, job_created = row
    media = (MARKDOWN if format == "markdown" else JSON) if format else preferred_type(accept)
    if media is None:
        raise Problem(406, "this resource is served as application/json or text/markdown")
    content = SummaryContent.model_validate(summary.content)
    duration = max(0.0, (summary.created_at - job_created).total_seconds())
    if media == MARKDOWN:
        text = render_markdown(content, duration_seconds=duration)
        return Response(content=text, media_type="text/markdown; charset=utf-8")
    document = SummaryDocument(
        job_id=str(summary.job_id),
        summary_id=str(summary.id),
        created_at=summary.created_at,
        duration_seconds=duration,
        model=summary.model,
        prompt_version=summary.prompt_version,
        summary=content,
    )
    return Response(content=document.model_dump_json(by_alias=True), media_type=JSON)
