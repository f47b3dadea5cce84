"""WsServer: the WebSocket layer (Ratchet's ``WsServer``).

An :class:`~ratchetpy.HttpComponent` that answers the upgrade request (sans-IO, in
:mod:`ratchetpy.handshake`), then turns bytes into messages with the sans-IO
:class:`~ratchetpy.wsprotocol.WebSocketProtocol` and calls the wrapped
:class:`~ratchetpy.MessageComponent`. No trio here: it only calls the transport's ``write`` /
``close`` / ``call_later``.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from typing import Any, cast

from ..exceptions import RemoteProtocolError
from ..protocol.deflate import negotiate_deflate
from ..protocol.events import CloseReceived, Message, Ping, Pong, ProtocolFailure
from ..protocol.handshake import SUPPORTED_VERSION, accept_response, parse_upgrade
from ..protocol.http import HttpRequest, HttpResponse, http_response
from ..protocol.websocket import WebSocketProtocol, encode_broadcast, encode_broadcast_compressed
from .base import (
    HttpComponent,
    MaybeAwaitable,
    MessageComponent,
    guarded,
    invoke,
    report_error,
)
from .connection import Connection, Timer, Transport

__all__ = ["WsConnection", "WsServer", "broadcast"]

logger = logging.getLogger("ratchetpy.ws")


class WsConnection(Connection):
    """A WebSocket connection: ``send(str)`` sends a text message, ``send(bytes)`` a binary one.

    ``close_code`` and ``close_reason`` say how it closed, once it has (1006 if the TCP
    connection was lost without a closing handshake).
    """

    def __init__(
        self,
        server: WsServer,
        transport: Transport,
        protocol: WebSocketProtocol,
        request: HttpRequest,
        subprotocol: str | None,
    ) -> None:
        self.resource_id = transport.resource_id
        self.remote_address = transport.remote_address
        self.http_request = request
        self.subprotocol = subprotocol
        self.secure = transport.secure
        self._server = server
        self._transport = transport
        self._protocol = protocol
        self._closing = False  # we sent a close frame (or gave up on the connection)
        self._close_timer: Timer | None = None
        self._awaiting_pong = False
        self.close_code: int | None = None
        self.close_reason = ""

    def send(self, data: str | bytes) -> None:
        if self._closing:
            return
        transport = self._transport
        if transport.over_write_limit:
            self._drop_slow_consumer()
            return
        transport.counters.messages_out += 1
        transport.write(self._protocol.encode_message(data))

    def close(self, code: int = 1000, reason: str = "") -> None:
        """Start the closing handshake with ``code`` and ``reason``.

        Raises :class:`~ratchetpy.LocalProtocolError` for a code that may not be sent (1005,
        1006, 1015, unassigned codes below 3000) or a reason over 123 UTF-8 bytes; the
        connection is then left as it was.
        """
        if self._closing:
            return
        frame = self._protocol.encode_close(code, reason)
        self._closing = True
        self._transport.write(frame)
        # Wait for the peer's close frame, but not forever.
        self._close_timer = self._transport.call_later(
            self._server.close_timeout, self._transport.abort
        )

    async def drain(self) -> None:
        await self._transport.drain()

    @property
    def buffered_amount(self) -> int:
        return self._transport.buffered_amount

    @property
    def closed(self) -> bool:
        return self._closing or self._transport.closed

    def call_later(self, delay: float, callback: Any) -> Timer:
        return self._transport.call_later(delay, callback)

    def ping(self, payload: bytes = b"") -> None:
        """Send a ping now, ahead of queued messages. The pong is not reported to the
        component; keepalive (``WsServer(keepalive=...)``) uses pongs to spot dead peers."""
        if not self._closing:
            self._transport.write_urgent(self._protocol.encode_ping(payload))

    # -- internals -------------------------------------------------------------------------

    def _fail(self, code: int, reason: str) -> None:
        """Close after a protocol failure: send our close frame and hang up without waiting."""
        if not self._closing:
            self._closing = True
            self._transport.write_urgent(self._protocol.encode_close(code, reason))
        self._transport.close()

    def _drop_slow_consumer(self) -> None:
        logger.warning(
            "connection #%s from %s: %d bytes unread, over the write limit; closing it (1008)",
            self.resource_id,
            self.remote_address,
            self._transport.buffered_amount,
        )
        self._closing = True
        self._transport.counters.slow_consumer_closes += 1
        frame = self._protocol.encode_close(1008, "slow consumer: too much unread data")
        self._transport.write_urgent(frame, discard_queued=True)
        self._transport.close()


class WsServer(HttpComponent):
    """Serve ``component`` over WebSocket; wrap it in :class:`~ratchetpy.HttpServer`.

    Options (keyword-only):

    ``subprotocols``
        Subprotocols this server speaks; default: ``component.subprotocols``. The first
        subprotocol in the client's list (the client's order of preference) that is also in
        this one is chosen, as Ratchet does.
    ``strict_subprotocols``
        When the client asks only for subprotocols we do not speak, refuse the handshake with
        400 (default, as Ratchet's ``setStrictSubProtocolCheck(true)``); when false, accept
        it without a subprotocol.
    ``require_subprotocol``
        Refuse (400) clients that offer no subprotocol at all; default:
        ``component.subprotocol_required`` (true for :class:`~ratchetpy.wamp.WampServer`,
        which cannot talk to a client that has not chosen a serializer).
    ``max_message_size``
        Largest message accepted, after decompression (default 1 MiB); larger ones close the
        connection with 1009. ``None`` lifts the limit.
    ``compression``
        ``"deflate"`` (default) negotiates permessage-deflate when the client offers it;
        ``None`` never compresses.
    ``context_takeover``
        With ``False``, permessage-deflate compresses each message on its own (the server
        asks for ``server_no_context_takeover``): compression is a little weaker, but a
        message compresses to the same bytes for every client, so :func:`broadcast`
        compresses and frames it once for all of them. Default:
        ``component.compression_context_takeover`` if set (``False`` for
        :class:`~ratchetpy.WampServer`, whose events fan out), else ``True``.
    ``keepalive``
        Seconds between pings (Ratchet's ``enableKeepAlive``); a peer that has not answered
        the previous ping by the next one is closed with 1011. ``None`` (default) sends none.
    ``close_timeout``
        Seconds to wait for the peer's close frame after ours (default 10).
    """

    def __init__(
        self,
        component: MessageComponent,
        *,
        subprotocols: Sequence[str] | None = None,
        strict_subprotocols: bool = True,
        require_subprotocol: bool | None = None,
        max_message_size: int | None = 2**20,
        compression: str | None = "deflate",
        keepalive: float | None = None,
        close_timeout: float = 10.0,
        context_takeover: bool | None = None,
    ) -> None:
        if compression not in ("deflate", None):
            raise ValueError(f"compression must be 'deflate' or None, not {compression!r}")
        if max_message_size is not None and max_message_size < 1:
            raise ValueError(f"max_message_size must be positive or None, not {max_message_size}")
        self.component = component
        self.subprotocols = tuple(
            subprotocols if subprotocols is not None else getattr(component, "subprotocols", ())
        )
        self.strict_subprotocols = strict_subprotocols
        if require_subprotocol is None:
            require_subprotocol = bool(getattr(component, "subprotocol_required", False))
        self.require_subprotocol = require_subprotocol
        self.max_message_size = max_message_size
        self.compression = compression
        if context_takeover is None:
            context_takeover = bool(getattr(component, "compression_context_takeover", True))
        self.context_takeover = context_takeover
        self.keepalive = keepalive
        self.close_timeout = close_timeout
        self._conns: dict[Connection, WsConnection] = {}

    # -- HttpComponent interface -------------------------------------------------------------

    def on_open(self, conn: Connection, request: HttpRequest) -> MaybeAwaitable:
        # Below WsServer there is only HttpServer, which passes IoServer's transport through.
        transport = cast(Transport, conn)
        ws = self._handshake(transport, request)
        if ws is None:
            return None
        self._conns[conn] = ws
        if self.keepalive:
            transport.call_later(self.keepalive, lambda: self._keepalive(ws))
        return invoke(self.component, ws, self.component.on_open, ws)

    def on_message(self, conn: Connection, data: bytes) -> MaybeAwaitable:
        ws = self._conns.get(conn)
        if ws is None:
            return None
        return self._dispatch(ws, ws._protocol.receive_data(data))

    def on_close(self, conn: Connection) -> MaybeAwaitable:
        ws = self._conns.pop(conn, None)
        if ws is None:
            return None
        ws._closing = True
        if ws._close_timer is not None:
            ws._close_timer.cancel()
        protocol = ws._protocol
        ws.close_code = protocol.close_code if protocol.close_code is not None else 1006
        ws.close_reason = protocol.close_reason
        logger.info(
            "WebSocket #%s from %s closed: %d%s",
            ws.resource_id,
            ws.remote_address,
            ws.close_code,
            f" {ws.close_reason!r}" if ws.close_reason else "",
        )
        return invoke(self.component, ws, self.component.on_close, ws)

    def on_error(self, conn: Connection, exc: Exception) -> MaybeAwaitable:
        ws = self._conns.get(conn)
        if ws is None:
            logger.error("error on connection #%s", conn.resource_id, exc_info=exc)
            conn.close()
            return None
        return report_error(self.component, ws, exc)

    def on_shutdown(
        self, conn: Connection, code: int = 1001, reason: str = "server shutting down"
    ) -> None:
        ws = self._conns.get(conn)
        if ws is None:
            conn.close()
            return
        # A component with its own goodbye (WampServer's GOODBYE) says it before the close.
        on_shutdown = getattr(self.component, "on_shutdown", None)
        if on_shutdown is None:
            ws.close(code, reason)
        else:
            on_shutdown(ws, code, reason)

    # -- handshake -------------------------------------------------------------------------

    def _handshake(self, transport: Transport, request: HttpRequest) -> WsConnection | None:
        try:
            upgrade = parse_upgrade(request)
        except RemoteProtocolError as exc:
            headers = []
            if exc.http_status == 405:
                headers.append(("Allow", "GET"))
            elif exc.http_status == 426:
                headers += [("Upgrade", "websocket"), ("Sec-WebSocket-Version", SUPPORTED_VERSION)]
            self._refuse(transport, exc.http_status, str(exc), headers)
            return None

        subprotocol = self._choose_subprotocol(upgrade.subprotocols)
        if subprotocol is None and not upgrade.subprotocols and self.require_subprotocol:
            supported = ", ".join(self.subprotocols)
            self._refuse(
                transport, 400, f"this endpoint needs a subprotocol; offer one of: {supported}"
            )
            return None
        if subprotocol is None and upgrade.subprotocols and self.strict_subprotocols:
            offered = ", ".join(upgrade.subprotocols)
            supported = ", ".join(self.subprotocols) or "none"
            self._refuse(
                transport,
                400,
                f"no supported subprotocol among: {offered} (supported: {supported})",
            )
            return None

        deflate = None
        extensions = None
        if self.compression == "deflate" and upgrade.extensions:
            agreed = negotiate_deflate(
                list(upgrade.extensions), server_no_context_takeover=not self.context_takeover
            )
            if agreed is not None:
                deflate, extensions = agreed
        protocol = WebSocketProtocol(max_message_size=self.max_message_size, deflate=deflate)
        # Urgent, so that no control frame (a pong, a ping from on_open, a close after a
        # protocol error) can be queued ahead of the handshake response.
        transport.write_urgent(
            accept_response(upgrade.key, subprotocol=subprotocol, extensions=extensions)
        )
        logger.info(
            "WebSocket #%s from %s opened on %s%s%s",
            transport.resource_id,
            transport.remote_address,
            request.path,
            f", subprotocol {subprotocol}" if subprotocol else "",
            ", deflate" if deflate is not None else "",
        )
        return WsConnection(self, transport, protocol, request, subprotocol)

    def _choose_subprotocol(self, offered: Sequence[str]) -> str | None:
        supported = self.subprotocols
        for name in offered:
            if name in supported:
                return name
        return None

    def _refuse(
        self, transport: Transport, status: int, why: str, headers: Iterable[tuple[str, str]] = ()
    ) -> None:
        logger.info("handshake from %s refused with %d: %s", transport.remote_address, status, why)
        transport.counters.handshakes_rejected += 1
        refusal = HttpResponse.error(status, why, headers=headers)
        transport.write(http_response(status, refusal.body, headers=refusal.headers))
        transport.close()

    # -- frames to handlers ------------------------------------------------------------------

    def _dispatch(self, ws: WsConnection, events: list[Any]) -> MaybeAwaitable:
        index, pending = self._deliver(ws, events, 0)
        if pending is None:
            return None
        return self._dispatch_async(ws, events, index, pending)

    async def _dispatch_async(
        self, ws: WsConnection, events: list[Any], index: int, pending: Any
    ) -> None:
        # An async handler returned: await it before the next message, to keep their order.
        while pending is not None:
            await guarded(self.component, ws, pending)
            index, pending = self._deliver(ws, events, index)

    def _deliver(self, ws: WsConnection, events: list[Any], start: int) -> tuple[int, Any]:
        """Hand events to the component from ``start`` until a handler returns an awaitable.

        Returns the index to go on from and that awaitable (``None`` once all are handled).
        """
        component = self.component
        on_message = component.on_message
        counters = ws._transport.counters
        for index in range(start, len(events)):
            event = events[index]
            if type(event) is Message:
                if ws._closing:
                    continue
                counters.messages_in += 1
                try:
                    result = on_message(ws, event.data)
                except Exception as exc:
                    result = report_error(component, ws, exc)
                if result is not None:
                    return index + 1, result
            else:
                self._control(ws, event)
        return len(events), None

    def _control(self, ws: WsConnection, event: Any) -> None:
        transport = ws._transport
        if type(event) is Ping:
            if not ws._closing:
                transport.write_urgent(ws._protocol.encode_pong(event.payload))
        elif type(event) is Pong:
            ws._awaiting_pong = False
        elif type(event) is CloseReceived:
            if not ws._closing:
                ws._closing = True
                code = event.code if event.code != 1005 else 1000
                transport.write_urgent(ws._protocol.encode_close(code))
            transport.close()
        elif type(event) is ProtocolFailure:
            logger.info(
                "connection #%s from %s broke the protocol (%d): %s",
                ws.resource_id,
                ws.remote_address,
                event.code,
                event.reason,
            )
            ws._fail(event.code, event.reason)

    def _keepalive(self, ws: WsConnection) -> None:
        if ws._closing or self.keepalive is None:
            return
        if ws._awaiting_pong:
            logger.info(
                "connection #%s: no pong within %g s; closing", ws.resource_id, self.keepalive
            )
            ws._fail(1011, "keepalive ping timeout")
            return
        ws._awaiting_pong = True
        ws.ping(b"ratchetpy-keepalive")
        ws._transport.call_later(self.keepalive, lambda: self._keepalive(ws))


def broadcast(connections: Iterable[Connection], message: str | bytes) -> None:
    """Send ``message`` to every connection, encoding its frame once where possible.

    One uncompressed frame serves every WebSocket connection without compression, and every
    one with compression when the message is too small to be worth compressing (the
    permessage-deflate sender may leave any message uncompressed). Larger messages are
    compressed once for all connections that compress without context takeover
    (``WsServer(context_takeover=False)``) with the same window, and per connection for the
    others, since each has its own compression context. Other connections get
    ``send(message)``. Closed connections are skipped and slow
    consumers handled as by ``send``. Not a checkpoint.
    """
    shared: bytes | None = None
    compressed: dict[int, bytes] | None = None  # window bits -> frame
    # For str this counts characters, at most the UTF-8 size: a message judged small may go
    # out uncompressed when compressing would have been allowed, which is always valid.
    size = len(message)
    for conn in connections:
        if type(conn) is not WsConnection:
            conn.send(message)
            continue
        protocol = conn._protocol
        if protocol.shares_encoding or size < protocol.compress_min_size:
            if shared is None:
                shared = encode_broadcast(message)
            frame = shared
        else:
            wbits = protocol.shared_deflate_bits
            if wbits is None:  # compressed with this connection's own context
                conn.send(message)
                continue
            if compressed is None:
                compressed = {}
            cached = compressed.get(wbits)
            if cached is None:
                cached = compressed[wbits] = encode_broadcast_compressed(message, wbits)
            frame = cached
        if conn._closing:
            continue
        transport = conn._transport
        if transport.over_write_limit:
            conn._drop_slow_consumer()
            continue
        transport.counters.messages_out += 1
        transport.write(frame)
