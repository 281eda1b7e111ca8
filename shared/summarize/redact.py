"""Redaction of personal data and secrets before any text leaves the process.

:class:`Redactor` replaces e-mail addresses, phone numbers, IP addresses, payment card numbers
(Luhn-checked, known issuer prefixes only), chat-platform and cloud credentials (Discord bot
tokens and webhook URLs, OpenAI keys, AWS keys, GitHub tokens, Slack tokens, JWTs, PEM private
keys) with short placeholders such as ``[email]`` or ``[secret]``, and counts what it replaced
by kind.  Patterns are applied secrets first, so a token containing digits is never half-eaten
by the phone or card rules.

The rules are tuned against technical chat: version numbers (``2.6.8.1``), dates, times,
Discord snowflakes and hashes are left alone; see the per-kind notes below.
"""

from __future__ import annotations

import ipaddress
import re
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

__all__ = [
    "ALL_KINDS",
    "PLACEHOLDERS",
    "RedactionResult",
    "Redactor",
    "luhn_valid",
]

#: Placeholder written in place of each kind of match.
PLACEHOLDERS: dict[str, str] = {
    "private_key": "[secret]",
    "jwt": "[secret]",
    "discord_webhook": "[secret-url]",
    "discord_token": "[secret]",
    "openai_key": "[secret]",
    "aws_key": "[secret]",
    "aws_secret": "[secret]",
    "github_token": "[secret]",
    "slack_token": "[secret]",
    "email": "[email]",
    "url_credentials": "[secret]",
    "card": "[card]",
    "ip": "[ip]",
    "phone": "[phone]",
}

#: Every built-in kind, in the order they are applied.
ALL_KINDS: tuple[str, ...] = tuple(PLACEHOLDERS)

_B64URL = r"[A-Za-z0-9_-]"

_PATTERNS: dict[str, re.Pattern[str]] = {
    "private_key": re.compile(
        r"-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY-----.*?"
        r"(?:-----END (?:[A-Z0-9]+ )*PRIVATE KEY-----|\Z)",
        re.DOTALL,
    ),
    # header.payload.signature where header and payload are base64url JSON objects ('{"').
    "jwt": re.compile(rf"\beyJ{_B64URL}{{8,}}\.eyJ{_B64URL}{{8,}}\.{_B64URL}{{8,}}"),
    "discord_webhook": re.compile(
        r"https?://(?:(?:canary|ptb)\.)?discord(?:app)?\.com/api(?:/v\d+)?/webhooks/\d+/[\w-]+"
    ),
    # base64(user id) . base64(timestamp) . HMAC — the first part starts with M, N or O
    # because user ids are large decimal numbers.
    "discord_token": re.compile(
        rf"(?<![\w-])[MNO][A-Za-z0-9_-]{{22,30}}\.{_B64URL}{{6,7}}\.{_B64URL}{{27,40}}(?![\w-])"
    ),
    "openai_key": re.compile(
        r"(?<![\w-])sk-(?:proj-|svcacct-|admin-|None-)?[A-Za-z0-9_-]{20,}(?![\w-])"
    ),
    "aws_key": re.compile(
        r"(?<![A-Z0-9])(?:AKIA|ASIA|ABIA|ACCA|AGPA|AIDA|AROA)[A-Z0-9]{16}(?![A-Z0-9])"
    ),
    # A 40-character secret is only recognisable next to its name.
    "aws_secret": re.compile(
        r"(?i)(?P<keep>aws_secret_access_key\s*[:=]\s*[\"']?)[A-Za-z0-9/+=]{40}(?![A-Za-z0-9/+=])"
    ),
    "github_token": re.compile(
        r"(?<![\w-])(?:gh[pousr]_[A-Za-z0-9]{36,255}|github_pat_[A-Za-z0-9_]{22,255})(?![\w-])"
    ),
    "slack_token": re.compile(r"(?<![\w-])xox[abposr]-[A-Za-z0-9-]{10,}(?![\w-])"),
    "email": re.compile(
        r"(?<![\w.+-])[A-Za-z0-9._%+-]{1,64}@(?:[A-Za-z0-9-]{1,63}\.)+[A-Za-z]{2,24}(?![\w-])"
    ),
    # user:password@ inside a URL
    "url_credentials": re.compile(r"(?<=://)[^\s/:@]{1,64}:[^\s/@]{1,128}(?=@)"),
    # 13-19 digits, optionally grouped by single spaces or dashes; checked further below.
    "card": re.compile(r"(?<![\w.-])\d(?:[ -]?\d){12,18}(?![\w.-]|-\d)"),
    "ip": re.compile(
        r"(?<![\w.:])(?:"
        r"(?:\d{1,3}\.){3}\d{1,3}"
        r"|(?=[0-9A-Fa-f:]*:[0-9A-Fa-f:]*:)(?:[0-9A-Fa-f]{0,4}:){2,7}[0-9A-Fa-f]{0,4}"
        r")(?:/\d{1,3})?(?![\w.:]|-\d)"
    ),
    # International (+CC ...) numbers, or North-American style groups (3-3-4) with separators,
    # optionally bracketed area code.  Plain digit runs are never phones: they are ids.
    "phone": re.compile(
        r"(?<![\w+.-])(?:"
        r"\+\d{1,3}[ .-]?(?:\(\d{1,4}\)[ .-]?)?\d{1,4}(?:[ .-]?\d{2,4}){1,4}"
        r"|\(\d{3}\)[ .-]?\d{3}[ .-]\d{4}"
        r"|\d{3}[.-]\d{3}[.-]\d{4}"
        r")(?![\w.-]|-\d)"
    ),
}

# Issuer prefixes (IIN ranges) and lengths of the major card networks.  Checking them keeps
# Discord snowflakes (which start with 1) and random ids from passing as cards one time in ten.
_CARD_RULES: tuple[tuple[re.Pattern[str], tuple[int, ...]], ...] = (
    (re.compile(r"4"), (13, 16, 19)),  # Visa
    (re.compile(r"5[1-5]|2(?:2[2-9][1-9]|2[3-9]|[3-6]|7[01]|720)"), (16,)),  # Mastercard
    (re.compile(r"3[47]"), (15,)),  # American Express
    (re.compile(r"6(?:011|5|4[4-9]|22)"), (16, 19)),  # Discover
    (re.compile(r"35(?:2[89]|[3-8])"), (16, 19)),  # JCB
    (re.compile(r"3(?:0[0-5]|[689])"), (14, 16, 19)),  # Diners Club
    (re.compile(r"62|81"), (16, 17, 18, 19)),  # UnionPay
)


def luhn_valid(digits: str) -> bool:
    """True when ``digits`` (only 0-9) passes the Luhn checksum."""
    if not digits.isdigit():
        return False
    total = 0
    for index, char in enumerate(reversed(digits)):
        value = ord(char) - 48
        if index % 2 == 1:
            value *= 2
            if value > 9:
                value -= 9
        total += value
    return total % 10 == 0


def _is_card(match: re.Match[str]) -> bool:
    text = match.group(0)
    separators = {c for c in text if not c.isdigit()}
    if len(separators) > 1:
        return False
    digits = re.sub(r"\D", "", text)
    for prefix, lengths in _CARD_RULES:
        if len(digits) in lengths and prefix.match(digits):
            return luhn_valid(digits)
    return False


_MASK_OCTETS = frozenset({"0", "128", "192", "224", "240", "248", "252", "254", "255"})


def _is_ip(match: re.Match[str]) -> bool:
    text = match.group(0).split("/", 1)[0]
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return False
    if address.version == 4:
        octets = text.split(".")
        if any(len(o) > 1 and o.startswith("0") for o in octets):
            return False
        # Small leading parts (2.6.8.1, 2.6.12.3) are far more often versions than hosts,
        # and netmasks (255.255.255.0) identify nobody.
        if len(octets[0]) == 1 and len(octets[1]) == 1:
            return False
        return not all(o in _MASK_OCTETS for o in octets)
    # IPv6: demand a digit or a long form so words joined by '::' (std::string) never match.
    return any(c.isdigit() for c in text) and text.count(":") >= 2


def _is_phone(match: re.Match[str]) -> bool:
    digits = re.sub(r"\D", "", match.group(0))
    return 8 <= len(digits) <= 15


_CHECKS: dict[str, Callable[[re.Match[str]], bool]] = {
    "card": _is_card,
    "ip": _is_ip,
    "phone": _is_phone,
}


@dataclass(frozen=True, slots=True)
class RedactionResult:
    """Text with its sensitive parts replaced, and how many of each kind were replaced."""

    text: str
    counts: Counter[str] = field(default_factory=Counter)

    @property
    def total(self) -> int:
        """Number of replacements of every kind."""
        return sum(self.counts.values())


class Redactor:
    """Replaces personal data and secrets in text with placeholders.

    ``kinds`` selects the built-in rules (default: all of :data:`ALL_KINDS`); ``extra`` adds
    named regular expressions (for example a guild's internal ticket ids), each replaced by
    ``[name]``; ``allow`` lists literal strings that are never redacted (a project's public
    support address, say).
    """

    def __init__(
        self,
        *,
        kinds: Iterable[str] | None = None,
        extra: Mapping[str, str] | None = None,
        allow: Iterable[str] = (),
    ) -> None:
        selected = tuple(ALL_KINDS if kinds is None else kinds)
        unknown = [k for k in selected if k not in _PATTERNS]
        if unknown:
            raise ValueError(
                f"unknown redaction kinds {unknown}; choose from {', '.join(ALL_KINDS)}"
            )
        self._rules: list[tuple[str, re.Pattern[str], str]] = [
            (kind, _PATTERNS[kind], PLACEHOLDERS[kind]) for kind in ALL_KINDS if kind in selected
        ]
        for name, pattern in (extra or {}).items():
            if not re.fullmatch(r"[a-z][a-z0-9_]{0,31}", name):
                raise ValueError(
                    f"redaction rule name {name!r} must be lower-case letters, digits or _"
                )
            try:
                compiled = re.compile(pattern)
            except re.error as exc:
                raise ValueError(f"redaction rule {name!r} is not a valid regex: {exc}") from None
            self._rules.append((name, compiled, f"[{name}]"))
        self._allow = frozenset(allow)

    @property
    def kinds(self) -> tuple[str, ...]:
        """The kinds of rule this redactor applies, in order."""
        return tuple(kind for kind, _, _ in self._rules)

    def redact(self, text: str) -> RedactionResult:
        """Return ``text`` with every match replaced, and the number of matches per kind."""
        counts: Counter[str] = Counter()
        if not text:
            return RedactionResult(text, counts)
        for kind, pattern, placeholder in self._rules:
            check = _CHECKS.get(kind)

            def replace(
                match: re.Match[str],
                kind: str = kind,
                check: Callable[[re.Match[str]], bool] | None = check,
                placeholder: str = placeholder,
            ) -> str:
                if match.group(0) in self._allow or (check is not None and not check(match)):
                    return match.group(0)
                counts[kind] += 1
                keep = match.groupdict().get("keep")
                return (keep or "") + placeholder

            text = pattern.sub(replace, text)
        return RedactionResult(text, counts)
