"""Redaction of personal data and secrets before any text is stored, shown or sent anywhere.

:class:`Redactor` replaces every match of the rule table (:mod:`shared.summarize.redact_rules`,
documented kind by kind in ``docs/redaction.md``) with a short placeholder and counts what it
replaced by kind:

* ``[secret]``: private keys, JWTs, this project's own API keys (``sb_…``), Standard Webhooks
  secrets (``whsec_…``), OpenAI, Anthropic, Stripe, AWS, Google Cloud, Azure, GitHub, GitLab,
  Slack, Discord, Twilio, SendGrid, npm, PyPI and two dozen more vendors' tokens, credentials in
  URLs, ``NAME=secret`` / ``password: …`` assignments, and high-entropy tokens;
* ``[secret-url]``: Discord and Slack webhook URLs;
* ``[email]``, ``[phone]``, ``[ip]``, ``[card]`` (Luhn-checked), ``[iban]`` (mod-97 checked)
  and ``[id-number]`` (US SSN, UK NINO, Canadian SIN).

Secrets are replaced before personal data, so a token containing digits is never half-eaten by
the phone or card rules.  A rule starts at its token's own prefix whatever precedes it
(``_sk-proj-…`` in a file name is caught).  Redacting redacted text changes nothing.

The rules are tuned against technical chat: version numbers (``2.6.8.1``), dates, times,
Discord snowflakes, hex hashes and ordinary identifiers are left alone.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from shared.summarize.redact_rules import RULES, Rule, luhn_valid

__all__ = [
    "ALL_KINDS",
    "PLACEHOLDERS",
    "RedactionResult",
    "Redactor",
    "luhn_valid",
]

#: Placeholder written in place of each kind of match.
PLACEHOLDERS: dict[str, str] = {rule.kind: rule.placeholder for rule in RULES}

#: Every built-in kind, in the order they are applied.
ALL_KINDS: tuple[str, ...] = tuple(PLACEHOLDERS)


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
        selected = set(ALL_KINDS if kinds is None else kinds)
        unknown = sorted(selected.difference(ALL_KINDS))
        if unknown:
            raise ValueError(
                f"unknown redaction kinds {unknown}; choose from {', '.join(ALL_KINDS)}"
            )
        self._rules: list[Rule] = [rule for rule in RULES if rule.kind in selected]
        for name, pattern in (extra or {}).items():
            if not re.fullmatch(r"[a-z][a-z0-9_]{0,31}", name):
                raise ValueError(
                    f"redaction rule name {name!r} must be lower-case letters, digits or _"
                )
            try:
                compiled = re.compile(pattern)
            except re.error as exc:
                raise ValueError(f"redaction rule {name!r} is not a valid regex: {exc}") from None
            self._rules.append(Rule(name, compiled, f"[{name}]"))
        self._allow = frozenset(allow)
        # Consecutive rules behind the same gate form a group that one failed search skips:
        # most chat lines hold no token, no long digit run, no IBAN, and skip most rules.
        self._groups: list[tuple[re.Pattern[str] | None, list[Rule]]] = []
        for rule in self._rules:
            if self._groups and self._groups[-1][0] is rule.gate:
                self._groups[-1][1].append(rule)
            else:
                self._groups.append((rule.gate, [rule]))
        # Rules with many keywords look for them with one regex, the others with `in`.
        self._keyword_scans = {
            rule.kind: re.compile("|".join(re.escape(k) for k in rule.keywords))
            for rule in self._rules
            if len(rule.keywords) > 2
        }

    @property
    def kinds(self) -> tuple[str, ...]:
        """The kinds of rule this redactor applies, in order."""
        return tuple(rule.kind for rule in self._rules)

    def redact(self, text: str) -> RedactionResult:
        """Return ``text`` with every match replaced, and the number of matches per kind."""
        counts: Counter[str] = Counter()
        if not text:
            return RedactionResult(text, counts)
        # Keywords and gates are looked up in the original text: redaction only removes text
        # and adds placeholders, which no rule matches.
        lowered = text.lower()
        original = text
        gates: dict[re.Pattern[str], bool] = {}
        for gate, rules in self._groups:
            if gate is not None:
                passed = gates.get(gate)
                if passed is None:
                    passed = gates[gate] = gate.search(original) is not None
                if not passed:
                    continue
            for rule in rules:
                if rule.keywords:
                    scan = self._keyword_scans.get(rule.kind)
                    if scan is not None:
                        if scan.search(lowered) is None:
                            continue
                    elif not any(k in lowered for k in rule.keywords):
                        continue
                text = self._apply(rule, text, counts)
        return RedactionResult(text, counts)

    def _apply(self, rule: Rule, text: str, counts: Counter[str]) -> str:
        """Replace what ``rule`` finds in ``text``.

        A check may choose a span that reaches past its match (into a look-ahead, as the
        assignment rule's value does), so the text is rebuilt from spans, not with ``sub``.
        """
        pieces: list[str] = []
        done = pos = 0
        while (match := rule.pattern.search(text, pos)) is not None:
            # The next search starts after the match, or right after the span a check chose
            # when that is shorter (an IBAN takes its country's length of a longer match):
            # "DE89… DE89…" must not hide the second number inside the first match.
            pos = max(match.end(), match.start() + 1)
            if rule.check is not None:
                span = rule.check(match)
            elif "secret" in match.re.groupindex and match.group("secret") is not None:
                span = match.span("secret")
            else:
                span = match.span()
            if span is None or span[0] < done:
                continue
            if match.group(0) in self._allow or text[span[0] : span[1]] in self._allow:
                continue
            counts[rule.kind] += 1
            pieces.append(text[done : span[0]])
            pieces.append(rule.placeholder)
            done = span[1]
            if match.start() < done < pos:
                pos = done
        if not pieces:
            return text
        pieces.append(text[done:])
        return "".join(pieces)
