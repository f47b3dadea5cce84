"""WsConnection: one WebSocket, as its component sees it, and :func:`broadcast`.

A :class:`WsConnection` turns the bytes :class:`~ratchetpy.WsServer` hands it into messages for
its component (through the sans-IO :class:`~ratchetpy.protocol.WebSocketProtocol`), answers
pings, runs the closing handshake and the keepalive, and encodes what the component sends.

Who owns what: the protocol object owns the WebSocket's closing state (which close frames
went across, the code and reason); the transport below owns the TCP connection's; this object
asks both and keeps only its own timers. No trio here: it calls the transport's ``write`` /
``close`` / ``call_later``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from typing import Any

from ..protocol.events import CloseReceived, Event, Message, Ping, Pong, ProtocolFailure
from ..protocol.http import HttpRequest
from ..protocol.websocket import (
    WebSocketProtocol,
    encode_broadcast,
    encode_broadcast_compressed,
)
from .base import MaybeAwaitable, MessageComponent, guarded, invoke, report_error
from .connection import Connection, Counters, Timer, Transport

__all__ = ["WsConnection", "broadcast"]

logger = logging.getLogger("ratchetpy.ws")

_KEEPALIVE_PAYLOAD = b"ratchetpy-keepalive"

# From this size on a message's header and payload are queued apart (write_frame), so that the
# payload is not copied behind its header; below it one joined frame is cheaper to queue.
_WRITE_APART_MIN = 1 << 16


class WsConnection(Connection):
    """A WebSocket connection: ``send(str)`` sends a text message, ``send(bytes)`` a binary one.

    ``close_code`` and ``close_reason`` say how it closed or is closing: the first of the
    peer's close frame, ours and a protocol failure; 1006 when the TCP connection was lost
    without any; ``None`` (and ``""``) while it is open.
    """

    def __init__(
        self,
        transport: Transport,
        protocol: WebSocketProtocol,
        request: HttpRequest,
        subprotocol: str | None,
        component: MessageComponent,
        *,
        close_timeout: float,
        keepalive: float | None = None,
    ) -> None:
        self.resource_id = transport.resource_id
        self.remote_address = transport.remote_address
        self.http_request = request
        self.subprotocol = subprotocol
        self.secure = transport.secure
        self._transport = transport
        self._protocol = protocol
        self._component = component
        self._close_timeout = close_timeout
        self._close_timer: Timer | None = None
        self._keepalive = keepalive
        self._awaiting_pong = False
        # Kept to be cancelled on close: a pending tick holds this connection (its codec and
        # zlib state) alive until it fires, up to ``keepalive`` seconds after the client left.
        self._keepalive_timer: Timer | None = None
        if keepalive:
            self._keepalive_timer = transport.call_later(keepalive, self._keepalive_tick)
        transport.counters.websockets_open += 1

    # -- the Connection interface ------------------------------------------------------------

    def send(self, data: str | bytes) -> None:
        if self._protocol.close_sent:
            return
        transport = self._transport
        if transport.over_write_limit:
            self._drop_slow_consumer()
            return
        kind = type(data)
        if (kind is bytes or kind is str) and len(data) >= _WRITE_APART_MIN:
            written = transport.write_frame(*self._protocol.encode_message_parts(data))
        else:
            written = transport.write(self._protocol.encode_message(data))
        if written:
            transport.counters.messages_out += 1

    def close(self, code: int = 1000, reason: str = "") -> None:
        """Start the closing handshake with ``code`` and ``reason``.

        Raises :class:`~ratchetpy.LocalProtocolError` for a code that may not be sent (1005,
        1006, 1015, unassigned codes below 3000) or a reason over 123 UTF-8 bytes; the
        connection is then left as it was.
        """
        if self.closed:
            return
        frame = self._close_frame(code, reason)
        transport = self._transport
        transport.write(frame)
        # Wait for the peer's close frame, but not forever.
        self._close_timer = transport.call_later(self._close_timeout, transport.abort)

    async def drain(self) -> None:
        await self._transport.drain()

    @property
    def buffered_amount(self) -> int:
        return self._transport.buffered_amount

    @property
    def closed(self) -> bool:
        return self._protocol.close_sent or self._transport.closed

    def call_later(self, delay: float, callback: Callable[[], Any]) -> Timer:
        return self._transport.call_later(delay, callback)

    @property
    def counters(self) -> Counters:
        """The server's running totals (what its metrics report)."""
        return self._transport.counters

    @property
    def close_code(self) -> int | None:
        code = self._protocol.close_code
        if code is None and self._transport.closed:
            return 1006
        return code

    @property
    def close_reason(self) -> str:
        return self._protocol.close_reason

    def ping(self, payload: bytes = b"") -> None:
        """Send a ping now, ahead of queued messages. The pong is not reported to the
        component; keepalive (``WsServer(keepalive=...)``) uses pongs to spot dead peers."""
        if not self.closed:
            self._transport.write_urgent(self._protocol.encode_ping(payload))

    # -- driven by WsServer ------------------------------------------------------------------

    def data_received(self, data: bytes) -> MaybeAwaitable:
        """Bytes from the client: decode them and hand each message to the component, in
        order. Returns an awaitable when a handler was ``async`` (the rest of the messages
        follow once it is done)."""
        events = self._protocol.receive_data(data)
        index, pending = self._deliver(events, 0)
        if pending is None:
            return None
        return self._deliver_async(events, index, pending)

    def connection_lost(self) -> MaybeAwaitable:
        """The TCP connection is gone: tell the component (``on_close``)."""
        if self._close_timer is not None:
            self._close_timer.cancel()
        if self._keepalive_timer is not None:
            self._keepalive_timer.cancel()
        self._transport.counters.websockets_open -= 1
        code, reason = self.close_code, self.close_reason
        logger.info(
            "WebSocket #%s from %s closed: %s%s",
            self.resource_id,
            self.remote_address,
            code,
            f" {reason!r}" if reason else "",
        )
        component = self._component
        return invoke(component, self, component.on_close, self)

    def shutdown(self, code: int, reason: str) -> None:
        """The server ends this connection: the component says goodbye its way (WampServer
        sends GOODBYE) and closes; by default, a close frame with ``code`` and ``reason``."""
        self._component.on_shutdown(self, code, reason)

    # -- internals -------------------------------------------------------------------------

    async def _deliver_async(self, events: list[Event], index: int, pending: Any) -> None:
        # An async handler returned: await it before the next message, to keep their order.
        while pending is not None:
            await guarded(self._component, self, pending)
            index, pending = self._deliver(events, index)

    def _deliver(self, events: list[Event], start: int) -> tuple[int, Any]:
        """Hand events to the component from ``start`` until a handler returns an awaitable.

        Returns the index to go on from and that awaitable (``None`` once all are handled).
        """
        component = self._component
        on_message = component.on_message
        counters = self._transport.counters
        protocol = self._protocol
        for index in range(start, len(events)):
            event = events[index]
            if type(event) is Message:
                if protocol.close_sent:
                    continue  # we are closing: messages still in flight are not for the app
                counters.messages_in += 1
                try:
                    result = on_message(self, event.data)
                except Exception as exc:
                    result = report_error(component, self, exc)
                if result is not None:
                    return index + 1, result
            else:
                self._control(event)
        return len(events), None

    def _control(self, event: Event) -> None:
        transport = self._transport
        protocol = self._protocol
        if type(event) is Ping:
            if not protocol.close_sent:
                transport.write_urgent(protocol.encode_pong(event.payload))
        elif type(event) is Pong:
            self._awaiting_pong = False
        elif type(event) is CloseReceived:
            transport.counters.close_frame_received(event.code)
            if not protocol.close_sent:
                code = event.code if event.code != 1005 else 1000
                transport.write_urgent(self._close_frame(code))
            transport.close()
        elif type(event) is ProtocolFailure:
            logger.info(
                "connection #%s from %s broke the protocol (%d): %s",
                self.resource_id,
                self.remote_address,
                event.code,
                event.reason,
            )
            self._fail(event.code, event.reason)

    def _fail(self, code: int, reason: str) -> None:
        """Close after a protocol failure: send our close frame and hang up without waiting."""
        if not self._protocol.close_sent:
            self._transport.write_urgent(self._close_frame(code, reason))
        self._transport.close()

    def _drop_slow_consumer(self) -> None:
        transport = self._transport
        logger.warning(
            "connection #%s from %s: %d bytes unread, over the write limit; closing it (1008)",
            self.resource_id,
            self.remote_address,
            transport.buffered_amount,
        )
        transport.counters.slow_consumer_closes += 1
        frame = self._close_frame(1008, "slow consumer: too much unread data")
        transport.write_urgent(frame, discard_queued=True)
        transport.close()

    def _close_frame(self, code: int, reason: str = "") -> bytes:
        # Every close frame this side sends is made here, so each is counted once.
        frame = self._protocol.encode_close(code, reason)
        self._transport.counters.close_frame_sent(code)
        return frame

    def _keepalive_tick(self) -> None:
        if self.closed or self._keepalive is None:
            return
        if self._awaiting_pong:
            logger.info(
                "connection #%s: no pong within %g s; closing", self.resource_id, self._keepalive
            )
            self._fail(1011, "keepalive ping timeout")
            return
        self._awaiting_pong = True
        self.ping(_KEEPALIVE_PAYLOAD)
        self._keepalive_timer = self._transport.call_later(self._keepalive, self._keepalive_tick)


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
    # The fields of WsConnection are read directly: this loop runs once per recipient.
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
        if protocol.close_sent:
            continue
        transport = conn._transport
        if transport.over_write_limit:
            conn._drop_slow_consumer()
            continue
        if transport.write(frame):
            transport.counters.messages_out += 1
