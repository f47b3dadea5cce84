"""Plain HTTP on the WebSocket port: responses returned by components, keep-alive, HEAD,
pipelining, and a WebSocket upgrade after plain requests on the same connection.

The client is the standard library's ``http.client`` (run in a thread), not our code."""

from __future__ import annotations

import http.client
import logging
from typing import Any

import pytest
import trio
from websockets.trio.client import connect

from ratchetpy import (
    Connection,
    HttpComponent,
    HttpRequest,
    HttpResponse,
    HttpServer,
    Page,
    Router,
    WsServer,
    http_response,
)
from ratchetpy.testing import RecordingConnection
from support.components import Echo
from support.frames import read_http_head, read_until_closed


class Hello(HttpComponent):
    """Returns a response built from the request, plain or async."""

    methods = ("GET", "HEAD", "POST")

    def __init__(self) -> None:
        self.seen: list[tuple[str, str, bytes]] = []

    def on_open(self, conn: Connection, request: HttpRequest) -> HttpResponse:
        self.seen.append((request.method, request.target, request.body))
        return HttpResponse(200, f"hello {request.method} {request.target} {len(request.body)}")


class SlowHello(HttpComponent):
    async def on_open(self, conn: Connection, request: HttpRequest) -> HttpResponse:
        await trio.sleep(0)
        return HttpResponse(201, f"async {request.target}", headers=(("X-Async", "yes"),))


class OldStyle(HttpComponent):
    """Ratchet's way: send a response and close the connection."""

    def on_open(self, conn: Connection, request: HttpRequest) -> None:
        conn.send(http_response(200, "old style"))
        conn.close()


def app() -> HttpServer:
    router = Router(
        {
            "/": Page("<h1>page</h1>"),
            "/hello": Hello(),
            "/slow": SlowHello(),
            "/old": OldStyle(),
            "/ws": WsServer(Echo()),
        }
    )
    return HttpServer(router, keep_alive_timeout=0.3)


def fetch_all(port: int, requests: list[tuple[str, str, bytes | None]]) -> list[Any]:
    """Run requests on ONE http.client connection; (status, headers, body, socket id) each."""
    client = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    results = []
    try:
        for method, path, body in requests:
            client.request(method, path, body=body)
            response = client.getresponse()
            data = response.read()
            results.append((response.status, dict(response.getheaders()), data, id(client.sock)))
    finally:
        client.close()
    return results


async def test_one_connection_serves_many_requests(start_server: Any) -> None:
    _, port = await start_server(app())
    results = await trio.to_thread.run_sync(
        fetch_all,
        port,
        [
            ("GET", "/", None),
            ("GET", "/hello?x=1", None),
            ("POST", "/hello", b"abc"),
            ("GET", "/slow", None),
            ("GET", "/nowhere", None),
            ("GET", "/", None),
        ],
    )
    statuses = [status for status, *_ in results]
    assert statuses == [200, 200, 200, 201, 404, 200]
    assert results[1][2] == b"hello GET /hello?x=1 0"
    assert results[2][2] == b"hello POST /hello 3"
    assert results[3][2] == b"async /slow" and results[3][1]["X-Async"] == "yes"
    assert b"no route for /nowhere" in results[4][2]
    # One socket for all of them: the server kept the connection alive.
    assert len({sock for *_, sock in results}) == 1
    assert all("close" not in headers.get("Connection", "") for _, headers, _, _ in results)


async def test_head_has_headers_but_no_body(start_server: Any) -> None:
    _, port = await start_server(app())
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    async with stream:
        await stream.send_all(
            b"HEAD / HTTP/1.1\r\nHost: x\r\n\r\n"
            b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        )
        data = await read_until_closed(stream)
    head, _, rest = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200")
    assert b"content-length: 13" in head.lower()
    # The HEAD response has no body: the next bytes are the GET's response.
    assert rest.startswith(b"HTTP/1.1 200")
    assert rest.endswith(b"<h1>page</h1>")


async def test_pipelined_requests_are_answered_in_order(start_server: Any) -> None:
    _, port = await start_server(app())
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    requests = b"".join(
        f"GET /{path} HTTP/1.1\r\nHost: x\r\n\r\n".encode()
        for path in ("hello?a", "slow", "hello?b")
    )
    async with stream:
        await stream.send_all(
            requests + b"GET /hello?c HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        )
        data = await read_until_closed(stream)
    bodies = [part for part in data.split(b"\r\n\r\n")[1:]]
    assert data.count(b"HTTP/1.1 ") == 4
    assert bodies[0].startswith(b"hello GET /hello?a")
    assert bodies[1].startswith(b"async /slow")
    assert bodies[2].startswith(b"hello GET /hello?b")
    assert bodies[3] == b"hello GET /hello?c 0"


async def test_http_10_and_connection_close_end_the_connection(start_server: Any) -> None:
    _, port = await start_server(app())
    for request in (
        b"GET /hello HTTP/1.0\r\n\r\n",
        b"GET /hello HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    ):
        stream = await trio.open_tcp_stream("127.0.0.1", port)
        async with stream:
            await stream.send_all(request)
            data = await read_until_closed(stream)
        assert data.startswith((b"HTTP/1.1 200", b"HTTP/1.0 200"))
        assert b"connection: close" in data.lower()


async def test_idle_keep_alive_connection_is_closed_quietly(start_server: Any) -> None:
    _, port = await start_server(app())
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    async with stream:
        await stream.send_all(b"GET /hello HTTP/1.1\r\nHost: x\r\n\r\n")
        with trio.fail_after(5):
            data = await read_until_closed(stream)
    # One response, then the server hung up after keep_alive_timeout without a 408.
    assert data.count(b"HTTP/1.1") == 1 and b"408" not in data


async def test_upgrade_after_plain_requests_on_the_same_connection(start_server: Any) -> None:
    _, port = await start_server(app())
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    async with stream:
        await stream.send_all(b"GET /hello HTTP/1.1\r\nHost: x\r\n\r\n")
        head, body = await read_http_head(stream)
        assert head.startswith(b"HTTP/1.1 200")
        await stream.send_all(
            b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        )
        data = b""
        while b"\r\n\r\n" not in data:
            data += await stream.receive_some(4096)
        assert b"hello GET /hello 0" in body + data
        assert b"HTTP/1.1 101" in data


async def test_old_style_components_still_own_the_connection(start_server: Any) -> None:
    _, port = await start_server(app())
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    async with stream:
        await stream.send_all(b"GET /old HTTP/1.1\r\nHost: x\r\n\r\nGET / HTTP/1.1\r\n\r\n")
        data = await read_until_closed(stream)
    assert data.startswith(b"HTTP/1.1 200") and data.endswith(b"old style")
    assert data.count(b"HTTP/1.1 200") == 1


async def test_websocket_route_works_next_to_pages(start_server: Any) -> None:
    _, port = await start_server(app())
    async with connect(f"ws://127.0.0.1:{port}/ws") as ws:
        await ws.send("hi")
        assert await ws.recv() == "hi"


class Broken(HttpComponent):
    def on_open(self, conn: Connection, request: HttpRequest) -> HttpResponse:
        return HttpResponse(200, headers=(("Bad Header", "x"),))


async def test_invalid_response_from_a_component_is_a_500(
    start_server: Any, caplog: pytest.LogCaptureFixture
) -> None:
    _, port = await start_server(HttpServer(Broken()))
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    with caplog.at_level(logging.ERROR, logger="ratchetpy.http"):
        async with stream:
            await stream.send_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            data = await read_until_closed(stream)
    assert data.startswith(b"HTTP/1.1 500")
    assert "invalid response" in caplog.text


class NoContent(HttpComponent):
    def on_open(self, conn: Connection, request: HttpRequest) -> HttpResponse:
        status = int(request.path.strip("/"))
        return HttpResponse(status, b"dropped")


async def test_no_body_statuses_send_no_body(start_server: Any) -> None:
    _, port = await start_server(HttpServer(NoContent()))
    results = await trio.to_thread.run_sync(
        fetch_all, port, [("GET", "/204", None), ("GET", "/304", None), ("GET", "/200", None)]
    )
    assert [(status, body) for status, _, body, _ in results] == [
        (204, b""),
        (304, b""),
        (200, b"dropped"),
    ]


async def test_expect_100_continue_invites_the_body(start_server: Any) -> None:
    _, port = await start_server(app())
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    async with stream:
        await stream.send_all(
            b"POST /hello HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nExpect: 100-continue\r\n"
            b"Connection: close\r\n\r\n"
        )
        interim = b""
        with trio.fail_after(5):
            while b"\r\n\r\n" not in interim:
                interim += await stream.receive_some(4096)
        assert interim.startswith(b"HTTP/1.1 100 ")
        await stream.send_all(b"hello")
        data = await read_until_closed(stream)
    assert (interim + data).endswith(b"hello POST /hello 5")


async def test_expect_100_continue_with_a_body_too_large_gets_413_at_once(
    start_server: Any,
) -> None:
    _, port = await start_server(HttpServer(Router({"/hello": Hello()}), max_body_size=10))
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    async with stream:
        await stream.send_all(
            b"POST /hello HTTP/1.1\r\nHost: x\r\nContent-Length: 50\r\nExpect: 100-continue\r\n\r\n"
        )
        data = await read_until_closed(stream)
    assert data.startswith(b"HTTP/1.1 413")


@pytest.mark.parametrize("target", [b"/", b"example.com:443"])
def test_connect_gets_501_and_reaches_no_component(target: bytes) -> None:
    # Found by fuzzing (fuzz/corpus/http_request/crash-connect-answered-200): h11 takes a 2xx
    # answer to CONNECT as the switch to a tunnel, so the component's 200 left h11 refusing
    # its body, and that error escaped on_message.
    hello = Hello()
    server = HttpServer(hello)
    conn = RecordingConnection(websocket=False)
    server.on_open(conn)
    assert server.on_message(conn, b"CONNECT " + target + b" HTTP/1.1\r\nHost: x\r\n\r\n") is None
    assert hello.seen == []
    assert len(conn.sent) == 1 and bytes(conn.sent[0]).startswith(b"HTTP/1.1 501 ")
    assert conn.closed
