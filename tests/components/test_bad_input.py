"""Malformed HTTP and WebSocket input over raw sockets: every case gets a clear,
protocol-correct answer, and the server goes on serving."""

from __future__ import annotations

from typing import Any

import pytest
import trio
from websockets.trio.client import connect

from ratchetpy import (
    Connection,
    Endpoint,
    HttpResponse,
    HttpServer,
    MessageComponent,
    Router,
    WsServer,
)
from ratchetpy.testing import RecordingConnection
from support.components import Echo
from support.frames import (
    client_frame,
    parse_server_frames,
    raw_websocket,
    read_http_head,
    read_until_closed,
    upgrade_request,
)


def app(**ws_options: Any) -> HttpServer:
    return HttpServer(WsServer(Echo(), **ws_options), max_headers=20, max_head_size=4096)


async def http_exchange(port: int, request: bytes) -> tuple[int, bytes]:
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    async with stream:
        await stream.send_all(request)
        response = await read_until_closed(stream)
    status_line, _, rest = response.partition(b"\r\n")
    return int(status_line.split()[1]), rest


async def still_serving(port: int) -> None:
    async with connect(f"ws://127.0.0.1:{port}/") as ws:
        await ws.send("ok?")
        assert await ws.recv() == "ok?"


async def test_malformed_request_line_gets_400(start_server: Any) -> None:
    _, port = await start_server(app())
    status, body = await http_exchange(port, b"HELLO THERE\r\n\r\n")
    assert status == 400
    assert b"malformed request" in body
    await still_serving(port)


async def test_oversized_head_gets_431(start_server: Any) -> None:
    _, port = await start_server(app())
    status, _ = await http_exchange(
        port, b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 8000 + b"\r\n\r\n"
    )
    assert status == 431
    await still_serving(port)


async def test_too_many_headers_gets_431(start_server: Any) -> None:
    _, port = await start_server(app())
    headers = b"".join(b"X-%d: y\r\n" % i for i in range(30))
    status, body = await http_exchange(port, b"GET / HTTP/1.1\r\nHost: x\r\n" + headers + b"\r\n")
    assert status == 431
    assert b"header lines" in body


async def test_oversized_body_gets_413(start_server: Any) -> None:
    _, port = await start_server(HttpServer(WsServer(Echo()), max_body_size=100))
    status, _ = await http_exchange(
        port, b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n" + b"a" * 1000
    )
    assert status == 413


def health_app() -> HttpServer:
    """What the issue's reproductions ran against: a router with a /health endpoint."""
    router = Router()
    router.add("/health", Endpoint(lambda request: HttpResponse(200, "ok")))
    return HttpServer(router)


async def test_content_length_and_chunked_together_get_400_and_close(start_server: Any) -> None:
    # Request smuggling: a proxy that frames by Content-Length sees one request; h11 (by
    # Transfer-Encoding) saw two, and the second used to be answered on the same connection.
    _, port = await start_server(health_app())
    status, rest = await http_exchange(
        port,
        b"POST /health HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n",
    )
    assert status == 400
    assert b"both Content-Length and Transfer-Encoding" in rest
    assert b"HTTP/1.1" not in rest  # no second response: the connection was closed
    assert b"smuggled" not in rest


@pytest.mark.parametrize("version", [b"2.0", b"9.9", b"0.9"])
async def test_unsupported_http_version_gets_505(start_server: Any, version: bytes) -> None:
    _, port = await start_server(health_app())
    status, rest = await http_exchange(port, b"GET /health HTTP/%s\r\nHost: x\r\n\r\n" % version)
    assert status == 505
    assert b"HTTP/%s is not served here" % version in rest
    status, _ = await http_exchange(port, b"GET /health HTTP/1.0\r\n\r\n")
    assert status == 200


async def test_oversized_chunk_size_gets_413_at_once(start_server: Any) -> None:
    # The size line alone, no data: before, only the 10 s request timeout ended it, with 408.
    _, port = await start_server(health_app())
    status, rest = await http_exchange(
        port,
        b"POST /health HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"ffffffffffffffffffff\r\n",
    )
    assert status == 413
    assert b"chunk sizes announce a body over 1048576 bytes" in rest


async def test_chunk_sizes_are_added_up(start_server: Any) -> None:
    _, port = await start_server(
        HttpServer(Endpoint(lambda r: HttpResponse(200)), max_body_size=100)
    )
    head = b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
    status, _ = await http_exchange(port, head + b"32\r\n" + b"a" * 50 + b"\r\n33\r\n")
    assert status == 413
    status, _ = await http_exchange(
        port, head + b"32\r\n" + b"a" * 50 + b"\r\n32\r\n" + b"b" * 50 + b"\r\n0\r\n\r\n"
    )
    assert status == 200


def test_a_chunk_size_arriving_after_the_head_gets_413() -> None:
    # Unit level, so that the size line surely arrives in a read of its own.
    server = HttpServer(Endpoint(lambda r: HttpResponse(200)), max_body_size=100)
    conn = RecordingConnection(websocket=False)
    server.on_open(conn)
    server.on_message(conn, b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")
    server.on_message(conn, b"1")
    assert conn.sent == [] and not conn.closed
    server.on_message(conn, b"00\r\n")  # 0x100 = 256 bytes announced
    assert conn.closed
    assert bytes(conn.sent[0]).startswith(b"HTTP/1.1 413 ")


async def test_plain_get_on_websocket_endpoint_gets_426(start_server: Any) -> None:
    _, port = await start_server(app())
    status, body = await http_exchange(port, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    assert status == 426
    assert b"WebSocket endpoint" in body


async def test_wrong_method_gets_405(start_server: Any) -> None:
    _, port = await start_server(app())
    status, body = await http_exchange(
        port, b"DELETE / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n\r\n"
    )
    assert status == 405
    assert b"Allow: GET" in body


async def test_bad_websocket_version_gets_426_with_supported_version(start_server: Any) -> None:
    _, port = await start_server(app())
    request = upgrade_request().replace(b"Sec-WebSocket-Version: 13", b"Sec-WebSocket-Version: 8")
    status, body = await http_exchange(port, request)
    assert status == 426
    assert b"Sec-WebSocket-Version: 13" in body


async def test_missing_key_gets_400(start_server: Any) -> None:
    _, port = await start_server(app())
    request = (
        b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Version: 13\r\n\r\n"
    )
    status, body = await http_exchange(port, request)
    assert status == 400
    assert b"Sec-WebSocket-Key" in body


async def test_client_that_never_finishes_its_head_is_dropped(start_server: Any) -> None:
    _, port = await start_server(HttpServer(WsServer(Echo()), request_timeout=0.2))
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    async with stream:
        await stream.send_all(b"GET / HTTP/1.1\r\nHost: x\r\n")  # and never the blank line
        response = await read_until_closed(stream)
    assert response.startswith(b"HTTP/1.1 408")
    await still_serving(port)


async def close_frame_after(port: int, frames: bytes) -> tuple[int, bytes]:
    stream, early = await raw_websocket(port)
    async with stream:
        await stream.send_all(frames)
        data = early + await read_until_closed(stream)
    parsed = parse_server_frames(data)
    assert parsed, "no frame before the server closed"
    opcode, payload = parsed[-1]
    assert opcode == 0x8, parsed
    return int.from_bytes(payload[:2], "big"), payload[2:]


async def test_unmasked_frame_closes_with_1002(start_server: Any) -> None:
    _, port = await start_server(app())
    code, _ = await close_frame_after(port, client_frame(0x1, b"hi", masked=False))
    assert code == 1002
    await still_serving(port)


async def test_reserved_opcode_closes_with_1002(start_server: Any) -> None:
    _, port = await start_server(app())
    code, _ = await close_frame_after(port, client_frame(0x3, b""))
    assert code == 1002


async def test_invalid_utf8_closes_with_1007(start_server: Any) -> None:
    _, port = await start_server(app())
    code, _ = await close_frame_after(port, client_frame(0x1, b"ok \xff\xfe"))
    assert code == 1007


async def test_invalid_utf8_in_a_fragment_fails_fast(start_server: Any) -> None:
    _, port = await start_server(app())
    # The message is never finished: the error must be found from the first fragment.
    code, _ = await close_frame_after(
        port,
        client_frame(0x1, b"\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xed\xa0\x80", fin=False),
    )
    assert code == 1007


async def test_oversized_frame_header_closes_with_1009_before_the_payload(
    start_server: Any,
) -> None:
    _, port = await start_server(app(max_message_size=1000))
    # A header announcing 1 GiB: the server must refuse without waiting for the payload.
    header = bytes([0x82, 0x80 | 127]) + (2**30).to_bytes(8, "big") + b"mask"
    code, _ = await close_frame_after(port, header)
    assert code == 1009


async def test_rsv_bits_without_extension_close_with_1002(start_server: Any) -> None:
    _, port = await start_server(app(compression=None))
    code, _ = await close_frame_after(port, client_frame(0x1, b"hi", rsv=0x20))
    assert code == 1002


async def test_garbage_after_handshake_does_not_hurt_others(start_server: Any) -> None:
    _, port = await start_server(app())
    async with connect(f"ws://127.0.0.1:{port}/") as good:
        stream, _ = await raw_websocket(port)
        async with stream:
            await stream.send_all(bytes(range(256)) * 4)
            await read_until_closed(stream)
        await good.send("unaffected")
        assert await good.recv() == "unaffected"


async def test_client_vanishing_mid_message_is_cleaned_up(start_server: Any) -> None:
    closed = trio.Event()

    class Watch(Echo):
        def on_close(self, conn: Connection) -> None:
            closed.set()

    server, port = await start_server(HttpServer(WsServer(Watch())))
    stream, _ = await raw_websocket(port)
    await stream.send_all(client_frame(0x1, b"partial message", fin=False)[:10])
    await stream.aclose()
    with trio.fail_after(5):
        await closed.wait()
    assert server.connection_count == 0


async def test_frames_in_the_handshake_packet_are_answered_after_the_101(start_server: Any) -> None:
    _, port = await start_server(app())
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    async with stream:
        # The handshake, a ping and a text message in one write.
        await stream.send_all(upgrade_request() + client_frame(0x9, b"p") + client_frame(0x1, b"t"))
        head, rest = await read_http_head(stream)
        assert head.startswith(b"HTTP/1.1 101")
        while len(parse_server_frames(rest)) < 2:
            rest += await stream.receive_some(1000)
    assert parse_server_frames(rest) == [(0xA, b"p"), (0x1, b"t")]


async def test_ping_from_on_open_follows_the_101(start_server: Any) -> None:
    class Pinger(MessageComponent):
        def on_open(self, conn: Connection) -> None:
            conn.ping(b"hello")  # type: ignore[attr-defined]

    _, port = await start_server(HttpServer(WsServer(Pinger())))
    stream, rest = await raw_websocket(port)  # asserts the response starts with the 101
    async with stream:
        while not parse_server_frames(rest):
            rest += await stream.receive_some(1000)
    assert parse_server_frames(rest)[0] == (0x9, b"hello")
