"""MemoryServer: a ratchetpy server without sockets, for tests.

It drives a component stack exactly as :class:`~ratchetpy.IoServer` does (one task per
connection, handlers called inline and in order, ``async`` handlers awaited before the next
bytes are read, ``on_close`` when the connection is gone, ``on_shutdown`` and a bounded wait on
a graceful shutdown) over :mod:`in-memory connections <ratchetpy.testing.memory>`. Its timers
(``call_later``: request timeouts, keepalive pings, close timeouts) run on trio's clock, so a
test that uses trio's ``MockClock`` (pytest-trio's ``autojump_clock`` fixture) sees a
ten-second timeout pass at once.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import Any, Literal

import trio
import trio.testing

from ..app import App
from ..broker import MemoryBroker, serving_broker
from ..client import Session, open_session
from ..components.base import MessageComponent, invoke, shut_down
from ..components.connection import Counters
from ..components.http_server import HttpServer
from ..components.ws_server import WsServer
from ..exceptions import InvalidStateError
from ..io.server import IoServer
from ..io.timers import TimerQueue
from ..wamp.component import WampComponent
from ..wamp.server import WampServer
from .clients import Response, WebSocketClient, handshake, http_exchange
from .memory import MemoryStream, MemoryTransport

__all__ = ["MemoryServer", "open_memory_server"]

logger = logging.getLogger("ratchetpy.testing")


def _stack(app: Any, raw: bool) -> Any:
    """What IoServer would drive for ``app``."""
    if isinstance(app, App):
        return app.http
    if isinstance(app, IoServer):
        return app.component
    if raw:
        return app
    if isinstance(app, WampComponent):
        return HttpServer(WsServer(WampServer(app)))
    if isinstance(app, MessageComponent):
        return HttpServer(WsServer(app))
    return app


class MemoryServer:
    """Serves ``app`` in memory; made by :func:`open_memory_server`.

    ``connect()`` opens a raw connection; :meth:`websocket`, :meth:`request` and
    :meth:`wamp` (in :mod:`ratchetpy.testing`'s clients) speak the protocols over one.
    ``counters`` are the server's running totals (bytes, messages, refusals), ``connections``
    the connections open now.
    """

    def __init__(
        self,
        app: Any,
        nursery: trio.Nursery,
        *,
        raw: bool,
        write_limit: int,
        close_timeout: float,
        shutdown_timeout: float,
    ) -> None:
        self.app = app
        self.component = _stack(app, raw)
        self.counters = Counters()
        self.write_limit = write_limit
        self.close_timeout = close_timeout
        self.shutdown_timeout = shutdown_timeout
        self._nursery = nursery
        #: One process in memory: a :class:`~ratchetpy.Group` finds this broker as it would
        #: an IoServer's.
        self.broker = MemoryBroker()
        self._timers = TimerQueue()
        self._ids = itertools.count(1)
        self._open: dict[MemoryTransport, bool] = {}  # -> on_open has run
        self._all_closed = trio.Event()
        self._all_closed.set()
        self._stopping = False
        nursery.start_soon(self._run_timers)

    @property
    def connections(self) -> int:
        """Connections open now."""
        return len(self._open)

    async def connect(
        self, *, remote_address: str = "127.0.0.1", secure: bool = False
    ) -> MemoryStream:
        """Open a connection and return the client's end, a ``trio`` stream of raw bytes.

        ``remote_address`` is what the server sees as the client's address
        (``conn.remote_address``); ``secure=True`` makes it a TLS connection as far as the
        stack can tell (``conn.secure``, ``request.scheme == "https"``). A checkpoint: the
        component's ``on_open`` has run (or awaits something) when it returns.
        """
        if self._stopping:
            raise InvalidStateError("the memory server is shutting down")
        transport = MemoryTransport(
            next(self._ids),
            remote_address,
            counters=self.counters,
            timers=self._timers,
            write_limit=self.write_limit,
            close_timeout=self.close_timeout,
            secure=secure,
        )
        self.counters.connections_total += 1
        self._open[transport] = False
        self._all_closed = trio.Event()
        opened = trio.Event()
        self._nursery.start_soon(self._serve, transport, opened)
        await opened.wait()
        return transport.stream

    async def connect_websocket(
        self,
        path: str = "/",
        *,
        headers: Iterable[tuple[str, str]] = (),
        origin: str | None = None,
        cookies: Mapping[str, str] | None = None,
        subprotocols: Sequence[str] = (),
        compression: bool = False,
        host: str = "localhost",
        remote_address: str = "127.0.0.1",
        secure: bool = False,
    ) -> WebSocketClient:
        """Open a WebSocket to ``path`` and return its client (close it, or use
        :meth:`websocket` for a block).

        ``headers`` go with the handshake, plus ``Origin`` and ``Cookie`` from ``origin`` and
        ``cookies``; ``subprotocols`` are offered in that order; ``compression=True`` offers
        permessage-deflate. Raises :class:`~ratchetpy.HandshakeRefused` (``status``,
        ``headers``, ``body``) when the server answers with an HTTP status instead.
        """
        stream = await self.connect(remote_address=remote_address, secure=secure)
        try:
            return await handshake(
                stream,
                path,
                host=host,
                headers=headers,
                origin=origin,
                cookies=cookies,
                subprotocols=subprotocols,
                compression=compression,
            )
        except BaseException:
            await stream.aclose()
            raise

    @asynccontextmanager
    async def websocket(self, path: str = "/", **options: Any) -> AsyncIterator[WebSocketClient]:
        """:meth:`connect_websocket` for the block, closed (1000) at its end if still open."""
        client = await self.connect_websocket(path, **options)
        async with client:
            yield client

    async def request(
        self,
        method: str,
        target: str = "/",
        *,
        headers: Iterable[tuple[str, str]] = (),
        body: bytes | str = b"",
        origin: str | None = None,
        cookies: Mapping[str, str] | None = None,
        host: str = "localhost",
        remote_address: str = "127.0.0.1",
        secure: bool = False,
    ) -> Response:
        """Send one HTTP request on a connection of its own and return the response."""
        stream = await self.connect(remote_address=remote_address, secure=secure)
        return await http_exchange(
            stream,
            method,
            target,
            host=host,
            headers=headers,
            body=body.encode() if isinstance(body, str) else body,
            origin=origin,
            cookies=cookies,
        )

    async def get(self, target: str = "/", **options: Any) -> Response:
        """``request("GET", target, ...)``."""
        return await self.request("GET", target, **options)

    @asynccontextmanager
    async def wamp(
        self,
        path: str = "/",
        *,
        realm: str = "realm1",
        serializer: Literal["json", "msgpack"] = "json",
        headers: Iterable[tuple[str, str]] = (),
        host: str = "localhost",
        remote_address: str = "127.0.0.1",
    ) -> AsyncIterator[Session]:
        """A WAMP session (:class:`ratchetpy.client.Session`) joined to ``realm`` for the
        block: subscribe, publish, register and call as over a real socket."""
        stream = await self.connect(remote_address=remote_address)
        url = f"ws://{host}{path}"
        async with open_session(
            url, realm, serializer=serializer, headers=headers, stream=stream
        ) as session:
            yield session

    async def settle(self) -> None:
        """Let the server run until every task waits (for the client, a timer or I/O): what
        the client sent so far has been handled. A checkpoint."""
        await trio.testing.wait_all_tasks_blocked()

    def shutdown(self) -> None:
        """Start a graceful shutdown (see :meth:`aclose`) and return at once, so that the test
        can read what the clients are told meanwhile. Not a checkpoint."""
        if not self._stopping:
            self._nursery.start_soon(self.aclose)

    async def aclose(self) -> None:
        """Shut down gracefully, as :meth:`IoServer.shutdown` does: every connection gets the
        component's ``on_shutdown`` (1001), then the server waits ``shutdown_timeout`` seconds
        at most for them to close and drops the rest. A checkpoint; returns when every
        connection is gone. Clients that should hear their 1001 must be read meanwhile (see
        :meth:`shutdown`)."""
        await self._shut_down(clients_answer=True)

    async def _shut_down(self, *, clients_answer: bool) -> None:
        if self._stopping:
            await self._all_closed.wait()
            return
        self._stopping = True
        for transport, opened in list(self._open.items()):
            if opened:
                shut_down(self.component, transport)
            else:
                transport.abort()
        if not clients_answer:
            # The test is over and nobody reads the clients' ends any more: hang them up, so
            # that the server's on_close handlers run now rather than at the timeout.
            for transport in list(self._open):
                transport.stream.hang_up()
        with trio.move_on_after(self.shutdown_timeout):
            await self._all_closed.wait()
        for transport in list(self._open):
            transport.abort()
        await self._all_closed.wait()

    # -- one task per connection, as in IoServer -------------------------------------------

    async def _run_timers(self) -> None:
        serving_broker.set(self.broker)  # in this task's own context, as for _serve
        await self._timers.run(_nothing)

    async def _serve(self, transport: MemoryTransport, opened: trio.Event) -> None:
        serving_broker.set(self.broker)  # this task's context is its own: nothing to reset
        app = self.component
        pause_at = self.write_limit // 4
        resume_after = pause_at // 2
        try:
            self._open[transport] = True
            await self._call(transport, app.on_open, transport, on_first_await=opened)
            opened.set()
            while not transport.finished:
                if transport.buffered_amount > pause_at:
                    # What we send is not being read: read no more until the client takes
                    # some of it, as IoServer does.
                    await transport.wait_taken(resume_after)
                data = await transport.receive()
                if not data:
                    break
                self.counters.bytes_in += len(data)
                if transport.closed:
                    continue  # closing: the layers above have nothing more to read
                await self._call(transport, app.on_message, transport, data)
        except Exception:
            logger.exception("internal error on connection #%d; dropping it", transport.resource_id)
        finally:
            opened.set()
            transport.finish()
            with trio.CancelScope(shield=True) as scope:
                scope.deadline = trio.current_time() + self.shutdown_timeout
                await self._call(transport, app.on_close, transport)
            del self._open[transport]
            if not self._open:
                self._all_closed.set()

    async def _call(
        self, transport: MemoryTransport, handler: Any, *args: Any, on_first_await: Any = None
    ) -> None:
        pending = invoke(self.component, transport, handler, *args)
        if pending is not None:
            if on_first_await is not None:
                on_first_await.set()  # connect() returns while an async on_open still runs
            await pending


def _nothing() -> None:
    """After a batch of timers: nothing to flush, in memory writes arrive at once."""


@asynccontextmanager
async def open_memory_server(
    app: Any,
    *,
    raw: bool = False,
    write_limit: int = 4 * 2**20,
    close_timeout: float = 10.0,
    shutdown_timeout: float = 5.0,
) -> AsyncIterator[MemoryServer]:
    """Serve ``app`` in memory for the block, then shut it down gracefully (``on_shutdown``
    for every connection still open, whose clients are then hung up: nobody reads them once
    the block is over).

    ``app`` is what you would serve for real: an :class:`~ratchetpy.App`, an
    :class:`~ratchetpy.IoServer`, a stack (``HttpServer(...)``), or a single
    :class:`~ratchetpy.MessageComponent` or :class:`~ratchetpy.WampComponent`, which is served
    over WebSocket on every path (``HttpServer(WsServer(...))``) unless ``raw=True`` asks for a
    raw TCP component (Ratchet's telnet chat). ``write_limit``, ``close_timeout`` and
    ``shutdown_timeout`` are :class:`~ratchetpy.IoServer`'s options.

    Exceptions from the block come out as they are; the server's own tasks never raise (a
    component's errors go to its ``on_error``, as on a real server).
    """
    body_error: BaseException | None = None
    async with trio.open_nursery() as nursery:
        server = MemoryServer(
            app,
            nursery,
            raw=raw,
            write_limit=write_limit,
            close_timeout=close_timeout,
            shutdown_timeout=shutdown_timeout,
        )
        try:
            yield server
        except Exception as exc:
            # Raised after the nursery, so that it is not wrapped in an exception group.
            body_error = exc
        finally:
            with trio.CancelScope(shield=True):
                await server._shut_down(clients_answer=False)
            nursery.cancel_scope.cancel()
    if body_error is not None:
        raise body_error
