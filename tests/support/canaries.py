"""Made-up secrets and personal data, one per redaction kind, shaped like the real thing.

Each canary is random (seeded), so it occurs nowhere else: finding it in a prompt, a stored
summary or a log line proves that redaction missed it.  None of them is a live credential.
"""

from __future__ import annotations

import base64
import random
import string
from dataclasses import dataclass

__all__ = ["KIND_OF", "Canary", "canaries", "kind_of"]

_B62 = string.ascii_letters + string.digits
_B64URL = _B62 + "-_"
_HEX = "0123456789abcdef"
_NINO_NEVER = frozenset({"BG", "GB", "NK", "KN", "TN", "NT", "ZZ"})


def _iban(rnd: random.Random) -> str:
    bank = "".join(rnd.choice(string.digits) for _ in range(18))
    digits = "".join(str(int(c, 36)) for c in bank + "DE00")
    check = 98 - int(digits) % 97
    return f"DE{check:02d}{bank}"


def _sin(rnd: random.Random) -> str:
    body = str(rnd.randrange(1, 8)) + "".join(rnd.choice(string.digits) for _ in range(7))
    for last in string.digits:
        if _luhn(body + last):
            digits = body + last
            return f"{digits[:3]}-{digits[3:6]}-{digits[6:]}"
    raise AssertionError("unreachable")


def _luhn(digits: str) -> bool:
    total = 0
    for index, char in enumerate(reversed(digits)):
        value = int(char) * (2 if index % 2 else 1)
        total += value - 9 if value > 9 else value
    return total % 10 == 0


def _card(rnd: random.Random) -> str:
    body = "4" + "".join(rnd.choice(string.digits) for _ in range(14))
    for last in string.digits:
        if _luhn(body + last):
            return body + last
    raise AssertionError("unreachable")


#: Canaries that are a second shape of a kind: name -> the redaction kind they test.
KIND_OF: dict[str, str] = {
    "openai_legacy": "openai_key",
    "stripe_restricted": "stripe_key",
    "stripe_publishable": "stripe_key",
    "password_prose": "assignment",
    "ip_v6": "ip",
    "gcp_oauth_access": "gcp_oauth",
    "vendor_digitalocean": "vendor_token",
}


def kind_of(name: str) -> str:
    """The redaction kind (``docs/redaction.md``) the canary ``name`` is of."""
    return KIND_OF.get(name, name)


@dataclass(frozen=True)
class Canary:
    """How a user would paste it (``text``), and the part that must never come out."""

    text: str
    secret: str


def _whole(text: str) -> Canary:
    return Canary(text, text)


def canaries(seed: int = 13) -> dict[str, Canary]:
    """Name → canary: at least one of every redaction kind (:func:`kind_of` tells which)."""
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
    # The kinds added later draw after the others, so the canaries above keep their values.
    nino_first, nino_second = "ABCEGHJKLMNOPRSTWXYZ", "ABCEGHJKLMNPRSTWXYZ"
    while (nino := rnd.choice(nino_first) + rnd.choice(nino_second)) in _NINO_NEVER:
        pass
    digits = [f"{rnd.randrange(100):02d}" for _ in range(3)]
    found["uk_nino"] = _whole(f"{nino} {' '.join(digits)} {rnd.choice('ABCD')}")
    found["ca_sin"] = _whole(_sin(rnd))
    found["ip"] = _whole(f"198.51.100.{rnd.randrange(10, 250)}")
    found["ip_v6"] = _whole(f"2001:db8:{rnd.randrange(16**4):x}::{rnd.randrange(16**4):x}")
    found["huggingface_token"] = _whole(f"hf_{pick(string.ascii_letters, 34)}")
    found["telegram_token"] = _whole(f"{rnd.randrange(10**8, 10**9)}:AA{pick(_B64URL, 33)}")
    found["gcp_oauth"] = _whole(f"GOCSPX-{pick(_B64URL, 28)}")
    found["gcp_oauth_access"] = _whole(f"ya29.{pick(_B64URL, 60)}")
    found["vendor_token"] = _whole(f"shpat_{pick(_HEX, 32)}")
    found["vendor_digitalocean"] = _whole(f"dop_v1_{pick(_HEX, 64)}")
    aws_secret = pick(_B62 + "/+", 40)
    found["aws_secret"] = Canary(f"aws_secret_access_key = {aws_secret}", aws_secret)
    account_key = base64.b64encode(rnd.randbytes(64)).decode()
    found["azure_storage_key"] = Canary(
        f"DefaultEndpointsProtocol=https;AccountName=sbcanary;AccountKey={account_key};"
        "EndpointSuffix=core.windows.net",
        account_key,
    )
    bearer = pick(_B62 + "._~-", 40)
    found["bearer_token"] = Canary(f"Authorization: Bearer {bearer}", bearer)
    param = pick(_B62, 24)
    found["url_secret_param"] = Canary(
        f"https://files.example.net/export.csv?dl=1&access_token={param}", param
    )
    return found
