"""A Redis subscriber for trio that does not go deaf: it reconnects, resubscribes and probes.

The failure every Redis pub/sub user of the anchors hit is a worker that stays connected to
nothing while it reports healthy: the connection was killed (``CLIENT KILL``, a failover, a
restart, a NAT that forgot it) and nobody noticed, or noticed and did not subscribe again.
:class:`RedisSubscriber` owns its connection in :meth:`RedisSubscriber.run`:

* after any loss it reconnects with exponential backoff and jitter and subscribes every
  channel it wants again; once Redis confirmed them all, ``on_resubscribed(channels)`` says
  that messages published meanwhile were missed;
* when the connection has been silent for ``probe_interval`` seconds it sends a ``PING``;
  without an answer within ``probe_timeout`` the connection counts as lost;
* :meth:`subscribe` returns only once Redis confirmed the subscription (or raises
  :class:`~ratchetpy.BrokerUnavailable` after ``subscribe_timeout``), so an acknowledgement
  upstream (a WAMP SUBSCRIBED) never runs ahead of Redis.

.. code-block:: python

    subscriber = RedisSubscriber("redis://127.0.0.1:6379/0", on_message=deliver)
    async with trio.open_nursery() as nursery:
        await nursery.start(subscriber.run)      # raises BrokerUnavailable if Redis is down
        await subscriber.subscribe("room:42")    # confirmed by Redis when it returns

The bookkeeping is sans-IO (:class:`~ratchetpy.protocol.redis_pubsub.PubSubState`); this
module only moves bytes, keeps time and sleeps between attempts.
"""

from __future__ import annotations

import logging
import ssl
from collections.abc import Callable
from typing import Any

import trio

from ..exceptions import BrokerUnavailable, RedisProtocolError, RedisReplyError
from ..protocol.redis_pubsub import (
    Confirmed,
    PubSubMessage,
    PubSubState,
    Resubscribed,
    as_channel,
)
from ..protocol.redis_url import RedisAddress
from ..protocol.resp import RespReader
from .redis import RedisConnection, call_logged, reopen

__all__ = ["RedisSubscriber"]

logger = logging.getLogger("ratchetpy.broker")

_RECV_SIZE = 65536


class _Lost(Exception):
    """The current connection is gone (why: the message); run() reconnects."""


class RedisSubscriber:
    """One subscriber connection to Redis, kept subscribed to the channels it is asked for.

    ``on_message(channel, data)`` is called (in the task running :meth:`run`) for every
    message of a wanted channel, in the order Redis sent them; ``on_resubscribed(channels)``
    after a reconnect, once every wanted channel is confirmed again. Both must not block;
    an exception from them is logged and the subscriber goes on.

    Options (keyword-only): ``probe_interval`` and ``probe_timeout`` (seconds, 5 and 3),
    ``subscribe_timeout`` (seconds :meth:`subscribe` waits for Redis, 1), ``backoff``
    (``(first, most)`` seconds between reconnection attempts, doubling with jitter,
    ``(0.05, 2.0)``), ``connect_timeout``, ``ssl_context`` and ``client_name`` as for
    :meth:`RedisConnection.open <ratchetpy.io.redis.RedisConnection.open>`.
    """

    def __init__(
        self,
        address: RedisAddress | str,
        *,
        on_message: Callable[[bytes, bytes], Any],
        on_resubscribed: Callable[[frozenset[bytes]], Any] | None = None,
        probe_interval: float = 5.0,
        probe_timeout: float = 3.0,
        subscribe_timeout: float = 1.0,
        backoff: tuple[float, float] = (0.05, 2.0),
        connect_timeout: float = 5.0,
        ssl_context: ssl.SSLContext | None = None,
        client_name: str | None = None,
    ) -> None:
        self.address = RedisAddress.parse(address) if isinstance(address, str) else address
        self.on_message = on_message
        self.on_resubscribed = on_resubscribed
        self.probe_interval = probe_interval
        self.probe_timeout = probe_timeout
        self.subscribe_timeout = subscribe_timeout
        self.backoff = backoff
        self.connect_timeout = connect_timeout
        self.ssl_context = ssl_context
        self.client_name = client_name
        #: Connections lost (and so reconnections attempted) since :meth:`run` started.
        self.reconnects = 0
        self._state = PubSubState()
        self._stream: trio.abc.Stream | None = None
        self._send_lock = trio.Lock()
        self._outbox = bytearray()  # commands to write, in the order they were made
        self._queued = trio.Event()  # set when the outbox has something
        self._changed = trio.Event()  # set (and replaced) when confirmations arrive

    # -- what the owner asks for ---------------------------------------------------------------

    @property
    def connected(self) -> bool:
        """True while a connection is up (it may still be resubscribing)."""
        return self._stream is not None

    @property
    def healthy(self) -> bool:
        """Connected and subscribed to every channel wanted: what a health check reports."""
        return self._stream is not None and not self._state.missing()

    @property
    def channels(self) -> frozenset[bytes]:
        """The channels wanted (subscribed, or to be subscribed again after a reconnect)."""
        return frozenset(self._state.wanted)

    def want(self, channel: str | bytes) -> None:
        """Want ``channel`` from now on, without waiting for Redis. Not a checkpoint.

        The subscription goes out at once while connected, else with every other one when the
        connection is back; :meth:`wait_settled` waits for Redis' confirmation.
        """
        self._queue(self._state.want(channel))

    def unwant(self, channel: str | bytes) -> None:
        """Stop wanting ``channel``; its messages stop now. Not a checkpoint."""
        self._queue(self._state.unwant(channel))

    async def wait_settled(self, channel: str | bytes, timeout: float) -> bool:
        """Wait (at most ``timeout`` seconds) until Redis confirmed ``channel`` and answered
        every command sent for it; True if it did. A checkpoint."""
        name = as_channel(channel)
        with trio.move_on_after(timeout):
            while not self._state.settled(name):
                await self._changed.wait()
            return True
        return False

    async def subscribe(self, channel: str | bytes) -> None:
        """Want ``channel`` and return once Redis confirmed it. A checkpoint.

        Raises :class:`~ratchetpy.BrokerUnavailable` if that does not happen within
        ``subscribe_timeout`` (Redis is away); the channel is then not wanted any more (unless
        it was wanted before this call), so the caller can refuse what it was subscribing for.
        """
        name = as_channel(channel)
        first = name not in self._state.wanted
        self.want(name)
        if await self.wait_settled(name, self.subscribe_timeout):
            return
        if first:  # this call wanted it first: it does not stay wanted for nobody
            self.unwant(name)
        raise BrokerUnavailable(
            f"{self.address.describe()} did not confirm the subscription to {name!r} within "
            f"{self.subscribe_timeout:g} s"
        )

    async def unsubscribe(self, channel: str | bytes) -> None:
        """Stop wanting ``channel``; its messages stop now. A checkpoint; does not wait for
        Redis (a connection that is away drops every subscription anyway)."""
        self.unwant(channel)
        await trio.lowlevel.checkpoint()

    # -- the connection's life ----------------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Stay connected and subscribed until cancelled. Reports started once the first
        connection is up; raises :class:`~ratchetpy.BrokerUnavailable` (or
        :class:`~ratchetpy.RedisReplyError` for a refused login) if that one fails, so a
        worker that cannot reach Redis at start-up says so instead of serving deaf."""
        stream, reader = await self._connect()
        started = False
        where = self.address.describe()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._write_queued)
            while True:
                try:
                    await self._subscribe_all(stream)
                    if not started:
                        task_status.started()
                        started = True
                    await self._serve(stream, reader)
                except _Lost as lost:
                    logger.warning("lost the subscriber connection to %s: %s", where, lost)
                finally:
                    self._stream = None
                    await trio.aclose_forcefully(stream)
                self.reconnects += 1
                (stream, reader), took = await reopen(
                    self._connect, backoff=self.backoff, where=where
                )
                logger.info(
                    "subscriber connection to %s back after %.2f s; subscribing to %d again",
                    where,
                    took,
                    len(self._state.wanted),
                )

    async def _connect(self) -> tuple[trio.abc.Stream, RespReader]:
        connection = await RedisConnection.open(
            self.address,
            connect_timeout=self.connect_timeout,
            ssl_context=self.ssl_context,
            client_name=self.client_name,
        )
        return connection.detach()

    async def _subscribe_all(self, stream: trio.abc.Stream) -> None:
        async with self._send_lock:
            # What was queued for the last connection is in here too, so it goes.
            self._outbox.clear()
            await self._write(stream, self._state.connection_made())
            self._stream = stream

    async def _serve(self, stream: trio.abc.Stream, reader: RespReader) -> None:
        probing = False
        while True:
            with trio.move_on_after(self.probe_timeout if probing else self.probe_interval):
                try:
                    data = await stream.receive_some(_RECV_SIZE)
                except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
                    raise _Lost(str(exc) or type(exc).__name__) from None
                if not data:
                    raise _Lost("Redis closed it")
                self._received(reader, data)
                probing = False
                continue
            if probing:
                raise _Lost(f"no answer to a probe within {self.probe_timeout:g} s")
            probing = True
            self._queue(self._state.probe())

    def _received(self, reader: RespReader, data: bytes | bytearray) -> None:
        try:
            reader.feed(data)
            replies = list(reader.replies())
        except RedisProtocolError as exc:
            raise _Lost(str(exc)) from None
        confirmed = False
        for reply in replies:
            try:
                event = self._state.receive(reply)
            except (RedisReplyError, RedisProtocolError) as exc:
                raise _Lost(f"Redis answered a subscription with {exc}") from None
            if isinstance(event, PubSubMessage):
                call_logged(self.on_message, event.channel, event.data)
            elif isinstance(event, Resubscribed):
                confirmed = True
                if self.on_resubscribed is not None:
                    call_logged(self.on_resubscribed, event.channels)
            elif isinstance(event, Confirmed):
                confirmed = True
        if confirmed:
            self._changed.set()
            self._changed = trio.Event()

    def _queue(self, command: bytes) -> None:
        # Queued rather than written, so that commands keep the order the state changed in;
        # while away, connection_made() sends everything wanted instead.
        if command and self._stream is not None:
            self._outbox += command
            self._queued.set()

    async def _write_queued(self) -> None:
        while True:
            await self._queued.wait()
            self._queued = trio.Event()
            async with self._send_lock:
                stream, data = self._stream, bytes(self._outbox)
                self._outbox.clear()
                if stream is None or not data:
                    continue
                # Bounded, so that a Redis that stopped reading cannot hold the lock.
                with trio.move_on_after(self.probe_timeout) as scope:
                    try:
                        await self._write(stream, data)
                    except _Lost:
                        continue  # run() notices on its side and reconnects, resubscribing
                if scope.cancelled_caught:
                    await trio.aclose_forcefully(stream)  # run() reconnects

    @staticmethod
    async def _write(stream: trio.abc.Stream, data: bytes) -> None:
        if not data:
            return
        try:
            await stream.send_all(data)
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
            raise _Lost(str(exc) or type(exc).__name__) from None
