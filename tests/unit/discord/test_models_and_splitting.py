"""Message models, Discord's limits (one error listing every violation), splitting helpers."""

from __future__ import annotations

import pytest

from shared.delivery.discord_render import short_text
from shared.discord import (
    UNSET,
    ActionRow,
    AllowedMentions,
    Button,
    ButtonStyle,
    Embed,
    EmbedAuthor,
    EmbedField,
    EmbedFooter,
    Message,
    MessageEdit,
    MessageLimitsError,
    SelectMenu,
    SelectOption,
    pack_embeds,
    split_content,
    split_embeds,
)
from shared.discord.message_limits import check_message, embed_length, message_violations
from shared.discord.splitting import split_text


def test_default_mentions_never_ping_everyone_or_roles() -> None:
    payload = Message(content="@everyone <@&1> <@2>").to_json()
    assert payload["allowed_mentions"] == {"parse": ["users"], "replied_user": False}
    loud = AllowedMentions(users=False, roles=True, everyone=True, replied_user=True)
    assert loud.to_json() == {"parse": ["roles", "everyone"], "replied_user": True}
    assert AllowedMentions(roles=["5"]).to_json() == {
        "roles": ["5"],
        "parse": ["users"],
        "replied_user": False,
    }


def test_every_violation_is_listed_at_once() -> None:
    big_field = EmbedField("n" * 300, "v" * 1100)
    message = Message(
        content="x" * 2001,
        embeds=[Embed(title="t" * 300, description="d" * 4100, fields=[big_field], color=-1)] * 11,
        components=[
            ActionRow(
                [Button(style=ButtonStyle.PRIMARY, label="b", custom_id=f"id{n}") for n in range(6)]
            )
        ]
        * 6,
        nonce="n" * 26,
    )
    with pytest.raises(MessageLimitsError) as caught:
        message.to_json()
    text = "\n".join(caught.value.violations)
    for expected in (
        "content: 2001 characters, Discord allows at most 2000",
        "embeds: 11 embeds",
        "embeds[0].title: 300 characters",
        "embeds[0].description: 4100 characters",
        "embeds[0].color",
        "embeds[0].fields[0].name: 300",
        "embeds[0].fields[0].value: 1100",
        "characters over all embeds",
        "components: 6 action rows",
        "components[0]: 6 buttons",
        "already used by components[0]",
        "nonce: 26 characters",
    ):
        assert expected in text, expected


def test_component_rules() -> None:
    select = SelectMenu(
        custom_id="s" * 101,
        options=[SelectOption(label="l" * 101, value="v", description="d" * 101)],
        placeholder="p" * 151,
        min_values=3,
        max_values=2,
    )
    rows = [
        ActionRow([select, Button(style=ButtonStyle.PRIMARY, custom_id="b", label="x" * 81)]),
        ActionRow([Button(style=ButtonStyle.LINK, custom_id="nope", label="link")]),
        ActionRow([Button(style=ButtonStyle.PREMIUM)]),
        ActionRow([Button(style=ButtonStyle.DANGER, label="no id")]),
        ActionRow([]),
    ]
    violations = message_violations(Message(content="x", components=rows).to_json(check=False))
    text = "\n".join(violations)
    for expected in (
        "custom_id: 101 characters",
        "select menu must be alone",
        "options[0].label",
        "options[0].description",
        "placeholder: 151",
        "min_values 3 / max_values 2",
        "label: 81 characters",
        "link button (style 5) needs a url",
        "cannot have a custom_id",
        "premium button (style 6) needs a sku_id",
        "style 4 button needs a custom_id",
        "needs at least one component",
    ):
        assert expected in text, expected
    raw = {
        "content": "x",
        "components": [{"type": 2}, {"type": 1, "components": [{"type": 2, "style": 9}]}],
    }
    text = "\n".join(message_violations(raw))
    assert "must be action rows" in text
    assert "is not a button style" in text


def test_mentions_empty_messages_and_webhook_names() -> None:
    bad = {
        "content": "x",
        "allowed_mentions": {"parse": ["users", "channels"], "users": ["1"] * 101},
        "username": "Discord helper",
    }
    text = "\n".join(message_violations(bad))
    assert "unknown value(s) ['channels']" in text
    assert "allowed_mentions.users: 101 ids" in text
    assert "parse contains 'users' and a users list" in text
    assert "cannot contain 'discord'" in text
    assert "needs content, embeds or components" in "\n".join(message_violations({}))
    assert message_violations({}, require_body=False) == []
    assert "1 to 80" in "\n".join(message_violations({"content": "x", "username": ""}))
    check_message({"content": "fine"})


def test_embed_rendering_and_length() -> None:
    embed = Embed(
        title="T",
        description="D",
        url="https://example.invalid",
        color=1,
        fields=[EmbedField("a", "b")],
        footer=EmbedFooter("f", icon_url="https://i"),
        author=EmbedAuthor("au", url="https://u", icon_url="https://i"),
        image_url="https://img",
        thumbnail_url="https://th",
    )
    data = embed.to_json()
    assert data["image"] == {"url": "https://img"}
    assert data["thumbnail"] == {"url": "https://th"}
    assert data["author"] == {"name": "au", "url": "https://u", "icon_url": "https://i"}
    assert embed_length(data) == 1 + 1 + 1 + 1 + 1 + 2
    button = Button(
        style=ButtonStyle.SECONDARY, label="x", custom_id="c", emoji="🔥", disabled=True
    ).to_json()
    assert button["emoji"] == {"name": "🔥"}
    assert button["disabled"] is True
    select = SelectMenu(
        custom_id="s", options=[SelectOption(label="a", value="a", default=True)], disabled=True
    ).to_json()
    assert select["options"][0]["default"] is True
    assert select["disabled"] is True


def test_message_edit_sends_only_what_changes() -> None:
    assert MessageEdit().to_json() == {}
    assert MessageEdit(flags=4).to_json() == {"flags": 4}
    content = MessageEdit(content="new").to_json()
    assert content == {
        "content": "new",
        "allowed_mentions": {"parse": ["users"], "replied_user": False},
    }
    assert MessageEdit(content=None, embeds=[Embed(title="t")]).to_json()["content"] is None
    assert MessageEdit(components=[ActionRow([Button(custom_id="a", label="a")])]).to_json()[
        "components"
    ]
    assert MessageEdit().content is UNSET
    with pytest.raises(MessageLimitsError):
        MessageEdit(content="x" * 2001).to_json()
    full = Message(content="x", tts=True, flags=4, nonce="n", enforce_nonce=False).to_json()
    assert full["tts"] is True
    assert "enforce_nonce" not in full


def test_split_content_prefers_paragraphs_then_lines_then_sentences() -> None:
    paragraphs = "\n\n".join(f"Paragraph {n}. " + "word " * 80 for n in range(10))
    parts = split_content(paragraphs)
    assert all(len(p) <= 2000 for p in parts)
    assert all(p.startswith("Paragraph") for p in parts)
    assert "".join(parts).replace(" ", "").replace("\n", "") == paragraphs.replace(" ", "").replace(
        "\n", ""
    )
    sentences = " ".join(f"Sentence number {n} is here." for n in range(200))
    assert all(p.endswith(".") for p in split_content(sentences, limit=300))
    words = "word " * 1000
    assert all(len(p) <= 100 and not p.startswith(" ") for p in split_text(words, limit=100))
    blob = "x" * 250
    assert split_text(blob, limit=100) == ["x" * 96, "x" * 96, "x" * 58]
    assert split_text("short", limit=100) == ["short"]
    with pytest.raises(ValueError, match="at least 20"):
        split_text("x", limit=5)


def test_split_keeps_code_fences_balanced() -> None:
    code = "```python\n" + "\n".join(f"print({n})" for n in range(400)) + "\n```\nafter"
    parts = split_content(code, limit=500)
    assert len(parts) > 2
    for part in parts:
        assert len(part) <= 500
        assert part.count("```") % 2 == 0, part
    assert parts[1].startswith("```python\n")
    long_lang = "```" + "l" * 200 + "\n" + "y\n" * 300 + "```"
    assert all(p.count("```") % 2 == 0 for p in split_text(long_lang, limit=100))


def test_split_embeds_and_pack_them() -> None:
    embeds = split_embeds("para. " * 3000, title="Digest", color=5)
    assert embeds[0].title == "Digest"
    assert all(e.title is None for e in embeds[1:])
    assert all(len(e.description or "") <= 4096 for e in embeds)
    groups = pack_embeds(embeds)
    for group in groups:
        assert len(group) <= 10
        assert sum(embed_length(e.to_json()) for e in group) <= 6000
        Message(embeds=group).to_json()
    small = [Embed(title=str(n)) for n in range(23)]
    assert [len(g) for g in pack_embeds(small)] == [10, 10, 3]
    with pytest.raises(ValueError, match="split its description"):
        pack_embeds([Embed(description="x" * 4000, fields=[EmbedField("n", "v" * 1024)] * 3)])
    assert split_embeds("") == [Embed(title=None, description=None, color=None)]


@pytest.mark.parametrize(
    ("unit", "limit"),
    [
        ("\U0001f468\u200d\U0001f469\u200d\U0001f467\u200d\U0001f466", 40),  # a ZWJ family
        ("\U0001f1fa\U0001f1f8", 41),  # a flag: an odd cut re-pairs every later flag
        ("\U0001f44d\U0001f3fd", 41),  # a thumb with its skin tone
        ("e\u0301", 25),  # an accent written as a combining mark
    ],
)
def test_a_last_resort_cut_never_splits_what_shows_as_one_character(unit: str, limit: int) -> None:
    parts = split_text(unit * 60, limit=limit)
    assert "".join(parts) == unit * 60
    for part in parts:
        assert len(part) <= limit
        assert part.startswith(unit) and part.endswith(unit), repr(part)


def test_chinese_and_japanese_text_is_cut_at_a_sentence_end() -> None:
    for sentence in ("这是一个很长的句子，用来测试分割。", "これはとても長い文です！"):
        parts = split_text(sentence * 40, limit=200)
        assert all(part.endswith(sentence[-1]) for part in parts[:-1]), parts


def test_a_short_text_ends_on_a_whole_character() -> None:
    thumbs = "ok " + "\U0001f44d\U0001f3fd" * 5
    assert short_text(thumbs, 6) == "ok \U0001f44d\U0001f3fd…"
    assert short_text(thumbs, 5) == "ok…"  # not a thumb that lost its skin tone
