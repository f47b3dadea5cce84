"""The WAMP router over real loopback sockets, spoken to in raw WAMP messages by the
independent `websockets` client: subprotocol negotiation, a whole session in JSON and in
msgpack, protocol faults and shutdown."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
import trio
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.trio.client import connect

from ratchetpy import App, HttpServer, IoServer, WsServer
from ratchetpy.exceptions import WampError
from ratchetpy.wamp import CLOSE_SYSTEM_SHUTDOWN, Topic, WampComponent, WampConnection, WampServer
from ratchetpy.wamp.messages import (
    ABORT,
    CALL,
    CLOSE_NORMAL,
    ERROR,
    EVENT,
    GOODBYE,
    GOODBYE_AND_OUT,
    HELLO,
    INVOCATION,
    NOT_AUTHORIZED,
    PROTOCOL_VIOLATION,
    PUBLISH,
    PUBLISHED,
    REGISTER,
    REGISTERED,
    RESULT,
    SUBSCRIBE,
    SUBSCRIBED,
    UNSUBSCRIBE,
    UNSUBSCRIBED,
    WELCOME,
    YIELD,
)
from support.wamp import JSON, MSGPACK, ROLES, decode, encode

TIMEOUT = 5

Serve = Callable[..., Awaitable[tuple[Any, int]]]


class Guarded(WampComponent):
    """Refuses subscriptions to ``private.*``."""

    def on_subscribe(self, conn: WampConnection, topic: Topic) -> None:
        if topic.id.startswith("private."):
            raise WampError(NOT_AUTHORIZED, "members only")


@pytest.fixture
async def serve_app(nursery: trio.Nursery) -> AsyncIterator[Serve]:
    """``app, port = await serve_app(component)``: App routing /ws to a WAMP component."""

    async def start(component: WampComponent | None = None) -> tuple[App, int]:
        app = App(None, 0, "127.0.0.1")
        app.route("/ws", component if component is not None else Guarded(), allowed_origins=["*"])
        port: int = await nursery.start(app.serve)
        return app, port

    yield start


def url(port: int) -> str:
    return f"ws://127.0.0.1:{port}/ws"


class Client:
    """Raw WAMP messages over a websockets connection, in the negotiated serializer."""

    def __init__(self, ws: Any) -> None:
        self.ws = ws
        self.binary = ws.subprotocol == MSGPACK

    async def send(self, *message: Any) -> None:
        await self.ws.send(encode(self.ws.subprotocol, list(message)))

    async def recv(self) -> list[Any]:
        with trio.fail_after(TIMEOUT):
            data = await self.ws.recv()
        return decode(self.ws.subprotocol, data)

    async def join(self, realm: str = "realm1") -> int:
        await self.send(HELLO, realm, ROLES)
        welcome = await self.recv()
        assert welcome[0] == WELCOME, welcome
        session_id: int = welcome[1]
        return session_id

    async def closed(self, timeout: float = TIMEOUT) -> int | None:
        """Wait for the connection to end; its close code."""
        with trio.fail_after(timeout), pytest.raises(ConnectionClosed):
            while True:
                extra = await self.ws.recv()
                raise AssertionError(f"unexpected message before the close: {extra!r}")
        code: int | None = self.ws.close_code
        return code


# -- handshake -------------------------------------------------------------------------------


async def test_handshake_without_subprotocol_is_refused(serve_app: Serve) -> None:
    _, port = await serve_app()
    with pytest.raises(InvalidStatus) as info:
        async with connect(url(port)):
            pass
    assert info.value.response.status_code == 400
    assert b"wamp.2.json" in info.value.response.body


async def test_handshake_with_only_unknown_subprotocols_is_refused(serve_app: Serve) -> None:
    _, port = await serve_app()
    with pytest.raises(InvalidStatus) as info:
        async with connect(url(port), subprotocols=["wamp.2.cbor", "mqtt"]):  # type: ignore[list-item]
            pass
    assert info.value.response.status_code == 400


@pytest.mark.parametrize(
    ("offered", "chosen"),
    [([JSON], JSON), ([MSGPACK], MSGPACK), (["wamp.2.cbor", MSGPACK, JSON], MSGPACK)],
)
async def test_subprotocol_negotiation(serve_app: Serve, offered: list[str], chosen: str) -> None:
    _, port = await serve_app()
    async with connect(url(port), subprotocols=offered) as ws:  # type: ignore[arg-type]
        assert ws.subprotocol == chosen
        await Client(ws).join()


# -- sessions ----------------------------------------------------------------------------------


async def test_json_session_end_to_end(serve_app: Serve) -> None:
    _, port = await serve_app()
    async with (
        connect(url(port), subprotocols=[JSON]) as ws_a,  # type: ignore[list-item]
        connect(url(port), subprotocols=[JSON]) as ws_b,  # type: ignore[list-item]
    ):
        a, b = Client(ws_a), Client(ws_b)
        a_id = await a.join()
        b_id = await b.join()
        assert a_id != b_id

        await b.send(SUBSCRIBE, 1, {}, "com.example.chat")
        subscribed = await b.recv()
        assert subscribed[:2] == [SUBSCRIBED, 1]
        subscription = subscribed[2]

        await b.send(SUBSCRIBE, 2, {}, "private.room")
        assert await b.recv() == [ERROR, SUBSCRIBE, 2, {}, NOT_AUTHORIZED, ["members only"]]

        await a.send(PUBLISH, 1, {"acknowledge": True}, "com.example.chat", ["héllo"], {"n": 1})
        published = await a.recv()
        assert published[:2] == [PUBLISHED, 1]
        event = await b.recv()
        assert event == [EVENT, subscription, published[2], {}, ["héllo"], {"n": 1}]

        # RPC: b registers, a calls.
        await b.send(REGISTER, 3, {}, "com.example.add")
        registered = await b.recv()
        assert registered[:2] == [REGISTERED, 3]
        await a.send(CALL, 2, {}, "com.example.add", [2, 3])
        invocation = await b.recv()
        assert invocation[0] == INVOCATION and invocation[2] == registered[2]
        assert invocation[4] == [2, 3]
        await b.send(YIELD, invocation[1], {}, [5])
        assert await a.recv() == [RESULT, 2, {}, [5]]

        await b.send(UNSUBSCRIBE, 4, subscription)
        assert await b.recv() == [UNSUBSCRIBED, 4]

        await a.send(GOODBYE, {}, CLOSE_NORMAL)
        assert await a.recv() == [GOODBYE, {}, GOODBYE_AND_OUT]
        # The connection stays: a new session may start on it.
        assert await a.join() not in (a_id, b_id)


async def test_msgpack_session_end_to_end(nursery: trio.Nursery) -> None:
    server = IoServer(HttpServer(WsServer(WampServer(Guarded()))), port=0, address="127.0.0.1")
    port = await nursery.start(server.serve)
    async with (
        connect(url(port), subprotocols=[MSGPACK]) as ws_m,  # type: ignore[list-item]
        connect(url(port), subprotocols=[JSON]) as ws_j,  # type: ignore[list-item]
    ):
        m, j = Client(ws_m), Client(ws_j)
        assert m.binary and not j.binary
        await m.join()
        await j.join()
        await m.send(SUBSCRIBE, 1, {}, "t")
        subscription = (await m.recv())[2]
        await j.send(SUBSCRIBE, 1, {}, "t")
        assert (await j.recv())[2] == subscription
        await j.send(PUBLISH, 2, {"exclude_me": False}, "t", [1, "two", None, 2.5])
        from_msgpack = await m.recv()
        assert from_msgpack[:2] == [EVENT, subscription]
        assert from_msgpack[4] == [1, "two", None, 2.5]
        assert await j.recv() == from_msgpack
        await m.send(PUBLISH, 3, {}, "t", [b"\x00\xffraw"])
        assert (await j.recv())[4] == ["\x00AP9yYXc="]  # bytes, WAMP's JSON convention
        await m.send(GOODBYE, {}, CLOSE_NORMAL)
        assert await m.recv() == [GOODBYE, {}, GOODBYE_AND_OUT]
    with trio.fail_after(TIMEOUT):
        await server.aclose()


# -- faults ----------------------------------------------------------------------------------


async def test_protocol_violation_aborts_then_closes(serve_app: Serve) -> None:
    _, port = await serve_app()
    async with connect(url(port), subprotocols=[JSON]) as ws:  # type: ignore[list-item]
        client = Client(ws)
        await client.send(SUBSCRIBE, 1, {}, "t")  # before HELLO
        abort = await client.recv()
        assert abort[0] == ABORT and abort[2] == PROTOCOL_VIOLATION
        assert "HELLO" in abort[1]["message"]
        assert await client.closed() == 1002


async def test_protocol_violation_in_a_session(serve_app: Serve) -> None:
    _, port = await serve_app()
    async with connect(url(port), subprotocols=[JSON]) as ws:  # type: ignore[list-item]
        client = Client(ws)
        await client.join()
        await client.send(HELLO, "realm1", ROLES)
        abort = await client.recv()
        assert abort[0] == ABORT and abort[2] == PROTOCOL_VIOLATION
        assert await client.closed() == 1002


async def test_malformed_json_closes_with_1007(serve_app: Serve) -> None:
    _, port = await serve_app()
    async with connect(url(port), subprotocols=[JSON]) as ws:  # type: ignore[list-item]
        client = Client(ws)
        await client.join()
        await ws.send('[16, 1, {}, "t"')
        abort = await client.recv()
        assert abort[0] == ABORT and abort[2] == PROTOCOL_VIOLATION
        assert await client.closed() == 1007


async def test_binary_frame_on_json_closes_with_1003(serve_app: Serve) -> None:
    _, port = await serve_app()
    async with connect(url(port), subprotocols=[JSON]) as ws:  # type: ignore[list-item]
        client = Client(ws)
        await ws.send(b"[1]")
        assert (await client.recv())[0] == ABORT
        assert await client.closed() == 1003


async def test_unknown_realm_is_aborted(serve_app: Serve) -> None:
    _, port = await serve_app()
    async with connect(url(port), subprotocols=[MSGPACK]) as ws:  # type: ignore[list-item]
        client = Client(ws)
        await client.send(HELLO, "no.such.realm", ROLES)
        abort = await client.recv()
        assert abort[0] == ABORT and abort[2] == "wamp.error.no_such_realm"
        assert await client.closed() == 1000


async def test_refusal_with_a_long_non_ascii_error_uri_still_closes(serve_app: Serve) -> None:
    uri = "com.example.error." + "\u00e9" * 70  # too long for a close reason once encoded

    class Refuse(WampComponent):
        def on_open(self, conn: WampConnection) -> None:
            raise WampError(uri, "no")

    _, port = await serve_app(Refuse())
    async with connect(url(port), subprotocols=[JSON]) as ws:  # type: ignore[list-item]
        client = Client(ws)
        await client.send(HELLO, "realm1", ROLES)
        abort = await client.recv()
        assert abort[0] == ABORT and abort[2] == uri
        assert await client.closed(timeout=2) == 1000


async def test_hello_timeout_over_a_socket(nursery: trio.Nursery) -> None:
    server = IoServer(
        HttpServer(WsServer(WampServer(hello_timeout=0.05))), port=0, address="127.0.0.1"
    )
    port = await nursery.start(server.serve)
    async with connect(url(port), subprotocols=[JSON]) as ws:  # type: ignore[list-item]
        assert await Client(ws).closed() == 1008


# -- shutdown ----------------------------------------------------------------------------------


async def test_shutdown_says_goodbye_then_closes_with_1001(nursery: trio.Nursery) -> None:
    server = IoServer(HttpServer(WsServer(WampServer())), port=0, address="127.0.0.1")
    port = await nursery.start(server.serve)
    async with (
        connect(url(port), subprotocols=[JSON]) as ws_j,  # type: ignore[list-item]
        connect(url(port), subprotocols=[MSGPACK]) as ws_m,  # type: ignore[list-item]
        connect(url(port), subprotocols=[JSON]) as ws_idle,  # type: ignore[list-item]
    ):
        j, m, idle = Client(ws_j), Client(ws_m), Client(ws_idle)
        await j.join()
        await m.join()
        server.shutdown()
        for client in (j, m):
            goodbye = await client.recv()
            assert goodbye[0] == GOODBYE and goodbye[2] == CLOSE_SYSTEM_SHUTDOWN
            assert await client.closed() == 1001
        # A connection without a session: no GOODBYE, just the close.
        assert await idle.closed() == 1001
    with trio.fail_after(TIMEOUT):
        await server.aclose()


async def test_app_shutdown_says_goodbye(serve_app: Serve) -> None:
    app, port = await serve_app()
    async with connect(url(port), subprotocols=[JSON]) as ws:  # type: ignore[list-item]
        client = Client(ws)
        await client.join()
        app.shutdown()
        goodbye = await client.recv()
        assert goodbye[0] == GOODBYE and goodbye[2] == CLOSE_SYSTEM_SHUTDOWN
        assert await client.closed() == 1001
    with trio.fail_after(TIMEOUT):
        await app.aclose()
