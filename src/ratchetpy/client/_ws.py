"""A minimal WebSocket client: wsproto's client side over a trio stream.

Only what a WAMP session needs: connect (with subprotocols and extra headers), send whole
messages, receive whole messages (answering pings on the way), close. One task receives; any
task may send (sends are serialized by a lock, so frames never interleave).
"""

from __future__ import annotations

import ssl
from collections import deque
from collections.abc import Iterable, Sequence
from contextlib import suppress
from urllib.parse import urlsplit

import trio
from wsproto import ConnectionType, WSConnection
from wsproto.connection import ConnectionState
from wsproto.events import (
    AcceptConnection,
    BytesMessage,
    CloseConnection,
    Event,
    Message,
    Ping,
    RejectConnection,
    RejectData,
    Request,
    TextMessage,
)
from wsproto.utilities import LocalProtocolError as WsprotoLocalError

from ..exceptions import ConnectionClosed, SessionClosed

_DEFAULT_PORTS = {"ws": 80, "wss": 443}
_RECEIVE_SIZE = 65536
_REFUSAL_BODY = 2048  # bytes of a refused handshake's body kept for the error message


def split_url(url: str, schemes: dict[str, int]) -> tuple[str, str, int, str, str]:
    """``(scheme, host, port, target, host_header)`` of ``url``; ValueError if it is not one
    of ``schemes`` (scheme -> default port) or has no host."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in schemes:
        raise ValueError(f"expected a {' or '.join(s + '://' for s in schemes)} URL, got {url!r}")
    host = parts.hostname
    if not host:
        raise ValueError(f"no host in {url!r}")
    port = parts.port or schemes[scheme]
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    shown = f"[{host}]" if ":" in host else host
    host_header = shown if port == schemes[scheme] else f"{shown}:{port}"
    return scheme, host, port, target, host_header


async def open_stream(
    host: str, port: int, tls: bool, ssl_context: ssl.SSLContext | None, server_hostname: str
) -> trio.abc.Stream:
    """A TCP (or TLS over TCP) stream to ``host:port``. A checkpoint; OSError if unreachable."""
    if not tls:
        return await trio.open_tcp_stream(host, port)
    context = ssl_context if ssl_context is not None else ssl.create_default_context()
    tcp = await trio.open_tcp_stream(host, port)
    stream = trio.SSLStream(tcp, context, server_hostname=server_hostname)
    try:
        await stream.do_handshake()
    except BaseException:
        await trio.aclose_forcefully(stream)
        raise
    return stream


class WebSocket:
    """An open client WebSocket. Made by :func:`connect`."""

    def __init__(
        self,
        stream: trio.abc.Stream,
        ws: WSConnection,
        subprotocol: str | None,
        pending: Iterable[Event],
        max_message_size: int,
    ) -> None:
        self.subprotocol = subprotocol
        self._stream = stream
        self._ws = ws
        self._events: deque[Event] = deque(pending)
        self._max_message_size = max_message_size
        self._parts: list[str | bytes] = []
        self._size = 0
        self._send_lock = trio.Lock()
        self._closed: ConnectionClosed | None = None

    async def send(self, message: str | bytes) -> None:
        """Send one message (text for ``str``). A checkpoint; ConnectionClosed once closed."""
        async with self._send_lock:
            if self._closed is not None:
                raise ConnectionClosed(code=self._closed.code, reason=self._closed.reason)
            event = TextMessage(data=message) if isinstance(message, str) else BytesMessage(message)
            try:
                await self._stream.send_all(self._ws.send(event))
            except (WsprotoLocalError, trio.BrokenResourceError, trio.ClosedResourceError):
                raise ConnectionClosed("the WebSocket is closed") from None

    async def receive(self) -> str | bytes:
        """The next whole message. A checkpoint.

        Raises :class:`~ratchetpy.ConnectionClosed` (with the peer's close code and reason, or
        1006 when the connection was lost) once the WebSocket is closed; call it from one task.
        """
        while True:
            while self._events:
                event = self._events.popleft()
                if isinstance(event, Message):
                    self._size += len(event.data)
                    if self._size > self._max_message_size:
                        await self.close(1009, "message too big")
                        raise self._closing(1009, "message too big")
                    self._parts.append(event.data)
                    if event.message_finished:
                        return self._assemble(isinstance(event, TextMessage))
                elif isinstance(event, Ping):
                    await self._send_control(event.response())
                elif isinstance(event, CloseConnection):
                    if self._ws.state is ConnectionState.REMOTE_CLOSING:
                        await self._send_control(event.response())
                    raise self._closing(event.code, event.reason or "")
            if self._closed is not None:
                raise ConnectionClosed(code=self._closed.code, reason=self._closed.reason)
            try:
                data = await self._stream.receive_some(_RECEIVE_SIZE)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                data = b""
            if not data:
                raise self._closing(1006, "connection lost")
            if self._ws.state is ConnectionState.CLOSED:
                raise self._closing(1006, "closed")
            self._ws.receive_data(bytes(data))
            self._events.extend(self._ws.events())

    async def close(self, code: int = 1000, reason: str = "") -> None:
        """Start the closing handshake (if still open); :meth:`receive` then sees the reply.
        A checkpoint; never raises for a connection already gone."""
        async with self._send_lock:
            if self._ws.state is not ConnectionState.OPEN:
                return
            try:
                await self._stream.send_all(self._ws.send(CloseConnection(code, reason)))
            except (WsprotoLocalError, trio.BrokenResourceError, trio.ClosedResourceError):
                self._closing(1006, "connection lost")

    async def aclose(self) -> None:
        """Close the stream at once. A checkpoint (it cancels itself, as trio's do)."""
        self._closing(1006, "closed")
        await trio.aclose_forcefully(self._stream)

    def _closing(self, code: int, reason: str) -> ConnectionClosed:
        if self._closed is None:
            self._closed = ConnectionClosed(f"WebSocket closed: {code}", code=code, reason=reason)
        return self._closed

    async def _send_control(self, event: Event) -> None:
        async with self._send_lock:
            # Failing: the next receive sees the connection gone.
            with suppress(WsprotoLocalError, trio.BrokenResourceError, trio.ClosedResourceError):
                await self._stream.send_all(self._ws.send(event))

    def _assemble(self, text: bool) -> str | bytes:
        parts, self._parts, self._size = self._parts, [], 0
        if text:
            return "".join(parts)  # type: ignore[arg-type]
        return b"".join(parts)  # type: ignore[arg-type]


async def connect(
    url: str,
    subprotocols: Sequence[str],
    *,
    headers: Iterable[tuple[str, str]] = (),
    ssl_context: ssl.SSLContext | None = None,
    max_message_size: int = 2**20,
    stream: trio.abc.Stream | None = None,
) -> WebSocket:
    """Open a WebSocket to ``url`` (``ws://`` or ``wss://``), over ``stream`` if given. A
    checkpoint.

    Raises ValueError for a bad URL, OSError when the server cannot be reached, and
    :class:`SessionClosed` (with ``status``) when it refuses the handshake.
    """
    scheme, host, port, target, host_header = split_url(url, _DEFAULT_PORTS)
    if stream is None:
        stream = await open_stream(host, port, scheme == "wss", ssl_context, host)
    try:
        ws = WSConnection(ConnectionType.CLIENT)
        request = Request(
            host=host_header,
            target=target,
            subprotocols=list(subprotocols),
            extra_headers=[(name.encode(), value.encode()) for name, value in headers],
        )
        await stream.send_all(ws.send(request))
        refused: RejectConnection | None = None
        body = b""
        while True:
            data = await stream.receive_some(_RECEIVE_SIZE)
            ws.receive_data(bytes(data) if data else None)
            events = list(ws.events())
            for i, event in enumerate(events):
                if isinstance(event, AcceptConnection):
                    return WebSocket(
                        stream, ws, event.subprotocol, events[i + 1 :], max_message_size
                    )
                if isinstance(event, RejectConnection):
                    refused = event
                    if not event.has_body:
                        raise _refusal(refused, body)
                elif isinstance(event, RejectData):
                    body = (body + event.data)[:_REFUSAL_BODY]
                    if event.body_finished and refused is not None:
                        raise _refusal(refused, body)
            if not data:
                if refused is not None:
                    raise _refusal(refused, body)
                raise SessionClosed("the server closed the connection during the handshake")
    except BaseException:
        await trio.aclose_forcefully(stream)
        raise


def _refusal(event: RejectConnection, body: bytes) -> SessionClosed:
    text = body.decode("utf-8", "replace").strip().splitlines()
    detail = f": {text[0]}" if text else ""
    return SessionClosed(
        f"the WebSocket handshake was refused with HTTP {event.status_code}{detail}",
        status=event.status_code,
    )
