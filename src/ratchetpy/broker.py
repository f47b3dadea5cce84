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
``present(scope, member, user=, info=)``, ``absent(scope, member)``, ``presence(scope)``,
``presence_count(scope)`` (the last two awaitable)
    Presence: who is in a ``scope`` (a group, a WAMP realm's sessions) on any worker.
    ``present`` / ``absent`` record this worker's members and do not wait (the engine writes
    them in order, and writes everything again after an outage); ``presence`` lists the
    members of every live worker as :class:`PresenceEntry` s, ``presence_count`` counts them.
    A worker that died takes its members with it within the registry's ``ttl``; one that
    leaves takes them at once.
``on_presence(scope, callback)`` / ``off_presence(scope, callback)``
    ``callback(event)`` with a :class:`PresenceEvent` when a member joins or leaves ``scope``
    on any worker (also when it died with its worker), and when a user comes online in it
    (their first member on any worker) or goes offline (their last one left): once per
    user, not once per tab. Every worker listening sees the events in the same order.
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

import json
import logging
from collections.abc import Callable
from contextvars import ContextVar
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal, Protocol

__all__ = [
    "BrokerStats",
    "Handler",
    "MemoryBroker",
    "MessageBroker",
    "PresenceEntry",
    "PresenceEvent",
    "Started",
    "current_broker",
    "presence_channel",
    "serving_broker",
]

logger = logging.getLogger("ratchetpy.broker")

#: Called with the body of each message of a channel, in order; must not block.
Handler = Callable[[bytes], object]


@dataclass(frozen=True, slots=True)
class BrokerStats:
    """How a broker's link to the other workers has fared (:meth:`MessageBroker.stats`)."""

    #: The link can pass messages on now (:attr:`MessageBroker.healthy`).
    up: bool
    #: Connections to the broker lost (and so reconnections attempted) since it started.
    reconnects: int
    #: Publications for other workers it could not pass on (refused or failed).
    unsent: int
    #: Times messages from other workers may have been missed: a gap in a worker's
    #: numbering, or a resubscription after a reconnection.
    missed: int


@dataclass(frozen=True, slots=True)
class PresenceEntry:
    """One member of presence scope ``scope``: on which worker, its id there, the user it is
    (or ``None``) and what it said about itself (``info``, text of its own format)."""

    scope: str
    worker: str
    member: str
    user: str | None
    info: str


@dataclass(frozen=True, slots=True)
class PresenceEvent:
    """What changed in ``scope``: member ``member`` (with its ``user`` and ``info``) joined or
    left, or user ``user`` came online (its first member anywhere) or went offline (its last
    one left). ``member`` is ``None`` and ``info`` empty for the users' events."""

    kind: Literal["join", "leave", "online", "offline"]
    scope: str
    user: str | None
    member: str | None = None
    info: str = ""

    @classmethod
    def decode(cls, scope: str, body: bytes) -> PresenceEvent:
        """Read a body of ``scope``'s presence channel (``[kind, user, member, info]``, which
        the engine writes); ValueError if it is not one."""
        try:
            kind, user, member, info = json.loads(body)
        except (ValueError, TypeError):
            raise ValueError(f"not a presence event: {body[:80]!r}") from None
        # (An empty string for "none": what the Redis scripts send.)
        user, member = user or None, member or None
        if (
            kind not in _KINDS
            or not isinstance(user or "", str)
            or not isinstance(member or "", str)
            or not isinstance(info, str)
            or (member is None) != (kind in ("online", "offline"))
            or (user is None and kind in ("online", "offline"))
        ):
            raise ValueError(f"not a presence event: {body[:80]!r}")
        return cls(kind, scope, user, member, info)


_KINDS = ("join", "leave", "online", "offline")


def presence_channel(scope: str) -> str:
    """The channel of ``scope``'s :class:`PresenceEvent` s."""
    return f"presence:{scope}"


def check_user(user: str | None) -> None:
    """A user id presence can store: ValueError for an empty one or one with a newline."""
    if user is not None and (not user or "\n" in user):
        raise ValueError(f"a user id for presence is non-empty and has no newline: {user!r}")


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

    def present(self, scope: str, member: str, *, user: str | None = None, info: str = "") -> None:
        """``member`` of this worker is in ``scope`` (again: ``info`` is replaced). Not a
        checkpoint; ValueError for a user id that :func:`check_user` refuses."""
        ...

    def absent(self, scope: str, member: str) -> None:
        """``member`` of this worker left ``scope`` (harmless if it was not there). Not a
        checkpoint."""
        ...

    async def presence_written(self) -> None:
        """Return once this worker's presence changes so far are in the broker (seen by every
        worker's reads). A checkpoint; BrokerError if they were not within about a second."""
        ...

    async def presence(self, scope: str) -> list[PresenceEntry]:
        """The members of ``scope`` on every live worker. A checkpoint; BrokerError if the
        broker could not tell."""
        ...

    async def presence_count(self, scope: str) -> int:
        """How many members ``scope`` has on every live worker. A checkpoint; BrokerError if
        the broker could not tell."""
        ...

    def on_presence(self, scope: str, callback: Callable[[PresenceEvent], object]) -> None:
        """Call ``callback`` with each :class:`PresenceEvent` of ``scope``: members joining
        and leaving, users coming online and going offline. Not a checkpoint."""
        ...

    def off_presence(self, scope: str, callback: Callable[[PresenceEvent], object]) -> None:
        """Forget an :meth:`on_presence` (harmless if there is none). Not a checkpoint."""
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

    def stats(self) -> BrokerStats:
        """How the link has fared since it started (what the metrics report). Not a
        checkpoint."""
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
        self._members: dict[str, dict[str, tuple[str | None, str]]] = {}
        self._tabs: dict[str, dict[str, int]] = {}  # scope -> user -> members
        self._presence_callbacks: dict[str, list[Callable[[PresenceEvent], object]]] = {}

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

    def present(self, scope: str, member: str, *, user: str | None = None, info: str = "") -> None:
        check_user(user)
        members = self._members.setdefault(scope, {})
        before = members.get(member)
        members[member] = (user, info)
        if before is not None and before[0] == user:
            return  # new info only
        if before is not None:
            self._left(scope, member, before[0])
        self._tell(PresenceEvent("join", scope, user, member, info))
        if user is not None:
            tabs = self._tabs.setdefault(scope, {})
            tabs[user] = tabs.get(user, 0) + 1
            if tabs[user] == 1:
                self._tell(PresenceEvent("online", scope, user))

    def absent(self, scope: str, member: str) -> None:
        members = self._members.get(scope, {})
        before = members.pop(member, None)
        if not members:
            self._members.pop(scope, None)
        if before is not None:
            self._left(scope, member, before[0])

    async def presence_written(self) -> None:
        return None

    async def presence(self, scope: str) -> list[PresenceEntry]:
        return [
            PresenceEntry(scope, self.worker_id, member, user, info)
            for member, (user, info) in self._members.get(scope, {}).items()
        ]

    async def presence_count(self, scope: str) -> int:
        return len(self._members.get(scope, ()))

    def on_presence(self, scope: str, callback: Callable[[PresenceEvent], object]) -> None:
        self._presence_callbacks.setdefault(scope, []).append(callback)

    def off_presence(self, scope: str, callback: Callable[[PresenceEvent], object]) -> None:
        callbacks = self._presence_callbacks.get(scope, [])
        if callback in callbacks:
            callbacks.remove(callback)
        if not callbacks:
            self._presence_callbacks.pop(scope, None)

    def on_missed(self, callback: Callable[[str], object]) -> None:
        return None  # nothing can be missed in one process

    def _left(self, scope: str, member: str, user: str | None) -> None:
        self._tell(PresenceEvent("leave", scope, user, member))
        if user is None:
            return
        tabs = self._tabs[scope]
        tabs[user] -= 1
        if tabs[user] == 0:
            del tabs[user]
            if not tabs:
                del self._tabs[scope]
            self._tell(PresenceEvent("offline", scope, user))

    def _tell(self, event: PresenceEvent) -> None:
        for callback in list(self._presence_callbacks.get(event.scope, ())):
            try:
                callback(event)
            except Exception:  # one failing callback stops neither the others nor the caller
                logger.exception("a presence callback (%r) failed", callback)

    async def announce(self, info: bytes, ttl: float) -> None:
        self._info = info  # (one process: valid while it runs)

    async def workers(self) -> dict[str, bytes]:
        return {} if self._info is None else {self.worker_id: self._info}

    async def leave(self) -> None:
        self._info = None
        self._owned.clear()
        for scope, members in list(self._members.items()):
            for member in list(members):
                self.absent(scope, member)

    def stats(self) -> BrokerStats:
        return BrokerStats(up=True, reconnects=0, unsent=0, missed=0)

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
