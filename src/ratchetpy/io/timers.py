"""Timers of one server: every ``call_later`` in one heap, served by one task.

Connections schedule many short timers (a request timeout per HTTP connection, a keepalive ping
per WebSocket, a close timeout per closing connection); a task or a cancel scope each would
cost far more than a heap entry. :class:`TimerQueue` keeps them all and its :meth:`run` task
sleeps until the earliest one is due. Cancelling a timer flags it and lets go of its callback at
once; the task discards the entry when it reaches the top of the heap.

The application's own timers (``IoServer.add_timer`` and ``add_periodic_timer``) are
:class:`ServerTimer`\\ s on top of the same queue, kept by :class:`ServerTimers` so that a
shutdown can stop them all before it closes any connection.
"""

from __future__ import annotations

import heapq
import inspect
import itertools
import logging
from collections.abc import Callable
from typing import Any

import trio

__all__ = ["ServerTimer", "ServerTimers", "TimerHandle", "TimerQueue", "run_callback"]

logger = logging.getLogger("ratchetpy.io")


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


class TimerQueue:
    """The heap of one server's timers; :meth:`run` is the task that fires them."""

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, TimerHandle]] = []
        self._seq = itertools.count()
        self._scope: trio.CancelScope | None = None

    def __len__(self) -> int:
        """Timers held: those pending, and those cancelled until their time comes."""
        return len(self._heap)

    def call_later(self, delay: float, callback: Callable[[], Any]) -> TimerHandle:
        """Run ``callback()`` in ``delay`` seconds (trio time). Not a checkpoint."""
        return self.call_at(trio.current_time() + delay, callback)

    def call_at(self, when: float, callback: Callable[[], Any]) -> TimerHandle:
        """Run ``callback()`` at trio time ``when``, in the timer task. Not a checkpoint."""
        handle = TimerHandle(when, callback)
        heapq.heappush(self._heap, (when, next(self._seq), handle))
        scope = self._scope
        if scope is not None and when < scope.deadline:
            scope.deadline = when
        return handle

    async def run(self, after_batch: Callable[[], None]) -> None:
        """Fire timers as they come due, forever; ``after_batch()`` follows each batch.

        A callback's exception is logged and the others still run. Cancel the task to stop.
        """
        heap = self._heap
        while True:
            while heap and heap[0][2].cancelled:
                heapq.heappop(heap)
            deadline = heap[0][0] if heap else float("inf")
            with trio.CancelScope(deadline=deadline) as scope:
                self._scope = scope
                await trio.sleep_forever()
            self._scope = None
            now = trio.current_time()
            while heap and heap[0][0] <= now:
                handle = heapq.heappop(heap)[2]
                if handle.cancelled:
                    continue
                try:
                    handle.callback()
                except Exception:
                    logger.exception("timer callback %r raised", handle.callback)
            after_batch()


def run_callback(
    nursery: trio.Nursery,
    callback: Callable[..., Any],
    args: tuple[Any, ...] = (),
    on_done: Callable[[], None] | None = None,
) -> bool:
    """Call ``callback(*args)`` for the application, outside any connection's handling.

    Its exception is logged. An awaitable it returns is awaited in a new task in ``nursery``
    (its exception logged too), and ``on_done()`` is called when that task ends; True if such a
    task was started. Not a checkpoint.
    """
    try:
        result = callback(*args)
    except Exception:
        logger.exception("callback %r raised", callback)
        return False
    if result is None or not inspect.isawaitable(result):
        return False
    nursery.start_soon(_await_callback, callback, result, on_done)
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


class ServerTimer:
    """A timer made by ``IoServer.add_timer`` or ``add_periodic_timer``; ``cancel()`` stops it.

    It starts counting when it is started (at once while the server runs, when ``serve()``
    starts otherwise). A plain callback runs in the timer task; one that returns an awaitable
    (an ``async def``) has it awaited in a task of the server's nursery, and a periodic timer
    skips its ticks while such a run is still going, so runs never overlap. Exceptions are
    logged; a periodic timer keeps going.
    """

    __slots__ = (
        "_busy",
        "_due",
        "_handle",
        "_nursery",
        "_owner",
        "_queue",
        "callback",
        "delay",
        "periodic",
    )

    def __init__(
        self, owner: ServerTimers, delay: float, callback: Callable[[], Any], *, periodic: bool
    ) -> None:
        self.delay = delay
        self.callback = callback
        self.periodic = periodic
        self._owner = owner
        self._queue: TimerQueue | None = None
        self._nursery: trio.Nursery | None = None
        self._handle: TimerHandle | None = None
        self._due = 0.0
        self._busy = False

    @property
    def cancelled(self) -> bool:
        """True once cancelled, or once a one-shot timer has fired."""
        return not self._owner.holds(self)

    def start(self, queue: TimerQueue, nursery: trio.Nursery) -> None:
        """Start counting now; called by :class:`ServerTimers`."""
        self._queue = queue
        self._nursery = nursery
        self._due = trio.current_time() + self.delay
        self._handle = queue.call_at(self._due, self._fire)

    def cancel(self) -> None:
        """Stop the timer; harmless if it already fired or was cancelled. Not a checkpoint.

        An ``async`` run already going is not interrupted.
        """
        self._owner.forget(self)
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None

    def _fire(self) -> None:
        queue, nursery = self._queue, self._nursery
        assert queue is not None and nursery is not None
        if self.periodic:
            # Reschedule first, so that the callback failing or cancelling itself both work.
            now = trio.current_time()
            due = self._due + self.delay
            if due <= now:
                due = now + self.delay  # fell behind (a slow callback): skip, don't catch up
            self._due = due
            self._handle = queue.call_at(due, self._fire)
        else:
            self.cancel()
        if self._busy:
            logger.debug("timer %r: previous run still going; skipping this tick", self.callback)
            return
        self._busy = run_callback(nursery, self.callback, (), self._done)

    def _done(self) -> None:
        self._busy = False


class ServerTimers:
    """The application's timers of one server, from ``add_timer`` until they end.

    Timers added before the server runs wait for :meth:`start_all`; :meth:`stop_all` cancels
    every one and refuses new ones from then on.
    """

    def __init__(self) -> None:
        self._timers: dict[ServerTimer, None] = {}
        self._running: tuple[TimerQueue, trio.Nursery] | None = None
        self.stopped = False

    def add(self, delay: float, callback: Callable[[], Any], *, periodic: bool) -> ServerTimer:
        """A new timer, started at once if the server runs. The caller checks ``stopped``."""
        timer = ServerTimer(self, delay, callback, periodic=periodic)
        self._timers[timer] = None
        if self._running is not None:
            timer.start(*self._running)
        return timer

    def holds(self, timer: ServerTimer) -> bool:
        return timer in self._timers

    def forget(self, timer: ServerTimer) -> None:
        self._timers.pop(timer, None)

    def start_all(self, queue: TimerQueue, nursery: trio.Nursery) -> None:
        self._running = (queue, nursery)
        for timer in list(self._timers):
            timer.start(queue, nursery)

    def stop_all(self) -> None:
        self.stopped = True
        self._running = None
        for timer in list(self._timers):
            timer.cancel()
