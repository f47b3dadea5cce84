"""The real client behind trusted reverse proxies (sans-IO: strings in, strings out).

Behind nginx, HAProxy or a cloud load balancer, every connection comes from the proxy, so
``conn.remote_address`` is the proxy's address. The proxy names the client it served in a
header: ``Forwarded`` (RFC 7239) or the older ``X-Forwarded-For``. Anyone can send those headers,
so they are believed only when the connection comes from an address you list as a proxy:

.. code-block:: python

    proxies = TrustedProxies(["10.0.0.0/8", "::1"])
    address = proxies.client_address(conn.remote_address, request.headers)
    scheme = proxies.client_scheme(conn.remote_address, request.headers, default="http")

How the client is found
-----------------------

The connection's peer and the addresses listed in the header form a chain: client, proxy 1,
proxy 2, ..., peer. Each proxy appends the address it received the request from, so an entry
can only be believed if a trusted proxy wrote it, and a trusted proxy writes only the entry to
its own left. The walk therefore goes from right to left:

1. If the peer is not a trusted proxy, the headers are ignored: the answer is the peer.
2. Otherwise look at the hops right to left. A hop that is a trusted proxy is skipped; the
   first hop that is not trusted is the client, and the walk ends there (what lies further
   left was written by the client itself and may be made up).
3. If every hop is a trusted proxy, the leftmost one is the answer.
4. A hop that is not an IP address (``unknown``, an obfuscated ``_name``, garbage, a
   ``Forwarded`` element without ``for=`` or with broken syntax) ends the walk: the answer
   is the last address that was read successfully (a trusted proxy, or the peer). We cannot
   see past such a hop, and the proxy that wrote it is the nearest party we can vouch for.

Addresses may carry ports (``1.2.3.4:5678``, ``[2001:db8::1]:4711``); ports are dropped.
IPv4-mapped IPv6 addresses (``::ffff:10.0.0.1``, what a dual-stack socket reports) are treated
as the IPv4 address they carry, both in the proxy list and in headers. Addresses read from a
header are returned in canonical form (``str(ipaddress.ip_address(...))``); the peer, when it is
the answer, is returned exactly as given. Nothing here raises on bad client input.

Which header
------------

``mode="x-forwarded"`` (the default) reads ``X-Forwarded-For`` with ``X-Forwarded-Proto``,
which is what nginx, HAProxy and most load balancers write. ``mode="forwarded"`` reads RFC 7239
``Forwarded`` instead. ``mode="auto"`` uses ``Forwarded`` when the request has one, else the
``X-Forwarded-*`` pair. It is not the default because a proxy that writes one family usually
passes the other through from the client untouched, so a client could supply a ``Forwarded``
header that ``auto`` would believe. Name the family your proxies write.

Several lines of the same header are read as one comma-separated list, in order.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Iterator
from typing import Literal, NamedTuple

from .http import Headers

__all__ = ["ClientInfo", "TrustedProxies"]

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
Mode = Literal["auto", "forwarded", "x-forwarded"]

_SCHEMES = ("http", "https")


class ClientInfo(NamedTuple):
    """What :meth:`TrustedProxies.resolve` found: the client's address and scheme."""

    address: str
    scheme: str


class TrustedProxies:
    """The reverse proxies whose forwarding headers are believed.

    ``proxies`` lists IP addresses and CIDR networks (``"10.0.0.0/8"``, ``"2001:db8::/32"``,
    ``"127.0.0.1"``). An entry that is neither raises :class:`ValueError` naming it, and so
    does a network with host bits set (``"10.0.0.1/8"``: write ``"10.0.0.0/8"``), because such
    a typo would otherwise silently trust the wrong addresses.

    ``mode`` picks the headers: ``"x-forwarded"`` (the default: ``X-Forwarded-For`` and
    ``X-Forwarded-Proto``), ``"forwarded"`` (RFC 7239 ``Forwarded``) or ``"auto"``
    (``Forwarded`` when present, else the ``X-Forwarded-*`` pair; see the module notes for why
    it is not the default).
    """

    def __init__(self, proxies: Iterable[str], *, mode: Mode = "x-forwarded") -> None:
        if isinstance(proxies, str):
            # A lone string would be read character by character: refuse rather than guess.
            raise TypeError(f"proxies must be a list of addresses, not the string {proxies!r}")
        if mode not in ("auto", "forwarded", "x-forwarded"):
            raise ValueError(f"mode must be 'auto', 'forwarded' or 'x-forwarded', not {mode!r}")
        self.mode: Mode = mode
        self.networks: tuple[IPNetwork, ...] = tuple(_parse_network(spec) for spec in proxies)

    def __contains__(self, ip: object) -> bool:
        """True if ``ip`` (a string or an :mod:`ipaddress` address) is a trusted proxy.

        A string that is not an IP address (with or without a port) is not trusted.
        """
        if isinstance(ip, str):
            address = _parse_node(ip)
        elif isinstance(ip, (ipaddress.IPv4Address, ipaddress.IPv6Address)):
            address = _unmap(ip)
        else:
            return False
        return address is not None and self._trusts(address)

    def __repr__(self) -> str:
        nets = ", ".join(repr(str(net)) for net in self.networks)
        return f"TrustedProxies([{nets}], mode={self.mode!r})"

    def client_address(self, peer: str, headers: Headers) -> str:
        """The client's IP address: ``peer`` unless a trusted proxy names someone else."""
        return self.resolve(peer, headers).address

    def client_scheme(self, peer: str, headers: Headers, default: str = "http") -> str:
        """``"http"`` or ``"https"`` as a trusted proxy reports the client's request, else
        ``default`` (pass ``"https"`` for a TLS connection)."""
        return self.resolve(peer, headers, default).scheme

    def resolve(self, peer: str, headers: Headers, default_scheme: str = "http") -> ClientInfo:
        """Both answers at once (the headers are read once).

        The scheme is the ``proto`` (``Forwarded``) or ``X-Forwarded-Proto`` entry nearest the
        client among the hops the address walk reached, read right to left: only trusted
        proxies wrote those. Values other than ``http``/``https`` (any case) end that walk.
        """
        peer_ip = _parse_node(peer)
        if peer_ip is None or not self._trusts(peer_ip):
            return ClientInfo(peer, default_scheme)
        use_forwarded = self.mode == "forwarded" or (self.mode == "auto" and "forwarded" in headers)
        if use_forwarded:
            address, scheme = self._walk_forwarded(headers)
        else:
            address, scheme = self._walk_x_forwarded(headers)
        return ClientInfo(peer if address is None else str(address), scheme or default_scheme)

    # -- internals -------------------------------------------------------------------------

    def _trusts(self, address: IPAddress) -> bool:
        return any(address in net for net in self.networks if net.version == address.version)

    def _walk_forwarded(self, headers: Headers) -> tuple[IPAddress | None, str | None]:
        """Walk the ``Forwarded`` elements right to left (see the module notes)."""
        address: IPAddress | None = None
        scheme: str | None = None
        proto_ok = True
        for element in _forwarded_elements(",".join(headers.get_all("forwarded"))):
            if element is None:  # broken syntax: nothing further left can be read
                break
            # This element was written by a trusted proxy, so its proto is believed too.
            if proto_ok and "proto" in element:
                proto = _parse_scheme(element["proto"])
                proto_ok = proto is not None
                scheme = proto or scheme
            hop = _parse_node(element.get("for", ""))
            if hop is None:
                break
            address = hop
            if not self._trusts(hop):
                break
        return address, scheme

    def _walk_x_forwarded(self, headers: Headers) -> tuple[IPAddress | None, str | None]:
        """Walk ``X-Forwarded-For`` right to left, then pair ``X-Forwarded-Proto`` with it."""
        address: IPAddress | None = None
        reached = 0
        for entry in reversed(_list_items(headers.get_all("x-forwarded-for"))):
            reached += 1
            hop = _parse_node(entry)
            if hop is None:
                break
            address = hop
            if not self._trusts(hop):
                break
        # Each proxy that appends to X-Forwarded-For appends to X-Forwarded-Proto too, so the
        # entries line up from the right; a proxy that overwrites leaves one entry. Either way
        # only the rightmost ``reached`` entries come from trusted proxies.
        scheme: str | None = None
        protos = _list_items(headers.get_all("x-forwarded-proto"))
        for entry in reversed(protos[-max(reached, 1) :]):
            proto = _parse_scheme(entry)
            if proto is None:
                break
            scheme = proto
        return address, scheme


# -- addresses -------------------------------------------------------------------------------


def _parse_network(spec: object) -> IPNetwork:
    """One entry of the proxy list as a network; IPv4-mapped IPv6 becomes IPv4."""
    if isinstance(spec, (ipaddress.IPv4Network, ipaddress.IPv6Network)):
        spec = str(spec)  # accepted although not advertised: they are unambiguous
    if not isinstance(spec, str):
        raise ValueError(f"trusted proxy {spec!r} is not a string")
    try:
        network = ipaddress.ip_network(spec.strip(), strict=True)
    except ValueError as exc:
        raise ValueError(f"trusted proxy {spec!r} is not an IP address or network: {exc}") from exc
    if isinstance(network, ipaddress.IPv6Network):
        mapped = network.network_address.ipv4_mapped
        if mapped is not None and network.prefixlen >= 96:
            return ipaddress.IPv4Network((mapped, network.prefixlen - 96))
    return network


def _unmap(address: IPAddress) -> IPAddress:
    """``::ffff:1.2.3.4`` is the IPv4 client 1.2.3.4 seen through a dual-stack socket."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def _parse_node(text: str) -> IPAddress | None:
    """An address as proxies write it, port dropped; ``None`` if it is not one.

    Accepts ``1.2.3.4``, ``1.2.3.4:80``, ``2001:db8::1``, ``[2001:db8::1]`` and
    ``[2001:db8::1]:80``. Ports may be numeric or obfuscated (``_abc``, RFC 7239 section 6.3).
    """
    text = text.strip()
    if text.startswith("["):
        host, bracket, port = text[1:].partition("]")
        if not bracket or (port and not (port.startswith(":") and _is_port(port[1:]))):
            return None
        return _ip(host, version=6)
    address = _ip(text)
    if address is None:  # maybe IPv4 with a port (a bare IPv6 address has parsed already)
        host, colon, port = text.rpartition(":")
        if colon and _is_port(port):
            address = _ip(host, version=4)
    return address


def _ip(text: str, version: int | None = None) -> IPAddress | None:
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    if version is not None and address.version != version:
        return None
    return _unmap(address)


def _is_port(text: str) -> bool:
    if text.startswith("_"):  # obfuscated port
        return len(text) > 1 and all(c.isascii() and (c.isalnum() or c in "._-") for c in text)
    return 0 < len(text) <= 5 and text.isascii() and text.isdigit() and int(text) <= 65535


def _parse_scheme(text: str) -> str | None:
    scheme = text.strip().lower()
    return scheme if scheme in _SCHEMES else None


def _list_items(lines: list[str]) -> list[str]:
    """Items of a comma-separated header over all its lines, in order; empty items dropped
    (RFC 9110 section 5.6.1 asks recipients to ignore them)."""
    items = (item.strip() for line in lines for item in line.split(","))
    return [item for item in items if item]


# -- Forwarded (RFC 7239), parsed from the right -----------------------------------------------
#
# The header is parsed right to left because only its right end is known to be well formed
# (trusted proxies wrote it) while its left end may be anything a client sent: an unbalanced
# quote on the left must not swallow the proxies' elements on the right. The parser stops at
# the first syntax error, which is also where the walk has to stop.

_TCHAR = frozenset("!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")
# RFC 7239 wants "1.2.3.4:80" and IPv6 quoted; some proxies send them bare, which is harmless.
_VALUE_CHAR = _TCHAR | frozenset(":[]")


class _Malformed(Exception):
    """Internal: the header is broken at this point (never leaves this module)."""


def _forwarded_elements(text: str) -> Iterator[dict[str, str] | None]:
    """The elements of a ``Forwarded`` value as ``{lower-case name: value}``, rightmost first.

    Yields ``None`` for a malformed element and stops there. Empty elements are skipped.
    """
    end = len(text)
    while end >= 0:
        pairs: dict[str, str] = {}
        try:
            end = _read_element(text, end - 1, pairs)
        except _Malformed:
            yield None
            return
        if pairs:
            yield pairs


def _read_element(text: str, i: int, pairs: dict[str, str]) -> int:
    """Read the element whose last character is ``text[i]`` into ``pairs``; return the index
    of the comma before it, or -1 at the start of the text."""
    while True:
        i = _skip_space(text, i)
        if i < 0 or text[i] == ",":
            return i
        if text[i] == ";":  # an empty pair, which the grammar allows
            i -= 1
            continue
        value, i = _read_value(text, i)
        i = _skip_space(text, i)
        if i < 0 or text[i] != "=":
            raise _Malformed
        name, i = _read_token(text, _skip_space(text, i - 1), _TCHAR)
        name = name.lower()
        if name in pairs:  # RFC 7239 section 4: a parameter occurs at most once per element
            raise _Malformed
        pairs[name] = value
        i = _skip_space(text, i)
        if i >= 0 and text[i] == ";":
            i -= 1
        elif i >= 0 and text[i] != ",":
            raise _Malformed


def _skip_space(text: str, i: int) -> int:
    while i >= 0 and text[i] in " \t":
        i -= 1
    return i


def _read_token(text: str, i: int, chars: frozenset[str]) -> tuple[str, int]:
    start = i
    while i >= 0 and text[i] in chars:
        i -= 1
    if i == start:
        raise _Malformed
    return text[i + 1 : start + 1], i


def _read_value(text: str, i: int) -> tuple[str, int]:
    if text[i] != '"':
        return _read_token(text, i, _VALUE_CHAR)
    if _escaped(text, i):
        raise _Malformed
    opening = i - 1
    while opening >= 0 and (text[opening] != '"' or _escaped(text, opening)):
        opening -= 1
    if opening < 0:
        raise _Malformed
    return _unquote(text[opening + 1 : i]), opening - 1


def _escaped(text: str, i: int) -> bool:
    """True if ``text[i]`` is preceded by an odd run of backslashes (a quoted-pair)."""
    run = 0
    while i - run - 1 >= 0 and text[i - run - 1] == "\\":
        run += 1
    return run % 2 == 1


def _unquote(body: str) -> str:
    chars: list[str] = []
    escape = False
    for char in body:
        if not escape and char == "\\":
            escape = True
            continue
        if char != "\t" and (char < " " or char == "\x7f"):
            raise _Malformed
        chars.append(char)
        escape = False
    return "".join(chars)
