"""A summary split across embeds never cuts a citation link (or any Markdown link) in two."""

from __future__ import annotations

import re

import pytest

from shared.delivery.discord_render import render_messages
from shared.discord.splitting import split_text
from shared.summarize.content import Citation, CitedPoint
from tests.unit.delivery.helpers import T0, sample_content

CITATION = re.compile(r"\[\[(\d+)\]\]\((https://[^)\s]*)\)")


def test_a_point_citing_many_messages_keeps_every_citation_link_whole() -> None:
    content = sample_content()
    ids = [str(10**18 + i) for i in range(80)]
    citations = dict(content.citations)
    for message_id in ids:
        citations[message_id] = Citation(
            message_id=message_id,
            author="ann",
            timestamp=T0,
            jump_url=f"https://discord.com/channels/123456789012345678/223456789012345678/{message_id}",
        )
    content = content.model_copy(
        update={
            "citations": citations,
            "key_points": [CitedPoint(text="everyone agreed", message_ids=ids)],
        }
    )
    descriptions = [
        e.description or "" for m in render_messages(content, nonce_prefix="x") for e in m.embeds
    ]
    assert len(descriptions) > 2  # the key point needed more than one embed
    linked: dict[int, str] = {}
    for text in descriptions:
        whole = CITATION.findall(text)
        # Every "[[" that opens a citation in this embed closes it in this embed too.
        assert text.count("[[") == len(whole), text[-200:]
        linked.update((int(n), url) for n, url in whole)
    for message_id in ids:
        assert citations[message_id].jump_url in linked.values()


@pytest.mark.parametrize("limit", [60, 97, 150])
def test_a_cut_with_no_better_place_falls_before_a_link_not_inside_it(limit: int) -> None:
    links = "".join(f"[[{n}]](https://example.com/m/{n:04d})" for n in range(40))
    text = "see " + links
    parts = split_text(text, limit=limit)
    assert "".join(parts).replace(" ", "") == text.replace(" ", "")
    for part in parts:
        assert len(part) <= limit
        assert part.count("[[") == len(CITATION.findall(part)), part
