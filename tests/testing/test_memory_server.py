"""ratchetpy.testing itself: the memory server behaves like the real one, its clients speak
the protocols, and the doubles record what components do."""

from __future__ import annotations

from typing import Any

import pytest
import trio

from ratchetpy import (
    App,
    Connection,
    ConnectionClosed,
    HttpServer,
    MessageComponent,
    OriginCheck,
    WampComponent,
    WsServer,
)
from ratchetpy.exceptions import HandshakeRefused, WampCallError
from ratchetpy.testing import RecordingConnection, http_request, open_memory_server, resolve
from support.busy_stream import WRITE_LIMIT, Opened, read_steadily_then_close
from support.components import Echo, Recorder
from support.examples import load_example
from support.frames import read_http_head, upgrade_request


async def test_the_chat_example_in_memory() -> None:
    async with open_memory_server(load_example("chat").make_app()) as server:
        page = await server.get("/")
        assert page.status == 200 and "new WebSocket(" in page.text
        async with server.websocket("/chat") as alice, server.websocket("/chat") as bob:
            await alice.send("hi bob")
            assert await bob.receive() == "hi bob"
            assert await alice.receive_nothing()  # the sender hears no echo
        with pytest.raises(HandshakeRefused) as refused:
            await server.connect_websocket("/chat", origin="http://evil.example")
        assert refused.value.status == 403
        assert b"origin 'http://evil.example' is not allowed" in refused.value.body
        with pytest.raises(HandshakeRefused) as rebound:
            await server.connect_websocket(
                "/chat", host="evil.example", origin="http://evil.example"
            )
        assert rebound.value.status == 421
        assert b"host 'evil.example' is not served here" in rebound.value.body
        missing = await server.get("/nope")
        assert missing.status == 404 and "no route for /nope" in missing.text
        health = await server.get("/health")
        assert health.json()["status"] == "ok"


async def test_a_component_alone_is_served_over_websocket_on_every_path() -> None:
    async with open_memory_server(Echo()) as server:
        async with server.websocket("/anything") as ws:
            await ws.send("text")
            await ws.send(b"\x00binary")
            assert await ws.receive() == "text"
            assert await ws.receive() == b"\x00binary"
            await ws.close(4000, "done")
        assert ws.close_code == 4000  # the server's close frame echoes the code
        assert server.counters.messages_in == 2 and server.counters.messages_out == 2


async def test_compression_is_negotiated_with_the_independent_client() -> None:
    stack = HttpServer(WsServer(Echo()))
    async with open_memory_server(stack) as server, server.websocket("/", compression=True) as ws:
        assert ws.extensions == ["permessage-deflate"]
        await ws.send("x" * 10_000)
        assert await ws.receive() == "x" * 10_000


async def test_keepalive_and_timeouts_follow_the_mock_clock(autojump_clock: Any) -> None:
    stack = HttpServer(WsServer(Echo(), keepalive=30))
    async with open_memory_server(stack) as server:
        async with server.websocket("/") as ws:
            await trio.sleep(31)  # instant under the autojump clock
            await ws.receive_nothing()
            assert ws.pings == [b"ratchetpy-keepalive"]  # answered by the client
            await trio.sleep(30)
            assert await ws.receive_nothing() and not ws.closed  # the pong arrived
        # A client that sends half a request gets 408 once the request timeout passes.
        stream = await server.connect()
        await stream.send_all(b"GET / HTTP/1.1\r\nHost: x\r\n")
        await trio.sleep(11)
        answer = await stream.receive_some()
        assert answer.startswith(b"HTTP/1.1 408")


async def test_a_client_that_stops_reading_is_a_slow_consumer() -> None:
    class Flood(MessageComponent):
        def on_message(self, conn: Connection, msg: str | bytes) -> None:
            for _ in range(200):
                conn.send("x" * 10_000)

    server_cm = open_memory_server(Flood(), write_limit=100_000)
    async with server_cm as server, server.websocket("/") as ws:
        await ws.send("go")
        await server.settle()
        assert server.counters.slow_consumer_closes == 1
        with pytest.raises(ConnectionClosed) as closed:
            while True:
                await ws.receive()
        assert closed.value.code == 1008


async def test_a_client_reading_a_busy_stream_is_still_heard_in_memory(
    nursery: trio.Nursery,
) -> None:
    """The memory server's reader pauses and resumes as IoServer's does: as the client reads,
    not only once the queue is empty."""
    component = Opened()
    stack = HttpServer(WsServer(component, compression=None))
    async with open_memory_server(stack, write_limit=WRITE_LIMIT) as server:
        stream = await server.connect()
        await stream.send_all(upgrade_request())
        head, early = await read_http_head(stream)  # type: ignore[arg-type]
        assert head.startswith(b"HTTP/1.1 101"), head
        outcome = await read_steadily_then_close(stream, early, component, nursery)
        await stream.aclose()
    assert (outcome.close_code, outcome.pongs) == (1000, 1)


async def test_shutdown_closes_every_client_with_1001() -> None:
    async with open_memory_server(Echo()) as server:
        ws = await server.connect_websocket("/")
        server.shutdown()
        with pytest.raises(ConnectionClosed) as closed:
            await ws.receive()
        assert closed.value.code == 1001
        await server.aclose()
        assert server.connections == 0


async def test_leaving_the_block_with_clients_still_open_is_immediate() -> None:
    # Nobody reads the clients once the block is over, so waiting for their answer to the
    # 1001 would only stall every test that forgets to close a client (shutdown_timeout=5).
    recorder = Recorder()
    with trio.fail_after(2):
        async with open_memory_server(recorder) as server:
            await server.connect_websocket("/")
            await server.connect_websocket("/")
    assert [kind for kind, _ in recorder.events] == ["open", "open", "close", "close"]
    assert server.connections == 0


async def test_a_raw_tcp_component() -> None:
    telnet = load_example("telnet_chat")
    async with open_memory_server(telnet.Chat(), raw=True) as server:
        alice, bob = await server.connect(), await server.connect()
        assert (await alice.receive_some()).startswith(b"Welcome #1!")
        assert (await bob.receive_some()).startswith(b"Welcome #2! 1 other(s)")
        await alice.send_all(b"hello\n")
        assert await bob.receive_some() == b"hello\n"
        await alice.aclose()
        await bob.aclose()


async def test_a_raw_connection_refuses_what_is_not_text_or_bytes_as_tcp_does() -> None:
    class SendsADict(MessageComponent):
        def __init__(self) -> None:
            self.errors: list[Exception] = []

        def on_message(self, conn: Connection, msg: Any) -> None:
            conn.send("é")  # str goes out as UTF-8
            conn.send({"not": "bytes"})  # type: ignore[arg-type]

        def on_error(self, conn: Connection, exc: Exception) -> None:
            self.errors.append(exc)
            conn.close()

    component = SendsADict()
    async with open_memory_server(component, raw=True) as server:
        client = await server.connect()
        await client.send_all(b"go")
        assert await client.receive_some() == "é".encode()
        assert await client.receive_some() == b""  # closed by on_error
    assert [type(exc) for exc in component.errors] == [TypeError]
    assert "send() takes str or bytes, not dict" in str(component.errors[0])


async def test_a_wamp_session_against_an_app_route() -> None:
    class Board(WampComponent):
        pass

    app = App(None, 0)
    app.route("/ws", Board())
    got: list[Any] = []
    done = trio.Event()

    def on_news(text: str) -> None:
        got.append(text)
        done.set()

    server_cm = open_memory_server(app)
    async with server_cm as server, server.wamp("/ws") as alice, server.wamp("/ws") as bob:
        await bob.subscribe("com.example.news", on_news)
        await alice.register("com.example.add", lambda a, b: a + b)
        await alice.publish("com.example.news", "extra", acknowledge=True)
        await done.wait()
        assert got == ["extra"]
        assert await bob.call("com.example.add", 2, 3) == 5
        with pytest.raises(WampCallError, match="no_such_procedure"):
            await bob.call("com.example.missing")


async def test_recording_connection_and_http_request() -> None:
    conn = RecordingConnection(request=http_request("/chat", origin="http://localhost"))
    component = Echo()
    await resolve(component.on_message(conn, "hi"))
    assert conn.take() == ["hi"] and conn.sent == []
    with pytest.raises(TypeError, match="not int"):
        conn.send(5)  # type: ignore[arg-type]
    with pytest.raises(Exception, match="may not be sent"):
        conn.close(1005)
    conn.close(1000, "bye")
    conn.send("dropped")
    assert conn.closes == [(1000, "bye")] and conn.sent == []
    fired: list[int] = []
    timer = RecordingConnection().call_later(5, lambda: fired.append(1))
    timer.fire()
    timer.fire()
    assert fired == [1]
    check = OriginCheck(MessageComponent(), ["example.com"])  # type: ignore[arg-type]
    assert check.refusal(http_request(origin="http://evil.example")) is not None
    assert check.refusal(http_request(origin="https://example.com")) is None
