"""TrustedProxies: the real client and scheme behind reverse proxies, table-driven."""

from __future__ import annotations

import ipaddress
import re

import pytest

from ratchetpy import Headers
from ratchetpy.protocol.forwarded import ClientInfo, TrustedProxies

PROXIES = TrustedProxies(["10.0.0.0/8", "192.168.1.7", "2001:db8:ffff::/48", "::1"], mode="auto")

P = "10.0.0.1"  # a trusted proxy as the connection's peer

Case = tuple[str, str, list[tuple[str, str]], str]


def xff(*lines: str) -> list[tuple[str, str]]:
    return [("X-Forwarded-For", line) for line in lines]


def xfp(*lines: str) -> list[tuple[str, str]]:
    return [("X-Forwarded-Proto", line) for line in lines]


def fwd(*lines: str) -> list[tuple[str, str]]:
    return [("Forwarded", line) for line in lines]


# (description, peer, headers, expected client address)
X_FORWARDED: list[Case] = [
    ("no header: the peer", P, [], "10.0.0.1"),
    ("untrusted peer: header ignored", "203.0.113.9", xff("1.2.3.4"), "203.0.113.9"),
    ("untrusted IPv6 peer", "2001:db8::9", xff("1.2.3.4"), "2001:db8::9"),
    ("peer that is not an address", "unix:/tmp/s", xff("1.2.3.4"), "unix:/tmp/s"),
    ("single proxy", P, xff("1.2.3.4"), "1.2.3.4"),
    ("single proxy, spaces", P, xff("  1.2.3.4  "), "1.2.3.4"),
    ("chain of trusted hops", P, xff("1.2.3.4, 10.0.0.2, 192.168.1.7"), "1.2.3.4"),
    ("spoofed left entries ignored", P, xff("6.6.6.6, 7.7.7.7, 1.2.3.4"), "1.2.3.4"),
    (
        "spoofed trusted-looking entry behind the client",
        P,
        xff("10.9.9.9, 1.2.3.4, 10.0.0.2"),
        "1.2.3.4",
    ),
    ("every hop trusted: the leftmost", P, xff("10.0.0.3, 10.0.0.2"), "10.0.0.3"),
    ("multiple header lines, in order", P, xff("6.6.6.6, 1.2.3.4", "10.0.0.2"), "1.2.3.4"),
    ("multiple lines: the last line is nearest", P, xff("1.2.3.4", "5.6.7.8"), "5.6.7.8"),
    ("mixed-case header name", P, [("x-FORWARDED-for", "1.2.3.4")], "1.2.3.4"),
    ("IPv4 with port", P, xff("1.2.3.4:5678"), "1.2.3.4"),
    ("bracketed IPv6 with port", P, xff("[2001:db8::1]:80"), "2001:db8::1"),
    ("bare IPv6", P, xff("2001:DB8:0::1"), "2001:db8::1"),
    ("IPv4-mapped hop is IPv4", P, xff("::ffff:1.2.3.4"), "1.2.3.4"),
    ("IPv4-mapped trusted hop", P, xff("1.2.3.4, ::ffff:10.0.0.2"), "1.2.3.4"),
    ("IPv4-mapped peer", "::ffff:10.0.0.1", xff("1.2.3.4"), "1.2.3.4"),
    ("IPv6 proxy", "::1", xff("1.2.3.4"), "1.2.3.4"),
    ("IPv6 CIDR proxy", "2001:db8:ffff:1::5", xff("1.2.3.4"), "1.2.3.4"),
    ("garbage: the peer", P, xff("not-an-ip"), "10.0.0.1"),
    ("unknown: the peer", P, xff("unknown"), "10.0.0.1"),
    ("garbage behind a trusted hop: that hop", P, xff("1.2.3.4, junk, 10.0.0.2"), "10.0.0.2"),
    ("garbage left of the client is never read", P, xff("junk, 1.2.3.4"), "1.2.3.4"),
    ("empty items skipped", P, xff("1.2.3.4,, ,10.0.0.2,"), "1.2.3.4"),
    ("empty header: the peer", P, xff(""), "10.0.0.1"),
    ("bad port", P, xff("1.2.3.4:99999"), "10.0.0.1"),
    ("two :: is not IPv6", P, xff("2001:db8::1::80"), "10.0.0.1"),
    ("IPv4 in brackets is garbage", P, xff("[1.2.3.4]"), "10.0.0.1"),
    ("unclosed bracket", P, xff("[2001:db8::1"), "10.0.0.1"),
    ("NUL and controls", P, xff("1.2.3.4\x00"), "10.0.0.1"),
    ("non-ASCII digits", P, xff("\u0661.\u0662.\u0663.\u0664"), "10.0.0.1"),
    (
        "Forwarded absent: X-Forwarded-For used",
        P,
        [*xff("1.2.3.4"), ("X-Real-IP", "9.9.9.9")],
        "1.2.3.4",
    ),
]

FORWARDED: list[Case] = [
    ("untrusted peer: ignored", "203.0.113.9", fwd("for=1.2.3.4"), "203.0.113.9"),
    ("single proxy", P, fwd("for=1.2.3.4"), "1.2.3.4"),
    ("RFC 7239 example", P, fwd("for=192.0.2.60;proto=http;by=203.0.113.43"), "192.0.2.60"),
    ("quoted IPv6 with port", P, fwd('for="[2001:db8:cafe::17]:4711"'), "2001:db8:cafe::17"),
    ("quoted IPv6 without port", P, fwd('for="[2001:db8:cafe::17]"'), "2001:db8:cafe::17"),
    ("quoted IPv4 with port", P, fwd('for="1.2.3.4:8080"'), "1.2.3.4"),
    ("unquoted port (lenient)", P, fwd("for=1.2.3.4:8080"), "1.2.3.4"),
    ("obfuscated port", P, fwd('for="1.2.3.4:_abc"'), "1.2.3.4"),
    ("case-insensitive names", P, [("FORWARDED", "For=1.2.3.4;PROTO=https")], "1.2.3.4"),
    ("chain", P, fwd('for=1.2.3.4, for=10.0.0.2, for="[2001:db8:ffff::1]"'), "1.2.3.4"),
    ("spoofed left elements ignored", P, fwd("for=6.6.6.6, for=1.2.3.4"), "1.2.3.4"),
    ("multiple lines", P, fwd("for=6.6.6.6", "for=1.2.3.4;proto=https"), "1.2.3.4"),
    ("every hop trusted", P, fwd("for=10.0.0.3, for=10.0.0.2"), "10.0.0.3"),
    ("unknown stops: the peer", P, fwd("for=unknown"), "10.0.0.1"),
    (
        "unknown behind a trusted hop: that hop",
        P,
        fwd("for=1.2.3.4, for=unknown, for=10.0.0.2"),
        "10.0.0.2",
    ),
    ("obfuscated identifier stops", P, fwd('for=1.2.3.4, for="_hidden", for=10.0.0.2'), "10.0.0.2"),
    ("element without for= stops", P, fwd("for=1.2.3.4, proto=https"), "10.0.0.1"),
    (
        "empty pairs and elements are fine",
        P,
        fwd("for=6.6.6.6,, ;for=1.2.3.4;;proto=https;"),
        "1.2.3.4",
    ),
    ("spaces around separators", P, fwd("for = 1.2.3.4 ; proto = https ,"), "1.2.3.4"),
    ("IPv4-mapped", P, fwd('for="[::ffff:1.2.3.4]"'), "1.2.3.4"),
    ("garbage value", P, fwd("for=garbage"), "10.0.0.1"),
    ("garbage syntax", P, fwd("for"), "10.0.0.1"),
    ("no value", P, fwd("for="), "10.0.0.1"),
    ("duplicate parameter", P, fwd("for=1.2.3.4;for=5.6.7.8"), "10.0.0.1"),
    (
        "unterminated quote on the left cannot swallow the right",
        P,
        fwd('for="6.6.6.6, for=1.2.3.4'),
        "1.2.3.4",
    ),
    ("stray quote on the left", P, fwd('for=6"6, for="[2001:db8::1]:4711"'), "2001:db8::1"),
    (
        "quoted commas and escapes on the left",
        P,
        fwd('for="a\\", for=6.6.6.6", for=1.2.3.4'),
        "1.2.3.4",
    ),
    ("escaped closing quote is not a value", P, fwd('for="1.2.3.4\\"'), "10.0.0.1"),
    ("control character in quotes", P, fwd('for="1.2.3.4\x01"'), "10.0.0.1"),
    ("bad port", P, fwd('for="1.2.3.4:http"'), "10.0.0.1"),
    (
        "bare IPv6 is read whole: a port needs brackets",
        P,
        fwd('for="2001:db8::1:4711"'),
        "2001:db8::1:4711",
    ),
    ("Forwarded preferred over X-Forwarded-For", P, xff("9.9.9.9") + fwd("for=1.2.3.4"), "1.2.3.4"),
]


@pytest.mark.parametrize(("why", "peer", "headers", "expected"), X_FORWARDED + FORWARDED)
def test_client_address(why: str, peer: str, headers: list[tuple[str, str]], expected: str) -> None:
    assert PROXIES.client_address(peer, Headers(headers)) == expected, why


# (description, peer, headers, expected scheme with default "http")
SCHEMES: list[Case] = [
    ("no header", P, [], "http"),
    ("untrusted peer", "203.0.113.9", xfp("https"), "http"),
    ("untrusted peer, Forwarded", "203.0.113.9", fwd("for=1.2.3.4;proto=https"), "http"),
    ("X-Forwarded-Proto alone", P, xfp("https"), "https"),
    ("X-Forwarded-Proto upper case", P, xfp(" HTTPS "), "https"),
    ("X-Forwarded-Proto other scheme", P, xfp("ftp"), "http"),
    ("X-Forwarded-Proto ws is not an HTTP scheme", P, xfp("wss"), "http"),
    ("overwritten by the proxy: one entry", P, xff("1.2.3.4, 10.0.0.2") + xfp("https"), "https"),
    (
        "appended: entry lined up with the client",
        P,
        xff("1.2.3.4, 10.0.0.2") + xfp("https, http"),
        "https",
    ),
    ("client-sent entry never read", P, xff("1.2.3.4") + xfp("https, http"), "http"),
    ("bad entry stops the walk", P, xff("1.2.3.4, 10.0.0.2") + xfp("https, gopher"), "http"),
    ("Forwarded proto", P, fwd("for=1.2.3.4;proto=https"), "https"),
    ("Forwarded proto without for", P, fwd("proto=https"), "https"),
    ("Forwarded quoted proto", P, fwd('for=1.2.3.4;proto="HTTPS"'), "https"),
    (
        "Forwarded proto nearest the client",
        P,
        fwd("for=1.2.3.4;proto=https, for=10.0.0.2;proto=http"),
        "https",
    ),
    (
        "Forwarded spoofed proto ignored",
        P,
        fwd("for=6.6.6.6;proto=https, for=1.2.3.4;proto=http"),
        "http",
    ),
    ("Forwarded bad proto", P, fwd("for=1.2.3.4;proto=javascript"), "http"),
    ("Forwarded wins over X-Forwarded-Proto", P, fwd("for=1.2.3.4") + xfp("https"), "http"),
]


@pytest.mark.parametrize(("why", "peer", "headers", "expected"), SCHEMES)
def test_client_scheme(why: str, peer: str, headers: list[tuple[str, str]], expected: str) -> None:
    assert PROXIES.client_scheme(peer, Headers(headers)) == expected, why


def test_scheme_default_is_kept() -> None:
    assert PROXIES.client_scheme("203.0.113.9", Headers([]), default="https") == "https"
    assert PROXIES.client_scheme("10.0.0.1", Headers([]), "https") == "https"


def test_resolve_gives_both() -> None:
    headers = Headers([("Forwarded", 'for="[2001:db8::1]:4711";proto=https')])
    assert PROXIES.resolve("10.0.0.1", headers) == ClientInfo("2001:db8::1", "https")


# -- modes ----------------------------------------------------------------------------------

BOTH = Headers([("Forwarded", "for=1.2.3.4;proto=https"), ("X-Forwarded-For", "5.6.7.8")])


def test_mode_forwarded_ignores_x_forwarded() -> None:
    proxies = TrustedProxies(["10.0.0.1"], mode="forwarded")
    assert proxies.client_address("10.0.0.1", BOTH) == "1.2.3.4"
    only_xff = Headers([("X-Forwarded-For", "5.6.7.8"), ("X-Forwarded-Proto", "https")])
    assert proxies.resolve("10.0.0.1", only_xff) == ClientInfo("10.0.0.1", "http")


def test_mode_x_forwarded_ignores_a_client_sent_forwarded() -> None:
    # The proxy writes X-Forwarded-For and passes the client's Forwarded header through.
    proxies = TrustedProxies(["10.0.0.1"], mode="x-forwarded")
    assert proxies.resolve("10.0.0.1", BOTH) == ClientInfo("5.6.7.8", "http")


# -- the proxy list -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("ip", "trusted"),
    [
        ("10.1.2.3", True),
        ("10.1.2.3:80", True),
        ("11.0.0.1", False),
        ("192.168.1.7", True),
        ("192.168.1.8", False),
        ("::1", True),
        ("[::1]:8080", True),
        ("::2", False),
        ("::ffff:10.0.0.1", True),
        ("::ffff:11.0.0.1", False),
        ("2001:db8:ffff:abcd::1", True),
        ("2001:db8:fffe::1", False),
        ("garbage", False),
        ("", False),
        (ipaddress.ip_address("10.0.0.9"), True),
        (ipaddress.ip_address("::ffff:10.0.0.9"), True),
        (42, False),
        (None, False),
    ],
)
def test_contains(ip: object, trusted: bool) -> None:
    assert (ip in PROXIES) is trusted


def test_ipv4_mapped_network_in_the_list() -> None:
    proxies = TrustedProxies(["::ffff:10.0.0.0/104"])
    assert "10.200.0.1" in proxies
    assert "::ffff:10.200.0.1" in proxies
    assert "11.0.0.1" not in proxies


def test_empty_list_trusts_nobody() -> None:
    proxies = TrustedProxies([])
    assert proxies.client_address("10.0.0.1", Headers([("X-Forwarded-For", "1.2.3.4")])) == (
        "10.0.0.1"
    )


@pytest.mark.parametrize("spec", ["10.0.0.0/33", "10.0.0.1/8", "example.com", "", "1.2.3.4:80"])
def test_invalid_proxy_is_named(spec: str) -> None:
    with pytest.raises(ValueError, match=re.escape(repr(spec))):
        TrustedProxies(["10.0.0.0/8", spec])


def test_non_string_proxy_is_refused() -> None:
    with pytest.raises(ValueError, match="42"):
        TrustedProxies([42])  # type: ignore[list-item]


def test_network_objects_are_accepted() -> None:
    assert "10.1.1.1" in TrustedProxies([ipaddress.ip_network("10.0.0.0/8")])  # type: ignore[list-item]


def test_a_lone_string_is_refused() -> None:
    with pytest.raises(TypeError, match="list"):
        TrustedProxies("10.0.0.1")


def test_bad_mode() -> None:
    with pytest.raises(ValueError, match="mode"):
        TrustedProxies([], mode="x-real-ip")  # type: ignore[arg-type]


def test_repr() -> None:
    assert (
        repr(TrustedProxies(["10.0.0.0/8"])) == "TrustedProxies(['10.0.0.0/8'], mode='x-forwarded')"
    )


def test_long_hostile_headers_are_cheap() -> None:
    # Only the trusted right end is walked, whatever the client put on the left.
    junk = ", ".join(["6.6.6.6"] * 2000)
    headers = Headers([("X-Forwarded-For", junk + ", 1.2.3.4"), ("Forwarded", '"' * 5000)])
    assert PROXIES.client_address("10.0.0.1", headers) == "10.0.0.1"
    assert TrustedProxies(["10.0.0.1"], mode="x-forwarded").client_address("10.0.0.1", headers) == (
        "1.2.3.4"
    )


def test_default_mode_ignores_a_forwarded_header_a_client_slipped_past_the_proxy() -> None:
    # nginx appends to X-Forwarded-For but passes the client's own Forwarded header through.
    headers = Headers([("Forwarded", "for=198.51.100.66"), ("X-Forwarded-For", "203.0.113.5")])
    assert TrustedProxies(["10.0.0.1"]).client_address("10.0.0.1", headers) == "203.0.113.5"
