"""The SSRF guard: refused addresses and URL tricks, pinning, TLS, redirects, pool keys.

No test sends traffic anywhere but 127.0.0.1: names resolve through an injected resolver, and
a refused address is refused before the socket layer (which a spy watches) is ever called.
"""

from __future__ import annotations

import ipaddress
import ssl
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import httpcore
import pytest

from shared.delivery.config import DeliverySettings
from shared.delivery.http_sender import WebhookHttpClient, WebhookTransportError
from shared.delivery.ssrf import (
    AddressRefused,
    EgressPolicy,
    NameResolutionError,
    UrlRefused,
    address_problem,
    normalize_host,
    parse_webhook_url,
    system_resolver,
    vet_addresses,
)
from shared.settings import SettingsError
from tests.fakes.webhook_receiver import Reply, WebhookReceiver
from tests.unit.delivery.helpers import make_tls

# --- addresses --------------------------------------------------------------------------------

REFUSED_ADDRESSES = [
    "127.0.0.1",
    "127.255.255.254",
    "0.0.0.0",
    "0.1.2.3",
    "10.0.0.1",
    "10.255.255.255",
    "172.16.0.1",
    "172.31.255.254",
    "192.168.1.1",
    "169.254.0.1",
    "169.254.169.254",
    "100.64.0.1",
    "100.127.255.254",
    "100.100.100.200",
    "192.0.0.8",
    "192.0.2.10",
    "198.51.100.7",
    "203.0.113.9",
    "198.18.0.1",
    "192.88.99.1",
    "224.0.0.1",
    "239.255.255.250",
    "240.0.0.1",
    "255.255.255.255",
    "::",
    "::1",
    "fe80::1",
    "fc00::1",
    "fd12:3456::1",
    "fd00:ec2::254",
    "fec0::1",
    "ff02::1",
    "2001:db8::1",
    "3fff::1",
    "::ffff:127.0.0.1",
    "::ffff:10.0.0.1",
    "::ffff:169.254.169.254",
    "::ffff:8.8.8.8",
    "::127.0.0.1",
    "::a9fe:a9fe",
    "::ffff:0:a00:1",
    "64:ff9b::7f00:1",
    "64:ff9b::a9fe:a9fe",
    "64:ff9b::c0a8:101",
    "64:ff9b:1::1",
    "2002:7f00:1::1",
    "2002:c0a8:101::1",
    "2002:a9fe:a9fe::1",
    "2001::1",
    "2001:2::1",
    "5f00::1",
    "100::1",
    "4000::1",
]
PUBLIC_ADDRESSES = [
    "8.8.8.8",
    "1.1.1.1",
    "93.184.216.34",
    "2606:4700:4700::1111",
    "2a00:1450:4001:80b::200e",
    "64:ff9b::808:808",
    "2002:808:808::1",
]


class SpyBackend(httpcore.NetworkBackend):
    """The socket layer, recording every connection attempt (then really connecting)."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, int]] = []
        self._real = httpcore.SyncBackend()

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.NetworkStream:
        self.calls.append((host, port))
        assert host == "127.0.0.1", f"a test tried to connect to {host}"
        return self._real.connect_tcp(host, port, timeout, local_address, socket_options)


class Resolver:
    """A DNS stand-in: name → list of answers, one list per call (the last one repeats)."""

    def __init__(self, answers: Mapping[str, Sequence[Sequence[str]]]) -> None:
        self.answers = answers
        self.calls: list[str] = []

    def __call__(self, host: str, port: int) -> list[str]:
        self.calls.append(host)
        queue = self.answers[host]
        index = min(sum(1 for h in self.calls if h == host) - 1, len(queue) - 1)
        return list(queue[index])


def client(
    resolver: Resolver, allowed: Sequence[str] = (), ssl_context: ssl.SSLContext | None = None
) -> tuple[WebhookHttpClient, SpyBackend]:
    spy = SpyBackend()
    http = WebhookHttpClient(
        policy=EgressPolicy.from_entries(allowed),
        resolver=resolver,
        ssl_context=ssl_context,
        connector=spy,
    )
    return http, spy


@pytest.mark.parametrize("address", REFUSED_ADDRESSES)
def test_refused_address_is_refused_before_any_connection(address: str) -> None:
    assert address_problem(ipaddress.ip_address(address)) is not None
    resolver = Resolver({"victim.test": [[address]]})
    http, spy = client(resolver)
    url = parse_webhook_url("https://victim.test/hook", http.policy)
    with pytest.raises(AddressRefused, match="refused to connect") as info:
        http.post(url, b"{}", {}, timeout=2)
    assert "may only reach public internet addresses" in info.value.user_message
    assert spy.calls == []
    assert resolver.calls == ["victim.test"]
    http.close()


@pytest.mark.parametrize("address", PUBLIC_ADDRESSES)
def test_public_addresses_pass(address: str) -> None:
    assert address_problem(ipaddress.ip_address(address)) is None
    resolver = Resolver({"fine.test": [[address]]})
    vetted = vet_addresses("fine.test", 443, policy=EgressPolicy(), resolver=resolver)
    assert [str(a) for a in vetted] == [str(ipaddress.ip_address(address))]


def test_every_resolved_address_must_be_public() -> None:
    resolver = Resolver({"mixed.test": [["93.184.216.34", "10.1.2.3"]]})
    with pytest.raises(AddressRefused) as info:
        vet_addresses("mixed.test", 443, policy=EgressPolicy(), resolver=resolver)
    assert "mixed.test resolves to 10.1.2.3, which is a private network" in info.value.user_message
    with pytest.raises(NameResolutionError):
        vet_addresses(
            "none.test", 443, policy=EgressPolicy(), resolver=Resolver({"none.test": [[]]})
        )
    with pytest.raises(AddressRefused, match="not an IP address"):
        vet_addresses(
            "odd.test", 443, policy=EgressPolicy(), resolver=Resolver({"odd.test": [["x"]]})
        )


def test_system_resolver_reports_unknown_names() -> None:
    with pytest.raises(NameResolutionError, match=r"cannot resolve name\.invalid") as info:
        system_resolver("name.invalid", 443)
    assert "does not resolve" in info.value.user_message
    assert "127.0.0.1" in system_resolver("127.0.0.1", 80)


# --- URL tricks -------------------------------------------------------------------------------

URL_TRICKS = [
    ("https://2130706433/", "non-standard form"),
    ("https://0x7f000001/", "non-standard form"),
    ("https://0177.0.0.1/", "non-standard form"),
    ("https://0x7f.0.0.1/", "non-standard form"),
    ("https://127.1/", "non-standard form"),
    ("https://127.0.1/", "non-standard form"),
    ("https://0/", "non-standard form"),
    ("https://017700000001/", "non-standard form"),
    ("https://3232235777/", "non-standard form"),
    ("https://127.0.0.1/", "loopback"),
    ("https://127.0.0.1./", "loopback"),
    ("https://0.0.0.0/", "unspecified"),
    ("https://169.254.169.254/latest/meta-data/", "metadata"),
    ("https://[::1]/", "loopback"),
    ("https://[::ffff:127.0.0.1]/", "loopback"),
    ("https://[::ffff:7f00:1]/", "loopback"),
    ("https://[0:0:0:0:0:ffff:a9fe:a9fe]/", "metadata"),
    ("https://[fd00:ec2::254]/", "metadata"),
    ("https://[64:ff9b::a9fe:a9fe]/", "metadata"),
    ("https://[2002:a9fe:a9fe::]/", "metadata"),
    ("https://[fe80::1%25eth0]/", "zone-scoped"),
    ("https://%31%32%37.0.0.1/", "percent-encoded"),
    ("https://１２７.０.０.１/", "loopback"),
    ("https://user:pass@example.com/", "credentials"),
    ("https://example.com@127.0.0.1/", "credentials"),
    ("https://example.com\\@127.0.0.1/", "backslash"),
    ("https://example.com\\.evil.test/", "backslash"),
    ("http://example.com/hook", "plain http"),
    ("ftp://example.com/", "scheme 'ftp'"),
    ("file:///etc/passwd", "scheme 'file'"),
    ("gopher://127.0.0.1:6379/_FLUSHALL", "scheme 'gopher'"),
    ("//example.com/", "scheme '\\(none\\)'"),
    ("https:// example.com/", "spaces or control"),
    ("https://exa\tmple.com/", "spaces or control"),
    ("https://example.com/\r\nX-Injected: 1", "spaces or control"),
    ("https://example.com/#fragment", "fragment"),
    ("https://example.com:0/", "port 0"),
    ("https://example.com:99999/", "cannot be parsed"),
    ("https://example..com/", "malformed label"),
    ("https://-bad-.example.com/", "malformed label"),
    ("https://exa$mple.com/", "characters a DNS name"),
    ("https://xn--a.com/", "not valid IDNA"),
    ("https://xn--zz.com/", "not valid IDNA"),
    ("https://[::1/", "cannot be parsed"),
    ("https:///path-only", "no host"),
    ("", "empty"),
    ("https://example.com/ü", "percent-encoded"),
]


@pytest.mark.parametrize(("url", "why"), URL_TRICKS)
def test_url_tricks_are_refused(url: str, why: str) -> None:
    with pytest.raises((UrlRefused, AddressRefused), match=why):
        parse_webhook_url(url, EgressPolicy())


def test_at_least_forty_tricks_and_addresses() -> None:
    assert len(URL_TRICKS) >= 40
    assert len(REFUSED_ADDRESSES) >= 40


NAMES_TO_INTERNAL = {
    "internal.example": ["10.0.0.5"],
    "v6only.example": ["::1"],
    "nat64.example": ["64:ff9b::a00:1"],
}


@pytest.mark.parametrize("name", sorted(NAMES_TO_INTERNAL))
def test_names_resolving_inside_are_refused_at_connect(name: str) -> None:
    resolver = Resolver({name.rstrip("."): [NAMES_TO_INTERNAL[name]]})
    http, spy = client(resolver)
    url = parse_webhook_url(f"https://{name}/x", http.policy)
    with pytest.raises(AddressRefused):
        http.post(url, b"{}", {}, timeout=2)
    assert spy.calls == []


@pytest.mark.parametrize(
    "name",
    [
        "localhost",
        "localhost.",
        "api.localhost",
        "metadata.google.internal",
        "printer.local",
        "nas.home.arpa",
        "router.lan",
    ],
)
def test_local_and_internal_names_are_refused_before_any_lookup(name: str) -> None:
    with pytest.raises(UrlRefused, match="local or internal host name"):
        parse_webhook_url(f"https://{name}/x", EgressPolicy())
    allowed = EgressPolicy.from_entries([name.rstrip(".")])
    assert parse_webhook_url(f"https://{name}/x", allowed).allowlisted


def test_hosts_are_normalised() -> None:
    policy = EgressPolicy()
    url = parse_webhook_url("HTTPS://Bücher.Example.:8443/a/b?c=d", policy)
    assert (url.scheme, url.host, url.port, url.target) == (
        "https",
        "xn--bcher-kva.example",
        8443,
        "/a/b?c=d",
    )
    assert str(url) == "https://xn--bcher-kva.example:8443/a/b?c=d"
    assert (
        parse_webhook_url("https://[2606:4700::1111]/", policy).host_header == "[2606:4700::1111]"
    )
    assert normalize_host("[2606:4700:0::1111]") == "2606:4700::1111"
    assert parse_webhook_url("https://example.com", policy).target == "/"
    # UTS 46 drops a zero-width space: what is dialled is the plain name.
    assert parse_webhook_url("https://ex\u200bample.com/", policy).host == "example.com"


def test_allowlist_admits_http_and_internal_addresses() -> None:
    policy = EgressPolicy.from_entries(["127.0.0.1:8080", "Hooks.Internal", "[::1]:9000", " "])
    assert parse_webhook_url("http://127.0.0.1:8080/x", policy).allowlisted
    with pytest.raises(UrlRefused, match="plain http"):
        parse_webhook_url("http://127.0.0.1:8081/x", policy)
    assert parse_webhook_url("http://hooks.internal/x", policy).allowlisted
    assert parse_webhook_url("http://[::1]:9000/", policy).allowlisted
    resolver = Resolver({"hooks.internal": [["10.0.0.9"]]})
    assert vet_addresses("hooks.internal", 80, policy=policy, resolver=resolver) == [
        ipaddress.ip_address("10.0.0.9")
    ]
    with pytest.raises(ValueError, match="port"):
        EgressPolicy.from_entries(["host:99999"])


def test_a_bracketed_v6_entry_with_a_port_allows_that_address_on_that_port_only() -> None:
    # Stored as one string, "[fd00::1]:8443" read as the address fd00::1:8443 on any port.
    policy = EgressPolicy.from_entries(["[fd00::1]:8443"])
    assert policy.allows("fd00::1", 8443)
    assert not policy.allows("fd00::1", 22)
    assert not policy.allows("fd00::1:8443", 6379)
    assert parse_webhook_url("http://[fd00::1]:8443/hook", policy).allowlisted
    # Not allowlisted, so plain http is refused, and https vets the (unique-local) address.
    for url in ("http://[fd00::1:8443]/", "http://[fd00::1]:22/"):
        with pytest.raises(UrlRefused, match="plain http"):
            parse_webhook_url(url, policy)
    with pytest.raises(AddressRefused, match="unique-local"):
        parse_webhook_url("https://[fd00::1:8443]:6379/", policy)


@pytest.mark.parametrize(
    "entry", ["[fd00::1]x8443", "[fd00::1]8443", "[fd00::1]:", "hooks.internal:"]
)
def test_an_allowlist_entry_that_names_no_clear_port_is_refused(entry: str) -> None:
    # Read leniently, each of these allowed a port (or every port) the operator did not write.
    with pytest.raises(ValueError, match="port"):
        EgressPolicy.from_entries([entry])
    with pytest.raises(SettingsError, match="WEBHOOK_ALLOWED_HOSTS"):
        DeliverySettings.load(webhook_allowed_hosts=entry)


def test_allowlist_setting_is_validated() -> None:
    settings = DeliverySettings.load(webhook_allowed_hosts="127.0.0.1, hooks.internal:8080")
    assert settings.egress_policy.allows("hooks.internal", 8080)
    with pytest.raises(SettingsError, match="WEBHOOK_ALLOWED_HOSTS"):
        DeliverySettings.load(webhook_allowed_hosts="0x7f.1")
    with pytest.raises(SettingsError, match="WEBHOOK_ALLOWED_HOSTS"):
        DeliverySettings.load(webhook_allowed_hosts="a:b:c:d")
    assert DeliverySettings().webhook_retry_schedule == [5, 300, 1800, 7200, 18000, 36000, 36000]


# --- connections ------------------------------------------------------------------------------


def test_dns_answer_changing_after_the_check_cannot_reach_inside() -> None:
    with WebhookReceiver() as receiver:
        # The check at registration sees a public address; the connection-time answer is
        # loopback (where the receiver listens).  Only the connection-time answer counts.
        resolver = Resolver({"rebind.test": [["93.184.216.34"], ["127.0.0.1"]]})
        vet_addresses("rebind.test", receiver.port, policy=EgressPolicy(), resolver=resolver)
        http, spy = client(resolver)
        url = parse_webhook_url(f"https://rebind.test:{receiver.port}/", http.policy)
        with pytest.raises(AddressRefused, match="loopback"):
            http.post(url, b"{}", {}, timeout=2)
        assert spy.calls == []
        assert receiver.connections == 0
        http.close()


def test_connection_goes_to_the_address_that_was_vetted() -> None:
    with WebhookReceiver() as receiver:
        # One resolution per connection: a second answer (internal) is never asked for.
        resolver = Resolver({"pinned.test": [["127.0.0.1"], ["10.9.9.9"]]})
        http, spy = client(resolver, allowed=["pinned.test"])
        url = parse_webhook_url(f"http://pinned.test:{receiver.port}/p", http.policy)
        assert http.post(url, b"{}", {}, timeout=2).status == 200
        assert spy.calls == [("127.0.0.1", receiver.port)]
        assert resolver.calls == ["pinned.test"]
        assert receiver.requests[0].headers["host"] == f"pinned.test:{receiver.port}"
        http.close()


def test_redirects_are_not_followed() -> None:
    with WebhookReceiver() as receiver:
        receiver.script(Reply(302, {"Location": "http://169.254.169.254/latest/meta-data/"}))
        http, spy = client(Resolver({}), allowed=["127.0.0.1"])
        url = parse_webhook_url(f"http://127.0.0.1:{receiver.port}/", http.policy)
        result = http.post(url, b"{}", {}, timeout=2)
        assert result.status == 302
        assert result.headers["location"].startswith("http://169.254.169.254")
        assert len(receiver.requests) == 1
        assert spy.calls == [("127.0.0.1", receiver.port)]
        http.close()


def test_tls_is_checked_against_the_host_name(tmp_path: Path) -> None:
    tls = make_tls(tmp_path, ["hooks.test", "alias.test"])
    seen_sni: list[str | None] = []
    tls.server.sni_callback = lambda sock, name, ctx: seen_sni.append(name)
    with WebhookReceiver(tls=tls.server, host_name="hooks.test") as receiver:
        names = {n: [["127.0.0.1"]] for n in ("hooks.test", "alias.test", "wrong.test")}
        http, spy = client(Resolver(names), allowed=list(names), ssl_context=tls.client)
        ok = parse_webhook_url(f"https://hooks.test:{receiver.port}/", http.policy)
        assert http.post(ok, b"{}", {}, timeout=5).status == 200
        assert seen_sni == ["hooks.test"]
        wrong = parse_webhook_url(f"https://wrong.test:{receiver.port}/", http.policy)
        with pytest.raises(WebhookTransportError, match="Hostname mismatch"):
            http.post(wrong, b"{}", {}, timeout=5)
        assert len(receiver.requests) == 1
        # An untrusted certificate fails the same way (the default CA bundle does not know it).
        strict = WebhookHttpClient(policy=http.policy, resolver=Resolver(names), connector=spy)
        with pytest.raises(WebhookTransportError):
            strict.post(ok, b"{}", {}, timeout=5)
        strict.close()
        http.close()


def test_connections_are_never_shared_across_host_names(tmp_path: Path) -> None:
    tls = make_tls(tmp_path, ["hooks.test", "alias.test"])
    with WebhookReceiver(tls=tls.server) as receiver:
        names = {n: [["127.0.0.1"]] for n in ("hooks.test", "alias.test")}
        resolver = Resolver(names)
        http, spy = client(resolver, allowed=list(names), ssl_context=tls.client)
        first = parse_webhook_url(f"https://hooks.test:{receiver.port}/", http.policy)
        second = parse_webhook_url(f"https://alias.test:{receiver.port}/", http.policy)
        for _ in range(3):
            assert http.post(first, b"{}", {}, timeout=5).status == 200
        assert receiver.connections == 1  # kept alive for the same host name
        assert http.post(second, b"{}", {}, timeout=5).status == 200
        assert receiver.connections == 2  # same address, other name: a new connection
        assert resolver.calls == ["hooks.test", "alias.test"]
        assert len(spy.calls) == 2
        http.close()


def test_timeouts_and_refused_connections_are_transport_errors() -> None:
    with WebhookReceiver() as receiver:
        receiver.script(Reply(200, delay=1.5))
        http, _ = client(Resolver({}), allowed=["127.0.0.1"])
        url = parse_webhook_url(f"http://127.0.0.1:{receiver.port}/", http.policy)
        with pytest.raises(WebhookTransportError, match=r"within 0\.5 s"):
            http.post(url, b"{}", {}, timeout=0.5)
        receiver.down()
        with pytest.raises(WebhookTransportError, match="Connection refused") as info:
            http.post(url, b"{}", {}, timeout=2)
        assert "could not be reached" in info.value.user_message
        http.close()


def test_unix_sockets_are_refused() -> None:
    from shared.delivery.http_sender import VettingBackend

    backend = VettingBackend(EgressPolicy())
    with pytest.raises(httpcore.ConnectError, match="unix sockets"):
        backend.connect_unix_socket("/var/run/docker.sock")
