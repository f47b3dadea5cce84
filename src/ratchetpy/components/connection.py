"""What a component sees of a client: :class:`Connection` (Ratchet's ConnectionInterface).

A component never touches a socket. It gets a connection object and calls :meth:`Connection.send`
and :meth:`Connection.close`; the I/O layer does the rest. Each layer that changes what "send"
means (WsServer frames messages) hands its component its own connection object that wraps the one
below, as Ratchet's decorators do.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Protocol

from ..protocol.http import NO_SESSION, HttpRequest

__all__ = [
    "Connection",
    "Counters",
    "MetricsSource",
    "Timer",
    "Transport",
    "close_code_label",
    "raw_bytes",
]


class Timer(Protocol):
    """A callback scheduled with :meth:`Connection.call_later`."""

    def cancel(self) -> None:
        """Stop the callback from running; harmless if it already ran."""


class Counters:
    """Running totals one server keeps for its statistics and metrics; every layer adds to
    them.

    Plain integers bumped inline: counting must cost next to nothing per message. The dicts
    count by a label whose values are few and known (an HTTP status, a close code): never
    by anything a client chooses freely. ``sources`` are components that report their own
    counts (a :class:`~ratchetpy.WampServer`, a publish endpoint): each adds itself with
    :meth:`add_source` when it first sees a connection of this server.
    """

    __slots__ = (
        "bytes_in",
        "bytes_out",
        "close_received",
        "close_sent",
        "connections_total",
        "handler_errors",
        "handshakes",
        "handshakes_rejected",
        "http_open",
        "messages_in",
        "messages_out",
        "slow_consumer_closes",
        "sources",
        "websockets_open",
    )

    def __init__(self) -> None:
        self.connections_total = 0  # accepted since start
        self.bytes_in = 0  # read from sockets (after TLS decryption)
        self.bytes_out = 0  # handed to the operating system (before TLS encryption)
        self.messages_in = 0  # WebSocket messages received
        self.messages_out = 0  # WebSocket messages sent (a broadcast counts one per client)
        self.slow_consumer_closes = 0  # connections closed or dropped for not reading
        self.handshakes_rejected = 0  # requests refused before or at the WebSocket upgrade
        self.handshakes: dict[int, int] = {}  # WebSocket upgrades by answer: 101 or a 4xx/5xx
        self.http_open = 0  # connections HttpServer holds (WebSockets included)
        self.websockets_open = 0  # connections upgraded to WebSocket and not yet closed
        self.close_sent: dict[str, int] = {}  # close frames sent, by close_code_label()
        self.close_received: dict[str, int] = {}  # close frames received, by close_code_label()
        self.handler_errors = 0  # exceptions a handler raised (each given to on_error)
        self.sources: dict[int, MetricsSource] = {}

    def handshake(self, status: int) -> None:
        """Count a WebSocket upgrade answered with ``status``: 101, or a refusal."""
        self.handshakes[status] = self.handshakes.get(status, 0) + 1
        if status != 101:
            self.handshakes_rejected += 1

    def close_frame_sent(self, code: int) -> None:
        """Count a close frame this server sent."""
        label = close_code_label(code)
        self.close_sent[label] = self.close_sent.get(label, 0) + 1

    def close_frame_received(self, code: int) -> None:
        """Count a close frame a peer sent (1005: one without a code)."""
        label = close_code_label(code)
        self.close_received[label] = self.close_received.get(label, 0) + 1

    def add_source(self, source: MetricsSource) -> None:
        """Count ``source``'s :meth:`~MetricsSource.metrics` in this server's (once)."""
        self.sources.setdefault(id(source), source)


class MetricsSource(Protocol):
    """A component that keeps counts of its own for the server's metrics."""

    def metrics(self) -> Mapping[str, int | Mapping[str, int]]:
        """Its counts now: totals and gauges by name, or counts by a label value."""
        ...


def close_code_label(code: int) -> str:
    """The label a close code is counted under: the code itself for those RFC 6455 and IANA
    define (1000-1015), else its range ("3xxx" registered, "4xxx" private, "other"), so that
    a peer cannot make the label take thousands of values."""
    if 1000 <= code <= 1015:
        return str(code)
    if 3000 <= code <= 4999:
        return f"{code // 1000}xxx"
    return "other"


class Connection:
    """One client connection, as seen by a component.

    Attributes shared by every layer:

    ``resource_id``
        An ``int`` unique among this server's connections (Ratchet's ``resourceId``).
    ``remote_address``
        The peer's IP address as a string (Ratchet's ``remoteAddress``).
    ``http_request``
        The parsed :class:`~ratchetpy.HttpRequest` that opened the connection, once an
        :class:`~ratchetpy.HttpServer` has read it; ``None`` on raw TCP connections.
    ``subprotocol``
        The negotiated WebSocket subprotocol, or ``None``.
    ``secure``
        True on a TLS connection (``wss://``, ``https://``) served by this server.
    ``user_id``
        Who the client is, as an :class:`~ratchetpy.Authenticate` hook accepted it;
        ``None`` without one (read-only).
    ``session``
        The web application's session, as a :class:`~ratchetpy.SessionProvider` read
        it from the handshake's cookie; an empty mapping without one (read-only).

    Like Ratchet's connections, it takes any attribute you set on it (``conn.user = user``), so
    per-connection data lives on the connection and goes away with it. Names starting with an
    underscore are reserved for ratchetpy.
    """

    resource_id: int
    remote_address: str
    http_request: HttpRequest | None = None
    subprotocol: str | None = None
    secure: bool = False

    @property
    def user_id(self) -> str | None:
        """The user id the authentication hook accepted the request with, or ``None``.

        Read from ``http_request`` rather than stored here, so that every connection object
        of the stack (the transport below, the WebSocket connection above) agrees.
        """
        request = self.http_request
        return None if request is None else request.user_id

    @property
    def session(self) -> Mapping[str, Any]:
        """The web application's session read from the request's cookie (read-only).

        Empty when there was no session provider, no cookie, or one that failed verification.
        """
        request = self.http_request
        return NO_SESSION if request is None else request.session

    def send(self, data: str | bytes) -> None:
        """Queue ``data`` for the peer and return at once; never blocks on a slow peer.

        Not a checkpoint. Sending on a closed connection does nothing: the peer is gone, and
        ``on_close`` tells the component so. When more than the server's ``write_limit`` is
        already queued, the slow-consumer policy applies (see the backpressure topic).
        """
        raise NotImplementedError

    def close(self, code: int = 1000, reason: str = "") -> None:
        """Start closing: what was sent before is still delivered, then the connection ends.

        ``code`` and ``reason`` go into the WebSocket close frame; raw TCP connections ignore
        them. Not a checkpoint; ``on_close`` follows once the connection is gone. Calling it
        again, or on a closed connection, does nothing.
        """
        raise NotImplementedError

    async def drain(self) -> None:
        """Wait until the outbound queue is empty: all of it handed to the operating system.

        A checkpoint; data queued while waiting is waited for too. Use a cancel scope for a
        timeout. For producers that want to wait rather than let the slow-consumer policy
        apply. Raises :class:`~ratchetpy.exceptions.ConnectionClosed` if the connection ends
        before its queue is empty.
        """
        raise NotImplementedError

    @property
    def buffered_amount(self) -> int:
        """Bytes queued for this peer and not yet written (the browser's ``bufferedAmount``)."""
        raise NotImplementedError

    @property
    def closed(self) -> bool:
        """True once :meth:`close` was called or the connection was lost."""
        raise NotImplementedError

    def call_later(self, delay: float, callback: Callable[[], Any]) -> Timer:
        """Run ``callback()`` after ``delay`` seconds unless cancelled or the connection ends first.

        The callback runs in the server's timer task: it must not block, and an exception it
        raises is logged. Returns a :class:`Timer` with ``cancel()``.
        """
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"<{type(self).__name__} #{self.resource_id} {self.remote_address}>"


def raw_bytes(data: str | bytes) -> bytes:
    """What a raw TCP connection sends for ``data``: ``str`` as UTF-8, bytes-like objects as
    they are. Raises ``TypeError`` for anything else: the caller's mistake, said at once
    rather than on the wire."""
    if isinstance(data, str):
        return data.encode()
    if isinstance(data, (bytes, bytearray, memoryview)):
        return bytes(data)
    raise TypeError(f"send() takes str or bytes, not {type(data).__name__}")


class Transport(Protocol):
    """The connection at the bottom of the stack, as layers such as WsServer use it.

    ``write`` queues bytes without the checks ``send`` makes; ``write_frame`` queues a frame
    given as header and payload, without joining them; ``write_urgent`` queues a control frame
    ahead of queued data (never inside a frame); ``abort`` drops the connection at once.
    """

    resource_id: int
    remote_address: str
    http_request: HttpRequest | None
    secure: bool
    #: The server's running totals (shared by all its connections).
    counters: Counters

    @property
    def over_write_limit(self) -> bool: ...
    @property
    def buffered_amount(self) -> int: ...
    @property
    def closed(self) -> bool: ...
    def write(self, data: bytes) -> bool:
        """Queue ``data``; False (and nothing queued) once the connection is gone."""
        ...

    def write_frame(self, header: bytes, payload: bytes) -> bool:
        """Queue one frame as its ``header`` and ``payload``: written in order, from their own
        buffers, with nothing between them; False (and nothing queued) once the connection is
        gone."""
        ...

    def write_urgent(self, data: bytes, *, discard_queued: bool = False) -> None: ...
    def close(self, code: int = 1000, reason: str = "") -> None: ...
    def abort(self) -> None: ...
    async def drain(self) -> None: ...
    def call_later(self, delay: float, callback: Callable[[], Any]) -> Timer: ...
