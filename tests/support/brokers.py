"""Brokers for tests of what crosses workers without Redis: :class:`LinkedBrokers` joins the
brokers of several in-process workers, so that what one publishes reaches the listeners of
the others at once (the Redis engine is tested against a real redis-server elsewhere)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

import trio

from ratchetpy.broker import (
    BrokerStats,
    Handler,
    MessageBroker,
    PresenceEntry,
    PresenceEvent,
    Started,
    check_user,
    serving_broker,
)
from ratchetpy.exceptions import BrokerUnavailable


class LinkedBroker:
    """One worker's broker of a :class:`LinkedBrokers` set. ``down = True`` makes it act as
    one whose Redis is away: confirmations and acknowledged publications fail, others are
    refused and counted."""

    distributed = True

    def __init__(self, links: LinkedBrokers, worker_id: str) -> None:
        self.links = links
        self.worker_id = worker_id
        self.handlers: dict[str, list[Handler]] = {}
        self.published: list[tuple[str, bytes]] = []
        self.refused = 0
        self.down = False
        self.presence_callbacks: dict[str, list[Callable[[PresenceEvent], object]]] = {}

    @property
    def healthy(self) -> bool:
        return not self.down

    def stats(self) -> BrokerStats:
        return BrokerStats(up=not self.down, reconnects=0, unsent=self.refused, missed=0)

    def listen(self, channel: str, handler: Handler) -> None:
        self.handlers.setdefault(channel, []).append(handler)

    def unlisten(self, channel: str, handler: Handler) -> None:
        handlers = self.handlers.get(channel, [])
        if handler in handlers:
            handlers.remove(handler)
        if not handlers:
            self.handlers.pop(channel, None)

    async def wait_listening(self, channel: str) -> None:
        await trio.lowlevel.checkpoint()
        if self.down:
            raise BrokerUnavailable("the linked broker is down")

    async def publish(self, channel: str, body: bytes) -> int:
        await trio.lowlevel.checkpoint()
        if self.down:
            raise BrokerUnavailable("the linked broker is down")
        return self._pass_on(channel, body)

    def publish_nowait(self, channel: str, body: bytes) -> None:
        if self.down:
            self.refused += 1
            return
        self._pass_on(channel, body)

    def on_missed(self, callback: Callable[[str], object]) -> None:
        return None

    async def check(self) -> None:
        await trio.lowlevel.checkpoint()

    async def run(self, *, task_status: Started) -> None:
        task_status.started()

    async def claim(self, key: str, ttl: float) -> bool:
        await trio.lowlevel.checkpoint()
        if self.down:
            raise BrokerUnavailable("the linked broker is down")
        if key in self.links.claimed:
            return False
        self.links.claimed.add(key)  # (never expires: tests are shorter than any ttl)
        return True

    async def acquire(self, key: str, value: bytes) -> bool:
        await self._reachable()
        current = self.links.owned.get(key)
        if current is not None and current[0] not in {self.worker_id, *self.links.dead}:
            return False
        self.links.owned[key] = (self.worker_id, value)
        return True

    async def owner(self, key: str) -> tuple[str, bytes] | None:
        await self._reachable()
        current = self.links.owned.get(key)
        return None if current is None or current[0] in self.links.dead else current

    async def release(self, key: str) -> None:
        await self._reachable()
        if self.links.owned.get(key, ("",))[0] == self.worker_id:
            del self.links.owned[key]

    def watch(self, worker_id: str, callback: Callable[[str], object]) -> None:
        if worker_id in self.links.dead:
            callback(worker_id)
        else:
            self.links.watchers.setdefault(worker_id, []).append(callback)

    def unwatch(self, worker_id: str, callback: Callable[[str], object]) -> None:
        callbacks = self.links.watchers.get(worker_id, [])
        if callback in callbacks:
            callbacks.remove(callback)

    def present(self, scope: str, member: str, *, user: str | None = None, info: str = "") -> None:
        check_user(user)
        members = self.links.members.setdefault((self.worker_id, scope), {})
        before = members.pop(member, None)
        if before is not None and before[0] == user:
            members[member] = (user, info)
            return
        if before is not None:
            self.links.left(scope, member, before[0])
        members[member] = (user, info)
        self.links.tell(PresenceEvent("join", scope, user, member, info))
        if user is not None and self.links.tabs(scope, user) == 1:
            self.links.tell(PresenceEvent("online", scope, user))

    def absent(self, scope: str, member: str) -> None:
        before = self.links.members.get((self.worker_id, scope), {}).pop(member, None)
        if before is not None:
            self.links.left(scope, member, before[0])

    async def presence_written(self) -> None:
        await self._reachable()

    async def presence(self, scope: str) -> list[PresenceEntry]:
        await self._reachable()
        return self.links.entries(scope)

    async def presence_count(self, scope: str) -> int:
        return len(await self.presence(scope))

    def on_presence(self, scope: str, callback: Callable[[PresenceEvent], object]) -> None:
        self.presence_callbacks.setdefault(scope, []).append(callback)

    def off_presence(self, scope: str, callback: Callable[[PresenceEvent], object]) -> None:
        callbacks = self.presence_callbacks.get(scope, [])
        if callback in callbacks:
            callbacks.remove(callback)

    async def announce(self, info: bytes, ttl: float) -> None:
        await trio.lowlevel.checkpoint()
        self.links.announced[self.worker_id] = info

    async def workers(self) -> dict[str, bytes]:
        await trio.lowlevel.checkpoint()
        return dict(self.links.announced)

    async def leave(self) -> None:
        await trio.lowlevel.checkpoint()
        self.links.announced.pop(self.worker_id, None)
        for key, (worker, _) in list(self.links.owned.items()):
            if worker == self.worker_id:
                del self.links.owned[key]
        for worker, scope in list(self.links.members):
            if worker == self.worker_id:
                for member in list(self.links.members[worker, scope]):
                    self.absent(scope, member)

    async def flush(self, timeout: float) -> int:
        await trio.lowlevel.checkpoint()
        return 0

    async def _reachable(self) -> None:
        await trio.lowlevel.checkpoint()
        if self.down:
            raise BrokerUnavailable("the linked broker is down")

    def _pass_on(self, channel: str, body: bytes) -> int:
        self.published.append((channel, body))
        # As Redis counts: every listening worker, this one too (which drops its own).
        receivers = int(bool(self.handlers.get(channel)))
        for other in self.links.brokers:
            if other is not self and other.worker_id not in self.links.dead:
                handlers = list(other.handlers.get(channel, ()))
                receivers += bool(handlers)
                for handler in handlers:
                    handler(body)
        return receivers


class LinkedBrokers:
    """``LinkedBrokers(2).brokers``: the brokers of two workers that reach each other."""

    def __init__(self, workers: int) -> None:
        self.brokers = [LinkedBroker(self, f"w{n}") for n in range(1, workers + 1)]
        self.claimed: set[str] = set()
        self.announced: dict[str, bytes] = {}
        self.owned: dict[str, tuple[str, bytes]] = {}
        self.dead: set[str] = set()
        self.watchers: dict[str, list[Callable[[str], object]]] = {}

        self.members: dict[tuple[str, str], dict[str, tuple[str | None, str]]] = {}

    def kill(self, worker_id: str) -> None:
        """``worker_id`` died: it receives nothing more, owns nothing, its watchers hear, and
        its members leave (its users go offline where they are nowhere else)."""
        self.dead.add(worker_id)
        self.announced.pop(worker_id, None)
        for callback in self.watchers.pop(worker_id, []):
            callback(worker_id)
        for worker, scope in [key for key in self.members if key[0] == worker_id]:
            for member, (user, _) in self.members.pop((worker, scope)).items():
                self.left(scope, member, user)

    def entries(self, scope: str) -> list[PresenceEntry]:
        return [
            PresenceEntry(scope, worker, member, user, info)
            for (worker, where), members in self.members.items()
            if where == scope and worker not in self.dead
            for member, (user, info) in members.items()
        ]

    def tabs(self, scope: str, user: str) -> int:
        return sum(entry.user == user for entry in self.entries(scope))

    def left(self, scope: str, member: str, user: str | None) -> None:
        self.tell(PresenceEvent("leave", scope, user, member))
        if user is not None and self.tabs(scope, user) == 0:
            self.tell(PresenceEvent("offline", scope, user))

    def tell(self, event: PresenceEvent) -> None:
        for broker in self.brokers:
            if broker.worker_id not in self.dead:
                for callback in list(broker.presence_callbacks.get(event.scope, ())):
                    callback(event)


@contextmanager
def serving(broker: MessageBroker) -> Iterator[None]:
    """Act as a handler of a server with ``broker``: what ``current_broker()`` says inside."""
    token = serving_broker.set(broker)
    try:
        yield
    finally:
        serving_broker.reset(token)


if TYPE_CHECKING:

    def _is_a_message_broker(broker: LinkedBroker) -> MessageBroker:
        return broker
