"""Group: a named set of connections that spans every worker (what ``self.clients = set()``
is to one process).

A Ratchet component keeps its clients in a set, which cannot cross processes. A
:class:`Group` is used the same way, and a message sent to it reaches its members on every
worker of every host that shares the broker:

.. code-block:: python

    class Chat(MessageComponent):
        def __init__(self):
            self.clients = Group("chat")

        def on_open(self, conn):
            self.clients.add(conn)

        def on_message(self, sender, msg):
            self.clients.send(msg, exclude=[sender])   # the others, on every worker

        def on_close(self, conn):
            self.clients.discard(conn)

Each worker holds its own members (the connections it serves) and delivers to them itself,
encoding the frame once (:func:`~ratchetpy.broadcast`); the other workers get the message
once through the broker, on the channel ``group:<name>``, which a worker listens to only
while it has members. Exclusions need not cross: a connection object always belongs to the
worker that sends, so the others deliver to all of their members.

Without a broker (one process) a group is a set plus :func:`~ratchetpy.broadcast`, and nothing
else happens.

Who is in the group is known across workers too (the broker's presence, scope
``group:<name>``): ``await group.count()``, ``await group.members()`` and
``await group.users()`` cover every worker, and :meth:`Group.on_presence` tells when a user
comes online in the group (their first connection in it on any worker) or goes offline
(their last one left, or died with its worker).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator

from ..broker import MessageBroker, PresenceEntry, PresenceEvent, current_broker
from ..exceptions import InvalidStateError
from .connection import Connection
from .ws_connection import broadcast

__all__ = ["Group"]

logger = logging.getLogger("ratchetpy.broker")

_TEXT, _BINARY = b"t", b"b"


def encode_group_message(message: str | bytes) -> bytes:
    """The body of a group message on the broker: ``t`` + UTF-8 text, or ``b`` + binary."""
    if isinstance(message, str):
        return _TEXT + message.encode()
    if isinstance(message, (bytes, bytearray, memoryview)):
        return _BINARY + bytes(message)
    raise TypeError(f"a group sends str or bytes, not {type(message).__name__}")


def decode_group_message(body: bytes) -> str | bytes:
    """The message a group body carries; ValueError if it is not one."""
    kind, payload = body[:1], body[1:]
    if kind == _BINARY:
        return payload
    if kind == _TEXT:
        try:
            return payload.decode()
        except UnicodeDecodeError:
            raise ValueError("a text group message that is not UTF-8") from None
    raise ValueError(f"not a group message (kind {kind!r})")


class Group:
    """A named set of connections whose messages reach its members on every worker.

    ``name`` is what the workers agree on: groups of the same name on different workers are
    one group. ``broker``: the broker to reach other workers through; by default the one of
    the server whose members the group has, or else of the server running the handler
    (:func:`~ratchetpy.broker.current_broker`), so a group made in a component's
    ``__init__`` needs none. Used outside any server's tasks without members (from a task of
    your own beside ``app.serve``) it cannot know: pass ``broker=app.broker`` there.

    ``len(group)``, ``conn in group`` and iteration are about this worker's members; the
    awaitable :meth:`count`, :meth:`members` and :meth:`users` about every worker's.
    """

    def __init__(self, name: str, *, broker: MessageBroker | None = None) -> None:
        if not name:
            raise ValueError("a group needs a name")
        self.name = name
        self.channel = f"group:{name}"
        self._broker = broker
        self._members: set[Connection] = set()
        # The broker listened to while this worker has members (to stop listening to it).
        self._listening: MessageBroker | None = None
        self._presence_callbacks: list[Callable[[PresenceEvent], object]] = []

    def __repr__(self) -> str:
        return f"<Group {self.name!r}: {len(self._members)} here>"

    def __len__(self) -> int:
        return len(self._members)

    def __contains__(self, conn: object) -> bool:
        return conn in self._members

    def __iter__(self) -> Iterator[Connection]:
        return iter(list(self._members))

    @property
    def broker(self) -> MessageBroker:
        """The broker this group reaches other workers through. Raises
        :class:`~ratchetpy.InvalidStateError` where there is none to know of."""
        broker = self._broker or self._listening or current_broker()
        if broker is None:
            # Guessing "one process" here could drop what other workers' members should get.
            raise InvalidStateError(
                f"group {self.name!r} is used outside a server and has no members: "
                "make it with Group(name, broker=app.broker)"
            )
        return broker

    def add(self, conn: Connection) -> None:
        """Make ``conn`` a member. Not a checkpoint.

        It receives what this worker's members are sent at once, and what other workers send
        once this worker listens to the group, which for its first member here takes a round
        trip to the broker: ``await join(conn)`` waits for that.
        """
        broker = self.broker
        if self._listening is None:
            broker.listen(self.channel, self._received)
            broker.on_presence(self.channel, self._presence)
            self._listening = broker
        broker.present(self.channel, str(conn.resource_id), user=conn.user_id)
        self._members.add(conn)

    async def join(self, conn: Connection) -> None:
        """:meth:`add`, then wait until this worker receives the group's messages from the
        others and ``conn`` is counted by every worker. A checkpoint. Raises
        :class:`~ratchetpy.BrokerUnavailable` if the broker did not confirm within about a
        second; ``conn`` stays a member, receives the others' messages once it does, and is
        counted once the presence is written again."""
        self.add(conn)
        assert self._listening is not None
        await self._listening.wait_listening(self.channel)
        await self._listening.presence_written()  # counted by every worker from now on

    def discard(self, conn: Connection) -> None:
        """Remove ``conn`` if it is a member (call it from ``on_close``). Not a checkpoint."""
        if conn not in self._members:
            return
        self._members.discard(conn)
        listening = self._listening
        assert listening is not None  # (it has had a member)
        listening.absent(self.channel, str(conn.resource_id))
        if not self._members:
            listening.unlisten(self.channel, self._received)
            listening.off_presence(self.channel, self._presence)
            self._listening = None

    async def count(self) -> int:
        """How many members the group has on every worker. A checkpoint with other workers;
        :class:`~ratchetpy.BrokerError` if the broker could not tell."""
        return await self.broker.presence_count(self.channel)

    async def members(self) -> list[PresenceEntry]:
        """Every worker's members: each :class:`~ratchetpy.broker.PresenceEntry` says the
        worker, the member (its connection's ``resource_id`` there) and its ``user_id``. A
        checkpoint with other workers; :class:`~ratchetpy.BrokerError` if the broker could
        not tell."""
        return await self.broker.presence(self.channel)

    async def users(self) -> set[str]:
        """The user ids of every worker's members ("who is in this room"; anonymous members
        are not in it). As :meth:`members`."""
        return {entry.user for entry in await self.members() if entry.user is not None}

    def on_presence(self, callback: Callable[[PresenceEvent], object]) -> None:
        """Call ``callback(event)`` with each :class:`~ratchetpy.broker.PresenceEvent` of the
        group: a member joining or leaving on any worker (``"join"``, ``"leave"``), and a user
        coming online (``"online"``: their first connection in it on any worker) or going
        offline (``"offline"``: their last left, here or on another worker, or died with its
        worker), once per user, not per connection. Called while this worker has members.
        Not a checkpoint."""
        self._presence_callbacks.append(callback)

    def _presence(self, event: PresenceEvent) -> None:
        for callback in list(self._presence_callbacks):
            try:
                callback(event)
            except Exception:  # one failing callback stops neither the others nor the group
                logger.exception("group %s: a presence callback (%r) failed", self.name, callback)

    def send(self, message: str | bytes, *, exclude: Iterable[Connection] = ()) -> None:
        """Send ``message`` to every member on every worker but those in ``exclude``.

        Not a checkpoint and never blocks: this worker's members get it at once (as
        :func:`~ratchetpy.broadcast`); for the others it is queued to the broker, which logs
        and counts a refusal (Redis away for longer than its buffer time).
        :meth:`publish` waits and raises instead.
        """
        broker = self.broker
        body = self._body_for_others(broker, message)
        self._deliver(message, exclude)
        if body is not None:
            broker.publish_nowait(self.channel, body)

    async def publish(self, message: str | bytes, *, exclude: Iterable[Connection] = ()) -> None:
        """As :meth:`send`, then wait until the broker accepted the message for the other
        workers. A checkpoint; raises :class:`~ratchetpy.BrokerError` if it did not (this
        worker's members got it regardless)."""
        broker = self.broker
        body = self._body_for_others(broker, message)
        self._deliver(message, exclude)
        if body is not None:
            await broker.publish(self.channel, body)

    @staticmethod
    def _body_for_others(broker: MessageBroker, message: str | bytes) -> bytes | None:
        # Encoded (or, in one process, only checked) before delivering, so that a wrong type
        # raises before anyone got it, members or not.
        if broker.distributed:
            return encode_group_message(message)
        if not isinstance(message, (str, bytes, bytearray, memoryview)):
            encode_group_message(message)  # raises the TypeError that says why
        return None

    def _deliver(self, message: str | bytes, exclude: Iterable[Connection]) -> None:
        members = self._members
        if exclude:
            skipped = set(exclude)
            members = {conn for conn in members if conn not in skipped}
        broadcast(members, message)

    def _received(self, body: bytes) -> None:
        try:
            message = decode_group_message(body)
        except ValueError as exc:
            logger.warning("group %s: dropped a message from another worker: %s", self.name, exc)
            return
        broadcast(self._members, message)
