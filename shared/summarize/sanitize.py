"""The one door for untrusted text: messages and channel info are cleaned and redacted here.

The fetch stage passes every message and the channel through :func:`sanitize_messages` and
:func:`sanitize_channel` before it writes the message cache, whatever the source (an export
file or Discord).  So the cache in Redis, both summarizers, every prompt, the stored summary
and the deliveries see only cleaned, redacted text:

* invisible characters are removed (:func:`strip_invisible`): zero-width spaces and joiners,
  bidi controls, soft hyphens, tag characters, variation selectors used to smuggle bytes;
  an emoji's own joiners and presentation selector stay;
* control characters are removed too (C0, DEL and C1, such as ESC, which starts the
  terminal's colour, screen-clearing and OSC 8 hyperlink sequences), but for tab and the line
  breaks; in message text every line break becomes ``\\n`` (``\\r`` could overwrite a
  terminal line);
* names (author, mention, attachment, channel, thread and guild names) are one line of
  display text (:func:`sanitize_name`): line breaks, tabs and other controls in them become a
  space, so a nickname cannot start a line (a forged bullet) in any rendering;
* fullwidth ASCII look-alikes are folded to ASCII (``ｓｋ－…`` → ``sk-…``), so neither hides a
  secret from the redactor;
* every field is redacted by one :class:`~shared.summarize.redact.Redactor` (the table is in
  ``docs/redaction.md``): message text, author and mention names, attachment names, embed
  and sticker text, and the channel, thread and guild names and topic.

Neutralising prompt delimiters is not done here but where a prompt is assembled
(:func:`shared.summarize.transcript.neutralize`): only prompts need it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import replace
from functools import lru_cache
from typing import Any
from urllib.parse import unquote, urlsplit

from shared.domain.messages import ChannelInfo, ChatMessage
from shared.summarize.redact import Redactor

__all__ = [
    "EMBED_SNIPPET",
    "attachment_name",
    "clean_text",
    "sanitize_channel",
    "sanitize_message",
    "sanitize_messages",
    "sanitize_name",
    "sanitize_text",
    "snippet",
    "strip_invisible",
]

# Format characters (Unicode category Cf) and the other default-ignorable code points that
# render as nothing: zero-width space/joiners, bidi embeddings and isolates, soft hyphen, word
# joiner, Hangul fillers, Mongolian and other variation selectors, tag characters.
_INVISIBLE = re.compile(
    "[\u00ad\u034f\u0600-\u0605\u061c\u06dd\u070f\u0890-\u0891\u08e2\u115f-\u1160"
    "\u17b4-\u17b5\u180b-\u180f\u200b-\u200f\u202a-\u202e\u2060-\u2064\u2066-\u206f\u3164"
    "\ufe00-\ufe0f\ufeff\uffa0\ufff9-\ufffb\U000110bd\U000110cd\U00013430-\U00013438"
    "\U0001bca0-\U0001bca3\U0001d173-\U0001d17a\U000e0001\U000e0020-\U000e007f"
    "\U000e0100-\U000e01ef"
    # C0 and C1 controls but tab and the line breaks (which clean_text turns into "\n").
    "\x00-\x08\x0e-\x1b\x1f\x7f-\x84\x86-\x9f]"
)
_ASCII_CONTROLS = re.compile("[\x00-\x08\x0e-\x1b\x1f\x7f]+")
# An ASCII control clean_text changes: every one but tab and "\n".
_ASCII_UNCLEAN = re.compile("[\x00-\x08\x0b-\x1f\x7f]")
# What str.splitlines takes for a line break (as in shared.summarize.transcript).
_LINE_BREAKS = re.compile("\r\n?|[\x0b\x0c\x1c-\x1e\x85\u2028\u2029]")
# In a name, any control character (line breaks and tab included) is a space.
_NAME_CONTROLS = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]+")
# Pictographs, and what may sit inside an emoji sequence next to a joiner.
_EMOJI = re.compile("[\u00a9\u00ae\u203c-\u3299\ufe0f\U0001f000-\U0001faff]")
_ZWJ, _VS15, _VS16 = "\u200d", "\ufe0e", "\ufe0f"
# Fullwidth ASCII (U+FF01-FF5E) and the ideographic space, folded to ASCII.
_FULLWIDTH = {0xFF01 + i: 0x21 + i for i in range(94)} | {0x3000: 0x20}

_REDACTOR = Redactor()


def _keep_emoji_parts(match: re.Match[str]) -> str:
    char, text, at = match.group(0), match.string, match.start()
    before = text[at - 1] if at else ""
    if char == _ZWJ:
        after = text[at + 1] if at + 1 < len(text) else ""
        return char if _EMOJI.match(before) and _EMOJI.match(after) else ""
    if char in (_VS15, _VS16) and before and before not in (_VS15, _VS16):
        return char  # one presentation selector after a visible character
    return ""


def strip_invisible(text: str) -> str:
    """``text`` without invisible characters (an emoji's joiners and selector stay) and
    without control characters but tab and the line breaks."""
    if text.isascii():
        return _ASCII_CONTROLS.sub("", text)
    return _INVISIBLE.sub(_keep_emoji_parts, text)


def clean_text(text: str) -> str:
    """Invisible and control characters removed, line breaks made ``\\n`` and fullwidth
    ASCII folded: what the redactor reads."""
    if text.isascii():
        # Most text: one scan that finds nothing to clean.
        if _ASCII_UNCLEAN.search(text) is None:
            return text
        return _LINE_BREAKS.sub("\n", _ASCII_CONTROLS.sub("", text))
    return _LINE_BREAKS.sub("\n", strip_invisible(text)).translate(_FULLWIDTH)


def sanitize_text(text: str, redactor: Redactor | None = None) -> str:
    """:func:`clean_text`, then redacted."""
    return (redactor or _REDACTOR).redact(clean_text(text)).text


def sanitize_name(text: str, redactor: Redactor | None = None) -> str:
    """A name as one line of display text: every control character (line breaks and tab
    included) a space, then :func:`sanitize_text`."""
    return sanitize_text(_NAME_CONTROLS.sub(" ", text), redactor)


#: How much of an embed's text a summary reads.
EMBED_SNIPPET = 80


def snippet(text: str, limit: int, redactor: Redactor | None = None) -> str:
    """The start of ``text`` on one line, at most ``limit`` characters: redacted *before* it
    is cut, since a cut through a secret leaves a piece that no rule recognises any more.

    For text a source shortens before the fetch stage sanitizes it (embed descriptions);
    sanitizing the result again changes nothing.
    """
    short = " ".join(sanitize_text(text, redactor).split())
    if len(short) > limit:
        short = short[: limit - 1].rstrip() + "…"
    return short


@lru_cache(maxsize=8192)
def _sanitize_short(text: str) -> str:
    # Names repeat on every message of their author: remember them.
    return sanitize_name(text)


def _name(text: str, redactor: Redactor | None) -> str:
    if redactor is None and len(text) <= 100:
        return _sanitize_short(text)
    return sanitize_name(text, redactor)


def attachment_name(reference: str, redactor: Redactor | None = None) -> str:
    """The file name a reader sees for an attachment given as a name, a path or a URL.

    Decoded first (an encoded secret is caught), redacted whole (a secret shaped like a URL
    needs its host and path to be recognised), then cut to its last path segment; decoded only
    here, never again downstream, so nothing can be decoded back into a secret.
    """
    cleaned = _name(unquote(reference), redactor)
    parts = urlsplit(cleaned)
    path = parts.path if parts.scheme else cleaned
    return path.rstrip("/").rsplit("/", 1)[-1] or cleaned


def sanitize_message(message: ChatMessage, redactor: Redactor | None = None) -> ChatMessage:
    """``message`` with every text field cleaned and redacted (ids and times untouched)."""
    extra: dict[str, Any] = {
        key: _name(value, redactor) if isinstance(value, str) else value
        for key, value in message.extra.items()
    }
    return replace(
        message,
        author_name=_name(message.author_name, redactor),
        content=sanitize_text(message.content, redactor),
        attachments=tuple(attachment_name(a, redactor) for a in message.attachments),
        embeds=tuple(snippet(e, EMBED_SNIPPET, redactor) for e in message.embeds),
        mentions=tuple(_name(m, redactor) for m in message.mentions),
        extra=extra,
    )


def sanitize_messages(
    messages: Iterable[ChatMessage], redactor: Redactor | None = None
) -> Iterator[ChatMessage]:
    """:func:`sanitize_message` over a stream, lazily."""
    for message in messages:
        yield sanitize_message(message, redactor)


def sanitize_channel(channel: ChannelInfo, redactor: Redactor | None = None) -> ChannelInfo:
    """``channel`` with its channel, guild and topic text cleaned and redacted."""
    return replace(
        channel,
        channel_name=_name(channel.channel_name, redactor),
        guild_name=None if channel.guild_name is None else _name(channel.guild_name, redactor),
        topic=None if channel.topic is None else sanitize_text(channel.topic, redactor),
    )
