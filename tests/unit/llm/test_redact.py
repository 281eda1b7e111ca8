"""Redaction of personal data and secrets: what must go, and what must stay."""

from __future__ import annotations

import pytest

from shared.summarize.redact import ALL_KINDS, Redactor, luhn_valid


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
