"""The whole stack (IoServer -> HttpServer -> WsServer -> component) over loopback sockets,
driven by an independent client: the ``websockets`` library (its trio front end)."""

from __future__ import annotations

import gc
import weakref
from typing import Any

import pytest
import trio
import trio.testing
from websockets.exceptions import ConnectionClosed as ClientClosed
from websockets.exceptions import InvalidStatus
from websockets.trio.client import connect

from ratchetpy import Connection, HttpServer, MessageComponent, WsServer, broadcast
from support.components import Echo, Recorder


class Chat(MessageComponent):
    def __init__(self) -> None:
        self.clients: set[Connection] = set()

    def on_open(self, conn: Connection) -> None:
        self.clients.add(conn)

    def on_message(self, sender: Connection, msg: Any) -> None:
        for client in self.clients:
            if client is not sender:
                client.send(msg)

    def on_close(self, conn: Connection) -> None:
        self.clients.discard(conn)


def ws_app(component: MessageComponent, **options: Any) -> HttpServer:
    return HttpServer(WsServer(component, **options))


async def test_echo_text_and_binary(start_server: Any) -> None:
    _, port = await start_server(ws_app(Echo()))
    async with connect(f"ws://127.0.0.1:{port}/") as ws:
        await ws.send("héllo wörld")
        assert await ws.recv() == "héllo wörld"
        await ws.send(b"\x00\xff" * 1000)
        assert await ws.recv() == b"\x00\xff" * 1000
        await ws.send("")
        assert await ws.recv() == ""


async def test_many_messages_keep_their_order(start_server: Any) -> None:
    _, port = await start_server(ws_app(Echo()))
    async with connect(f"ws://127.0.0.1:{port}/") as ws:
        for i in range(500):
            await ws.send(f"message {i}")
        for i in range(500):
            assert await ws.recv() == f"message {i}"


async def test_fragmented_message_is_reassembled(start_server: Any) -> None:
    _, port = await start_server(ws_app(Echo()))
    async with connect(f"ws://127.0.0.1:{port}/") as ws:
        await ws.send(["frag", "ment", "ed"])
        assert await ws.recv() == "fragmented"
        await ws.send([b"\x01", b"\x02\x03"])
        assert await ws.recv() == b"\x01\x02\x03"


async def test_compression_is_negotiated_and_works(start_server: Any) -> None:
    _, port = await start_server(ws_app(Echo()))
    async with connect(f"ws://127.0.0.1:{port}/") as ws:
        assert "permessage-deflate" in (ws.response.headers.get("Sec-WebSocket-Extensions") or "")
        big = "all work and no play " * 5000
        for _ in range(3):  # context takeover across messages
            await ws.send(big)
            assert await ws.recv() == big


async def test_compression_can_be_turned_off(start_server: Any) -> None:
    _, port = await start_server(ws_app(Echo(), compression=None))
    async with connect(f"ws://127.0.0.1:{port}/") as ws:
        assert ws.response.headers.get("Sec-WebSocket-Extensions") is None
        await ws.send("x" * 1000)
        assert await ws.recv() == "x" * 1000


async def test_chat_sends_to_every_other_client(start_server: Any) -> None:
    _, port = await start_server(ws_app(Chat()))
    uri = f"ws://127.0.0.1:{port}/chat"
    async with connect(uri) as a, connect(uri) as b, connect(uri) as c:
        await a.send("from a")
        assert await b.recv() == "from a"
        assert await c.recv() == "from a"
        await b.send(b"binary from b")
        assert await a.recv() == b"binary from b"
        assert await c.recv() == b"binary from b"
        # a must not have received its own message: the next thing it sees is c's.
        await c.send("from c")
        assert await a.recv() == "from c"
        assert await b.recv() == "from c"


async def test_connection_attributes(start_server: Any) -> None:
    seen: list[Connection] = []

    class Inspect(MessageComponent):
        def on_open(self, conn: Connection) -> None:
            conn.user = "alice"  # type: ignore[attr-defined]
            seen.append(conn)

        def on_message(self, conn: Connection, msg: Any) -> None:
            conn.send(f"{conn.user}:{conn.resource_id}")  # type: ignore[attr-defined]

    _, port = await start_server(ws_app(Inspect()))
    uri = f"ws://127.0.0.1:{port}/room/1?token=abc&x=1"
    cookie = {"Cookie": "session=s3cr3t; theme=dark"}
    async with connect(uri, additional_headers=cookie) as ws1, connect(uri) as ws2:
        await ws1.send("who")
        assert await ws1.recv() == f"alice:{seen[0].resource_id}"
        await ws2.send("who")
        assert await ws2.recv() == f"alice:{seen[1].resource_id}"
    first = seen[0]
    assert seen[0].resource_id != seen[1].resource_id
    assert first.remote_address == "127.0.0.1"
    request = first.http_request
    assert request is not None
    assert request.method == "GET"
    assert request.path == "/room/1"
    assert request.query_params == {"token": ["abc"], "x": ["1"]}
    assert request.cookies == {"session": "s3cr3t", "theme": "dark"}
    assert request.header("host") == f"127.0.0.1:{port}"
    assert first.subprotocol is None


async def test_async_handlers_run_in_order(start_server: Any) -> None:
    order: list[str] = []
    closed = trio.Event()

    class Slow(MessageComponent):
        async def on_open(self, conn: Connection) -> None:
            await trio.sleep(0)
            order.append("open")

        async def on_message(self, conn: Connection, msg: Any) -> None:
            await trio.sleep(0.001 if msg == "0" else 0)
            order.append(msg)
            conn.send(msg)

        async def on_close(self, conn: Connection) -> None:
            await trio.sleep(0)
            order.append("close")
            closed.set()

    _, port = await start_server(ws_app(Slow()))
    async with connect(f"ws://127.0.0.1:{port}/") as ws:
        for i in range(20):
            await ws.send(str(i))
        for i in range(20):
            assert await ws.recv() == str(i)
    with trio.fail_after(5):
        await closed.wait()
    assert order == ["open", *[str(i) for i in range(20)], "close"]


async def test_close_codes_both_ways(start_server: Any) -> None:
    recorder = Recorder()

    class Closer(MessageComponent):
        def on_message(self, conn: Connection, msg: Any) -> None:
            conn.close(4000, "bye now")

    _, port = await start_server(ws_app(recorder))
    async with connect(f"ws://127.0.0.1:{port}/") as ws:
        await ws.send("hi")
        assert await ws.recv() == "hi"
        await ws.aclose(4321, "client leaving")
    with trio.fail_after(5):
        await recorder.closed.wait()
    assert recorder.events[-1] == ("close", 4321)

    _, port = await start_server(ws_app(Closer()))
    async with connect(f"ws://127.0.0.1:{port}/") as ws:
        await ws.send("close me")
        with pytest.raises(ClientClosed):
            await ws.recv()
        assert ws.close_code == 4000
        assert ws.close_reason == "bye now"


async def test_oversized_message_closes_with_1009(start_server: Any) -> None:
    _, port = await start_server(ws_app(Echo(), max_message_size=1000))
    async with connect(f"ws://127.0.0.1:{port}/", max_size=None) as ws:
        await ws.send("a" * 1000)
        assert await ws.recv() == "a" * 1000
        await ws.send("a" * 1001)
        with pytest.raises(ClientClosed):
            await ws.recv()
        assert ws.close_code == 1009


async def test_compressed_bomb_is_bounded(start_server: Any) -> None:
    _, port = await start_server(ws_app(Echo(), max_message_size=100_000))
    async with connect(f"ws://127.0.0.1:{port}/", max_size=None) as ws:
        await ws.send(b"\x00" * 10_000_000)  # compresses to about 10 KB
        with pytest.raises(ClientClosed):
            await ws.recv()
        assert ws.close_code == 1009


async def test_handler_exception_closes_with_1011_and_others_go_on(start_server: Any) -> None:
    class Fragile(MessageComponent):
        def on_message(self, conn: Connection, msg: Any) -> None:
            if msg == "boom":
                raise RuntimeError("handler bug")
            conn.send(msg)

    _, port = await start_server(ws_app(Fragile()))
    uri = f"ws://127.0.0.1:{port}/"
    async with connect(uri) as bad, connect(uri) as good:
        await bad.send("boom")
        with pytest.raises(ClientClosed):
            await bad.recv()
        assert bad.close_code == 1011
        await good.send("still here")
        assert await good.recv() == "still here"


async def test_async_handler_exception_reaches_custom_on_error(start_server: Any) -> None:
    errors: list[Exception] = []

    class Forgiving(MessageComponent):
        async def on_message(self, conn: Connection, msg: Any) -> None:
            await trio.sleep(0)
            if msg == "boom":
                raise ValueError("bad input")
            conn.send(msg)

        def on_error(self, conn: Connection, exc: Exception) -> None:
            errors.append(exc)
            conn.send(f"error: {exc}")

    _, port = await start_server(ws_app(Forgiving()))
    async with connect(f"ws://127.0.0.1:{port}/") as ws:
        await ws.send("boom")
        assert await ws.recv() == "error: bad input"
        await ws.send("fine")
        assert await ws.recv() == "fine"
    assert isinstance(errors[0], ValueError)


async def test_ping_gets_pong(start_server: Any) -> None:
    _, port = await start_server(ws_app(Echo()))
    async with connect(f"ws://127.0.0.1:{port}/") as ws:
        pong = await ws.ping(b"are you there")
        with trio.fail_after(5):
            await pong.wait()


async def test_subprotocol_negotiation(start_server: Any) -> None:
    class Versioned(Echo):
        subprotocols = ("chat.v2", "chat.v1")

    _, port = await start_server(ws_app(Versioned()))
    uri = f"ws://127.0.0.1:{port}/"
    async with connect(uri, subprotocols=["chat.v1"]) as ws:  # type: ignore[list-item]
        assert ws.subprotocol == "chat.v1"
    async with connect(uri) as ws:
        assert ws.subprotocol is None
    with pytest.raises(InvalidStatus) as info:
        async with connect(uri, subprotocols=["other"]):  # type: ignore[list-item]
            pass
    assert info.value.response.status_code == 400
    assert b"no supported subprotocol" in info.value.response.body

    _, port = await start_server(ws_app(Versioned(), strict_subprotocols=False))
    async with connect(f"ws://127.0.0.1:{port}/", subprotocols=["other"]) as ws:  # type: ignore[list-item]
        assert ws.subprotocol is None


async def test_keepalive_keeps_live_clients(start_server: Any) -> None:
    _, port = await start_server(ws_app(Echo(), keepalive=0.05))
    async with connect(f"ws://127.0.0.1:{port}/", ping_interval=None) as ws:
        # The client library answers pings itself; after several intervals it is still open.
        with trio.move_on_after(0.3):
            await ws.recv()
        await ws.send("alive")
        assert await ws.recv() == "alive"


async def test_a_closed_connection_is_released_at_once_with_keepalive_on(
    start_server: Any,
) -> None:
    # The keepalive tick used to hold the connection (codec, zlib state: ~110 KiB with
    # compression) until it fired, up to `keepalive` seconds after the client had gone.
    class Watched(MessageComponent):
        def __init__(self) -> None:
            self.refs: list[weakref.ref[Connection]] = []
            self.closed = trio.Event()

        def on_open(self, conn: Connection) -> None:
            self.refs.append(weakref.ref(conn))

        def on_close(self, conn: Connection) -> None:
            self.closed.set()

    component = Watched()
    _, port = await start_server(ws_app(component, keepalive=3600))
    async with connect(f"ws://127.0.0.1:{port}/") as ws:
        await ws.send("hi")
    with trio.fail_after(5):
        await component.closed.wait()
    await trio.testing.wait_all_tasks_blocked()  # the connection's task has ended
    gc.collect()
    assert [ref() for ref in component.refs] == [None]


async def test_broadcast_reaches_everyone(start_server: Any) -> None:
    class Broadcaster(Chat):
        def on_message(self, sender: Connection, msg: Any) -> None:
            broadcast(self.clients, msg)

    _, port = await start_server(ws_app(Broadcaster()))
    uri = f"ws://127.0.0.1:{port}/"
    async with connect(uri) as a, connect(uri) as b, connect(uri, compression=None) as c:
        await a.send("small")
        big = "compressible " * 500
        await a.send(big)
        for ws in (a, b, c):
            assert await ws.recv() == "small"
            assert await ws.recv() == big


async def test_close_with_an_invalid_code_raises_and_leaves_the_connection_usable(
    start_server: Any,
) -> None:
    errors: list[Exception] = []

    class BadCloser(MessageComponent):
        def on_message(self, conn: Connection, msg: Any) -> None:
            if msg == "bad code":
                conn.close(1005)
            elif msg == "long reason":
                conn.close(1000, "x" * 124)
            elif msg == "not bytes":
                conn.send(42)  # type: ignore[arg-type]
            else:
                conn.close(1000, "done")

        def on_error(self, conn: Connection, exc: Exception) -> None:
            errors.append(exc)
            conn.send(type(exc).__name__)

    _, port = await start_server(ws_app(BadCloser()))
    async with connect(f"ws://127.0.0.1:{port}/") as ws:
        for request in ("bad code", "long reason", "not bytes"):
            await ws.send(request)
            assert await ws.recv() in ("LocalProtocolError", "TypeError")
        await ws.send("now close")
        with pytest.raises(ClientClosed):
            await ws.recv()
        assert ws.close_code == 1000
        assert ws.close_reason == "done"
    assert [type(e).__name__ for e in errors] == [
        "LocalProtocolError",
        "LocalProtocolError",
        "TypeError",
    ]


def test_options_are_checked() -> None:
    from ratchetpy import Page, Router

    with pytest.raises(ValueError, match="max_message_size"):
        WsServer(Echo(), max_message_size=0)
    with pytest.raises(ValueError, match="compression"):
        WsServer(Echo(), compression="gzip")
    with pytest.raises(ValueError, match="start with '/'"):
        Router({"chat": Page("x")})
