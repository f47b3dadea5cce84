"""Connections in memory: what :class:`~ratchetpy.IoServer`'s TCP connection is, without a socket.

Each in-memory connection is two one-way byte pipes. The server's end is a
:class:`MemoryTransport`, the :class:`~ratchetpy.components.connection.Transport` that the
component stack writes to, with the same rules as a TCP connection of the real server: writes
never block, control frames go ahead of queued data, a write limit marks slow consumers, and a
close flushes first and waits (bounded) for the peer to hang up. The client's end is a
:class:`MemoryStream`, a ``trio.abc.Stream`` that any trio client (wsproto, h11,
:mod:`ratchetpy.client`) can talk over.

What the server queued and the client has not read is exactly ``buffered_amount``, so a test
client that stops reading is a slow consumer, as it would be over TCP.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable
from typing import Any

import trio

from ..components.connection import Connection, Counters, Timer, raw_bytes
from ..exceptions import ConnectionClosed
from ..io.timers import TimerQueue

__all__ = ["MemoryStream", "MemoryTransport"]

logger = logging.getLogger("ratchetpy.testing")

_OPEN, _CLOSING, _CLOSED = 0, 1, 2


class _Pipe:
    """Bytes flowing one way, in chunks; the reader waits for them. ``size`` counts what is
    queued and unread."""

    def __init__(self) -> None:
        self._chunks: deque[bytes] = deque()
        # As in the TCP transport: the chunks before _urgent_end go ahead of a new urgent one
        # (earlier urgent frames, and a chunk the reader has taken part of).
        self._urgent_end = 0
        self._head_partial = False
        self._end_when_read = False
        self.size = 0
        self.taken = 0  # bytes the reader has taken, ever
        self.eof = False
        self._readable = trio.lowlevel.ParkingLot()
        self._emptied = trio.lowlevel.ParkingLot()
        self._progressed = trio.lowlevel.ParkingLot()

    def put(self, data: bytes) -> None:
        if data:
            self._chunks.append(data)
            self.size += len(data)
            self._readable.unpark_all()

    def put_urgent(self, data: bytes, *, discard_queued: bool) -> None:
        keep = 1 if self._head_partial else 0
        if discard_queued:
            while len(self._chunks) > keep:
                self.size -= len(self._chunks.pop())
            self._urgent_end = keep
        index = max(keep, self._urgent_end)
        self._chunks.insert(index, data)
        self._urgent_end = index + 1
        self.size += len(data)
        self._readable.unpark_all()

    def clear(self) -> None:
        self._chunks.clear()
        self._urgent_end = 0
        self._head_partial = False
        self.size = 0
        self._emptied.unpark_all()
        self._progressed.unpark_all()

    def close(self) -> None:
        """No more bytes: the reader sees the end of the stream once the queue is read."""
        self.eof = True
        self._readable.unpark_all()
        self._emptied.unpark_all()
        self._progressed.unpark_all()

    def close_when_read(self) -> None:
        """End the stream once what is queued has been read (a TCP half-close after flush)."""
        self._end_when_read = True
        if not self.size:
            self.close()

    async def get(self, max_bytes: int | None = None) -> bytes:
        """The next bytes (up to ``max_bytes``), or ``b""`` at the end. A checkpoint."""
        while not self._chunks and not self.eof:
            await self._readable.park()
        if not self._chunks:
            await trio.lowlevel.checkpoint()
            return b""
        taken: list[bytes] = []
        room = max_bytes if max_bytes is not None else self.size
        while self._chunks and room > 0:
            chunk = self._chunks.popleft()
            self._head_partial = False
            if len(chunk) > room:
                self._chunks.appendleft(chunk[room:])
                self._head_partial = True
                chunk = chunk[:room]
            else:
                self._urgent_end = max(0, self._urgent_end - 1)
            taken.append(chunk)
            room -= len(chunk)
        data = b"".join(taken)
        self.size -= len(data)
        self.taken += len(data)
        self._progressed.unpark_all()
        if not self.size:
            self._emptied.unpark_all()
            if self._end_when_read:
                self.close()
        await trio.lowlevel.checkpoint()
        return data

    async def wait_empty(self) -> None:
        while self.size and not self.eof:
            await self._emptied.park()

    async def wait_taken(self, nbytes: int) -> None:
        """Until the reader has taken ``nbytes`` more (or everything), or the pipe ends."""
        target = self.taken + nbytes
        while self.size and not self.eof and self.taken < target:
            await self._progressed.park()


class MemoryTransport(Connection):
    """The server's end of an in-memory connection, at the bottom of the component stack.

    Made by :class:`~ratchetpy.testing.MemoryServer`; ``send`` writes raw bytes (``str`` as
    UTF-8), as on a TCP connection of :class:`~ratchetpy.IoServer`.
    """

    def __init__(
        self,
        resource_id: int,
        remote_address: str,
        *,
        counters: Counters,
        timers: TimerQueue,
        write_limit: int,
        close_timeout: float,
        secure: bool = False,
    ) -> None:
        self.resource_id = resource_id
        self.remote_address = remote_address
        self.secure = secure
        self.counters = counters
        self._timers = timers
        self._write_limit = write_limit
        self._close_timeout = close_timeout
        self._to_client = _Pipe()
        self._to_server = _Pipe()
        self._state = _OPEN
        self._finished = False
        self._close_timer: Timer | None = None
        self._lost_queued_data = False
        self.stream = MemoryStream(self._to_server, self._to_client)

    # -- the Connection interface ----------------------------------------------------------

    def send(self, data: str | bytes) -> None:
        if self._state != _OPEN:
            return
        payload = raw_bytes(data)
        if self.over_write_limit:
            # As IoServer does for raw TCP: the slow consumer is dropped, and the log says so.
            logger.warning("connection #%s: over the write limit; dropping it", self.resource_id)
            self.counters.slow_consumer_closes += 1
            self.abort()
            return
        self.write(payload)

    def close(self, code: int = 1000, reason: str = "") -> None:
        """Deliver what is queued, then end the stream and wait (bounded) for the client to
        hang up, as a TCP connection's half-close does."""
        if self._state != _OPEN:
            return
        self._state = _CLOSING
        self._close_timer = self._timers.call_later(self._close_timeout, self.abort)
        self._to_client.close_when_read()

    async def drain(self) -> None:
        await self._to_client.wait_empty()
        if self._lost_queued_data:
            raise ConnectionClosed("the connection was dropped before its queue was read")
        await trio.lowlevel.checkpoint()

    async def wait_taken(self, nbytes: int) -> None:
        """Wait until the client has read ``nbytes`` more of the queue (or all of it), or the
        connection is dropped: the in-memory server's reader pauses with it, as
        :class:`~ratchetpy.IoServer`'s does on a TCP connection. A checkpoint."""
        await self._to_client.wait_taken(nbytes)
        await trio.lowlevel.checkpoint()

    @property
    def buffered_amount(self) -> int:
        return self._to_client.size

    @property
    def closed(self) -> bool:
        return self._state != _OPEN

    def call_later(self, delay: float, callback: Callable[[], Any]) -> Timer:
        def guarded() -> None:
            if not self._finished:
                callback()

        return self._timers.call_later(delay, guarded)

    # -- the Transport interface (what WsServer uses) --------------------------------------

    @property
    def over_write_limit(self) -> bool:
        return self._to_client.size > self._write_limit

    def write(self, data: bytes) -> bool:
        if self._to_client.eof:
            return False
        self._to_client.put(data)
        self.counters.bytes_out += len(data)
        return True

    def write_frame(self, header: bytes, payload: bytes) -> bool:
        return self.write(header + payload)

    def write_urgent(self, data: bytes, *, discard_queued: bool = False) -> None:
        if self._to_client.eof:
            return
        self._to_client.put_urgent(data, discard_queued=discard_queued)
        self.counters.bytes_out += len(data)

    def abort(self) -> None:
        """Drop the connection now: the client sees the stream end, queued data and all."""
        if self._state == _CLOSED and self._to_client.eof:
            return
        self._state = _CLOSED
        if self._to_client.size:
            self._lost_queued_data = True
        self._to_client.clear()
        self._to_client.close()
        self._to_server.close()

    # -- driven by MemoryServer --------------------------------------------------------------

    @property
    def finished(self) -> bool:
        return self._finished

    async def receive(self) -> bytes:
        """The next bytes the client sent; ``b""`` once it hung up or the connection dropped."""
        return await self._to_server.get()

    def finish(self) -> None:
        """The reader is done: release everything."""
        self._finished = True
        if self._close_timer is not None:
            self._close_timer.cancel()
            self._close_timer = None
        self.abort()


class MemoryStream(trio.abc.HalfCloseableStream):
    """The client's end of an in-memory connection: a trio stream."""

    def __init__(self, outgoing: _Pipe, incoming: _Pipe) -> None:
        self._outgoing = outgoing
        self._incoming = incoming
        self._closed = False

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        if self._closed:
            raise trio.ClosedResourceError("this stream was closed")
        if self._outgoing.eof:
            await trio.lowlevel.checkpoint()
            raise trio.BrokenResourceError("the server dropped the connection")
        self._outgoing.put(bytes(data))
        await trio.lowlevel.checkpoint()

    def send_nowait(self, data: bytes) -> None:
        """Queue bytes for the server without a checkpoint (a control frame answered on the
        way); dropped once the server has hung up."""
        if not self._closed and not self._outgoing.eof:
            self._outgoing.put(data)

    async def wait_send_all_might_not_block(self) -> None:
        await trio.lowlevel.checkpoint()

    async def send_eof(self) -> None:
        """Half-close: the server reads the end of the stream; the client may still read."""
        self._outgoing.close()
        await trio.lowlevel.checkpoint()

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        if self._closed:
            raise trio.ClosedResourceError("this stream was closed")
        return await self._incoming.get(max_bytes)

    async def aclose(self) -> None:
        self.hang_up()
        await trio.lowlevel.checkpoint()

    def hang_up(self) -> None:
        """Close this end at once (``aclose`` without the checkpoint)."""
        self._closed = True
        self._outgoing.close()
        self._incoming.clear()

    @property
    def unread(self) -> int:
        """Bytes the server sent that this end has not read yet."""
        return self._incoming.size
