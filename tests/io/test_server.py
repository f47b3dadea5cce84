"""IoServer services: timers, other threads, the connection limit and statistics."""

from __future__ import annotations

import logging
import threading
from typing import Any

import pytest
import trio
from websockets.trio.client import connect

from ratchetpy import (
    Connection,
    HttpServer,
    InvalidStateError,
    IoServer,
    MessageComponent,
    ServerError,
    WsServer,
)
from ratchetpy.broker import MemoryBroker, current_broker
from support.frames import read_http_head, upgrade_request


class Clients(MessageComponent):
    """Keeps its connections; echoes what it gets."""

    def __init__(self) -> None:
        self.conns: list[Connection] = []
        self.opened = trio.Event()
        self.closed = trio.Event()
        self.all_gone = trio.Event()

    def on_open(self, conn: Connection) -> None:
        self.conns.append(conn)
        self.opened.set()

    def on_message(self, conn: Connection, msg: Any) -> None:
        conn.send(msg)

    def on_close(self, conn: Connection) -> None:
        self.conns.remove(conn)
        self.closed.set()
        if not self.conns:
            self.all_gone.set()
            self.all_gone = trio.Event()

    async def wait_until_all_gone(self) -> None:
        with trio.fail_after(5):
            while self.conns:
                await self.all_gone.wait()


def ws_app(component: MessageComponent) -> HttpServer:
    return HttpServer(WsServer(component))


# -- timers ------------------------------------------------------------------------------------


async def test_periodic_timer_broadcasts_until_cancelled(start_server: Any) -> None:
    clients = Clients()
    server, port = await start_server(ws_app(clients))
    ticks = 0

    def tick() -> None:
        nonlocal ticks
        ticks += 1
        for conn in clients.conns:
            conn.send(f"tick {ticks}")

    uri = f"ws://127.0.0.1:{port}/"
    async with connect(uri) as a, connect(uri) as b:
        timer = server.add_periodic_timer(0.01, tick)
        with trio.fail_after(5):
            for ws in (a, b):
                received = [await ws.recv() for _ in range(3)]
                numbers = [int(str(m).split()[1]) for m in received]
                assert numbers == sorted(numbers) and len(set(numbers)) == 3
        timer.cancel()
        at_cancel = ticks
        # A one-shot timer due well after the next tick would have been runs after it.
        later = trio.Event()
        server.add_timer(0.05, later.set)
        with trio.fail_after(5):
            await later.wait()
        assert ticks == at_cancel
        timer.cancel()  # harmless twice


async def test_timers_added_before_serve_start_with_it(nursery: trio.Nursery) -> None:
    server = IoServer(MessageComponent(), port=0, address="127.0.0.1")
    fired = trio.Event()
    ticks: list[float] = []
    two_ticks = trio.Event()

    def tick() -> None:
        ticks.append(trio.current_time())
        if len(ticks) == 2:
            two_ticks.set()

    server.add_timer(0.01, fired.set)
    server.add_periodic_timer(0.01, tick)
    start = trio.current_time()
    await nursery.start(server.serve)
    with trio.fail_after(5):
        await fired.wait()
        await two_ticks.wait()
    assert ticks[0] - start >= 0.01 and ticks[1] - start >= 0.02  # counted from the start
    await server.aclose()


async def test_async_periodic_callback_never_overlaps_itself(start_server: Any) -> None:
    server, _ = await start_server(MessageComponent())
    release = trio.Event()
    runs = 0
    running = 0
    max_running = 0
    second_run = trio.Event()

    async def slow() -> None:
        nonlocal runs, running, max_running
        runs += 1
        running += 1
        max_running = max(max_running, running)
        if runs == 2:
            second_run.set()
        try:
            await release.wait()
        finally:
            running -= 1

    plain_ticks = trio.Event()
    count = 0

    def plain() -> None:
        nonlocal count
        count += 1
        if count == 10:
            plain_ticks.set()

    server.add_periodic_timer(0.005, slow)
    server.add_periodic_timer(0.005, plain)
    with trio.fail_after(5):
        await plain_ticks.wait()  # many ticks went by while the first run was blocked
    assert runs == 1
    release.set()
    with trio.fail_after(5):
        await second_run.wait()
    assert max_running == 1


async def test_a_failing_timer_callback_is_logged_and_keeps_its_schedule(
    start_server: Any, caplog: pytest.LogCaptureFixture
) -> None:
    server, _ = await start_server(MessageComponent())
    calls = 0
    third = trio.Event()

    def flaky() -> None:
        nonlocal calls
        calls += 1
        if calls == 3:
            third.set()
        if calls == 1:
            raise RuntimeError("boom in a timer")

    async def failing_async() -> None:
        raise ValueError("boom in an async timer")

    server.add_periodic_timer(0.005, flaky)
    async_done = trio.Event()
    server.add_timer(0.005, failing_async)
    server.add_timer(0.05, async_done.set)
    with trio.fail_after(5):
        await third.wait()
        await async_done.wait()
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    messages = {str(r.exc_info[1]) for r in errors if r.exc_info}
    assert {"boom in a timer", "boom in an async timer"} <= messages


async def test_timers_stop_with_the_server(nursery: trio.Nursery) -> None:
    clients = Clients()
    server = IoServer(ws_app(clients), port=0, address="127.0.0.1")
    port = await nursery.start(server.serve)
    ticks = 0
    sent_to_closing: list[Connection] = []

    def tick() -> None:
        nonlocal ticks
        ticks += 1
        for conn in clients.conns:
            if conn.closed:
                sent_to_closing.append(conn)
            conn.send("tick")

    timer = server.add_periodic_timer(0.002, tick)
    one_shot = server.add_timer(30, tick)
    async with connect(f"ws://127.0.0.1:{port}/") as ws:
        with trio.fail_after(5):
            assert await ws.recv() == "tick"
        with trio.fail_after(5):
            await server.aclose()
    at_stop = ticks
    assert sent_to_closing == []
    await trio.sleep(0.05)  # an observation window: ten periods with no tick
    assert ticks == at_stop
    timer.cancel()
    one_shot.cancel()
    with pytest.raises(InvalidStateError):
        server.add_timer(0.01, tick)


def test_timer_arguments_are_checked() -> None:
    server = IoServer(MessageComponent())
    with pytest.raises(ValueError):
        server.add_periodic_timer(0, lambda: None)
    with pytest.raises(ValueError):
        server.add_timer(-1, lambda: None)


# -- other threads -----------------------------------------------------------------------------


async def test_call_soon_threadsafe_from_a_thread_delivers_a_message(start_server: Any) -> None:
    clients = Clients()
    server, port = await start_server(ws_app(clients))
    async with connect(f"ws://127.0.0.1:{port}/") as ws:
        with trio.fail_after(5):
            await clients.opened.wait()
        conn = clients.conns[0]

        async def later(text: str) -> None:
            await trio.lowlevel.checkpoint()
            conn.send(text)

        def worker() -> None:
            server.call_soon_threadsafe(conn.send, "from a thread")
            server.call_soon_threadsafe(later, "async, from a thread")

        thread = threading.Thread(target=worker)
        thread.start()
        await trio.to_thread.run_sync(thread.join)
        with trio.fail_after(5):  # flushed promptly, not at the next unrelated write
            assert await ws.recv() == "from a thread"
            assert await ws.recv() == "async, from a thread"


async def test_call_soon_threadsafe_needs_a_running_server(nursery: trio.Nursery) -> None:
    server = IoServer(MessageComponent(), port=0, address="127.0.0.1")
    with pytest.raises(InvalidStateError, match="not running"):
        server.call_soon_threadsafe(print, "too early")
    await nursery.start(server.serve)
    await server.aclose()
    with pytest.raises(InvalidStateError):
        server.call_soon_threadsafe(print, "too late")


async def test_a_handler_blocking_in_a_thread_does_not_stall_other_clients(
    start_server: Any,
) -> None:
    gate = threading.Event()
    waiting = trio.Event()

    class Blocking(MessageComponent):
        async def on_message(self, conn: Connection, msg: Any) -> None:
            if msg == "block":
                waiting.set()
                await trio.to_thread.run_sync(gate.wait)
                conn.send("unblocked")
            else:
                conn.send(msg)

    _, port = await start_server(ws_app(Blocking()))
    uri = f"ws://127.0.0.1:{port}/"
    async with connect(uri) as blocked, connect(uri) as other:
        await blocked.send("block")
        with trio.fail_after(5):
            await waiting.wait()
            for i in range(3):
                await other.send(f"echo {i}")
                assert await other.recv() == f"echo {i}"
        gate.set()
        with trio.fail_after(5):
            assert await blocked.recv() == "unblocked"


# -- connection limit --------------------------------------------------------------------------


async def test_connection_limit_leaves_new_clients_in_the_backlog(
    start_server: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="ratchetpy.server")
    clients = Clients()
    server, port = await start_server(ws_app(clients), max_connections=2)
    uri = f"ws://127.0.0.1:{port}/"
    async with connect(uri) as first:
        async with connect(uri):
            waiting = [await trio.open_tcp_stream("127.0.0.1", port) for _ in range(2)]
            for stream in waiting:
                await stream.send_all(upgrade_request())
            with trio.move_on_after(0.2) as window:
                await waiting[0].receive_some(100)  # nothing: not accepted yet
            assert window.cancelled_caught
            assert server.stats().connections == 2
        head, _ = await read_http_head(waiting[0])
        assert head.startswith(b"HTTP/1.1 101")
        await first.send("first is still served")
        assert await first.recv() == "first is still served"
    # Both slots freed: the last one in the backlog is accepted too.
    head, _ = await read_http_head(waiting[1])
    assert head.startswith(b"HTTP/1.1 101")
    for stream in waiting:
        await stream.aclose()
    await clients.wait_until_all_gone()
    async with connect(uri) as again:  # accepted once a slot frees; nobody waits after it
        await again.send("again")
        assert await again.recv() == "again"
    warnings = [r for r in caplog.records if "connection limit reached" in r.getMessage()]
    assert [r.levelno for r in warnings] == [logging.WARNING]
    assert any("below the connection limit" in r.getMessage() for r in caplog.records)


def test_max_connections_must_be_positive() -> None:
    with pytest.raises(ValueError):
        IoServer(MessageComponent(), max_connections=0)


# -- statistics --------------------------------------------------------------------------------


async def test_stats_count_connections_and_bytes(nursery: trio.Nursery) -> None:
    clients = Clients()
    server = IoServer(clients, port=0, address="127.0.0.1")
    before = server.stats()
    assert before.uptime == 0.0 and before.connections_total == 0 and before.bytes_in == 0
    port = await nursery.start(server.serve)
    a = await trio.open_tcp_stream("127.0.0.1", port)
    b = await trio.open_tcp_stream("127.0.0.1", port)
    async with a, b:
        await a.send_all(b"hello")
        await b.send_all(b"bonjour")
        with trio.fail_after(5):
            assert await a.receive_some(100) == b"hello"
            assert await b.receive_some(100) == b"bonjour"
        stats = server.stats()
        assert (stats.connections, stats.connections_total) == (2, 2)
        assert (stats.bytes_in, stats.bytes_out) == (12, 12)
        assert stats.uptime > 0
        await a.aclose()
        with trio.fail_after(5):
            await clients.closed.wait()
        assert server.stats().connections == 1
    await server.aclose()
    after = server.stats()
    assert after.connections == 0 and after.connections_total == 2
    assert after.uptime == server.stats().uptime  # frozen once stopped


async def test_stats_count_a_dropped_slow_raw_tcp_consumer(start_server: Any) -> None:
    class Firehose(MessageComponent):
        def __init__(self) -> None:
            self.closed = trio.Event()

        def on_open(self, conn: Connection) -> None:
            for _ in range(100):
                conn.send(b"z" * 10_000)

        def on_close(self, conn: Connection) -> None:
            self.closed.set()

    firehose = Firehose()
    server, port = await start_server(firehose, write_limit=64 * 1024)
    async with await trio.open_tcp_stream("127.0.0.1", port):
        with trio.fail_after(5):
            await firehose.closed.wait()
    assert server.stats().slow_consumer_closes == 1


async def test_handlers_timers_and_thread_callbacks_see_their_servers_broker(
    nursery: trio.Nursery,
) -> None:
    seen: list[tuple[str, object]] = []

    class Records(MessageComponent):
        def on_open(self, conn: Connection) -> None:
            seen.append(("handler", current_broker()))
            conn.send("open")

    brokers = [MemoryBroker("first"), MemoryBroker("second")]
    servers = [
        IoServer(HttpServer(WsServer(Records())), port=0, address="127.0.0.1", broker=b)
        for b in brokers
    ]
    ports = [await nursery.start(server.serve) for server in servers]
    for port in ports:
        async with connect(f"ws://127.0.0.1:{port}/") as client:
            assert await client.recv() == "open"
    timer_ran, thread_ran = trio.Event(), trio.Event()
    token = trio.lowlevel.current_trio_token()
    servers[1].add_timer(0, lambda: (seen.append(("timer", current_broker())), timer_ran.set()))
    await trio.to_thread.run_sync(
        servers[0].call_soon_threadsafe,
        lambda: (seen.append(("thread", current_broker())), token.run_sync_soon(thread_ran.set)),
    )
    with trio.fail_after(5):
        await timer_ran.wait()
        await thread_ran.wait()
    assert sorted((where, b.worker_id) for where, b in seen) == [  # type: ignore[attr-defined]
        ("handler", "first"),
        ("handler", "second"),
        ("thread", "first"),
        ("timer", "second"),
    ]
    assert current_broker() is None  # outside every server


async def test_servers_with_reuse_port_share_a_port(nursery: trio.Nursery) -> None:
    class Hello(MessageComponent):
        def on_open(self, conn: Connection) -> None:
            conn.send("hello")

    first = IoServer(HttpServer(WsServer(Hello())), port=0, address="127.0.0.1", reuse_port=True)
    port = await nursery.start(first.serve)
    # A second process manager's copy: same port, its own socket (without reuse_port: EADDRINUSE).
    second = IoServer(
        HttpServer(WsServer(Hello())), port=port, address="127.0.0.1", reuse_port=True
    )
    assert await nursery.start(second.serve) == port
    with pytest.raises(ServerError, match="cannot listen"):
        await nursery.start(
            IoServer(HttpServer(WsServer(Hello())), port=port, address="127.0.0.1").serve
        )
    async with connect(f"ws://127.0.0.1:{port}/") as client:
        assert await client.recv() == "hello"
