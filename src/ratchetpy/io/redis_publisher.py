"""A worker's one ordered publish connection to Redis, which refuses visibly when Redis is away.

The guarantee a publisher gives upstream (a WAMP PUBLISHED, the publish endpoint's 2xx) is
only as good as this: :meth:`RedisPublisher.publish` returns once Redis accepted the message
(``PUBLISH`` answered), and raises :class:`~ratchetpy.BrokerUnavailable` otherwise, never
later than about ``buffer_time`` seconds. There is no queue that grows while Redis is down and
no silent success: during an outage each publication waits at most ``buffer_time`` for the
connection to come back, then is refused, and the refusals are counted and logged when it
does come back.

One connection and no pool, because a pool reorders: publications of one task reach Redis in
the order they were made. :meth:`RedisPublisher.run` owns the connection: it notices a lost one
at once (``CLIENT KILL``, a restart), probes an idle one, and reconnects with backoff and jitter.

.. code-block:: python

    publisher = RedisPublisher("redis://127.0.0.1:6379/0")
    async with trio.open_nursery() as nursery:
        await nursery.start(publisher.run)       # raises BrokerUnavailable if Redis is down
        receivers = await publisher.publish("room:42", b"hello")
"""

from __future__ import annotations

import hashlib
import logging
import ssl
from collections.abc import Sequence
from typing import Any

import trio

from ..exceptions import BrokerUnavailable, RedisReplyError
from ..protocol.redis_url import RedisAddress
from .redis import RedisConnection, reopen

__all__ = ["RedisPublisher"]

logger = logging.getLogger("ratchetpy.broker")


class RedisPublisher:
    """Publishes to Redis over one connection that :meth:`run` keeps up.

    Options (keyword-only): ``buffer_time`` (seconds a publication waits for Redis, when it
    is away or slow, before it is refused: 1), ``probe_interval`` and ``probe_timeout``
    (an idle connection gets a ``PING`` this often, and counts as lost without an answer in
    time: 5 and 3), ``backoff`` (``(first, most)`` seconds between reconnection attempts,
    doubling with jitter), ``connect_timeout``, ``ssl_context``, ``client_name`` and
    ``max_in_flight`` as for :meth:`RedisConnection.open <ratchetpy.io.redis.RedisConnection.open>`.
    """

    def __init__(
        self,
        address: RedisAddress | str,
        *,
        buffer_time: float = 1.0,
        probe_interval: float = 5.0,
        probe_timeout: float = 3.0,
        backoff: tuple[float, float] = (0.05, 2.0),
        connect_timeout: float = 5.0,
        ssl_context: ssl.SSLContext | None = None,
        client_name: str | None = None,
        max_in_flight: int = 10_000,
    ) -> None:
        self.address = RedisAddress.parse(address) if isinstance(address, str) else address
        self.buffer_time = buffer_time
        self.probe_interval = probe_interval
        self.probe_timeout = probe_timeout
        self.backoff = backoff
        self.connect_timeout = connect_timeout
        self.ssl_context = ssl_context
        self.client_name = client_name
        self.max_in_flight = max_in_flight
        #: Publications accepted by Redis, and refused (Redis away, lost, or refusing).
        self.published = 0
        self.refused = 0
        #: Connections lost since :meth:`run` started.
        self.reconnects = 0
        self._connection: RedisConnection | None = None
        self._up = trio.Event()  # set while a connection is up

    @property
    def connected(self) -> bool:
        """True while a connection is up."""
        return self._connection is not None

    def unreachable(self) -> BrokerUnavailable:
        """The refusal of a publication that waited ``buffer_time`` and was never sent."""
        return BrokerUnavailable(
            f"{self.address.describe()} is unreachable: the publication was refused after "
            f"waiting {self.buffer_time:g} s and reached no other worker"
        )

    async def wait_connected(self) -> None:
        """Return once a connection is up (at once if one is). A checkpoint."""
        await trio.lowlevel.checkpoint()
        while self._connection is None:
            await self._up.wait()

    async def publish_many(
        self, messages: list[tuple[str | bytes, bytes]]
    ) -> list[int | RedisReplyError]:
        """Publish several ``(channel, data)`` in one write, in order. A checkpoint. Each gets
        its receivers, or the :class:`~ratchetpy.RedisReplyError` Redis refused it with (a
        channel the ACL forbids); BrokerUnavailable, as for :meth:`publish`, is for all."""
        commands = [("PUBLISH", channel, data) for channel, data in messages]
        return await self._execute(commands)

    async def publish(self, channel: str | bytes, data: bytes) -> int:
        """Publish ``data`` to ``channel`` and return how many subscribers Redis passed it to
        (on its node). A checkpoint.

        Raises :class:`~ratchetpy.BrokerUnavailable` when Redis did not accept it within
        ``buffer_time`` (away, or the connection was lost with the publication under way:
        then whether it was passed on cannot be known, and it is not sent again, so nothing
        is ever delivered twice), or :class:`~ratchetpy.RedisReplyError` when Redis refused
        it (``NOPERM``).
        """
        (receivers,) = await self._execute([("PUBLISH", channel, data)])
        if isinstance(receivers, RedisReplyError):
            raise receivers
        return int(receivers)

    async def command(self, *args: str | bytes) -> Any:
        """Run one command on the publish connection, with the same bound as a publication
        (``buffer_time``; BrokerUnavailable past it), after what was published before it.
        A checkpoint; raises the :class:`~ratchetpy.RedisReplyError` Redis answered with."""
        (reply,) = await self._execute([args], publications=False)
        if isinstance(reply, RedisReplyError):
            raise reply
        return reply

    async def evaluate(self, script: str, keys: Sequence[str | bytes], *args: str | bytes) -> Any:
        """Run the Lua ``script`` as :meth:`command` does, by its SHA1 (``EVALSHA``: the body
        travels only when Redis does not know it yet, after a restart say)."""
        digest = hashlib.sha1(script.encode()).hexdigest()
        try:
            return await self.command("EVALSHA", digest, str(len(keys)), *keys, *args)
        except RedisReplyError as exc:
            if exc.code != "NOSCRIPT":
                raise
        return await self.command("EVAL", script, str(len(keys)), *keys, *args)

    async def commands(self, commands: Sequence[tuple[str | bytes, ...]]) -> list[Any]:
        """:meth:`command` for several commands in one write; raises the first error reply
        once all replies are in."""
        replies = await self._execute(commands, publications=False)
        for reply in replies:
            if isinstance(reply, RedisReplyError):
                raise reply
        return replies

    async def _execute(
        self, commands: Sequence[tuple[str | bytes, ...]], *, publications: bool = True
    ) -> list[Any]:
        # Only publications count in published / refused.
        counted = len(commands) if publications else 0
        where = self.address.describe()
        connection: RedisConnection | None = None  # the one it was sent on, once it was
        with trio.move_on_after(self.buffer_time):
            await self.wait_connected()
            connection = self._connection
            assert connection is not None
            try:
                replies: list[Any] = await connection.execute_each(commands)
            except BrokerUnavailable:
                self.refused += counted
                raise
            if publications:
                failed = sum(isinstance(reply, RedisReplyError) for reply in replies)
                self.refused += failed
                self.published += len(commands) - failed
            return replies
        self.refused += counted
        if connection is None:
            raise self.unreachable()
        # Sent, and not answered within the whole buffer: the connection cannot be trusted
        # (the reply may still come, to nobody); run() makes a new one. Judged by the
        # connection it went on: run() may have dropped that one meanwhile.
        await connection.aclose()
        raise BrokerUnavailable(
            f"{where} did not answer the publication within {self.buffer_time:g} s; whether "
            "other workers got it cannot be known (it is not sent again)"
        )

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Keep the connection up until cancelled. Reports started once the first connection
        is up; raises :class:`~ratchetpy.BrokerUnavailable` (or a refused login's
        :class:`~ratchetpy.RedisReplyError`) if that one fails."""
        connection = await self._open()
        where = self.address.describe()
        task_status.started()
        while True:
            self._connection = connection
            self._up.set()
            try:
                why = await self._watch(connection)
            finally:
                self._connection = None
                self._up = trio.Event()
                await connection.aclose()
            logger.warning("lost the publish connection to %s: %s", where, why)
            self.reconnects += 1
            refused_before = self.refused
            connection, took = await reopen(self._open, backoff=self.backoff, where=where)
            logger.info(
                "publish connection to %s back after %.2f s; %d publications were refused",
                where,
                took,
                self.refused - refused_before,
            )

    async def _open(self) -> RedisConnection:
        return await RedisConnection.open(
            self.address,
            connect_timeout=self.connect_timeout,
            ssl_context=self.ssl_context,
            client_name=self.client_name,
            max_in_flight=self.max_in_flight,
        )

    async def _watch(self, connection: RedisConnection) -> str:
        """Return (why) once ``connection`` is lost: closed by Redis, closed by a publisher
        that gave up on it, or silent past a probe."""
        while True:
            with trio.move_on_after(self.probe_interval):
                return str(await connection.wait_lost())
            with trio.move_on_after(self.probe_timeout):
                try:
                    await connection.execute("PING")
                except (BrokerUnavailable, RedisReplyError) as exc:
                    return str(exc)
                continue
            return f"no answer to a probe within {self.probe_timeout:g} s"
