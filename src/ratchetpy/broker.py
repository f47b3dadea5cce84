"""The broker seam: what crosses from one worker process to the others.

Everything that fans out (WAMP events, groups, messages to one user's connections, the
publish endpoint) delivers to the connections of its own worker itself, encoding once, as a
single process does; what the *other* workers must see goes through a :class:`MessageBroker`
as bytes on a named channel. Two engines:

* :class:`MemoryBroker`, the default: one process, no other workers, so nothing to send
  (``distributed`` is False and fan-out paths skip encoding for others altogether);
* :class:`~ratchetpy.io.redis_broker.RedisBroker`: many processes and hosts through Redis.

The interface is small on purpose, so that another engine (NATS) fits behind it:

``listen(channel, handler)`` / ``unlisten(channel, handler)``
    ``handler(body)`` is called, in order, with every body other workers publish to
    ``channel``. The first listener of a channel subscribes the worker to it, the last one to
    leave unsubscribes it: a worker with no listener of a channel receives none of its
    traffic. Neither waits (a synchronous ``on_open`` can call them).
``wait_listening(channel)`` (awaitable)
    Returns once the worker receives the traffic of ``channel``, and raises
    :class:`~ratchetpy.BrokerUnavailable` if the broker did not confirm that within about a
    second: what an acknowledgement upstream (a WAMP SUBSCRIBED) waits for.
``publish(channel, body)`` (awaitable) and ``publish_nowait(channel, body)``
    Pass ``body`` to the listeners of ``channel`` on every *other* worker. ``publish``
    returns once the broker accepted it, with how many workers listened to ``channel`` then
    (what a call to one worker checks), and raises :class:`~ratchetpy.BrokerError` if it did
    not (within about a second); ``publish_nowait`` does not wait and logs and counts a
    refusal instead, for code that cannot wait (a synchronous handler).
``claim(key, ttl)`` (awaitable)
    True for the first worker to claim ``key`` within ``ttl`` seconds, False for every later
    claim: what makes "at most once" hold across workers (the publish endpoint's replay
    guard). Raises :class:`~ratchetpy.BrokerError` if the broker could not tell.
``acquire(key, value)``, ``owner(key)``, ``release(key)`` (awaitable)
    Ownership for as long as this worker lives: ``acquire`` is True, and records ``value``,
    unless another live worker owns ``key`` (this one may acquire again: what it owns, it
    knows); ``owner`` gives the owner's worker id and value, or ``None``; ``release`` gives
    it up. A key whose owner died (its
    registry entry expired) is free again, and ``leave()`` releases every key this worker
    owns: what keeps a WAMP procedure registered once across workers.
``watch(worker_id, callback)`` / ``unwatch(worker_id, callback)``
    ``callback(worker_id)`` once ``worker_id`` is gone from the registry (it left, or its
    announcement expired): what fails a call whose callee's worker died.
``on_missed(callback)``
    ``callback(channel)`` when messages of ``channel`` may have been missed (after a
    reconnection, or a gap in a worker's sequence): at most once is what Redis gives.
``announce(info, ttl)``, ``workers()``, ``leave()`` (awaitable)
    The registry of live workers: each says every second that it is alive, with ``info`` (its
    statistics), valid for ``ttl`` seconds; ``workers()`` gives every worker whose
    announcement is still valid, so a worker that died (SIGKILL) is gone within ``ttl``, and
    one that stops gracefully ``leave()`` s at once.
``check()``, ``run(task_status=...)``, ``flush(timeout)``, ``healthy``
    The server's side: :class:`~ratchetpy.IoServer` checks the broker can be reached before
    it listens (so a worker that cannot reach Redis says so and does not serve deaf), runs it
    in its nursery while serving, and flushes what is queued before it stops.

The broker of the server running the current task is :func:`current_broker` (set by
:meth:`IoServer.serve <ratchetpy.IoServer.serve>` for every handler, timer and thread
callback it runs), which is how a :class:`~ratchetpy.Group` made in a component's
``__init__`` finds it without being handed the server.

No trio here: :class:`MemoryBroker` needs none, and the Redis engine lives in the I/O layer.
"""

from __future__ import annotations

from collections.abc import Callable
from contextvars import ContextVar
from typing import TYPE_CHECKING, Protocol

__all__ = [
    "Handler",
    "MemoryBroker",
    "MessageBroker",
    "Started",
    "current_broker",
    "serving_broker",
]

#: Called with the body of each message of a channel, in order; must not block.
Handler = Callable[[bytes], object]


class Started(Protocol):
    """What ``run`` reports to once it is up: a trio ``TaskStatus``."""

    def started(self, value: None = None) -> None: ...


class MessageBroker(Protocol):
    """What a fan-out path needs to reach the other workers (see the module docstring)."""

    #: This worker's id, unique among all workers of all hosts.
    worker_id: str

    @property
    def distributed(self) -> bool:
        """True if there may be other workers: only then is anything worth publishing."""
        ...

    def listen(self, channel: str, handler: Handler) -> None:
        """Call ``handler`` with every body other workers publish to ``channel``, from the
        moment the broker confirmed the subscription. Not a checkpoint."""
        ...

    def unlisten(self, channel: str, handler: Handler) -> None:
        """Stop calling ``handler`` for ``channel`` (harmless if it was not). Not a checkpoint."""
        ...

    async def wait_listening(self, channel: str) -> None:
        """Return once this worker receives what others publish to ``channel``. A checkpoint;
        BrokerUnavailable if the broker did not confirm that in time (the listeners stay, and
        receive once it does)."""
        ...

    async def publish(self, channel: str, body: bytes) -> int:
        """Pass ``body`` to the listeners of ``channel`` on the other workers; returns once the
        broker accepted it, with how many workers listened to ``channel`` then. A checkpoint;
        BrokerError if it did not."""
        ...

    def publish_nowait(self, channel: str, body: bytes) -> None:
        """As :meth:`publish`, without waiting: a refusal is logged and counted."""
        ...

    async def claim(self, key: str, ttl: float) -> bool:
        """True if no worker claimed ``key`` within the last ``ttl`` seconds (it is claimed
        now). A checkpoint; BrokerError if the broker could not tell."""
        ...

    async def acquire(self, key: str, value: bytes) -> bool:
        """Own ``key`` with ``value`` unless another live worker owns it (False then). A
        checkpoint; BrokerError if the broker could not tell."""
        ...

    async def owner(self, key: str) -> tuple[str, bytes] | None:
        """The live worker owning ``key`` and its value, or ``None``. A checkpoint;
        BrokerError if the broker could not tell."""
        ...

    async def release(self, key: str) -> None:
        """Stop owning ``key`` (harmless if this worker did not). A checkpoint; BrokerError if
        the broker did not take it (the key is freed when this worker leaves or dies)."""
        ...

    def watch(self, worker_id: str, callback: Callable[[str], object]) -> None:
        """Call ``callback(worker_id)`` once that worker is gone from the registry. Not a
        checkpoint."""
        ...

    def unwatch(self, worker_id: str, callback: Callable[[str], object]) -> None:
        """Forget a :meth:`watch` (harmless if there is none). Not a checkpoint."""
        ...

    def on_missed(self, callback: Callable[[str], object]) -> None:
        """Call ``callback(channel)`` when messages of ``channel`` may have been missed."""
        ...

    async def announce(self, info: bytes, ttl: float) -> None:
        """Say that this worker is alive, with ``info``, for the next ``ttl`` seconds. A
        checkpoint; BrokerError if the broker did not take it."""
        ...

    async def workers(self) -> dict[str, bytes]:
        """The info of every worker whose announcement is still valid, by worker id. A
        checkpoint; BrokerError if the broker could not tell."""
        ...

    async def leave(self) -> None:
        """Withdraw this worker's announcement now (a graceful stop). A checkpoint."""
        ...

    @property
    def healthy(self) -> bool:
        """True while the broker can pass messages on (what a health check reports)."""
        ...

    async def check(self) -> None:
        """Raise BrokerError if the broker cannot be reached now. A checkpoint."""
        ...

    async def run(self, *, task_status: Started) -> None:
        """Keep the broker's connections while serving; report started once they are up."""
        ...

    async def flush(self, timeout: float) -> int:
        """Wait (at most ``timeout`` seconds) until every queued publication was passed on
        or refused; returns how many were still queued then."""
        ...


class MemoryBroker:
    """The broker of a single process: there are no other workers, so nothing is sent.

    Fan-out paths check :attr:`distributed` and deliver locally only, exactly as before any
    broker existed. Listening is recorded (so code written for many workers runs unchanged)
    and never called.
    """

    distributed = False
    healthy = True

    def __init__(self, worker_id: str = "memory") -> None:
        self.worker_id = worker_id
        self._listeners: dict[str, list[Handler]] = {}
        self._info: bytes | None = None  # what this worker announced (it is all of them)
        self._owned: dict[str, bytes] = {}

    def listen(self, channel: str, handler: Handler) -> None:
        self._listeners.setdefault(channel, []).append(handler)

    def unlisten(self, channel: str, handler: Handler) -> None:
        handlers = self._listeners.get(channel, [])
        if handler in handlers:
            handlers.remove(handler)
        if not handlers:
            self._listeners.pop(channel, None)

    async def wait_listening(self, channel: str) -> None:
        return None  # nothing to subscribe to; not a checkpoint either, as nothing waits

    async def publish(self, channel: str, body: bytes) -> int:
        return 0  # no other worker: delivered to all of them

    def publish_nowait(self, channel: str, body: bytes) -> None:
        return None

    async def claim(self, key: str, ttl: float) -> bool:
        return True  # no other worker: what this one remembers itself is all there is

    async def acquire(self, key: str, value: bytes) -> bool:
        self._owned[key] = value  # no other worker to own it
        return True

    async def owner(self, key: str) -> tuple[str, bytes] | None:
        value = self._owned.get(key)
        return None if value is None else (self.worker_id, value)

    async def release(self, key: str) -> None:
        self._owned.pop(key, None)

    def watch(self, worker_id: str, callback: Callable[[str], object]) -> None:
        return None  # the only worker is this one, gone only when nothing is left to tell

    def unwatch(self, worker_id: str, callback: Callable[[str], object]) -> None:
        return None

    def on_missed(self, callback: Callable[[str], object]) -> None:
        return None  # nothing can be missed in one process

    async def announce(self, info: bytes, ttl: float) -> None:
        self._info = info  # (one process: valid while it runs)

    async def workers(self) -> dict[str, bytes]:
        return {} if self._info is None else {self.worker_id: self._info}

    async def leave(self) -> None:
        self._info = None
        self._owned.clear()

    async def check(self) -> None:
        return None

    async def run(self, *, task_status: Started) -> None:
        task_status.started()  # nothing to keep up: the task ends here

    async def flush(self, timeout: float) -> int:
        return 0

    def listening(self, channel: str) -> bool:
        """True while ``channel`` has a listener."""
        return channel in self._listeners


#: The broker of the server whose task is running; IoServer.serve sets it.
serving_broker: ContextVar[MessageBroker] = ContextVar("ratchetpy_serving_broker")


def current_broker() -> MessageBroker | None:
    """The broker of the server running the current task (a handler, a timer, a callback from
    another thread), or ``None`` outside any server. Not a checkpoint."""
    return serving_broker.get(None)


if TYPE_CHECKING:

    def _is_a_message_broker(broker: MemoryBroker) -> MessageBroker:
        return broker
