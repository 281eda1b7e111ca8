"""The redaction rule table: every kind of secret and personal data the redactor replaces.

Each :class:`Rule` is a regular expression, the lower-case keywords one of which must occur in
a text for the rule to run at all (a cheap pre-filter, as gitleaks does), an optional check of
each match (checksums, entropy, shape), and the placeholder written instead.  The table, with an
example shape and the source of every rule, is documented in ``docs/redaction.md``; a test keeps
the two in step.

Sources.  Most vendor token patterns are adapted from the gitleaks rule set
(https://github.com/gitleaks/gitleaks, ``config/gitleaks.toml`` at b58d3f10, MIT licence,
Copyright (c) 2019 Zachary Rice), with one deliberate change: gitleaks anchors tokens with
``\\b`` and a list of allowed following characters, so ``_sk-proj-…`` in a file name or
``-sk-proj-…`` in a channel name slip through.  Here a rule starts at the token's own prefix
and ends where the token's own alphabet ends, whatever surrounds it; only numeric kinds (cards,
phones, national ids, IP addresses) refuse to start or end inside a longer run of their own
alphabet, since a number inside a longer number is not that number.  IBAN lengths follow the
SWIFT IBAN registry; the US SSN ranges follow the Social Security Administration's
never-issued areas, groups and serials.

Order matters: secrets are replaced before personal data, so the digits inside a token are
never half-eaten by the phone or card rules, and URLs that carry secrets go before e-mails.
"""

from __future__ import annotations

import ipaddress
import math
import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, replace

__all__ = ["IBAN_LENGTHS", "RULES", "Rule", "luhn_valid", "shannon_entropy"]

#: A check returns the span (start, end) of the match to replace, or None to keep the match.
Check = Callable[[re.Match[str]], tuple[int, int] | None]

SECRET = "[secret]"  # noqa: S105 - a placeholder, not a secret
SECRET_URL = "[secret-url]"  # noqa: S105 - a placeholder


@dataclass(frozen=True, slots=True)
class Rule:
    """One kind of sensitive text: how to find it, check it, and what to write instead."""

    kind: str
    pattern: re.Pattern[str]
    placeholder: str = SECRET
    keywords: tuple[str, ...] = ()
    check: Check | None = None
    shape: str = ""
    source: str = ""
    gate: re.Pattern[str] | None = None


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


def shannon_entropy(text: str) -> float:
    """Bits per character of ``text`` (0 for the empty string)."""
    if not text:
        return 0.0
    size = len(text)
    return -sum(n / size * math.log2(n / size) for n in Counter(text).values())


def _span(match: re.Match[str]) -> tuple[int, int]:
    """The part of a match to replace: its ``secret`` group when it has one, else all of it."""
    if "secret" in match.re.groupindex and match.group("secret") is not None:
        return match.span("secret")
    return match.span()


def _entropy_at_least(bits: float) -> Check:
    def check(match: re.Match[str]) -> tuple[int, int] | None:
        start, end = _span(match)
        return (start, end) if shannon_entropy(match.string[start:end]) >= bits else None

    return check


# -- secrets ------------------------------------------------------------------------------


def _own_key(match: re.Match[str]) -> tuple[int, int] | None:
    # token_urlsafe(32) has an upper-case letter except once in 5e9; snake_case text has none.
    body = match.group("body")
    return match.span() if any(c.isupper() for c in body) else None


_PLACEHOLDER_VALUE = re.compile(
    r"""\[[\w-]{1,20}\]|<[^>]{0,40}>|\$\{[^}]{0,60}\}|\$[A-Z_][A-Z0-9_]*|\{\{.{0,60}\}\}|%\(\w+\)s
    |\*+|x{3,}|X{3,}|\.{3,}|…|null|none|nil|true|false|undefined|""|''""",
    re.IGNORECASE | re.VERBOSE,
)
_STRONG_NAMES = re.compile(r"passw|pwd|secret|private|credential", re.IGNORECASE)
_KEY_NAMES = re.compile(r"(?:api|access|auth|signing|encryption|master)[_.-]?key|apikey", re.I)


def _generated(value: str) -> bool:
    """Looks machine-made: long, with letters and digits, or with mixed case."""
    letters = any(c.isalpha() for c in value)
    digits = any(c.isdigit() for c in value)
    mixed = any(c.isupper() for c in value[1:]) and any(c.islower() for c in value)
    return len(value) >= 8 and ((letters and digits) or mixed)


_NAME_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.-")
_SECRET_NAME = re.compile(
    r"(?:api|access|auth|private|signing|encryption|master)[_.-]?key|apikey"
    r"|passw(?:or)?d|pwd|secret|credential|creds|token|auth|key",
    re.IGNORECASE,
)


def _assignment(match: re.Match[str]) -> tuple[int, int] | None:
    # The pattern starts at the separator; the name is the identifier just before it, read
    # backwards here, so the scan stays linear however long the identifiers are.
    text, sep_start = match.string, match.start()
    start = sep_start
    while start > 0 and sep_start - start < 60 and text[start - 1] in _NAME_CHARS:
        start -= 1
    name = text[start:sep_start]
    if not name or _SECRET_NAME.search(name) is None:
        return None
    value, sep = match.group("secret"), match.group("sep")
    if _PLACEHOLDER_VALUE.fullmatch(value):
        return None
    # In configuration (NAME=value) a password- or key-like name gives its value away; after
    # a colon a password-like name does unless the value is a short plain word; a weak name
    # (token, key, auth) needs a value that looks generated: "Token: the unit of text".
    if "=" in sep and (_STRONG_NAMES.search(name) or _KEY_NAMES.search(name)):
        ok = len(value) >= 4
    elif _STRONG_NAMES.search(name):
        # "password: tell sudo not to ask" is prose; "password: hunter2" is not.
        ok = len(value) >= 8 or (len(value) >= 4 and not value.isalpha())
    else:
        ok = _generated(value)
    return match.span("secret") if ok else None


def _high_entropy(match: re.Match[str]) -> tuple[int, int] | None:
    text = match.group(0)
    separators = text.count("-") + text.count("_")
    if separators >= 2 and len(text) / (separators + 1) <= 8:
        return None  # a slug of words (how-to-record-streaming-WMV-…), not a token
    if not (
        any(c.isupper() for c in text)
        and any(c.islower() for c in text)
        and sum(c.isdigit() for c in text) >= 2
    ):
        return None
    return match.span() if shannon_entropy(text) >= 4.2 else None


_GITLEAKS = "gitleaks {} (adapted: no surrounding-character boundaries)"


def _rule(
    kind: str,
    pattern: str,
    placeholder: str = SECRET,
    *,
    flags: int = 0,
    keywords: tuple[str, ...] = (),
    check: Check | None = None,
    entropy: float | None = None,
    shape: str,
    source: str = "",
    gitleaks: str = "",
    gate: re.Pattern[str] | None = None,
) -> Rule:
    """A rule of the table, its pattern compiled.

    ``entropy`` (as in gitleaks) is the least Shannon entropy, in bits per character, of a
    match, checked instead of ``check``; ``gitleaks`` names the gitleaks rules the rule is
    adapted from, which then make its source, ``source`` adding how it differs from them.
    """
    if entropy is not None:
        check = _entropy_at_least(entropy)
    if gitleaks:
        source = _GITLEAKS.format(gitleaks) + (f"; {source}" if source else "")
    return Rule(kind, re.compile(pattern, flags), placeholder, keywords, check, shape, source, gate)


# Cheap searches that must succeed before the numeric rules run: most chat lines hold no run
# of seven digits, no dotted quad and no IBAN-like country code, and then skip them all.
_SEVEN_DIGITS = re.compile(r"\d(?:[ ().+-]{0,2}\d){6}")
_IP_GATE = re.compile(r"\d\.\d{1,3}\.\d|[0-9A-Fa-f]:[0-9A-Fa-f]{0,4}:")
_IBAN_GATE = re.compile(r"[A-Z]{2}\d\d")
_NINO_GATE = re.compile(r"[A-Z]{2} ?\d\d ?\d\d")
# Every vendor token is a run of at least 14 of these characters; chat lines without one skip
# the token rules.
_TOKEN_RUN = re.compile(r"[A-Za-z0-9_.+/=~-]{14}")
_UNGATED = frozenset({"private_key", "url_credentials", "url_secret_param", "assignment"})

_SECRETS: tuple[Rule, ...] = (
    _rule(
        "private_key",
        (
            r"-----BEGIN[ A-Z0-9_-]{0,100}PRIVATE KEY(?: BLOCK)?-----.*?"
            r"(?:-----END[ A-Z0-9_-]{0,100}PRIVATE KEY(?: BLOCK)?-----|\Z)"
        ),
        flags=re.DOTALL | re.IGNORECASE,
        keywords=("-----begin",),
        shape="-----BEGIN … PRIVATE KEY----- … -----END … PRIVATE KEY----- (or to the end)",
        gitleaks="private-key",
    ),
    _rule(
        "discord_webhook",
        r"https?://(?:(?:canary|ptb)\.)?discord(?:app)?\.com/api(?:/v\d+)?/webhooks/\d+/[\w-]+",
        SECRET_URL,
        keywords=("/webhooks/",),
        shape="https://discord.com/api/webhooks/<id>/<token>",
        source="Discord developer docs (webhook URL)",
    ),
    _rule(
        "slack_webhook",
        r"(?:https?://)?hooks\.slack\.com/(?:services|workflows|triggers)/[A-Za-z0-9+/_-]{20,}",
        SECRET_URL,
        keywords=("hooks.slack.com",),
        shape="https://hooks.slack.com/services/T…/B…/…",
        gitleaks="slack-webhook-url",
    ),
    _rule(
        "jwt",
        r"eyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]*",
        keywords=("eyj",),
        shape="eyJ<header>.eyJ<payload>.<signature> (base64url JSON)",
        gitleaks="jwt",
    ),
    _rule(
        "own_api_key",
        r"sb_[a-z0-9]{8,32}_(?P<body>[A-Za-z0-9_-]{20,128})",
        keywords=("sb_",),
        check=_own_key,
        shape="sb_<key id: 8-32 a-z0-9>_<secret: 20-128 base64url>",
        source="this project (shared/apikeys.py)",
    ),
    _rule(
        "webhook_secret",
        r"whsec_[A-Za-z0-9+/]{16,}={0,2}",
        keywords=("whsec_",),
        shape="whsec_<base64>",
        source="Standard Webhooks specification (signing secret)",
    ),
    _rule(
        "anthropic_key",
        r"sk-ant-(?:api|admin|sid|oat|ort)\d\d-[A-Za-z0-9_-]{32,}",
        keywords=("sk-ant-",),
        shape="sk-ant-api03-<93+ base64url>",
        gitleaks="anthropic-api-key, anthropic-admin-api-key",
    ),
    _rule(
        "openai_key",
        r"sk-(?:(?:proj|svcacct|admin|None)-[A-Za-z0-9_-]{20,}|[A-Za-z0-9]{32,})",
        keywords=("sk-",),
        shape="sk-proj-<base64url>, sk-svcacct-…, sk-admin-…, sk-<48 letters/digits>",
        gitleaks="openai-api-key",
        source="without the T3BlbkFJ marker",
    ),
    _rule(
        "stripe_key",
        r"(?:sk|rk|pk)_(?:live|test|prod)_[A-Za-z0-9]{10,247}",
        keywords=("_live_", "_test_", "_prod_"),
        shape="sk_live_…, rk_live_…, pk_live_… (and _test_)",
        gitleaks="stripe-access-token",
        source="publishable pk_ keys too",
    ),
    _rule(
        "aws_key",
        r"(?:A3T[A-Z0-9]|AKIA|ASIA|ABIA|ACCA|AGPA|AIDA|AROA)[A-Z0-9]{16}",
        keywords=("a3t", "akia", "asia", "abia", "acca", "agpa", "aida", "aroa"),
        shape="AKIA<16 A-Z0-9> (and ASIA, ABIA, ACCA …)",
        gitleaks="aws-access-token",
    ),
    _rule(
        "aws_secret",
        (
            r"(?i)aws_?secret_?(?:access_?)?key[\"']?\s*[:=]\s*[\"']?"
            r"(?P<secret>[A-Za-z0-9/+=]{40})(?![A-Za-z0-9/+=])"
        ),
        keywords=("aws",),
        shape="aws_secret_access_key = <40 base64>",
        source="AWS CLI configuration (credentials file)",
    ),
    _rule(
        "gcp_api_key",
        r"AIza[0-9A-Za-z_-]{35}",
        keywords=("aiza",),
        shape="AIza<35 base64url>",
        gitleaks="gcp-api-key",
    ),
    _rule(
        "gcp_oauth",
        r"GOCSPX-[A-Za-z0-9_-]{28}|ya29\.[0-9A-Za-z_-]{20,}|1//0[0-9A-Za-z_-]{40,}",
        keywords=("gocspx-", "ya29.", "1//0"),
        shape="GOCSPX-<28> client secret, ya29.<…> access token, 1//0<…> refresh token",
        source="Google OAuth 2.0 documentation (token formats)",
    ),
    _rule(
        "azure_client_secret",
        r"[A-Za-z0-9_~.]{3}\dQ~[A-Za-z0-9_~.-]{31,34}",
        keywords=("q~",),
        entropy=3.0,
        shape="<3 chars><digit>Q~<31-34 chars>",
        gitleaks="azure-ad-client-secret",
    ),
    _rule(
        "azure_storage_key",
        (
            r"(?i)(?:AccountKey|SharedAccessKey|SharedSecretValue)\s*=\s*"
            r"(?P<secret>[A-Za-z0-9+/]{20,}={0,2})"
        ),
        keywords=("accountkey", "sharedaccesskey", "sharedsecretvalue"),
        shape="AccountKey=<base64> in a connection string",
        source="Azure Storage / Service Bus connection string format",
    ),
    _rule(
        "github_token",
        r"gh[pousr]_[A-Za-z0-9]{36,255}|github_pat_[A-Za-z0-9_]{22,255}",
        keywords=("ghp_", "gho_", "ghu_", "ghs_", "ghr_", "github_pat_"),
        shape="ghp_<36>, gho_, ghu_, ghs_, ghr_, github_pat_<82>",
        gitleaks="github-pat, github-oauth, github-app-token, …",
    ),
    _rule(
        "gitlab_token",
        (
            r"(?:glpat|gldt|glft|glsoat|glrt|gloas|glimt|glagent|glffct|glptt|glcbt)-"
            r"[0-9A-Za-z_.-]{20,}|GR1348941[\w-]{20}"
        ),
        keywords=(
            "glpat-",
            "gldt-",
            "glft-",
            "glsoat-",
            "glrt-",
            "gloas-",
            "glimt-",
            "glagent-",
            "glffct-",
            "glptt-",
            "glcbt-",
            "gr1348941",
        ),
        shape="glpat-<20+>, gldt-, glrt-, … , GR1348941<20>",
        gitleaks="gitlab-pat, gitlab-deploy-token, gitlab-rrt, …",
    ),
    _rule(
        "slack_token",
        r"xox[abposre]-[A-Za-z0-9-]{10,}|xapp-\d-[A-Za-z0-9-]{10,}",
        keywords=("xox", "xapp-"),
        shape="xoxb-…, xoxp-…, xapp-1-…",
        gitleaks="slack-bot-token, slack-user-token, slack-app-token, …",
    ),
    _rule(
        "discord_token",
        r"[MNO][A-Za-z0-9_-]{23,27}\.[A-Za-z0-9_-]{6,7}\.[A-Za-z0-9_-]{27,40}",
        shape="<base64 user id>.<6-7>.<27-40> (bot token)",
        source="Discord developer docs (bot token structure)",
    ),
    _rule(
        "twilio_key",
        r"SK[0-9a-fA-F]{32}",
        keywords=("sk",),
        entropy=3.0,
        shape="SK<32 hex>",
        gitleaks="twilio-api-key",
    ),
    _rule(
        "sendgrid_key",
        r"SG\.[A-Za-z0-9_-]{22}\.[A-Za-z0-9_-]{43}",
        keywords=("sg.",),
        shape="SG.<22>.<43>",
        gitleaks="sendgrid-api-token",
    ),
    _rule(
        "npm_token",
        r"npm_[A-Za-z0-9]{36}",
        keywords=("npm_",),
        shape="npm_<36>",
        gitleaks="npm-access-token",
    ),
    _rule(
        "pypi_token",
        r"pypi-AgEIcHlwaS5vcmc[A-Za-z0-9_-]{50,}",
        keywords=("pypi-ageichlwas5vcmc",),
        shape="pypi-AgEIcHlwaS5vcmc<50+>",
        gitleaks="pypi-upload-token",
    ),
    _rule(
        "huggingface_token",
        r"hf_[A-Za-z]{34}|api_org_[A-Za-z]{34}",
        keywords=("hf_", "api_org_"),
        shape="hf_<34 letters>",
        gitleaks="huggingface-access-token",
    ),
    _rule(
        "telegram_token",
        r"(?<!\d)\d{8,10}:AA[A-Za-z0-9_-]{33}",
        keywords=(":aa",),
        shape="<bot id>:AA<33>",
        source="Telegram Bot API (token format)",
    ),
    _rule(
        "vendor_token",
        (
            r"shp(?:at|ca|pa|ss)_[a-fA-F0-9]{32}"
            r"|do[opr]_v1_[a-f0-9]{64}"
            r"|dapi[a-f0-9]{32}(?:-\d)?"
            r"|dp\.pt\.[A-Za-z0-9]{43}"
            r"|lin_api_[A-Za-z0-9]{40}"
            r"|ntn_[0-9]{11}[A-Za-z0-9]{35}"
            r"|AGE-SECRET-KEY-1[QPZRY9X8GF2TVDW0S3JN54KHCE6MUA7L]{58}"
            r"|ops_eyJ[A-Za-z0-9+/]{250,}={0,3}"
            r"|HRKU-AA[0-9a-zA-Z_-]{58}"
            r"|fo1_[\w-]{43}|fm[12][ar]?_[A-Za-z0-9+/]{100,}={0,3}"
            r"|pul-[a-f0-9]{40}"
            r"|PMAK-[a-fA-F0-9]{24}-[a-fA-F0-9]{34}"
            r"|glc_[A-Za-z0-9+/]{32,400}={0,3}|glsa_[A-Za-z0-9]{32}_[A-Fa-f0-9]{8}"
            r"|sntry[su]_[A-Za-z0-9+/=_]{40,}"
            r"|sq0(?:atp|csp)-[\w-]{22,60}"
            r"|hv[sb]\.[\w-]{90,300}"
            r"|dt0c01\.[A-Za-z0-9]{24}\.[A-Za-z0-9]{64}"
            r"|rubygems_[a-f0-9]{48}"
            r"|pscale_(?:tkn|oauth|pw)_[\w=.-]{32,64}"
            r"|xkeysib-[a-f0-9]{64}-[A-Za-z0-9]{16}"
            r"|EAA[MC][A-Za-z0-9]{100,}"
            r"|ATATT3[A-Za-z0-9_=-]{186}"
            r"|key-[0-9a-f]{32}|[0-9a-f]{32}-us\d{1,2}"
        ),
        keywords=(
            "shp",
            "_v1_",
            "dapi",
            "dp.pt.",
            "lin_api_",
            "ntn_",
            "age-secret-key-1",
            "ops_eyj",
            "hrku-aa",
            "fo1_",
            "fm1",
            "fm2",
            "pul-",
            "pmak-",
            "glc_",
            "glsa_",
            "sntry",
            "sq0",
            "hvs.",
            "hvb.",
            "dt0c01.",
            "rubygems_",
            "pscale_",
            "xkeysib-",
            "eaam",
            "eaac",
            "atatt3",
            "key-",
            "-us",
        ),
        shape="Shopify shpat_, DigitalOcean dop_v1_, Databricks dapi, Doppler dp.pt., …",
        gitleaks=(
            "shopify-*, digitalocean-*, databricks-api-token, doppler-api-token, "
            "linear-api-key, notion-api-token, age-secret-key, 1password-service-account-token, "
            "heroku-api-key-v2, flyio-access-token, pulumi-api-token, postman-api-token, "
            "grafana-*, sentry-*, square-access-token, vault-*, dynatrace-api-token, "
            "rubygems-api-token, planetscale-*, sendinblue-api-token, "
            "facebook-page-access-token, atlassian-api-token, mailgun-*, mailchimp-api-key"
        ),
    ),
    _rule(
        "url_credentials",
        r"(?<=://)[^\s/:@]{1,64}:[^\s/@]{1,128}(?=@)",
        keywords=("://",),
        shape="scheme://user:password@host",
        source="RFC 3986 userinfo",
    ),
    _rule(
        "url_secret_param",
        (
            r"(?i)[?&;](?:[\w.-]*?(?:token|key|secret|sig|signature|passw(?:or)?d|pwd|auth|"
            r"session|credential)[\w.-]*)=(?P<secret>[^&\s#\"'<>]{6,})"
        ),
        keywords=("=",),
        check=lambda m: None if _PLACEHOLDER_VALUE.fullmatch(m.group("secret")) else _span(m),
        shape="?token=…, &api_key=…, &sig=… in a URL",
        source="this project (query parameters that carry credentials)",
    ),
    _rule(
        "bearer_token",
        r"(?i)\b(?:bearer|basic)\s+(?P<secret>[A-Za-z0-9._~+/=-]{16,})",
        keywords=("bearer", "basic"),
        shape="Authorization: Bearer <token> / Basic <base64>",
        source="RFC 6750 / RFC 7617",
    ),
    _rule(
        "assignment",
        # Quoted names ("api_key": "…") end in a quote, which the separator takes in.
        # The value sits in a look-ahead, so a separator inside it ("see: DB_PASSWORD=x")
        # is found again by the next match.
        (
            r"(?P<sep>[\"']?[ \t]*(?::=|=>|\?=|=|:)[ \t]*[\"'`]?)"
            r"(?=(?P<secret>[^\s\"'`,;]{3,}))"
        ),
        keywords=("pass", "pwd", "secret", "token", "key", "cred", "auth"),
        check=_assignment,
        shape='DB_PASSWORD=…, api_key: …, "client_secret": "…", password: …',
        gitleaks="generic-api-key",
        source="no entropy floor for NAME=value",
    ),
    _rule(
        "high_entropy",
        r"(?<![A-Za-z0-9+_=-])[A-Za-z0-9+_=-]{32,}",
        check=_high_entropy,
        shape="32+ base64-ish characters, mixed case and digits, >= 4.2 bits/char",
        source="detect-secrets Base64HighEntropyString (idea; own thresholds)",
    ),
)


# -- personal data ------------------------------------------------------------------------

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


#: A UUID, or a run of 20 or more hex digits with a letter among them (a commit or content
#: hash, a trace id): identifiers whose digit runs sometimes pass every card check.
_HEX_IDENTIFIER = re.compile(
    r"[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}"
    r"|(?=[0-9A-Fa-f]*[A-Fa-f])[0-9A-Fa-f]{20,}"
)
#: How far around a match an identifier that overlaps it can reach: a UUID is 36 characters,
#: a long hex run needs 20 of them.  The look is bounded so that a hostile line of many
#: card-like numbers joined by dashes costs linear time, not a scan of the line per match.
_HEX_REACH = 40


def _inside_hex_identifier(match: re.Match[str]) -> bool:
    """True when the match lies wholly in a UUID or a long hex id: in random ones, about one
    in five thousand holds a digit run that passes the Luhn, issuer and length checks.

    Wholly: a card written in groups with hex glued to one end (``4111 1111 1111 1111abcdef…``)
    only touches an identifier, and is still a card.
    """
    low = max(0, match.start() - _HEX_REACH)
    high = min(len(match.string), match.end() + _HEX_REACH)
    return any(
        found.start() <= match.start() and found.end() >= match.end()
        for found in _HEX_IDENTIFIER.finditer(match.string, low, high)
    )


def _card(match: re.Match[str]) -> tuple[int, int] | None:
    text = match.group(0)
    if len({c for c in text if not c.isdigit()}) > 1:
        return None
    if _inside_hex_identifier(match):
        return None
    digits = re.sub(r"\D", "", text)
    for prefix, lengths in _CARD_RULES:
        if len(digits) in lengths and prefix.match(digits):
            return match.span() if luhn_valid(digits) else None
    return None


_MASK_OCTETS = frozenset({"0", "128", "192", "224", "240", "248", "252", "254", "255"})


def _ip(match: re.Match[str]) -> tuple[int, int] | None:
    text = match.group(0).split("/", 1)[0]
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    if address.version == 4:
        octets = text.split(".")
        if any(len(o) > 1 and o.startswith("0") for o in octets):
            return None
        # Small leading parts (2.6.8.1, 2.6.12.3) are far more often versions than hosts,
        # and netmasks (255.255.255.0) identify nobody.
        if len(octets[0]) == 1 and len(octets[1]) == 1:
            return None
        return None if all(o in _MASK_OCTETS for o in octets) else match.span()
    # IPv6: demand a digit and two colons so words joined by '::' (std::string) never match.
    ok = any(c.isdigit() for c in text) and text.count(":") >= 2
    return match.span() if ok else None


def _phone(match: re.Match[str]) -> tuple[int, int] | None:
    digits = re.sub(r"\D", "", match.group(0))
    return match.span() if 8 <= len(digits) <= 15 else None


#: IBAN length per country (SWIFT IBAN registry).
IBAN_LENGTHS: dict[str, int] = {
    "AD": 24, "AE": 23, "AL": 28, "AT": 20, "AZ": 28, "BA": 20, "BE": 16, "BG": 22, "BH": 22,
    "BI": 27, "BR": 29, "BY": 28, "CH": 21, "CR": 22, "CY": 28, "CZ": 24, "DE": 22, "DJ": 27,
    "DK": 18, "DO": 28, "EE": 20, "EG": 29, "ES": 24, "FI": 18, "FK": 18, "FO": 18, "FR": 27,
    "GB": 22, "GE": 22, "GI": 23, "GL": 18, "GR": 27, "GT": 28, "HR": 21, "HU": 28, "IE": 22,
    "IL": 23, "IQ": 23, "IS": 26, "IT": 27, "JO": 30, "KW": 30, "KZ": 20, "LB": 28, "LC": 32,
    "LI": 21, "LT": 20, "LU": 20, "LV": 21, "LY": 25, "MC": 27, "MD": 24, "ME": 22, "MK": 19,
    "MN": 20, "MR": 27, "MT": 31, "MU": 30, "NI": 28, "NL": 18, "NO": 15, "OM": 23, "PK": 24,
    "PL": 28, "PS": 29, "PT": 25, "QA": 29, "RO": 24, "RS": 22, "RU": 33, "SA": 24, "SC": 31,
    "SD": 18, "SE": 24, "SI": 19, "SK": 24, "SM": 27, "SO": 23, "ST": 25, "SV": 28, "TL": 23,
    "TN": 24, "TR": 26, "UA": 29, "VA": 22, "VG": 24, "XK": 20, "YE": 30,
}  # fmt: skip


def _iban(match: re.Match[str]) -> tuple[int, int] | None:
    text = match.string
    start = match.start()
    length = IBAN_LENGTHS.get(match.group("country"))
    if length is None:
        return None
    # Take exactly the country's number of characters (spaces allowed between them), so a
    # word that follows ("… 3000 AND") is never part of it.
    chars: list[str] = []
    end = start
    while end < match.end() and len(chars) < length:
        if text[end] != " ":
            chars.append(text[end])
        end += 1
    if len(chars) != length or (end < len(text) and text[end].isdigit()):
        return None
    iban = "".join(chars)
    number = int("".join(str(int(c, 36)) for c in iban[4:] + iban[:4]))
    return (start, end) if number % 97 == 1 else None


def _ssn(match: re.Match[str]) -> tuple[int, int] | None:
    area, group, serial = match.group("area", "group", "serial")
    if area in ("000", "666") or area[0] == "9" or group == "00" or serial == "0000":
        return None
    return match.span()


def _sin(match: re.Match[str]) -> tuple[int, int] | None:
    digits = re.sub(r"\D", "", match.group(0))
    return match.span() if digits[0] not in "08" and luhn_valid(digits) else None


_PERSONAL: tuple[Rule, ...] = (
    _rule(
        "email",
        # The look-behind only makes the match start where the local part starts (a run of
        # its own alphabet); it costs nothing in recall and keeps the scan linear.
        r"(?<![A-Za-z0-9._%+-])[A-Za-z0-9._%+-]{1,64}@(?:[A-Za-z0-9-]{1,63}\.)+[A-Za-z]{2,24}",
        "[email]",
        keywords=("@",),
        shape="local@domain.tld",
        source="RFC 5322 (common subset)",
    ),
    _rule(
        "iban",
        r"(?P<country>[A-Z]{2})\d{2}(?: ?[A-Z0-9]){11,34}",
        "[iban]",
        check=_iban,
        shape="DE89 3704 0044 0532 0130 00 (country length, mod-97 check)",
        source="ISO 13616; lengths from the SWIFT IBAN registry",
        gate=_IBAN_GATE,
    ),
    _rule(
        "ip",
        # An address refuses to start or end inside a longer run of its own alphabet (digits
        # and dots; hex digits and colons), whatever else surrounds it: log_192.0.2.10.txt,
        # host-192.0.2.10:8080 and x2001:db8::1y are caught, 1.2.3.4.5 is not an address.
        (
            r"(?<![\d.])(?:\d{1,3}\.){3}\d{1,3}(?:/\d{1,3})?(?!\d|\.\d|-\d)"
            r"|(?<![0-9A-Fa-f.:])(?=[0-9A-Fa-f:]*:[0-9A-Fa-f:]*:)"
            r"(?:[0-9A-Fa-f]{0,4}:){2,7}[0-9A-Fa-f]{0,4}(?:/\d{1,3})?(?![0-9A-Fa-f:]|\.\d|-\d)"
        ),
        "[ip]",
        check=_ip,
        shape="192.0.2.10, 2001:db8::1 (versions and netmasks left alone)",
        source="RFC 791 / RFC 4291",
        gate=_IP_GATE,
    ),
    _rule(
        "us_ssn",
        r"(?<!\d)(?P<area>\d{3})(?P<s>[- ])(?P<group>\d{2})(?P=s)(?P<serial>\d{4})(?!\d)",
        "[id-number]",
        check=_ssn,
        shape="123-45-6789 (never-issued areas 000, 666, 9xx, group 00, serial 0000 excluded)",
        source="US Social Security Administration (SSN structure)",
        gate=_SEVEN_DIGITS,
    ),
    _rule(
        "uk_nino",
        # Not inside a longer run of capitals and digits (a product code); lower case
        # around it (xAB123456Cy, a glued file name) does not hide it.
        (
            r"(?<![A-Z0-9])(?!BG|GB|NK|KN|TN|NT|ZZ)[A-CEGHJ-PR-TW-Z][A-CEGHJ-NPR-TW-Z]"
            r" ?\d{2} ?\d{2} ?\d{2} ?[A-D](?![A-Z0-9])"
        ),
        "[id-number]",
        shape="AB 12 34 56 C",
        source="HMRC National Insurance number format",
        gate=_NINO_GATE,
    ),
    _rule(
        "ca_sin",
        r"(?<!\d)\d{3}(?P<s>[- ])\d{3}(?P=s)\d{3}(?!\d)",
        "[id-number]",
        check=_sin,
        shape="123-456-782 (Luhn-checked; not starting with 0 or 8)",
        source="Canada Social Insurance Number (Luhn)",
        gate=_SEVEN_DIGITS,
    ),
    _rule(
        "card",
        # 13-19 digits, optionally grouped by single spaces or dashes; Luhn and issuer checked.
        r"(?<![\d.])\d(?:[ -]?\d){12,18}(?!\d|-\d)",
        "[card]",
        check=_card,
        shape="4111 1111 1111 1111 (Luhn, issuer prefix and length checked)",
        source="ISO/IEC 7812 (IIN ranges, Luhn)",
        gate=_SEVEN_DIGITS,
    ),
    _rule(
        "phone",
        # International (+CC ...) numbers, or North-American groups (3-3-4) with separators,
        # optionally a bracketed area code.  Plain digit runs are never phones: they are ids.
        (
            r"(?<![\d+])(?:"
            r"\+\d{1,3}[ .-]?(?:\(\d{1,4}\)[ .-]?)?\d{1,4}(?:[ .-]?\d{2,4}){1,4}"
            r"|\(\d{3}\)[ .-]?\d{3}[ .-]\d{4}"
            r"|\d{3}[.-]\d{3}[.-]\d{4}"
            r")(?![\d.-]\d|\d)"
        ),
        "[phone]",
        check=_phone,
        shape="+49 30 1234567, (555) 123-4567, 555-123-4567",
        source="ITU-T E.164 / NANP",
        gate=_SEVEN_DIGITS,
    ),
)

#: Every built-in rule, in the order they are applied.
RULES: tuple[Rule, ...] = (
    *(
        replace(rule, gate=_TOKEN_RUN) if rule.gate is None and rule.kind not in _UNGATED else rule
        for rule in _SECRETS
    ),
    *_PERSONAL,
)
