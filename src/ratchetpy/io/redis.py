"""A Redis connection for trio: commands pipelined on one ordered connection.

No maintained Redis client runs reliably under trio, and the broker between worker processes
needs exactly one thing from Redis to be right: order. So this is ours, small, on hiredis'
sans-IO parser (:mod:`ratchetpy.protocol.resp`):

.. code-block:: python

    async with await RedisConnection.open("redis://127.0.0.1:6379/0") as redis:
        await redis.execute("PUBLISH", "room", b"hello")          # -> receivers
        pong, n = await redis.execute_many([("PING",), ("DBSIZE",)])

One connection, no pool (a pool reorders): commands go out in the order ``execute`` is
called, each as soon as it is called (pipelining: a caller does not wait for the replies of
the commands before its own), and replies are matched to them in order. No background task:
whichever caller is waiting for the oldest reply reads the socket and hands out the replies it
finds, so the connection runs inside the tasks that use it and a cancelled caller loses only
its own answer.

Errors: :class:`~ratchetpy.RedisReplyError` when Redis refuses one command (the connection goes
on); :class:`~ratchetpy.BrokerUnavailable` when it cannot be reached or the connection is lost
(every command under way fails with it, and so does every later one: open a new connection);
:class:`~ratchetpy.RedisProtocolError` when it sends what is not RESP (the connection is closed).
"""

from __future__ import annotations

import logging
import random
import ssl
from collections import deque
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Any, TypeVar

import trio

from ..exceptions import BrokerUnavailable, RedisProtocolError, RedisReplyError
from ..protocol.redis_url import RedisAddress
from ..protocol.resp import Arg, RespReader, encode_command

__all__ = ["RedisConnection", "call_logged", "receive_batch", "reopen"]

logger = logging.getLogger("ratchetpy.broker")

_T = TypeVar("_T")

_RECV_SIZE = 65536


class _Reply:
    """The slot of one command under way: filled with its reply, or failed."""

    __slots__ = ("command", "done", "value")

    def __init__(self, command: str) -> None:
        self.command = command
        self.done = False
        self.value: Any = None


class RedisConnection:
    """One open connection to a Redis server. Made by :meth:`open`; an async context manager
    that closes it.

    ``max_in_flight`` bounds the commands sent and not yet answered: past it, ``execute``
    waits for replies before sending (a slow Redis holds up its callers instead of growing a
    queue without bound).
    """

    def __init__(
        self, stream: trio.abc.Stream, address: RedisAddress, *, max_in_flight: int = 10_000
    ) -> None:
        self.address = address
        self._stream = stream
        self._reader = RespReader()
        self._pending: deque[_Reply] = deque()
        self._send_lock = trio.StrictFIFOLock()  # who sends first is answered first
        self._receive_lock = trio.StrictFIFOLock()
        self._answered = trio.Event()  # set (and replaced) whenever replies were handed out
        self._in_flight = trio.Semaphore(max_in_flight)
        self.max_in_flight = max_in_flight
        self._broken: BrokerUnavailable | RedisProtocolError | None = None

    @classmethod
    async def open(
        cls,
        address: RedisAddress | str,
        *,
        connect_timeout: float = 5.0,
        ssl_context: ssl.SSLContext | None = None,
        client_name: str | None = None,
        max_in_flight: int = 10_000,
    ) -> RedisConnection:
        """Connect, log in (``AUTH``), pick the db (``SELECT``) and name the connection
        (``CLIENT SETNAME``) as ``address`` says. A checkpoint.

        Raises :class:`~ratchetpy.BrokerUnavailable` if the server cannot be reached within
        ``connect_timeout`` seconds, :class:`~ratchetpy.RedisReplyError` if it refuses the
        login (``WRONGPASS``, ``NOAUTH``) or the db, ValueError for a URL that is not one.
        """
        if isinstance(address, str):
            address = RedisAddress.parse(address)
        where = address.describe()
        try:
            with trio.fail_after(connect_timeout):
                stream = await _connect(address, ssl_context)
        except trio.TooSlowError:
            raise BrokerUnavailable(
                f"cannot connect to {where}: no answer within {connect_timeout:g} s"
            ) from None
        except (OSError, trio.BrokenResourceError) as exc:
            raise BrokerUnavailable(f"cannot connect to {where}: {exc}") from None
        connection = cls(stream, address, max_in_flight=max_in_flight)
        setup: list[tuple[Arg, ...]] = []
        if address.password is not None:
            if address.username:
                setup.append(("AUTH", address.username, address.password))
            else:
                setup.append(("AUTH", address.password))
        if address.db:
            setup.append(("SELECT", address.db))
        if client_name:
            setup.append(("CLIENT", "SETNAME", client_name))
        try:
            with trio.fail_after(connect_timeout):
                await connection.execute_many(setup)
        except BaseException as exc:
            await connection.aclose()
            if isinstance(exc, trio.TooSlowError):
                raise BrokerUnavailable(
                    f"{where} accepted the connection but did not answer within "
                    f"{connect_timeout:g} s"
                ) from None
            raise
        return connection

    async def __aenter__(self) -> RedisConnection:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    @property
    def broken(self) -> bool:
        """True once the connection is lost or closed: every command fails from then on."""
        return self._broken is not None

    async def execute(self, *args: Arg) -> Any:
        """Send one command and return its reply (``bytes``, ``int``, ``None`` or a list).
        A checkpoint. Raises :class:`~ratchetpy.RedisReplyError` for an error reply."""
        (reply,) = await self.execute_many([args])
        return reply

    async def execute_many(self, commands: Iterable[Sequence[Arg]]) -> list[Any]:
        """Send several commands in one write and return their replies, in order. A
        checkpoint. The first error reply is raised once all replies are in, so no reply is
        left behind for another caller; the other commands did run."""
        replies = await self.execute_each(commands)
        for reply in replies:
            if isinstance(reply, RedisReplyError):
                raise reply
        return replies

    async def execute_each(self, commands: Iterable[Sequence[Arg]]) -> list[Any]:
        """As :meth:`execute_many`, with an error reply returned in its place (a
        :class:`~ratchetpy.RedisReplyError` value) instead of raised: for a batch whose
        commands succeed or fail one by one. A lost connection still raises."""
        batch = [tuple(command) for command in commands]
        if not batch:
            await trio.lowlevel.checkpoint()
            return []
        if len(batch) > self.max_in_flight:
            raise ValueError(
                f"{len(batch)} commands in one batch, more than max_in_flight "
                f"({self.max_in_flight}) could ever let through"
            )
        slots = await self._send(batch)
        await self._wait(slots[-1])
        for slot in slots:
            if isinstance(slot.value, (BrokerUnavailable, RedisProtocolError)):
                raise slot.value
        return [slot.value for slot in slots]

    async def wait_lost(self) -> BrokerUnavailable | RedisProtocolError:
        """Read until the connection is lost, and return why. A checkpoint.

        Replies that arrive meanwhile still reach their callers: the watcher is one more
        reader. It is how an idle connection's owner learns at once that Redis closed it
        (``CLIENT KILL``, a restart) instead of at the next command. A connection that dies
        silently needs a probe (a ``PING`` with a deadline) as well.
        """
        while self._broken is None:
            async with self._receive_lock:
                try:
                    if self._broken is None:
                        await self._read_once()
                finally:
                    self._wake()
        return self._broken

    def detach(self) -> tuple[trio.abc.Stream, RespReader]:
        """Hand the logged-in stream (and what was read past the last reply) over, for a
        connection that leaves request/reply mode (pub/sub). Only with nothing under way;
        this object is closed afterwards."""
        if self._pending:
            raise RuntimeError("detach() with commands under way")
        self._fail(BrokerUnavailable(f"the connection to {self.address.describe()} moved on"))
        return self._stream, self._reader

    async def aclose(self) -> None:
        """Close the connection; commands still under way fail with BrokerUnavailable. A
        checkpoint."""
        self._fail(BrokerUnavailable(f"the connection to {self.address.describe()} was closed"))
        await trio.aclose_forcefully(self._stream)

    # -- internals -----------------------------------------------------------------------------

    async def _send(self, commands: list[tuple[Arg, ...]]) -> list[_Reply]:
        data = b"".join(encode_command(*command) for command in commands)  # TypeError first
        acquired = 0
        try:
            for _ in commands:
                await self._in_flight.acquire()
                acquired += 1
        except BaseException:
            for _ in range(acquired):
                self._in_flight.release()
            raise
        slots = [_Reply(_name(command[0])) for command in commands]
        async with self._send_lock:
            if self._broken is not None:
                for _ in slots:
                    self._in_flight.release()
                raise self._broken
            # In the queue before the bytes leave: their replies may come back at once.
            self._pending.extend(slots)
            try:
                await self._stream.send_all(data)
            except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
                raise self._lost(exc) from None
            except BaseException:
                # Cancelled part-way: how much of the command left is unknown, so nothing
                # that follows on this connection could be trusted.
                self._fail(
                    BrokerUnavailable(
                        f"a command to {self.address.describe()} was interrupted while being "
                        "sent; the connection cannot be used any more"
                    )
                )
                raise
        return slots

    async def _wait(self, slot: _Reply) -> None:
        while not slot.done:
            if self._receive_lock.locked():
                await self._answered.wait()  # another caller reads and hands out our reply
                continue
            async with self._receive_lock:
                try:
                    while not slot.done:
                        await self._read_once()
                finally:
                    self._wake()  # let a waiter take over reading if we leave early

    async def _read_once(self) -> None:
        try:
            data = await self._stream.receive_some(_RECV_SIZE)
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
            self._lost(exc)
            return
        if not data:
            self._lost(None)
            return
        try:
            self._reader.feed(data)
            replies = list(self._reader.replies())
        except RedisProtocolError as exc:
            self._fail(exc)
            await trio.aclose_forcefully(self._stream)
            return
        for reply in replies:
            if not self._pending:
                self._fail(RedisProtocolError("the Redis server sent a reply nobody asked for"))
                await trio.aclose_forcefully(self._stream)
                return
            slot = self._pending.popleft()
            if isinstance(reply, RedisReplyError):
                reply = RedisReplyError(reply.message, command=slot.command)
            slot.value, slot.done = reply, True
            self._in_flight.release()
        self._wake()

    def _lost(self, exc: BaseException | None) -> BrokerUnavailable | RedisProtocolError:
        why = f": {exc}" if exc is not None and str(exc) else ""
        where = self.address.describe()
        return self._fail(BrokerUnavailable(f"the connection to {where} was lost{why}"))

    def _fail(
        self, error: BrokerUnavailable | RedisProtocolError
    ) -> BrokerUnavailable | RedisProtocolError:
        """Break the connection (the first reason stays); fail every command under way."""
        if self._broken is None:
            self._broken = error
        while self._pending:
            slot = self._pending.popleft()
            slot.value, slot.done = self._broken, True
            self._in_flight.release()
        self._wake()
        return self._broken

    def _wake(self) -> None:
        self._answered.set()
        self._answered = trio.Event()


async def reopen(
    open_connection: Callable[[], Awaitable[_T]], *, backoff: tuple[float, float], where: str
) -> tuple[_T, float]:
    """Open a lost connection again: wait, try, and wait longer after each failure
    (``backoff``: the first and the longest wait, doubling, with jitter so that workers do
    not all come back at once), logging each failed attempt. Returns the connection and the
    seconds it took. A checkpoint; only cancellation ends it otherwise."""
    started = trio.current_time()
    attempt = 0
    while True:
        delay = min(backoff[1], backoff[0] * 2**attempt)
        await trio.sleep(delay * random.uniform(0.5, 1.0))
        attempt += 1
        try:
            connection = await open_connection()
        except (BrokerUnavailable, RedisReplyError) as exc:
            logger.warning("cannot reconnect to %s yet: %s", where, exc)
            continue
        return connection, trio.current_time() - started


async def receive_batch(queue: trio.MemoryReceiveChannel[_T], most: int) -> list[_T]:
    """Wait for one item of ``queue``, then take what else is there, up to ``most`` in all:
    a batch to send in one write. A checkpoint."""
    batch = [await queue.receive()]
    while len(batch) < most:
        try:
            batch.append(queue.receive_nowait())
        except trio.WouldBlock:
            break
    return batch


def call_logged(callback: Callable[..., object], *args: Any) -> None:
    """Call a callback of the broker's user (a message handler): its exception is logged on
    ``ratchetpy.broker`` and goes no further, so one failing handler stops neither the others
    nor the connection that read the message."""
    try:
        callback(*args)
    except Exception:
        logger.exception("a broker callback (%r) failed", callback)


def _name(arg: Arg) -> str:
    """A command's name for error messages: ``AUTH``, ``PUBLISH``."""
    return (arg.decode("latin-1") if isinstance(arg, bytes) else str(arg)).upper()


async def _connect(address: RedisAddress, ssl_context: ssl.SSLContext | None) -> trio.abc.Stream:
    if address.path is not None:
        return await trio.open_unix_socket(address.path)
    tcp = await trio.open_tcp_stream(address.host, address.port)
    if not address.tls:
        return tcp
    context = ssl_context if ssl_context is not None else ssl.create_default_context()
    stream = trio.SSLStream(tcp, context, server_hostname=address.host)
    try:
        await stream.do_handshake()
    except BaseException:
        await trio.aclose_forcefully(stream)
        raise
    return stream
