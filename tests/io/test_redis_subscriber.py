"""RedisSubscriber against a real redis-server: it receives, it comes back after CLIENT KILL
and after Redis restarts (resubscribed, with the missed-messages signal), and a silent
connection is found out by the probe."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import trio
import trio.testing

from ratchetpy import BrokerUnavailable
from ratchetpy.io.redis import RedisConnection
from ratchetpy.io.redis_subscriber import RedisSubscriber
from support.redis import RedisProcess, SilentServer, free_port, redis_server


class Inbox:
    def __init__(self) -> None:
        self.send, self.receive = trio.open_memory_channel[tuple[bytes, bytes]](100)
        self.resubscribed: list[frozenset[bytes]] = []
        self.resubscribed_event = trio.Event()

    def on_message(self, channel: bytes, data: bytes) -> None:
        self.send.send_nowait((channel, data))

    def on_resubscribed(self, channels: frozenset[bytes]) -> None:
        self.resubscribed.append(channels)
        self.resubscribed_event.set()

    async def next(self) -> tuple[bytes, bytes]:
        with trio.fail_after(5):
            return await self.receive.receive()


def subscriber_for(url: str, inbox: Inbox, **options: object) -> RedisSubscriber:
    options.setdefault("client_name", "sub")
    return RedisSubscriber(
        url,
        on_message=inbox.on_message,
        on_resubscribed=inbox.on_resubscribed,
        **options,  # type: ignore[arg-type]
    )


async def numsub(conn: RedisConnection, channel: str) -> int:
    reply = await conn.execute("PUBSUB", "NUMSUB", channel)
    return int(reply[1])


async def test_subscribe_receive_unsubscribe(redis: RedisProcess, nursery: trio.Nursery) -> None:
    inbox = Inbox()
    sub = subscriber_for(redis.url, inbox)
    await nursery.start(sub.run)
    async with await RedisConnection.open(redis.url) as pub:
        await sub.subscribe("room")  # confirmed by Redis when it returns
        assert await numsub(pub, "room") == 1 and sub.healthy
        assert await pub.execute("PUBLISH", "room", b"hello") == 1
        assert await inbox.next() == (b"room", b"hello")
        await sub.unsubscribe("room")
        await pub.execute("PUBLISH", "room", b"gone")  # may still arrive; must be dropped
        await sub.subscribe("other")
        await pub.execute("PUBLISH", "other", b"next")
        assert await inbox.next() == (b"other", b"next")
        assert sub.channels == {b"other"}


async def test_after_client_kill_it_resubscribes_and_says_messages_were_missed(
    redis: RedisProcess, nursery: trio.Nursery
) -> None:
    inbox = Inbox()
    sub = subscriber_for(redis.url, inbox)
    await nursery.start(sub.run)
    async with await RedisConnection.open(redis.url) as admin:
        await sub.subscribe("a")
        await sub.subscribe("b")
        assert await admin.execute("CLIENT", "KILL", "TYPE", "pubsub") == 1
        with trio.fail_after(5):
            await inbox.resubscribed_event.wait()
        assert inbox.resubscribed == [frozenset({b"a", b"b"})]
        assert sub.reconnects == 1 and sub.healthy
        assert await numsub(admin, "a") == 1 and await numsub(admin, "b") == 1
        await admin.execute("PUBLISH", "b", b"after")
        assert await inbox.next() == (b"b", b"after")


async def test_it_comes_back_when_redis_restarts(tmp_path: Path, nursery: trio.Nursery) -> None:
    port = free_port()
    inbox = Inbox()
    with redis_server(tmp_path, port=port) as first:
        sub = subscriber_for(first.url, inbox)
        await nursery.start(sub.run)
        await sub.subscribe("room")
    # Redis is down: a subscription now fails visibly, and is not kept.
    with pytest.raises(BrokerUnavailable, match="did not confirm the subscription"):
        await sub.subscribe("while-down")
    assert sub.channels == {b"room"} and not sub.healthy
    with redis_server(tmp_path, port=port) as second:
        with trio.fail_after(10):
            await inbox.resubscribed_event.wait()
        assert inbox.resubscribed == [frozenset({b"room"})]
        async with await RedisConnection.open(second.url) as pub:
            assert await pub.execute("PUBLISH", "room", b"back") == 1
        assert await inbox.next() == (b"room", b"back")
        assert sub.healthy


async def test_a_silent_connection_is_found_out_by_the_probe(
    autojump_clock: trio.testing.MockClock, nursery: trio.Nursery
) -> None:
    # Jump over idle virtual time, but only once real I/O has had its moment (loopback
    # connects take microseconds): a jump must never beat the connection it waits for.
    autojump_clock.autojump_threshold = 0.05
    silent = SilentServer()
    url = await silent.start(nursery)
    sub = subscriber_for(url, Inbox(), client_name=None, probe_interval=5, probe_timeout=3)
    await nursery.start(sub.run)
    start = trio.current_time()
    while sub.reconnects == 0:
        await trio.sleep(1)
    assert 8 <= trio.current_time() - start < 10  # silent for 5 s, then 3 s without a pong
    assert silent.accepted >= 2  # and it connected again


async def test_redis_down_at_start_up_is_an_error(
    caplog: pytest.LogCaptureFixture, nursery: trio.Nursery
) -> None:
    sub = subscriber_for(f"redis://127.0.0.1:{free_port()}/0", Inbox())
    with pytest.raises(BrokerUnavailable, match="cannot connect"):
        await nursery.start(sub.run)
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


async def test_a_subscriber_of_nothing_answers_probes_and_stays(
    redis: RedisProcess, autojump_clock: trio.testing.MockClock, nursery: trio.Nursery
) -> None:
    # Subscribed to no channel, the connection is out of pub/sub mode and Redis answers the
    # probe with a plain +PONG; that once counted as a broken connection every 5 s.
    autojump_clock.autojump_threshold = 0.05
    sub = subscriber_for(redis.url, Inbox(), probe_interval=5, probe_timeout=3)
    await nursery.start(sub.run)
    await trio.sleep(30)  # six probes, in virtual time
    assert sub.reconnects == 0 and sub.healthy
    await sub.subscribe("later")
    await sub.unsubscribe("later")  # and back to nothing
    await trio.sleep(30)
    assert sub.reconnects == 0
