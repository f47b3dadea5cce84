"""RedisBroker: the :class:`~ratchetpy.broker.MessageBroker` of many workers, through Redis.

Per worker: one :class:`~ratchetpy.io.redis_publisher.RedisPublisher` (the one ordered publish
connection) and one :class:`~ratchetpy.io.redis_subscriber.RedisSubscriber`, subscribed only
to the channels this worker has listeners for. Every message goes out in an
:class:`~ratchetpy.protocol.envelope.Envelope` naming this worker and its sequence on the
channel; a receiving worker drops its own messages (it delivered them locally already),
drops duplicates, and reports gaps and reconnections as possibly missed messages.

:meth:`RedisBroker.run` owns everything: the two connections and the task that sends what
:meth:`RedisBroker.publish_nowait` queued (bounded: a full queue refuses at once). Both
publish paths share that queue, so the messages of one task reach Redis in the order it
published them, whichever path it used, and a batch of them goes out in one write.
"""

from __future__ import annotations

import itertools
import logging
import os
import secrets
import socket
import ssl
from collections.abc import Callable
from typing import TYPE_CHECKING

import trio

from ..broker import (
    BrokerStats,
    Handler,
    MessageBroker,
    PresenceEntry,
    PresenceEvent,
    presence_channel,
)
from ..exceptions import BrokerError, BrokerUnavailable, InvalidStateError, RedisProtocolError
from ..protocol.envelope import Envelope, SequenceTracker, Verdict
from ..protocol.redis_url import RedisAddress
from ..protocol.resp import RespReader
from .redis import RedisConnection, call_logged, receive_batch
from .redis_presence import RedisPresence
from .redis_publisher import RedisPublisher
from .redis_subscriber import RedisSubscriber

__all__ = ["RedisBroker"]

logger = logging.getLogger("ratchetpy.broker")

# Messages per write when the queue has many: large enough to amortise the round trip.
_BATCH = 256

# How often watched workers are looked up in the registry. A worker counts as gone once two
# lookups in a row missed it: one miss may be a Redis that restarted empty a moment ago.
_WATCH_EVERY = 1.0

# Ownership scripts: a key's value is "<owner worker id>\n<value>", and the owner's registry
# key (its announcement) says whether it lives. Scripts run atomically in Redis, so two
# workers acquiring at once cannot both win.
_ACQUIRE = """
local current = redis.call('GET', KEYS[1])
if current then
  local holder = string.match(current, '^([^\\n]*)\\n')
  if holder and holder ~= ARGV[1] and redis.call('EXISTS', ARGV[3] .. holder) == 1 then
    return 0
  end
end
redis.call('SET', KEYS[1], ARGV[1] .. '\\n' .. ARGV[2])
return 1
"""
_OWNER = """
local current = redis.call('GET', KEYS[1])
if not current then return false end
local holder = string.match(current, '^([^\\n]*)\\n')
if holder and redis.call('EXISTS', ARGV[1] .. holder) == 1 then return current end
redis.call('DEL', KEYS[1])
return false
"""
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


class _Outgoing:
    """A message on its way to Redis; ``done`` is set once Redis accepted or refused it."""

    __slots__ = ("channel", "data", "done", "error", "receivers")

    def __init__(self, channel: str, body: bytes, done: trio.Event | None) -> None:
        self.channel = channel
        self.data = body  # the body until it is sent, then the envelope
        self.done = done
        self.error: BaseException | None = None
        self.receivers = 0  # subscribers Redis passed it to


def default_worker_id() -> str:
    """``host:pid:random``: unique among the workers of every host, also after a restart."""
    host = "".join(c if c.isalnum() or c in "._-" else "-" for c in socket.gethostname())
    return f"{host[:32] or 'host'}:{os.getpid()}:{secrets.token_hex(4)}"


class RedisBroker:
    """Workers and hosts sharing one Redis: ``RedisBroker("redis://127.0.0.1:6379/0")``.

    Start it with ``await nursery.start(broker.run)``, which raises
    :class:`~ratchetpy.BrokerUnavailable` if Redis cannot be reached at start-up.

    Options (keyword-only): ``worker_id`` (default :func:`default_worker_id`), ``prefix``
    (put before every channel name in Redis, default ``"ratchetpy:"``, so that several apps
    can share a Redis), ``buffer_time`` (seconds a publication may wait for Redis before it is
    refused, 1), ``max_queue`` (publications waiting to be sent, 10,000; more are refused at
    once), ``ssl_context``, and ``probe_interval`` / ``probe_timeout`` for both connections.
    """

    distributed = True

    def __init__(
        self,
        address: RedisAddress | str,
        *,
        worker_id: str | None = None,
        prefix: str = "ratchetpy:",
        buffer_time: float = 1.0,
        max_queue: int = 10_000,
        ssl_context: ssl.SSLContext | None = None,
        probe_interval: float = 5.0,
        probe_timeout: float = 3.0,
    ) -> None:
        self.address = RedisAddress.parse(address) if isinstance(address, str) else address
        RespReader()  # ImportError now, with the fix, if hiredis is missing
        self.worker_id = worker_id or default_worker_id()
        Envelope(self.worker_id, 0, b"")  # refuses an id the envelope cannot carry
        self.prefix = prefix
        self.buffer_time = buffer_time
        self.publisher = RedisPublisher(
            self.address,
            buffer_time=buffer_time,
            probe_interval=probe_interval,
            probe_timeout=probe_timeout,
            ssl_context=ssl_context,
            client_name=f"ratchetpy-pub:{self.worker_id}",
        )
        self.subscriber = RedisSubscriber(
            self.address,
            on_message=self._received,
            on_resubscribed=self._resubscribed,
            probe_interval=probe_interval,
            probe_timeout=probe_timeout,
            subscribe_timeout=buffer_time,
            ssl_context=ssl_context,
            client_name=f"ratchetpy-sub:{self.worker_id}",
        )
        #: Publications refused by publish_nowait (queue full, Redis away), and bodies
        #: received that were not ours to read (not an envelope) or seen twice.
        self.refused = 0
        self.malformed = 0
        self.duplicates = 0
        #: Awaited publications that failed (their publishers were told), gaps in another
        #: worker's numbering seen plus resubscriptions (each may have missed messages).
        self.failed = 0
        self.missed = 0
        self._send, self._queue = trio.open_memory_channel[_Outgoing](max_queue)
        self._handlers: dict[str, list[Handler]] = {}
        self._sequences: dict[str, itertools.count[int]] = {}
        self._tracker = SequenceTracker()
        self._missed_callbacks: list[Callable[[str], object]] = []
        self._owned: dict[str, bytes] = {}  # key -> the value stored in Redis
        self._unreleased: dict[str, bytes] = {}  # released while Redis was away: again later
        self._watched: dict[str, list[Callable[[str], object]]] = {}
        #: This worker's members of presence scopes, mirrored into Redis.
        self.presence_store = RedisPresence(
            self.publisher, prefix, self.worker_id, max_queue=max_queue
        )
        self._presence_handlers: dict[tuple[str, Callable[[PresenceEvent], object]], Handler] = {}
        self._announced = False
        self._unseen: set[str] = set()  # watched workers the last lookup missed
        self._running = False
        self._unsent = 0  # queued and not yet passed on or refused
        self._sent = trio.Event()  # set (and replaced) after each batch

    # -- the MessageBroker interface -----------------------------------------------------------

    def listen(self, channel: str, handler: Handler) -> None:
        handlers = self._handlers.setdefault(channel, [])
        handlers.append(handler)
        if len(handlers) == 1:
            self.subscriber.want(self.prefix + channel)

    def unlisten(self, channel: str, handler: Handler) -> None:
        handlers = self._handlers.get(channel)
        if handlers is None or handler not in handlers:
            return
        handlers.remove(handler)
        if not handlers:
            del self._handlers[channel]
            self.subscriber.unwant(self.prefix + channel)
            # Not listening is not missing: the numbers start afresh when it listens again.
            self._tracker.forget((self.prefix + channel).encode())

    async def wait_listening(self, channel: str) -> None:
        if not await self.subscriber.wait_settled(self.prefix + channel, self.buffer_time):
            raise BrokerUnavailable(
                f"{self.address.describe()} did not confirm the subscription to {channel!r} "
                f"within {self.buffer_time:g} s"
            )

    async def publish(self, channel: str, body: bytes) -> int:
        done = trio.Event()
        outgoing = self._enqueue(channel, body, done)
        if outgoing is None:
            raise BrokerUnavailable(
                f"the queue to {self.address.describe()} is full: the publication was refused"
            )
        await done.wait()
        if outgoing.error is not None:
            raise outgoing.error
        return outgoing.receivers

    def publish_nowait(self, channel: str, body: bytes) -> None:
        if self._enqueue(channel, body, None) is None:
            logger.warning(
                "publication to %s refused: the queue to %s is full",
                channel,
                self.address.describe(),
            )

    async def claim(self, key: str, ttl: float) -> bool:
        # SET NX with an expiry: atomic in Redis, so exactly one worker gets True; the key
        # goes by itself once nothing needs to remember it.
        milliseconds = max(1, round(ttl * 1000))
        reply = await self.publisher.command(
            "SET", self.prefix + key, b"1", "NX", "PX", str(milliseconds)
        )
        return reply is not None

    async def acquire(self, key: str, value: bytes) -> bool:
        stored = self.worker_id.encode() + b"\n" + value
        won = await self.publisher.evaluate(
            _ACQUIRE, [self.prefix + key], self.worker_id, value, self._worker_key(b"")
        )
        if won:
            self._owned[key] = stored
            self._unreleased.pop(key, None)
        return bool(won)

    async def owner(self, key: str) -> tuple[str, bytes] | None:
        reply = await self.publisher.evaluate(_OWNER, [self.prefix + key], self._worker_key(b""))
        if reply is None:
            return None
        worker, _, value = bytes(reply).partition(b"\n")
        return worker.decode("ascii", "replace"), value

    async def release(self, key: str) -> None:
        stored = self._owned.pop(key, None)
        if stored is None:
            return
        try:
            await self.publisher.evaluate(_RELEASE, [self.prefix + key], stored)
        except BrokerError:
            self._unreleased[key] = stored  # the next announcement tries again
            raise

    def watch(self, worker_id: str, callback: Callable[[str], object]) -> None:
        self._watched.setdefault(worker_id, []).append(callback)

    def unwatch(self, worker_id: str, callback: Callable[[str], object]) -> None:
        callbacks = self._watched.get(worker_id)
        if callbacks is not None and callback in callbacks:
            callbacks.remove(callback)
            if not callbacks:
                del self._watched[worker_id]
                self._unseen.discard(worker_id)

    def present(self, scope: str, member: str, *, user: str | None = None, info: str = "") -> None:
        self.presence_store.present(scope, member, user=user, info=info)

    def absent(self, scope: str, member: str) -> None:
        self.presence_store.absent(scope, member)

    async def presence_written(self) -> None:
        await self.presence_store.written()

    async def presence(self, scope: str) -> list[PresenceEntry]:
        return await self.presence_store.presence(scope)

    async def presence_count(self, scope: str) -> int:
        return await self.presence_store.presence_count(scope)

    def on_presence(self, scope: str, callback: Callable[[PresenceEvent], object]) -> None:
        def handler(body: bytes) -> None:
            try:
                event = PresenceEvent.decode(scope, body)
            except ValueError as exc:
                self.malformed += 1
                logger.warning("dropped a message on %s: %s", presence_channel(scope), exc)
                return
            callback(event)

        self._presence_handlers[scope, callback] = handler
        self.listen(presence_channel(scope), handler)

    def off_presence(self, scope: str, callback: Callable[[PresenceEvent], object]) -> None:
        handler = self._presence_handlers.pop((scope, callback), None)
        if handler is not None:
            self.unlisten(presence_channel(scope), handler)

    def on_missed(self, callback: Callable[[str], object]) -> None:
        self._missed_callbacks.append(callback)

    async def announce(self, info: bytes, ttl: float) -> None:
        # The key's expiry is the truth (no clocks compared across hosts); the set is only
        # the index readers start from, pruned by the reaping of presence.
        milliseconds = str(max(1, round(ttl * 1000)))
        # What this worker owns is put back if it is missing (a Redis that restarted empty),
        # never over another worker's: NX. What it could not release is released now.
        unreleased = dict(self._unreleased)
        replies = await self.publisher.commands(
            [
                ("SET", self._worker_key(self.worker_id), info, "PX", milliseconds, "GET"),
                ("SADD", self.prefix + "workers", self.worker_id),
                *(("SET", self.prefix + key, stored, "NX") for key, stored in self._owned.items()),
                *(self._release_command(key, stored) for key, stored in unreleased.items()),
            ]
        )
        for key, stored in unreleased.items():
            if self._unreleased.get(key) == stored:
                del self._unreleased[key]
        # Announced before, and the key was gone: Redis lost it (restarted, or the outage
        # outlasted the ttl), and this worker's presence with it.
        lost = self._announced and replies[0] is None
        self._announced = True
        await self.presence_store.refresh(lost=lost)

    async def workers(self) -> dict[str, bytes]:
        ids = sorted(await self.publisher.command("SMEMBERS", self.prefix + "workers"))
        if not ids:
            return {}
        infos = await self.publisher.command("MGET", *(self._worker_key(i) for i in ids))
        return {
            worker.decode(): info
            for worker, info in zip(ids, infos, strict=True)
            if info is not None
        }

    async def leave(self) -> None:
        await self.presence_store.leave()
        owned, self._owned = {**self._unreleased, **self._owned}, {}
        self._unreleased = {}
        await self.publisher.commands(
            [
                *(self._release_command(key, stored) for key, stored in owned.items()),
                ("DEL", self._worker_key(self.worker_id)),
                ("SREM", self.prefix + "workers", self.worker_id),
            ]
        )

    def _release_command(self, key: str, stored: bytes) -> tuple[str | bytes, ...]:
        """Delete ``key`` if it still holds what this worker stored there (in a pipeline)."""
        return ("EVAL", _RELEASE, "1", self.prefix + key, stored)

    def _worker_key(self, worker: str | bytes) -> bytes:
        name = worker if isinstance(worker, bytes) else worker.encode()
        return self.prefix.encode() + b"worker:" + name

    # -- running -------------------------------------------------------------------------------

    @property
    def healthy(self) -> bool:
        """Both connections up, and every channel with listeners subscribed."""
        return self.publisher.connected and self.subscriber.healthy

    def stats(self) -> BrokerStats:
        """The link's state and totals: both connections' reconnections, the publications
        refused, the times messages may have been missed."""
        return BrokerStats(
            up=self.healthy,
            reconnects=self.publisher.reconnects + self.subscriber.reconnects,
            unsent=self.refused + self.failed,
            missed=self.missed,
        )

    async def check(self) -> None:
        """Connect and log in once, to raise :class:`~ratchetpy.BrokerUnavailable` (or the
        refused login's :class:`~ratchetpy.RedisReplyError`) as itself: :meth:`run` and a
        server that starts it raise such errors inside an exception group. A checkpoint."""
        connection = await RedisConnection.open(
            self.address, ssl_context=self.publisher.ssl_context
        )
        await connection.aclose()

    async def flush(self, timeout: float) -> int:
        """Wait up to ``timeout`` seconds until nothing queued is left unsent (passed on or
        refused); returns how many still were. A checkpoint."""
        deadline = trio.current_time() + timeout
        with trio.move_on_at(deadline):
            while self._unsent:
                await self._sent.wait()
        unwritten = await self.presence_store.flush(max(0.0, deadline - trio.current_time()))
        return self._unsent + unwritten

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Connect both connections and send what is queued, until cancelled. Reports
        started once both are up; raises BrokerUnavailable if either cannot connect."""
        await self.check()
        async with trio.open_nursery() as nursery:
            await nursery.start(self.publisher.run)
            await nursery.start(self.subscriber.run)
            nursery.start_soon(self._sender)
            nursery.start_soon(self._watcher)
            nursery.start_soon(self.presence_store.run)
            logger.info("broker: worker %s on %s", self.worker_id, self.address.describe())
            self._running = True
            try:
                task_status.started()
                await trio.sleep_forever()
            finally:
                self._running = False

    # -- internals -----------------------------------------------------------------------------

    def _enqueue(self, channel: str, body: bytes, done: trio.Event | None) -> _Outgoing | None:
        if not self._running:
            # Nothing would ever send it, and an awaiting caller would wait forever.
            raise InvalidStateError("publishing through a RedisBroker whose run() is not running")
        outgoing = _Outgoing(channel, body, done)
        try:
            self._send.send_nowait(outgoing)
        except trio.WouldBlock:
            self.refused += 1
            return None
        self._unsent += 1
        return outgoing

    def _envelope(self, item: _Outgoing) -> tuple[str, bytes]:
        # Numbered as it is sent, so that a refusal before sending leaves no gap: a gap then
        # means a message was sent and not received.
        counter = self._sequences.get(item.channel)
        if counter is None:
            counter = self._sequences[item.channel] = itertools.count(1)
        envelope = Envelope(self.worker_id, next(counter), item.data)
        return self.prefix + item.channel, envelope.encode()

    async def _sender(self) -> None:
        while True:
            batch = await receive_batch(self._queue, _BATCH)
            outcomes: list[BaseException | None]
            try:
                with trio.move_on_after(self.buffer_time):
                    await self.publisher.wait_connected()
                if not self.publisher.connected:
                    # Refused before being numbered: the others see no gap for these.
                    raise self.publisher.unreachable()
                replies = await self.publisher.publish_many(
                    [self._envelope(item) for item in batch]
                )
                outcomes = [reply if isinstance(reply, BrokerError) else None for reply in replies]
                receivers = [0 if isinstance(reply, BrokerError) else reply for reply in replies]
            except BrokerError as exc:
                outcomes = [exc] * len(batch)
                receivers = [0] * len(batch)
            unseen = [
                error
                for item, error in zip(batch, outcomes, strict=True)
                if error and item.done is None
            ]
            self.failed += sum(1 for error in outcomes if error) - len(unseen)
            if unseen:
                self.refused += len(unseen)
                logger.warning(
                    "%d publications could not be passed on to other workers: %s",
                    len(unseen),
                    unseen[0],
                )
            for item, error, count in zip(batch, outcomes, receivers, strict=True):
                if item.done is not None:
                    item.error, item.receivers = error, int(count)
                    item.done.set()
            self._unsent -= len(batch)
            self._sent.set()
            self._sent = trio.Event()

    async def _watcher(self) -> None:
        """Tell the watchers of each worker that is gone from the registry."""
        while True:
            await trio.sleep(_WATCH_EVERY)
            workers = list(self._watched)
            if not workers:
                continue
            try:
                found = await self.publisher.commands(
                    [("EXISTS", self._worker_key(worker)) for worker in workers]
                )
            except BrokerError as exc:
                logger.debug("could not look the watched workers up: %s", exc)
                continue
            for worker, exists in zip(workers, found, strict=True):
                if exists:
                    self._unseen.discard(worker)
                elif worker not in self._unseen:
                    self._unseen.add(worker)
                else:
                    self._unseen.discard(worker)
                    for callback in self._watched.pop(worker, ()):
                        call_logged(callback, worker)

    def _received(self, channel: bytes, data: bytes) -> None:
        name = channel.decode("utf-8", "replace").removeprefix(self.prefix)
        try:
            envelope = Envelope.decode(data)
        except RedisProtocolError as exc:
            self.malformed += 1
            logger.warning("dropped a message on %s: %s", name, exc)
            return
        if envelope.origin == self.worker_id:
            return  # our own: delivered locally when it was published
        if name not in self._handlers:
            return  # unlistened, and Redis not told yet: not counted, not delivered
        verdict, missed = self._tracker.observe(channel, envelope)
        if verdict is Verdict.DUPLICATE:
            self.duplicates += 1
            return
        if verdict is Verdict.GAP:
            logger.warning("%d messages of %s from %s were missed", missed, name, envelope.origin)
            self._missed(name)
        for handler in list(self._handlers.get(name, ())):
            call_logged(handler, envelope.body)

    def _resubscribed(self, channels: frozenset[bytes]) -> None:
        for channel in sorted(channels):
            self._missed(channel.decode("utf-8", "replace").removeprefix(self.prefix))

    def _missed(self, channel: str) -> None:
        self.missed += 1
        for callback in list(self._missed_callbacks):
            call_logged(callback, channel)


if TYPE_CHECKING:

    def _is_a_message_broker(broker: RedisBroker) -> MessageBroker:
        return broker
