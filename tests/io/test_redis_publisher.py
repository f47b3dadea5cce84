"""RedisPublisher against a real redis-server: a publication returns once Redis accepted it;
while Redis is away it is refused within the buffer time, never queued; a killed connection
is noticed at once and replaced."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import trio
import trio.testing

from ratchetpy import BrokerUnavailable, RedisReplyError
from ratchetpy.io.redis import RedisConnection
from ratchetpy.io.redis_publisher import RedisPublisher
from ratchetpy.io.redis_subscriber import RedisSubscriber
from support.redis import RedisProcess, SilentServer, free_port, redis_server


async def listening(
    url: str, nursery: trio.Nursery, channel: str
) -> trio.MemoryReceiveChannel[bytes]:
    send, receive = trio.open_memory_channel[bytes](1000)
    sub = RedisSubscriber(url, on_message=lambda _channel, data: send.send_nowait(data))
    await nursery.start(sub.run)
    await sub.subscribe(channel)
    return receive


async def test_publications_arrive_in_order_once_accepted(
    redis: RedisProcess, nursery: trio.Nursery
) -> None:
    received = await listening(redis.url, nursery, "room")
    publisher = RedisPublisher(redis.url, client_name="pub")
    await nursery.start(publisher.run)
    for n in range(300):
        assert await publisher.publish("room", b"%d" % n) == 1
    with trio.fail_after(5):
        got = [await received.receive() for _ in range(300)]
    assert got == [b"%d" % n for n in range(300)]
    assert (publisher.published, publisher.refused) == (300, 0)


async def test_a_killed_connection_is_replaced_before_the_next_publication(
    redis: RedisProcess, nursery: trio.Nursery
) -> None:
    received = await listening(redis.url, nursery, "room")
    publisher = RedisPublisher(redis.url, client_name="pub")
    await nursery.start(publisher.run)
    async with await RedisConnection.open(redis.url) as admin:
        clients = (await admin.execute("CLIENT", "LIST")).decode().splitlines()
        (line,) = [line for line in clients if " name=pub " in line]
        client_id = line.split()[0].removeprefix("id=")
        assert await admin.execute("CLIENT", "KILL", "ID", client_id) == 1
    with trio.fail_after(5):
        while publisher.reconnects == 0 or not publisher.connected:
            await trio.sleep(0.01)
    assert await publisher.publish("room", b"after the kill") >= 0
    with trio.fail_after(5):
        assert await received.receive() == b"after the kill"


async def test_while_redis_is_away_publications_are_refused_fast_and_counted(
    tmp_path: Path, nursery: trio.Nursery, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="ratchetpy.broker")
    port = free_port()
    publisher = RedisPublisher(f"redis://127.0.0.1:{port}/0", buffer_time=0.2)
    with redis_server(tmp_path, port=port):
        await nursery.start(publisher.run)
        assert await publisher.publish("room", b"up") == 0
    # Down: each publication is refused within the buffer time, and nothing is queued.
    for _ in range(3):
        start = trio.current_time()
        with pytest.raises(BrokerUnavailable, match=r"unreachable|did not answer|lost"):
            await publisher.publish("room", b"lost?")
        assert trio.current_time() - start < 2.0  # 0.2 s of buffer, and no queue
    assert publisher.refused == 3
    with redis_server(tmp_path, port=port) as again:
        with trio.fail_after(10):
            while not publisher.connected:
                await trio.sleep(0.01)
        received = await listening(again.url, nursery, "room")
        assert await publisher.publish("room", b"back") == 1
        with trio.fail_after(5):
            assert await received.receive() == b"back"  # and none of the refused ones
    assert any("publications were refused" in r.getMessage() for r in caplog.records)


async def test_redis_down_at_start_up_is_an_error(nursery: trio.Nursery) -> None:
    publisher = RedisPublisher(f"redis://127.0.0.1:{free_port()}/0")
    with pytest.raises(BrokerUnavailable, match="cannot connect"):
        await nursery.start(publisher.run)


async def test_a_silent_connection_is_found_out_by_the_probe(
    autojump_clock: trio.testing.MockClock, nursery: trio.Nursery
) -> None:
    autojump_clock.autojump_threshold = 0.05  # jump over idle time, never over real I/O
    silent = SilentServer()
    publisher = RedisPublisher(await silent.start(nursery), probe_interval=5, probe_timeout=3)
    await nursery.start(publisher.run)
    with pytest.raises(BrokerUnavailable, match="did not answer the publication within 1 s"):
        await publisher.publish("room", b"into the void")  # sent, never answered
    start = trio.current_time()
    while publisher.reconnects < 2:
        await trio.sleep(1)
    # The publication's timeout dropped the first connection; the probe the second, after 5 s
    # of silence and 3 s without a pong.
    assert 8 <= trio.current_time() - start < 11
    assert silent.accepted >= 3


async def test_a_script_travels_once_and_again_after_redis_forgot_it(
    redis: RedisProcess, nursery: trio.Nursery
) -> None:
    publisher = RedisPublisher(redis.url, client_name="pub")
    await nursery.start(publisher.run)
    script = "return {KEYS[1], ARGV[1]}"
    assert await publisher.evaluate(script, ["k"], "v") == [b"k", b"v"]  # NOSCRIPT, then EVAL
    assert await publisher.evaluate(script, ["k"], "w") == [b"k", b"w"]  # by its SHA1 only
    await publisher.command("SCRIPT", "FLUSH")  # what a restart does
    assert await publisher.evaluate(script, ["k"], "x") == [b"k", b"x"]
    stats = await publisher.command("INFO", "commandstats")
    calls = {
        line.split(":")[0]: line.split("calls=")[1].split(",")[0]
        for line in stats.decode().splitlines()
        if line.startswith("cmdstat_eval")
    }
    assert calls == {"cmdstat_eval": "2", "cmdstat_evalsha": "3"}
    with pytest.raises(RedisReplyError, match="ERR"):
        await publisher.evaluate("return redis.call('NOSUCHCOMMAND')", [])
