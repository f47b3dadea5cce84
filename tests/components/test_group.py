"""Group: a set of connections that spans workers. In one process it is a set plus
broadcast; with two workers sharing a real redis-server, a message sent on either reaches the
members on both, once, the sender excluded, and a worker listens to the group only while it
has members there. Clients are the websockets library's."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
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
from ratchetpy.broker import MemoryBroker
from ratchetpy.components.group import decode_group_message, encode_group_message
from ratchetpy.io.redis import RedisConnection
from ratchetpy.io.redis_broker import RedisBroker
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
