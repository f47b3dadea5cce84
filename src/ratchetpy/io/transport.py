"""The trio side of a connection: outbound queue, merged writes.

Writes never block the sender. ``write()`` appends to the connection's queue; the queue is
flushed with one non-blocking ``send()`` per connection:

* by the connection's own reader task right after it handled a chunk of input, for everything
  written during that (synchronous) handling: replies go out with no task switch, and a
  broadcast triggered by one chunk costs one write per receiving connection, however many
  messages the chunk held;
* by the hub's flusher task for writes made anywhere else (timers, other tasks, async handlers
  after they awaited something), once per scheduler batch.

A write the kernel does not take whole hands the connection to a drain task that waits for the
socket to become writable; until it is done nobody else writes to that socket, so frames are
never interleaved.

The hub also keeps the server's :class:`~ratchetpy.components.connection.Counters` (bumped
inline: bytes per chunk read and per send, never a log line or an allocation per message) and
the queue of every connection's ``call_later`` (:mod:`ratchetpy.io.timers`). TLS lives in
:mod:`ratchetpy.io.tls`, a subclass that overrides the write path, so plain connections never
test for it.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Callable
from typing import Any

import trio

from ..components.connection import Connection, Counters, raw_bytes
from ..exceptions import ConnectionClosed
from .timers import TimerHandle, TimerQueue

logger = logging.getLogger("ratchetpy.io")

#: TcpConnection states (plain ints: the reader loop tests them once per chunk).
OPEN, CLOSING, CLOSED = 0, 1, 2

# From this much queued in several chunks, one sendmsg() gathers them from their own buffers
# instead of joining them first: a large payload is not copied again, and a long queue of a
# slow reader is not joined whole for every write the kernel takes only part of.
_GATHER_MIN = 1 << 16 if hasattr(socket.socket, "sendmsg") else 1 << 62  # Windows: joined
try:
    _IOV_MAX = min(os.sysconf("SC_IOV_MAX"), 1024)
except (AttributeError, ValueError, OSError):
    _IOV_MAX = 16  # the POSIX minimum


class Hub:
    """State one server shares between its connections: pending flushes and timers.

    Owned by :class:`~ratchetpy.IoServer`, which runs :meth:`run_flusher` and ``timers.run``
    in its nursery and sets :attr:`nursery` for drain tasks.
    """

    def __init__(self, *, write_limit: int, close_timeout: float) -> None:
        self.write_limit = write_limit
        self.close_timeout = close_timeout
        self.counters = Counters()
        self.nursery: trio.Nursery | None = None
        # The connection whose reader is handling input right now (synchronously), if any.
        # Writes made meanwhile are flushed by that reader when it is done, not by the flusher.
        self._current: TcpConnection | None = None
        self._dirty: list[TcpConnection] = []
        self._flush_lot = trio.lowlevel.ParkingLot()
        self._flush_requested = False
        #: Every call_later() of the server's connections; IoServer runs its task.
        self.timers = TimerQueue()

    # -- writes --------------------------------------------------------------------------

    def mark_dirty(self, conn: TcpConnection) -> None:
        """``conn`` has data queued: flush it soon (see the module notes for who does)."""
        self._dirty.append(conn)
        if self._current is None and not self._flush_requested:
            self._flush_requested = True
            self._flush_lot.unpark_all()

    def flush_all(self) -> None:
        """Try one non-blocking write on every connection with queued data. Not a checkpoint."""
        dirty = self._dirty
        self._dirty = []
        for conn in dirty:
            conn.flush()

    def flush_dirty(self) -> None:
        """:meth:`flush_all` if anything is queued. Not a checkpoint."""
        if self._dirty:
            self.flush_all()

    def handling(self, conn: TcpConnection) -> None:
        """``conn``'s reader starts running handlers: what they write waits for :meth:`handled`
        instead of waking the flusher, so replies go out with no task switch."""
        self._current = conn

    def handled(self) -> None:
        """The handlers returned: flush everything they wrote, on every connection."""
        self._current = None
        if self._dirty:
            self.flush_all()

    async def run_flusher(self) -> None:
        while True:
            await self._flush_lot.park()
            self._flush_requested = False
            self.flush_all()


class TcpConnection(Connection):
    """A connection at the bottom of the stack; ``send`` writes raw bytes (``str`` as UTF-8)."""

    def __init__(
        self, hub: Hub, sock: socket.socket, resource_id: int, remote_address: str
    ) -> None:
        self.resource_id = resource_id
        self.remote_address = remote_address
        # An attribute, not a property: layers bump these once per message.
        self.counters = hub.counters
        self._hub = hub
        self._sock: socket.socket | None = sock
        self._state = OPEN
        # Frames to send, in order; a memoryview is the payload of the frame before it.
        self._out: list[bytes | memoryview] = []
        self._out_offset = 0  # bytes of _out[0] already written
        self._out_size = 0  # bytes queued and not yet written
        self._urgent_end = 0  # _out[:_urgent_end] goes before any new urgent frame
        self._dirty = False
        self._draining = False  # a drain task owns writes to the socket
        self._drained: trio.Event | None = None
        # The reader's wait in wait_taken(): woken once the peer has taken _taken_wanted bytes.
        self._taken: trio.Event | None = None
        self._taken_wanted = 0
        self._close_timer: TimerHandle | None = None
        #: Set once the connection is finished; readers stop, timers are ignored.
        self._finished = False
        self._lost_queued_data = False

    # -- the Connection interface ----------------------------------------------------------

    def send(self, data: str | bytes) -> None:
        if self._state != OPEN:
            return
        payload = raw_bytes(data)
        if self._out_size > self._hub.write_limit:
            logger.warning(
                "connection #%s from %s: %d bytes queued and not read, over the write limit; "
                "dropping the slow consumer",
                self.resource_id,
                self.remote_address,
                self._out_size,
            )
            self.counters.slow_consumer_closes += 1
            self.abort()
            return
        self.write(payload)

    def close(self, code: int = 1000, reason: str = "") -> None:
        """Flush what is queued, then half-close and wait (bounded) for the peer to hang up."""
        if self._state != OPEN:
            return
        self._state = CLOSING
        self._close_timer = self._hub.timers.call_later(self._hub.close_timeout, self.abort)
        if not self._out:
            self._shutdown_write()

    async def drain(self) -> None:
        while self._out_size:
            if self._drained is None:
                self._drained = trio.Event()
            await self._drained.wait()
        if self._lost_queued_data:
            raise ConnectionClosed("the connection was dropped before its queue was written")
        await trio.lowlevel.checkpoint()

    async def wait_taken(self, nbytes: int) -> None:
        """Wait until the peer has taken ``nbytes`` more of the queue (or all of it), or the
        connection is dropped. A checkpoint; for the server's reader, one waiter at a time.

        The reader's backpressure: it resumes as the peer reads. Waiting for an empty queue
        instead (:meth:`drain`) could wait for ever on a connection that others keep writing
        to, such as a member of a busy room who reads as fast as the room talks: its pings and
        its close would go unanswered.
        """
        if self._out_size and self._sock is not None:
            self._taken_wanted = nbytes
            self._taken = event = trio.Event()
            await event.wait()
        else:
            await trio.lowlevel.checkpoint()

    @property
    def buffered_amount(self) -> int:
        return self._out_size

    @property
    def closed(self) -> bool:
        return self._state != OPEN

    @property
    def aborted(self) -> bool:
        """True once the socket is released (dropped, or finished): nothing more is read."""
        return self._sock is None

    @property
    def finished(self) -> bool:
        """True once :meth:`finish` ran: the reader is done and timers no longer fire."""
        return self._finished

    def call_later(self, delay: float, callback: Callable[[], Any]) -> TimerHandle:
        def guarded() -> None:
            if not self._finished:
                callback()

        return self._hub.timers.call_later(delay, guarded)

    # -- used by the layers above ----------------------------------------------------------

    @property
    def over_write_limit(self) -> bool:
        """True when more than the server's write limit is queued: the peer is not reading."""
        return self._out_size > self._hub.write_limit

    def write(self, data: bytes) -> bool:
        """Queue bytes with no checks; layers above decide what may be sent. Not a checkpoint.

        Returns False, queuing nothing, once the socket is released (the peer is gone)."""
        if self._sock is None:
            return False
        self._out.append(data)
        self._out_size += len(data)
        if not self._dirty:
            # _mark_dirty, inline: write() runs once per message sent.
            self._dirty = True
            self._hub.mark_dirty(self)
        return True

    def write_frame(self, header: bytes, payload: bytes) -> bool:
        """Queue a frame as its header and its payload, each sent from its own buffer; an
        urgent frame never goes between them. Not a checkpoint; False once the socket is
        released, as for :meth:`write`."""
        if self._sock is None:
            return False
        # A memoryview in the queue marks the rest of the frame before it (see write_urgent).
        self._out += (header, memoryview(payload))
        self._out_size += len(header) + len(payload)
        if not self._dirty:
            self._mark_dirty()
        return True

    def write_urgent(self, data: bytes, *, discard_queued: bool = False) -> None:
        """Queue a control frame ahead of queued data, behind only a partly written frame.

        With ``discard_queued`` the queued data that was not started is dropped: a closing
        frame for a peer that stopped reading must not wait behind megabytes it will never read.
        """
        if self._sock is None:
            return
        out = self._out
        keep = 1 if self._out_offset else 0
        # A payload queued apart from its header goes with it: the frame may have started.
        while keep < len(out) and type(out[keep]) is memoryview:
            keep += 1
        if discard_queued and len(out) > keep:
            dropped = out[keep:]
            del out[keep:]
            self._out_size -= sum(len(chunk) for chunk in dropped)
            self._urgent_end = keep
        # Behind the partly written chunk and earlier urgent frames, so control frames keep
        # their order (pongs answer pings in the order they came).
        index = max(keep, self._urgent_end)
        out.insert(index, data)
        self._urgent_end = index + 1
        self._out_size += len(data)
        if not self._dirty:
            self._mark_dirty()

    def abort(self) -> None:
        """Drop the connection now, queued data and all."""
        if self._state == CLOSED and self._sock is None:
            return
        self._state = CLOSED
        if self._out_size:
            self._lost_queued_data = True
        self._drop_queue()
        sock = self._sock
        if sock is not None:
            self._sock = None
            trio.lowlevel.notify_closing(sock)
            sock.close()
        self._wake_drain_waiters()

    # -- internals -------------------------------------------------------------------------

    def _mark_dirty(self) -> None:
        self._dirty = True
        self._hub.mark_dirty(self)

    def _drop_queue(self) -> None:
        self._out.clear()
        self._out_offset = 0
        self._urgent_end = 0
        self._out_size = 0

    def _wake_drain_waiters(self) -> None:
        if self._drained is not None:
            self._drained.set()
            self._drained = None
        self._wake_reader()

    def _note_taken(self, sent: int) -> None:
        """The kernel took ``sent`` bytes while the reader waits in :meth:`wait_taken`."""
        self._taken_wanted -= sent
        if self._taken_wanted <= 0:
            self._wake_reader()

    def _wake_reader(self) -> None:
        """End the reader's :meth:`wait_taken`, if it is waiting."""
        if self._taken is not None:
            self._taken.set()
            self._taken = None

    def _pending_bytes(self) -> bytes | memoryview:
        out = self._out
        off = self._out_offset
        if len(out) == 1:
            return memoryview(out[0])[off:] if off else out[0]
        if off:
            return b"".join([out[0][off:], *out[1:]])
        return b"".join(out)

    def _pending_buffers(self) -> list[bytes | memoryview]:
        buffers: list[bytes | memoryview] = self._out[:_IOV_MAX]
        if self._out_offset:
            buffers[0] = memoryview(buffers[0])[self._out_offset :]
        return buffers

    def _write_once(self) -> bool:
        """One non-blocking send of everything queued; True if the queue is now empty."""
        # The socket call is inline rather than through _send: this runs once per flushed
        # connection per batch, the hottest path after write() itself.
        sock = self._sock
        if sock is None:
            return True
        try:
            if self._out_size >= _GATHER_MIN and len(self._out) > 1:
                sent = sock.sendmsg(self._pending_buffers())
            else:
                sent = sock.send(self._pending_bytes())
        except BlockingIOError:
            return False
        except OSError as exc:
            self._write_failed(exc)
            return True
        self.counters.bytes_out += sent
        self._consumed(sent)
        if self._out:
            return False
        self._written_all()
        return True

    def _send(self, data: bytes | memoryview) -> int | None:
        """One non-blocking ``send()``: the bytes it took, -1 if the socket would block, or
        ``None`` when the connection is gone (a failed write drops it)."""
        sock = self._sock
        if sock is None:
            return None
        try:
            return sock.send(data)
        except BlockingIOError:
            return -1
        except OSError as exc:
            self._write_failed(exc)
            return None

    def _write_failed(self, exc: OSError) -> None:
        """The kernel refused a write (the peer reset, the socket broke): drop the connection."""
        logger.debug("connection #%s: write failed: %s", self.resource_id, exc)
        self.abort()

    def _written_all(self) -> None:
        """The queue is empty: wake drain() waiters; a closing connection half-closes now."""
        self._wake_drain_waiters()
        if self._state == CLOSING:
            self._shutdown_write()

    def _consumed(self, sent: int) -> None:
        self._out_size -= sent
        if self._taken is not None:
            self._note_taken(sent)
        out = self._out
        if not self._out_size:
            out.clear()
            self._out_offset = 0
            self._urgent_end = 0
            return
        off = self._out_offset + sent
        done = 0
        while off >= len(out[done]):
            off -= len(out[done])
            done += 1
        del out[:done]
        self._out_offset = off
        self._urgent_end = max(0, self._urgent_end - done)

    def _has_output(self) -> bool:
        """True while something queued for the peer is not yet written."""
        return bool(self._out)

    def flush(self) -> None:
        """One non-blocking write of what is queued, or a drain task when the kernel does
        not take it all. Called by the hub for connections it was told are dirty."""
        self._dirty = False
        self._write_pending()

    def _write_pending(self) -> None:
        if self._draining or not self._has_output():
            return
        if not self._write_once():
            self._draining = True
            assert self._hub.nursery is not None
            self._hub.nursery.start_soon(self._drain_loop)

    async def _drain_loop(self) -> None:
        try:
            while self._has_output() and self._sock is not None:
                try:
                    await trio.lowlevel.wait_writable(self._sock)
                except (trio.ClosedResourceError, OSError):
                    break
                self._write_once()
        finally:
            self._draining = False

    def _shutdown_write(self) -> None:
        """Everything is written: send FIN; the reader then waits for the peer's EOF."""
        sock = self._sock
        if sock is None:
            return
        try:
            sock.shutdown(socket.SHUT_WR)
        except OSError:
            self.abort()

    def finish(self) -> None:
        """The reader is done: release the socket and everything queued."""
        self._finished = True
        self._state = CLOSED
        if self._close_timer is not None:
            self._close_timer.cancel()
            self._close_timer = None
        self.abort()
