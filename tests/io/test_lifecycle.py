"""Slow consumers, shutdown, keepalive, raw TCP and the examples, over loopback sockets."""

from __future__ import annotations

import socket
from typing import Any

import pytest
import trio
import trio.testing
from websockets.exceptions import ConnectionClosed as ClientClosed
from websockets.trio.client import connect

from ratchetpy import Connection, HttpServer, IoServer, MessageComponent, WsServer
from support.busy_stream import WRITE_LIMIT, Opened, read_steadily_then_close
from support.examples import load_example
from support.frames import (
    parse_server_frames,
    raw_websocket,
    read_http_head,
    read_until_closed,
    upgrade_request,
)


class Hub(MessageComponent):
    """Clients register; a message "flood N SIZE" sends N messages of SIZE bytes to the others."""

    def __init__(self) -> None:
        self.clients: list[Connection] = []
        self.closed: list[Connection] = []
        self.max_buffered = 0
        self.flooded = trio.Event()
        self.someone_closed = trio.Event()

    def on_open(self, conn: Connection) -> None:
        self.clients.append(conn)

    def on_message(self, conn: Connection, msg: Any) -> None:
        _, count, size = msg.split()
        payload = "x" * int(size)
        for _ in range(int(count)):
            for other in self.clients:
                if other is not conn:
                    other.send(payload)
                    self.max_buffered = max(self.max_buffered, other.buffered_amount)
        self.flooded.set()

    def on_close(self, conn: Connection) -> None:
        self.clients.remove(conn)
        self.closed.append(conn)
        self.someone_closed.set()


async def test_slow_consumer_is_closed_and_memory_stays_bounded(start_server: Any) -> None:
    hub = Hub()
    limit = 64 * 1024
    _, port = await start_server(
        HttpServer(WsServer(hub, compression=None)), write_limit=limit, close_timeout=0.5
    )
    victim, _ = await raw_websocket(port)  # never reads
    async with victim, connect(f"ws://127.0.0.1:{port}/") as producer:
        await producer.send("flood 2000 10000")  # 20 MB at a reader that reads nothing
        with trio.fail_after(5):
            await hub.flooded.wait()
            await hub.someone_closed.wait()
        assert hub.max_buffered <= limit + 10_100
        assert hub.closed[0].close_code in (1008, 1006)
        # The producer is still served.
        await producer.send("flood 1 5")
    assert [c.resource_id for c in hub.clients] == []


async def test_client_flooding_without_reading_is_throttled_not_buffered(start_server: Any) -> None:
    class PeakEcho(MessageComponent):
        """Echoes, and notes the most that was ever queued for the client."""

        def __init__(self) -> None:
            self.peak = 0

        def on_message(self, conn: Connection, msg: Any) -> None:
            conn.send(msg)
            self.peak = max(self.peak, conn.buffered_amount)

    echo = PeakEcho()
    limit = 256 * 1024
    _, port = await start_server(HttpServer(WsServer(echo, compression=None)), write_limit=limit)
    stream, _ = await raw_websocket(port)
    frame = bytes([0x82, 0xFE, 0x10, 0x00]) + b"\0\0\0\0" + b"y" * 4096  # masked with zeros
    async with stream:
        with trio.move_on_after(1):
            # Send 40 MB of echo requests and read nothing: the server must stop reading.
            for _ in range(10_000):
                await stream.send_all(frame)
    # Reading pauses once a quarter of the limit is queued; one chunk of input may add to it.
    assert echo.peak <= limit // 4 + 65536 + 4200 * 16


async def test_graceful_shutdown_delivers_queued_messages_then_1001(start_server: Any) -> None:
    class Burst(MessageComponent):
        def __init__(self) -> None:
            self.sent = trio.Event()

        def on_message(self, conn: Connection, msg: Any) -> None:
            for i in range(300):
                conn.send(f"{i:04d}" + "z" * 1000)
            self.sent.set()

    burst = Burst()
    server, port = await start_server(HttpServer(WsServer(burst)))
    async with connect(f"ws://127.0.0.1:{port}/") as ws:
        await ws.send("go")
        with trio.fail_after(5):
            await burst.sent.wait()
        server.shutdown()
        for i in range(300):
            assert (await ws.recv())[:4] == f"{i:04d}"
        with pytest.raises(ClientClosed):
            await ws.recv()
        assert ws.close_code == 1001
    with trio.fail_after(5):
        await server.aclose()
    # Not accepting any more.
    with pytest.raises(OSError):
        await trio.open_tcp_stream("127.0.0.1", port)


class Hello(MessageComponent):
    def on_open(self, conn: Connection) -> None:
        conn.send("hello")


async def test_a_request_under_way_when_the_shutdown_begins_is_answered_not_cut(
    start_server: Any,
) -> None:
    """Connections accepted just before the listener closed (what a worker draining in a
    rolling restart has) get their answer: a WebSocket its handshake and then 1001, a plain
    request its response with ``Connection: close``; an idle kept-alive one is closed."""
    server, port = await start_server(HttpServer(WsServer(Hello())))
    upgrade = upgrade_request()
    opening, plain, idle = [await trio.open_tcp_stream("127.0.0.1", port) for _ in range(3)]
    await opening.send_all(upgrade[:20])  # half a request head
    await idle.send_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")  # a 426 answered, kept alive
    idle_head, _ = await read_http_head(idle)
    assert idle_head.startswith(b"HTTP/1.1 426")
    await trio.testing.wait_all_tasks_blocked()  # the server has all three, idle or reading
    server.shutdown()
    await trio.testing.wait_all_tasks_blocked()
    await opening.send_all(upgrade[20:])
    await plain.send_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    with trio.fail_after(5):
        head, data = await read_http_head(opening)
        while not any(op == 0x8 for op, _ in parse_server_frames(data)):
            data += await opening.receive_some(4096)  # until the close frame (not answered)
        frames = parse_server_frames(data)
        await opening.aclose()  # instead of answering the close frame
        plain_head, _ = await read_http_head(plain)
        assert await read_until_closed(idle) == b""  # no response to a request never sent
        for stream in (plain, idle):
            await stream.aclose()
        await server.aclose()
    assert head.startswith(b"HTTP/1.1 101")
    assert frames[0] == (0x1, b"hello")  # its on_open ran, then the goodbye
    assert frames[-1][0] == 0x8 and int.from_bytes(frames[-1][1][:2], "big") == 1001
    assert plain_head.startswith(b"HTTP/1.1 426") and b"connection: close" in plain_head.lower()


async def test_shutdown_ends_within_its_deadline_when_clients_do_not_answer(
    start_server: Any,
) -> None:
    server, port = await start_server(
        HttpServer(WsServer(MessageComponent())), shutdown_timeout=0.3
    )
    stream, _ = await raw_websocket(port)  # will never answer the close frame
    async with stream:
        with trio.fail_after(3):
            await server.aclose()
        data = await read_until_closed(stream)
    frames = parse_server_frames(data)
    assert frames[-1][0] == 0x8
    assert int.from_bytes(frames[-1][1][:2], "big") == 1001


async def test_keepalive_drops_a_peer_that_does_not_answer(start_server: Any) -> None:
    _, port = await start_server(HttpServer(WsServer(MessageComponent(), keepalive=0.05)))
    stream, early = await raw_websocket(port)
    async with stream:
        data = early + await read_until_closed(stream)
    frames = parse_server_frames(data)
    assert frames[0][0] == 0x9  # a ping first
    assert frames[-1][0] == 0x8
    assert int.from_bytes(frames[-1][1][:2], "big") == 1011


async def test_raw_tcp_telnet_chat(start_server: Any) -> None:
    chat = load_example("telnet_chat").Chat()
    _, port = await start_server(chat)
    a = await trio.open_tcp_stream("127.0.0.1", port)
    b = await trio.open_tcp_stream("127.0.0.1", port)
    async with a, b:
        assert b"Welcome" in await a.receive_some(1000)
        assert b"Welcome" in await b.receive_some(1000)
        await a.send_all(b"hello from a\r\n")
        with trio.fail_after(5):
            assert await b.receive_some(1000) == b"hello from a\r\n"
        await b.send_all("héllo from b\r\n".encode())
        with trio.fail_after(5):
            assert await a.receive_some(1000) == "héllo from b\r\n".encode()


async def test_chat_example_serves_page_and_socket_on_one_port(nursery: trio.Nursery) -> None:
    chat = load_example("chat")
    port = await nursery.start(chat.make_app(0).serve)
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    async with stream:
        await stream.send_all(b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        page = await read_until_closed(stream)
    assert page.startswith(b"HTTP/1.1 200")
    assert b"text/html" in page
    assert b"new WebSocket(" in page and b'"/chat"' in page

    stream = await trio.open_tcp_stream("127.0.0.1", port)
    async with stream:
        await stream.send_all(b"GET /missing HTTP/1.0\r\nHost: localhost\r\n\r\n")
        missing = await read_until_closed(stream)
    assert missing.startswith(b"HTTP/1.1 404")
    assert b"no route for /missing" in missing

    uri = f"ws://127.0.0.1:{port}/chat"
    async with connect(uri) as a, connect(uri) as b:
        await a.send("hi b")
        assert await b.recv() == "hi b"
        await b.send("hi a")
        assert await a.recv() == "hi a"


def handshake_for(host: bytes, origin: bytes) -> bytes:
    return (
        b"GET /chat HTTP/1.1\r\nHost: %s\r\nOrigin: %s\r\nUpgrade: websocket\r\n"
        b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
        b"Sec-WebSocket-Version: 13\r\n\r\n" % (host, origin)
    )


async def test_chat_example_refuses_dns_rebinding(nursery: trio.Nursery) -> None:
    # A page on evil.com whose name now resolves to 127.0.0.1: same origin as itself, so the
    # origin check alone let it in (101) and it could read the room.
    port = await nursery.start(load_example("chat").make_app(0).serve)
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    async with stream:
        await stream.send_all(handshake_for(b"evil.com", b"http://evil.com"))
        head, body = await read_http_head(stream)
        length = int(head.partition(b"Content-Length: ")[2].split(b"\r\n")[0])
        while len(body) < length:
            body += await stream.receive_some(4096)
    assert head.startswith(b"HTTP/1.1 421 Misdirected Request")
    assert b"host 'evil.com' is not served here" in body
    # The names the README gives, and the other loopback forms, still open the room.
    for host in (b"127.0.0.1:%d" % port, b"localhost:%d" % port, b"[::1]:%d" % port):
        stream = await trio.open_tcp_stream("127.0.0.1", port)
        async with stream:
            await stream.send_all(handshake_for(host, b"http://" + host))
            opened = await stream.receive_some(4096)
        assert opened.startswith(b"HTTP/1.1 101"), host


async def test_port_zero_reports_the_bound_port_and_busy_port_fails_clearly(
    nursery: trio.Nursery,
) -> None:
    server = IoServer(MessageComponent(), port=0, address="127.0.0.1")
    port = await nursery.start(server.serve)
    assert port == server.port != 0
    with socket.create_connection(("127.0.0.1", port)):
        pass
    from ratchetpy import ServerError

    clash = IoServer(MessageComponent(), port=port, address="127.0.0.1")
    with pytest.raises(ServerError, match="cannot listen"):
        await clash.serve()
    await server.aclose()


def test_run_on_a_busy_port_raises_a_plain_server_error() -> None:
    from ratchetpy import ServerError

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        server = IoServer(MessageComponent(), port=busy.getsockname()[1], address="127.0.0.1")
        with pytest.raises(ServerError, match="cannot listen"):
            server.run()


async def test_a_failing_layer_loses_one_connection_not_the_server(start_server: Any) -> None:
    class Broken:
        """A layer with a bug: its on_error fails too, so only dropping the connection is left."""

        def on_open(self, conn: Connection) -> None:
            pass

        def on_message(self, conn: Connection, data: bytes) -> None:
            if data.startswith(b"crash"):
                raise RuntimeError("bug in a layer")
            conn.send(data)

        def on_close(self, conn: Connection) -> None:
            pass

        def on_error(self, conn: Connection, exc: Exception) -> None:
            raise exc

    _, port = await start_server(Broken())
    victim = await trio.open_tcp_stream("127.0.0.1", port)
    survivor = await trio.open_tcp_stream("127.0.0.1", port)
    async with victim, survivor:
        await victim.send_all(b"crash")
        assert await read_until_closed(victim) == b""
        await survivor.send_all(b"still served")
        with trio.fail_after(5):
            assert await survivor.receive_some(100) == b"still served"


async def test_a_client_reading_a_busy_stream_steadily_is_still_heard(
    start_server: Any, nursery: trio.Nursery
) -> None:
    """A reader paused because a quarter of the write limit is queued resumes as the client
    reads, not only once the queue is empty: in a busy room the queue may never empty, and a
    client that keeps up must still have its ping and its close answered."""
    component = Opened()
    app = HttpServer(WsServer(component, compression=None))
    _, port = await start_server(app, write_limit=WRITE_LIMIT)
    stream, early = await raw_websocket(port)
    async with stream:
        outcome = await read_steadily_then_close(stream, early, component, nursery)
    assert (outcome.close_code, outcome.pongs) == (1000, 1)
