"""Group: a set of connections that spans workers. In one process it is a set plus
broadcast; with two workers sharing a real redis-server, a message sent on either reaches the
members on both, once, the sender excluded, and a worker listens to the group only while it
has members there. Clients are the websockets library's."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import pytest
import trio
from websockets.trio.client import ClientConnection, connect

from ratchetpy import (
    App,
    BrokerUnavailable,
    Connection,
    Group,
    InvalidStateError,
    MessageComponent,
)
from ratchetpy.broker import MemoryBroker, PresenceEvent
from ratchetpy.components.group import decode_group_message, encode_group_message
from ratchetpy.io.redis import RedisConnection
from ratchetpy.io.redis_broker import RedisBroker
from ratchetpy.testing import RecordingConnection, http_request
from support.brokers import LinkedBrokers
from support.redis import RedisProcess


class Room(MessageComponent):
    """The chat of the tutorial, with a Group instead of a set: "joined" tells the client
    that it is a member (of the whole group, once the join waited for the broker)."""

    def __init__(self) -> None:
        self.members = Group("room")
        self._left, self.left = trio.open_memory_channel[int](100)

    async def on_open(self, conn: Connection) -> None:
        await self.members.join(conn)
        conn.send("joined")

    def on_message(self, sender: Connection, msg: str | bytes) -> None:
        self.members.send(msg, exclude=[sender])

    def on_close(self, conn: Connection) -> None:
        self.members.discard(conn)
        self._left.send_nowait(conn.resource_id)

    async def wait_left(self, count: int) -> None:
        with trio.fail_after(5):
            for _ in range(count):
                await self.left.receive()


def worker(broker: str | None = None, **options: object) -> tuple[App, Room]:
    room = Room()
    app = App(None, 0, "127.0.0.1", broker=RedisBroker(broker, **options) if broker else None)  # type: ignore[arg-type]
    app.route("/room", room)
    return app, room


@asynccontextmanager
async def member(port: int) -> AsyncIterator[ClientConnection]:
    async with connect(f"ws://127.0.0.1:{port}/room") as client:
        with trio.fail_after(5):
            assert await client.recv() == "joined"
        yield client


async def then_only(sender: ClientConnection, *others: ClientConnection) -> None:
    """The next message each of ``others`` gets is the one ``sender`` sends now: nothing it
    was sent before came twice (what ``sender``'s worker passed on came in order)."""
    await sender.send("end")
    with trio.fail_after(5):
        for client in others:
            assert await client.recv() == "end"


def test_group_messages_are_text_or_binary_and_say_so() -> None:
    assert decode_group_message(encode_group_message("héllo")) == "héllo"
    assert decode_group_message(encode_group_message(b"\x00\xff")) == b"\x00\xff"
    with pytest.raises(ValueError, match="not a group message"):
        decode_group_message(b"x123")
    with pytest.raises(ValueError, match="not UTF-8"):
        decode_group_message(b"t\xff")
    with pytest.raises(TypeError, match="not int"):
        encode_group_message(42)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="needs a name"):
        Group("")


async def test_in_one_process_a_group_is_a_set_with_broadcast(nursery: trio.Nursery) -> None:
    app, room = worker()
    port = await nursery.start(app.serve)
    async with member(port) as alice, member(port) as bob, member(port) as carol:
        assert len(room.members) == 3
        await alice.send("hi all")
        assert await bob.recv() == "hi all" and await carol.recv() == "hi all"
        await bob.send(b"\x01binary")
        assert await alice.recv() == b"\x01binary" and await carol.recv() == b"\x01binary"
        await then_only(carol, alice, bob)
        await then_only(alice, carol)
        assert isinstance(
            room.members.broker, MemoryBroker
        )  # the server's, found through its members
    with pytest.raises(InvalidStateError, match="outside a server"):
        room.members.send("to whom?")  # no members, no server: which workers is unknown
    await room.wait_left(3)
    assert len(room.members) == 0


async def test_two_workers_are_one_group(redis: RedisProcess, nursery: trio.Nursery) -> None:
    one, room_one = worker(redis.url, worker_id="one")
    two, room_two = worker(redis.url, worker_id="two")
    port_one = await nursery.start(one.serve)
    port_two = await nursery.start(two.serve)
    async with await RedisConnection.open(redis.url) as admin:

        async def workers_listening() -> int:
            return int((await admin.execute("PUBSUB", "NUMSUB", "ratchetpy:group:room"))[1])

        assert await workers_listening() == 0  # no member anywhere: nobody subscribed
        async with member(port_one) as alice:
            assert await workers_listening() == 1
            async with member(port_two) as bob, member(port_two) as carol:
                assert await workers_listening() == 2
                assert (len(room_one.members), len(room_two.members)) == (1, 2)
                await alice.send("from one")  # the sender is on another worker than both
                assert await bob.recv() == "from one" and await carol.recv() == "from one"
                await bob.send(b"from two")  # one member here, one there: each gets it once
                assert await alice.recv() == b"from two" and await carol.recv() == b"from two"
                await then_only(carol, alice, bob)
                await then_only(alice, bob, carol)
            await room_two.wait_left(2)
            # The last member on two left: it wants the group's traffic no more.
            assert b"ratchetpy:group:room" not in two.broker.subscriber.channels  # type: ignore[attr-defined]
            assert b"ratchetpy:group:room" in one.broker.subscriber.channels  # type: ignore[attr-defined]


async def test_while_redis_is_down_local_members_are_served_and_publish_raises(
    redis: RedisProcess, nursery: trio.Nursery, caplog: pytest.LogCaptureFixture
) -> None:
    app, room = worker(redis.url, worker_id="alone", buffer_time=0.2)
    port = await nursery.start(app.serve)
    async with member(port) as alice, member(port) as bob:
        redis.process.kill()
        redis.process.wait()
        with caplog.at_level(logging.WARNING, "ratchetpy.broker"):
            with pytest.raises(BrokerUnavailable):
                with trio.fail_after(5):
                    await room.members.publish("still here")
            assert await bob.recv() == "still here"  # this worker's members got it regardless
            await alice.send("sent while down")
            assert await bob.recv() == "sent while down"
            with trio.fail_after(5):
                while "could not be passed on" not in caplog.text:
                    await trio.sleep(0.01)  # send() queued it; the refusal is logged
        assert not app.broker.healthy


async def test_a_body_that_is_no_group_message_is_dropped_and_logged(
    redis: RedisProcess, nursery: trio.Nursery, caplog: pytest.LogCaptureFixture
) -> None:
    app, _ = worker(redis.url, worker_id="reader")
    sender = RedisBroker(redis.url, worker_id="writer")
    await nursery.start(sender.run)
    port = await nursery.start(app.serve)
    async with member(port) as alice:
        with caplog.at_level(logging.WARNING, "ratchetpy.broker"):
            await sender.publish("group:room", b"?what")
            await sender.publish("group:room", encode_group_message("fine"))
            assert await alice.recv() == "fine"
        assert "dropped a message from another worker: not a group message" in caplog.text


def connection_of(user: str | None = None) -> RecordingConnection:
    request = http_request("/room")
    request.attach(user_id=user)
    return RecordingConnection(request=request)


async def test_who_is_in_a_group_is_known_across_workers_and_told_once_per_user() -> None:
    here, there = LinkedBrokers(2).brokers
    room_here, room_there = Group("room", broker=here), Group("room", broker=there)
    heard: list[tuple[str, str, str]] = []

    def hear(where: str) -> Callable[[PresenceEvent], None]:
        def heard_it(event: PresenceEvent) -> None:
            if event.kind in ("online", "offline"):  # (joins and leaves: the next test)
                heard.append((where, event.kind, event.user))

        return heard_it

    room_here.on_presence(hear("here"))
    room_there.on_presence(hear("there"))
    alice_1, alice_2, bob, anonymous = (
        connection_of("alice"),
        connection_of("alice"),
        connection_of("bob"),
        connection_of(),
    )
    room_here.add(alice_1)
    room_there.add(bob)
    assert heard == [
        ("here", "online", "alice"),
        ("here", "online", "bob"),
        ("there", "online", "bob"),
    ]
    heard.clear()
    room_there.add(alice_2)  # a second tab: nobody is told
    room_there.add(anonymous)
    assert heard == []
    assert await room_here.count() == 4 and len(room_here) == 1
    assert await room_there.users() == {"alice", "bob"}
    assert {(entry.worker, entry.user) for entry in await room_here.members()} == {
        ("w1", "alice"),
        ("w2", "alice"),
        ("w2", "bob"),
        ("w2", None),
    }

    room_here.discard(alice_1)  # alice is still there
    assert heard == [] and await room_there.count() == 3
    room_there.discard(alice_2)
    assert heard == [("there", "offline", "alice")]  # (no member here: nobody here to tell)
    room_there.discard(alice_2)  # harmless twice


async def test_a_worker_that_dies_takes_its_members_and_their_users_with_it() -> None:
    links = LinkedBrokers(2)
    here, there = links.brokers
    room_here, room_there = Group("room", broker=here), Group("room", broker=there)
    heard: list[tuple[str, str | None, str | None]] = []
    room_here.on_presence(lambda event: heard.append((event.kind, event.user, event.member)))
    room_here.add(connection_of("alice"))
    alice, bob = connection_of("alice"), connection_of("bob")
    room_there.add(alice)
    room_there.add(bob)
    assert heard[-2:] == [("join", "bob", str(bob.resource_id)), ("online", "bob", None)]
    heard.clear()
    links.kill("w2")
    assert sorted(heard) == [
        ("leave", "alice", str(alice.resource_id)),
        ("leave", "bob", str(bob.resource_id)),
        ("offline", "bob", None),
    ]
    assert await room_here.users() == {"alice"}


async def test_in_one_process_presence_is_the_processes_own(
    caplog: pytest.LogCaptureFixture,
) -> None:
    room = Group("room", broker=MemoryBroker())
    heard: list[tuple[str, str]] = []

    def failing(event: PresenceEvent) -> None:
        raise RuntimeError("a bug in a callback")

    room.on_presence(failing)
    room.on_presence(lambda event: heard.append((event.kind, event.user or "")))
    alice = connection_of("alice")
    with caplog.at_level(logging.ERROR, logger="ratchetpy.broker"):
        room.add(alice)
    assert "a presence callback" in caplog.text  # logged; the others still hear
    assert heard == [("join", "alice"), ("online", "alice")] and await room.count() == 1
    room.discard(alice)
    assert heard[2:] == [("leave", "alice"), ("offline", "alice")] and await room.count() == 0
