"""Made-up secrets and personal data, one per redaction kind, shaped like the real thing.

Each canary is random (seeded), so it occurs nowhere else: finding it in a prompt, a stored
summary or a log line proves that redaction missed it.  None of them is a live credential.
"""

from __future__ import annotations

import base64
import random
import string
from dataclasses import dataclass

__all__ = ["Canary", "canaries"]

_B62 = string.ascii_letters + string.digits
_B64URL = _B62 + "-_"
_HEX = "0123456789abcdef"


def _iban(rnd: random.Random) -> str:
    bank = "".join(rnd.choice(string.digits) for _ in range(18))
    digits = "".join(str(int(c, 36)) for c in bank + "DE00")
    check = 98 - int(digits) % 97
    return f"DE{check:02d}{bank}"


def _card(rnd: random.Random) -> str:
    body = "4" + "".join(rnd.choice(string.digits) for _ in range(14))
    for last in string.digits:
        digits = body + last
        total = 0
        for index, char in enumerate(reversed(digits)):
            value = int(char) * (2 if index % 2 else 1)
            total += value - 9 if value > 9 else value
        if total % 10 == 0:
            return digits
    raise AssertionError("unreachable")


@dataclass(frozen=True)
class Canary:
    """How a user would paste it (``text``), and the part that must never come out."""

    text: str
    secret: str


def canaries(seed: int = 13) -> dict[str, Canary]:
    """Kind → one canary of that kind."""
    rnd = random.Random(seed)

    def pick(alphabet: str, count: int) -> str:
        # Both cases and a digit, as generated secrets have them.
        while True:
            text = "".join(rnd.choice(alphabet) for _ in range(count))
            if all(
                any(c in kind for c in text)
                for kind in (string.ascii_uppercase, string.digits)
                if any(c in kind for c in alphabet)
            ):
                return text

    area = rnd.randrange(100, 665)
    whsec = base64.b64encode(rnd.randbytes(32)).decode()
    db_password, prose_password, url_password = pick(_B62, 14), pick(_B62, 10), pick(_B62, 16)
    key_body = pick(_B62, 64)
    plain = {
        "own_api_key": f"sb_{pick(string.ascii_lowercase + string.digits, 12)}_{pick(_B64URL, 43)}",
        "webhook_secret": f"whsec_{whsec}",
        "openai_key": f"sk-proj-{pick(_B64URL, 120)}",
        "openai_legacy": f"sk-{pick(_B62, 48)}",
        "anthropic_key": f"sk-ant-api03-{pick(_B64URL, 93)}AA",
        "stripe_key": f"sk_live_{pick(_B62, 24)}",
        "stripe_restricted": f"rk_live_{pick(_B62, 24)}",
        "stripe_publishable": f"pk_live_{pick(_B62, 24)}",
        "aws_key": f"AKIA{''.join(rnd.choice(string.ascii_uppercase + '234567') for _ in range(16))}",
        "gcp_api_key": f"AIza{pick(_B64URL, 35)}",
        "azure_client_secret": f"{pick(_B62, 3)}8Q~{pick(_B62, 34)}",
        "github_token": f"ghp_{pick(_B62, 36)}",
        "gitlab_token": f"glpat-{pick(_B62, 20)}",
        "slack_token": f"xoxb-{rnd.randrange(10**11, 10**12)}-{pick(_B62, 24)}",
        "slack_webhook": f"https://hooks.slack.com/services/T{pick(_B62, 8)}/B{pick(_B62, 8)}/"
        f"{pick(_B62, 24)}",
        "discord_token": f"MT{pick(_B64URL, 24)}.{pick(_B64URL, 6)}.{pick(_B64URL, 38)}",
        "discord_webhook": f"https://discord.com/api/webhooks/{rnd.randrange(10**17, 10**18)}/"
        f"{pick(_B64URL, 68)}",
        "twilio_key": f"SK{pick(_HEX, 32)}",
        "sendgrid_key": f"SG.{pick(_B64URL, 22)}.{pick(_B64URL, 43)}",
        "npm_token": f"npm_{pick(_B62, 36)}",
        "pypi_token": f"pypi-AgEIcHlwaS5vcmc{pick(_B64URL, 60)}",
        "jwt": "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiI" + pick(_B62, 20) + "In0." + pick(_B64URL, 43),
        "iban": _iban(rnd),
        "us_ssn": f"{area}-{rnd.randrange(10, 99)}-{rnd.randrange(1000, 9999)}",
        "email": f"{pick(string.ascii_lowercase, 10)}@example.org",
        "phone": f"+49 30 {rnd.randrange(1000000, 9999999)}",
        "card": _card(rnd),
        "high_entropy": pick(_B62, 40),
    }
    found = {kind: Canary(text, text) for kind, text in plain.items()}
    found["private_key"] = Canary(
        f"-----BEGIN RSA PRIVATE KEY-----\n{key_body}\n-----END RSA PRIVATE KEY-----", key_body
    )
    found["assignment"] = Canary(f"DB_PASSWORD={db_password}", db_password)
    found["password_prose"] = Canary(f"password: {prose_password}", prose_password)
    found["url_credentials"] = Canary(
        f"postgres://admin:{url_password}@db.internal:5432/app", url_password
    )
    return found
