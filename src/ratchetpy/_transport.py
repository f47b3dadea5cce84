"""The trio side of a connection: outbound queue, merged writes, timers.

Only this module and :mod:`ratchetpy.io_server` touch sockets or trio.

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

The hub also keeps the server's :class:`~ratchetpy.connection.Counters` (bumped inline: bytes
per chunk read and per send, never a log line or an allocation per message) and runs the
application's timers (:class:`ServerTimer`). TLS lives in :mod:`ratchetpy._tls`, a subclass that
overrides the write path, so plain connections never test for it.
"""

from __future__ import annotations

import heapq
import inspect
import itertools
import logging
import socket
from collections.abc import Callable
from typing import Any

import trio

from .connection import Connection, Counters
from .exceptions import ConnectionClosed

logger = logging.getLogger("ratchetpy.io")

_OPEN, _CLOSING, _CLOSED = 0, 1, 2


def _do_nothing() -> None:
    pass


class TimerHandle:
    """A scheduled callback; ``cancel()`` stops it."""

    __slots__ = ("callback", "cancelled", "when")

    def __init__(self, when: float, callback: Callable[[], Any]) -> None:
        self.when = when
        self.callback = callback
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True
        # The heap keeps the handle until its time comes; let go of what the callback holds
        # (typically a closed connection) now rather than then.
        self.callback = _do_nothing


class Hub:
    """State one server shares between its connections: pending flushes and timers.

    Owned by :class:`~ratchetpy.IoServer`, which runs :meth:`run_flusher` and :meth:`run_timers`
    in its nursery and sets :attr:`nursery` for drain tasks.
    """

    def __init__(self, *, write_limit: int, close_timeout: float) -> None:
        self.write_limit = write_limit
        self.close_timeout = close_timeout
        self.counters = Counters()
        self.nursery: trio.Nursery | None = None
        #: The connection whose reader is handling input right now (synchronously), if any.
        #: Writes made meanwhile are flushed by that reader when it is done, not by the flusher.
        self.current: TcpConnection | None = None
        self.dirty: list[TcpConnection] = []
        self._flush_lot = trio.lowlevel.ParkingLot()
        self._flush_requested = False
        self._timers: list[tuple[float, int, TimerHandle]] = []
        self._timer_seq = itertools.count()
        self._timer_scope: trio.CancelScope | None = None

    # -- writes --------------------------------------------------------------------------

    def mark_dirty(self, conn: TcpConnection) -> None:
        conn._dirty = True
        self.dirty.append(conn)
        if self.current is None and not self._flush_requested:
            self._flush_requested = True
            self._flush_lot.unpark_all()

    def flush_all(self) -> None:
        """Try one non-blocking write on every connection with queued data. Not a checkpoint."""
        dirty = self.dirty
        self.dirty = []
        for conn in dirty:
            conn._dirty = False
            conn._flush()

    async def run_flusher(self) -> None:
        while True:
            await self._flush_lot.park()
            self._flush_requested = False
            self.flush_all()

    # -- timers --------------------------------------------------------------------------

    def call_later(self, delay: float, callback: Callable[[], Any]) -> TimerHandle:
        return self.call_at(trio.current_time() + delay, callback)

    def call_at(self, when: float, callback: Callable[[], Any]) -> TimerHandle:
        """Run ``callback()`` at trio time ``when``, in the timer task. Not a checkpoint."""
        handle = TimerHandle(when, callback)
        heapq.heappush(self._timers, (handle.when, next(self._timer_seq), handle))
        scope = self._timer_scope
        if scope is not None and handle.when < scope.deadline:
            scope.deadline = handle.when
        return handle

    async def run_timers(self) -> None:
        timers = self._timers
        while True:
            while timers and timers[0][2].cancelled:
                heapq.heappop(timers)
            deadline = timers[0][0] if timers else float("inf")
            with trio.CancelScope(deadline=deadline) as scope:
                self._timer_scope = scope
                await trio.sleep_forever()
            self._timer_scope = None
            now = trio.current_time()
            while timers and timers[0][0] <= now:
                handle = heapq.heappop(timers)[2]
                if handle.cancelled:
                    continue
                try:
                    handle.callback()
                except Exception:
                    logger.exception("timer callback %r raised", handle.callback)
            if self.dirty:
                self.flush_all()


class ServerTimer:
    """A timer made by ``IoServer.add_timer`` or ``add_periodic_timer``; ``cancel()`` stops it.

    It starts counting when :meth:`start` hands it the hub (at once while the server runs, when
    ``serve()`` starts otherwise). A plain callback runs in the hub's timer task; one that
    returns an awaitable (an ``async def``) has it awaited in a task of the server's nursery,
    and a periodic timer skips its ticks while such a run is still going, so runs never overlap.
    Exceptions are logged; a periodic timer keeps going.
    """

    __slots__ = ("_busy", "_due", "_handle", "_hub", "_registry", "callback", "delay", "periodic")

    def __init__(
        self,
        registry: set[ServerTimer],
        delay: float,
        callback: Callable[[], Any],
        *,
        periodic: bool,
    ) -> None:
        self.delay = delay
        self.callback = callback
        self.periodic = periodic
        self._registry = registry
        self._hub: Hub | None = None
        self._handle: TimerHandle | None = None
        self._due = 0.0
        self._busy = False
        registry.add(self)

    @property
    def cancelled(self) -> bool:
        """True once cancelled, or once a one-shot timer has fired."""
        return self not in self._registry

    def start(self, hub: Hub) -> None:
        self._hub = hub
        self._due = trio.current_time() + self.delay
        self._handle = hub.call_at(self._due, self._fire)

    def cancel(self) -> None:
        """Stop the timer; harmless if it already fired or was cancelled. Not a checkpoint.

        An ``async`` run already going is not interrupted.
        """
        self._registry.discard(self)
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None

    def _fire(self) -> None:
        hub = self._hub
        assert hub is not None
        if self.periodic:
            # Reschedule first, so that the callback failing or cancelling itself both work.
            now = trio.current_time()
            due = self._due + self.delay
            if due <= now:
                due = now + self.delay  # fell behind (a slow callback): skip, don't catch up
            self._due = due
            self._handle = hub.call_at(due, self._fire)
        else:
            self.cancel()
        if self._busy:
            logger.debug("timer %r: previous run still going; skipping this tick", self.callback)
            return
        self._busy = run_callback(hub, self.callback, (), self._done)

    def _done(self) -> None:
        self._busy = False


def run_callback(
    hub: Hub,
    callback: Callable[..., Any],
    args: tuple[Any, ...] = (),
    on_done: Callable[[], None] | None = None,
) -> bool:
    """Call ``callback(*args)`` for the application, outside any connection's handling.

    Its exception is logged. An awaitable it returns is awaited in a new task in the server's
    nursery (its exception logged too), and ``on_done()`` is called when that task ends; True
    if such a task was started. Not a checkpoint.
    """
    try:
        result = callback(*args)
    except Exception:
        logger.exception("callback %r raised", callback)
        return False
    if result is None or not inspect.isawaitable(result):
        return False
    assert hub.nursery is not None
    hub.nursery.start_soon(_await_callback, callback, result, on_done)
    return True


async def _await_callback(
    callback: Callable[..., Any], result: Any, on_done: Callable[[], None] | None
) -> None:
    try:
        await result
    except Exception:
        logger.exception("callback %r raised", callback)
    finally:
        if on_done is not None:
            on_done()


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
        self._state = _OPEN
        self._out: list[bytes] = []
        self._out_offset = 0  # bytes of _out[0] already written
        self._out_size = 0  # bytes queued and not yet written
        self._urgent_end = 0  # _out[:_urgent_end] goes before any new urgent frame
        self._dirty = False
        self._draining = False  # a drain task owns writes to the socket
        self._drained: trio.Event | None = None
        self._close_timer: TimerHandle | None = None
        #: Set once the connection is finished; readers stop, timers are ignored.
        self._finished = False
        #: Set when the component's on_open is called (after the TLS handshake on TLS).
        self._opened = False
        self._lost_queued_data = False

    # -- the Connection interface ----------------------------------------------------------

    def send(self, data: str | bytes) -> None:
        if self._state != _OPEN:
            return
        if isinstance(data, str):
            data = data.encode()
        elif not isinstance(data, (bytes, bytearray, memoryview)):
            raise TypeError(f"send() takes str or bytes, not {type(data).__name__}")
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
        self.write(bytes(data))

    def close(self, code: int = 1000, reason: str = "") -> None:
        """Flush what is queued, then half-close and wait (bounded) for the peer to hang up."""
        if self._state != _OPEN:
            return
        self._state = _CLOSING
        self._close_timer = self._hub.call_later(self._hub.close_timeout, self.abort)
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

    @property
    def buffered_amount(self) -> int:
        return self._out_size

    @property
    def closed(self) -> bool:
        return self._state != _OPEN

    def call_later(self, delay: float, callback: Callable[[], Any]) -> TimerHandle:
        def guarded() -> None:
            if not self._finished:
                callback()

        return self._hub.call_later(delay, guarded)

    # -- used by the layers above ----------------------------------------------------------

    @property
    def over_write_limit(self) -> bool:
        """True when more than the server's write limit is queued: the peer is not reading."""
        return self._out_size > self._hub.write_limit

    def write(self, data: bytes) -> None:
        """Queue bytes with no checks; layers above decide what may be sent. Not a checkpoint."""
        if self._sock is None:
            return
        self._out.append(data)
        self._out_size += len(data)
        if not self._dirty:
            self._hub.mark_dirty(self)

    def write_urgent(self, data: bytes, *, discard_queued: bool = False) -> None:
        """Queue a control frame ahead of queued data, behind only a partly written chunk.

        With ``discard_queued`` the queued data that was not started is dropped: a closing
        frame for a peer that stopped reading must not wait behind megabytes it will never read.
        """
        if self._sock is None:
            return
        out = self._out
        keep = 1 if self._out_offset else 0
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
            self._hub.mark_dirty(self)

    def abort(self) -> None:
        """Drop the connection now, queued data and all."""
        if self._state == _CLOSED and self._sock is None:
            return
        self._state = _CLOSED
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

    def _drop_queue(self) -> None:
        self._out.clear()
        self._out_offset = 0
        self._urgent_end = 0
        self._out_size = 0

    def _wake_drain_waiters(self) -> None:
        if self._drained is not None:
            self._drained.set()
            self._drained = None

    def _pending_bytes(self) -> bytes | memoryview:
        out = self._out
        off = self._out_offset
        if len(out) == 1:
            return memoryview(out[0])[off:] if off else out[0]
        if off:
            return b"".join([out[0][off:], *out[1:]])
        return b"".join(out)

    def _write_once(self) -> bool:
        """One non-blocking send of everything queued; True if the queue is now empty."""
        sock = self._sock
        if sock is None:
            return True
        try:
            sent = sock.send(self._pending_bytes())
        except BlockingIOError:
            return False
        except OSError as exc:
            logger.debug("connection #%s: write failed: %s", self.resource_id, exc)
            self.abort()
            return True
        self.counters.bytes_out += sent
        self._consumed(sent)
        if self._out:
            return False
        self._wake_drain_waiters()
        if self._state == _CLOSING:
            self._shutdown_write()
        return True

    def _consumed(self, sent: int) -> None:
        self._out_size -= sent
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

    def _flush(self) -> None:
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

    def _finish(self) -> None:
        """The reader is done: release the socket and everything queued."""
        self._finished = True
        self._state = _CLOSED
        if self._close_timer is not None:
            self._close_timer.cancel()
            self._close_timer = None
        self.abort()
