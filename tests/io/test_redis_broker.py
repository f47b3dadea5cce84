"""RedisBroker: two workers in one process sharing a real redis-server. What one publishes
reaches the other's listeners, in order, once; a worker's own messages and a channel nobody
listens to stay away; gaps, duplicates and strangers' messages are told apart; an outage is
refused visibly and reported as possibly missed messages."""

from __future__ import annotations

import json
import logging
import socket
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import trio
from websockets.trio.client import connect

from ratchetpy import (
    App,
    BrokerUnavailable,
    Connection,
    InvalidStateError,
    IoServer,
    MessageComponent,
    RedisReplyError,
)
from ratchetpy.broker import BrokerStats, MemoryBroker
from ratchetpy.io.redis import RedisConnection
from ratchetpy.io.redis_broker import RedisBroker
from ratchetpy.protocol.envelope import Envelope
from support.http_get import http_get
from support.redis import RedisProcess, free_port, redis_server


class Received:
    def __init__(self) -> None:
        self.send, self.receive = trio.open_memory_channel[bytes](10_000)
        self.missed: list[str] = []

    def __call__(self, body: bytes) -> None:
        self.send.send_nowait(body)

    async def take(self, count: int) -> list[bytes]:
        with trio.fail_after(5):
            return [await self.receive.receive() for _ in range(count)]


@pytest.fixture
async def workers(redis: RedisProcess, nursery: trio.Nursery) -> AsyncIterator[list[RedisBroker]]:
    brokers = [RedisBroker(redis.url, worker_id=f"w{n}") for n in (1, 2)]
    for broker in brokers:
        await nursery.start(broker.run)
    yield brokers


async def test_what_one_worker_publishes_reaches_the_others_in_order_once(
    workers: list[RedisBroker],
) -> None:
    a, b = workers
    at_a, at_b = Received(), Received()
    a.listen("room", at_a)
    await a.wait_listening("room")
    b.listen("room", at_b)  # b's own publications are not handed back to it
    await b.wait_listening("room")
    for n in range(300):
        if n % 2:
            await b.publish("room", b"%d" % n)
        else:
            b.publish_nowait("room", b"%d" % n)
    await b.publish("room", b"end")
    assert await at_a.take(301) == [b"%d" % n for n in range(300)] + [b"end"]
    await a.publish("room", b"from a")
    assert await at_b.take(1) == [b"from a"]
    assert (a.duplicates, a.malformed, b.refused) == (0, 0, 0)


async def test_a_worker_subscribes_only_to_channels_it_listens_to(
    redis: RedisProcess, workers: list[RedisBroker]
) -> None:
    a, _ = workers
    handler = Received()
    async with await RedisConnection.open(redis.url) as admin:

        async def subscribers(channel: str) -> int:
            return int((await admin.execute("PUBSUB", "NUMSUB", f"ratchetpy:{channel}"))[1])

        assert await subscribers("room") == 0
        a.listen("room", handler)
        await a.wait_listening("room")
        a.listen("room", Received())  # a second listener: still one subscription
        await a.wait_listening("room")
        assert await subscribers("room") == 1
        a.unlisten("room", handler)
        assert await subscribers("room") == 1
        assert a.healthy


async def test_duplicates_gaps_and_strangers_messages(
    redis: RedisProcess, workers: list[RedisBroker]
) -> None:
    a, _ = workers
    got = Received()
    missed: list[str] = []
    a.on_missed(missed.append)
    a.listen("room", got)
    await a.wait_listening("room")
    async with await RedisConnection.open(redis.url) as raw:
        channel = "ratchetpy:room"
        for data in (
            Envelope("w9", 1, b"one").encode(),
            Envelope("w9", 1, b"one again").encode(),  # a duplicate: dropped
            b"not ours",  # someone else's message on our channel: dropped, counted
            Envelope("w9", 4, b"four").encode(),  # 2 and 3 missed: reported, delivered
            Envelope("backend", 0, b"direct").encode(),  # a backend's own: not counted
            Envelope("w1", 1, b"echo").encode(),  # a's own id: it delivered that itself
        ):
            await raw.execute("PUBLISH", channel, data)
    assert await got.take(3) == [b"one", b"four", b"direct"]
    assert (a.duplicates, a.malformed) == (1, 1)
    assert missed == ["room"]


async def test_an_outage_is_refused_visibly_and_reported_as_missed(
    tmp_path: Path, nursery: trio.Nursery, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="ratchetpy.broker")
    port = free_port()
    url = f"redis://127.0.0.1:{port}/0"
    a = RedisBroker(url, worker_id="a", buffer_time=0.2)
    b = RedisBroker(url, worker_id="b", buffer_time=0.2)
    got, missed = Received(), []
    with redis_server(tmp_path, port=port):
        await nursery.start(a.run)
        await nursery.start(b.run)
        a.on_missed(missed.append)
        a.listen("room", got)
        await a.wait_listening("room")
        await b.publish("room", b"before")
        assert await got.take(1) == [b"before"]
    with pytest.raises(BrokerUnavailable):
        await b.publish("room", b"during")  # Redis is down: refused, not queued
    b.publish_nowait("room", b"during, without waiting")
    with trio.fail_after(5):
        while b.refused == 0:  # refused once the buffer time passed, logged and counted
            await trio.sleep(0.01)
    assert b.stats() == BrokerStats(up=False, reconnects=b.stats().reconnects, unsent=2, missed=0)
    assert b.stats().reconnects >= 1  # what the metrics report of the outage
    with redis_server(tmp_path, port=port):
        with trio.fail_after(10):
            while not (a.healthy and b.healthy and missed):
                await trio.sleep(0.01)
        assert missed == ["room"]  # a was away: it may have missed messages
        await b.publish("room", b"after")
        assert await got.take(1) == [b"after"]  # and nothing refused was delivered
    assert any("1 publications could not be passed on" in r.getMessage() for r in caplog.records)
    assert b.refused == 1
    assert b.stats().up and b.stats().unsent == 2  # the awaited one (its caller was told) too
    assert a.stats().missed == 1
    # Refused before they were sent, so they left no gap in b's sequence.
    assert not any("were missed" in r.getMessage() for r in caplog.records)


async def test_publishing_before_run_is_a_bug_not_a_hang(redis: RedisProcess) -> None:
    broker = RedisBroker(redis.url)
    with pytest.raises(InvalidStateError, match="run\\(\\) is not running"):
        await broker.publish("room", b"x")
    with pytest.raises(InvalidStateError):
        broker.publish_nowait("room", b"x")


async def test_redis_down_at_start_up_is_an_error(nursery: trio.Nursery) -> None:
    with pytest.raises(BrokerUnavailable, match="cannot connect"):
        await nursery.start(RedisBroker(f"redis://127.0.0.1:{free_port()}/0").run)


async def test_the_memory_broker_has_no_one_to_send_to() -> None:
    broker = MemoryBroker()
    handler = Received()
    assert not broker.distributed
    broker.listen("room", handler)
    await broker.wait_listening("room")
    assert broker.listening("room")
    assert await broker.publish("room", b"x") == 0
    broker.publish_nowait("room", b"x")
    broker.unlisten("room", handler)
    assert not broker.listening("room")
    assert await broker.acquire("key", b"1") and await broker.acquire("key", b"2")
    assert await broker.owner("key") == ("memory", b"2")
    await broker.release("key")
    assert await broker.owner("key") is None
    await broker.acquire("key", b"3")
    await broker.leave()
    assert await broker.owner("key") is None


async def test_a_publication_redis_refuses_fails_alone(
    redis: RedisProcess, nursery: trio.Nursery
) -> None:
    # An ACL user that may publish to one channel only: in one batch, one message passes and
    # the other is refused, each with its own outcome.
    async with await RedisConnection.open(redis.url) as admin:
        await admin.execute(
            "ACL", "SETUSER", "limited", "on", ">pw", "~*", "+@all", "resetchannels",
            "&ratchetpy:ok",
        )  # fmt: skip
    a = RedisBroker(redis.url, worker_id="a")
    b = RedisBroker(f"redis://limited:pw@127.0.0.1:{redis.port}/0", worker_id="b")
    await nursery.start(a.run)
    await nursery.start(b.run)
    got = Received()
    a.listen("ok", got)
    await a.wait_listening("ok")
    b.publish_nowait("ok", b"passes")
    b.publish_nowait("no", b"refused quietly")
    with pytest.raises(RedisReplyError, match="NOPERM"):
        await b.publish("no", b"refused")  # the three go out in one batch
    assert await got.take(1) == [b"passes"]
    assert b.refused == 1  # the quiet one, counted and logged
    await b.publish("ok", b"and on")
    assert await got.take(1) == [b"and on"]


class Farewell(MessageComponent):
    """Tells the other workers when a client leaves: the last thing a worker publishes
    during its graceful shutdown."""

    def __init__(self) -> None:
        self.app: App | None = None

    def on_close(self, conn: Connection) -> None:
        assert self.app is not None
        self.app.broker.publish_nowait("presence", b"left")


async def test_an_app_runs_its_broker_reports_it_and_flushes_it_on_shutdown(
    redis: RedisProcess, nursery: trio.Nursery
) -> None:
    component = Farewell()
    app = App(None, 0, "127.0.0.1", broker=f"{redis.url}")
    component.app = app
    app.route("/ws", component)
    app.route("/health", app.health)
    other = RedisBroker(redis.url, worker_id="other")
    await nursery.start(other.run)
    heard = Received()
    other.listen("presence", heard)
    await other.wait_listening("presence")
    port = await nursery.start(app.serve)
    health = await trio.to_thread.run_sync(lambda: http_get(port, "/health"))
    assert health[0] == 200 and json.loads(health[1])["broker"] == "ok"
    async with connect(f"ws://127.0.0.1:{port}/ws"):
        await app.aclose()  # the client is closed with 1001; its on_close publishes
    assert await heard.take(1) == [b"left"]
    async with await RedisConnection.open(redis.url) as admin:
        clients = (await admin.execute("CLIENT", "LIST")).decode()
    assert app.broker.worker_id not in clients  # both connections closed with the server


async def test_an_app_whose_broker_is_down_does_not_serve(nursery: trio.Nursery) -> None:
    app = App(None, 0, "127.0.0.1", broker=f"redis://127.0.0.1:{free_port()}/0")
    with pytest.raises(BrokerUnavailable, match="cannot connect"):
        await nursery.start(app.serve)
    assert not _listening(app.server.port)  # the port it had bound is released


def _listening(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0


def test_run_with_its_broker_down_raises_it_plainly_and_frees_the_port() -> None:
    port = free_port()
    server = IoServer(
        MessageComponent(),
        port=port,
        address="127.0.0.1",
        broker=RedisBroker(f"redis://127.0.0.1:{free_port()}/0"),
    )
    with pytest.raises(BrokerUnavailable, match="cannot connect"):
        server.run()  # in the main thread: the signal-handling path
    assert not _listening(port)
    with socket.socket() as again:  # and it can be bound again at once
        again.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        again.bind(("127.0.0.1", port))


async def test_a_failing_handler_stops_neither_the_others_nor_the_connection(
    workers: list[RedisBroker], caplog: pytest.LogCaptureFixture
) -> None:
    a, b = workers
    got = Received()

    def broken(body: bytes) -> None:
        raise RuntimeError("handler bug")

    a.listen("room", broken)
    await a.wait_listening("room")
    a.listen("room", got)
    await a.wait_listening("room")
    await b.publish("room", b"one")
    await b.publish("room", b"two")
    assert await got.take(2) == [b"one", b"two"]
    assert a.subscriber.reconnects == 0
    assert [r for r in caplog.records if "broker callback" in r.getMessage()]


async def test_a_key_is_claimed_once_across_workers_and_expires_by_itself(
    redis: RedisProcess, workers: list[RedisBroker]
) -> None:
    a, b = workers
    assert await a.claim("publish-signature:abc", 30)
    assert not await b.claim("publish-signature:abc", 30)  # the other worker: taken
    assert not await a.claim("publish-signature:abc", 30)
    async with await RedisConnection.open(redis.url) as admin:
        left = await admin.execute("PTTL", "ratchetpy:publish-signature:abc")
    assert 29_000 < left <= 30_000  # Redis forgets it after the ttl: nothing to clean up
    assert a.publisher.published == 0  # a claim is not counted as a publication


async def test_the_registry_of_live_workers_expires_and_prunes_itself(
    redis: RedisProcess, workers: list[RedisBroker]
) -> None:
    a, b = workers
    await a.announce(b'{"connections": 1}', 3.0)
    await b.announce(b'{"connections": 2}', 3.0)
    assert await a.workers() == {"w1": b'{"connections": 1}', "w2": b'{"connections": 2}'}
    async with await RedisConnection.open(redis.url) as admin:
        assert 2_000 < await admin.execute("PTTL", "ratchetpy:worker:w2") <= 3_000
        await admin.execute("DEL", "ratchetpy:worker:w2")  # what its expiry does, sooner
        assert await b.workers() == {"w1": b'{"connections": 1}'}
        await a.announce(b'{"connections": 1}', 3.0)  # reaps what expired
        assert await admin.execute("SMEMBERS", "ratchetpy:workers") == [b"w1"]  # pruned
        await a.leave()  # a graceful stop: gone at once
        assert await b.workers() == {}
        assert await admin.execute("EXISTS", "ratchetpy:worker:w1") == 0


async def test_a_key_is_owned_by_one_live_worker_and_freed_when_it_dies_or_leaves(
    redis: RedisProcess, workers: list[RedisBroker]
) -> None:
    a, b = workers
    await a.announce(b"{}", 3.0)
    await b.announce(b"{}", 3.0)
    assert await a.acquire("wamp-procedure:realm1:add", b"17")
    assert not await b.acquire("wamp-procedure:realm1:add", b"18")  # a lives: taken
    assert await a.acquire("wamp-procedure:realm1:add", b"17")  # a knows what it owns
    assert await b.owner("wamp-procedure:realm1:add") == ("w1", b"17")
    async with await RedisConnection.open(redis.url) as admin:
        await admin.execute("FLUSHALL")  # a Redis that restarted empty
        await a.announce(b"{}", 3.0)  # puts back what a owns
        assert await b.owner("wamp-procedure:realm1:add") == ("w1", b"17")
        await admin.execute("DEL", "ratchetpy:worker:w1")  # a died: its announcement expired
    assert await b.owner("wamp-procedure:realm1:add") is None
    assert await b.acquire("wamp-procedure:realm1:add", b"20")  # free for a live worker
    await b.release("wamp-procedure:realm1:add")
    assert await a.owner("wamp-procedure:realm1:add") is None
    assert await b.acquire("wamp-procedure:realm1:sub", b"21")
    await b.leave()  # a graceful stop releases everything it owned
    assert await a.owner("wamp-procedure:realm1:sub") is None


async def test_a_release_redis_did_not_take_is_done_by_the_next_announcement(
    tmp_path: Path, nursery: trio.Nursery
) -> None:
    port = free_port()
    with redis_server(tmp_path, port=port) as server:
        a, b = RedisBroker(server.url, worker_id="w1"), RedisBroker(server.url, worker_id="w2")
        for broker in (a, b):
            await nursery.start(broker.run)
        await a.announce(b"{}", 3.0)
        assert await a.acquire("wamp-procedure:realm1:add", b"17")
    # Redis is away: the release fails, and is remembered
    with pytest.raises(BrokerUnavailable):
        await a.release("wamp-procedure:realm1:add")
    with redis_server(tmp_path, port=port):
        with trio.fail_after(10):  # both reconnect (with backoff)
            await a.publisher.wait_connected()
            await b.publisher.wait_connected()
        async with await RedisConnection.open(f"redis://127.0.0.1:{port}") as admin:
            stale = b"w1\n17"
            await admin.execute("SET", "ratchetpy:wamp-procedure:realm1:add", stale)
            await a.announce(b"{}", 3.0)
            assert await admin.execute("EXISTS", "ratchetpy:wamp-procedure:realm1:add") == 0
        assert await b.acquire("wamp-procedure:realm1:add", b"18")


async def test_watchers_hear_once_that_a_worker_is_gone_from_the_registry(
    redis: RedisProcess, workers: list[RedisBroker]
) -> None:
    a, b = workers
    await b.announce(b"{}", 3.0)
    gone: list[str] = []
    heard = trio.Event()

    def on_gone(worker: str) -> None:
        gone.append(worker)
        heard.set()

    a.watch("w2", on_gone)
    a.watch("w2", lambda worker: None)
    a.unwatch("w2", on_gone)
    a.unwatch("w2", on_gone)  # harmless twice
    a.watch("w2", on_gone)
    async with await RedisConnection.open(redis.url) as admin:
        await admin.execute("DEL", "ratchetpy:worker:w2")
    with trio.fail_after(5):  # two lookups a second apart that miss it
        await heard.wait()
    assert gone == ["w2"] and "w2" not in a._watched


async def test_publish_says_how_many_workers_listened(workers: list[RedisBroker]) -> None:
    a, b = workers
    b.listen("wamp-rpc:realm1:w2", Received())
    await b.wait_listening("wamp-rpc:realm1:w2")
    assert await a.publish("wamp-rpc:realm1:w2", b"call") == 1
    assert await a.publish("wamp-rpc:realm1:nobody", b"call") == 0


async def test_two_apps_list_each_other_in_their_cluster_stats(
    redis: RedisProcess, nursery: trio.Nursery
) -> None:
    apps = [App(None, 0, "127.0.0.1", broker=redis.url) for _ in range(2)]
    for app in apps:
        app.route("/stats", app.cluster_stats)
    ports = [await nursery.start(app.serve) for app in apps]
    status, body = await trio.to_thread.run_sync(lambda: http_get(ports[0], "/stats"))
    stats = json.loads(body)
    assert status == 200 and stats["total"]["workers"] == 2
    assert {w["address"] for w in stats["workers"]} == {f"127.0.0.1:{p}" for p in ports}
    assert [w["broker"] for w in stats["workers"]] == ["ok", "ok"]  # each worker's health
    await apps[1].aclose()  # leaves the registry as it stops
    status, body = await trio.to_thread.run_sync(lambda: http_get(ports[0], "/stats"))
    assert [w["address"] for w in json.loads(body)["workers"]] == [f"127.0.0.1:{ports[0]}"]
