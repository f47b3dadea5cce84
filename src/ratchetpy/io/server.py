"""IoServer: the trio I/O layer (Ratchet's ``IoServer``).

It listens, runs one task per connection in a nursery it owns, feeds received bytes to the
component stack, writes what the stack queues, and shuts down gracefully.

Each connection's task reads a chunk, hands it to ``component.on_message`` and flushes the
replies before it waits for the next chunk: handlers run inline and in order, and a slow
``async`` handler only holds up its own connection. TLS (:mod:`ratchetpy.io.tls`) runs inside the
transport, so it uses the same loop.

Beyond connections it gives the application Ratchet's loop services: timers
(:meth:`IoServer.add_timer`, :meth:`IoServer.add_periodic_timer`), a way in from other threads
(:meth:`IoServer.call_soon_threadsafe`) and running totals (:meth:`IoServer.stats`).
"""

from __future__ import annotations

import contextvars
import errno
import itertools
import logging
import os
import signal
import socket
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any, Protocol

import trio

from ..broker import MemoryBroker, MessageBroker, serving_broker
from ..components.base import MaybeAwaitable, guarded, invoke, report_error, shut_down
from ..components.connection import Connection, Timer
from ..exceptions import InvalidStateError, ServerError
from .telemetry import SchedulerLag, process_sample
from .timers import ServerTimers, run_callback
from .tls import TlsConnection, tls_context
from .transport import Hub, TcpConnection
from .workers import Supervisor, WorkerLink, announce, withdraw, worker_command

__all__ = ["IoServer", "ServerComponent", "ServerStats"]

logger = logging.getLogger("ratchetpy.server")

_RECV_SIZE = 65536
# accept() errors that mean "out of resources for now": back off instead of spinning.
_ACCEPT_BACKOFF_ERRNOS = {errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM}


class ServerComponent(Protocol):
    """What :class:`IoServer` drives: a :class:`~ratchetpy.MessageComponent` or a layer such as
    :class:`~ratchetpy.HttpServer`. ``on_message`` receives the raw ``bytes`` read from the socket.

    A component may also define ``on_shutdown(conn, code, reason)`` (declared on
    :class:`~ratchetpy.MessageComponent` and :class:`~ratchetpy.HttpComponent`), called with
    1001 for each open connection when the server shuts down; without it the connection is
    closed.
    """

    def on_open(self, conn: Connection) -> MaybeAwaitable: ...
    def on_message(self, conn: Connection, msg: Any) -> MaybeAwaitable: ...
    def on_close(self, conn: Connection) -> MaybeAwaitable: ...
    def on_error(self, conn: Connection, exc: Exception) -> MaybeAwaitable: ...


@dataclass(frozen=True)
class ServerStats:
    """A snapshot of a server's running totals (:meth:`IoServer.stats`)."""

    #: Connections open now (TLS connections still in their handshake included).
    connections: int
    #: Connections accepted since the server started.
    connections_total: int
    #: Bytes read from clients (after TLS decryption).
    bytes_in: int
    #: Bytes written to clients (before TLS encryption; on TLS counted when encrypted).
    bytes_out: int
    #: WebSocket messages received.
    messages_in: int
    #: WebSocket messages sent (a broadcast counts one per client).
    messages_out: int
    #: Connections closed or dropped for not reading what they were sent.
    slow_consumer_closes: int
    #: Requests refused before or at the WebSocket upgrade.
    handshakes_rejected: int
    #: Seconds since :meth:`IoServer.serve` started (0.0 before; frozen once it returned).
    uptime: float


class IoServer:
    """Serve ``component`` on a TCP port.

    Options (keyword-only):

    ``write_limit``
        Bytes that may queue for one peer before it counts as a slow consumer (default 4 MiB).
        The layer above decides what then happens: WebSocket connections are closed with 1008,
        raw TCP connections are dropped. A connection with more than a quarter of it queued
        stops being read until the peer has taken another eighth, so a client that sends
        without reading slows itself down instead of growing the server's memory, while one
        that reads, however busy its room, is still heard.
    ``shutdown_timeout``
        Seconds that a graceful shutdown waits for connections to finish their closing
        handshakes before dropping the rest (default 5).
    ``close_timeout``
        Seconds a closing connection may take to flush and hang up (default 10).
    ``backlog``
        The listen queue length (default 1024).
    ``ssl_context``
        Serve TLS (``wss://``, ``https://``) with this server-side ``ssl.SSLContext``.
    ``certfile``, ``keyfile``
        Serve TLS with a context made from these PEM files (``keyfile`` may be left out when
        ``certfile`` holds the key too), with the defaults of ``ssl.create_default_context``
        and ALPN ``http/1.1``. Not together with ``ssl_context``. On TLS, ``buffered_amount``
        and the write limit count plaintext not yet encrypted plus ciphertext not yet sent.
    ``tls_handshake_timeout``
        Seconds a client may take to complete the TLS handshake (default 10). A client that
        fails or does not finish it in time is dropped and logged at INFO; the component never
        sees it (``on_open`` follows the handshake). On TLS connections ``conn.secure`` is True.
    ``broker``
        The :class:`~ratchetpy.broker.MessageBroker` that connects this worker to the others
        (default: a :class:`~ratchetpy.broker.MemoryBroker`, one process). :meth:`serve`
        checks it can be reached before it listens (raising
        :class:`~ratchetpy.BrokerUnavailable` if not), runs it while serving, and flushes what
        it has queued after the connections closed, within ``shutdown_timeout``.
    ``reuse_port``
        Bind with ``SO_REUSEPORT``, so that several processes started by a process manager
        (systemd, supervisord, a container runtime) serve one port, each with its own listen
        queue (default False: ``run(workers=N)`` shares one socket instead).
    ``max_connections``
        Open connections at most (default: no limit). At the limit the server stops accepting
        and new connections wait in the listen backlog until one closes. A WARNING is logged
        when the limit is reached, an INFO once the server is below it with nobody waiting.
    ``collect_metrics``
        Measure what metrics need beyond the running totals (default False; ``App`` turns it
        on when a route serves ``app.metrics``): a task in the server's nursery that records
        how late a 100 ms timer fires (:class:`~ratchetpy.io.telemetry.SchedulerLag`), and,
        with other workers, a :meth:`metrics_snapshot` in each announcement, so that one
        scrape of any worker reports them all. Settable until :meth:`serve` starts.

    Errors: the constructor raises ``ValueError`` for contradictory options and
    :class:`ServerError` for certificate files it cannot load. Nothing a client does raises
    out of :meth:`serve`: handler exceptions go to ``on_error``, anything else below the
    handlers costs that one connection (logged).
    """

    def __init__(
        self,
        component: ServerComponent,
        *,
        port: int = 8080,
        address: str = "0.0.0.0",
        write_limit: int = 4 * 2**20,
        shutdown_timeout: float = 5.0,
        close_timeout: float = 10.0,
        backlog: int = 1024,
        ssl_context: ssl.SSLContext | None = None,
        certfile: str | None = None,
        keyfile: str | None = None,
        tls_handshake_timeout: float = 10.0,
        max_connections: int | None = None,
        broker: MessageBroker | None = None,
        reuse_port: bool = False,
        collect_metrics: bool = False,
    ) -> None:
        if max_connections is not None and max_connections < 1:
            raise ValueError("max_connections must be at least 1")
        if tls_handshake_timeout <= 0:
            raise ValueError("tls_handshake_timeout must be positive")
        ssl_context = tls_context(ssl_context, certfile, keyfile)
        self.component = component
        self.address = address
        self.port = port
        self.shutdown_timeout = shutdown_timeout
        self.backlog = backlog
        self.ssl_context = ssl_context
        self.tls_handshake_timeout = tls_handshake_timeout
        self.max_connections = max_connections
        self.reuse_port = reuse_port
        self.collect_metrics = collect_metrics
        # What this worker's metrics are labelled with: its number when a supervisor started
        # it (run() learns it), else its PID.
        self._worker_label = str(os.getpid())
        self.scheduler_lag = SchedulerLag()
        self.broker: MessageBroker = MemoryBroker() if broker is None else broker
        self._hub = Hub(write_limit=write_limit, close_timeout=close_timeout)
        self._ids = itertools.count(1)
        # Every open connection, and whether the component has it (its on_open returned).
        self._connections: dict[TcpConnection, bool] = {}
        self._listener: socket.socket | None = None
        self._shutdown_requested: trio.Event | None = None
        self._all_closed: trio.Event | None = None
        self._stopped: trio.Event | None = None
        self._slot_freed: trio.Event | None = None
        self._at_limit = False
        self._timers = ServerTimers()
        self._trio_token: trio.lowlevel.TrioToken | None = None
        # The context serve() runs its tasks in, for callbacks from other threads.
        self._context = contextvars.copy_context()
        self._started_at: float | None = None
        self._stopped_at: float | None = None

    @classmethod
    def factory(
        cls, component: ServerComponent, port: int = 8080, address: str = "0.0.0.0", **options: Any
    ) -> IoServer:
        """Ratchet's ``IoServer::factory($app, $port, $address)``: make a server; ``run()`` it."""
        return cls(component, port=port, address=address, **options)

    @property
    def connection_count(self) -> int:
        """Connections currently open."""
        return len(self._connections)

    def stats(self) -> ServerStats:
        """The server's running totals now. Not a checkpoint; works before, while and after
        serving, from the server's thread (other threads get a possibly torn snapshot)."""
        c = self._hub.counters
        started = self._started_at
        uptime = 0.0 if started is None else (self._stopped_at or time.monotonic()) - started
        return ServerStats(
            connections=len(self._connections),
            connections_total=c.connections_total,
            bytes_in=c.bytes_in,
            bytes_out=c.bytes_out,
            messages_in=c.messages_in,
            messages_out=c.messages_out,
            slow_consumer_closes=c.slow_consumer_closes,
            handshakes_rejected=c.handshakes_rejected,
            uptime=uptime,
        )

    def metrics_snapshot(self) -> dict[str, Any]:
        """Everything this worker's metrics report, as plain data (what a worker announces to
        the others, and :mod:`ratchetpy.metrics` renders): open connections by kind, the
        running totals, handshakes by status, close codes sent and received, what the WAMP
        routers and publish endpoints count, the broker link, the scheduler lag (with
        ``collect_metrics``) and the process. Not a checkpoint; from the server's thread."""
        c = self._hub.counters
        open_now = len(self._connections)
        sources: dict[str, Any] = {}
        for source in c.sources.values():
            for name, value in source.metrics().items():
                if isinstance(value, int):
                    sources[name] = sources.get(name, 0) + value
                else:
                    merged = sources.setdefault(name, {})
                    for label, count in value.items():
                        merged[label] = merged.get(label, 0) + count
        return {
            "worker": self._worker_label,
            "connections": {
                "websocket": c.websockets_open,
                "http": c.http_open - c.websockets_open,
                "raw": open_now - c.http_open,
            },
            "connections_total": c.connections_total,
            "bytes_in": c.bytes_in,
            "bytes_out": c.bytes_out,
            "messages_in": c.messages_in,
            "messages_out": c.messages_out,
            "slow_consumer_closes": c.slow_consumer_closes,
            "handler_errors": c.handler_errors,
            "handshakes": {str(status): count for status, count in c.handshakes.items()},
            "close_sent": dict(c.close_sent),
            "close_received": dict(c.close_received),
            "sources": sources,
            "broker": {"distributed": self.broker.distributed, **asdict(self.broker.stats())},
            "timers": len(self._hub.timers),
            "scheduler_lag": self.scheduler_lag.snapshot() if self.collect_metrics else None,
            "process": process_sample(),
        }

    # -- timers and other threads (Ratchet's loop->addTimer, addPeriodicTimer) ----------------

    def add_timer(self, delay: float, callback: Callable[[], Any]) -> Timer:
        """Run ``callback()`` once, ``delay`` seconds from now; ``cancel()`` the result to stop it.

        Call it from the server's thread, before :meth:`serve` (the delay then counts from
        when it starts) or while it runs. A plain callback runs in the server's timer task
        and must not block; what it sends is flushed right after. An ``async def`` callback
        runs as a task in the server's nursery. Exceptions are logged with their traceback.
        Timers stop when a graceful shutdown starts (before connections are closed, so a timer
        never writes to closing connections) and when :meth:`serve` ends; an ``async`` run
        still going then is cancelled with the server. Not a checkpoint. Raises
        :class:`~ratchetpy.InvalidStateError` once the server is shutting down or has stopped,
        ``ValueError`` for a negative delay.
        """
        if delay < 0:
            raise ValueError("delay must not be negative")
        return self._add_timer(delay, callback, periodic=False)

    def add_periodic_timer(self, interval: float, callback: Callable[[], Any]) -> Timer:
        """Run ``callback()`` every ``interval`` seconds until cancelled or the server stops.

        As :meth:`add_timer`, and: ticks keep to the schedule (a slow callback makes the timer
        skip ticks, never run them back to back); an exception is logged and the timer goes
        on; an ``async`` callback never overlaps itself: a tick that comes while the previous
        run is still going is skipped. Raises ``ValueError`` unless ``interval`` is positive.
        """
        if not interval > 0:
            raise ValueError("interval must be positive")
        return self._add_timer(interval, callback, periodic=True)

    def _add_timer(self, delay: float, callback: Callable[[], Any], *, periodic: bool) -> Timer:
        if self._timers.stopped:
            raise InvalidStateError("the server is stopping or stopped; it runs no more timers")
        return self._timers.add(delay, callback, periodic=periodic)

    def call_soon_threadsafe(self, callback: Callable[..., Any], *args: Any) -> None:
        """Run ``callback(*args)`` soon in the server's trio thread; callable from any thread.

        The way for other threads to reach connections: ``server.call_soon_threadsafe(
        conn.send, text)``. Returns at once (not a checkpoint). The callback runs outside any
        connection's handling, so what it sends is flushed promptly; if it returns an
        awaitable (an ``async def``), that runs as a task in the server's nursery. Its
        exceptions are logged, never raised to the caller. Raises
        :class:`~ratchetpy.InvalidStateError` if the server is not running; a callback still
        pending when it stops is dropped.
        """
        token = self._trio_token
        if token is None:
            raise InvalidStateError("call_soon_threadsafe() on a server that is not running")

        context = self._context

        def run() -> None:
            nursery = self._hub.nursery
            if self._trio_token is token and nursery is not None:
                # In the server's context, as its handlers run: current_broker() is its broker.
                context.run(run_callback, nursery, callback, args)
            else:
                logger.debug("server stopped; dropping %r", callback)

        try:
            token.run_sync_soon(run)
        except trio.RunFinishedError:
            raise InvalidStateError("call_soon_threadsafe() on a server that stopped") from None

    # -- running ---------------------------------------------------------------------------

    def run(self, *, workers: int | None = None) -> None:
        """Serve until SIGINT or SIGTERM, then shut down gracefully. Blocks.

        The first signal starts a graceful shutdown (stop accepting, close every connection
        properly, flush, wait at most ``shutdown_timeout``); a second one stops at once.

        ``workers=N``: serve with N worker processes on one port instead (see
        :mod:`ratchetpy.io.workers`): this process binds the port, checks the broker, starts
        the program again N times as workers sharing the socket, restarts one that crashes,
        passes SIGTERM/SIGINT on and restarts them one by one on SIGHUP. More than one worker
        needs a distributed ``broker`` (else each would be a server of its own); raises
        :class:`~ratchetpy.ServerError` without one, or when the workers cannot start. In a
        worker (started so), ``run`` serves the inherited socket whatever ``workers`` says.

        Signals reach only the main thread, so in any other thread (a socket server next to a
        Flask development server, say) ``run()`` installs no signal handlers and serves until
        :meth:`shutdown` is called, from another thread through
        ``server.call_soon_threadsafe(server.shutdown)``.
        """
        link = WorkerLink.from_environment()
        if link is None and workers is not None:
            self._supervise(workers)
            return
        # Bind before trio starts, so a busy port raises a plain ServerError here rather than
        # one wrapped in the exception group of the nursery that serve() runs in.
        if link is not None:
            self._worker_label = str(link.index)
        inherited = link.listener() if link is not None else None
        self._listener = inherited if inherited is not None else self._listen()
        try:
            if threading.current_thread() is threading.main_thread():
                trio.run(self._run_until_signalled, link)
            else:
                trio.run(self.serve)
        finally:
            listener, self._listener = self._listener, None
            if listener is not None:  # serve() never ran to close it (a broker was down)
                listener.close()

    def _supervise(self, workers: int) -> None:
        if workers > 1 and not self.broker.distributed:
            raise ServerError(
                f"{workers} workers need a broker (broker='redis://...', --broker): without "
                "one each worker is a server of its own, and a message reaches only the "
                "clients of the worker it was sent on"
            )
        if self.reuse_port and self.port == 0:
            raise ServerError("workers with reuse_port need a port: with port 0 each binds another")
        command = worker_command()
        listener = None if self.reuse_port else self._listen()
        try:
            # Here, once, so that an unreachable Redis is one clear error, not N.
            trio.run(self.broker.check)
            port = self.port if listener is None else listener.getsockname()[1]
            logger.info("listening on %s:%d with %d workers", self.address, port, workers)
            Supervisor(
                command,
                workers=workers,
                listener=listener,
                shutdown_timeout=self.shutdown_timeout,
            ).run()
        finally:
            if listener is not None:
                listener.close()

    async def _run_until_signalled(self, link: WorkerLink | None = None) -> None:
        # Here too, before any nursery: an unreachable broker is raised as itself.
        await self.broker.check()
        with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            async with trio.open_nursery() as nursery:
                await nursery.start(self.serve)
                if link is not None:
                    nursery.start_soon(link.run, self.shutdown)

                async def watch_signals() -> None:
                    async for signum in signals:
                        if (
                            self._shutdown_requested is not None
                            and self._shutdown_requested.is_set()
                        ):
                            logger.warning("second %s: stopping now", signal.Signals(signum).name)
                            nursery.cancel_scope.cancel()
                            return
                        logger.info("%s: shutting down gracefully", signal.Signals(signum).name)
                        self.shutdown()

                nursery.start_soon(watch_signals)
                assert self._stopped is not None
                await self._stopped.wait()
                nursery.cancel_scope.cancel()

    async def serve(self, *, task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED) -> None:
        """Listen and serve until :meth:`shutdown` (graceful) or cancellation (immediate).

        Reports the bound port through ``task_status`` (so ``port=0`` works:
        ``port = await nursery.start(server.serve)``). Raises :class:`~ratchetpy.ServerError`
        if the address cannot be bound, :class:`~ratchetpy.BrokerUnavailable` if the broker
        cannot be reached (before listening), :class:`~ratchetpy.InvalidStateError` if this
        server serves already or did before (make a new one). Cancelling it drops every connection
        without a closing handshake; call :meth:`shutdown` or :meth:`aclose` for a graceful
        stop.
        """
        if self._shutdown_requested is not None:
            raise InvalidStateError("this IoServer is already serving")
        self._shutdown_requested = trio.Event()
        self._stopped = trio.Event()
        listener = self._listener if self._listener is not None else self._listen()
        self._listener = listener
        self.port = listener.getsockname()[1]
        hub = self._hub
        # Every task started below inherits it: current_broker() in a handler is this one's.
        broker_token = serving_broker.set(self.broker)
        self._context = contextvars.copy_context()
        try:
            # Before listening: a worker that cannot reach its broker must not serve deaf.
            await self.broker.check()
            async with trio.open_nursery() as nursery:
                await nursery.start(self.broker.run)
                hub.nursery = nursery
                self._trio_token = trio.lowlevel.current_trio_token()
                self._started_at = time.monotonic()
                self._timers.start_all(hub.timers, nursery)
                nursery.start_soon(hub.run_flusher)
                nursery.start_soon(hub.timers.run, hub.flush_dirty)
                if self.collect_metrics:
                    nursery.start_soon(self.scheduler_lag.run)
                announcing = trio.CancelScope()
                if self.broker.distributed:  # listed among the workers before serving: what
                    # it owns (WAMP registrations) is tied to that announcement
                    await nursery.start(announce, self.broker, self.info, announcing)
                nursery.start_soon(self._accept_loop, listener, nursery)
                tls = " (TLS)" if self.ssl_context is not None else ""
                logger.info("listening on %s:%d%s", self.address, self.port, tls)
                task_status.started(self.port)
                await self._shutdown_requested.wait()
                await self._graceful_shutdown()
                # What the connections' last handlers published still goes out.
                unsent = await self.broker.flush(self.shutdown_timeout)
                if unsent:
                    logger.warning("shutdown: %d publications to other workers not sent", unsent)
                if self.broker.distributed:
                    announcing.cancel()
                    await withdraw(self.broker)
                nursery.cancel_scope.cancel()
        finally:
            serving_broker.reset(broker_token)
            self._trio_token = None
            self._timers.stop_all()
            self._close_listener()
            for conn in list(self._connections):
                conn.abort()
            if self._started_at is not None:
                self._stopped_at = time.monotonic()
            self._stopped.set()

    def info(self) -> dict[str, Any]:
        """What this worker announces to the others: where it runs, whether its broker can pass
        messages on, and :meth:`stats`."""
        return {
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "address": f"{self.address}:{self.port}",
            "broker": "ok" if self.broker.healthy else "unavailable",
            **asdict(self.stats()),
            **({"metrics": self.metrics_snapshot()} if self.collect_metrics else {}),
        }

    def shutdown(self) -> None:
        """Start a graceful shutdown; :meth:`serve` returns when it is done. Not a checkpoint.

        Raises :class:`~ratchetpy.InvalidStateError` before :meth:`serve` has started."""
        if self._shutdown_requested is None:
            raise InvalidStateError("shutdown() called on a server that is not serving")
        self._shutdown_requested.set()

    async def aclose(self) -> None:
        """Shut down gracefully and wait until :meth:`serve` has returned. A checkpoint."""
        self.shutdown()
        assert self._stopped is not None
        await self._stopped.wait()

    # -- internals -------------------------------------------------------------------------

    def _listen(self) -> socket.socket:
        try:
            infos = socket.getaddrinfo(
                self.address or None, self.port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
            )
            family, type_, proto, _, sockaddr = infos[0]
            sock = socket.socket(family, type_, proto)
        except OSError as exc:
            raise ServerError(f"cannot listen on {self.address}:{self.port}: {exc}") from exc
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if self.reuse_port:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            sock.bind(sockaddr)
            sock.listen(self.backlog)
        except OSError as exc:
            sock.close()
            raise ServerError(f"cannot listen on {self.address}:{self.port}: {exc}") from exc
        sock.setblocking(False)
        return sock

    def _close_listener(self) -> None:
        listener = self._listener
        if listener is not None:
            self._listener = None
            trio.lowlevel.notify_closing(listener)
            listener.close()

    async def _accept_loop(self, listener: socket.socket, nursery: trio.Nursery) -> None:
        limit = self.max_connections
        connections = self._connections
        counters = self._hub.counters
        context = self.ssl_context
        while self._listener is listener:
            if limit is not None and len(connections) >= limit:
                # Then accept without waiting: whoever waits in the backlog comes first, and
                # an empty backlog ends the episode.
                await self._wait_for_a_slot(limit)
            else:
                try:
                    await trio.lowlevel.wait_readable(listener)
                except (trio.ClosedResourceError, OSError, ValueError):
                    return  # closed by shutdown while (or just before) we waited
            if self._listener is not listener:
                return
            # Take every pending connection before waiting again: one wakeup, many accepts.
            while limit is None or len(connections) < limit:
                try:
                    sock, addr = listener.accept()
                except BlockingIOError:
                    if self._at_limit:
                        self._at_limit = False
                        open_now = len(connections)
                        logger.info("below the connection limit (%d open); accepting", open_now)
                    break
                except OSError as exc:
                    if exc.errno in _ACCEPT_BACKOFF_ERRNOS:
                        logger.error("accept failed (%s); pausing accepts for 100 ms", exc)
                        await trio.sleep(0.1)
                    break
                sock.setblocking(False)
                if sock.family != socket.AF_UNIX:
                    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                conn: TcpConnection
                if context is None:
                    conn = TcpConnection(self._hub, sock, next(self._ids), str(addr[0]))
                else:
                    conn = TlsConnection(self._hub, sock, next(self._ids), str(addr[0]), context)
                counters.connections_total += 1
                connections[conn] = False
                nursery.start_soon(self._serve_connection, conn, sock)

    async def _wait_for_a_slot(self, limit: int) -> None:
        if not self._at_limit:
            # Once per episode, not per connection: the INFO in the accept loop ends it.
            self._at_limit = True
            logger.warning(
                "connection limit reached (%d open); new connections wait in the listen backlog",
                limit,
            )
        self._slot_freed = trio.Event()
        await self._slot_freed.wait()

    def _forget(self, conn: TcpConnection) -> None:
        self._connections.pop(conn, None)
        if self._slot_freed is not None:
            self._slot_freed.set()
            self._slot_freed = None
        if not self._connections and self._all_closed is not None:
            self._all_closed.set()

    async def _serve_connection(self, conn: TcpConnection, sock: socket.socket) -> None:
        hub = self._hub
        app = self.component
        on_message = app.on_message
        counters = hub.counters
        pause_at = hub.write_limit // 4
        resume_after = pause_at // 2
        recv: Callable[[int], bytes] = sock.recv
        early = b""
        if conn.aborted:  # by a shutdown, before this task started
            self._forget(conn)
            return
        if isinstance(conn, TlsConnection):
            handshake_data = await conn.open(self.tls_handshake_timeout)
            if handshake_data is None:
                self._forget(conn)
                return
            early = handshake_data
            recv = conn.recv
        logger.debug("connection #%d from %s opened", conn.resource_id, conn.remote_address)
        try:
            await self._call(conn, app.on_open, conn)
            self._connections[conn] = True
            if self._shutdown_requested is not None and self._shutdown_requested.is_set():
                # Accepted before the listener closed: served like the others, with a goodbye
                # (a WebSocket being opened gets its handshake, then 1001), never just cut.
                shut_down(app, conn)
            if early and not conn.closed:
                counters.bytes_in += len(early)
                await self._call(conn, on_message, conn, early)
            while not conn.finished:
                if conn.buffered_amount > pause_at:
                    # What we send is not being read: read no more until the peer takes some
                    # of it (see wait_taken for why not until all of it).
                    await conn.wait_taken(resume_after)
                if conn.aborted:
                    break
                try:
                    await trio.lowlevel.wait_readable(sock)
                except (trio.ClosedResourceError, OSError, ValueError):
                    break  # aborted by another task (a timer, a slow-consumer policy, shutdown)
                try:
                    data = recv(_RECV_SIZE)
                except BlockingIOError:
                    continue
                except OSError as exc:
                    logger.debug("connection #%d: read failed: %s", conn.resource_id, exc)
                    break
                if not data:
                    break
                counters.bytes_in += len(data)
                if conn.closed:
                    continue  # closing: the layers above have nothing more to read
                # _call() inlined: this runs once per chunk read, and the coroutine it would
                # create per call is a measurable share of a small echo's cost.
                hub.handling(conn)
                try:
                    result = on_message(conn, data)
                except Exception as exc:
                    result = report_error(self.component, conn, exc)
                hub.handled()
                if result is not None:
                    await guarded(self.component, conn, result)
        except trio.ClosedResourceError:
            pass
        except Exception:
            # A bug below the user's handlers (theirs go to on_error): lose this connection,
            # not the server.
            logger.exception("internal error on connection #%d; dropping it", conn.resource_id)
        finally:
            conn.finish()
            logger.debug("connection #%d from %s closed", conn.resource_id, conn.remote_address)
            with trio.CancelScope(
                shield=True, deadline=trio.current_time() + self.shutdown_timeout
            ):
                await self._call(conn, app.on_close, conn)
            hub.flush_dirty()
            self._forget(conn)

    async def _call(self, conn: TcpConnection, handler: Any, *args: Any) -> None:
        """Run a handler that may be async, sending its exceptions to ``on_error``; flush after."""
        hub = self._hub
        hub.handling(conn)
        pending = invoke(self.component, conn, handler, *args)
        hub.handled()
        if pending is not None:
            await pending

    async def _graceful_shutdown(self) -> None:
        self._close_listener()
        self._timers.stop_all()
        logger.info("shutting down: closing %d connections", len(self._connections))
        if not self._connections:
            return
        self._all_closed = trio.Event()
        for conn, opened in list(self._connections.items()):
            if opened:
                shut_down(self.component, conn)
            # Else its on_open has not returned yet (or a TLS handshake is under way): its
            # task says goodbye once it has, within the same deadline.
        self._hub.flush_all()
        with trio.move_on_after(self.shutdown_timeout) as scope:
            await self._all_closed.wait()
        if scope.cancelled_caught:
            logger.warning(
                "shutdown: %d connections did not close within %.1f s; dropping them",
                len(self._connections),
                self.shutdown_timeout,
            )
