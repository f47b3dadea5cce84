"""IoServer: the trio I/O layer (Ratchet's ``IoServer``).

It listens, runs one task per connection in a nursery it owns, feeds received bytes to the
component stack, writes what the stack queues, and shuts down gracefully.

Each connection's task reads a chunk, hands it to ``component.on_message`` and flushes the
replies before it waits for the next chunk: handlers run inline and in order, and a slow
``async`` handler only holds up its own connection.
"""

from __future__ import annotations

import errno
import itertools
import logging
import signal
import socket
from typing import Any, Protocol

import trio

from ._transport import Hub, TcpConnection
from .component import MaybeAwaitable, guarded, report_error
from .connection import Connection
from .exceptions import ConnectionClosed, ServerError

__all__ = ["IoServer", "ServerComponent"]

logger = logging.getLogger("ratchetpy.server")

_RECV_SIZE = 65536
# accept() errors that mean "out of resources for now": back off instead of spinning.
_ACCEPT_BACKOFF_ERRNOS = {errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM}


class ServerComponent(Protocol):
    """What :class:`IoServer` drives: a :class:`~ratchetpy.MessageComponent` or a layer such as
    :class:`~ratchetpy.HttpServer`. ``on_message`` receives the raw ``bytes`` read from the socket.

    A component may also define ``on_shutdown(conn)``, called for each open connection when the
    server shuts down (WsServer sends close 1001 there); without it the connection is closed.
    """

    def on_open(self, conn: Connection) -> MaybeAwaitable: ...
    def on_message(self, conn: Connection, msg: Any) -> MaybeAwaitable: ...
    def on_close(self, conn: Connection) -> MaybeAwaitable: ...
    def on_error(self, conn: Connection, exc: Exception) -> MaybeAwaitable: ...


class IoServer:
    """Serve ``component`` on a TCP port.

    Options (keyword-only):

    ``write_limit``
        Bytes that may queue for one peer before it counts as a slow consumer (default 4 MiB).
        The layer above decides what then happens: WebSocket connections are closed with 1008,
        raw TCP connections are dropped. A connection whose own replies back up past a quarter
        of it stops being read until they are written, so a client that sends without reading
        slows itself down instead of growing the server's memory.
    ``shutdown_timeout``
        Seconds that a graceful shutdown waits for connections to finish their closing
        handshakes before dropping the rest (default 5).
    ``close_timeout``
        Seconds a closing connection may take to flush and hang up (default 10).
    ``backlog``
        The listen queue length (default 1024).
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
    ) -> None:
        self.component = component
        self.address = address
        self.port = port
        self.shutdown_timeout = shutdown_timeout
        self.backlog = backlog
        self._hub = Hub(write_limit=write_limit, close_timeout=close_timeout)
        self._ids = itertools.count(1)
        self._connections: set[TcpConnection] = set()
        self._listener: socket.socket | None = None
        self._shutdown_requested: trio.Event | None = None
        self._all_closed: trio.Event | None = None
        self._stopped: trio.Event | None = None

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

    # -- running ---------------------------------------------------------------------------

    def run(self) -> None:
        """Serve until SIGINT or SIGTERM, then shut down gracefully. Blocks.

        The first signal starts a graceful shutdown (stop accepting, close every connection
        properly, flush, wait at most ``shutdown_timeout``); a second one stops at once.
        """
        # Bind before trio starts, so a busy port raises a plain ServerError here rather than
        # one wrapped in the exception group of the nursery that serve() runs in.
        self._listener = self._listen()
        trio.run(self._run_until_signalled)

    async def _run_until_signalled(self) -> None:
        with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            async with trio.open_nursery() as nursery:
                await nursery.start(self.serve)

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
        ``port = await nursery.start(server.serve)``). Raises :class:`ServerError` if the
        address cannot be bound. Cancelling it drops every connection without a closing
        handshake; call :meth:`shutdown` or :meth:`aclose` for a graceful stop.
        """
        if self._shutdown_requested is not None:
            raise ServerError("this IoServer is already serving")
        self._shutdown_requested = trio.Event()
        self._stopped = trio.Event()
        listener = self._listener if self._listener is not None else self._listen()
        self._listener = listener
        self.port = listener.getsockname()[1]
        hub = self._hub
        try:
            async with trio.open_nursery() as nursery:
                hub.nursery = nursery
                nursery.start_soon(hub.run_flusher)
                nursery.start_soon(hub.run_timers)
                nursery.start_soon(self._accept_loop, listener, nursery)
                logger.info("listening on %s:%d", self.address, self.port)
                task_status.started(self.port)
                await self._shutdown_requested.wait()
                await self._graceful_shutdown()
                nursery.cancel_scope.cancel()
        finally:
            self._close_listener()
            for conn in list(self._connections):
                conn.abort()
            self._stopped.set()

    def shutdown(self) -> None:
        """Start a graceful shutdown; :meth:`serve` returns when it is done. Not a checkpoint."""
        if self._shutdown_requested is None:
            raise ServerError("shutdown() called on a server that is not serving")
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
        while self._listener is listener:
            try:
                await trio.lowlevel.wait_readable(listener)
            except (trio.ClosedResourceError, OSError, ValueError):
                return  # closed by shutdown while (or just before) we waited
            # Take every pending connection before waiting again: one wakeup, many accepts.
            while True:
                try:
                    sock, addr = listener.accept()
                except BlockingIOError:
                    break
                except OSError as exc:
                    if exc.errno in _ACCEPT_BACKOFF_ERRNOS:
                        logger.error("accept failed (%s); pausing accepts for 100 ms", exc)
                        await trio.sleep(0.1)
                    break
                sock.setblocking(False)
                if sock.family != socket.AF_UNIX:
                    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                conn = TcpConnection(self._hub, sock, next(self._ids), str(addr[0]))
                self._connections.add(conn)
                nursery.start_soon(self._serve_connection, conn, sock)

    async def _serve_connection(self, conn: TcpConnection, sock: socket.socket) -> None:
        hub = self._hub
        app = self.component
        on_message = app.on_message
        pause_at = hub.write_limit // 4
        recv = sock.recv
        logger.debug("connection #%d from %s opened", conn.resource_id, conn.remote_address)
        try:
            await self._call(conn, app.on_open, conn)
            while not conn._finished:
                if conn._out_size > pause_at:
                    # Our replies are not being read: stop reading until they are written.
                    try:
                        await conn.drain()
                    except ConnectionClosed:
                        break
                if conn._sock is None:
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
                if conn._state:
                    continue  # closing: the layers above have nothing more to read
                # _call() inlined: this runs once per chunk read, and the coroutine it would
                # create per call is a measurable share of a small echo's cost.
                hub.current = conn
                try:
                    result = on_message(conn, data)
                except Exception as exc:
                    result = report_error(self.component, conn, exc)
                hub.current = None
                if hub.dirty:
                    hub.flush_all()
                if result is not None:
                    await guarded(self.component, conn, result)
        except trio.ClosedResourceError:
            pass
        except Exception:
            # A bug below the user's handlers (theirs go to on_error): lose this connection,
            # not the server.
            logger.exception("internal error on connection #%d; dropping it", conn.resource_id)
        finally:
            hub.current = None
            conn._finish()
            self._connections.discard(conn)
            logger.debug("connection #%d from %s closed", conn.resource_id, conn.remote_address)
            with trio.CancelScope(
                shield=True, deadline=trio.current_time() + self.shutdown_timeout
            ):
                await self._call(conn, app.on_close, conn)
            if hub.dirty:
                hub.flush_all()
            if not self._connections and self._all_closed is not None:
                self._all_closed.set()

    async def _call(self, conn: TcpConnection, handler: Any, *args: Any) -> None:
        """Run a handler that may be async, sending its exceptions to ``on_error``; flush after."""
        hub = self._hub
        hub.current = conn
        try:
            result = handler(*args)
        except Exception as exc:
            result = report_error(self.component, conn, exc)
        hub.current = None
        if hub.dirty:
            hub.flush_all()
        if result is not None:
            await guarded(self.component, conn, result)

    async def _graceful_shutdown(self) -> None:
        self._close_listener()
        logger.info("shutting down: closing %d connections", len(self._connections))
        if not self._connections:
            return
        self._all_closed = trio.Event()
        on_shutdown = getattr(self.component, "on_shutdown", None)
        for conn in list(self._connections):
            if on_shutdown is None:
                conn.close(1001, "server shutting down")
                continue
            try:
                on_shutdown(conn)
            except Exception:
                logger.exception("on_shutdown raised for connection #%d", conn.resource_id)
                conn.close(1001, "server shutting down")
        self._hub.flush_all()
        with trio.move_on_after(self.shutdown_timeout) as scope:
            await self._all_closed.wait()
        if scope.cancelled_caught:
            logger.warning(
                "shutdown: %d connections did not close within %.1f s; dropping them",
                len(self._connections),
                self.shutdown_timeout,
            )
