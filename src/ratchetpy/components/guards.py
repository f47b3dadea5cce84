"""Security decorators: who may connect, for which host, from where, and how often (Ratchet's
``OriginCheck`` and ``IpBlackList``, plus the host check and limits Ratchet never had).

Each wraps an HTTP component and refuses a request with an answer that says why, so a browser's
developer console and the server log both tell the user what happened:

.. code-block:: python

    app = HttpServer(
        IpBlackList(
            HostCheck(
                ConnectionLimits(
                    OriginCheck(WsServer(Chat()), ["example.com"]),
                    max_per_ip=20,
                    handshake_rate=(10, 1.0),
                ),
                ["example.com"],
            )
        ),
        trusted_proxies=["127.0.0.1"],  # so remote_address is the client, not nginx
    )

No trio here: they only look at requests and call ``send`` / ``close``.
"""

from __future__ import annotations

import ipaddress
import logging
import time
from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import urlsplit

from ..protocol.http import HttpRequest, HttpResponse, host_matches, split_host
from .base import HttpComponent, HttpDecorator, HttpResult, MaybeAwaitable, when_answered
from .connection import Connection

__all__ = [
    "LOOPBACK_HOSTS",
    "ConnectionLimits",
    "HostCheck",
    "IpBlackList",
    "OriginCheck",
    "count_refusal",
]

logger = logging.getLogger("ratchetpy.security")

_DEFAULT_PORTS = {"http": 80, "https": 443, "ws": 80, "wss": 443}


def _is_upgrade(request: HttpRequest) -> bool:
    return (request.header("upgrade") or "").strip().lower() == "websocket"


def _refuse(
    conn: Connection,
    request: HttpRequest,
    status: int,
    why: str,
    *,
    level: int = logging.INFO,
    headers: Iterable[tuple[str, str]] = (),
) -> HttpResponse:
    """The refusal every guard answers with: logged, counted, and ``why`` in the body."""
    logger.log(
        level,
        "HTTP %d to %s: %s %s: %s",
        status,
        conn.remote_address,
        request.method,
        request.path,
        why,
    )
    count_refusal(conn, request, status)
    return HttpResponse.error(status, why, headers=headers)


def count_refusal(conn: Connection, request: HttpRequest, status: int) -> None:
    """Count a WebSocket handshake refused with ``status`` in the server's statistics
    (``handshakes_rejected``, and by status for its metrics); refused plain HTTP requests
    are not counted."""
    if _is_upgrade(request):
        counters = getattr(conn, "counters", None)
        if counters is not None:
            counters.handshake(status)


class OriginCheck(HttpDecorator):
    """Refuse requests whose ``Origin`` header is not allowed, with 403 and the reason.

    Browsers send ``Origin`` with every WebSocket handshake, and a page from another site can
    open a WebSocket to your server with the user's cookies: this check is what stops it.

    ``allowed_origins`` entries may be:

    * ``"*"``: allow every origin (the check is off);
    * ``"example.com"`` or ``"*.example.com"``: that host (or its subdomains), any scheme or port
      (Ratchet's form);
    * ``"example.com:8443"``: that host and port, any scheme;
    * ``"https://example.com"`` or ``"https://example.com:8443"``: an exact origin.

    ``same_origin`` (default True) also allows a page served by this very server: an origin
    whose host and port equal the request's ``Host`` header. So with no other entries the
    check is the browser's same-origin rule. ``allow_missing`` (default True) lets requests
    without ``Origin`` through: browsers always send it on handshakes, and non-browser clients
    can send whatever they like, so refusing them protects nothing.
    """

    def __init__(
        self,
        component: HttpComponent,
        allowed_origins: Iterable[str] = (),
        *,
        same_origin: bool = True,
        allow_missing: bool = True,
    ) -> None:
        super().__init__(component)
        self.allowed_origins = list(allowed_origins)
        self.same_origin = same_origin
        self.allow_missing = allow_missing

    def on_open(self, conn: Connection, request: HttpRequest) -> HttpResult:
        if self.allow_missing and request.header("origin") is None:
            return self.component.on_open(conn, request)
        why = self.refusal(request)
        if why is None:
            return self.component.on_open(conn, request)
        return _refuse(conn, request, 403, why)

    def refusal(self, request: HttpRequest) -> str | None:
        """Why ``request`` is refused, or ``None`` if its origin is allowed."""
        origin = request.header("origin")
        if origin is None:
            return None if self.allow_missing else "the request has no Origin header"
        if "*" in self.allowed_origins or self._allowed(origin.strip(), request):
            return None
        allowed = [repr(entry) for entry in self.allowed_origins]
        if self.same_origin:
            allowed.insert(0, f"the same origin ({request.header('host') or 'no Host header'})")
        listed = ", ".join(allowed) or "none"
        return f"origin {origin!r} is not allowed (allowed: {listed})"

    def _allowed(self, origin: str, request: HttpRequest) -> bool:
        parts = urlsplit(origin)
        scheme = parts.scheme.lower()
        if not scheme or not parts.netloc:
            return False  # "null" (sandboxed frames, file: pages) and garbage
        host, port = split_host(parts.netloc, _DEFAULT_PORTS.get(scheme))
        if self.same_origin:
            own_host = request.header("host")
            if own_host is not None and (host, port) == split_host(own_host, port):
                return True
        for entry in self.allowed_origins:
            if "://" in entry:
                want = urlsplit(entry.lower())
                want_host, want_port = split_host(want.netloc, _DEFAULT_PORTS.get(want.scheme))
                if (want.scheme, want_host, want_port) == (scheme, host, port):
                    return True
                continue
            want_host, want_port = split_host(entry, None)
            if (want_port is None or want_port == port) and host_matches(want_host, host):
                return True
        return False


#: The names of this machine that no DNS answer can hand to another site (browsers resolve
#: ``*.localhost`` themselves, RFC 6761): what ``App`` serves besides its ``http_host``, as
#: Django allows them in development.
LOOPBACK_HOSTS = ("localhost", "127.0.0.1", "[::1]", "*.localhost")


class HostCheck(HttpDecorator):
    """Refuse requests for a host this server does not serve, with 421 and the reason.

    The defence against DNS rebinding: a page on ``evil.example`` whose name the attacker
    re-points at 127.0.0.1 (or at a server inside your network) reaches your server from the
    victim's browser, as the same origin as itself, with ``Host: evil.example``. Refusing
    every ``Host`` the server was not told about stops it, and stops a forged ``Host`` from
    reaching code that builds links from it. It is Django's ``ALLOWED_HOSTS``.

    ``allowed_hosts`` entries (ports are ignored, names compare case-insensitively):

    * ``"example.com"``: that host; ``"127.0.0.1"``, ``"[::1]"`` (or ``"::1"``): those
      addresses;
    * ``"*.example.com"``: its subdomains (not ``example.com`` itself);
    * ``"*"``: any host (the check is off).

    A request without a ``Host`` header (only HTTP/1.0 may omit it) is refused too, unless
    ``"*"`` is listed.
    """

    def __init__(self, component: HttpComponent, allowed_hosts: Iterable[str]) -> None:
        super().__init__(component)
        self.allowed_hosts: list[str] = []
        self.allow(allowed_hosts)

    def allow(self, hosts: Iterable[str]) -> None:
        """Serve requests for ``hosts`` too (entries as for ``allowed_hosts``)."""
        for entry in hosts:
            if entry.count(":") > 1 and not entry.startswith("["):
                entry = f"[{entry}]"  # a bare IPv6 address, written as in a Host header
            host = split_host(entry)[0]
            if host not in self.allowed_hosts:
                self.allowed_hosts.append(host)

    def on_open(self, conn: Connection, request: HttpRequest) -> HttpResult:
        why = self.refusal(request)
        if why is None:
            return self.component.on_open(conn, request)
        return _refuse(conn, request, 421, why)

    def refusal(self, request: HttpRequest) -> str | None:
        """Why ``request`` is refused, or ``None`` if its host is served."""
        allowed = self.allowed_hosts
        if "*" in allowed:
            return None
        value = request.header("host")
        if value is not None:
            host = split_host(value)[0]
            if any(host_matches(entry, host) for entry in allowed):
                return None
        listed = ", ".join(map(repr, allowed)) or "none"
        what = "the request has no Host header" if value is None else f"host {value!r}"
        return f"{what} is not served here (allowed hosts: {listed})"


class _Network:
    """An address or network in a block list."""

    @staticmethod
    def parse(value: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
        try:
            network = ipaddress.ip_network(value.strip(), strict=False)
        except ValueError:
            raise ValueError(f"not an IP address or network: {value!r}") from None
        if isinstance(network, ipaddress.IPv6Network) and network.prefixlen == 128:
            mapped = network.network_address.ipv4_mapped
            if mapped is not None:
                return ipaddress.ip_network(mapped)
        return network


def _address_key(address: str) -> str:
    """A canonical text form, so ``::ffff:10.0.0.1`` and ``10.0.0.1`` are one client."""
    if ":" not in address:
        return address  # IPv4 as the socket (or TrustedProxies) reports it: already canonical
    try:
        parsed = ipaddress.ip_address(address)
    except ValueError:
        return address
    if isinstance(parsed, ipaddress.IPv6Address) and parsed.ipv4_mapped is not None:
        parsed = parsed.ipv4_mapped
    return str(parsed)


class _Tracked(HttpDecorator):
    """A decorator that keeps the connections it let through, by client address, until they
    close; connections answered with a plain response are not kept."""

    def __init__(self, component: HttpComponent) -> None:
        super().__init__(component)
        self._open: dict[str, set[Connection]] = {}
        self._keys: dict[Connection, str] = {}

    def _let_through(self, conn: Connection, request: HttpRequest | None, key: str) -> Any:
        self._keys[conn] = key
        self._open.setdefault(key, set()).add(conn)
        result = (
            self.component.on_open(conn)  # type: ignore[call-arg]
            if request is None
            else self.component.on_open(conn, request)
        )
        return when_answered(result, lambda: self._forget(conn))

    def _forget(self, conn: Connection) -> None:
        key = self._keys.pop(conn, None)
        if key is not None:
            conns = self._open.get(key)
            if conns is not None:
                conns.discard(conn)
                if not conns:
                    del self._open[key]

    def open_count(self, address: str) -> int:
        """Connections from ``address`` that this decorator let through and are still open."""
        return len(self._open.get(_address_key(address), ()))

    def on_close(self, conn: Connection) -> MaybeAwaitable:
        self._forget(conn)
        return self.component.on_close(conn)


class IpBlackList(_Tracked):
    """Refuse clients by IP address or network (Ratchet's ``IpBlackList``).

    Works in front of an :class:`~ratchetpy.HttpServer` (raw connections are dropped at once)
    or behind one (requests get 403; behind a trusted proxy this sees the real client
    address). :meth:`block` and :meth:`unblock` work while serving; blocking also closes the
    address's open connections (WebSockets with 1008) unless ``close_existing=False``.
    """

    def __init__(self, component: Any, blocked: Iterable[str] = ()) -> None:
        super().__init__(component)
        self._addresses: set[str] = set()
        self._networks: list[ipaddress.IPv4Network | ipaddress.IPv6Network] = []
        for entry in blocked:
            self.block(entry)

    def block(self, address: str, *, close_existing: bool = True) -> None:
        """Refuse ``address`` (``"203.0.113.7"``) or a network (``"203.0.113.0/24"``)."""
        network = _Network.parse(address)
        if network.num_addresses == 1:
            self._addresses.add(str(network.network_address))
        elif network not in self._networks:
            self._networks.append(network)
        if close_existing:
            for key in [key for key in self._open if self.is_blocked(key)]:
                for conn in list(self._open.get(key, ())):
                    logger.info("closing connection #%s from blocked %s", conn.resource_id, key)
                    self.on_shutdown(conn, 1008, "address blocked")

    def unblock(self, address: str) -> None:
        """Stop refusing ``address`` or the network; unknown entries are ignored."""
        network = _Network.parse(address)
        if network.num_addresses == 1:
            self._addresses.discard(str(network.network_address))
        elif network in self._networks:
            self._networks.remove(network)

    def is_blocked(self, address: str) -> bool:
        """True if ``address`` is refused (by itself or by a blocked network)."""
        if not self._addresses and not self._networks:
            return False
        key = _address_key(address)
        if key in self._addresses:
            return True
        if not self._networks:
            return False
        try:
            parsed = ipaddress.ip_address(key)
        except ValueError:
            return False
        return any(parsed in network for network in self._networks)

    @property
    def blocked(self) -> list[str]:
        """The blocked addresses and networks (Ratchet's ``getBlockedAddresses``)."""
        return sorted(self._addresses) + [str(network) for network in self._networks]

    def on_open(self, conn: Connection, request: HttpRequest | None = None) -> Any:
        key = _address_key(conn.remote_address)
        if self.is_blocked(key):
            logger.info("refused %s: address blocked", conn.remote_address)
            if request is None:
                conn.close()
                return None
            count_refusal(conn, request, 403)
            return HttpResponse.error(403, f"the address {conn.remote_address} is blocked")
        return self._let_through(conn, request, key)


class _Bucket:
    __slots__ = ("stamp", "tokens")

    def __init__(self, tokens: float, stamp: float) -> None:
        self.tokens = tokens
        self.stamp = stamp


class ConnectionLimits(_Tracked):
    """Limit what one client address may hold and how fast it may open WebSockets.

    ``max_per_ip``
        Connections one address may keep open through this decorator (WebSockets and other
        connections a component took over; plain HTTP requests neither count nor are refused).
        WebSocket handshakes past it get 429.
    ``handshake_rate``
        ``(count, seconds)``: at most ``count`` WebSocket handshakes per ``seconds`` from one
        address, with bursts up to ``count`` (a token bucket). More get 429 with
        ``Retry-After``.
    ``clock``
        A function returning seconds (for tests); ``time.monotonic`` by default.

    Put it behind :class:`~ratchetpy.HttpServer` so that, with trusted proxies set there, the
    address is the client's and not the proxy's. The server-wide cap on connections is
    :class:`~ratchetpy.IoServer`'s ``max_connections``.
    """

    #: Buckets kept for idle addresses before the full ones are swept.
    max_tracked_addresses = 10_000

    def __init__(
        self,
        component: HttpComponent,
        *,
        max_per_ip: int | None = None,
        handshake_rate: tuple[int, float] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__(component)
        if max_per_ip is not None and max_per_ip < 1:
            raise ValueError(f"max_per_ip must be at least 1, not {max_per_ip}")
        if handshake_rate is not None:
            count, seconds = handshake_rate
            if count < 1 or seconds <= 0:
                raise ValueError(
                    f"handshake_rate must be (count >= 1, seconds > 0): {handshake_rate!r}"
                )
        self.max_per_ip = max_per_ip
        self.handshake_rate = handshake_rate
        self._clock = clock
        self._buckets: dict[str, _Bucket] = {}

    def on_open(self, conn: Connection, request: HttpRequest) -> HttpResult:
        if self.max_per_ip is None and self.handshake_rate is None:
            return self.component.on_open(conn, request)
        key = _address_key(conn.remote_address)
        if self.handshake_rate is not None and _is_upgrade(request):
            wait = self._take_token(key)
            if wait:
                return self._refuse(
                    conn,
                    request,
                    f"too many WebSocket handshakes from {conn.remote_address} "
                    f"(limit {self.handshake_rate[0]} per {self.handshake_rate[1]:g} s)",
                    retry_after=wait,
                )
        if (
            self.max_per_ip is not None
            and len(self._open.get(key, ())) >= self.max_per_ip
            and _is_upgrade(request)
        ):
            return self._refuse(
                conn,
                request,
                f"{conn.remote_address} already has {self.max_per_ip} open connections",
                retry_after=None,
            )
        if self.max_per_ip is None:
            return self.component.on_open(conn, request)
        return self._let_through(conn, request, key)  # type: ignore[no-any-return]

    def _refuse(
        self, conn: Connection, request: HttpRequest, why: str, *, retry_after: float | None
    ) -> HttpResponse:
        headers = [] if retry_after is None else [("Retry-After", str(max(1, round(retry_after))))]
        return _refuse(conn, request, 429, why, level=logging.WARNING, headers=headers)

    def _take_token(self, key: str) -> float:
        """Spend one handshake token of ``key``; 0 if there was one, else seconds to wait."""
        assert self.handshake_rate is not None
        count, seconds = self.handshake_rate
        rate = count / seconds
        now = self._clock()
        bucket = self._buckets.get(key)
        if bucket is None:
            if len(self._buckets) >= self.max_tracked_addresses:
                self._sweep(now, rate, count)
            bucket = self._buckets[key] = _Bucket(float(count), now)
        else:
            bucket.tokens = min(float(count), bucket.tokens + (now - bucket.stamp) * rate)
            bucket.stamp = now
        if bucket.tokens >= 1.0:
            bucket.tokens -= 1.0
            return 0.0
        return (1.0 - bucket.tokens) / rate

    def _sweep(self, now: float, rate: float, count: int) -> None:
        # A bucket that has refilled is the same as no bucket: forget it. If every address is
        # still busy, forget the oldest half rather than grow without bound under a flood.
        full = [
            key
            for key, bucket in self._buckets.items()
            if bucket.tokens + (now - bucket.stamp) * rate >= count
        ]
        for key in full:
            del self._buckets[key]
        if len(self._buckets) >= self.max_tracked_addresses:
            oldest = sorted(self._buckets, key=lambda key: self._buckets[key].stamp)
            for key in oldest[: len(oldest) // 2]:
                del self._buckets[key]
