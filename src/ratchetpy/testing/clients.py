"""Clients for :class:`~ratchetpy.testing.MemoryServer`: a WebSocket client, a one-shot HTTP
request, and (through :mod:`ratchetpy.client`) a WAMP session.

The WebSocket client is wsproto's client side, not ratchetpy's codec, so a test exercises the
server's handshake and frames against an independent implementation. It answers pings as a
browser does and keeps what the server sends until the test reads it.
"""

from __future__ import annotations

import json
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import h11
import trio
from wsproto import ConnectionType, WSConnection
from wsproto.connection import ConnectionState
from wsproto.events import (
    AcceptConnection,
    BytesMessage,
    CloseConnection,
    Message,
    Ping,
    Pong,
    RejectConnection,
    RejectData,
    Request,
    TextMessage,
)
from wsproto.extensions import Extension, PerMessageDeflate

from ..exceptions import ConnectionClosed, HandshakeRefused
from ..protocol.http import Headers
from .memory import MemoryStream

__all__ = ["Response", "WebSocketClient", "handshake", "http_exchange"]

_RECEIVE = 65536


@dataclass(frozen=True)
class Response:
    """An HTTP response as the client read it: ``status``, ``reason``, ``headers`` and
    ``body`` (``text`` decodes it as UTF-8, ``json()`` parses it)."""

    status: int
    reason: str
    headers: Headers
    body: bytes = b""

    @property
    def text(self) -> str:
        return self.body.decode("utf-8")

    def json(self) -> Any:
        return json.loads(self.body)

    def header(self, name: str, default: str | None = None) -> str | None:
        return self.headers.get(name, default)


def _request_headers(
    host: str,
    headers: Iterable[tuple[str, str]],
    origin: str | None,
    cookies: Mapping[str, str] | None,
) -> list[tuple[str, str]]:
    items = [("Host", host), *headers]
    if origin is not None:
        items.append(("Origin", origin))
    if cookies:
        items.append(("Cookie", "; ".join(f"{name}={value}" for name, value in cookies.items())))
    return items


async def http_exchange(
    stream: MemoryStream,
    method: str,
    target: str,
    *,
    host: str,
    headers: Iterable[tuple[str, str]],
    body: bytes,
    origin: str | None,
    cookies: Mapping[str, str] | None,
) -> Response:
    """Send one request (``Connection: close``) and read its response with h11."""
    client = h11.Connection(h11.CLIENT)
    items = _request_headers(host, headers, origin, cookies)
    if body or method in ("POST", "PUT", "PATCH"):
        items.append(("Content-Length", str(len(body))))
    items.append(("Connection", "close"))
    data = client.send(h11.Request(method=method, target=target, headers=items)) or b""
    if body:
        data += client.send(h11.Data(data=body)) or b""
    data += client.send(h11.EndOfMessage()) or b""
    await stream.send_all(data)
    head: h11.Response | None = None
    chunks: list[bytes] = []
    while True:
        event = client.next_event()
        if event is h11.NEED_DATA:
            client.receive_data(await stream.receive_some(_RECEIVE))
        elif isinstance(event, h11.Response):
            head = event
        elif isinstance(event, h11.Data):
            chunks.append(bytes(event.data))
        elif isinstance(event, (h11.EndOfMessage, h11.ConnectionClosed)):
            break
    await stream.aclose()
    assert head is not None, "the server closed the connection without answering"
    return Response(
        head.status_code,
        head.reason.decode("latin-1"),
        Headers((n.decode("latin-1"), v.decode("latin-1")) for n, v in head.headers),
        b"".join(chunks),
    )


async def handshake(
    stream: MemoryStream,
    target: str,
    *,
    host: str,
    headers: Iterable[tuple[str, str]],
    origin: str | None,
    cookies: Mapping[str, str] | None,
    subprotocols: Sequence[str],
    compression: bool,
) -> WebSocketClient:
    """Open a WebSocket over ``stream``; :class:`~ratchetpy.HandshakeRefused` if the server
    answers with an HTTP status instead of 101."""
    extensions: list[Extension] = [PerMessageDeflate()] if compression else []
    ws = WSConnection(ConnectionType.CLIENT)
    request = Request(
        host=host,
        target=target,
        subprotocols=list(subprotocols),
        extensions=extensions,
        extra_headers=[
            (name.encode(), value.encode())
            for name, value in _request_headers(host, headers, origin, cookies)[1:]
        ],
    )
    await stream.send_all(ws.send(request))
    refused: RejectConnection | None = None
    body = b""
    while True:
        data = await stream.receive_some(_RECEIVE)
        ws.receive_data(data or None)
        events = list(ws.events())
        for index, event in enumerate(events):
            if isinstance(event, AcceptConnection):
                accepted = _headers(event.extra_headers)
                agreed = [extension.name for extension in event.extensions]
                client = WebSocketClient(stream, ws, event.subprotocol, accepted, agreed)
                client.take_events(events[index + 1 :])
                return client
            if isinstance(event, RejectConnection):
                refused = event
                if not event.has_body:
                    raise _refusal(refused, b"")
            elif isinstance(event, RejectData):
                body += event.data
                if event.body_finished and refused is not None:
                    raise _refusal(refused, body)
        if not data:
            if refused is not None:
                raise _refusal(refused, body)
            raise ConnectionClosed("the server closed the connection during the handshake")


def _headers(raw: Iterable[tuple[bytes, bytes]]) -> Headers:
    return Headers((name.decode("latin-1"), value.decode("latin-1")) for name, value in raw)


def _refusal(event: RejectConnection, body: bytes) -> HandshakeRefused:
    return HandshakeRefused(event.status_code, _headers(event.headers).items(), body)


class WebSocketClient:
    """A WebSocket client connected to a :class:`~ratchetpy.testing.MemoryServer`.

    ``subprotocol`` is what the server chose, ``extensions`` the names of the extensions it
    agreed to (``["permessage-deflate"]``), ``response_headers`` the 101 response's other
    headers. Every method is a checkpoint. Pings from the server are answered on the way, as
    browsers do.
    """

    def __init__(
        self,
        stream: MemoryStream,
        ws: WSConnection,
        subprotocol: str | None,
        headers: Headers,
        extensions: list[str],
    ) -> None:
        self.subprotocol = subprotocol
        self.extensions = extensions
        self.response_headers = headers
        self._stream = stream
        self._ws = ws
        self._messages: deque[str | bytes] = deque()
        self._parts: list[str | bytes] = []
        #: Payloads of the pongs the server sent, in order.
        self.pongs: list[bytes] = []
        #: Payloads of the pings the server sent (each answered already), in order.
        self.pings: list[bytes] = []
        self._close: tuple[int, str] | None = None

    @property
    def close_code(self) -> int | None:
        """The code of the server's close frame (1006 if it hung up without one), or
        ``None`` while the connection is open."""
        return None if self._close is None else self._close[0]

    @property
    def close_reason(self) -> str:
        return "" if self._close is None else self._close[1]

    @property
    def closed(self) -> bool:
        return self._close is not None

    async def send(self, message: str | bytes) -> None:
        """Send a text (``str``) or binary message. Raises ConnectionClosed once closed."""
        event = TextMessage(data=message) if isinstance(message, str) else BytesMessage(message)
        await self._send(self._ws.send(event))

    async def send_raw(self, data: bytes) -> None:
        """Put bytes on the wire as they are: hand-made (or broken) frames for protocol tests.
        The client's own codec is not told, so use it for a connection's last words."""
        await self._send(data)

    async def ping(self, payload: bytes = b"") -> None:
        """Send a ping; its pong arrives in :attr:`pongs`."""
        await self._send(self._ws.send(Ping(payload=payload)))

    async def receive(self) -> str | bytes:
        """The next message: ``str`` for text, ``bytes`` for binary.

        Raises :class:`~ratchetpy.ConnectionClosed` (``code``, ``reason`` as the server
        closed) once the connection is closed and every message before the close was read.
        """
        while not self._messages:
            if self._close is not None:
                code, reason = self._close
                raise ConnectionClosed(f"WebSocket closed: {code}", code=code, reason=reason)
            await self._read()
        return self._messages.popleft()

    async def receive_nothing(self) -> bool:
        """Let the server run until every task waits, then say whether no message arrived
        (a message that did is kept for :meth:`receive`). For "nobody else hears it" checks
        without a timeout."""
        await trio.testing.wait_all_tasks_blocked()
        while self._stream.unread and not self._messages and self._close is None:
            await self._read()
        return not self._messages

    async def close(self, code: int = 1000, reason: str = "") -> None:
        """Start the closing handshake and wait for the server's close frame and hang-up;
        ``close_code`` is then what the server answered."""
        if self._ws.state is ConnectionState.OPEN:
            await self._send(self._ws.send(CloseConnection(code=code, reason=reason)))
        while self._close is None:
            await self._read()
        await self.aclose()

    async def aclose(self) -> None:
        """Drop the connection at once, without a closing handshake."""
        if self._close is None:
            self._close = (1006, "")
        await self._stream.aclose()

    async def __aenter__(self) -> WebSocketClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        if self._close is None and self._ws.state is ConnectionState.OPEN:
            await self.close()
        else:
            await self.aclose()

    # -- internals -------------------------------------------------------------------------

    async def _send(self, data: bytes) -> None:
        try:
            await self._stream.send_all(data)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            code = self.close_code or 1006
            raise ConnectionClosed("the connection is closed", code=code) from None

    async def _read(self) -> None:
        data = await self._stream.receive_some(_RECEIVE)
        if not data:
            # The server hung up: hang up too, as a TCP client closes its socket on EOF.
            if self._close is None:
                self._close = (1006, "")
            await self._stream.aclose()
            return
        self._ws.receive_data(data)
        self.take_events(list(self._ws.events()))

    def take_events(self, events: list[Any]) -> None:
        """Keep what the server sent: messages for :meth:`receive`, pongs; answer pings."""
        for event in events:
            if isinstance(event, Message):
                self._parts.append(event.data)
                if event.message_finished:
                    parts, self._parts = self._parts, []
                    text = isinstance(event, TextMessage)
                    joined: str | bytes = (
                        "".join(parts) if text else b"".join(parts)  # type: ignore[arg-type]
                    )
                    self._messages.append(joined)
            elif isinstance(event, Ping):
                self.pings.append(bytes(event.payload))
                if self._ws.state is ConnectionState.OPEN:
                    self._stream.send_nowait(self._ws.send(event.response()))
            elif isinstance(event, Pong):
                self.pongs.append(bytes(event.payload))
            elif isinstance(event, CloseConnection):
                self._close = (event.code, event.reason or "")
                if self._ws.state is ConnectionState.REMOTE_CLOSING:
                    self._stream.send_nowait(self._ws.send(event.response()))
                # The closing handshake is complete: hang up rather than wait for the server
                # to, so that a test that stops reading here does not hold the server.
                self._stream.hang_up()
