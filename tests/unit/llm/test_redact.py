"""Redaction of personal data and secrets: what must go, and what must stay."""

from __future__ import annotations

import re
import time
from collections import Counter
from pathlib import Path

import pytest

from shared.discord.convert import to_chat_message
from shared.sources.export_file import _embed_text as _dce_embed
from shared.summarize.redact import ALL_KINDS, PLACEHOLDERS, Redactor, luhn_valid
from shared.summarize.sanitize import sanitize_message, snippet
from tests.support.canaries import canaries, kind_of

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures"


@pytest.fixture(scope="module")
def redactor() -> Redactor:
    return Redactor()


@pytest.mark.parametrize(
    ("text", "kind", "expected"),
    [
        ("mail john.doe+x@example.co.uk now", "email", "mail [email] now"),
        ("call +1 555 123 4567 today", "phone", "call [phone] today"),
        ("call (555) 123-4567", "phone", "call [phone]"),
        ("call 555-123-4567", "phone", "call [phone]"),
        ("+49 30 1234567", "phone", "[phone]"),
        ("host 192.168.10.12 down", "ip", "host [ip] down"),
        ("net 10.0.0.0/8", "ip", "net [ip]"),
        ("v6 2001:db8::8a2e:370:7334 up", "ip", "v6 [ip] up"),
        ("card 4111 1111 1111 1111 ok", "card", "card [card] ok"),
        ("card 5500-0000-0000-0004", "card", "card [card]"),
        ("amex 378282246310005", "card", "amex [card]"),
        ("paid with (4111111111111111).", "card", "paid with ([card])."),
        # Hex glued to one end of a grouped card only touches an identifier: still a card.
        (
            "card 4111 1111 1111 1111abcdef0123456789 ok",
            "card",
            "card [card]abcdef0123456789 ok",
        ),
        ("card 4111-1111-1111-1111deadbeefdeadbeef", "card", "card [card]deadbeefdeadbeef"),
        (
            "bot MTA4NzY1NDMyMTA5ODc2NTQzMg.GaBcDe.abcdefghijklmnopqrstuvwxyz0123456789AB",
            "discord_token",
            "bot [secret]",
        ),
        (
            "hook https://discord.com/api/webhooks/123456789012345678/abcDEF-ghi_jkl end",
            "discord_webhook",
            "hook [secret-url] end",
        ),
        ("key sk-proj-abcdefghijklmnopqrstuvwxyz123456", "openai_key", "key [secret]"),
        ("id AKIAIOSFODNN7EXAMPLE", "aws_key", "id [secret]"),
        (
            "aws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
            "aws_secret",
            "aws_secret_access_key = [secret]",
        ),
        ("tok ghp_abcdefghijklmnopqrstuvwxyz0123456789", "github_token", "tok [secret]"),
        ("pat github_pat_11ABCDEFG0123456789_abcdefghijklmnop", "github_token", "pat [secret]"),
        ("slack xoxb-1234567890-abcdefghij", "slack_token", "slack [secret]"),
        (
            "jwt eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3",
            "jwt",
            "jwt [secret]",
        ),
        (
            "db postgres://admin:hunter2@db:5432/x",
            "url_credentials",
            "db postgres://[secret]@db:5432/x",
        ),
        (
            "-----BEGIN RSA PRIVATE KEY-----\nMIIEow\n-----END RSA PRIVATE KEY-----",
            "private_key",
            "[secret]",
        ),
    ],
)
def test_redacts_each_kind(redactor: Redactor, text: str, kind: str, expected: str) -> None:
    result = redactor.redact(text)
    assert result.text == expected
    assert result.counts[kind] >= 1


@pytest.mark.parametrize(
    "text",
    [
        "kernel 2.6.8.1-3-686, 1.2.3.4 and 2.6.12.3",  # versions, not hosts
        "netmask 255.255.255.0",
        "snowflake 1102565102059520001 and 1420070400000",  # ids, timestamps
        "4111 1111 1111 1112",  # fails Luhn
        "date 2024-11-15 14:03:22, v1.2.3, std::vector<int>, a::b::c",
        "sha 3f1c0b9d7a6e5f4d3c2b1a09f8e7d6c5b4a39281 and port 8080",
        "ratio 16:9 at 12:30 and 1,000,000 users",
        "ipv4 999.1.1.1 is not an address",
        # Digit runs inside identifiers that pass the card checks (Luhn, issuer, length):
        # found among random UUIDs and commit hashes, about one in 5,000 of each.
        "job 30190533-0621-4297-990e-aa72b871686f failed",
        "trace cf488600-6146-441f-b64d-e1e80429a700",
        "id 7f2a445d-c00e-4164-8856-33537d9f582f",
        "commit a4111111111111111b3c0ffee",
    ],
)
def test_leaves_technical_text_alone(redactor: Redactor, text: str) -> None:
    result = redactor.redact(text)
    assert result.text == text
    assert result.total == 0


def test_luhn() -> None:
    assert luhn_valid("4111111111111111")
    assert not luhn_valid("4111111111111112")
    assert not luhn_valid("41111x")


def test_counts_several_kinds(redactor: Redactor) -> None:
    result = redactor.redact("a@b.io, c@d.io and 192.168.1.20")
    assert result.counts == {"email": 2, "ip": 1}
    assert result.total == 3


def test_selected_kinds_extra_rules_and_allow_list() -> None:
    redactor = Redactor(kinds=["email"], extra={"ticket": r"TCK-\d{4}"}, allow=["help@project.org"])
    result = redactor.redact("mail help@project.org or me@x.io about TCK-1234 from 10.1.2.3")
    assert result.text == "mail help@project.org or [email] about [ticket] from 10.1.2.3"
    assert redactor.kinds == ("email", "ticket")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"kinds": ["emails"]}, "unknown redaction kinds"),
        ({"extra": {"Bad Name": "x"}}, "must be lower-case"),
        ({"extra": {"ok": "("}}, "not a valid regex"),
    ],
)
def test_bad_configuration_is_explained(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Redactor(**kwargs)  # type: ignore[arg-type]


def test_empty_text_and_kind_list() -> None:
    assert Redactor().redact("").text == ""
    assert set(ALL_KINDS) >= {"email", "phone", "ip", "card", "jwt", "discord_token"}


# -- the full rule table ------------------------------------------------------------------

CANARIES = canaries()
#: Where a secret may sit: whatever surrounds it, it is found.
CONTEXTS = (
    "{}",
    "report_{}.pdf",  # a file name, after "_"
    "release-{}-notes",  # a channel name, after "-"
    "x{}y",
    "see: {} ok",
    '"{}"',
    "(`{}`)",
    "line one\n{}\nline three",
)


def test_there_is_a_canary_of_every_kind() -> None:
    assert sorted({kind_of(name) for name in CANARIES}) == sorted(ALL_KINDS)


@pytest.mark.parametrize("kind", sorted(CANARIES))
@pytest.mark.parametrize("context", CONTEXTS)
def test_every_canary_is_caught_in_every_context(
    redactor: Redactor, kind: str, context: str
) -> None:
    canary = CANARIES[kind]
    result = redactor.redact(context.format(canary.text))
    assert canary.secret not in result.text, result.text
    assert result.total >= 1
    # Redacting redacted text changes nothing.
    assert redactor.redact(result.text).text == result.text


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("pay to DE89 3704 0044 0532 0130 00 today", "pay to [iban] today"),
        ("DE89370400440532013000 DE89370400440532013000", "[iban] [iban]"),
        ("log_GB82WEST12345698765432 GB82WEST12345698765432.txt", "log_[iban] [iban].txt"),
        ("GB82WEST12345698765432", "[iban]"),
        ("DE89 3704 0044 0532 0130 01", "DE89 3704 0044 0532 0130 01"),  # bad checksum
        ("ssn 078-05-1120.", "ssn [id-number]."),
        ("ssn 666-12-3456 and 900-12-3456 and 123-00-4567", None),  # never issued
        ("NINO AB 12 34 56 C", "NINO [id-number]"),
        ("SIN 123 456 782", "SIN [id-number]"),
        ("DB_PASSWORD=hunter2hunter2", "DB_PASSWORD=[secret]"),
        ('{"client_secret": "abcDEF123ghi"}', '{"client_secret": "[secret]"}'),
        ("password: hunter2", "password: [secret]"),
        ("export API_KEY=${API_KEY}", None),  # a reference, not a value
        ("password: [secret]", None),
        ("max_tokens=4096 and token: the unit of text", None),  # config numbers, prose
        ("if you hate entering your password: tell sudo", None),
        ("https://x.example/cb?code=abc&access_token=AbC123xYz789", None),
        ("Authorization: Bearer abcdef0123456789ABCDEF", "Authorization: Bearer [secret]"),
        ("mail me: bob@example.com-x", "mail me: [email]-x"),
        ("connect to 192.168.1.20:8080 now", "connect to [ip]:8080 now"),
        ("the LAN address is 192.168.1.2.", "the LAN address is [ip]."),
        ("see log_203.0.113.9.txt", "see log_[ip].txt"),
        ("host dsl-static-203.0.113.9.example.net", "host dsl-static-[ip].example.net"),
        ("capture_2001:db8::17.pcap", "capture_[ip].pcap"),
        ("version 1.2.3.4.5 and 10.20.30.40.50", None),  # five parts: not an address
        ("NINO scanAB123456Cfront.png", "NINO scan[id-number]front.png"),
        ("part XAB123456C and AB1234567C", None),  # inside a longer code
    ],
)
def test_rule_details(redactor: Redactor, text: str, expected: str | None) -> None:
    result = redactor.redact(text)
    if expected is None:
        if "access_token" in text:
            assert result.text == "https://x.example/cb?code=abc&access_token=[secret]"
        else:
            assert result.text == text
    else:
        assert result.text == expected


@pytest.mark.parametrize(
    "text",
    [
        "see http://forum.videohelp.com/threads/257045-How-to-record-streaming-WMV-ASF-MMS-links",
        "the getUserAuthenticationHandlerFactory class and test_redact_high_entropy_tokens",
        "commit 3f1c0b9d7a6e5f4d3c2b1a09f8e7d6c5b4a39281 (sha256 "
        "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08)",
        "task-management-system-for-teams-v2 and disk-usage-monitoring-service",
        "usb_controllers_disconnect_randomly_on_resume_after_suspend",
        "https://cdn.discordapp.com/attachments/1/2/a.png?ex=65a1b2c3&is=659f3c43&hm=4f7d0c",
        "550e8400-e29b-41d4-a716-446655440000 is a uuid",
        "2024-11-15 14:03:22 and 2024-11-15T14:03:22+01:00",
    ],
)
def test_technical_text_is_not_a_secret(redactor: Redactor, text: str) -> None:
    assert redactor.redact(text).text == text


def test_the_irc_corpus_keeps_its_words() -> None:
    """Over 12,000 lines of real technical chat: only addresses are redacted."""
    redactor = Redactor()
    counts: Counter[str] = Counter()
    for path in sorted((FIXTURES / "irc-dev").glob("*.raw.txt")):
        for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
            counts.update(redactor.redact(line).counts)
    secret_kinds = {k for k in counts if PLACEHOLDERS[k].startswith("[secret")}
    # Two config lines ("--http-password=pass", accesskey="…") and one share key in a URL.
    assert sum(counts[k] for k in secret_kinds) <= 3, counts
    assert counts["email"] > 100 and counts["ip"] > 50  # IRC hostmasks


def test_the_documented_table_is_the_rule_table() -> None:
    docs = (Path(__file__).resolve().parents[3] / "docs" / "redaction.md").read_text()
    documented = re.findall(r"^\| `([a-z0-9_]+)` \| `(\[[a-z-]+\])` \|", docs, re.MULTILINE)
    assert documented == [(kind, PLACEHOLDERS[kind]) for kind in ALL_KINDS]


# -- text a source shortens before the door -----------------------------------------------


@pytest.mark.parametrize("kind", sorted(CANARIES))
def test_a_snippet_is_redacted_before_it_is_cut(kind: str) -> None:
    """An embed description is cut to 80 characters (by the export reader, or at the door for
    Discord messages); cut first, a secret would leave a piece no rule recognises.  The cut
    here falls inside every canary's secret."""
    canary = CANARIES[kind]
    start = canary.text.index(canary.secret)
    # Filler puts the cut (79 characters and "…") halfway through the secret.
    text = "x" * max(1, 78 - start - len(canary.secret) // 2) + " " + canary.text + " and more"
    line = " ".join(text.split())
    at = line.index(canary.secret)
    # The 12 characters of the secret just before the cut: what a naive cut would keep.
    piece = line[79 - 12 : 79] if at <= 79 - 12 and at + len(canary.secret) > 79 else ""
    for shortened in (
        snippet(text, 80),
        _dce_embed({"description": text}),
        sanitize_message(to_chat_message(_discord_message(text))).embeds[0],
    ):
        assert shortened is not None and len(shortened) <= 80
        assert canary.secret not in shortened
        assert not piece or piece not in shortened, shortened


def _discord_message(description: str) -> dict[str, object]:
    return {
        "id": "1191512658436472900",
        "channel_id": "1191512658436472873",
        "type": 0,
        "content": "see the embed",
        "timestamp": "2024-11-15T14:03:00+00:00",
        "author": {"id": "1085131932217520185", "username": "member"},
        "embeds": [{"description": description}],
    }


def test_a_line_of_many_dash_joined_cards_is_redacted_in_linear_time(redactor: Redactor) -> None:
    # Each card-like match looks around itself for a UUID or hex id.  Unbounded, that look
    # scanned the whole dash-joined run per match: 76 KB of this took 66 s.  The bound is a
    # hundred times what the linear scan takes, so only a quadratic one can exceed it.
    line = "4111111111111111-a-" * 10_000
    started = time.monotonic()
    result = redactor.redact(line)
    assert time.monotonic() - started < 10
    assert result.counts["card"] == 10_000
