"""The SSRF guard: which webhook URLs may be called, and which addresses may be connected to.

Two checks, both before any connection is made:

* :func:`parse_webhook_url` refuses URL tricks: schemes other than https (http only for an
  operator-allowlisted host), credentials in the URL, backslashes, control characters,
  percent-encoded or IPv6-zoned hosts, IPv4 written in decimal/octal/hex/short form, and it
  normalises the host (IDNA, lower case, one trailing dot) so that what is vetted is what is
  dialled.
* :func:`vet_addresses` resolves the host once and refuses it unless *every* address is a public
  unicast address (:func:`address_problem` names what is wrong: loopback, private, link-local and
  cloud metadata, CGNAT, unique-local, IPv4-mapped/compatible and NAT64/6to4 forms of any of
  these, multicast, reserved, documentation ...).  The HTTP client connects to exactly the
  addresses returned here (see :mod:`shared.delivery.http_sender`), so a DNS answer that changes
  between a check and the connection cannot lead anywhere else.

Hosts in the operator's allowlist (``WEBHOOK_ALLOWED_HOSTS``) skip the address check and may use
plain http: that is how an internal receiver, or the local receiver of the tests, is permitted.
"""

from __future__ import annotations

import ipaddress
import re
import socket
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

import idna

from shared.errors import InvalidInputError, PermanentError, TransientError

__all__ = [
    "AddressRefused",
    "EgressPolicy",
    "IPAddress",
    "NameResolutionError",
    "Resolver",
    "UrlRefused",
    "WebhookUrl",
    "address_problem",
    "normalize_host",
    "parse_webhook_url",
    "system_resolver",
    "vet_addresses",
]

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
#: ``resolver(host, port)`` → the addresses ``host`` resolves to, as text.
Resolver = Callable[[str, int], Sequence[str]]


class UrlRefused(InvalidInputError):
    """The URL itself is not acceptable for a webhook (scheme, credentials, tricks ...)."""


class AddressRefused(PermanentError):
    """The host resolves to an address the service must not connect to."""


class NameResolutionError(TransientError):
    """The host name did not resolve (DNS may recover, so this is worth retrying)."""


def _nets(*cidrs: str) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    return tuple(ipaddress.ip_network(c) for c in cidrs)


# Checked in order; the first match names the reason.  The final "not global" test catches any
# range IANA marks as non-global that is not listed here.
_REFUSED: tuple[tuple[str, tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]], ...] = (
    ("the unspecified address", _nets("0.0.0.0/32", "::/128")),
    ("'this network' (0.0.0.0/8)", _nets("0.0.0.0/8")),
    ("loopback", _nets("127.0.0.0/8", "::1/128")),
    (
        "a cloud metadata address",
        _nets("169.254.169.254/32", "fd00:ec2::254/128", "100.100.100.200/32"),
    ),
    ("link-local", _nets("169.254.0.0/16", "fe80::/10")),
    ("a private network (RFC 1918)", _nets("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16")),
    ("shared address space (CGNAT, 100.64.0.0/10)", _nets("100.64.0.0/10")),
    ("IETF protocol assignments (192.0.0.0/24)", _nets("192.0.0.0/24")),
    ("the 6to4 relay anycast range", _nets("192.88.99.0/24")),
    ("benchmarking (198.18.0.0/15)", _nets("198.18.0.0/15", "2001:2::/48")),
    (
        "documentation",
        _nets(
            "192.0.2.0/24",
            "198.51.100.0/24",
            "203.0.113.0/24",
            "2001:db8::/32",
            "3fff::/20",
        ),
    ),
    ("the limited broadcast address", _nets("255.255.255.255/32")),
    ("multicast", _nets("224.0.0.0/4", "ff00::/8")),
    ("reserved (240.0.0.0/4)", _nets("240.0.0.0/4")),
    ("unique-local IPv6 (fc00::/7)", _nets("fc00::/7")),
    ("site-local IPv6 (fec0::/10)", _nets("fec0::/10")),
    ("Teredo (2001::/32)", _nets("2001::/32")),
    ("local-use NAT64 (64:ff9b:1::/48)", _nets("64:ff9b:1::/48")),
    ("ORCHIDv2 / segment routing", _nets("2001:20::/28", "5f00::/16")),
    ("discard-only IPv6 (100::/64)", _nets("100::/64")),
)
_IPV4_COMPATIBLE = ipaddress.ip_network("::/96")
_IPV4_TRANSLATED = ipaddress.ip_network("::ffff:0:0:0/96")
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_SIX_TO_FOUR = ipaddress.ip_network("2002::/16")
_GLOBAL_UNICAST_V6 = ipaddress.ip_network("2000::/3")


def _embedded_v4(ip: ipaddress.IPv6Address) -> tuple[str, ipaddress.IPv4Address] | None:
    """The IPv4 address an IPv6 form carries (mapped, compatible, translated, NAT64, 6to4)."""
    if ip.ipv4_mapped is not None:
        return "IPv4-mapped", ip.ipv4_mapped
    low32 = ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    if ip in _IPV4_TRANSLATED:
        return "IPv4-translated", low32
    if ip in _NAT64:
        return "NAT64", low32
    if ip.sixtofour is not None:
        return "6to4", ip.sixtofour
    if ip in _IPV4_COMPATIBLE and int(ip) > 1:
        return "IPv4-compatible", low32
    return None


def address_problem(ip: IPAddress) -> str | None:
    """Why the service must not connect to ``ip``, or None for a public unicast address."""
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.scope_id:
            return "a scoped (zone) IPv6 address"
        embedded = _embedded_v4(ip)
        if embedded is not None:
            form, v4 = embedded
            inner = address_problem(v4)
            if inner is not None:
                return f"{inner} ({form} form of {v4})"
            if form in ("IPv4-mapped", "IPv4-compatible", "IPv4-translated"):
                # Reached over IPv6 these would bypass IPv4 routing policy; require plain IPv4.
                return f"an {form} IPv6 address (use the IPv4 address {v4})"
            return None
    for reason, networks in _REFUSED:
        if any(ip in net for net in networks if net.version == ip.version):
            return reason
    if isinstance(ip, ipaddress.IPv6Address) and ip not in _GLOBAL_UNICAST_V6:
        return "outside IPv6 global unicast (2000::/3)"
    if ip.is_multicast:
        return "multicast"
    if not ip.is_global:
        return "not a public address"
    return None


# --- URLs -------------------------------------------------------------------------------------

_HOST_CHARS = re.compile(r"^[a-z0-9_\-.]+$")
_LABEL = re.compile(r"^[a-z0-9_](?:[a-z0-9_\-]{0,61}[a-z0-9_])?$")
_NUMERIC_LABEL = re.compile(r"^(?:0x[0-9a-f]*|[0-9]+)$")
_SAFE_TARGET = re.compile(r"^[\x21-\x7e]*$")


def _refuse(url_hint: str, why: str) -> UrlRefused:
    return UrlRefused(f"webhook URL {url_hint}: {why}", user_message=f"the webhook URL {why}")


def _disguised_ipv4(host: str) -> str | None:
    """The dotted quad a numeric-looking host stands for, if it is not already one."""
    labels = host.split(".")
    if not _NUMERIC_LABEL.match(labels[-1]):
        return None
    try:
        canonical = str(ipaddress.IPv4Address(host))
    except ValueError:
        canonical = ""
    if canonical == host:
        return None
    try:
        return socket.inet_ntoa(socket.inet_aton(host))
    except OSError:
        return "an invalid address"


def normalize_host(host: str) -> str:
    """The ASCII, lower-case form of a host name or IP literal, as it will be dialled.

    Raises :class:`UrlRefused` for hosts that are not plain names or canonical addresses.
    """
    raw = host.strip()
    if raw.startswith("[") and raw.endswith("]"):
        raw = raw[1:-1]
    if not raw:
        raise _refuse("(no host)", "has no host")
    if "%" in raw:
        raise _refuse(raw, "has a percent-encoded or zone-scoped host; write the host plainly")
    if ":" in raw:
        try:
            return str(ipaddress.IPv6Address(raw))
        except ValueError:
            raise _refuse(raw, "has a malformed IPv6 address") from None
    if raw.endswith("."):
        raw = raw[:-1]  # an FQDN's root dot names the same host
    if not raw.isascii():
        try:
            raw = idna.encode(raw, uts46=True).decode("ascii")
        except idna.IDNAError as exc:
            raise _refuse(raw, f"has a host name that is not valid IDNA ({exc})") from None
    raw = raw.lower()
    if not _HOST_CHARS.match(raw) or len(raw) > 253:
        raise _refuse(raw, "has a host with characters a DNS name cannot hold")
    disguised = _disguised_ipv4(raw)
    if disguised is not None:
        raise _refuse(
            raw,
            f"writes an IPv4 address in a non-standard form ({raw!r} means {disguised}); "
            "write addresses as four decimal numbers a.b.c.d",
        )
    if not all(_LABEL.match(label) for label in raw.split(".")):
        raise _refuse(raw, "has an empty or malformed label in its host name")
    if any(label.startswith("xn--") for label in raw.split(".")):
        try:
            idna.decode(raw)
        except idna.IDNAError as exc:
            raise _refuse(raw, f"has a host name that is not valid IDNA ({exc})") from None
    return raw


@dataclass(frozen=True)
class EgressPolicy:
    """What an operator allows beyond public https: ``host`` or ``host:port`` entries.

    Kept as (host, port) pairs, port None for "any port": joined back into one string,
    ``[fd00::1]:8443`` would read as the different address ``fd00::1:8443`` on any port.
    """

    allowed: frozenset[tuple[str, int | None]] = frozenset()

    @classmethod
    def from_entries(cls, entries: Iterable[str]) -> EgressPolicy:
        """Build from ``WEBHOOK_ALLOWED_HOSTS`` entries (``host``, ``host:port``, ``[v6]:port``)."""
        normalized: set[tuple[str, int | None]] = set()
        for entry in entries:
            text = entry.strip().lower()
            if not text:
                continue
            host, sep, port = text, "", ""
            if text.startswith("["):
                close = text.find("]")
                if close > 0:
                    host, rest = text[: close + 1], text[close + 1 :]
                    sep, port = rest[:1], rest[1:]
                    if sep not in ("", ":"):
                        raise ValueError(f"{entry!r}: write the port after ']' as ]:port")
            elif text.count(":") == 1:
                host, port = text.split(":")
                sep = ":"
            if sep and not (port.isdigit() and 0 < int(port) < 65536):
                raise ValueError(f"{entry!r}: the port after ':' must be a number 1-65535")
            normalized.add((normalize_host(host), int(port) if port else None))
        return cls(frozenset(normalized))

    def allows(self, host: str, port: int) -> bool:
        """True when ``host`` (normalised) on ``port`` is allowlisted by the operator."""
        return (host, None) in self.allowed or (host, port) in self.allowed


@dataclass(frozen=True)
class WebhookUrl:
    """A vetted-for-syntax webhook URL, split into the parts the client dials."""

    scheme: str
    host: str
    port: int
    target: str
    allowlisted: bool

    @property
    def host_header(self) -> str:
        """The ``Host`` header value (brackets for IPv6, port unless it is the default)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        default = 443 if self.scheme == "https" else 80
        return host if self.port == default else f"{host}:{self.port}"

    def __str__(self) -> str:
        return f"{self.scheme}://{self.host_header}{self.target}"


def parse_webhook_url(url: str, policy: EgressPolicy) -> WebhookUrl:
    """Split and check ``url``; raise :class:`UrlRefused` saying what is wrong and how to fix it."""
    hint = url[:200]
    if not isinstance(url, str) or not url:
        raise _refuse("(empty)", "is empty; give an https:// URL")
    if len(url) > 2048:
        raise _refuse(hint, "is longer than 2048 characters")
    if any(ord(c) < 0x21 or ord(c) == 0x7F for c in url):
        raise _refuse(hint, "contains spaces or control characters; percent-encode them")
    if "\\" in url:
        raise _refuse(hint, "contains a backslash; use '/' in URLs")
    try:
        parts = urlsplit(url)
        port_given = parts.port
    except ValueError as exc:
        raise _refuse(hint, f"cannot be parsed ({exc})") from None
    scheme = parts.scheme.lower()
    if scheme not in ("https", "http"):
        raise _refuse(hint, f"uses scheme {scheme or '(none)'!r}; webhooks use https://")
    if "@" in parts.netloc:
        raise _refuse(
            hint,
            "contains credentials (user@host); remove them and set the endpoint's "
            "bearer/basic auth instead",
        )
    if parts.fragment or url.endswith("#"):
        raise _refuse(hint, "has a #fragment, which is never sent; remove it")
    netloc_host = parts.netloc.rsplit(":", 1)[0] if port_given is not None else parts.netloc
    if netloc_host.endswith(":"):
        netloc_host = netloc_host[:-1]
    host = normalize_host(netloc_host)
    port = port_given if port_given is not None else (443 if scheme == "https" else 80)
    if port == 0:
        raise _refuse(hint, "uses port 0")
    allowlisted = policy.allows(host, port)
    if scheme == "http" and not allowlisted:
        raise _refuse(
            hint,
            "uses plain http; use https:// (an operator can allow http for a host with "
            "WEBHOOK_ALLOWED_HOSTS)",
        )
    if not allowlisted and _special_use_name(host):
        raise _refuse(
            hint,
            f"names {host}, a local or internal host name; webhooks go to public hosts (an "
            "operator can allow this host with WEBHOOK_ALLOWED_HOSTS)",
        )
    if not allowlisted and _is_ip_literal(host):
        # Refuse internal literals now; names are vetted when the connection is made.
        vet_addresses(host, port, policy=policy, resolver=_no_resolver)
    target = parts.path or "/"
    if parts.query:
        target += "?" + parts.query
    if not _SAFE_TARGET.match(target):
        raise _refuse(hint, "has characters in its path that must be percent-encoded")
    return WebhookUrl(scheme=scheme, host=host, port=port, target=target, allowlisted=allowlisted)


# --- resolution and vetting -------------------------------------------------------------------


def system_resolver(host: str, port: int) -> list[str]:
    """Resolve with the operating system (``getaddrinfo``), TCP addresses only, deduplicated."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP)
    except (socket.gaierror, UnicodeError) as exc:
        raise NameResolutionError(
            f"cannot resolve {host}: {exc}",
            user_message=f"the webhook host {host} does not resolve; check the URL",
        ) from None
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


#: Special-use and private-network names (RFC 6761, 6762, 8375, ICANN's .internal).
_SPECIAL_SUFFIXES = (".localhost", ".local", ".internal", ".home.arpa", ".lan", ".intranet")


def _special_use_name(host: str) -> bool:
    name = host.rstrip(".")
    return name == "localhost" or name.endswith(_SPECIAL_SUFFIXES)


def _is_ip_literal(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _no_resolver(host: str, port: int) -> list[str]:  # noqa: ARG001 - resolver signature
    raise AssertionError("an IP literal needs no resolution")


def _parse_address(text: str) -> IPAddress:
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        raise AddressRefused(f"resolver returned {text!r}, which is not an IP address") from None


def vet_addresses(
    host: str, port: int, *, policy: EgressPolicy, resolver: Resolver
) -> list[IPAddress]:
    """The addresses to connect to for ``host``; refuses unless every one of them is public.

    ``host`` must already be normalised (:func:`normalize_host`).  Allowlisted hosts are
    resolved but not vetted.
    """
    try:
        addresses = [ipaddress.ip_address(host)]
    except ValueError:
        addresses = [_parse_address(a) for a in resolver(host, port)]
    if not addresses:
        raise NameResolutionError(
            f"{host} resolved to no address",
            user_message=f"the webhook host {host} has no address; check the URL",
        )
    if policy.allows(host, port):
        return addresses
    for address in addresses:
        problem = address_problem(address)
        if problem is not None:
            where = (
                f"{host} is {problem}"
                if str(address) == host
                else f"{host} resolves to {address}, which is {problem}"
            )
            raise AddressRefused(
                f"refused to connect to {address} for {host}: {problem}",
                user_message=f"the webhook host {where}; webhooks may only reach public "
                "internet addresses",
            )
    return addresses
