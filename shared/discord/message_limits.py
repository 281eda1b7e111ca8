"""Discord's message limits, checked on the JSON payload before any request.

:func:`check_message` walks a whole payload (content, embeds, components, allowed mentions,
nonce, webhook username) and raises one :class:`~shared.discord.errors.MessageLimitsError`
that lists every violation with where it is and how to fix it.  It works on JSON, so raw
payloads are checked the same way as the models of :mod:`shared.discord.models`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Final

from shared.discord.errors import MessageLimitsError

__all__ = [
    "CONTENT_LIMIT",
    "EMBED_DESCRIPTION_LIMIT",
    "EMBED_FIELD_NAME_LIMIT",
    "EMBED_FIELD_VALUE_LIMIT",
    "EMBED_TITLE_LIMIT",
    "EMBED_TOTAL_LIMIT",
    "MAX_EMBEDS",
    "check_message",
    "embed_length",
    "message_violations",
]

CONTENT_LIMIT: Final = 2000
MAX_EMBEDS: Final = 10
EMBED_TOTAL_LIMIT: Final = 6000
EMBED_TITLE_LIMIT: Final = 256
EMBED_DESCRIPTION_LIMIT: Final = 4096
EMBED_MAX_FIELDS: Final = 25
EMBED_FIELD_NAME_LIMIT: Final = 256
EMBED_FIELD_VALUE_LIMIT: Final = 1024
EMBED_FOOTER_LIMIT: Final = 2048
EMBED_AUTHOR_LIMIT: Final = 256
EMBED_URL_LIMIT: Final = 2048
MAX_ACTION_ROWS: Final = 5
MAX_BUTTONS_PER_ROW: Final = 5
CUSTOM_ID_LIMIT: Final = 100
BUTTON_LABEL_LIMIT: Final = 80
BUTTON_URL_LIMIT: Final = 512
SELECT_MAX_OPTIONS: Final = 25
SELECT_PLACEHOLDER_LIMIT: Final = 150
SELECT_OPTION_TEXT_LIMIT: Final = 100
NONCE_LIMIT: Final = 25
MAX_MENTION_IDS: Final = 100
WEBHOOK_USERNAME_LIMIT: Final = 80


def _over(where: str, count: int, unit: str, limit: int, tail: str = "") -> list[str]:
    """``["<where>: <count> <unit>, Discord allows at most <limit><tail>"]`` when over it."""
    if count > limit:
        return [f"{where}: {count} {unit}, Discord allows at most {limit}{tail}"]
    return []


def _too_long(where: str, value: Any, limit: int, fix: str) -> str | None:
    if isinstance(value, str):
        return next(iter(_over(where, len(value), "characters", limit, f" ({fix})")), None)
    return None


def embed_length(embed: Mapping[str, Any]) -> int:
    """Characters that count toward the 6000 total: title, description, fields, footer, author."""
    total = len(embed.get("title") or "") + len(embed.get("description") or "")
    for item in embed.get("fields") or ():
        total += len(item.get("name") or "") + len(item.get("value") or "")
    total += len((embed.get("footer") or {}).get("text") or "")
    total += len((embed.get("author") or {}).get("name") or "")
    return total


def _embed_violations(index: int, embed: Mapping[str, Any]) -> list[str]:
    where = f"embeds[{index}]"
    out = [
        _too_long(f"{where}.title", embed.get("title"), EMBED_TITLE_LIMIT, "shorten the title"),
        _too_long(
            f"{where}.description",
            embed.get("description"),
            EMBED_DESCRIPTION_LIMIT,
            "split it over several embeds with split_embeds",
        ),
        _too_long(f"{where}.url", embed.get("url"), EMBED_URL_LIMIT, "use a shorter URL"),
        _too_long(
            f"{where}.footer.text",
            (embed.get("footer") or {}).get("text"),
            EMBED_FOOTER_LIMIT,
            "shorten the footer",
        ),
        _too_long(
            f"{where}.author.name",
            (embed.get("author") or {}).get("name"),
            EMBED_AUTHOR_LIMIT,
            "shorten the author name",
        ),
    ]
    color = embed.get("color")
    if color is not None and not (isinstance(color, int) and 0 <= color <= 0xFFFFFF):
        out.append(f"{where}.color: {color!r} is not an RGB integer between 0 and 16777215")
    fields: Sequence[Mapping[str, Any]] = embed.get("fields") or ()
    out.extend(
        _over(
            f"{where}.fields",
            len(fields),
            "fields",
            EMBED_MAX_FIELDS,
            " (move the rest to another embed)",
        )
    )
    for n, item in enumerate(fields):
        for name, limit in (("name", EMBED_FIELD_NAME_LIMIT), ("value", EMBED_FIELD_VALUE_LIMIT)):
            value = item.get(name)
            if not isinstance(value, str) or not value.strip():
                out.append(f"{where}.fields[{n}].{name}: required and must not be blank")
            else:
                out.append(
                    _too_long(f"{where}.fields[{n}].{name}", value, limit, f"shorten the {name}")
                )
    return [v for v in out if v]


def _button_violations(where: str, button: Mapping[str, Any]) -> list[str]:
    out: list[str | None] = [
        _too_long(f"{where}.label", button.get("label"), BUTTON_LABEL_LIMIT, "shorten the label")
    ]
    style = button.get("style")
    if style in (1, 2, 3, 4) and not button.get("custom_id"):
        out.append(f"{where}: a style {style} button needs a custom_id")
    if style == 5:
        if not button.get("url"):
            out.append(f"{where}: a link button (style 5) needs a url")
        if button.get("custom_id"):
            out.append(f"{where}: a link button (style 5) cannot have a custom_id")
        out.append(_too_long(f"{where}.url", button.get("url"), BUTTON_URL_LIMIT, "shorten it"))
    if style == 6 and not button.get("sku_id"):
        out.append(f"{where}: a premium button (style 6) needs a sku_id")
    if style not in (1, 2, 3, 4, 5, 6):
        out.append(f"{where}.style: {style!r} is not a button style (1-6)")
    return [v for v in out if v]


def _select_violations(where: str, select: Mapping[str, Any]) -> list[str]:
    out: list[str | None] = [
        _too_long(
            f"{where}.placeholder",
            select.get("placeholder"),
            SELECT_PLACEHOLDER_LIMIT,
            "shorten it",
        )
    ]
    options: Sequence[Mapping[str, Any]] = select.get("options") or ()
    if not 1 <= len(options) <= SELECT_MAX_OPTIONS:
        out.append(
            f"{where}.options: {len(options)} options, a select needs 1 to {SELECT_MAX_OPTIONS}"
        )
    for n, option in enumerate(options):
        for name in ("label", "value", "description"):
            out.append(
                _too_long(
                    f"{where}.options[{n}].{name}",
                    option.get(name),
                    SELECT_OPTION_TEXT_LIMIT,
                    "shorten it",
                )
            )
    low, high = select.get("min_values", 1), select.get("max_values", 1)
    if not (0 <= low <= high <= SELECT_MAX_OPTIONS):
        out.append(
            f"{where}: min_values {low} / max_values {high} must satisfy 0 <= min <= max <= 25"
        )
    return [v for v in out if v]


def _component_violations(rows: Sequence[Mapping[str, Any]]) -> list[str]:
    out: list[str] = []
    out.extend(_over("components", len(rows), "action rows", MAX_ACTION_ROWS))
    seen: dict[str, str] = {}
    for r, row in enumerate(rows):
        where = f"components[{r}]"
        if row.get("type") != 1:
            out.append(f"{where}: top-level components must be action rows (type 1)")
            continue
        children: Sequence[Mapping[str, Any]] = row.get("components") or ()
        buttons = [c for c in children if c.get("type") == 2]
        selects = [c for c in children if c.get("type") in (3, 5, 6, 7, 8)]
        if not children:
            out.append(f"{where}: an action row needs at least one component")
        if len(buttons) > MAX_BUTTONS_PER_ROW:
            out.append(
                f"{where}: {len(buttons)} buttons, a row holds at most {MAX_BUTTONS_PER_ROW}"
            )
        if selects and len(children) > 1:
            out.append(f"{where}: a select menu must be alone in its action row")
        for c, child in enumerate(children):
            cwhere = f"{where}.components[{c}]"
            custom_id = child.get("custom_id")
            if custom_id is not None:
                if not isinstance(custom_id, str) or not 1 <= len(custom_id) <= CUSTOM_ID_LIMIT:
                    length = len(custom_id) if isinstance(custom_id, str) else "?"
                    out.append(
                        f"{cwhere}.custom_id: {length} characters, it must be 1 to "
                        f"{CUSTOM_ID_LIMIT}"
                    )
                elif custom_id in seen:
                    out.append(
                        f"{cwhere}.custom_id: {custom_id!r} is already used by {seen[custom_id]}; "
                        "custom_ids must be unique in a message"
                    )
                else:
                    seen[custom_id] = cwhere
            if child.get("type") == 2:
                out.extend(_button_violations(cwhere, child))
            elif child.get("type") == 3:
                out.extend(_select_violations(cwhere, child))
    return out


def _mention_violations(mentions: Mapping[str, Any]) -> list[str]:
    out: list[str] = []
    parse = mentions.get("parse") or []
    unknown = sorted(set(parse) - {"users", "roles", "everyone"})
    if unknown:
        out.append(f"allowed_mentions.parse: unknown value(s) {unknown}; use users/roles/everyone")
    for kind in ("users", "roles"):
        ids = mentions.get(kind) or []
        if len(ids) > MAX_MENTION_IDS:
            out.append(f"allowed_mentions.{kind}: {len(ids)} ids, at most {MAX_MENTION_IDS}")
        if ids and kind in parse:
            out.append(
                f"allowed_mentions: parse contains {kind!r} and a {kind} list is given; "
                "use one or the other"
            )
    return out


def message_violations(payload: Mapping[str, Any], *, require_body: bool = True) -> list[str]:
    """Every limit ``payload`` breaks, one readable line each (empty list: it is fine)."""
    out: list[str] = []
    content = payload.get("content")
    long_content = _too_long(
        "content", content, CONTENT_LIMIT, "split it over several messages with split_content"
    )
    if long_content:
        out.append(long_content)
    embeds: Sequence[Mapping[str, Any]] = payload.get("embeds") or ()
    spread = " (spread them with pack_embeds)"
    out.extend(_over("embeds", len(embeds), "embeds", MAX_EMBEDS, " per message" + spread))
    for i, embed in enumerate(embeds):
        out.extend(_embed_violations(i, embed))
    total = sum(embed_length(e) for e in embeds)
    out.extend(_over("embeds", total, "characters over all embeds", EMBED_TOTAL_LIMIT, spread))
    out.extend(_component_violations(payload.get("components") or ()))
    if isinstance(payload.get("allowed_mentions"), Mapping):
        out.extend(_mention_violations(payload["allowed_mentions"]))
    nonce = payload.get("nonce")
    if isinstance(nonce, str):
        out.extend(_over("nonce", len(nonce), "characters", NONCE_LIMIT))
    username = payload.get("username")
    if username is not None:
        if not 1 <= len(username) <= WEBHOOK_USERNAME_LIMIT:
            out.append(f"username: must be 1 to {WEBHOOK_USERNAME_LIMIT} characters")
        lowered = username.lower()
        if "discord" in lowered or "clyde" in lowered:
            out.append("username: webhook names cannot contain 'discord' or 'clyde'")
    has_body = bool(content) or bool(embeds) or bool(payload.get("components"))
    if require_body and not has_body and not payload.get("sticker_ids"):
        out.append("message: needs content, embeds or components (Discord refuses empty messages)")
    return out


def check_message(payload: Mapping[str, Any], *, require_body: bool = True) -> None:
    """Raise :class:`MessageLimitsError` listing every violation of ``payload``, if any."""
    violations = message_violations(payload, require_body=require_body)
    if violations:
        raise MessageLimitsError(violations)
